"""``vae-numpy train``: train a VAE (or an autoencoder) and write a run folder.

The run folder (``--out``, default ``runs/<timestamp>``) holds ``model.npz`` (a training checkpoint, written
atomically after every epoch: ``--resume`` continues from it), ``metrics.json`` (rewritten every epoch) and, at
the end, the figures ``loss.png``, ``reconstructions.png`` and ``samples.png``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .._threads import cli_type
from . import DATASETS, add_data_arguments, choose_dataset, hidden_dims, nonnegative_float, positive_float, positive_int

ARCHS = ("mlp", "conv", "rnn")   # architectures.ARCHS (not imported here: --help stays fast)

DEFAULT_EPOCHS = {"mnist-5k": 30}   # 8 s on 2 cores (19 s for the 60,000-image sets with FULL_EPOCHS)
FULL_EPOCHS = 5   # as benchmarks/bench_recipe.py, where vae-numpy and PyTorch are compared
# flags that describe the model or the loop: fixed by the checkpoint when resuming (None = not given)
MODEL_FLAGS = {"hidden": (400,), "latent_dim": 20, "beta": 1.0, "likelihood": "bernoulli", "model": "vae",
               "lr": 1e-3, "batch_size": 128, "binarize": "none", "seed": 0, "beta_warmup": 0.0,
               "clip_grad": None, "init": "he-xavier", "objective": "elbo", "k": 1,
               "arch": "mlp", "channels": None, "state_size": None, "cell": None}
# the flags that apply to one architecture only
ARCH_FLAGS = {"hidden": "mlp", "channels": "conv", "state_size": "rnn", "cell": "rnn"}


def add_arguments(p):
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="default: mnist if it is on disk or can be downloaded, else the embedded mnist-5k")
    add_data_arguments(p)
    p.add_argument("--epochs", type=positive_int, default=None, metavar="N",
                   help=f"epochs in total; default {DEFAULT_EPOCHS['mnist-5k']} on mnist-5k, {FULL_EPOCHS} on the "
                        "60,000-image sets (under a minute on 2 cores); with --resume, default: the run's own")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="B", help="default 128")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam's learning rate, default 1e-3")
    p.add_argument("--arch", choices=ARCHS, default=None,
                   help="encoder and decoder: mlp (default; dense layers, --hidden), conv (the Keras example's "
                        "convolutional VAE, --channels; on full MNIST add --beta-warmup 1, without which it can "
                        "collapse) or rnn (an image as 28 rows, recurrent; --state-size, --cell)")
    p.add_argument("--hidden", type=hidden_dims, default=None, metavar="400[,200...]",
                   help="[--arch mlp] hidden widths of the encoder (the decoder mirrors them), default 400")
    p.add_argument("--channels", type=hidden_dims, default=None, metavar="32,64",
                   help="[--arch conv] channels of the two convolutions, default 32,64")
    p.add_argument("--state-size", type=positive_int, default=None, metavar="S",
                   help="[--arch rnn] size of the recurrent state (encoder and decoder), default 128")
    p.add_argument("--cell", choices=("gru", "rnn"), default=None,
                   help="[--arch rnn] gru (default) or rnn (the vanilla tanh RNN)")
    p.add_argument("--latent-dim", type=positive_int, default=None, metavar="Z", help="default 20")
    p.add_argument("--beta", type=nonnegative_float, default=None, help="weight of the KL term, default 1")
    p.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default=None, help="default bernoulli")
    p.add_argument("--binarize", choices=("none", "static", "dynamic"), default=None,
                   help="none: pixels / 255 (default); static: one fixed binary sample; dynamic: a new one per batch")
    p.add_argument("--model", choices=("vae", "ae"), default=None, help="vae (default) or a plain autoencoder")
    p.add_argument("--init", choices=("he-xavier", "torch"), default=None,   # layers.INITS (not imported here)
                   help="initial weights: he-xavier (default; He before ReLU, Xavier before linear outputs, zero "
                        "biases) or torch (PyTorch's nn.Linear default, U(+-1/sqrt(fan_in)))")
    p.add_argument("--objective", choices=("elbo", "iwae"), default=None,
                   help="elbo (default) or iwae: the importance-weighted bound with --k samples (Burda et al., 2016)")
    p.add_argument("--k", type=positive_int, default=None, metavar="K",
                   help="samples per example, default 1; with --objective elbo, k > 1 averages the reconstruction "
                        "over k draws")
    p.add_argument("--beta-warmup", type=nonnegative_float, default=None, metavar="EPOCHS",
                   help="raise the KL weight linearly from 0 to 1 over this many epochs, default 0")
    p.add_argument("--clip-grad", type=positive_float, default=None, metavar="NORM",
                   help="clip the global gradient norm, default off")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="default 0: the same seed, the same run")
    p.add_argument("--out", default=None, metavar="DIR", help="the run folder, default runs/<timestamp>")
    p.add_argument("--resume", default=None, metavar="CKPT",
                   help="continue the run saved in CKPT (its model.npz) up to --epochs in total")
    p.add_argument("--threads", type=cli_type, default=None, metavar="N|auto",
                   help="BLAS threads: auto (default; measured on the training steps, re-checked as the load "
                        "changes) or N (pinned: the same run to the bit); also $VAE_NUMPY_THREADS")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (nor, where the output is not a terminal, a progress line every 10 s)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures (loss, reconstructions, samples)")


def _out_dir(args, resume_path):
    if args.out is not None:
        return Path(args.out)
    if resume_path is not None:
        return resume_path.parent
    base = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    out, k = base, 2
    while out.exists():
        out, k = Path(f"{base}-{k}"), k + 1
    return out


def _usage(message):
    from ..errors import ConfigError
    return ConfigError(message)


def _new_model(args):
    from .. import VAE, Adam, Autoencoder
    s = {k: (MODEL_FLAGS[k] if getattr(args, k) is None else getattr(args, k)) for k in MODEL_FLAGS}
    if s["model"] == "ae" and args.beta is not None:
        raise _usage("--beta applies to a VAE; an autoencoder (--model ae) has no KL term")
    if s["model"] == "ae" and (args.objective is not None or args.k is not None):
        raise _usage("--objective and --k apply to a VAE; an autoencoder (--model ae) has no posterior to sample "
                     "from (drop --model ae, or the two flags)")
    for flag, arch in ARCH_FLAGS.items():
        if getattr(args, flag, None) is not None and s["arch"] != arch:
            raise _usage(f"--{flag.replace('_', '-')} applies to --arch {arch}, not --arch {s['arch']}")
    kwargs = {"latent_dim": s["latent_dim"], "likelihood": s["likelihood"], "seed": s["seed"], "init": s["init"],
              "arch": s["arch"]}
    if s["arch"] == "mlp":
        kwargs["hidden_dims"] = s["hidden"]
    kwargs.update({flag: s[flag] for flag, arch in ARCH_FLAGS.items()
                   if arch == s["arch"] and flag != "hidden" and s.get(flag) is not None})
    _check_size({"kind": s["model"], "input_dim": 784, **kwargs})
    model = Autoencoder(**kwargs) if s["model"] == "ae" else VAE(beta=s["beta"], objective=s["objective"],
                                                                 k=s["k"], **kwargs)
    return model, Adam(model.params, lr=s["lr"]), s


def _check_size(config):
    """The parameter count from the shapes (no allocation): one line naming the flags when it cannot fit."""
    from .._network import param_shapes
    from ..errors import ConfigError
    try:
        param_shapes(config)
    except ConfigError as exc:
        sizes = {k: v for k, v in config.items() if k not in ("kind", "input_dim", "likelihood", "seed", "init",
                                                               "arch", "latent_dim")}
        sizes["latent_dim"] = config["latent_dim"]
        flags = " ".join(f"--{k.replace('_', '-')} {','.join(map(str, v)) if isinstance(v, tuple | list) else v}"
                         for k, v in sizes.items()).replace("--hidden-dims", "--hidden")
        raise _usage(f"{flags}: {exc}".replace("hidden_dims / latent_dim", "--hidden / --latent-dim")) from None


def _describe(model, opt, settings, epochs):
    dims = model.describe()
    kind = "VAE" if model.kind == "vae" else "autoencoder"
    beta = f", beta {model.beta:g}" if model.kind == "vae" and model.beta != 1 else ""
    init = f", init {model.init}" if model.init != "he-xavier" else ""
    if model.kind == "vae" and (model.objective, model.k) != ("elbo", 1):
        init += f", objective {model.objective} k={model.k}"
    return (f"model: {kind} {dims}, {model.likelihood}{beta}{init}, {model.n_params:,} parameters; "
            f"{type(opt).__name__} lr {opt.lr:g}, batch {settings['batch_size']}, {epochs} epochs, "
            f"binarize {settings['binarize']}, seed {settings['seed']}")


def _metrics(model, opt, settings, dataset, history, n_test):
    rows = [{"epoch": r["epoch"], "train_loss": r["train_loss"], "test_loss": r["val_loss"],
             "test_reconstruction": r["val_reconstruction"], "test_kl": r["val_kl"],
             "train_reconstruction": r["reconstruction"], "train_kl": r["kl"], "seconds": r["seconds"]}
            for r in history]
    train = {k: settings[k] for k in ("batch_size", "binarize", "seed", "beta_warmup", "clip_grad", "epochs")}
    config = {"model": model.config(), "optimizer": {"name": type(opt).__name__, "lr": opt.lr},
              "train": {**train, "n_train": settings["n_train"], "n_test": n_test}}
    return {"config": config, "dataset": dataset, "history": rows}


COLLAPSED_KL = 0.1   # nats per image: a healthy code carries several nats; a collapsed one ~0.01


def collapse_note(kl, beta_warmup, beta=1.0):
    """A line for the user when the test KL says the posterior collapsed (q(h|x) = p(h): the code is unused)."""
    if not kl < COLLAPSED_KL:
        return None
    if beta > 1:
        cure = f"--beta {beta:g} weighs the KL {beta:g} times: a smaller --beta keeps information in the code"
    elif beta_warmup:
        cure = "try a longer --beta-warmup, or wider layers before the heads (a narrow ReLU layer can die)"
    else:
        cure = "a KL warm-up often prevents it: --beta-warmup 1"
    return (f"note: the test KL is {kl:.3f} nats per image: the posterior collapsed (q(h|x) = p(h), the decoder "
            f"ignores the code and draws the mean image); {cure} (README, 'MLP, CNN and RNN')")


def _write_json(path, obj):
    from .._atomic import write_text_atomic
    write_text_atomic(path, json.dumps(obj, indent=1) + "\n", hint="free space or choose --out elsewhere")


def _data_folder(dataset, data_dir):
    """The folder the dataset was read from (stored in the checkpoint for --resume and evaluate), or None."""
    from ..datasets import EMBEDDED, locate
    if dataset == EMBEDDED:
        return None
    try:
        loc = locate(dataset, "train", data_dir)
    except Exception:   # only a convenience for later commands: never fail a run over it
        return None
    return str(loc.folder.resolve()) if loc.found else None


def _resume_hint(target, args, out, epochs, planned):
    """The command that continues the run from `target` (a checkpoint that exists) into `out`."""
    hint = f"vae-numpy train --resume {target}"
    if epochs != planned:     # the checkpoint's own plan differs (a resumed run asked for more epochs)
        hint += f" --epochs {epochs}"
    if target.parent.resolve() != out.resolve():
        hint += f" --out {out}"
    if args.data_dir is not None:
        hint += f" --data-dir {args.data_dir}"
    return hint


def run(args):
    from .._train_state import check_train_state, saved_data_dir
    from .._validate import check_out_dir
    from ..checkpoint import load_checkpoint
    from ..errors import TrainingDiverged
    from ..train import train
    resume_path = None if args.resume is None else Path(args.resume)
    state = None
    if resume_path is not None:
        given = [f"--{k.replace('_', '-')}" for k in MODEL_FLAGS if getattr(args, k) is not None]
        if given:
            raise _usage(f"{', '.join(given)} cannot change when resuming: the run keeps the settings saved in "
                         f"{resume_path} (only --epochs, --out, --data-dir, --offline, --no-progress, "
                         "--no-figures apply)")
        ck = load_checkpoint(resume_path)
        if not ck.train_state or ck.optimizer is None:
            raise _usage(f"{resume_path} holds a model but no training state; it cannot be resumed")
        model, opt, state = ck.model, ck.optimizer, check_train_state(ck.train_state, str(resume_path))
        settings = dict(state)
        if args.dataset is not None and args.dataset != state.get("dataset"):
            raise _usage(f"{resume_path} was trained on {state.get('dataset')}; resume it on the same dataset")
        dataset = state.get("dataset")
        epochs = args.epochs if args.epochs is not None else state["epochs"]
        if epochs <= state["epoch"]:
            raise _usage(f"{resume_path} has already trained {state['epoch']} epochs; pass --epochs N with N > "
                         f"{state['epoch']} (the total) to continue")
    else:
        model, opt, settings = _new_model(args)
        dataset = args.dataset
    out = _out_dir(args, resume_path)
    ckpt = out / "model.npz"
    same = resume_path is not None and ckpt.exists() and ckpt.resolve() == resume_path.resolve()
    if ckpt.exists() and not same:
        raise _usage(f"{out} already holds a run (model.npz); choose another --out, or continue it with "
                     f"--resume {ckpt}")
    check_out_dir(out, "--out", create=False)
    progress = not args.no_progress
    data_dir = args.data_dir
    if data_dir is None and state is not None:
        data_dir, note = saved_data_dir(dataset, state.get("data"))
        if note:
            print(note)
    dataset, x_train, x_test, line = choose_dataset(dataset, data_dir, args.offline, progress)
    print(line)
    if state is None:
        epochs = args.epochs or DEFAULT_EPOCHS.get(dataset, FULL_EPOCHS)
    print(_describe(model, opt, settings, epochs))
    if getattr(model, "k_samples", False):   # a k too large for the memory: refused before --out is made
        model.check_k_memory(min(settings["batch_size"], len(x_train)))
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing {out}/" + (f" (resuming after epoch {state['epoch']})" if state else ""))

    def report(model, history):
        r = history[-1]
        settings.update(epochs=epochs, n_train=len(x_train))
        _write_json(out / "metrics.json", _metrics(model, opt, settings, dataset, history, len(x_test)))
        from tqdm import tqdm
        tqdm.write(f"epoch {r['epoch']:>{len(str(epochs))}}/{epochs}  train {r['train_loss']:8.2f}  test "
                   f"{r['val_loss']:8.2f} = rec {r['val_reconstruction']:7.2f} + KL {r['val_kl']:6.2f}  "
                   f"({r['seconds']:.1f} s, {r['threads']} thread{'s' if r['threads'] != 1 else ''})")

    try:
        history = train(model, x_train, x_test, epochs=epochs, batch_size=settings["batch_size"], optimizer=opt,
                        seed=settings["seed"], beta_warmup=settings["beta_warmup"],
                        clip_grad=settings["clip_grad"], callbacks=[report], progress=progress,
                        binarize=settings["binarize"], checkpoint=ckpt, state=state,
                        info={"dataset": dataset, "data": _data_folder(dataset, data_dir)}, where=resume_path,
                        threads=args.threads)
    except TrainingDiverged as exc:
        kept = ""
        if not ckpt.is_file() and resume_path is not None:
            kept = f"; the checkpoint it resumed from, {resume_path}, is unchanged"
        print(f"vae-numpy: {exc}{kept}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        target = ckpt if ckpt.is_file() else resume_path
        if target is None:
            print(f"vae-numpy: interrupted before the first epoch ended; nothing was saved in {out}/ (run the same "
                  "command again to start over)", file=sys.stderr)
        else:
            planned = epochs if target == ckpt else state["epochs"]
            print(f"vae-numpy: interrupted; continue with: {_resume_hint(target, args, out, epochs, planned)}",
                  file=sys.stderr)
        return 130
    figures = []
    if not args.no_figures:
        from ..plots_train import run_figures
        figures = run_figures(model, history, x_test, out, binarize=settings["binarize"])
    last = history[-1]
    if model.kind == "vae":
        print(f"test negative ELBO {last['val_reconstruction'] + last['val_kl']:.2f} nats per image "
              f"(reconstruction {last['val_reconstruction']:.2f} + KL {last['val_kl']:.2f})")
        note = collapse_note(last["val_kl"], settings["beta_warmup"], model.beta)
        if note:
            print(note)
    else:
        print(f"test reconstruction loss {last['val_reconstruction']:.2f} nats per image")
    print(f"wrote {ckpt}, {out / 'metrics.json'}" + "".join(f", {p.name}" for p in figures))
    print(f"next: vae-numpy evaluate {ckpt}   |   vae-numpy sample {ckpt} -n 64 --out samples.png")
    return 0
