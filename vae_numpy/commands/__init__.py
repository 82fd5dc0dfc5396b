"""Subcommands of ``vae-numpy`` that need more than a few lines, one module each (``add_arguments``, ``run``).

Shared here: argument types that fail with one line, and how a command picks and loads its dataset.
Nothing heavy is imported at module level: ``vae-numpy --help`` builds every subparser.
"""

from __future__ import annotations

import argparse

DATASETS = ("mnist", "fashion-mnist", "mnist-5k")
AUTO_FIRST, AUTO_FALLBACK = "mnist", "mnist-5k"


# --------------------------------------------------------------------------------- argument types
def _number_type(parse, strict, what):
    """An argparse type: `parse(text)` (int or float), finite, > 0 (strict) or >= 0; else one line naming `what`."""
    def check(text):
        try:
            value = parse(text)
        except ValueError:
            value = float("nan")
        if not (value > 0 if strict else value >= 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {what}")
        return value
    check.__name__ = what.replace(" ", "_").replace("-", "")
    check.__doc__ = f"argparse type: a {what}."
    return check


positive_int = _number_type(int, True, "positive integer")
nonnegative_int = _number_type(int, False, "non-negative integer")
positive_float = _number_type(float, True, "positive number")
nonnegative_float = _number_type(float, False, "non-negative number")


def hidden_dims(text):
    """argparse type: '400' or '512,256' -> (400,) or (512, 256)."""
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        dims = ()
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive widths, e.g. "
                                         "400 or 512,256")
    return dims


def add_data_arguments(p):
    """--data-dir and --offline, shared by train and evaluate."""
    p.add_argument("--data-dir", default=None, metavar="D",
                   help="the folder that holds the dataset's IDX files (itself or D/<dataset>), recognised by "
                        "content; used instead of the search (see 'vae-numpy datasets --data-dir D')")
    p.add_argument("--offline", action="store_true",
                   help="never download (same as VAE_NUMPY_OFFLINE=1)")


# ------------------------------------------------------------------------------------------ data
def _where(name, split, data_dir):
    from ..datasets import locate
    loc = locate(name, split, data_dir)
    if name == AUTO_FALLBACK:
        return "the 5,000 MNIST digits embedded in vae-numpy"
    return f"from {loc.folder}" if loc.found else "downloading into the cache"


def load_splits(name, data_dir=None, offline=False, progress=True, splits=("train", "test")):
    """The images of `splits` of `name` (uint8 (N, 28, 28) each, in order), and where they came from.

    With `data_dir`, only that folder (or its subfolder `name`) is used; name None there means the dataset it
    holds, found by content. Raises DataError (not there, not found and not downloadable), ConfigError.
    """
    from ..datasets import find_dataset, is_offline, load_dataset
    if name is None:
        name = find_dataset(data_dir, splits)
    where = _where(name, splits[0], data_dir)
    download = not (offline or is_offline())
    images = [load_dataset(name, split, data_dir=data_dir, download=download, progress=progress)[0]
              for split in splits]
    return name, images, where


def choose_dataset(name, data_dir=None, offline=False, progress=True):
    """Load `name`; with name None, the dataset found in `data_dir` by content, or without data_dir MNIST when
    it is on disk or downloadable, else the embedded mnist-5k.

    Returns
    -------
    name, train_images, test_images, line
        `line` says which dataset is used and why (one line, for the user).
    """
    from ..datasets import is_offline, passed_over
    from ..errors import DataError
    if name is not None or data_dir is not None:
        found, (train, test), where = load_splits(name, data_dir, offline, progress)
        where = where if name is not None else f"identified by content, {where}"
        return found, train, test, f"dataset: {found} ({where}): {len(train):,} train / {len(test):,} test images"
    try:
        _, (train, test), where = load_splits(AUTO_FIRST, None, offline, progress)
    except DataError:
        off = offline or is_offline()
        damaged = passed_over(AUTO_FIRST)
        if damaged:
            why = f"the MNIST on disk cannot be used: {damaged}; " + ("downloads are off" if off else
                                                                     "a new download failed")
        else:
            why = "MNIST is not on disk and " + ("downloads are off" if off else "could not be downloaded")
        _, (train, test), _ = load_splits(AUTO_FALLBACK)
        return (AUTO_FALLBACK, train, test, f"dataset: {AUTO_FALLBACK} ({why}; using the 5,000 digits embedded in "
                f"vae-numpy: {len(train):,} train / {len(test):,} test)")
    return AUTO_FIRST, train, test, f"dataset: mnist ({where}): {len(train):,} train / {len(test):,} test images"
