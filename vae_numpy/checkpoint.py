"""Checkpoints: a model (and, for training, its optimizer and loop state) in one ``.npz``, without pickle.

Layout of the file (every entry a plain array; strings are 0-d unicode arrays):

    format        "vae_numpy.checkpoint/1"
    config        JSON: model.config(), e.g. {"kind": "vae", "input_dim": 784, "hidden_dims": [400], ...}
    param.<name>  one array per model parameter, e.g. param.enc1.W: (D, H)
    optim_meta    JSON, optional: {"class": "Adam", "state": {"t": ..., "lr": ..., ...}} (the numbers)
    optim.<key>   optional: the optimizer's arrays, e.g. optim.m.enc1.W: (D, H)
    train_state   JSON, optional: {"epoch", "epochs", "history", "rng", "seed", "batch_size", "dataset", ...}

Writing is atomic (:mod:`vae_numpy._atomic`): the archive goes to a temporary file in the target's folder, is
flushed and fsync'ed, then ``os.replace`` puts it in place, so a crash, a kill or a full disk half-way leaves the
previous file untouched. Reading (:mod:`vae_numpy._npz`) never unpickles and never trusts a size: member names
and declared sizes are checked before any member is opened, the config is bounded (MAX_PARAMS parameters) and
each array's .npy header is checked against :func:`vae_numpy._network.param_shapes` before its data is read.
A garbage, truncated, pickle-bearing, foreign or crafted file raises :class:`CheckpointError`, naming it.
"""

from __future__ import annotations

import json
import lzma
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._atomic import write_atomic
from ._network import MAX_PARAMS, param_shapes
from ._npz import MAX_HEADER, Archive, expect
from ._validate import check_dtype
from .errors import CheckpointError, ConfigError
from .models import VAE, Autoencoder
from .optim import SGD, Adam

FORMAT = "vae_numpy.checkpoint/1"
KINDS = {"vae": VAE, "ae": Autoencoder}
OPTIMIZERS = {"Adam": Adam, "SGD": SGD}
OPTIMIZER_ARRAYS = {"Adam": ("m", "v"), "SGD": ("velocity",)}   # optim.<prefix>.<param name>, one per parameter
_TEXTS = ("format", "config", "optim_meta", "train_state")
MAX_CONFIG = 2 ** 16             # characters of the config or the optimizer's numbers (JSON)
MAX_TRAIN_STATE = 2 ** 24        # characters of the training state (history: ~250 per epoch)
MAX_MEMBER = 8 * MAX_PARAMS + MAX_HEADER   # the largest member a valid checkpoint can hold (float64)
# what a config may hold (model.config() keys), per kind; anything else makes the file foreign
_CONFIG_KEYS = {
    "vae": {"input_dim", "hidden_dims", "latent_dim", "likelihood", "beta", "activation", "dtype", "seed",
            "decoder_sigma", "init", "objective", "k"},   # objective, k: absent from older files (elbo, 1)
    "ae": {"input_dim", "hidden_dims", "latent_dim", "likelihood", "activation", "dtype", "seed",
           "decoder_sigma", "init"},
}
# the architecture as data (arch != "mlp"): its name, options and layer lists (JSON layer configs, nn.from_config)
_ARCH_KEYS = {"arch", "arch_options", "encoder", "decoder", "output"}
for _keys in _CONFIG_KEYS.values():
    _keys |= _ARCH_KEYS
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, ValueError, OSError, EOFError, KeyError,
                TypeError, UnicodeDecodeError, NotImplementedError, RuntimeError)


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns.

    model : VAE or Autoencoder, with the saved parameters.
    optimizer : Adam or SGD over ``model.params`` with its saved state, or None (a bare model file).
    train_state : the training loop's state (see :func:`vae_numpy.train.train`), {} for a bare model file.
    path : where it was read from.
    """

    model: object
    optimizer: object = None
    train_state: dict = field(default_factory=dict)
    path: Path | None = None


# ------------------------------------------------------------------------------------------- save
def save_model(model, path, optimizer=None, train_state=None):
    """Write `model` (and optionally its optimizer and the training loop's state) to `path`, atomically.

    Shapes: every ``model.params[name]`` is stored as ``param.<name>`` with its own shape.

    Parameters
    ----------
    model : VAE or Autoencoder
    path : str or os.PathLike
        The ``.npz`` file to write (its folder must exist); an existing file is replaced only once the new
        one is complete on disk.
    optimizer : Adam or SGD, optional
        Saved with ``state_dict()``: its arrays as ``optim.<key>``, its numbers in ``optim_meta``.
    train_state : dict, optional
        JSON-serializable loop state (epoch, history, RNG state, ...), stored as ``train_state``.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    WriteError
        The disk or quota is full (one line naming the file); the previous file at `path` is intact.
    """
    path = Path(path)
    arrays = {"format": np.array(FORMAT), "config": np.array(json.dumps(model.config()))}
    for name, value in model.params.items():
        arrays[f"param.{name}"] = value
    if optimizer is not None:
        numbers = {}
        for key, value in optimizer.state_dict().items():
            if isinstance(value, np.ndarray):
                arrays[f"optim.{key}"] = value
            else:
                numbers[key] = list(value) if isinstance(value, tuple) else value
        arrays["optim_meta"] = np.array(json.dumps({"class": type(optimizer).__name__, "state": numbers}))
    if train_state is not None:
        arrays["train_state"] = np.array(json.dumps(train_state))
    write_atomic(path, lambda f: np.savez(f, **arrays), hint="free some space, or save elsewhere (--out)")
    return path


def check_replaceable(path) -> None:
    """Refuse (CheckpointError) to replace `path` unless it is missing or a bare model file of vae_numpy.

    A training checkpoint holds what vn.resume needs (optimizer, loop state); a file of another kind may be
    anything. Used by ``model.save(path)`` unless ``overwrite=True``; reads only the zip's member list.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; name a file, e.g. {path / 'model.npz'}")
    if not path.exists():
        return
    try:
        with Archive(path, MAX_MEMBER) as ar:
            keys = ar.keys
            bare = {"format", "config"} <= keys and all(k in ("format", "config") or k.startswith("param.")
                                                        for k in keys)
            if bare and ar.text("format", 100) == FORMAT:
                return
    except (*_READ_ERRORS, CheckpointError):
        keys = set()
    if "train_state" in keys or "optim_meta" in keys:
        raise CheckpointError(f"{path} holds a training checkpoint (optimizer and loop state, which vn.resume "
                              "needs); save the model to another file, or pass overwrite=True to replace it")
    raise CheckpointError(f"{path} exists and is not a model file of vae_numpy; save to another file, or pass "
                          "overwrite=True to replace it")


# ------------------------------------------------------------------------------------------- load
def load_model(path):
    """Read the model stored at `path` (a model file or a training checkpoint).

    Returns
    -------
    VAE or Autoencoder
        Built from the saved config, holding the saved parameters.

    Raises
    ------
    CheckpointError
        Missing, unreadable, truncated, pickle-bearing or foreign file, or parameters that do not fit the
        config (the message names the file and what is wrong).
    """
    return load_checkpoint(path).model


def load_checkpoint(path):
    """Read everything stored at `path`: the model, the optimizer (if saved) and the training state.

    The archive is read without trusting it (see :mod:`vae_numpy._npz`): its member names and declared sizes
    are checked before any member is opened, the config is bounded (at most MAX_PARAMS parameters) and every
    array's .npy header is checked against the shapes the config implies (:func:`param_shapes`) before its
    data is read. The training state is returned as stored; :func:`vae_numpy._train_state.check_train_state`
    validates it when a run is resumed.

    Returns
    -------
    Checkpoint
        ``.model``, ``.optimizer`` (None for a bare model file), ``.train_state`` ({} if none), ``.path``.

    Raises
    ------
    CheckpointError
        As :func:`load_model`.
    """
    path = Path(path)
    if not path.is_file():
        why = "is a folder, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {str(path)!r} {why}; pass the model.npz of a training run")
    try:
        with Archive(path, MAX_MEMBER) as ar:
            return _decode(path, ar)
    except MemoryError:
        raise CheckpointError(f"{path}: not enough memory to load it (the config asks for "
                              f"{_n_params_hint(path)}); load it on a larger machine") from None
    except _READ_ERRORS as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not a readable vae_numpy checkpoint ({_describe(exc)}); it is corrupt, "
                              "truncated or of another kind") from None


def _n_params_hint(path):
    try:
        with Archive(path, MAX_MEMBER) as ar:
            n = sum(math.prod(s) for s in param_shapes(json.loads(ar.text("config", MAX_CONFIG))).values())
        return f"{n:,} parameters"
    except Exception:   # only a hint for the message above
        return "more than fits"


def _describe(exc) -> str:
    text = str(exc).split("\n")[0] or type(exc).__name__
    return text


def _json(path, ar, key, max_chars, required=True):
    if key not in ar.keys:
        if required:
            raise CheckpointError(f"{path}: the entry {key!r} is missing; the file is truncated or not a "
                                  "vae_numpy checkpoint")
        return None
    try:
        value = json.loads(ar.text(key, max_chars))
    except RecursionError:
        raise CheckpointError(f"{path}: the entry {key!r} is nested too deeply to be ours") from None
    except ValueError as exc:
        raise CheckpointError(f"{path}: the entry {key!r} is not valid JSON ({_describe(exc)})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: the entry {key!r} should be a JSON object")
    return value


def _decode(path: Path, ar: Archive) -> Checkpoint:
    keys = ar.keys
    if "format" not in keys:
        raise CheckpointError(f"{path}: not a vae_numpy checkpoint (no 'format' entry; it holds "
                              f"{', '.join(sorted(keys)[:6]) or 'nothing'})")
    strange = sorted(k for k in keys if k not in _TEXTS and not k.startswith(("param.", "optim.")))
    if strange:
        raise CheckpointError(f"{path}: unknown entries {strange[:5]} (not read); a vae_numpy checkpoint holds "
                              "only format, config, param.*, optim_meta, optim.* and train_state")
    fmt = ar.text("format", 100)
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: format {fmt!r} is not supported (this vae-numpy reads {FORMAT!r}); "
                              "it was written by another program or another version")
    config = _json(path, ar, "config", MAX_CONFIG)
    kind = _check_config(config, path)
    try:
        shapes = param_shapes(config)
        dtype = check_dtype(config.get("dtype", "float32"))
    except ConfigError as exc:
        raise CheckpointError(f"{path}: the config describes no valid model ({exc})") from None
    meta = _json(path, ar, "optim_meta", MAX_CONFIG, required=False)
    expected = {f"param.{name}": shape for name, shape in shapes.items()}
    if meta is not None:
        cls = meta.get("class")
        if cls not in OPTIMIZERS or not isinstance(meta.get("state"), dict):
            raise CheckpointError(f"{path}: optimizer {cls!r} is unknown; expected one of {', '.join(OPTIMIZERS)}")
        for prefix in OPTIMIZER_ARRAYS[cls]:
            expected.update({f"optim.{prefix}.{name}": shape for name, shape in shapes.items()})
    arrays = keys - set(_TEXTS)
    if arrays != set(expected):
        missing, extra = sorted(set(expected) - arrays), sorted(arrays - set(expected))
        raise CheckpointError(f"{path}: the stored arrays do not match the config (missing {missing[:5]}, "
                              f"unexpected {extra[:5]}); unexpected entries are not read")
    for key, shape in expected.items():     # every declared size, then every header, before any data
        most = MAX_HEADER + math.prod(shape) * dtype.itemsize
        if ar.size(key) > most:
            raise CheckpointError(f"{path}: {key} declares {ar.size(key):,} bytes where the config implies at most "
                                  f"{most:,}; it was not read")
    for key, shape in expected.items():
        ar_shape, fortran, ar_dtype = ar.header(key)
        expect(key, ar_shape, fortran, ar_dtype, shape, dtype)
    model = build_model(config, path)
    assert kind == model.kind
    for name, target in model.params.items():
        _finite(path, f"param.{name}", ar.read_into(f"param.{name}", target))
    optimizer = None if meta is None else _optimizer(path, ar, meta, model, dtype)
    train_state = _json(path, ar, "train_state", MAX_TRAIN_STATE, required=False) or {}
    return Checkpoint(model, optimizer, train_state, path)


def _finite(path, key, value):
    if not np.isfinite(value).all():
        raise CheckpointError(f"{path}: {key} holds NaN or inf")
    return value


def _check_config(config, path):
    kind = config.get("kind")
    if kind not in KINDS:
        raise CheckpointError(f"{path}: the config's kind {kind!r} is unknown; expected one of "
                              f"{', '.join(map(repr, KINDS))}")
    unknown = set(config) - _CONFIG_KEYS[kind] - {"kind"}
    if unknown:
        raise CheckpointError(f"{path}: the config has unknown keys {sorted(unknown)}")
    return kind


def build_model(config, path="<config>"):
    """A fresh VAE or Autoencoder from a ``model.config()`` dict (``"kind"`` selects the class).

    Raises
    ------
    CheckpointError
        Unknown kind, unknown keys, or values the model refuses.
    """
    if not isinstance(config, dict) or config.get("kind") not in KINDS:
        kind = config.get("kind") if isinstance(config, dict) else None
        raise CheckpointError(f"{path}: the config's kind {kind!r} is unknown; expected one of "
                              f"{', '.join(map(repr, KINDS))}")
    kind = config["kind"]
    kwargs = {k: v for k, v in config.items() if k != "kind"}
    unknown = set(kwargs) - _CONFIG_KEYS[kind]
    if unknown:
        raise CheckpointError(f"{path}: the config has unknown keys {sorted(unknown)}")
    try:
        return KINDS[kind](**kwargs)
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the config describes no valid model ({exc})") from None


def _optimizer(path, ar, meta, model, dtype):
    cls = meta["class"]
    state = dict(meta["state"])
    for prefix in OPTIMIZER_ARRAYS[cls]:
        for name, target in model.params.items():
            key = f"{prefix}.{name}"
            state[key] = _finite(path, f"optim.{key}", ar.read_into(f"optim.{key}", np.empty_like(target)))
    try:
        opt = OPTIMIZERS[cls](model.params, lr=float(state.get("lr", 1e-3)))
        opt.load_state_dict(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the optimizer state is incomplete or invalid ({_describe(exc)})") \
            from None
    return opt
