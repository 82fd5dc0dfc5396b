"""The README's side-by-side table of the three architectures (issue 12): mlp, conv and rnn, each trained from the
command line on full MNIST with the same settings, then evaluated and drawn.

Run (resumable: a finished arch is skipped, an interrupted one continues from its run folder's checkpoint):
    python benchmarks/arch_table.py --runs /tmp/arch_table            # 5 epochs, latent 20, 1 BLAS thread
    python benchmarks/arch_table.py --archs mlp --epochs 1            # one of them, shorter

For each arch, exactly what a user would type:
    vae-numpy train --arch A --dataset mnist --data-dir D --epochs E --latent-dim Z --seed 0 --threads T --out RUN/A
    vae-numpy evaluate RUN/A/model.npz --iwae-samples K --json
and the parameter count, the mean epoch time (the training steps, from the run's metrics.json), the test -ELBO
and the IWAE estimate of -log p(x) go to ``benchmarks/results/arch_table.json``. One figure,
``docs/img/arch_samples_reconstructions.png``: per arch a row of test digits, their reconstructions
(decode(mu(x))) and samples from the prior, all drawn with the same seed.

Settings: grey-level MNIST (Bernoulli on pixels / 255), batch 128, Adam 1e-3, the default initialization; the
arch's defaults (mlp 400 hidden ReLU; conv channels 32, 64 and Dense 16; rnn GRU with 128 states).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = next((d for d in (ROOT.parent / "shared/data/mnist", ROOT.parent.parent / "shared/data/mnist")
                     if d.is_dir()), ROOT.parent / "shared/data/mnist")
OUT = ROOT / "benchmarks" / "results" / "arch_table.json"
FIGURE = ROOT / "docs" / "img" / "arch_samples_reconstructions.png"
ARCHS = ("mlp", "conv", "rnn")


def cli(*args):
    """Run `python -m vae_numpy ARGS` from the repository's root; return its stdout, fail loudly on an error."""
    cmd = [sys.executable, "-m", "vae_numpy", *map(str, args)]
    print("$ vae-numpy " + " ".join(map(str, args)), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def train_arch(arch, args):
    run = args.runs / (args.label or arch)
    ckpt, metrics = run / "model.npz", run / "metrics.json"
    if metrics.exists() and len(json.loads(metrics.read_text())["history"]) >= args.epochs and \
            (run / "samples.png").exists():
        return run
    common = ["--epochs", args.epochs, "--threads", args.threads, "--no-progress"]
    if ckpt.exists():
        cli("train", "--resume", ckpt, "--data-dir", args.data_dir, *common)
    else:
        warmup = ["--beta-warmup", args.beta_warmup] if args.beta_warmup else []
        cli("train", "--arch", arch, "--dataset", "mnist", "--data-dir", args.data_dir, "--latent-dim",
            args.latent_dim, "--seed", args.seed, "--out", run, *warmup, *common)
    return run


def row(arch, run, args):
    import vae_numpy as vn
    history = json.loads((run / "metrics.json").read_text())["history"]
    t0 = time.perf_counter()
    ev = json.loads(cli("evaluate", run / "model.npz", "--data-dir", args.data_dir, "--iwae-samples",
                        args.iwae_samples, "--threads", args.threads, "--json"))
    model = vn.load_model(run / "model.npz")
    seconds = [h["seconds"] for h in history if "seconds" in h]
    return {"arch": arch, "parameters": int(model.n_params), "epochs": len(history),
            "epoch_s_mean": float(np.mean(seconds)) if seconds else None, "epoch_s": seconds,
            "train_loss": history[-1].get("train_loss"), "test_neg_elbo": ev["neg_elbo"],
            "test_neg_log_likelihood": -ev["log_likelihood"] if ev.get("log_likelihood") is not None else None,
            "iwae_samples": args.iwae_samples, "active_units": ev.get("active_units"),
            "evaluate_s": round(time.perf_counter() - t0, 1), "run": str(run)}


def figure(runs, args):
    import vae_numpy as vn
    from vae_numpy import datasets, explore, plots
    n = 10
    x_test = datasets.to_unit(datasets.flatten(datasets.load_dataset("mnist", "test", data_dir=args.data_dir,
                                                                     download=False)[0][:n]))
    fig, axes = plots.subplots(len(runs), 3, figsize=(12.0, 1.45 * len(runs) + 0.5))
    axes = np.atleast_2d(axes)
    for i, (arch, run) in enumerate(runs):
        model = vn.load_model(run / "model.npz")
        x_in, x_hat = explore.reconstructions(model, x_test.astype(model.dtype))
        samples = explore.prior_samples(model, n, seed=args.seed)
        for ax, images, title in zip(axes[i], (x_in, x_hat, samples),
                                     ("test digits", "reconstructions", "samples from N(0, I)"), strict=True):
            ax.imshow(plots.image_grid(np.asarray(images).reshape(n, -1), n_cols=5, pad=1), cmap="gray",
                      vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{arch}: {title}", fontsize=10)
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    plots.save_figure(fig, args.figure)
    return args.figure


def markdown(results):
    """The README's table rows from the results: arch, parameters, -ELBO, IWAE, active units, epoch time."""
    lines = []
    for key, r in results["rows"].items():
        name = key.replace("-warmup", ", KL warm-up 1 epoch")
        nll = r.get("test_neg_log_likelihood")
        lines.append(f"| {name} | {r['parameters']:,} | {r['test_neg_elbo']:.2f} | "
                     f"{'' if nll is None else f'{nll:.2f}'} | {r['active_units']} of {r['settings']['latent_dim']} | "
                     f"{r['epoch_s_mean']:.0f} s |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", default=",".join(ARCHS))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--latent-dim", type=int, default=20)
    p.add_argument("--iwae-samples", type=int, default=100)
    p.add_argument("--threads", default="1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--beta-warmup", type=float, default=0, help="epochs of KL warm-up (vae-numpy train --beta-warmup)")
    p.add_argument("--label", default=None, help="the row's name (one arch only), e.g. conv-warmup; default the arch")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("VAE_NUMPY_DATA", str(DEFAULT_DATA))))
    p.add_argument("--runs", type=Path, default=Path("/tmp/arch_table"))
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--figure", type=Path, default=FIGURE)
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--figure-rows", default=None, help="rows of the figure, e.g. mlp,conv,conv-warmup,rnn")
    p.add_argument("--markdown", action="store_true", help="print the README's table rows from --out and stop")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return
    archs = [a for a in args.archs.split(",") if a]
    unknown = sorted(set(archs) - set(ARCHS))
    if unknown:
        p.error(f"unknown arch {unknown}; choose from {', '.join(ARCHS)}")
    if args.label and len(archs) != 1:
        p.error("--label names one row: give one arch")
    results = json.loads(args.out.read_text()) if args.out.exists() else {"rows": {}}
    for arch in archs:
        run = train_arch(arch, args)
        r = row(arch, run, args)
        r["label"] = args.label or arch
        r["load_average"] = os.getloadavg()
        r["when"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        r["settings"] = {"epochs": args.epochs, "latent_dim": args.latent_dim, "threads": args.threads,
                         "seed": args.seed, "beta_warmup": args.beta_warmup, "batch": 128, "lr": 1e-3,
                         "likelihood": "bernoulli, pixels / 255"}
        results["rows"][args.label or arch] = r
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(r), flush=True)
    if not args.no_figure:   # every row in the results, in --figure-rows order (default: as they were added)
        order = args.figure_rows.split(",") if args.figure_rows else list(results["rows"])
        print("wrote", figure([(k, Path(results["rows"][k]["run"])) for k in order], args))


if __name__ == "__main__":
    main()
