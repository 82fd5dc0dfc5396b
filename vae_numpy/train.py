"""The training loop: minibatch steps, history, KL warm-up, gradient clipping, divergence guard, checkpoints.

Shapes: x_train: (N, D) floats in [0, 1], or uint8 images (N, 28, 28) / (N, D) scaled by 1/255 batch by batch;
every step sees a batch x: (B, D) and noise eps: (B, Z), or eps: (B, k, Z) for a VAE with objective="iwae" or
k > 1 (the model's k-sample objective, see iwae.py; the validation loss stays the one-sample ELBO).

One generator, ``rng = np.random.default_rng(seed)``, owned by the loop, drives everything random, in this
order each epoch: the permutation of the examples (``rng.permutation(N)``), then per batch the dynamic
binarization (if any) and eps. The model's weights come from the model's own seed. A training checkpoint holds
the generator's state, the optimizer's state and the history, so that a resumed run continues bit for bit.

One step (the loop allocates nothing per batch beyond what the model does):

    loss = model._forward(x, eps)      # mean over the batch of -log p(x | h) + beta * kl_weight * KL (or L_k)
    model.backward()                   # fills model.grads (views into model._flat_grads)
    clip (optional): g <- g * min(1, clip_grad / ||g||),  one global norm over all parameters
    optimizer.step(model.grads)

KL warm-up (Bowman et al., 2016; Sonderby et al., 2016): ``model.kl_weight`` rises linearly from 0 to 1 over
the first ``beta_warmup`` epochs, updated every step: kl_weight = min(1, (t + 1) / (beta_warmup * batches per epoch))
at step t = 0, 1, ..., so that it reaches 1 at the last step of epoch ``beta_warmup``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import _kernels
from ._progress import make_progress
from ._threads import ThreadTuner
from ._train_state import STATE_KEYS as _STATE_KEYS
from ._train_state import check_train_state, generator
from ._validate import check_choice, check_float, check_int, check_rng, check_writable
from .checkpoint import save_model
from .datasets import BINARIZE, binarize_static
from .errors import ConfigError, TrainingDiverged
from .evaluation import elbo, prepare_data
from .optim import Adam

EVAL_SEED = 12345  # the eps of the per-epoch validation: the same draws every epoch, apart from the loop's rng


def clip_grad_norm(flat_grads, max_norm):
    """Scale the gradients in place so that their global L2 norm is at most `max_norm`.

    Shapes: flat_grads: (P,), all the gradients in one buffer (``model._flat_grads``).

    Returns
    -------
    float
        The norm before clipping (NaN or inf when the gradients are).
    """
    norm = float(np.sqrt(np.dot(flat_grads, flat_grads)))
    if norm > max_norm:
        flat_grads *= flat_grads.dtype.type(max_norm / norm)
    return norm


class _Shuffled:
    """Minibatches (B, D) of prepared data (uint8 or float rows) in a new random order each epoch.

    The order is ``rng.permutation(N)`` (not a shuffle of the previous order), so the generator's state
    alone determines every later epoch. The yielded array is reused.
    """

    def __init__(self, x, batch_size, dtype, binarize, rng):
        self.x, self.batch_size, self.binarize, self.rng = x, batch_size, binarize, rng
        b, D = min(batch_size, len(x)), x.shape[1]
        self.src = np.empty((b, D), np.uint8) if x.dtype == np.uint8 else None
        self.out = np.empty((b, D), dtype)
        self.c255 = self.out.dtype.type(255)
        if binarize == "dynamic":
            self.noise, self.on = np.empty((b, D), dtype), np.empty((b, D), bool)

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.x))
        for start in range(0, len(self.x), self.batch_size):
            idx = order[start:start + self.batch_size]
            B = len(idx)
            out = self.out[:B]
            if self.src is None:
                np.take(self.x, idx, axis=0, out=out, mode="clip")
            else:   # out = x[idx] / 255 in one pass
                _kernels.K.gather_unit(self.x, idx, self.c255, self.src[:B], out)
            if self.binarize == "dynamic":  # h ~ Bernoulli(x): on when u < x, u uniform
                noise = self.rng.random(dtype=out.dtype, out=self.noise[:B])
                np.copyto(out, np.less(noise, out, out=self.on[:B]))
            yield out


def train(model, x_train, x_val=None, epochs=10, batch_size=128, optimizer=None, seed=0, beta_warmup=0,
          clip_grad=None, callbacks=(), progress=True, *, binarize="none", checkpoint=None, state=None,
          info=None, where=None, threads=None):
    """Train `model` by minibatch gradient descent on its objective (the negative ELBO, or L_k); returns the history.

    Shapes: x_train: (N, D) floats in [0, 1] (the model's dtype avoids a copy) or uint8 images (N, 28, 28) /
    (N, D) with grey levels 0-255 (kept as uint8, scaled batch by batch); x_val likewise, (M, D).

    Parameters
    ----------
    model : VAE or Autoencoder
        Updated in place.
    x_train, x_val : numpy.ndarray
        Training data; optional validation data, evaluated after every epoch.
    epochs : int
        The total number of epochs (a resumed run continues up to it).
    batch_size : int
    optimizer : Adam or SGD, optional
        Built on ``model.params``; default ``Adam(model.params, lr=1e-3)``.
    seed : int
        Seeds the loop's generator (shuffling, dynamic binarization, eps); the same seed, data and model give
        the same parameters, bit for bit.
    beta_warmup : float
        Epochs over which ``model.kl_weight`` rises linearly from 0 to 1, every step (0: no warm-up).
    clip_grad : float, optional
        Clip the global gradient norm to this value.
    callbacks : sequence of callables
        ``callback(model, history)`` after every epoch (``history[-1]`` is the epoch just done); a callback
        that returns True (the object True, not any truthy value) stops training.
    progress : bool
        A tqdm progress bar in a notebook or a terminal; where stderr is not a terminal (a log file, CI),
        a line every ~10 s: epoch, batch i/n, the running loss, images/s (see :mod:`vae_numpy._progress`).
    binarize : {"none", "static", "dynamic"}
        For uint8 data (see :mod:`vae_numpy.datasets`); x_val is then binarized once, statically.
    checkpoint : str or os.PathLike, optional
        After every epoch, write a training checkpoint here, atomically (model, optimizer, loop state).
    state : dict, optional
        The ``train_state`` of a checkpoint (:func:`vae_numpy.checkpoint.load_checkpoint`) to continue from,
        with that checkpoint's model and optimizer; its batch_size, seed, beta_warmup, clip_grad and
        binarize replace the arguments. Checked key by key first (a CheckpointError names a bad key).
    info : dict, optional
        JSON-serializable facts kept in the checkpoint's train_state (e.g. the dataset's name).
    where : str, optional
        Where `state` came from (a checkpoint's path), for the messages when it is invalid.
    threads : "auto" or int, optional
        BLAS threads for the matmuls: "auto" times the steps at 1, 2, ... threads and re-checks as the load
        changes (see :mod:`vae_numpy._threads`); N pins N threads, which makes the run reproducible to the bit.
        Default: a resumed run's pinned count, else ``$VAE_NUMPY_THREADS``, else "auto".

    Returns
    -------
    list of dict
        One per epoch: ``epoch``, ``train_loss`` (mean training objective, warm-up included),
        ``reconstruction``, ``kl`` (training means), ``val_loss`` (reconstruction + beta * KL on x_val),
        ``val_reconstruction``, ``val_kl`` (None without x_val), ``kl_weight`` (at the epoch's end),
        ``seconds`` (training steps only), ``threads`` (the BLAS thread count of most of the epoch's steps) and
        ``thread_steps`` ({"1": steps, "2": steps}). Losses in nats per example.

    Raises
    ------
    TrainingDiverged
        The loss became NaN or inf; the message names the epoch and batch. The checkpoint on disk (the last
        epoch that ended well) is left as it was.
    """
    if state is not None:
        check_train_state(state, "state" if where is None else where)
        batch_size, seed, binarize = state["batch_size"], state["seed"], state["binarize"]
        beta_warmup, clip_grad = state["beta_warmup"], state["clip_grad"]
    epochs = check_int("epochs", epochs)
    batch_size = check_int("batch_size", batch_size)
    beta_warmup = check_float("beta_warmup", beta_warmup, minimum=0.0)
    clip = None if clip_grad is None else check_float("clip_grad", clip_grad, minimum=0.0, exclusive=True)
    check_choice("binarize", binarize, BINARIZE)
    if checkpoint is not None:   # found now, not after an epoch
        if Path(checkpoint).is_dir():
            raise ConfigError(f"checkpoint={str(checkpoint)!r} is a folder; name a file in it, e.g. "
                              f"{str(Path(checkpoint) / 'model.npz')!r}")
        check_writable(Path(checkpoint).parent, f"checkpoint={str(checkpoint)!r}")
    x = prepare_data(model, x_train, "x_train")
    if binarize == "static":
        if x.dtype != np.uint8:
            raise ConfigError("binarize='static' needs uint8 images (grey levels 0-255); got floats")
        x = binarize_static(x)
    xv = None
    if x_val is not None:
        x_val = np.asarray(x_val)
        xv = prepare_data(model, x_val, "x_val", binarize if x_val.dtype == np.uint8 else "none")
    if threads is None and state is not None and state.get("threads", "auto") != "auto":
        threads = state["threads"]   # a run pinned to N threads resumes pinned to N: bit for bit
    tuner = ThreadTuner(threads)
    opt = Adam(model.params, lr=1e-3) if optimizer is None else optimizer
    if set(getattr(opt, "params", {})) != set(model.params) or any(
            opt.params[n] is not p for n, p in model.params.items()):
        raise ConfigError("optimizer must be built on this model's parameters: Adam(model.params, lr=...)")
    if state is None:
        rng, history, start = check_rng(seed), [], 0
    else:
        if state.get("n_train") != len(x):
            raise ConfigError(f"the checkpoint was trained on {state.get('n_train')} examples, x_train has "
                              f"{len(x)}; resume with the same training set")
        rng, history, start = generator(state["rng"]), list(state["history"]), int(state["epoch"])
    batches = _Shuffled(x, batch_size, model.dtype, binarize, rng)
    nb = len(batches)
    warm_steps = beta_warmup * nb
    settings = {**(info or {}), "seed": seed, "batch_size": batch_size, "beta_warmup": beta_warmup,
                "clip_grad": clip, "binarize": binarize, "n_train": len(x), "threads": tuner.mode}
    draw_eps = model.kind == "vae"
    rows = min(batch_size, len(x))   # eps: (B, Z), or (B, k, Z) for a k-sample objective (VAE.eps_shape)
    if getattr(model, "k_samples", False):
        model.check_k_memory(rows)   # before the (B, k, Z) noise and the decoder's B k rows are allocated
    eps = np.empty(model.eps_shape(rows) if draw_eps else (rows, model.latent_dim), model.dtype)
    bar = make_progress(nb, (epochs - start) * nb, progress)   # a bar, or a line every ~10 s in a log
    tuner.start()
    try:
        for epoch in range(start + 1, epochs + 1):
            if bar is not None:
                bar.epoch(epoch, epochs)
            t0 = time.perf_counter()
            tuner.pause()
            sums = np.zeros(3)  # loss, reconstruction, kl, each times the batch size
            for b, xb in enumerate(batches, start=1):
                B = len(xb)
                step = (epoch - 1) * nb + b - 1
                if warm_steps > 0:
                    model.kl_weight = min(1.0, (step + 1) / warm_steps)
                e = rng.standard_normal(dtype=model.dtype, out=eps[:B]) if draw_eps else None
                loss = model._forward(xb, e)
                if not np.isfinite(loss):
                    _diverged(loss, epoch, epochs, b, nb, checkpoint, start, history)
                model.backward()
                if clip is not None:
                    clip_grad_norm(model._flat_grads, clip)
                opt.step(model.grads)
                tuner.tick(B)
                last = model.last
                sums += (loss * B, last["reconstruction"] * B, last["kl"] * B)
                if bar is not None:
                    bar.note = tuner.label
                    bar.step(b, loss, B)
            seconds = time.perf_counter() - t0
            if not np.isfinite(model._flat_params).all():
                _diverged(float("nan"), epoch, epochs, nb, nb, checkpoint, start, history)
            history.append({**_record(model, epoch, sums / len(x), xv, seconds), **tuner.epoch_summary()})
            if checkpoint is not None:
                train_state = {"epoch": epoch, "epochs": epochs, "rng": rng.bit_generator.state,
                               "history": history, **settings}
                kl_weight, model.kl_weight = model.kl_weight, 1.0
                save_model(model, checkpoint, opt, train_state)
                model.kl_weight = kl_weight
            if any([cb(model, history) is True for cb in callbacks]):
                break
    finally:
        tuner.close()
        model.kl_weight = 1.0
        if bar is not None:
            bar.close()
    return history


def _record(model, epoch, means, xv, seconds):
    """One history entry; evaluates x_val with fixed noise (EVAL_SEED) and kl_weight 1."""
    rec = {"epoch": epoch, "train_loss": float(means[0]), "reconstruction": float(means[1]),
           "kl": float(means[2]), "val_loss": None, "val_reconstruction": None, "val_kl": None,
           "kl_weight": float(model.kl_weight), "seconds": seconds}
    if xv is not None:
        v = elbo(model, xv, seed=EVAL_SEED)
        rec.update(val_loss=v["reconstruction"] + model.beta * v["kl"], val_reconstruction=v["reconstruction"],
                   val_kl=v["kl"])
    return rec


def _diverged(loss, epoch, epochs, batch, nb, checkpoint, start, history):
    kept = ""
    if checkpoint is not None and history and Path(checkpoint).is_file():
        kept = f"; the last good checkpoint {checkpoint} (epoch {history[-1]['epoch']}) is kept"
    elif checkpoint is not None:
        kept = f"; no checkpoint was written to {checkpoint}"
    exc = TrainingDiverged(f"training diverged: the loss became {loss} at epoch {epoch} of {epochs}, batch "
                           f"{batch} of {nb}{kept}; lower the learning rate, set clip_grad (e.g. 10), or warm "
                           "up the KL with beta_warmup")
    exc.epoch, exc.batch = epoch, batch
    raise exc


def resume(path, x_train, x_val=None, epochs=None, callbacks=(), progress=True, checkpoint="same"):
    """Continue the training run saved at `path` up to `epochs` in total (default: its planned total).

    Shapes: as :func:`train`; x_train must be the run's training set. The checkpoint keeps being updated
    (``checkpoint="same"``), or another path, or None.

    Returns
    -------
    model, history
        The model (a new object) and the whole history, earlier epochs included.
    """
    from .checkpoint import load_checkpoint
    ck = load_checkpoint(path)
    if not ck.train_state or ck.optimizer is None:
        raise ConfigError(f"{path} is a model file, not a training checkpoint (it holds no optimizer or loop "
                          "state); train a new model instead")
    state = check_train_state(ck.train_state, str(path))
    epochs = state["epochs"] if epochs is None else epochs
    info = {k: v for k, v in state.items() if k not in _STATE_KEYS}
    history = train(ck.model, x_train, x_val, epochs=epochs, optimizer=ck.optimizer, callbacks=callbacks,
                    progress=progress, checkpoint=path if checkpoint == "same" else checkpoint, state=state,
                    info=info, where=str(path))
    return ck.model, history
