"""The training loop's saved state, checked key by key before a run is resumed.

A training checkpoint's ``train_state`` (JSON) holds what :func:`vae_numpy.train.train` needs to continue a
run bit for bit:

    epoch        int >= 0, the epochs done          epochs       int >= 1, the planned total
    rng          the loop generator's ``bit_generator.state`` (a dict, e.g. {"bit_generator": "PCG64", ...})
    history      list of one dict per epoch done: {"epoch": 1, "train_loss": ..., "val_loss": ... or None, ...}
    seed         int >= 0 or None                   batch_size   int >= 1
    beta_warmup  number >= 0                         clip_grad    None or number > 0
    binarize     "none", "static" or "dynamic"       n_train      int >= 1, the training set's size
    dataset, data  optional: the dataset's name and the folder it was read from (str or None)
    threads      optional: "auto" or the pinned BLAS thread count (an int >= 1) of the run

Other keys are kept as they are (facts a caller stored with ``info=``). A value of the wrong type (epoch "two",
history "abc", a negative batch size, an rng state numpy refuses) raises a CheckpointError that names the key,
the value and the fix, never a TypeError or KeyError from deep inside the loop.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .errors import CheckpointError

BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")
BINARIZE = ("none", "static", "dynamic")
STATE_KEYS = ("epoch", "epochs", "rng", "history", "seed", "batch_size", "beta_warmup", "clip_grad", "binarize",
              "n_train")
# numbers each history entry holds (None allowed for the validation ones: a run without x_val)
_HISTORY_NUMBERS = ("train_loss", "reconstruction", "kl")
_HISTORY_OPTIONAL = ("val_loss", "val_reconstruction", "val_kl", "kl_weight", "seconds")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_train_state(state, where="the training state") -> dict:
    """Check `state` (a checkpoint's train_state) key by key; returns it unchanged.

    Raises
    ------
    CheckpointError
        "<where>: train_state['epoch'] is 'two'; it must be an integer >= 0 ..." for the first bad key.
    """
    def bad(key, why):
        value = repr(state[key]) if isinstance(state, dict) and key in state else "missing"
        if len(value) > 60:
            value = value[:57] + "..."
        shown = f"is {value}" if value != "missing" else "is missing"
        return CheckpointError(f"{where}: train_state[{key!r}] {shown}; {why}. The file was edited or damaged: "
                               "resume from another checkpoint of the run, or start a new run")

    if not isinstance(state, dict):
        raise CheckpointError(f"{where}: the training state is a {type(state).__name__}, not a dict; pass "
                              "load_checkpoint(path).train_state")
    for key in STATE_KEYS:
        if key not in state:
            raise bad(key, "a training checkpoint written by vae-numpy always has it")
    checks = {
        "epoch": (lambda v: _is_int(v) and v >= 0, "it must be an integer >= 0 (the epochs done)"),
        "epochs": (lambda v: _is_int(v) and v >= 1, "it must be an integer >= 1 (the planned total)"),
        "seed": (lambda v: v is None or (_is_int(v) and v >= 0), "it must be an integer >= 0 or null"),
        "batch_size": (lambda v: _is_int(v) and v >= 1, "it must be an integer >= 1"),
        "n_train": (lambda v: _is_int(v) and v >= 1, "it must be an integer >= 1 (the training set's size)"),
        "beta_warmup": (lambda v: _is_number(v) and v >= 0, "it must be a number >= 0 (epochs)"),
        "clip_grad": (lambda v: v is None or (_is_number(v) and v > 0), "it must be a number > 0 or null"),
        "binarize": (lambda v: isinstance(v, str) and v in BINARIZE, f"it must be one of {', '.join(BINARIZE)}"),
        "dataset": (lambda v: v is None or isinstance(v, str), "it must be a dataset's name or null"),
        "data": (lambda v: v is None or isinstance(v, str), "it must be a folder's path or null"),
        "threads": (lambda v: v == "auto" or (_is_int(v) and 1 <= v <= 1024),
                    "it must be \"auto\" or a BLAS thread count from 1 to 1024"),
    }
    for key, (ok, why) in checks.items():
        if key in state and not ok(state[key]):
            raise bad(key, why)
    try:
        generator(state["rng"])
    except Exception as exc:   # numpy raises TypeError, ValueError, KeyError, IndexError, OverflowError here
        raise bad("rng", f"numpy cannot restore it as a random generator's state ({str(exc)[:80]})") from None
    history = state["history"]
    if not isinstance(history, list) or len(history) != state["epoch"]:
        raise bad("history", f"it must be a list of {state['epoch']} per-epoch dicts (one per epoch done)")
    for i, row in enumerate(history):
        fine = isinstance(row, dict) and row.get("epoch") == i + 1 and _is_int(row.get("epoch"))
        fine = fine and all(_is_number(row.get(k)) for k in _HISTORY_NUMBERS)
        fine = fine and all(row.get(k) is None or _is_number(row[k]) for k in _HISTORY_OPTIONAL)
        if not fine:
            raise bad("history", f"its entry {i} ({str(row)[:60]}) must be a dict with epoch {i + 1} and the "
                                 f"numbers {', '.join(_HISTORY_NUMBERS)}")
    return state


def generator(rng_state) -> np.random.Generator:
    """A numpy Generator restored from ``bit_generator.state`` (a dict, as stored in a checkpoint).

    Raises ValueError (unknown bit generator), or numpy's TypeError/ValueError/KeyError for a bad state.
    """
    name = rng_state.get("bit_generator") if isinstance(rng_state, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(f"bit generator {name!r} is not one of {', '.join(BIT_GENERATORS)}")
    bitgen = getattr(np.random, name)()
    bitgen.state = rng_state
    return np.random.Generator(bitgen)


def saved_data_dir(name, saved, splits=("train", "test")):
    """The data folder a training state recorded, if it still holds `name`, verified by checksum.

    Returns
    -------
    (folder, note)
        (saved, None) when every split of `name` is found there and verifies; (None, None) when nothing was
        saved (or the dataset is the embedded one); (None, note) when the folder no longer fits, with a line
        saying so (the caller then looks in the usual places).
    """
    from pathlib import Path

    from ._registry import _REGISTRY, verify_file
    from .datasets import EMBEDDED, locate
    from .errors import VAENumpyError
    if not isinstance(saved, str) or not saved or not isinstance(name, str) or name == EMBEDDED or \
            name not in _REGISTRY:
        return None, None
    try:
        home = {Path(saved).resolve(), (Path(saved) / name).resolve()}
        for split in splits:
            loc = locate(name, split, saved)
            if not loc.found or loc.folder.resolve() not in home:
                raise FileNotFoundError(f"no {split} files there any more")
            for path, spec in zip(loc.files, _REGISTRY[name].files[split], strict=True):
                verify_file(path, spec)
    except (VAENumpyError, OSError) as exc:
        return None, (f"note: the data folder saved in the checkpoint, {saved}, no longer holds a verified {name} "
                      f"({' '.join(str(exc).split())[:120]}); looking in the usual places")
    return saved, None
