"""Finding a dataset by its content: --data-dir means "use what is there", MNIST never shadows Fashion-MNIST.

The registry's "mnist" and "fashion-mnist" are replaced by two small generated datasets with the official
file names (30 train / 10 test images each, different content), so the look-up runs on real IDX files
written by write_idx in tmp_path, with their own SHA-256. No test touches the network (downloads are off).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vae_numpy import _registry, datasets
from vae_numpy.cli import main
from vae_numpy.commands import choose_dataset
from vae_numpy.datasets import DatasetSpec, FileSpec, find_dataset, load_dataset, locate, passed_over, write_idx
from vae_numpy.errors import DataError

COUNTS = {"train": 30, "test": 10}
STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
TINY = ["--hidden", "8", "--latent-dim", "2", "--epochs", "1", "--no-progress", "--no-figures"]


class Generated:
    """One dataset in the MNIST layout: arrays, the files' bytes (gzipped and not), and its DatasetSpec."""

    def __init__(self, name: str, seed: int, tmp: Path):
        rng = np.random.default_rng(seed)
        self.name, self.arrays, self.files = name, {}, {}
        tmp.mkdir(parents=True, exist_ok=True)
        for split, n in COUNTS.items():
            arrays = (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8))
            self.arrays[split] = arrays
            for stem, arr in zip(STEMS[split], arrays, strict=True):
                for fname in (stem, stem + ".gz"):
                    self.files[fname] = write_idx(tmp / fname, arr).read_bytes()

    def spec(self) -> DatasetSpec:
        def version(fname):
            data = self.files[fname]
            return ((len(data), hashlib.sha256(data).hexdigest()),)

        files = {split: tuple(FileSpec(s + ".gz", version(s + ".gz"), version(s)) for s in STEMS[split])
                 for split in COUNTS}
        return DatasetSpec(self.name, files, COUNTS)

    def put(self, folder: Path, gz: bool = False, splits=("train", "test")) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for split in splits:
            for stem in STEMS[split]:
                fname = stem + ".gz" if gz else stem
                (folder / fname).write_bytes(self.files[fname])
        return folder


@pytest.fixture
def world(monkeypatch, tmp_path):
    """Generated "mnist" and "fashion-mnist" in the registry; no cache, no $VAE_NUMPY_DATA, offline."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAE_NUMPY_DATA", raising=False)
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    monkeypatch.setattr(datasets, "DEBIAN_DATASETS", tmp_path / "debian")
    monkeypatch.chdir(tmp_path)
    gen = {name: Generated(name, seed, tmp_path / "gen" / name) for name, seed in (("mnist", 1),
                                                                                 ("fashion-mnist", 2))}
    for g in gen.values():
        monkeypatch.setitem(datasets._REGISTRY, g.name, g.spec())
    return gen


def _one_line_exit_2(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------------------- by content

@pytest.mark.parametrize("gz", [False, True])
def test_a_folder_is_identified_by_content_not_names(world, tmp_path, gz):
    m = world["mnist"].put(tmp_path / "a", gz)
    f = world["fashion-mnist"].put(tmp_path / "b", gz)   # the same file names
    assert find_dataset(m) == "mnist" and find_dataset(f) == "fashion-mnist"
    assert find_dataset(tmp_path / "b", splits=("test",)) == "fashion-mnist"
    images, labels = load_dataset("fashion-mnist", "test", data_dir=f)
    np.testing.assert_array_equal(images, world["fashion-mnist"].arrays["test"][0])
    parent = tmp_path / "parent"
    world["fashion-mnist"].put(parent / "fashion-mnist")   # or in a subfolder named after the dataset
    assert find_dataset(parent) == "fashion-mnist"
    t10k = world["mnist"].put(tmp_path / "t10k", gz, splits=("test",))
    assert find_dataset(t10k, splits=("test",)) == "mnist"
    with pytest.raises(DataError, match=r"holds only mnist test, and the train and test split\(s\) are needed: "
                                        rf"{t10k} \(missing train-images-idx3-ubyte\[\.gz\], train-labels"):
        find_dataset(t10k)


def test_mnist_does_not_shadow_fashion_mnist_the_search_goes_on(world, tmp_path, monkeypatch):
    env = world["mnist"].put(tmp_path / "env")
    debian = world["fashion-mnist"].put(tmp_path / "debian" / "fashion-mnist", gz=True)
    monkeypatch.setenv("VAE_NUMPY_DATA", str(env))
    loc = locate("fashion-mnist", "train")
    assert loc.folder == debian
    assert (env, "holds mnist, not fashion-mnist") in loc.tried
    images, _ = load_dataset("fashion-mnist", "train")
    np.testing.assert_array_equal(images, world["fashion-mnist"].arrays["train"][0])
    assert locate("mnist", "test").folder == env
    lines = datasets.format_status()
    fashion = [line for line in lines if line.startswith("fashion-mnist")]
    assert all(f"found     {debian}" in line and f"passed over {env} (holds mnist, not fashion-mnist)" in line
               for line in fashion)
    assert all(f"found     {env}" in line for line in lines if line.startswith("mnist "))


def test_status_with_data_dir_says_what_the_folder_holds(world, tmp_path, capsys):
    d = world["mnist"].put(tmp_path / "d")
    assert main(["datasets", "--data-dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert f"mnist          train  found     {d}" in out
    assert f"{d} (holds mnist, not fashion-mnist)" in out


# ------------------------------------------------------------------------------ --data-dir: use it

def test_train_with_data_dir_uses_the_dataset_found_there(world, tmp_path, capsys):
    d = world["fashion-mnist"].put(tmp_path / "d", gz=True)
    assert main(["train", "--data-dir", str(d), "--out", "run", *TINY]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"dataset: fashion-mnist (identified by content, from {d}): 30 train / 10 test")
    name, train, test, line = choose_dataset(None, world["mnist"].put(tmp_path / "m"), progress=False)
    assert name == "mnist" and train.shape == (30, 28, 28) and test.shape == (10, 28, 28)


@pytest.mark.parametrize("case, expected", [
    ("missing", "does not exist"),
    ("file", "is a file, not a folder"),
    ("empty", "missing train-images-idx3-ubyte[.gz]"),
    ("unrelated", "wrong size (5 bytes) for any known version"),
    ("corrupt", "checksum mismatch (SHA-256"),
    ("truncated", "wrong size"),
    ("test only", "missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]"),
])
def test_an_unusable_data_dir_is_one_line_exit_2_never_a_fall_back(world, tmp_path, capsys, case, expected):
    d = tmp_path / "d"
    if case == "file":
        d.write_bytes(b"x")
    elif case == "empty":
        d.mkdir()
    elif case == "unrelated":
        d.mkdir()
        (d / "train-images-idx3-ubyte").write_bytes(b"hello")
    elif case == "test only":
        world["mnist"].put(d, splits=("test",))
    elif case in ("corrupt", "truncated"):
        world["mnist"].put(d)
        bad = d / "t10k-images-idx3-ubyte"
        data = bytearray(bad.read_bytes())
        data[100] ^= 0xFF
        bad.write_bytes(bytes(data) if case == "corrupt" else bytes(data[:-1]))
    for argv in (["train", "--data-dir", d, "--out", "run", *TINY],
                 ["train", "--data-dir", d, "--dataset", "mnist", "--out", "run", *TINY]):
        err = _one_line_exit_2(argv, capsys)
        assert str(d) in err and expected in err, err
        assert "mnist-5k (" not in err
    assert not (tmp_path / "run").exists()


def test_a_named_dataset_not_in_data_dir_says_what_is_there(world, tmp_path, capsys):
    d = world["mnist"].put(tmp_path / "d")
    err = _one_line_exit_2(["train", "--dataset", "fashion-mnist", "--data-dir", d, *TINY], capsys)
    assert f"fashion-mnist (train) is not in data_dir '{d}'" in err and "holds mnist, not fashion-mnist" in err
    with pytest.raises(DataError, match="holds mnist, not fashion-mnist"):
        load_dataset("fashion-mnist", "test", data_dir=d)


# ------------------------------------------------------------------------------ evaluate: test only

def test_evaluate_needs_only_the_test_files(world, tmp_path, capsys):
    d = world["mnist"].put(tmp_path / "d")
    assert main(["train", "--data-dir", str(d), "--out", "run", *TINY]) == 0
    t10k = world["mnist"].put(tmp_path / "t10k", splits=("test",))
    capsys.readouterr()
    assert main(["evaluate", "run/model.npz", "--data-dir", str(t10k), "--iwae-samples", "2"]) == 0
    assert f"test set       mnist (from {t10k}), 10 images" in capsys.readouterr().out
    # a bare model (no dataset recorded): the test split found in --data-dir by content
    from vae_numpy import load_model
    load_model("run/model.npz").save(tmp_path / "bare.npz")
    f = world["fashion-mnist"].put(tmp_path / "f", splits=("test",))
    assert main(["evaluate", str(tmp_path / "bare.npz"), "--data-dir", str(f), "--iwae-samples", "0"]) == 0
    assert "test set       fashion-mnist" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ checksum cache

def test_each_file_is_hashed_once_per_process_until_it_changes(world, tmp_path, monkeypatch):
    d = world["mnist"].put(tmp_path / "d")
    hashed = []
    real = _registry.sha256_file
    monkeypatch.setattr(_registry, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    datasets.format_status(d)   # both datasets, both splits
    load_dataset("mnist", "train", data_dir=d)
    load_dataset("mnist", "test", data_dir=d)
    find_dataset(d)
    assert sorted(hashed) == sorted(s for split in STEMS.values() for s in split)
    # replaced as a download or a copy tool does (a new file renamed over the old one): a new inode
    shutil.copy(tmp_path / "gen" / "fashion-mnist" / "t10k-images-idx3-ubyte", d / "new")
    os.replace(d / "new", d / "t10k-images-idx3-ubyte")
    hashed.clear()
    with pytest.raises(DataError, match="holds fashion-mnist, not mnist"):
        load_dataset("mnist", "test", data_dir=d)
    assert hashed == ["t10k-images-idx3-ubyte"]   # the replaced file only


def test_a_damaged_file_in_the_search_is_passed_over_with_its_reason(world, tmp_path, monkeypatch):
    env = world["mnist"].put(tmp_path / "env")
    labels = env / "train-labels-idx1-ubyte"
    labels.write_bytes(bytes(labels.stat().st_size))   # right size, wrong bytes
    monkeypatch.setenv("VAE_NUMPY_DATA", str(env))
    good = world["mnist"].put(tmp_path / "cache" / "vae_numpy" / "mnist")
    loc = locate("mnist", "train")
    assert loc.folder == good
    (folder, why), = [t for t in loc.tried if t[0] == env]
    assert why.startswith(f"{env / 'train-labels-idx1-ubyte'}: checksum mismatch")


def test_a_damaged_mnist_in_the_cache_is_named_when_falling_back_not_called_absent(world, tmp_path, capsys):
    """No data_dir, offline, the only MNIST a damaged cache copy: the fall-back to the embedded digits says why,
    naming the file (it used to say "MNIST is not on disk"); with nothing on disk it still says not on disk."""
    from vae_numpy import tutorial
    name, train, _, line = choose_dataset(None)
    assert name == "mnist-5k" and "MNIST is not on disk and downloads are off" in line
    cache = world["mnist"].put(tmp_path / "cache" / "vae_numpy" / "mnist")
    images = cache / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])                # a truncated download
    name, train, _, line = choose_dataset(None)
    assert name == "mnist-5k" and len(train) == 4000
    assert f"the MNIST on disk cannot be used: {images}: wrong size (1,000 bytes)" in line, line
    assert "downloads are off" in line and "not on disk" not in line
    data = tutorial.load_mnist(n_train=5, n_test=5, name="mnist")
    out = capsys.readouterr().out
    assert data.name == "mnist-5k" and f"mnist on disk cannot be used ({images}: wrong size" in out, out


def test_passed_over_blames_only_the_split_that_is_missing_and_names_each_folder(world, tmp_path, monkeypatch):
    """A damaged train copy shadowed by a good one later in the search did not matter; a wrong dataset in a
    folder is reported with the folder's path."""
    env = world["mnist"].put(tmp_path / "env", splits=("train",))
    (env / "train-images-idx3-ubyte").write_bytes(b"\0" * 1000)          # damaged, but train is found below
    world["mnist"].put(tmp_path / "cache" / "vae_numpy" / "mnist", splits=("train",))
    fashion = world["fashion-mnist"].put(tmp_path / "elsewhere", splits=("test",))
    monkeypatch.setenv("VAE_NUMPY_DATA", str(env))
    assert locate("mnist", "train").found and not locate("mnist", "test").found
    assert passed_over("mnist") == ""                                     # test is simply absent: not on disk
    monkeypatch.setenv("VAE_NUMPY_DATA", str(fashion))
    why = passed_over("mnist")
    assert why.startswith(f"{fashion}: holds fashion-mnist"), why


# ---------------------------------------------------------------------------------- the real MNIST

def test_the_full_mnist_through_data_dir_and_the_environment(full_mnist, tmp_path, monkeypatch):
    """The official files in ../shared/data/mnist (or $VAE_NUMPY_DATA): 60,000 / 10,000, the registry's SHA-256."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    monkeypatch.setattr(datasets, "DEBIAN_DATASETS", tmp_path / "debian")
    monkeypatch.delenv("VAE_NUMPY_DATA", raising=False)
    assert find_dataset(full_mnist) == "mnist"
    spec = datasets._REGISTRY["mnist"]
    for split, n in (("train", 60_000), ("test", 10_000)):
        loc = locate("mnist", split, data_dir=full_mnist)
        for path, fs in zip(loc.files, spec.files[split], strict=True):
            assert _registry.identify(path) == (("mnist", split, _registry.ROLES[spec.files[split].index(fs)]),)
            assert (path.stat().st_size, _registry.file_sha256(path)) in fs.gz + fs.raw
        images, labels = load_dataset("mnist", split, data_dir=full_mnist)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8 and labels.shape == (n,)
        assert np.bincount(labels).min() > n // 12   # every digit present in its usual share
    assert locate("fashion-mnist", "test", data_dir=full_mnist).tried[-1] == (full_mnist,
                                                                                "holds mnist, not fashion-mnist")
    monkeypatch.setenv("VAE_NUMPY_DATA", str(full_mnist))
    assert locate("mnist", "test").folder == full_mnist
    name, train, test, line = choose_dataset(None, progress=False)   # the default look-up finds it too
    assert name == "mnist" and train.shape == (60_000, 28, 28) and test.shape == (10_000, 28, 28)
    assert line.startswith(f"dataset: mnist (from {full_mnist})")
