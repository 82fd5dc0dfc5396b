"""``vae-numpy evaluate CKPT``: the test metrics of a saved model (see :mod:`vae_numpy.evaluation`).

Printed, per test image, in nats: the negative ELBO = reconstruction + KL (one posterior sample each), the
IWAE estimate of log p(x) with K importance samples, and the number of active latent units.
"""

from __future__ import annotations

import json

from .._threads import cli_type
from . import DATASETS, add_data_arguments, load_splits, nonnegative_int

DEFAULT_IWAE = 100


def add_arguments(p):
    p.add_argument("checkpoint", metavar="CKPT", help="a model.npz written by 'vae-numpy train' or model.save")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="whose test split to use; default: the dataset the model was trained on, else the one in "
                        "--data-dir, else mnist-5k")
    add_data_arguments(p)
    p.add_argument("--iwae-samples", type=nonnegative_int, default=DEFAULT_IWAE, metavar="K",
                   help=f"importance samples per image for log p(x), default {DEFAULT_IWAE}; 0 skips it")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the posterior samples, default 0")
    p.add_argument("--threads", type=cli_type, default=None, metavar="N|auto",
                   help="BLAS threads: auto (default; measured on the IWAE's decoding) or N (pinned)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: neg_elbo, reconstruction, kl, log_likelihood, active_units, ...")


def run(args):
    from .._train_state import saved_data_dir
    from ..checkpoint import load_checkpoint
    from ..errors import ConfigError
    from ..evaluation import evaluate
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed} must be a non-negative integer")
    ck = load_checkpoint(args.checkpoint)
    model, state = ck.model, ck.train_state
    dataset = args.dataset or state.get("dataset") or (None if args.data_dir else "mnist-5k")
    data_dir = args.data_dir
    if data_dir is None:   # the folder the run was trained from, while it still verifies
        data_dir, note = saved_data_dir(dataset, state.get("data"), splits=("test",))
        if note and not args.json:
            print(note)
    dataset, (x_test,), where = load_splits(dataset, data_dir, args.offline, progress=not args.json,
                                            splits=("test",))   # the test split only: t10k files suffice
    binarize = state.get("binarize", "none")
    result = evaluate(model, x_test, iwae_samples=args.iwae_samples, seed=args.seed, binarize=binarize,
                      threads=args.threads)
    result = {**result, "dataset": dataset, "split": "test", "binarize": binarize, "checkpoint": str(args.checkpoint),
              "epoch": state.get("epoch")}
    if args.json:
        print(json.dumps(result))
        return 0
    dims = model.describe()
    kind = "VAE" if model.kind == "vae" else "autoencoder"
    trained = f", {state['epoch']} epochs on {state.get('dataset')}" if state.get("epoch") else ""
    print(f"model          {args.checkpoint}: {kind} {dims}, {model.likelihood}{trained}")
    print(f"test set       {dataset} ({where}), {result['n']:,} images" + (f", binarized ({binarize})"
                                                                          if binarize != "none" else ""))
    if model.kind == "vae":
        print(f"negative ELBO  {result['neg_elbo']:9.2f} nats per image = reconstruction "
              f"{result['reconstruction']:.2f} + KL {result['kl']:.2f}   (lower is better)")
        if result["log_likelihood"] is not None:
            print(f"log p(x)       {result['log_likelihood']:9.2f} nats per image   (IWAE bound, K = "
                  f"{result['iwae_samples']}; higher is better, above -ELBO)")
    else:
        print(f"reconstruction {result['reconstruction']:9.2f} nats per image   (an autoencoder has no ELBO or "
              "log p(x))")
    print(f"active units   {result['active_units']:6d} of {result['latent_dim']}   "
          "(latent dims whose mean code varies with x: Cov_x E_q[h_i] > 0.01)")
    return 0
