"""benchmarks/bench_literature.py: the schedule, and resuming from its state file bit for bit."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import vae_numpy as vn

pytest.importorskip("threadpoolctl", reason="the benchmark pins the BLAS to one thread")
SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_literature.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_literature", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_schedule_is_the_papers(bench):
    assert bench.TOTAL_PASSES == 3280 and len(bench.STAGES) == 8
    assert bench.stage_of(0) == (0, 1e-3, 1)
    i, lr, end = bench.stage_of(1)
    assert (i, end) == (1, 4) and lr == pytest.approx(1e-3 * 10 ** (-1 / 7))
    assert bench.stage_of(3279)[0] == 7 and bench.stage_of(3279)[2] == 3280
    with pytest.raises(ValueError):
        bench.stage_of(3280)


def _run(bench, tmp_path, name, budget, extra=()):
    argv = ["--row", "iwae_k5", "--dataset", "mnist-5k", "--train-images", "100", "--budget", str(budget),
            "--eval-images", "20", "--eval-samples", "10", "--state", str(tmp_path / f"{name}.npz"),
            "--results", str(tmp_path / "results.json"), "--model-out", str(tmp_path / f"{name}_model.npz"), *extra]
    assert bench.main(argv) == 0
    return vn.load_model(tmp_path / f"{name}_model.npz")


def bench_args(bench):
    """The data arguments _run passes, for load_data."""
    import argparse
    return argparse.Namespace(dataset="mnist-5k", data_dir=None, train_images=100)


def test_resuming_gives_the_same_parameters_bit_for_bit(bench, tmp_path):
    straight = _run(bench, tmp_path, "a", 2)           # passes 1 (stage 0) and 2 (stage 1, another lr)
    _run(bench, tmp_path, "b", 1)
    resumed = _run(bench, tmp_path, "b", 2)             # continues from b.npz
    assert (resumed.objective, resumed.k) == ("iwae", 5)
    for name in straight.params:
        np.testing.assert_array_equal(straight.params[name], resumed.params[name])
    runs = json.loads((tmp_path / "results.json").read_text())
    assert [r["passes_done"] for r in runs] == [2, 1, 2]
    last = runs[-1]
    assert last["row"] == "iwae_k5" and last["eval_images"] == 20 and last["eval_samples"] == 10
    assert np.isfinite(last["test_neg_log_px"]) and last["test_neg_log_px"] < last["test_neg_elbo"] + 1
    assert {"train_loss", "eval_seconds", "load_average_start", "commit", "budget"} <= set(last)
    assert last["active_units"] == vn.evaluation.active_units(resumed, bench.prepare_data(
        resumed, bench.load_data(bench_args(bench))[1], binarize="dynamic")[:20])[0]
    assert 0 <= last["active_units"] <= 50
    state = vn.load_checkpoint(tmp_path / "b.npz")
    assert state.train_state["epoch"] == 2 and state.model.dtype == np.float32
    assert state.optimizer.eps == 1e-4 and state.optimizer.lr == pytest.approx(1e-3 * 10 ** (-1 / 7))


def test_a_second_run_on_the_same_state_is_refused(bench, tmp_path):
    import fcntl
    with open(tmp_path / ".s.npz.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SystemExit) as exc:
            bench.main(["--row", "vae_k1", "--dataset", "mnist-5k", "--budget", "1", "--state", str(tmp_path / "s.npz"),
                        "--results", str(tmp_path / "r.json")])
        assert exc.value.code == 2
    assert not (tmp_path / "r.json").exists()


def _committed_models():
    """(model file, its literature.json entry) for every committed burda_*.npz evaluated on all 10,000 images."""
    results = SCRIPT.parent / "results"
    runs = json.loads((results / "literature.json").read_text())
    out = []
    for path in sorted(results.glob("burda_*.npz")):
        entries = [r for r in runs if r["model"].split(" ")[0] == path.name and r["eval_images"] == 10000]
        out.append(pytest.param(path, entries[-1] if entries else None, id=path.stem))
    return out


@functools.lru_cache(maxsize=1)
def _mnist_test_images(folder):
    """The 10,000 MNIST test images in `folder`, flattened (N, 784) uint8, read once for all the models."""
    x_test, _ = vn.datasets.load_dataset("mnist", "test", data_dir=folder, download=False, progress=False)
    return vn.datasets.flatten(x_test)


@pytest.mark.parametrize("path, entry", _committed_models())
def test_each_committed_model_gives_its_committed_figures(bench, full_mnist, path, entry):
    """A committed model is the one its figures were measured on: its test -ELBO (one sample, bench_literature's
    seed) and active units on the 10,000 binarized test images are recomputed and compared with literature.json
    (the 5,000-sample log-likelihood takes minutes and is left to benchmarks/literature_paired.py)."""
    assert entry is not None, f"{path.name} has no entry in literature.json on all 10,000 test images"
    model = vn.load_model(path)
    objective, k = bench.ROWS[entry["row"]]
    config = model.config()
    assert (config["hidden_dims"], config["latent_dim"], config["activation"]) == ([200, 200], 50, "tanh")
    assert (config["objective"], config["k"]) == (objective, k)
    xt = bench.prepare_data(model, _mnist_test_images(full_mnist), binarize="dynamic")
    neg_elbo = bench.elbo(model, xt, seed=bench.EVAL_SEED)["neg_elbo"]
    assert neg_elbo == pytest.approx(entry["test_neg_elbo"], abs=1e-3)     # float32 sums: thread counts may differ
    assert bench.active_units(model, xt)[0] == entry["active_units"]
