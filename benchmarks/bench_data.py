"""Data pipeline benchmark: loading, and one epoch of minibatches over 60,000 images.

Run: ``python benchmarks/bench_data.py`` (offline; uses Fashion-MNIST from disk, e.g. Debian's
``/usr/share/datasets/fashion-mnist``, else 60,000 images tiled from the embedded mnist-5k).
Prints a table and writes ``benchmarks/results/data.json``.

Measured:

- ``load_dataset("mnist-5k")`` (both splits) and ``load_dataset("fashion-mnist")`` (train), the latter
  split into SHA-256 verification and IDX parsing (gunzip);
- one epoch at batch size 128, float32, of :class:`vae_numpy.datasets.Batches` (``binarize="none"`` and
  ``"dynamic"``) against the naive ``images[idx].reshape(B, -1).astype(np.float32) / 255`` per batch:
  wall time (best of REPEATS) and the peak of memory allocated during the epoch (tracemalloc, separate run,
  so tracing does not slow the timed one).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from vae_numpy import datasets  # noqa: E402
from vae_numpy._registry import sha256_file  # noqa: E402

BATCH = 128
REPEATS = 5
OUT = Path(__file__).resolve().parent / "results" / "data.json"


def best_of(f, repeats: int = REPEATS) -> float:
    """Best wall time of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)


def peak_bytes(f) -> int:
    """Peak memory allocated while `f` runs (tracemalloc sees numpy's buffers)."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    f()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def naive_epoch(images: np.ndarray, rng: np.random.Generator) -> None:
    """The usual per-batch code: a fancy-indexed copy, a float copy, a divided copy."""
    order = rng.permutation(len(images))
    for start in range(0, len(images), BATCH):
        idx = order[start:start + BATCH]
        _ = images[idx].reshape(len(idx), -1).astype(np.float32) / 255


def epoch(batches) -> None:
    for _ in batches:
        pass


def load_images() -> tuple[np.ndarray, str, dict]:
    """60,000 uint8 images: Fashion-MNIST train from disk, or mnist-5k tiled; plus load timings."""
    loc = datasets.locate("fashion-mnist")
    if not loc.found:
        x, _ = datasets.load_dataset("mnist-5k")
        return np.resize(x, (60_000, 28, 28)), "mnist-5k train tiled to 60,000", {}
    timings = {
        "fashion_mnist_train_load_s": best_of(lambda: datasets.load_dataset("fashion-mnist", download=False),
                                              3),
        "fashion_mnist_train_sha256_s": best_of(lambda: [sha256_file(p) for p in loc.files], 3),
        "fashion_mnist_train_read_idx_s": best_of(lambda: [datasets.read_idx(p) for p in loc.files], 3),
    }
    x, _ = datasets.load_dataset("fashion-mnist", download=False)
    return x, f"fashion-mnist train from {loc.folder}", timings


def main() -> dict:
    results = {"batch_size": BATCH, "dtype": "float32", "repeats": REPEATS}
    results["mnist5k_load_both_splits_s"] = best_of(lambda: [datasets.load_dataset("mnist-5k", s) for s in
                                                             datasets.SPLITS])
    images, source, timings = load_images()
    results.update(timings, images=source, n_images=len(images))
    variants = {
        "batches_none": lambda: epoch(Batches(images, BATCH, seed=0)),
        "batches_dynamic": lambda: epoch(Batches(images, BATCH, seed=0, binarize="dynamic")),
        "naive": lambda: naive_epoch(images, np.random.default_rng(0)),
    }
    for name, run in variants.items():
        results[f"epoch_{name}_s"] = best_of(run)
        results[f"epoch_{name}_peak_alloc_bytes"] = peak_bytes(run)
    batches = Batches(images, BATCH, seed=0)  # built once, looped over every epoch, as training does
    epoch(batches)
    results["epoch_batches_reused_s"] = best_of(lambda: epoch(batches))
    results["epoch_batches_reused_peak_alloc_bytes"] = peak_bytes(lambda: epoch(batches))
    results["max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    results["machine"] = {"python": platform.python_version(), "numpy": np.__version__,
                          "cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    return results


def report(results: dict) -> None:
    print(f"images: {results['images']} ({results['n_images']:,}), batch {BATCH}, float32")
    for key, value in results.items():
        if key.endswith("_s"):
            print(f"  {key:<42} {value * 1e3:9.1f} ms")
        elif key.endswith("_bytes"):
            print(f"  {key:<42} {value / 1e6:9.2f} MB")


Batches = datasets.Batches

if __name__ == "__main__":
    res = main()
    report(res)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    tmp = OUT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, OUT)
    print(f"wrote {OUT}")
