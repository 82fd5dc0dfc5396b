"""Checkpoints: a model (and, for training, its optimizer and loop state) in one ``.npz``, without pickle.

Layout of the file (every entry a plain array; strings are 0-d unicode arrays):

    format        "vae_numpy.checkpoint/1"
    config        JSON: model.config(), e.g. {"kind": "vae", "input_dim": 784, "hidden_dims": [400], ...}
    param.<name>  one array per model parameter, e.g. param.enc1.W: (D, H)
    optim_meta    JSON, optional: {"class": "Adam", "state": {"t": ..., "lr": ..., ...}} (the numbers)
    optim.<key>   optional: the optimizer's arrays, e.g. optim.m.enc1.W: (D, H)
    train_state   JSON, optional: {"epoch", "epochs", "history", "rng", "seed", "batch_size", "dataset", ...}

Writing is atomic: the archive goes to a temporary file in the target's folder, is flushed and fsync'ed, then
``os.replace`` puts it in place, so a crash or a kill half-way leaves the previous file untouched (at worst a
hidden ``.<name>.*.tmp`` file stays behind). Reading uses ``np.load(allow_pickle=False)``: nothing is ever
unpickled, and a garbage, truncated, pickle-bearing or foreign file raises :class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CheckpointError, ConfigError
from .models import VAE, Autoencoder
from .optim import SGD, Adam

FORMAT = "vae_numpy.checkpoint/1"
KINDS = {"vae": VAE, "ae": Autoencoder}
OPTIMIZERS = {"Adam": Adam, "SGD": SGD}
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
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError, TypeError,
                UnicodeDecodeError)


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
    _write_atomic(path, arrays)
    return path


def _write_atomic(path: Path, arrays: dict) -> None:
    """np.savez into a temporary file beside `path`, fsync, then os.replace; the temporary goes on failure."""
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: never leave a half-written file behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort: not every file system allows it)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        entries = _read_entries(path)
    except _READ_ERRORS as exc:
        raise CheckpointError(f"{path}: not a readable vae_numpy checkpoint ({_describe(exc)}); it is corrupt, "
                              "truncated or of another kind") from None
    return _decode(path, entries)


def _read_entries(path: Path) -> dict:
    """Every array of the archive, read eagerly with pickles refused."""
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise ValueError("it is a single .npy array, not an .npz archive")
    with z:
        return {key: z[key] for key in z.files}


def _describe(exc) -> str:
    text = str(exc).split("\n")[0] or type(exc).__name__
    if "Object arrays" in text:
        return "it holds object arrays, i.e. pickles, which are never loaded"
    if "pickle" in text:
        return "it is neither an .npz archive nor an .npy array, and it is never unpickled"
    return text


def _text(path, entries, key, required=True):
    if key not in entries:
        if required:
            raise CheckpointError(f"{path}: the entry {key!r} is missing; the file is truncated or not a "
                                  "vae_numpy checkpoint")
        return None
    value = entries[key]
    if value.shape != () or value.dtype.kind != "U":
        raise CheckpointError(f"{path}: the entry {key!r} should be a string, got {value.dtype} {value.shape}")
    return str(value)


def _json(path, entries, key, required=True):
    text = _text(path, entries, key, required)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: the entry {key!r} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: the entry {key!r} should be a JSON object")
    return value


def _decode(path: Path, entries: dict) -> Checkpoint:
    if "format" not in entries:
        raise CheckpointError(f"{path}: not a vae_numpy checkpoint (no 'format' entry; it holds "
                              f"{', '.join(sorted(entries)[:6]) or 'nothing'})")
    fmt = _text(path, entries, "format")
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: format {fmt!r} is not supported (this vae-numpy reads {FORMAT!r}); "
                              "it was written by another program or another version")
    model = build_model(_json(path, entries, "config"), path)
    names = set(model.params)
    stored = {k[len("param."):] for k in entries if k.startswith("param.")}
    if stored != names:
        missing, extra = sorted(names - stored), sorted(stored - names)
        raise CheckpointError(f"{path}: the parameters do not match the config (missing {missing}, "
                              f"unexpected {extra})")
    for name, target in model.params.items():
        target[...] = _array(path, entries, f"param.{name}", target)
    optimizer = _optimizer(path, entries, model)
    train_state = _json(path, entries, "train_state", required=False) or {}
    return Checkpoint(model, optimizer, train_state, path)


def _array(path, entries, key, like):
    """entries[key], checked to be a finite float array of like's shape and dtype."""
    value = entries.get(key)
    if value is None:
        raise CheckpointError(f"{path}: the entry {key!r} is missing")
    if value.shape != like.shape or value.dtype != like.dtype:
        raise CheckpointError(f"{path}: {key} is {value.dtype} {value.shape}; the config needs "
                              f"{like.dtype} {like.shape}")
    if not np.isfinite(value).all():
        raise CheckpointError(f"{path}: {key} holds NaN or inf")
    return value


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


def _optimizer(path, entries, model):
    meta = _json(path, entries, "optim_meta", required=False)
    if meta is None:
        return None
    cls = OPTIMIZERS.get(meta.get("class"))
    state = meta.get("state")
    if cls is None or not isinstance(state, dict):
        raise CheckpointError(f"{path}: optimizer {meta.get('class')!r} is unknown; expected one of "
                              f"{', '.join(OPTIMIZERS)}")
    state = dict(state)
    prefix = "optim."
    for key in entries:
        if key.startswith(prefix):
            name = key[len(prefix):].split(".", 1)[-1]
            if name not in model.params:
                raise CheckpointError(f"{path}: {key} belongs to no parameter of the model")
            state[key[len(prefix):]] = _array(path, entries, key, model.params[name])
    try:
        opt = cls(model.params, lr=float(state.get("lr", 1e-3)))
        opt.load_state_dict(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: the optimizer state is incomplete or invalid ({_describe(exc)})") \
            from None
    return opt
