"""Would a data-parallel step use two cores better than a 2-thread BLAS? Two replicas, measured.

Run: ``python benchmarks/bench_data_parallel.py [--arch 784-400-20] [--rounds 6] [--json PATH]``.

Why (issue 14): at 2 BLAS threads only the matmuls use the second core, and the elementwise work (Numba
kernels, Adam) runs on one; a parallel Adam did not help (``bench_parallel_adam.py``). The other way to put
*all* of a step's work on both cores is data parallelism: two replicas of the model share the parameters,
each runs the forward and backward pass of half the batch on its own core (1-thread BLAS each, Numba kernels
compiled ``nogil`` so the two threads can run them at once), then the two gradients are averaged (weighted by
the halves' sizes) and Adam runs once. This script builds it outside the package and times it against the
package's step (forward, backward, Adam) at 1 and 2 BLAS threads and the floor (the matmuls alone), in rounds
that interleave the candidates. It also checks that after 20 steps the data-parallel parameters agree with the
package's full-batch step to float32 rounding. Results (ms per step, min and median over rounds, load average)
append to ``benchmarks/results/data_parallel.json``.
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--arch", default="784-400-20")
p.add_argument("--rounds", type=int, default=6)
p.add_argument("--json", type=Path, default=HERE / "results" / "data_parallel.json")
args = p.parse_args()
os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp()   # nogil builds of the kernels, apart from the real cache
import numba  # noqa: E402

_njit = numba.njit


def njit(*a, **kw):
    kw["nogil"] = True      # the same kernels, releasing the GIL so that two threads run them at once
    return _njit(*a, **kw)


numba.njit = njit
import numpy as np  # noqa: E402

sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from bench_epoch import floor_ops, run_ops  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import vae_numpy as vn  # noqa: E402

arch = args.arch
parts = [int(p) for p in arch.split("-")]
D, H, Z = parts[0], tuple(parts[1:-1]), parts[-1]
B = 128
rng = np.random.default_rng(0)
x = (rng.random((B, D)) < 0.3).astype(np.float32)
eps = rng.standard_normal((B, Z)).astype(np.float32)

# two replicas: m1's layers read m0's parameters and write their own gradients
m0, m1 = vn.VAE(D, H, Z, seed=0), vn.VAE(D, H, Z, seed=0)
for prefix, layer in m1._parts:
    keys = {k: f"{prefix}.{k}" if prefix else k for k in layer.param_shapes()}
    layer.bind({k: m0.params[n] for k, n in keys.items()}, {k: m1.grads[n] for k, n in keys.items()})
m1.params, m1._flat_params = m0.params, m0._flat_params
opt = vn.Adam(m0.params, lr=1e-3)
ref = vn.VAE(D, H, Z, seed=0)          # the package's own step, for the numbers and the times
ref_opt = vn.Adam(ref.params, lr=1e-3)

h0, h1 = B // 2, B - B // 2
go, done = threading.Event(), threading.Event()


def worker():
    """The second core: the second half's forward and backward pass, on every go."""
    while True:
        go.wait()
        go.clear()
        m1._forward(x[h0:], eps[h0:])
        m1._backward()
        done.set()


threading.Thread(target=worker, daemon=True).start()
g0, g1 = m0._flat_grads, m1._flat_grads
w0, w1 = np.float32(h0 / B), np.float32(h1 / B)


def dp_step():
    go.set()
    m0._forward(x[:h0], eps[:h0])
    m0._backward()
    done.wait()
    done.clear()
    np.multiply(g0, w0, out=g0)   # the batch mean from the two halves' means, weighted by their sizes
    np.multiply(g1, w1, out=g1)
    np.add(g0, g1, out=g0)
    opt.step(m0.grads)


def step():
    ref._forward(x, eps)
    ref._backward()
    ref_opt.step(ref.grads)


ops = floor_ops((D, H, Z), np.float32, B, rng)
with threadpool_limits(1, user_api="blas"):   # the numbers: 20 steps of each from the same start
    for _ in range(20):
        dp_step()
        step()
diff = max(float(np.max(np.abs(m0.params[n] - ref.params[n]))) for n in ref.params)
print(f"max |data-parallel - package| over the parameters after 20 steps: {diff:.2e}")
res = {}
for _ in range(args.rounds):
    for name, th, f in (("package /1", 1, step), ("package /2", 2, step), ("data-parallel 2x1", 1, dp_step),
                        ("floor /2", 2, lambda: run_ops(ops)), ("floor /1", 1, lambda: run_ops(ops))):
        with threadpool_limits(th, user_api="blas"):
            for _ in range(10):
                f()
            n = 200
            t = time.perf_counter()
            for _ in range(n):
                f()
            res.setdefault(name, []).append((time.perf_counter() - t) / n * 1e3)
out = {k: {"min_ms": round(min(v), 4), "median_ms": round(float(np.median(v)), 4)} for k, v in res.items()}
for k, v in out.items():
    print(f"  {k:20s} min {v['min_ms']:7.3f} ms  median {v['median_ms']:7.3f} ms")
run = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "arch": arch, "batch": B,
       "rounds": args.rounds, "max_param_diff_after_20_steps": diff, "loadavg_end": list(os.getloadavg()),
       "results": out}
old = json.loads(args.json.read_text()) if args.json.exists() else []
args.json.write_text(json.dumps([*old, run], indent=1) + "\n")
print(f"wrote {args.json}")
