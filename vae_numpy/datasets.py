"""Datasets: IDX files, downloadable MNIST and Fashion-MNIST, the embedded subset, and minibatches.

Symbols: N examples, B batch size, D = 784 pixels (28 x 28). Images are uint8 ``(N, 28, 28)`` grey levels
0-255 and labels int64 ``(N,)``; :class:`Batches` turns them into float ``(B, D)`` batches in [0, 1].

Datasets (``dataset_names()``):

- ``"mnist"``, ``"fashion-mnist"``: the official IDX files, found on disk or downloaded;
- ``"mnist-5k"``: 5,000 real MNIST digits embedded in the package (4,000 train / 1,000 test, 100 of each
  digit in test; see ``data/NOTICE.md``), always available offline.

Where a dataset is looked for, in order (the first folder holding both files of the split wins):

1. ``data_dir`` (``--data-dir``): the folder ``data_dir/<name>``, then ``data_dir`` itself;
2. ``$VAE_NUMPY_DATA``: likewise ``<it>/<name>``, then itself;
3. the user cache ``$XDG_CACHE_HOME/vae_numpy/<name>`` (default ``~/.cache/vae_numpy/<name>``);
4. Debian's ``/usr/share/datasets/<name>`` (package ``dataset-fashion-mnist`` ships Fashion-MNIST there);
5. otherwise a download into the cache, mirrors tried in turn: streamed to a temporary file in the cache
   folder, checked against the registry's size and SHA-256, then moved into place with ``os.replace``.
   ``download=False`` or the environment variable ``VAE_NUMPY_OFFLINE=1`` forbids any network access.

In a folder, each file may be gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``);
the gzipped name is tried first. Every file is verified when it is loaded, with no verification cache: its
size must match a known version of the file (official gzip, Debian's re-gzipped copy, or uncompressed),
then its SHA-256. Hashing is cheap next to reading: 20 ms for Fashion-MNIST's 26 MB of train files against
260 ms to gunzip and parse them (benchmarks/bench_data.py), so a cache of results would only add a way to be
stale. A mismatch is a :class:`DataError` naming the file.
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
from ._registry import _REGISTRY, DatasetSpec, FileSpec, register_dataset, verify_file
from ._validate import check_choice
from .errors import DataError, DownloadFailed

__all__ = [
    "BINARIZE", "Batches", "DatasetSpec", "FileSpec", "Location", "binarize_static", "cache_dir",
    "dataset_names", "dataset_status", "flatten", "format_status", "is_offline", "iterate_minibatches",
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


def _folders(name: str, data_dir) -> list[Path]:
    """The folders to look in, in order, without repeats."""
    folders = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        if not d.is_dir() or not os.access(d, os.R_OK | os.X_OK):
            raise DataError(f"data_dir={str(data_dir)!r} is not a readable folder; pass a folder that holds "
                            f"the IDX files of {name!r} (directly or in a subfolder {name}/)")
        folders += [d / name, d]
    if os.environ.get(ENV_DATA):
        d = Path(os.environ[ENV_DATA]).expanduser()
        folders += [d / name, d]
    folders += [cache_dir() / name, DEBIAN_DATASETS / name]
    return list(dict.fromkeys(folders))


def _find_in(folder: Path, files: tuple[FileSpec, ...]) -> tuple[list[Path], str]:
    """Paths of `files` in `folder` (all or nothing), and why not when they are not all there."""
    if not folder.is_dir():
        return [], "no such folder"
    if not os.access(folder, os.R_OK | os.X_OK):
        return [], "not readable"
    found, missing = [], []
    for fs in files:
        path = next((folder / n for n in fs.names if (folder / n).is_file()), None)
        if path is None:
            missing.append(fs.names[1] + "[.gz]")
        found.append(path)
    return ([], "missing " + ", ".join(missing)) if missing else (found, "")


def _check(name: str, split: str) -> None:
    check_choice("name", name, dataset_names())
    check_choice("split", split, SPLITS)


def locate(name: str, split: str = "train", data_dir=None) -> Location:
    """Where `name` / `split` is on disk, looking in the documented order; never downloads, never hashes.

    Shapes: none (paths only).

    Returns
    -------
    Location
        ``found`` with the folder and the (images, labels) paths, or not found with each folder tried.

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
        paths, why = _find_in(folder, _REGISTRY[name].files[split])
        if paths:
            return Location(name, split, folder, tuple(paths), sum(_size(p) for p in paths), tuple(tried))
        tried.append((folder, why))
    return Location(name, split, None, tried=tuple(tried))


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
        Looked in first (see the module notes for the whole order).
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
        Not found and not downloadable (the message names every folder and URL tried, with its error, and
        suggests ``mnist-5k`` or ``--data-dir``); a file that fails its checksum or cannot be parsed (named).
    """
    loc = locate(name, split, data_dir)
    if name == EMBEDDED:
        return _load_embedded(split)
    spec = _REGISTRY[name]
    paths = loc.files if loc.found else _download(spec, split, loc.tried, download, progress)
    return _read_split(spec, split, paths)


def fetch(urls, dest, size=None, sha256=None, progress=True, timeout=5.0):
    """_download.fetch, imported on first use: urllib, http.client and ssl add ~50 ms and ~8 MB to an import."""
    from ._download import fetch as fetch_now

    return fetch_now(urls, dest, size, sha256, progress, timeout)


def _download(spec: DatasetSpec, split: str, tried, download: bool, progress: bool) -> list[Path]:
    """Fetch the split's missing files into the cache; DataError naming all that was tried if that fails."""
    where = f"{spec.name} ({split}) was not found in: {'; '.join(f'{f} ({why})' for f, why in tried)}"
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
        if not path.is_file():  # a file left by an earlier, half-finished download is kept (and verified)
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
    """The lines ``vae-numpy datasets`` prints: each dataset split, where it is (or "missing"), its size."""
    lines = []
    for loc in dataset_status(data_dir):
        if loc.name == EMBEDDED:
            state = f"embedded  {loc.files[0]}  {loc.nbytes / 1e6:.1f} MB (both splits)"
        elif loc.found:
            state = f"found     {loc.folder}  {loc.nbytes / 1e6:.1f} MB"
        else:
            state = "missing   looked in " + ", ".join(str(folder) for folder, _ in loc.tried)
        lines.append(f"{loc.name:<14} {loc.split:<5}  {state}")
    if is_offline():
        lines.append(f"downloads: off ({ENV_OFFLINE}={os.environ[ENV_OFFLINE]})")
    else:
        lines.append(f"downloads: on, into {cache_dir()} (set {ENV_OFFLINE}=1 to stop them)")
    return lines
