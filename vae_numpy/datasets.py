"""Datasets: IDX files, downloadable MNIST and Fashion-MNIST, the embedded subset, and minibatches.

Symbols: N examples, B batch size, D = 784 pixels (28 x 28). Images are uint8 ``(N, 28, 28)`` grey levels
0-255 and labels int64 ``(N,)``; :class:`Batches` turns them into float ``(B, D)`` batches in [0, 1].

Datasets (``dataset_names()``):

- ``"mnist"``, ``"fashion-mnist"``: the official IDX files, found on disk or downloaded;
- ``"mnist-5k"``: 5,000 real MNIST digits embedded in the package (4,000 train / 1,000 test, 100 of each
  digit in test; see ``data/NOTICE.md``), always available offline.

A given ``data_dir`` (``--data-dir``) means "use what is there": the dataset is looked for in
``data_dir/<name>``, then in ``data_dir`` itself, and nowhere else; a folder that does not exist, a file, or a
folder without the dataset (missing, damaged, or another dataset's files) is a :class:`DataError` naming the
folder and what is wrong, never a search elsewhere or a download. :func:`find_dataset` tells which known
dataset a folder holds. Without ``data_dir``, in order (the first folder holding the split wins):

1. ``$VAE_NUMPY_DATA``: ``<it>/<name>``, then itself;
2. the user cache ``$XDG_CACHE_HOME/vae_numpy/<name>`` (default ``~/.cache/vae_numpy/<name>``);
3. Debian's ``/usr/share/datasets/<name>`` (package ``dataset-fashion-mnist`` ships Fashion-MNIST there);
4. otherwise a download into the cache, mirrors tried in turn: streamed to a temporary file in the cache
   folder, checked against the registry's size and SHA-256, then moved into place with ``os.replace``.
   ``download=False`` or the environment variable ``VAE_NUMPY_OFFLINE=1`` forbids any network access.

In a folder, each file may be gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``);
the gzipped name is tried first. A file is taken for what its content is, not for its name: its size must
match a known version of the wanted file (official gzip, Debian's re-gzipped copy, or uncompressed), then
its SHA-256. MNIST and Fashion-MNIST share their file names, so a folder of MNIST files is skipped, saying
so, when Fashion-MNIST is wanted, and the search goes on. Hashes are cached for the process by (path, inode,
size, mtime): looking a folder up and then loading it hashes it once (20 ms for Fashion-MNIST's 26 MB of
train files, against 260 ms to gunzip and parse them; benchmarks/bench_data.py).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._batches import (
    BINARIZE,
    Batches,
    binarize_static,
    flatten,
    iterate_minibatches,
    to_unit,
    train_val_split,
)
from ._idx import read_idx, write_idx
from ._registry import _REGISTRY, DatasetSpec, FileSpec, file_problem, find_files, register_dataset, verify_file
from ._validate import check_choice
from .errors import DataError, DownloadFailed

__all__ = [
    "BINARIZE", "Batches", "DatasetSpec", "FileSpec", "Location", "binarize_static", "cache_dir",
    "dataset_names", "dataset_status", "find_dataset", "flatten", "format_status", "is_offline",
    "iterate_minibatches",
    "load_dataset", "locate", "read_idx", "register_dataset", "to_unit", "train_val_split", "write_idx",
]

ENV_DATA = "VAE_NUMPY_DATA"
ENV_OFFLINE = "VAE_NUMPY_OFFLINE"
DEBIAN_DATASETS = Path("/usr/share/datasets")
CONNECT_TIMEOUT = 5.0  # seconds to connect to a mirror, and to wait for each chunk; tests lower it
EMBEDDED = "mnist-5k"
EMBEDDED_PATH = Path(__file__).resolve().parent / "data" / "mnist5k.npz"
SPLITS = ("train", "test")
_HINT = (f"use the embedded subset (name {EMBEDDED!r}: 5,000 MNIST digits, no network needed), or put the "
         "dataset's IDX files in a folder and pass data_dir= (--data-dir)")


@dataclass(frozen=True)
class Location:
    """Where one split of a dataset was found: `folder` and `files` (images, labels), or `folder` None.

    nbytes: the files' total size on disk. tried: ``(folder, why not)`` for each folder looked in before.
    """

    name: str
    split: str
    folder: Path | None
    files: tuple[Path, ...] = ()
    nbytes: int = 0
    tried: tuple[tuple[Path, str], ...] = ()

    @property
    def found(self) -> bool:
        return self.folder is not None


def dataset_names() -> tuple[str, ...]:
    """The names `load_dataset` accepts: the registered datasets, then the embedded ``"mnist-5k"``."""
    return (*_REGISTRY, EMBEDDED)


def cache_dir() -> Path:
    """The user cache: ``$XDG_CACHE_HOME/vae_numpy`` if that variable is an absolute path, else
    ``~/.cache/vae_numpy``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "vae_numpy"


def is_offline() -> bool:
    """True when ``$VAE_NUMPY_OFFLINE`` is 1, true, yes or on: no download is attempted."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def given_dir(data_dir) -> Path:
    """`data_dir` as a Path, or a one-line DataError when it is not a readable folder."""
    d = Path(data_dir).expanduser()
    fix = "pass the folder that holds the dataset's IDX files (or the folder above it)"
    if not d.exists():
        raise DataError(f"data_dir {str(d)!r} does not exist; {fix}")
    if not d.is_dir():
        raise DataError(f"data_dir {str(d)!r} is a file, not a folder; {fix}")
    if not os.access(d, os.R_OK | os.X_OK):
        raise DataError(f"data_dir {str(d)!r} is not readable (permissions); {fix}")
    return d


def _folders(name: str, data_dir) -> list[Path]:
    """The folders to look in, in order, without repeats: only data_dir's two when it is given."""
    if data_dir is not None:
        d = given_dir(data_dir)
        return [d / name, d]
    folders = []
    if os.environ.get(ENV_DATA):
        d = Path(os.environ[ENV_DATA]).expanduser()
        folders += [d / name, d]
    folders += [cache_dir() / name, DEBIAN_DATASETS / name]
    return list(dict.fromkeys(folders))


def _check(name: str, split: str) -> None:
    check_choice("name", name, dataset_names())
    check_choice("split", split, SPLITS)


def locate(name: str, split: str = "train", data_dir=None) -> Location:
    """Where `name` / `split` is on disk, looking in the documented order, by content; never downloads.

    Shapes: none (paths only).

    Returns
    -------
    Location
        ``found`` with the folder and the verified (images, labels) paths, or not found with each folder
        tried and why it was passed over ("holds mnist, not fashion-mnist", "missing ...", a damaged file).

    Raises
    ------
    ConfigError
        Unknown name or split (the message lists the valid ones).
    DataError
        `data_dir` is not a readable folder.
    """
    _check(name, split)
    if name == EMBEDDED:
        return Location(name, split, EMBEDDED_PATH.parent, (EMBEDDED_PATH,), _size(EMBEDDED_PATH))
    tried = []
    for folder in _folders(name, data_dir):
        paths, why = find_files(folder, name, split)
        if paths:
            return Location(name, split, folder, tuple(paths), sum(_size(p) for p in paths), tuple(tried))
        tried.append((folder, why))
    return Location(name, split, None, tried=tuple(tried))


def passed_over(name: str) -> str:
    """Why the copies of `name` on disk were not used ("<file>: wrong size ...", "holds fashion-mnist"), or "".

    Shapes: none (paths only). Only the splits that were not found count (a stale copy shadowed by a good one
    later in the search order did not matter), and only folders that exist and hold something: a missing folder
    or missing files mean "not on disk", which the caller says in its own words. Each reason names its folder or
    file. For the fall-back messages of the command line and the notebooks, so that a damaged file in the cache
    is named instead of called absent.
    """
    reasons = []
    for split in SPLITS:
        loc = locate(name, split)
        if loc.found:   # this split was found in a later folder: the copies passed over before it did not matter
            continue
        reasons += [why if why.startswith(str(folder)) else f"{folder}: {why}" for folder, why in loc.tried
                    if why != "no such folder" and not why.startswith("missing ")]
    return "; ".join(dict.fromkeys(reasons))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def load_dataset(name: str, split: str = "train", data_dir=None, download: bool = True,
                 progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a dataset: from disk, the embedded subset, or a verified download.

    Shapes: returns images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64; N = 60,000 / 10,000 for
    ``"mnist"`` and ``"fashion-mnist"`` train / test, 4,000 / 1,000 for ``"mnist-5k"``.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist", "mnist-5k"} or a registered name
    split : {"train", "test"}
    data_dir : str or os.PathLike, optional
        The folder that holds the dataset (itself or in a subfolder named `name`); when given, the only
        place looked in. Without it: $VAE_NUMPY_DATA, the cache, Debian's folder, then a download.
    download : bool
        Allow a download into the user cache when the files are nowhere on disk (``$VAE_NUMPY_OFFLINE=1``
        forbids it too).
    progress : bool
        Show a progress bar while downloading.

    Raises
    ------
    ConfigError
        Unknown name or split, listing the valid ones.
    DataError
        Not in `data_dir` (the message says what is there instead); not found and not downloadable (the
        message names every folder and URL tried, with its error, and suggests ``mnist-5k`` or
        ``--data-dir``); a file that cannot be parsed (named).
    """
    loc = locate(name, split, data_dir)
    if name == EMBEDDED:
        return _load_embedded(split)
    spec = _REGISTRY[name]
    if loc.found:
        paths = loc.files
    elif data_dir is not None:
        raise DataError(f"{name} ({split}) is not in data_dir {str(given_dir(data_dir))!r}: "
                        f"{_tried(loc.tried)}; pass the folder that holds its IDX files, or leave data_dir out to "
                        "look in the usual places (and download)")
    else:
        paths = _download(spec, split, loc.tried, download, progress)
    return _read_split(spec, split, paths)


def _tried(tried) -> str:
    return "; ".join(f"{folder} ({why})" for folder, why in tried)


def find_dataset(data_dir, splits=SPLITS) -> str:
    """Which known dataset `data_dir` holds, by content: the first registered name with all `splits` there.

    Shapes: none (paths only). Looked in: ``data_dir/<name>``, then ``data_dir``, for each registered name in
    order (mnist, then fashion-mnist).

    Raises
    ------
    DataError
        `data_dir` is not a readable folder, or holds none of them; the message says what each folder holds
        or lacks (missing files, damaged files).
    """
    d = given_dir(data_dir)
    have, parts = [], {}   # parts: folder -> {why: None}, and the missing files' names gathered
    for name in _REGISTRY:
        locs = {split: locate(name, split, d) for split in splits}
        if all(loc.found for loc in locs.values()):
            return name
        locs.update({split: locate(name, split, d) for split in SPLITS if split not in locs})
        have += [f"{name} {split}" for split, loc in locs.items() if loc.found]
        for split in splits:
            for folder, why in locs[split].tried:
                if folder == d or why != "no such folder":
                    for part in why.split("; "):
                        parts.setdefault(folder, {}).setdefault(part)
    reasons = []
    for folder, whys in parts.items():
        missing = [n for w in whys if w.startswith("missing ") for n in w[8:].split(", ")]
        other = [w for w in whys if not w.startswith("missing ") and not (have and w.startswith("holds "))]
        why = other + (["missing " + ", ".join(dict.fromkeys(missing))] if missing else [])
        reasons.append(f"{folder} ({'; '.join(why)})")
    held = f"holds only {', '.join(have)}" if have else f"holds no {' or '.join(_REGISTRY)}"
    raise DataError(f"data_dir {str(d)!r} {held}, and the {' and '.join(splits)} split(s) are needed: "
                    f"{'; '.join(reasons)}; put the IDX files there (gzipped or not, under their official names), "
                    "or name the dataset")


def fetch(urls, dest, size=None, sha256=None, progress=True, timeout=5.0):
    """_download.fetch, imported on first use: urllib, http.client and ssl add ~50 ms and ~8 MB to an import."""
    from ._download import fetch as fetch_now

    return fetch_now(urls, dest, size, sha256, progress, timeout)


def _download(spec: DatasetSpec, split: str, tried, download: bool, progress: bool) -> list[Path]:
    """Fetch the split's missing files into the cache; DataError naming all that was tried if that fails."""
    where = f"{spec.name} ({split}) was not found in: {_tried(tried)}"
    if not download or is_offline():
        why = "download=False" if not download else f"{ENV_OFFLINE}={os.environ[ENV_OFFLINE]}"
        raise DataError(f"{where}; not downloading ({why}); {_HINT}")
    folder = cache_dir() / spec.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{where}; cannot create the cache folder {folder} ({exc.strerror}); {_HINT}") \
            from None
    paths = []
    for fs in spec.files[split]:
        path = folder / fs.name
        if not path.is_file() or file_problem(path, fs):  # a damaged cache file is downloaded again
            try:
                size, sha256 = fs.gz[0]
                fetch([m + fs.name for m in spec.mirrors], path, size, sha256, progress, CONNECT_TIMEOUT)
            except DownloadFailed as exc:
                urls = "; ".join(f"{url} ({why})" for url, why in exc.errors) or "no mirror is registered"
                raise DataError(f"{where}; downloads failed: {urls}; {_HINT}") from None
        paths.append(path)
    return paths


def _read_split(spec: DatasetSpec, split: str, paths) -> tuple[np.ndarray, np.ndarray]:
    """Verify and read (images, labels); check their shapes against the registry."""
    n = spec.counts[split]
    arrays = []
    for path, fs, shape in zip(paths, spec.files[split], [(n, *spec.image_shape), (n,)], strict=True):
        verify_file(path, fs)
        arr = read_idx(path)
        if arr.dtype != np.uint8 or arr.shape != shape:
            raise DataError(f"{path}: holds {arr.dtype} {arr.shape}, expected uint8 {shape} for {spec.name} "
                            f"({split})")
        arrays.append(arr)
    return arrays[0], arrays[1].astype(np.int64)


def _load_embedded(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The embedded subset: images (N, 28, 28) uint8, labels (N,) int64; N = 4,000 train, 1,000 test."""
    try:
        with np.load(EMBEDDED_PATH, allow_pickle=False) as z:
            idx = z[f"{split}_idx"]
            return z["images"][idx], z["labels"][idx].astype(np.int64)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{EMBEDDED_PATH}: the embedded subset cannot be read ({exc}); reinstall vae-numpy") \
            from None


def dataset_status(data_dir=None) -> list[Location]:
    """Where each split of each known dataset is: one :class:`Location` per (name, split), in order."""
    return [locate(name, split, data_dir) for name in dataset_names() for split in SPLITS]


def format_status(data_dir=None) -> list[str]:
    """The lines ``vae-numpy datasets`` prints: each dataset split, where it is (or "missing"), its size.

    A folder passed over says why, by content: "holds mnist, not fashion-mnist", a damaged file, missing files.
    """
    lines = []
    for loc in dataset_status(data_dir):
        passed = [f"{folder} ({why})" for folder, why in loc.tried if why != "no such folder"]
        if loc.name == EMBEDDED:
            state = f"embedded  {loc.files[0]}  {loc.nbytes / 1e6:.1f} MB (both splits)"
        elif loc.found:
            state = f"found     {loc.folder}  {loc.nbytes / 1e6:.1f} MB"
            state += f"; passed over {', '.join(passed)}" if passed else ""
        else:
            state = "missing   looked in " + ", ".join(
                f"{folder} ({why})" if why != "no such folder" else str(folder) for folder, why in loc.tried)
        lines.append(f"{loc.name:<14} {loc.split:<5}  {state}")
    if is_offline():
        lines.append(f"downloads: off ({ENV_OFFLINE}={os.environ[ENV_OFFLINE]})")
    else:
        lines.append(f"downloads: on, into {cache_dir()} (set {ENV_OFFLINE}=1 to stop them)")
    return lines
