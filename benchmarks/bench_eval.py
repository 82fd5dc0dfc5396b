"""Speed of the IWAE log-likelihood estimate (``VAE.log_likelihood``): image-samples per second, A/B.

Run: ``python benchmarks/bench_eval.py [--images 20] [--samples 2000] [--rounds 3]``; writes
``benchmarks/results/eval.json``.

The model is bench_literature.py's (784-200-200-50, tanh, Bernoulli; float32, one BLAS thread). Two versions of
the estimator run interleaved, round after round, on the same images, so that both see the same load:
- ``before``: the estimator as it was before the speed work (noise, codes and the KL terms in float64, a new
  array for every decoded chunk, NumPy's float32 log1p in the Bernoulli log-likelihood);
- ``now``: ``VAE.log_likelihood`` (float32 noise and codes, reused workspaces, the series log1p of the
  training kernel; float64 only for the log-sum-exp over the samples).
The projection for the literature's evaluation (10,000 test images x 5,000 samples) is images x samples divided
by the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae_numpy as vn  # noqa: E402
from vae_numpy import _kernels  # noqa: E402
from vae_numpy.losses import LOG_2PI  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "eval.json"


def before(model, x, n_samples, rng, max_rows=8192):
    """The estimator before the speed work (commit 745e9c2), Bernoulli only."""
    K, (N, Z) = n_samples, (x.shape[0], model.latent_dim)
    per_img = max(1, max_rows // K)
    k_chunk = min(K, max(1, max_rows // per_img))
    result = np.empty(N)
    for start in range(0, N, per_img):
        xb = x[start:start + per_img]
        B = xb.shape[0]
        mu, log_var = (a.astype(np.float64) for a in model.encode(xb))
        std = np.exp(0.5 * log_var)
        log_w = np.empty((B, K))
        for k0 in range(0, K, k_chunk):
            kc = min(k_chunk, K - k0)
            eps = rng.standard_normal((B, kc, Z))
            h = mu[:, None, :] + std[:, None, :] * eps
            log_q = -0.5 * np.sum(eps * eps + LOG_2PI + log_var[:, None, :], axis=2)
            log_p_h = -0.5 * np.sum(h * h + LOG_2PI, axis=2)
            out, _, _ = model._decoder_forward(h.astype(model.dtype).reshape(B * kc, Z))
            out = out.reshape(B, kc, -1)
            res, e, l = np.empty((B, kc), model.dtype), np.empty_like(out), np.empty_like(out)
            log_px = _kernels.NUMPY.bernoulli_loglik_rows(out, xb, res, e, l).astype(np.float64)
            log_w[:, k0:k0 + kc] = log_px + log_p_h - log_q
        m = log_w.max(axis=1, keepdims=True)
        result[start:start + B] = m[:, 0] + np.log(np.mean(np.exp(log_w - m), axis=1))
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits
    x, _ = vn.datasets.load_dataset("mnist-5k", "test")
    x = vn.datasets.to_unit(vn.datasets.flatten(x[:args.images]))
    model = vn.VAE(784, (200, 200), 50, activation="tanh", seed=0)
    versions = {"before": lambda rng: before(model, x, args.samples, rng),
                "now": lambda rng: model.log_likelihood(x, n_samples=args.samples, rng=rng)}
    seconds = {name: [] for name in versions}
    estimates = {}
    load = [os.getloadavg()]
    with threadpool_limits(1):
        for f in versions.values():      # compile and warm up, untimed
            f(np.random.default_rng(0))
        for _ in range(args.rounds):
            for name, f in versions.items():
                t0 = time.perf_counter()
                estimates[name] = float(f(np.random.default_rng(1)).mean())
                seconds[name].append(time.perf_counter() - t0)
    load.append(os.getloadavg())
    work = args.images * args.samples
    rate = {name: work / min(s) for name, s in seconds.items()}
    result = {"model": "784-200-200-50 tanh bernoulli float32", "images": args.images, "samples": args.samples,
              "rounds": args.rounds, "blas_threads": 1, "seconds": seconds,
              "image_samples_per_second_best": rate, "speedup": rate["now"] / rate["before"],
              "projected_minutes_10000x5000": {n: 1e4 * 5e3 / r / 60 for n, r in rate.items()},
              "mean_log_px": estimates, "load_average_start_end": load,
              "machine": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()}}
    for name in versions:
        print(f"{name:7s} {rate[name]:9,.0f} image-samples/s (best of {args.rounds}); 10,000 x 5,000 in "
              f"{result['projected_minutes_10000x5000'][name]:.0f} min; mean log p(x) {estimates[name]:.3f}")
    print(f"speed-up {result['speedup']:.2f}x; load average {load[0][0]:.1f} -> {load[1][0]:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
