"""Paired comparison of saved Burda et al. models on the same binarized test images.

Two models' test -log p(x) each carry a standard error of ~0.23 nats over 10,000 images, but most of that
spread is between images (some digits are harder for every model), so the difference of two models is measured
far more precisely image by image: d_i = log p_A(x_i) - log p_B(x_i), its mean and standard error
std(d) / sqrt(n). This is how the README's "paired" differences are measured:

    python benchmarks/literature_paired.py iwae_k5_p563=benchmarks/results/burda_iwae_k5_p563.npz \\
        vae_k1=benchmarks/results/burda_vae_k1.npz --samples 5000 --out benchmarks/results/literature_paired_whole.json

Each model's log p(x_i) is the k = --samples importance-weighted estimate (bench_literature.log_px_per_image, the
numbers its runs report), on the test set binarized once exactly as bench_literature.py does (prepare_data, seed
1), with the same generator seed for every model; one BLAS thread. Writes each model's mean -log p(x) and every
pair's mean difference with its standard error (positive: the first model of the pair gives the test images more
probability).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_literature import EVAL_SEED, default_data_dir, log_px_per_image  # noqa: E402

import vae_numpy as vn  # noqa: E402
from vae_numpy.evaluation import prepare_data  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="NAME=PATH", help="two or more saved models (model.save files)")
    p.add_argument("--samples", type=int, default=5000, help="importance samples per image (default 5000)")
    p.add_argument("--images", type=int, default=10000, help="the first N test images (default all 10,000)")
    p.add_argument("--data-dir", default=default_data_dir())
    p.add_argument("--out", type=Path, required=True, help="the JSON file to write (refused if it exists)")
    args = p.parse_args(argv)
    pairs = [m.split("=", 1) for m in args.models]
    if len(pairs) < 2 or any(len(m) != 2 or not m[0] for m in pairs):
        p.error(f"give two or more models as NAME=PATH, not {args.models}")
    if args.samples < 1 or args.images < 2:
        p.error("--samples >= 1 and --images >= 2")
    if args.out.exists():
        p.error(f"{args.out} exists: give another --out or remove it")
    from threadpoolctl import threadpool_limits

    x_test, _ = vn.datasets.load_dataset("mnist", "test", data_dir=args.data_dir, download=False, progress=False)
    ll, seconds = {}, {}
    with threadpool_limits(1):
        for name, path in pairs:
            model = vn.load_model(path)
            xt = prepare_data(model, vn.datasets.flatten(x_test), binarize="dynamic")[:args.images]
            t0 = time.perf_counter()
            ll[name] = log_px_per_image(model, xt, args.samples)
            seconds[name] = time.perf_counter() - t0
            print(f"{name}: -log p(x) {-ll[name].mean():.3f} +- {ll[name].std(ddof=1) / np.sqrt(len(xt)):.3f}"
                  f" ({seconds[name]:.0f} s)", flush=True)
    n = len(next(iter(ll.values())))
    out = {"images": n, "samples": args.samples, "seed": EVAL_SEED, "blas_threads": 1,
           "models": {name: path for name, path in pairs},
           "neg_log_px": {k: float(-v.mean()) for k, v in ll.items()},
           "neg_log_px_se": {k: float(v.std(ddof=1) / np.sqrt(n)) for k, v in ll.items()},
           "seconds": seconds, "load_average_end": os.getloadavg(),
           "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    for a, b in itertools.combinations(ll, 2):
        d = ll[a] - ll[b]
        out[f"{a}_minus_{b}_log_px"] = {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(n))}
        print(f"{a} - {b}: log p(x) {d.mean():+.3f} +- {d.std(ddof=1) / np.sqrt(n):.3f} nats", flush=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
