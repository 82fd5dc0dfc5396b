"""Shared fixtures: where the full MNIST is, for the tests that want the real 60,000 / 10,000 images.

The four official IDX files (gzipped or not) are looked for in ``$VAE_NUMPY_DATA`` (itself or its ``mnist/``),
then in ``../shared/data/mnist`` beside the repository (for a git worktree: beside its main checkout too).
Tests that need them take the ``full_mnist`` fixture and are skipped, with the reason, where they are absent.
The folder is found once, when this file is imported, before any test changes the environment.

The suite runs NumPy's BLAS at one thread (the CLI and notebook tests give their subprocesses
OPENBLAS_NUM_THREADS=1 likewise), so that the thread tuner of vn.train has nothing to choose and runs compared
bit for bit do not depend on what it measured under the machine's load (vae_numpy/_threads.py).
tests/test_threads.py lifts the limit where the choice is the subject.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy  # noqa: F401  (its BLAS must be loaded for threadpoolctl to find it)
import pytest
import threadpoolctl

_ONE_THREAD = threadpoolctl.threadpool_limits(1)   # kept for the whole session
ROOT = Path(__file__).resolve().parent.parent
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
               "t10k-labels-idx1-ubyte")


def _checkouts(root: Path) -> list[Path]:
    """The repository's folder and, when it is a git worktree (.git is a file), its main checkout's."""
    out = [root]
    git = root / ".git"
    try:
        if git.is_file():   # "gitdir: <main>/.git/worktrees/<name>"; <that>/commondir -> <main>/.git
            gitdir = Path(git.read_text().split("gitdir:", 1)[1].strip())
            common = (gitdir / (gitdir / "commondir").read_text().strip()).resolve()
            out.append(common.parent)
    except (OSError, IndexError):
        pass
    return out


def _has_mnist(folder: Path) -> bool:
    return all((folder / s).is_file() or (folder / (s + ".gz")).is_file() for s in MNIST_STEMS)


def find_full_mnist() -> Path | None:
    """The first folder holding the four MNIST files by name (the tests check their content), or None."""
    candidates = []
    if os.environ.get("VAE_NUMPY_DATA"):
        env = Path(os.environ["VAE_NUMPY_DATA"]).expanduser()
        candidates += [env / "mnist", env]
    candidates += [c.parent / "shared" / "data" / "mnist" for c in _checkouts(ROOT)]
    return next((c.resolve() for c in candidates if _has_mnist(c)), None)


FULL_MNIST = find_full_mnist()


@pytest.fixture
def full_mnist() -> Path:
    """The folder of the full MNIST (four IDX files); the test is skipped, saying why, where there is none."""
    if FULL_MNIST is None:
        pytest.skip("the full MNIST is not here: put its four IDX files in ../shared/data/mnist beside the "
                    "repository, or set VAE_NUMPY_DATA to their folder")
    return FULL_MNIST
