"""Is Adam cheaper inside the backward pass, layer by layer, while each layer's gradient is still in cache?

Run: ``python benchmarks/bench_layerwise_adam.py [--rounds 12] [--steps 300] [--json PATH]``.

Why: session 7 measured Adam at 0.40 ms in a hot loop but 0.69-1.1 ms inside a training step (784-400-20), and
guessed that its arrays (parameters, gradients, m, v) leave the cache between steps. The backward pass writes
each layer's gradient just before it reads the next layer's weights; updating that layer right there (its W and
b, their gradients, m and v) would find the gradient, and the weights the backward pass has just read, in cache.
Adam's update of one element depends on nothing else, so the numbers stay bit-identical (checked before timing).

Candidates, one model each, steps interleaved in blocks (flat, layerwise, flat, ...), one BLAS thread, CPU time:

- ``flat``: the package's step: forward, backward, then ``Adam.step`` (one kernel call over the flat buffer);
- ``layerwise``: the same forward and backward, with the package's Adam kernel called on each layer's slice of
  the flat buffers as soon as that layer's backward has written its gradients (every Dense of the encoder and
  decoder and the two heads); the step counter and bias corrections as in ``Adam``.

Two settings: the literature's (784-200-200-50 tanh, batch 20) and the pytorch/examples recipe's (784-400-20
ReLU, batch 128), on random binary images. Results: ms per step, min and median over blocks, the median of the
per-round ratios layerwise / flat, and the load average, to ``benchmarks/results/layerwise_adam.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import vae_numpy as vn  # noqa: E402
from vae_numpy import _kernels  # noqa: E402

SETTINGS = {"784-200-200-50 tanh, batch 20": dict(hidden=(200, 200), latent=50, activation="tanh", batch=20),
            "784-400-20 relu, batch 128": dict(hidden=(400,), latent=20, activation="relu", batch=128)}
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-4


def make(cfg):
    return vn.VAE(784, cfg["hidden"], cfg["latent"], activation=cfg["activation"], seed=0)


class Layerwise:
    """A model whose Dense layers (and heads) run Adam on their own parameters right after their backward."""

    def __init__(self, model):
        self.model, self.t = model, 0
        self.p, self.g = model._flat_params, model._flat_grads
        self.m, self.v = np.zeros_like(self.p), np.zeros_like(self.p)
        self.covered = 0
        for seq in (model.encoder, model.decoder):
            for layer in getattr(seq, "layers", [seq]):
                self._hook_layer(layer)
        self._hook_layer(model.output)
        heads = model._dense_backward

        def heads_then_adam(dy, cache, need_dx=True):
            dx = heads(dy, cache, need_dx)
            name = cache[0]
            self._update(self._slice(model.params[f"{name}.W"], model.params[f"{name}.b"]))
            return dx
        model._dense_backward = heads_then_adam
        self.covered += sum(model.params[f"{h}.{k}"].size for h in ("enc_mu", "enc_log_var") for k in "Wb")
        if self.covered != self.p.size:
            raise SystemExit(f"the hooks cover {self.covered} of {self.p.size} parameters")

    def _slice(self, *arrays):
        base = self.p.__array_interface__["data"][0]
        spans = sorted(((a.__array_interface__["data"][0] - base) // self.p.itemsize, a.size) for a in arrays)
        start, end = spans[0][0], spans[-1][0] + spans[-1][1]
        if end - start != sum(n for _, n in spans):
            raise SystemExit("a layer's parameters are not one contiguous slice of the flat buffer")
        return slice(start, end)

    def _hook_layer(self, layer):
        sl = self._slice(*layer.params.values())
        self.covered += sl.stop - sl.start
        backward = layer.backward

        def backward_then_adam(dy, need_dx=True):
            dx = backward(dy, need_dx=need_dx)
            self._update(sl)
            return dx
        layer.backward = backward_then_adam

    def _update(self, sl):
        f, t = np.float32, self.t
        c1, c2 = 1.0 / (1.0 - B1 ** t), 1.0 / (1.0 - B2 ** t)
        _kernels.K.adam_update(self.p[sl], self.g[sl], self.m[sl], self.v[sl], f(LR), f(B1), f(B2), f(c1), f(c2),
                               f(EPS))

    def step(self, xb, eps):
        self.t += 1
        self.model._forward(xb, eps)
        self.model.backward()


def measure(name, cfg, rounds, steps):
    rng = np.random.default_rng(0)
    x = (rng.random((4000, 784)) < 0.3).astype(np.float32)
    B, Z = cfg["batch"], cfg["latent"]
    flat_model, lw_model = make(cfg), make(cfg)
    opt = vn.Adam(flat_model.params, lr=LR, betas=(B1, B2), eps=EPS)
    lw = Layerwise(lw_model)

    def flat_step(xb, eps):
        flat_model._forward(xb, eps)
        flat_model.backward()
        opt.step(flat_model.grads)

    batches = [x[i:i + B] for i in range(0, len(x) - B + 1, B)]
    for i in range(20):                                   # the two must do the same work
        eps = rng.standard_normal((B, Z)).astype(np.float32)
        flat_step(batches[i], eps)
        lw.step(batches[i], eps)
    diff = max(float(np.abs(flat_model.params[n] - lw_model.params[n]).max()) for n in flat_model.params)
    if diff != 0.0:
        raise SystemExit(f"{name}: the layer-wise step differs from the flat one by {diff}")
    eps = rng.standard_normal((B, Z)).astype(np.float32)
    times = {"flat": [], "layerwise": []}
    load = [os.getloadavg()[0]]
    for r in range(rounds):
        order = (("flat", flat_step), ("layerwise", lw.step))
        for key, fn in order if r % 2 == 0 else order[::-1]:
            c = time.process_time()
            for i in range(steps):
                fn(batches[i % len(batches)], eps)
            times[key].append((time.process_time() - c) / steps * 1e3)
    load.append(os.getloadavg()[0])
    a, b = np.array(times["flat"]), np.array(times["layerwise"])
    out = {"ms_per_step": {k: {"min": float(np.min(v)), "median": float(np.median(v))} for k, v in times.items()},
           "layerwise_over_flat_median_of_rounds": float(np.median(b / a)), "max_param_diff_after_20_steps": diff,
           "load_average": load}
    print(f"{name}: flat {a.min():.3f} / {np.median(a):.3f} ms, layerwise {b.min():.3f} / {np.median(b):.3f} ms "
          f"(min / median); layerwise / flat {out['layerwise_over_flat_median_of_rounds']:.3f}; load {load}")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", default=str(HERE / "results" / "layerwise_adam.json"))
    args = ap.parse_args()
    results = {"config": {"rounds": args.rounds, "steps_per_block": args.steps, "blas_threads": 1,
                          "timer": "process_time", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}
    with threadpool_limits(1):
        for name, cfg in SETTINGS.items():
            results[name] = measure(name, cfg, args.rounds, args.steps)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
