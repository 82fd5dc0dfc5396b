"""Would Adam on both cores close the 2-thread gap to the floor? Adam as a Numba ``prange`` kernel, measured.

Run: ``python benchmarks/bench_parallel_adam.py [--arch 784-400-20] [--rounds 6] [--json PATH]``.

Why: at 2 BLAS threads a training step is ~1.3-1.75x the floor (its matmuls alone), and the largest piece of
work outside the matmuls is Adam, a single-threaded Numba loop over every parameter (~650,000 for 784-400-20,
4 arrays read and 3 written). The design proposed in session 6 was Adam as a ``prange`` kernel at the BLAS
count. This script measures it before anything goes into the package.

Candidates, in one process per Numba threading layer (a process can have only one):

- ``serial``: the package's Adam kernel (``_kernels.NUMBA.adam_update``).
- ``prange``: the same loop body (the package's kernel, called on slices) over ``threads`` chunks in a
  ``numba.prange`` loop, ``numba.set_num_threads`` equal to the BLAS count. Each element is computed by the same
  operations in the same order, so the parameters stay bit-identical (checked before timing).

Two settings, interleaved round by round (serial, prange, serial, prange, ...):

- ``alone``: Adam on its own arrays, nothing else running in the process (what a micro-benchmark sees);
- ``in a step``: a whole training step (``model._forward``, ``_backward``, ``Adam.step``; batch 128), at 1 and
  2 BLAS threads (threadpoolctl), where the BLAS's own worker threads run between the Adam calls.

Layers: Numba's default (here ``omp``, libgomp's threads spin-wait after a region), ``workqueue`` (Numba's own,
they sleep), and ``omp`` with ``OMP_WAIT_POLICY=passive``. Results: ms per call / per step (min and median over
rounds), the load average, to ``benchmarks/results/parallel_adam.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LAYERS = {"default": {}, "workqueue": {"NUMBA_THREADING_LAYER": "workqueue"},
          "omp-passive": {"NUMBA_THREADING_LAYER": "omp", "OMP_WAIT_POLICY": "passive"}}


def parse_arch(text):
    parts = [int(p) for p in text.split("-")]
    if len(parts) < 3:
        raise argparse.ArgumentTypeError(f"--arch {text!r}: give input-hidden...-latent, e.g. 784-400-20")
    return parts[0], tuple(parts[1:-1]), parts[-1]


def worker(arch, rounds, batch):
    """One threading layer: returns {candidate: {"min_ms", "median_ms", "all_ms"}} and the layer used."""
    sys.path.insert(0, str(ROOT))
    import numba
    import numpy as np
    from threadpoolctl import threadpool_limits

    import vae_numpy as vn
    from vae_numpy import _kernels

    serial = _kernels.NUMBA.adam_update
    inner = numba.njit(error_model="numpy")(_kernels._adam_update_nb)

    @numba.njit(error_model="numpy", parallel=True)
    def prange_adam(p, g, m, v, lr, b1, b2, c1, c2, eps, nchunks):
        pf, gf, mf, vf = p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1)
        n = pf.size
        for c in numba.prange(nchunks):
            lo, hi = n * c // nchunks, n * (c + 1) // nchunks
            inner(pf[lo:hi], gf[lo:hi], mf[lo:hi], vf[lo:hi], lr, b1, b2, c1, c2, eps)
        return p

    D, hidden, Z = arch
    rng = np.random.default_rng(0)
    f = np.float32
    x = (rng.random((batch, D)) < 0.3).astype(f)
    eps = rng.standard_normal((batch, Z)).astype(f)

    # the same numbers: two models, 20 steps each, serial vs prange at 2 chunks
    models = []
    for kernel in (serial, lambda *a: prange_adam(*a, 2)):
        model = vn.VAE(D, hidden, Z, seed=0)
        opt = vn.Adam(model.params, lr=1e-3)
        _kernels.NUMBA.adam_update = kernel
        for _ in range(20):
            model._forward(x, eps)
            model._backward()
            opt.step(model.grads)
        models.append((model, opt))
    _kernels.NUMBA.adam_update = serial
    same = all(np.array_equal(models[0][0].params[n], models[1][0].params[n]) for n in models[0][0].params)
    if not same:
        raise SystemExit("prange Adam changed the numbers: the comparison would not be fair")
    model, opt = models[0]
    n_params = model._flat_params.size

    arrays = [rng.standard_normal(n_params).astype(f) for _ in range(4)]
    arrays[3] = np.abs(arrays[3])
    args = (f(1e-3), f(0.9), f(0.999), f(1.1), f(1.2), f(1e-8))

    def alone(kind, th):
        if kind == "serial":
            return lambda: serial(*arrays, *args)
        return lambda: prange_adam(*arrays, *args, th)

    def in_step(kind, th):
        _kernels.NUMBA.adam_update = serial if kind == "serial" else (lambda *a: prange_adam(*a, th))

        def step():
            model._forward(x, eps)
            model._backward()
            opt.step(model.grads)
        return step

    times = {}
    for _ in range(rounds):
        for th in (1, 2):
            for setting, make, n in (("alone", alone, 400), ("in a step", in_step, 150)):
                for kind in ("serial", "prange"):
                    if kind == "prange" and th == 1 and setting == "in a step":
                        continue     # one chunk is the serial loop plus a launch: nothing to learn
                    with threadpool_limits(th, user_api="blas"):
                        numba.set_num_threads(th)
                        fn = make(kind, th)
                        for _ in range(10):
                            fn()
                        t0 = time.perf_counter()
                        for _ in range(n):
                            fn()
                        ms = (time.perf_counter() - t0) / n * 1e3
                    times.setdefault(f"{setting} / {kind} / {th} thread{'s' if th > 1 else ''}", []).append(ms)
    _kernels.NUMBA.adam_update = serial
    out = {k: {"min_ms": round(min(v), 4), "median_ms": round(float(np.median(v)), 4),
               "all_ms": [round(t, 4) for t in v]} for k, v in times.items()}
    return {"layer": numba.threading_layer(), "params": int(n_params), "results": out}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=parse_arch, default=parse_arch("784-400-20"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--layers", default=",".join(LAYERS), help=f"comma-separated, of {', '.join(LAYERS)}")
    p.add_argument("--json", type=Path, default=HERE / "results" / "parallel_adam.json")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.arch, args.rounds, args.batch)))
        return 0
    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    unknown = [s for s in layers if s not in LAYERS]
    if unknown or args.rounds < 1 or args.batch < 1:
        p.error(f"--layers of {sorted(LAYERS)} (got {unknown}), --rounds >= 1, --batch >= 1")
    arch_text = "-".join(map(str, [args.arch[0], *args.arch[1], args.arch[2]]))
    run = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "arch": arch_text, "batch": args.batch,
           "rounds": args.rounds, "loadavg_before": [round(v, 2) for v in os.getloadavg()], "layers": {}}
    for name in layers:
        env = {**os.environ, **LAYERS[name]}
        cmd = [sys.executable, __file__, "--worker", "--arch", arch_text, "--rounds", str(args.rounds),
               "--batch", str(args.batch)]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            run["layers"][name] = {"error": res.stderr.strip().splitlines()[-1:]}
            print(f"{name}: failed: {res.stderr.strip()[-300:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        run["layers"][name] = r
        print(f"{name} (numba layer {r['layer']}, {r['params']:,} parameters):")
        for k, v in r["results"].items():
            print(f"  {k:32s} min {v['min_ms']:7.3f} ms  median {v['median_ms']:7.3f} ms")
    run["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    old = json.loads(args.json.read_text()) if args.json.exists() else []
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([*old, run], indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
