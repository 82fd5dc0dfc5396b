"""Burda, Grosse & Salakhutdinov (2016), Table 1, one stochastic layer: VAE and IWAE on binarized MNIST.

Run one row (hours for the whole schedule: run it in the background; it resumes where it stopped):

    nohup nice -n 10 python benchmarks/bench_literature.py --row vae_k1 \\
        >> benchmarks/results/literature_vae_k1.log 2>&1 &

A shorter run: ``--budget 40`` (passes). Check that it works: ``--budget 2 --eval-images 1000 --eval-samples 500``.

The paper's setting (Section 5 and its appendix):
- data: the 60,000 MNIST training images, binarized dynamically (a new Bernoulli(pixel / 255) sample of every
  image each time it is used); the 10,000 test images binarized once (evaluation.prepare_data, seed 1);
- model: encoder 784-200-200 (tanh) -> 50 latent units (mu, log sigma^2); decoder 50-200-200-784 (tanh) ->
  Bernoulli logits: ``VAE(hidden_dims=(200, 200), latent_dim=50, activation="tanh")``, initialised Xavier normal
  (vae-numpy's default before tanh; the paper used Glorot & Bengio's heuristic too);
- Adam, beta1 0.9, beta2 0.999, eps 1e-4, batch 20; the learning rate 1e-3 * 10^(-i/7) for 3^i passes over the
  data, i = 0, ..., 7: 3,280 passes in all;
- test log-likelihood: the k = 5,000 importance-weighted estimate (``VAE.log_likelihood``), averaged over images.

Rows: ``vae_k1`` (the ELBO), ``vae_k5`` and ``vae_k50`` (``objective="elbo", k=K``: the reconstruction averaged
over K draws; vae-numpy keeps the closed-form KL where the paper averages log w_j, the same objective in
expectation), ``iwae_k5`` and ``iwae_k50`` (``objective="iwae", k=K``: the bound L_k). Paper, test -log p(x):
86.76, 86.47, 85.54, 86.35, 84.78 nats.

``--budget N`` runs the first N passes of that schedule: the same stages, truncated (e.g. 13 = 1 pass at 1e-3,
3 at 7.2e-4, 9 at 5.2e-4). A budgeted run is therefore a prefix of the whole run, and its state can be continued
to the whole schedule (or a larger budget) later.

State and resuming: after every pass, the model, Adam's moments and step count, the loop's generator and the number
of passes done are written atomically (a vae-numpy training checkpoint, float32, ~5 MB) to
``benchmarks/results/literature_state/<row>.npz`` (git-ignored: a run that spans sessions commits it with
``git add -f`` before each stop), overwritten in place. Started again, the script continues from it bit for bit
(one BLAS thread: threadpoolctl); ``--restart`` starts over. A lock file beside the state refuses a second run
on the same state (give a budgeted run of a row its own ``--state``).

At the end of a run: the test -log p(x) (``--eval-images``, ``--eval-samples``) and the one-sample test -ELBO are
appended with the run's facts to ``benchmarks/results/literature.json``, and the bare model is saved
(``model.save``, float32, ~1.7 MB) as ``benchmarks/results/burda_<row>.npz`` when the whole schedule is done, or
``burda_<row>_p<passes>.npz`` after a budget.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import vae_numpy as vn  # noqa: E402
from vae_numpy.evaluation import active_units, elbo, prepare_data  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ROWS = {"vae_k1": ("elbo", 1), "vae_k5": ("elbo", 5), "iwae_k5": ("iwae", 5), "vae_k50": ("elbo", 50),
        "iwae_k50": ("iwae", 50)}
PAPER = {"vae_k1": 86.76, "vae_k5": 86.47, "iwae_k5": 85.54, "vae_k50": 86.35, "iwae_k50": 84.78}
HIDDEN, LATENT, ACTIVATION, BATCH = (200, 200), 50, "tanh", 20
LR0, BETAS, ADAM_EPS = 1e-3, (0.9, 0.999), 1e-4
STAGES = [(3 ** i, LR0 * 10 ** (-i / 7)) for i in range(8)]      # (passes, learning rate)
TOTAL_PASSES = sum(n for n, _ in STAGES)                          # 3,280
EVAL_SEED = 2016


def stage_of(passes_done):
    """(stage i, learning rate, the pass count at which the stage ends) for the pass after `passes_done`."""
    end = 0
    for i, (n, lr) in enumerate(STAGES):
        end += n
        if passes_done < end:
            return i, lr, end
    raise ValueError(f"the schedule has {TOTAL_PASSES} passes; {passes_done} are done")


def default_data_dir():
    return os.environ.get("VAE_NUMPY_DATA") or str(ROOT.parent / "shared" / "data" / "mnist")


def load_data(args):
    kw = {"data_dir": args.data_dir if args.dataset == "mnist" else None, "download": False, "progress": False}
    x_train, _ = vn.datasets.load_dataset(args.dataset, "train", **kw)
    x_test, _ = vn.datasets.load_dataset(args.dataset, "test", **kw)
    x_train = vn.datasets.flatten(x_train)
    if args.train_images:
        x_train = x_train[:args.train_images]
    return x_train, vn.datasets.flatten(x_test)


def new_model(row, seed):
    objective, k = ROWS[row]
    model = vn.VAE(784, HIDDEN, LATENT, activation=ACTIVATION, objective=objective, k=k, seed=seed)
    return model, vn.Adam(model.params, lr=LR0, betas=BETAS, eps=ADAM_EPS)


def train_row(args, x_train, state_path, target):
    """Train (or continue) up to `target` passes; returns (model, passes done, train seconds, last train loss)."""
    info = {"row": args.row, "dataset": args.dataset, "benchmark": "bench_literature"}
    seconds = 0.0
    while True:
        if state_path.exists():
            ck = vn.load_checkpoint(state_path)
            state = ck.train_state
            if state.get("row") != args.row or state.get("dataset") != args.dataset:
                raise SystemExit(f"{state_path} holds row {state.get('row')!r} on {state.get('dataset')!r}, not "
                                 f"{args.row!r} on {args.dataset!r}: pass --state or --restart")
            model, opt, done = ck.model, ck.optimizer, int(state["epoch"])
        else:
            (model, opt), state, done = new_model(args.row, args.seed), None, 0
        if done >= target:
            last = state["history"][-1]["train_loss"] if state else float("nan")
            return model, done, seconds, last
        stage, lr, stage_end = stage_of(done)
        opt.lr = lr

        def report(model, history, stage=stage, lr=lr):
            r = history[-1]
            print(f"{args.row} pass {r['epoch']}/{target} (stage {stage}, lr {lr:.3g})  train {r['train_loss']:.3f}"
                  f"  {r['seconds']:.1f} s  load {os.getloadavg()[0]:.1f}", flush=True)

        t0 = time.perf_counter()
        # one call per stage (or up to the target): the checkpoint after every pass is the state
        vn.train(model, x_train, None, epochs=min(stage_end, target), batch_size=BATCH, optimizer=opt,
                 seed=args.seed, progress=False, binarize="dynamic", checkpoint=state_path, state=state, info=info,
                 callbacks=[report])
        seconds += time.perf_counter() - t0


def log_px_per_image(model, xt, n_samples):
    """(n,) float64: each test image's importance-weighted estimate of log p(x) with `n_samples` samples
    (``VAE.log_likelihood``), 100 images at a time, one generator seeded EVAL_SEED: the same numbers for the same
    model on every run (benchmarks/literature_paired.py compares models with it)."""
    rng = np.random.default_rng(EVAL_SEED)
    return np.concatenate([model.log_likelihood(vn.datasets.to_unit(xt[s:s + 100]), n_samples=n_samples, rng=rng)
                           for s in range(0, len(xt), 100)])


def evaluate_row(model, x_test, n_images, n_samples):
    """Test -log p(x) (mean over images, its standard error), the one-sample -ELBO, seconds of the estimate."""
    xt = prepare_data(model, x_test, binarize="dynamic")[:n_images]      # the fixed binary test set (seed 1)
    out = {"eval_images": len(xt), "eval_samples": n_samples,
           "test_neg_elbo": elbo(model, xt, seed=EVAL_SEED)["neg_elbo"],
           "active_units": active_units(model, xt)[0]}     # Cov_x(mu(x)) > 0.01, as in the paper's Table 1
    if n_samples == 0:
        return out
    t0 = time.perf_counter()
    ll = log_px_per_image(model, xt, n_samples)
    sec = time.perf_counter() - t0
    out.update(test_neg_log_px=float(-ll.mean()), test_neg_log_px_se=float(ll.std(ddof=1) / np.sqrt(len(ll))),
               eval_seconds=sec, eval_image_samples_per_second=len(xt) * n_samples / sec)
    return out


def commit():
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "") if head else None
    except OSError:
        return None


def append_result(path, entry):
    """Append `entry` to the JSON list at `path`, atomically (temporary file, then os.replace)."""
    runs = json.loads(path.read_text()) if path.exists() else []
    runs.append(entry)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(runs, indent=1) + "\n")
    os.replace(tmp, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--row", choices=sorted(ROWS), required=True)
    p.add_argument("--budget", type=int, default=TOTAL_PASSES, metavar="PASSES",
                   help=f"passes in all: the first PASSES of the schedule (default the whole {TOTAL_PASSES})")
    p.add_argument("--data-dir", default=default_data_dir(),
                   help="the MNIST IDX files (default $VAE_NUMPY_DATA, else ../shared/data/mnist beside the repo)")
    p.add_argument("--dataset", default="mnist", choices=("mnist", "mnist-5k"), help="mnist-5k: for tests")
    p.add_argument("--train-images", type=int, default=0, metavar="N", help="only the first N (tests); 0: all")
    p.add_argument("--eval-samples", type=int, default=5000, metavar="K", help="importance samples (0: skip)")
    p.add_argument("--eval-images", type=int, default=10000, metavar="N", help="the first N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--state", type=Path, default=None, help="default benchmarks/results/literature_state/<row>.npz")
    p.add_argument("--results", type=Path, default=RESULTS / "literature.json")
    p.add_argument("--model-out", type=Path, default=None,
                   help="default benchmarks/results/burda_<row>.npz (whole schedule) or burda_<row>_p<N>.npz")
    p.add_argument("--restart", action="store_true", help="discard the saved state and start over")
    args = p.parse_args(argv)
    if not 1 <= args.budget <= TOTAL_PASSES:
        p.error(f"--budget {args.budget}: give 1 to {TOTAL_PASSES} passes")
    if args.eval_samples < 0 or args.eval_images < 1 or args.train_images < 0:
        p.error("--eval-samples >= 0, --eval-images >= 1 and --train-images >= 0")
    state_path = args.state or RESULTS / "literature_state" / f"{args.row}.npz"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    if args.restart and state_path.exists():
        state_path.unlink()

    import fcntl
    lock = open(state_path.with_name(f".{state_path.name}.lock"), "w")   # noqa: SIM115 (held until exit)
    try:   # two runs of one state file would overwrite each other's passes
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        p.error(f"{state_path} is being trained by another run; give this one its own --state")
    from threadpoolctl import threadpool_limits
    load_before = os.getloadavg()
    with threadpool_limits(1):      # one BLAS thread: the same bits on every run and after every resume
        x_train, x_test = load_data(args)
        model, done, seconds, train_loss = train_row(args, x_train, state_path, args.budget)
        result = evaluate_row(model, x_test, args.eval_images, args.eval_samples)
    history = vn.load_checkpoint(state_path).train_state["history"] if state_path.exists() else []
    whole = done >= TOTAL_PASSES
    model_out = args.model_out or RESULTS / (f"burda_{args.row}.npz" if whole else f"burda_{args.row}_p{done}.npz")
    model.save(model_out)
    objective, k = ROWS[args.row]
    entry = {"row": args.row, "objective": objective, "k": k, "budget": args.budget, "passes_done": done,
             "schedule": "whole" if whole else f"first {done} of {TOTAL_PASSES} passes (stages truncated)",
             "dataset": args.dataset, "n_train": len(x_train), "train_loss": train_loss,
             **result, "paper_neg_log_px": PAPER[args.row], "train_seconds_this_run": seconds,
             "train_seconds_total": float(sum(r["seconds"] for r in history)), "model": str(model_out.name),
             "load_average_start": load_before, "load_average_end": os.getloadavg(), "blas_threads": 1,
             "commit": commit(), "numpy": np.__version__, "python": platform.python_version(),
             "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    append_result(args.results, entry)
    nll = entry.get("test_neg_log_px")
    print(f"{args.row}: {done} passes, train {train_loss:.3f}, test -ELBO {entry['test_neg_elbo']:.2f}, "
          f"{entry['active_units']} active units"
          + (f", test -log p(x) {nll:.2f} +- {entry['test_neg_log_px_se']:.2f} ({entry['eval_images']} images x "
             f"{entry['eval_samples']} samples, {entry['eval_seconds']:.0f} s)" if nll is not None else "")
          + f"; paper {PAPER[args.row]}; wrote {model_out} and {args.results}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
