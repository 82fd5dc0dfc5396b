"""How much of the gap to the matmul floor is Python glue? The project's batch against the same batch written out.

Run: ``python benchmarks/bench_glue.py [--rounds 100] [--batches 10] [--json PATH]`` (784-400-20, float32).

Three steps, interleaved round by round in one process (``--batches`` of each per round):

- ``project``: the training path of ``bench_epoch.py`` (``Batches``, eps, ``model._forward``, ``backward``,
  ``Adam.step``).
- ``written_out``: the same kernels and matmuls called one after another on preallocated buffers, with no
  Python structure at all (no layers, caches, dictionaries, checks): what removing all the glue would give.
  Before timing, both steps train two copies of the model for 20 batches on the same images and eps, and the
  script checks that their parameters are bit-identical (so that the two do the same work).
- ``floor``: the model's matmuls alone (``bench_epoch.floor_ops``).

Prints the median ms per batch and the medians of the per-round ratios to the floor; writes
``benchmarks/results/glue.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_epoch as be  # noqa: E402

import vae_numpy as vn  # noqa: E402
from vae_numpy import _kernels  # noqa: E402

B, D, H, Z = 128, 784, 400, 20
F = np.float32
NAMES = ("enc1", "enc_mu", "enc_log_var", "dec1", "dec_out")


class WrittenOut:
    """One VAE training batch (784-400-20, ReLU, Bernoulli, Adam lr 1e-3) as a flat list of kernel calls."""

    def __init__(self, model):
        K = _kernels.K
        self.K = K
        self.P = [(model.params[f"{n}.W"], model.params[f"{n}.b"]) for n in NAMES]
        self.G = [(model.grads[f"{n}.W"], model.grads[f"{n}.b"]) for n in NAMES]
        self.flat_p, self.flat_g = model._flat_params, model._flat_grads
        self.m, self.v = np.zeros_like(self.flat_p), np.zeros_like(self.flat_p)
        self.t = 0

        def e(*shape):
            return np.empty(shape, F)
        self.xb, self.u8 = e(B, D), np.empty((B, D), np.uint8)
        self.a1, self.h, self.mu, self.lv, self.z, self.sd, self.kl = e(B, H), e(B, H), e(B, Z), e(B, Z), e(B, Z), \
            e(B, Z), e(B)
        self.a2, self.g, self.o, self.rec, self.dout, self.e, self.l = e(B, H), e(B, H), e(B, D), e(B), e(B, D), \
            e(B, D), e(B, D)
        self.dg, self.da2, self.dz, self.dmu, self.dlv = e(B, H), e(B, H), e(B, Z), e(B, Z), e(B, Z)
        self.dh, self.dh2, self.da1 = e(B, H), e(B, H), e(B, H)

    def step(self, images, idx, eps):
        K, mm = self.K, np.matmul
        (W1, b1), (Wm, bm), (Wl, bl), (Wd, bd), (Wo, bo) = self.P
        (gW1, gb1), (gWm, gbm), (gWl, gbl), (gWd, gbd), (gWo, gbo) = self.G
        zero, inv_b = F(0), F(1 / B)
        K.gather_unit(images, idx, F(255), self.u8, self.xb)
        mm(self.xb, W1, out=self.a1)
        K.add_bias(self.a1, b1)
        K.leaky_relu_forward(self.a1, zero, self.h)
        mm(self.h, Wm, out=self.mu)
        K.add_bias(self.mu, bm)
        mm(self.h, Wl, out=self.lv)
        K.add_bias(self.lv, bl)
        K.reparam_kl_forward(self.mu, self.lv, eps, self.z, self.sd, self.kl)
        mm(self.z, Wd, out=self.a2)
        K.add_bias(self.a2, bd)
        K.leaky_relu_forward(self.a2, zero, self.g)
        mm(self.g, Wo, out=self.o)
        K.add_bias(self.o, bo)
        K.bce_logits(self.o, self.xb, inv_b, self.rec, self.dout, self.e, self.l)
        loss = float(np.add.reduce(self.rec)) / B + float(np.add.reduce(self.kl)) / B
        mm(self.g.T, self.dout, out=gWo)
        K.sum_rows(self.dout, gbo)
        mm(self.dout, Wo.T, out=self.dg)
        K.leaky_relu_backward(self.dg, self.g, zero, self.da2)
        mm(self.z.T, self.da2, out=gWd)
        K.sum_rows(self.da2, gbd)
        mm(self.da2, Wd.T, out=self.dz)
        K.reparam_kl_backward(self.dz, self.mu, self.sd, eps, inv_b, self.dmu, self.dlv)
        mm(self.h.T, self.dmu, out=gWm)
        K.sum_rows(self.dmu, gbm)
        mm(self.dmu, Wm.T, out=self.dh)
        mm(self.h.T, self.dlv, out=gWl)
        K.sum_rows(self.dlv, gbl)
        mm(self.dlv, Wl.T, out=self.dh2)
        self.dh += self.dh2
        K.leaky_relu_backward(self.dh, self.h, zero, self.da1)
        mm(self.xb.T, self.da1, out=gW1)
        K.sum_rows(self.da1, gb1)
        self.t += 1
        c1, c2 = F(1 / (1 - 0.9 ** self.t)), F(1 / (1 - 0.999 ** self.t))
        K.adam_update(self.flat_p, self.flat_g, self.m, self.v, F(1e-3), F(0.9), F(0.999), c1, c2, F(1e-8))
        return loss


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--json", default=str(HERE / "results" / "glue.json"))
    args = ap.parse_args(argv)
    images, _ = vn.datasets.load_dataset(be.DATASET, split="train", download=False)
    flat_images = images.reshape(len(images), -1)
    rng = np.random.default_rng(0)

    # the two steps do the same work: the same parameters after 20 batches of the same data and eps
    a = vn.VAE(input_dim=D, hidden_dims=(H,), latent_dim=Z, seed=0)
    b = vn.VAE(input_dim=D, hidden_dims=(H,), latent_dim=Z, seed=0)
    opt, wo = vn.Adam(a.params, lr=1e-3), WrittenOut(b)
    xb, u8 = np.empty((B, D), F), np.empty((B, D), np.uint8)
    for _ in range(20):
        idx = rng.integers(0, len(images), B)
        eps = rng.standard_normal((B, Z), dtype=F)
        _kernels.K.gather_unit(flat_images, idx, F(255), u8, xb)
        a._forward(xb, eps)
        a.backward()
        opt.step(a.grads)
        wo.step(flat_images, idx, eps)
    diff = float(np.abs(a._flat_params - b._flat_params).max())
    assert diff == 0.0, f"the written-out step differs from the project's: max |dparam| = {diff}"

    batches = vn.datasets.Batches(images, B, rng=np.random.default_rng(1))
    eps_buf = np.empty((B, Z), F)
    it = iter(batches)

    def project():
        nonlocal it
        x = next(it, None)
        if x is None or x.shape[0] != B:
            it = iter(batches)
            x = next(it)
        rng.standard_normal((B, Z), dtype=F, out=eps_buf)
        a._forward(x, eps_buf)
        a.backward()
        opt.step(a.grads)

    perm = rng.permutation(len(images))
    pos = 0

    def written_out():
        nonlocal pos
        if pos + B > len(perm):
            pos = 0
        rng.standard_normal((B, Z), dtype=F, out=eps_buf)
        wo.step(flat_images, perm[pos:pos + B], eps_buf)
        pos += B

    ops = be.floor_ops((D, (H,), Z), np.dtype(F), B, np.random.default_rng(0))

    def floor():
        be.run_ops(ops)

    steps = {"project": project, "written_out": written_out, "floor": floor}
    for fn in steps.values():
        for _ in range(30):
            fn()
    times = {k: [] for k in steps}
    for _ in range(args.rounds):
        for k, fn in steps.items():
            start = time.perf_counter()
            for _ in range(args.batches):
                fn()
            times[k].append((time.perf_counter() - start) / args.batches)
    ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
    ratio = {k: float(np.median([t / f for t, f in zip(times[k], times["floor"], strict=True)]))
             for k in ("project", "written_out")}
    res = {"config": {"arch": "784-400-20", "dtype": "float32", "batch": B, "rounds": args.rounds,
                      "batches_per_round": args.batches, "max_param_diff_after_20_steps": diff},
           "ms_per_batch_median": ms, "over_floor_median_of_rounds": ratio}
    print(f"ms per batch (median of {args.rounds} rounds x {args.batches}): "
          + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()))
    print(f"over the floor (median of the per-round ratios): project {ratio['project']:.3f}, "
          f"written out {ratio['written_out']:.3f}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    print("wrote", args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
