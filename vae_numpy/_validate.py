"""Input checks shared by every public entry point.

Each check raises :class:`~vae_numpy.errors.ConfigError` (a ``ValueError``) whose message names the
argument, the bad value and what is allowed, in the spirit of scikit-learn's ``utils.validation``.
"""

from __future__ import annotations

import numbers
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import ConfigError

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype) -> np.dtype:
    """Return the numpy dtype for 'float32' / 'float64' (or the dtypes themselves)."""
    try:
        dt = None if dtype is None else np.dtype(dtype)  # np.dtype(None) would be float64
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not supported; "
                          "use 'float32' (training) or 'float64' (gradient checks)")
    return dt


def check_choice(name: str, value, allowed) -> str:
    """`value` must be one of `allowed` (strings)."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name}={value!r} is unknown; choose one of {', '.join(map(repr, allowed))}")
    return value


def check_int(name: str, value, minimum: int = 1) -> int:
    """An integer >= minimum (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ConfigError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def check_float(name: str, value, minimum: float | None = None, exclusive: bool = False,
                maximum: float | None = None) -> float:
    """A finite real number in the allowed range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    value = float(value)
    if minimum is not None and (value <= minimum if exclusive else value < minimum):
        op = ">" if exclusive else ">="
        raise ConfigError(f"{name}={value!r} must be {op} {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={value!r} must be <= {maximum}")
    return value


def check_matrix(name: str, x, ncols: int | None = None, dtype=None, unit_interval: bool = False,
                 min_rows: int = 1) -> np.ndarray:
    """A finite 2-D array (N, ncols), converted to `dtype` (no copy when it already is).

    unit_interval: values must lie in [0, 1] (pixel intensities: the model's inputs, for every likelihood).
    """
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a numeric array: {exc}") from None
    if arr.ndim != 2:
        want = f"(N, {ncols})" if ncols is not None else "(N, D)"
        hint = " (flatten images with x.reshape(len(x), -1))" if arr.ndim > 2 else ""
        raise ConfigError(f"{name} has shape {arr.shape}; expected a 2-D array {want}{hint}")
    if ncols is not None and arr.shape[1] != ncols:
        raise ConfigError(f"{name} has shape {arr.shape}; expected (N, {ncols}) to match the model")
    if arr.shape[0] < min_rows:
        raise ConfigError(f"{name} has shape {arr.shape}; it needs at least {min_rows} row(s)")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ConfigError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)}); "
                          "clean the data before passing it")
    if unit_interval:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise ConfigError(f"{name} has values in [{lo:g}, {hi:g}]; the model takes pixel intensities in [0, 1] "
                              "with every likelihood: divide uint8 pixels by 255 (vn.train and vn.evaluate also take "
                              "the uint8 images as they are)")
    return arr


def check_rng(seed=None, rng=None) -> np.random.Generator:
    """A numpy Generator from `rng` (used as is) or from `seed` (int or None -> fresh entropy)."""
    if rng is not None:
        if not isinstance(rng, np.random.Generator):
            raise ConfigError(f"rng={rng!r} must be a numpy.random.Generator (np.random.default_rng(seed))")
        return rng
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0):
        raise ConfigError(f"seed={seed!r} must be a non-negative integer or None")
    return np.random.default_rng(seed)


def check_writable(folder, what: str) -> Path:
    """`folder` must exist and accept a new file (tried with a temporary file, removed at once).

    Checked before a long computation, so that a read-only or missing place is found in a second, not after
    an epoch. Raises ConfigError naming `what` (e.g. "--out runs/a") and the fix.
    """
    folder = Path(folder) if str(folder) else Path(".")
    if not folder.is_dir():
        why = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"{what}: the folder {folder} {why}; create it or choose another place")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".vae_numpy-write-test.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write into {folder} ({exc.strerror or exc}); choose a writable "
                          "place") from None
    return folder


def check_new_files(paths, flag: str = "--out", force: bool = False) -> None:
    """Refuse to replace files that exist (ConfigError, one line naming the first one) unless `force`."""
    if force:
        return
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ConfigError(f"{flag}: {existing[0]}{more} exists; add --force to replace it, or write elsewhere")


def check_out_dir(path, flag: str = "--out", create: bool = True) -> Path:
    """A folder to write results into, checked before the work starts (ConfigError, one line, naming `flag`).

    Refused: `path` is a file, lies under a file, or it (or, when it is missing and create is False, the
    nearest folder above it, where it will be made) cannot be written. create: make it now.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; choose a folder name (it is created if missing)")
    parent = path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, so no folder can be made under it; choose "
                          "another place")
    if not create:
        return check_writable(parent, f"{flag} {path}") and path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot create the folder ({exc.strerror or exc}); choose a writable "
                          "place") from None
    return check_writable(path, f"{flag} {path}")


def _read_int(path):
    """The integer in a one-line file such as /sys/fs/cgroup/memory.max, or None ("max", absent, unreadable)."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def available_memory():
    """Bytes the process can still allocate without swapping, or None if unknown.

    Linux: MemAvailable from /proc/meminfo, lowered to what the process's cgroup still allows (a container's
    limit: v2 memory.max - memory.current, v1 memory.limit_in_bytes - memory.usage_in_bytes), since a
    container sees the host's MemAvailable but is killed at its own limit. Elsewhere: the machine's physical
    memory (a request larger than that can never fit; free memory is not known there), else None.
    """
    have = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    have = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        have = None
    v1 = "/sys/fs/cgroup/memory/memory."
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         (v1 + "limit_in_bytes", v1 + "usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(usage)
        if cap is not None and used is not None and cap < 2**60:      # v1 writes ~2^63 for "no limit"
            left = max(cap - used, 0)
            have = left if have is None else min(have, left)
            break
    if have is not None:
        return have
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def byte_size(n):
    """A byte count for a message: "3.2 GiB", or "250 MiB" under 1 GiB (so that 0.0 GiB never hides a value)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
