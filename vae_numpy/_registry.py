"""The dataset registry: which files make up a dataset, where to download them, and how to check them.

Checksum sources (SHA-256; none computed by guesswork):

- MNIST ``*.gz``: the values published with the official files, as listed e.g. in torchvision's
  ``torchvision/prototype/datasets/_builtin/mnist.py`` (the same four values appear in nixpkgs and TFDS test
  data). Uncompressed IDX: the values listed in several public projects that decompress those archives.
- Fashion-MNIST ``*.gz``: torchvision's same file (files from Zalando's S3 bucket / GitHub repository).
  Debian's package ``dataset-fashion-mnist`` ships the same images re-gzipped without the file name in
  the gzip header (24 bytes smaller, another SHA-256); those hashes were computed from
  ``/usr/share/datasets/fashion-mnist``. Uncompressed IDX: computed by decompressing the Debian files;
  they equal the values public projects list for the official archives, so the content is identical.

A file on disk is accepted when its size and SHA-256 match one of the known versions of that file:
gzipped (official or Debian) or uncompressed. Gzip is recognised by its magic bytes, not the name. A file is
identified by its content, never by its name (:func:`identify`): MNIST and Fashion-MNIST use the same file
names. Hashes are kept for the life of the process, keyed by (path, inode, size, mtime), so that a folder is
hashed once (about 0.1 s for MNIST's 55 MB uncompressed).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ._idx import GZIP_MAGIC
from .errors import ConfigError, DataError


def sha256_file(path) -> str:
    """The SHA-256 of a file, as 64 hex digits, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset split.

    name: the official (gzipped) file name, e.g. ``"train-images-idx3-ubyte.gz"``; the uncompressed name is
    the same without ``.gz``. gz: accepted ``(size, sha256)`` of gzipped copies; the first is what the
    mirrors serve and what a download must match. raw: accepted ``(size, sha256)`` of uncompressed copies.
    """

    name: str
    gz: tuple[tuple[int, str], ...]
    raw: tuple[tuple[int, str], ...] = ()

    @property
    def names(self) -> tuple[str, str]:
        """File names looked for in a folder, gzipped first."""
        return self.name, self.name.removesuffix(".gz")


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable dataset of 28x28 uint8 images with uint8 labels, in IDX files.

    files: split -> (images FileSpec, labels FileSpec). counts: split -> number of examples.
    mirrors: base URLs (ending in ``/``) tried in order; a file's URL is base + FileSpec.name.
    """

    name: str
    files: Mapping[str, tuple[FileSpec, FileSpec]]
    counts: Mapping[str, int]
    mirrors: tuple[str, ...] = ()
    image_shape: tuple[int, ...] = (28, 28)
    description: str = field(default="", compare=False)


def _mnist_like(name: str, mirrors: tuple[str, ...], checksums: str, description: str) -> DatasetSpec:
    """A spec in the MNIST layout from a checksum table: lines of ``file bytes sha256``, comments after #.

    Several lines for one gzipped name are alternative versions; the first is the one the mirrors serve.
    """
    versions: dict[str, list[tuple[int, str]]] = {}
    for line in checksums.splitlines():
        if line.split("#")[0].strip():
            file, size, sha256 = line.split()
            versions.setdefault(file, []).append((int(size), sha256))
    files = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
        files[split] = tuple(FileSpec(s + ".gz", tuple(versions[s + ".gz"]), tuple(versions[s]))
                             for s in stems)
    return DatasetSpec(name, files, {"train": 60_000, "test": 10_000}, mirrors, description=description)


MNIST = _mnist_like("mnist", (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
), """
# file                      bytes     SHA-256
train-images-idx3-ubyte.gz   9912422  440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609
train-labels-idx1-ubyte.gz     28881  3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c
t10k-images-idx3-ubyte.gz    1648877  8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6
t10k-labels-idx1-ubyte.gz       4542  f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6
# uncompressed
train-images-idx3-ubyte     47040016  ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
train-labels-idx1-ubyte        60008  65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
t10k-images-idx3-ubyte       7840016  0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
t10k-labels-idx1-ubyte         10008  ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
""", "handwritten digits 0-9 (LeCun, Cortes, Burges), 60,000 train / 10,000 test")

FASHION_MNIST = _mnist_like("fashion-mnist", (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
), """
# file                      bytes     SHA-256; official files (Zalando's S3 bucket and GitHub repository)
train-images-idx3-ubyte.gz  26421880  3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84
train-labels-idx1-ubyte.gz     29515  a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845
t10k-images-idx3-ubyte.gz    4422102  346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073
t10k-labels-idx1-ubyte.gz       5148  67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5
# Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1): the same data re-gzipped without a file name
train-images-idx3-ubyte.gz  26421856  b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7
train-labels-idx1-ubyte.gz     29491  0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056
t10k-images-idx3-ubyte.gz    4422079  cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa
t10k-labels-idx1-ubyte.gz       5125  8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05
# uncompressed
train-images-idx3-ubyte     47040016  c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
train-labels-idx1-ubyte        60008  bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
t10k-images-idx3-ubyte       7840016  5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
t10k-labels-idx1-ubyte         10008  0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
""", "Zalando article images in 10 classes, 60,000 train / 10,000 test")

_REGISTRY: dict[str, DatasetSpec] = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


def register_dataset(spec: DatasetSpec, replace: bool = False) -> DatasetSpec:
    """Add a downloadable dataset to the registry (tests register fakes served from 127.0.0.1).

    Parameters
    ----------
    spec : DatasetSpec
        Its files, counts and mirrors.
    replace : bool
        Allow replacing a dataset of the same name.
    """
    if not isinstance(spec, DatasetSpec):
        raise ConfigError(f"register_dataset needs a DatasetSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(f"dataset {spec.name!r} is already registered; pass replace=True to override it")
    _REGISTRY[spec.name] = spec
    return spec


def is_gzip(path: Path) -> bool:
    """True when the file starts with the gzip magic bytes 1f 8b."""
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


# ------------------------------------------------------------------------ what a file is, by content
_HASHES: dict[tuple[str, int, int, int], str] = {}
ROLES = ("images", "labels")
_FIX = "the file is damaged or not the official one: replace it (a deleted cache file is downloaded again)"


def file_sha256(path) -> str:
    """:func:`sha256_file`, computed once per process for each (absolute path, inode, size, mtime).

    A folder is hashed once however often it is looked in (``vae-numpy datasets``, then the load); a file
    that is replaced or rewritten has a new inode, size or mtime, so it is hashed again, never stale.
    """
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    digest = _HASHES.get(key)
    if digest is None:
        digest = _HASHES[key] = sha256_file(path)
    return digest


def identify(path) -> tuple[tuple[str, str, str], ...]:
    """What a file holds, by content: ``(dataset, split, role)`` for every registered file it is a version of.

    role is "images" or "labels". The size is compared first (free); the file is hashed only when its size
    is that of a known version. Empty when the file is no known version of any registered file.
    """
    size = os.stat(path).st_size
    candidates = [(spec.name, split, ROLES[i], sha) for spec in _REGISTRY.values()
                  for split, files in spec.files.items() for i, fs in enumerate(files)
                  for n, sha in fs.gz + fs.raw if n == size]
    if not candidates:
        return ()
    digest = file_sha256(path)
    return tuple(dict.fromkeys((name, split, role) for name, split, role, sha in candidates if sha == digest))


def file_problem(path: Path, spec: FileSpec) -> str:
    """"" when the file is a known version of `spec` (by size and SHA-256), else why not, starting with the path.

    The reason does not depend on which dataset was wanted (MNIST and Fashion-MNIST share file names), so
    that one damaged file gives one reason. A form (gzipped or not) of which no version is registered is
    accepted: read_idx still checks its structure.
    """
    versions = spec.gz if is_gzip(path) else spec.raw
    if not versions:
        return ""
    size = path.stat().st_size
    if not any(n == size for n, _ in versions):
        return f"{path}: wrong size ({size:,} bytes) for any known version of the file"
    digest = file_sha256(path)
    if digest not in (sha for n, sha in versions if n == size):
        return f"{path}: checksum mismatch (SHA-256 {digest[:16]}...) with every known version of the file"
    return ""


def verify_file(path: Path, spec: FileSpec) -> None:
    """Check a file on disk against the known versions of `spec`; a DataError naming it if none fits."""
    try:
        why = file_problem(path, spec)
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if why:
        raise DataError(f"{why}; {_FIX}")


def find_files(folder: Path, name: str, split: str) -> tuple[list[Path], str]:
    """The (images, labels) paths of `name` / `split` in `folder`, checked by content; or [] and why not.

    Candidates are found by the official names (gzipped first); each must be a known version of the wanted
    file. A file that is another dataset's (MNIST's where Fashion-MNIST is wanted: the names are the same)
    makes the reason "holds mnist, not fashion-mnist"; a damaged one is named with what is wrong.
    """
    if not folder.is_dir():
        return [], "no such folder"
    if not os.access(folder, os.R_OK | os.X_OK):
        return [], "not readable"
    found, missing, problems, holds = [], [], [], {}
    for fs in _REGISTRY[name].files[split]:
        present = [folder / n for n in fs.names if (folder / n).is_file()]
        if not present:
            missing.append(fs.names[1] + "[.gz]")
        for path in present:
            try:
                why = file_problem(path, fs)
                others = identify(path) if why else ()
            except OSError as exc:
                why, others = f"{path}: cannot read ({exc.strerror or exc})", ()
            if not why:
                found.append(path)
                break
            if others:
                holds.update(dict.fromkeys(other for other, _, _ in others))
            else:
                problems.append(why)
    if len(found) == len(_REGISTRY[name].files[split]):
        return found, ""
    why = ([f"holds {', '.join(holds)}, not {name}"] if holds else []) + problems
    if missing:
        why.append("missing " + ", ".join(missing))
    return [], "; ".join(why)
