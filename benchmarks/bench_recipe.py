"""The pytorch/examples VAE recipe, trained by vae-numpy and (when torch is installed) by PyTorch, side by side.

Run: ``python benchmarks/bench_recipe.py [--epochs 5] [--seeds 0,1,2] [--no-torch] [--no-default-init]`` (offline;
Fashion-MNIST from disk, e.g. Debian's ``/usr/share/datasets/fashion-mnist``).
Prints a table and writes ``benchmarks/results/recipe.json``.

On MNIST, beside the recipe's published log (test loss 106.66 after epoch 7, grey levels, init as nn.Linear's):
``python benchmarks/bench_recipe.py --dataset mnist --epochs 7 --seeds 0 --no-default-init`` reads the IDX files
from ``--data-dir`` (default ``$VAE_NUMPY_DATA``, else ``../shared/data/mnist`` beside the repo) and writes
``benchmarks/results/recipe_mnist.json``.

The recipe (github.com/pytorch/examples, ``vae/main.py``): 784-400-20 encoder (ReLU), 20-400-784 decoder (ReLU,
sigmoid output), Bernoulli likelihood on the grey levels x = pixels / 255, KL to N(0, I), Adam with lr 1e-3, batch
128, shuffled every epoch, and nn.Linear's default initialization (W and b uniform on +-1/sqrt(fan_in)), which
vae-numpy offers as ``VAE(init="torch")``. The PyTorch model is that file's model; the example sums the loss over the
batch where vae-numpy averages it (Adam is invariant to that scale but for its eps). Both read the images as
tensors in memory (no DataLoader), with 2 threads.

Measured after every epoch, for both, on the 10,000 test images with the **same** eps (one draw per image):
the test negative ELBO = reconstruction + KL in nats per image (the BCE in its exact logits form), and the
wall time of the epoch's training steps. The epochs alternate (NumPy epoch k, then PyTorch epoch k) so that
both see the same load on a shared machine. The JIT kernels are compiled before the first timed epoch.

One run of 5 epochs differs from another seed's by about a nat, so every seed in ``--seeds`` trains both sides
and the summary gives the mean gap. A third run per seed (skip it with ``--no-default-init``) trains vae-numpy
with its own default initialization (``init="he-xavier"``: He normal before ReLU, Xavier normal before the
linear heads, zero biases) to show what the initialization alone changes after 5 epochs.
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
from vae_numpy.evaluation import elbo  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "recipe.json"
HIDDEN, LATENT, BATCH, LR, THREADS, EVAL_SEED = 400, 20, 128, 1e-3, 2, 2024
# the recipe's own log (github.com/pytorch/examples, vae/main.py run for its default 10 epochs): "====> Test set
# loss: 106.66" after epoch 7 (summed BCE on sigmoid outputs + KL, per test image, one random eps each)
PUBLISHED = {"mnist": {"epoch": 7, "test_loss": 106.66, "source": "pytorch/examples vae/main.py, published log"}}


def torch_side(x_train, x_test, eps_test, seed, threads=THREADS):
    """(train_epoch() -> seconds, evaluate() -> dict) for the pytorch/examples VAE, or None without torch."""
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.manual_seed(seed)

    class VAE(nn.Module):        # pytorch/examples vae/main.py
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, HIDDEN)
            self.fc21, self.fc22 = nn.Linear(HIDDEN, LATENT), nn.Linear(HIDDEN, LATENT)
            self.fc3, self.fc4 = nn.Linear(LATENT, HIDDEN), nn.Linear(HIDDEN, 784)

        def forward(self, x, eps=None):
            h = F.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            std = torch.exp(0.5 * logvar)
            z = mu + (torch.randn_like(std) if eps is None else eps) * std
            return self.fc4(F.relu(self.fc3(z))), mu, logvar      # logits; the example applies sigmoid here

    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    xt = torch.from_numpy(vn.datasets.to_unit(vn.datasets.flatten(x_train)))
    xe = torch.from_numpy(vn.datasets.to_unit(vn.datasets.flatten(x_test)))
    ee = torch.from_numpy(eps_test)
    gen = torch.Generator().manual_seed(seed)

    def train_epoch():
        model.train()
        t0 = time.perf_counter()
        for idx in torch.randperm(len(xt), generator=gen).split(BATCH):
            x = xt[idx]
            logits, mu, logvar = model(x)
            bce = F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="sum")      # as in the example
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            opt.zero_grad()
            (bce + kld).backward()
            opt.step()
        return time.perf_counter() - t0

    @torch.no_grad()
    def evaluate():
        model.eval()
        rec = kl = 0.0
        for x, e in zip(xe.split(1000), ee.split(1000), strict=True):
            logits, mu, logvar = model(x, e)
            rec += F.binary_cross_entropy_with_logits(logits, x, reduction="sum").item()
            kl += (-0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())).item()
        n = len(xe)
        return {"neg_elbo": (rec + kl) / n, "reconstruction": rec / n, "kl": kl / n}

    return train_epoch, evaluate, torch.__version__


def run_seed(seed, x_train, x_test, eps_test, epochs, with_torch, with_default_init, published=None,
             threads=THREADS):
    """One seed: vae-numpy and PyTorch epoch by epoch, then (optionally) vae-numpy with its default init."""
    torch = torch_side(x_train, x_test, eps_test, seed, threads) if with_torch else None
    rows = []

    def after_epoch(model, history):
        r = {"seed": seed, "epoch": history[-1]["epoch"], "numpy_seconds": history[-1]["seconds"]}
        r.update({f"numpy_{k}": v for k, v in elbo(model, x_test, eps=eps_test).items()})
        if torch is not None:
            r["torch_seconds"] = torch[0]()
            r.update({f"torch_{k}": v for k, v in torch[1]().items()})
        rows.append(r)
        line = f"seed {seed} epoch {r['epoch']}  numpy {r['numpy_neg_elbo']:7.2f} nats {r['numpy_seconds']:6.1f} s"
        if published and published["epoch"] == r["epoch"]:
            line += f"   published {published['test_loss']:.2f}"
        if torch is not None:
            line += (f"   torch {r['torch_neg_elbo']:7.2f} nats {r['torch_seconds']:6.1f} s   "
                     f"numpy - torch {r['numpy_neg_elbo'] - r['torch_neg_elbo']:+.2f} nats")
        print(line, flush=True)

    model = vn.VAE(hidden_dims=(HIDDEN,), latent_dim=LATENT, seed=seed, init="torch")
    vn.train(model, x_train, epochs=epochs, batch_size=BATCH, optimizer=vn.Adam(model.params, lr=LR), seed=seed,
             callbacks=[after_epoch], progress=False)
    if with_default_init:
        model = vn.VAE(hidden_dims=(HIDDEN,), latent_dim=LATENT, seed=seed, init="he-xavier")

        def record(model, history):
            r = rows[history[-1]["epoch"] - 1]
            r["numpy_he_xavier_neg_elbo"] = elbo(model, x_test, eps=eps_test)["neg_elbo"]
            print(f"seed {seed} epoch {r['epoch']}  numpy with init='he-xavier' {r['numpy_he_xavier_neg_elbo']:7.2f} "
                  "nats", flush=True)

        vn.train(model, x_train, epochs=epochs, batch_size=BATCH, optimizer=vn.Adam(model.params, lr=LR),
                 seed=seed, callbacks=[record], progress=False)
    return rows, None if torch is None else torch[2]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run of each side per seed")
    p.add_argument("--no-torch", action="store_true", help="only vae-numpy")
    p.add_argument("--no-default-init", action="store_true",
                   help="skip the extra vae-numpy run with its default initialization (he-xavier)")
    p.add_argument("--dataset", choices=("fashion-mnist", "mnist"), default="fashion-mnist")
    p.add_argument("--threads", type=int, default=THREADS,
                   help=f"BLAS threads of vae-numpy (threadpoolctl) and torch.set_num_threads, default {THREADS}; 1 "
                        "on a busy machine (a 2-thread call waits for its slower thread)")
    p.add_argument("--data-dir", default=None,
                   help="the IDX files; for mnist default $VAE_NUMPY_DATA, else ../shared/data/mnist beside the repo")
    p.add_argument("--out", type=Path, default=None,
                   help="default benchmarks/results/recipe.json (recipe_mnist.json for --dataset mnist)")
    args = p.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = args.out or (OUT if args.dataset == "fashion-mnist" else OUT.with_name(f"recipe_{args.dataset}.json"))
    data_dir = args.data_dir
    if data_dir is None and args.dataset == "mnist":
        data_dir = os.environ.get("VAE_NUMPY_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data"
                                                           / "mnist")
    published = PUBLISHED.get(args.dataset)

    x_train, _ = vn.datasets.load_dataset(args.dataset, "train", data_dir=data_dir, download=False)
    x_test, _ = vn.datasets.load_dataset(args.dataset, "test", data_dir=data_dir, download=False)
    eps_test = np.random.default_rng(EVAL_SEED).standard_normal((len(x_test), LATENT)).astype(np.float32)
    warm = vn.VAE(hidden_dims=(HIDDEN,), latent_dim=LATENT)   # compile the kernels untimed
    vn.train(warm, x_train[:256], epochs=1, batch_size=BATCH, progress=False)

    from threadpoolctl import threadpool_limits
    rows, torch_version = [], None
    with threadpool_limits(args.threads):
        for seed in seeds:
            seed_rows, torch_version = run_seed(seed, x_train, x_test, eps_test, args.epochs, not args.no_torch,
                                                not args.no_default_init, published, args.threads)
            rows += seed_rows
    finals = [r for r in rows if r["epoch"] == args.epochs]
    # numpy_*: the recipe's run (init="torch"); numpy_he_xavier_*: the control with vae-numpy's default init
    summary = {"epochs": args.epochs, "seeds": seeds, "numpy_init": "torch",
               "numpy_neg_elbo": [r["numpy_neg_elbo"] for r in finals]}
    for key in ("torch_neg_elbo", "numpy_he_xavier_neg_elbo"):
        if key in finals[0]:
            summary[key] = [r[key] for r in finals]
    print(f"after {args.epochs} epochs, seeds {seeds}:")
    for key, values in summary.items():
        if key.endswith("neg_elbo"):
            print(f"  {key:28s} " + "  ".join(f"{v:7.2f}" for v in values) + f"   mean {np.mean(values):7.2f}")
    if "torch_neg_elbo" in summary:
        for prefix, key in (("", "numpy_neg_elbo"), ("he_xavier_", "numpy_he_xavier_neg_elbo")):
            if key not in summary:
                continue
            gaps = [a - b for a, b in zip(summary[key], summary["torch_neg_elbo"], strict=True)]
            summary.update({f"{prefix}gap_nats": gaps, f"{prefix}mean_gap_nats": float(np.mean(gaps)),
                            f"{prefix}within_1_5_nats": bool(np.mean(gaps) <= 1.5)})
            label = "numpy - torch" if not prefix else "numpy he-xavier - torch"
            print(f"  {label:28s} " + "  ".join(f"{g:+7.2f}" for g in gaps)
                  + f"   mean {np.mean(gaps):+7.2f}  (goal: <= +1.5)")
        for key in ("numpy_seconds", "torch_seconds"):
            summary[f"mean_{key}"] = float(np.mean([r[key] for r in rows]))
        print(f"  seconds per epoch: numpy {summary['mean_numpy_seconds']:.1f}, torch "
              f"{summary['mean_torch_seconds']:.1f} (mean over all epochs; the machine is shared)")
    result = {
        "recipe": {"dataset": args.dataset, "architecture": "784-400-20 relu, bernoulli on pixels/255",
                   "init": "vae-numpy init='torch' (nn.Linear's default); control run init='he-xavier'",
                   "optimizer": "Adam lr 1e-3", "batch_size": BATCH, "epochs": args.epochs, "seeds": seeds,
                   "eval": "test negative ELBO, 10,000 images, one shared eps draw each"},
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch_version, "threads": args.threads,
                    "load_average": os.getloadavg()},
        "epochs": rows, "summary": summary,
    }
    if published:
        result["published"] = published
        at = [r for r in rows if r["epoch"] == published["epoch"]]
        if at:
            result["published"]["numpy_minus_published"] = [r["numpy_neg_elbo"] - published["test_loss"] for r in at]
    result["machine"]["load_average_end"] = os.getloadavg()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
