"""vae-numpy train / evaluate / sample: run folders, resuming, the default dataset, and one-line user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import datasets
from vae_numpy.cli import main
from vae_numpy.commands import choose_dataset

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--dataset", "mnist-5k", "--hidden", "16", "--latent-dim", "2", "--batch-size", "256", "--no-progress",
        "--no-figures"]
HISTORY_KEYS = {"epoch", "train_loss", "test_loss", "test_reconstruction", "test_kl", "seconds"}


def cli(*args, env=None, cwd=ROOT):
    """`python -m vae_numpy ...` in a subprocess, offline, one BLAS thread: (exit code, stdout, stderr)."""
    full_env = {**os.environ, "VAE_NUMPY_OFFLINE": "1", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "vae_numpy", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, an empty user cache, and the working directory in tmp_path (for runs/)."""
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAE_NUMPY_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_evaluate_and_sample_as_commands(tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli("train", *TINY[:-1], "--epochs", "2", "--out", out)   # with the figures
    assert code == 0, stderr
    assert "dataset: mnist-5k" in stdout and "epoch 2/2" in stdout
    for name in ("model.npz", "metrics.json", "loss.png", "reconstructions.png", "samples.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist-5k" and metrics["config"]["model"]["hidden_dims"] == [16]
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    assert all(HISTORY_KEYS <= set(r) for r in metrics["history"])
    r = metrics["history"][-1]
    assert r["test_loss"] == pytest.approx(r["test_reconstruction"] + r["test_kl"])

    code, stdout, stderr = cli("evaluate", out / "model.npz", "--json", "--iwae-samples", "5")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert {"neg_elbo", "reconstruction", "kl", "log_likelihood", "active_units"} <= set(result)
    assert result["neg_elbo"] == pytest.approx(r["test_loss"], abs=10.0)   # other noise draws, same model
    assert result["log_likelihood"] > -result["neg_elbo"] - 1.0


def test_evaluate_prints_the_numbers_and_sample_writes_a_png(tmp_path, capsys, offline):
    assert main(["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "r" / "model.npz"), "--iwae-samples", "3"]) == 0
    text = capsys.readouterr().out
    assert "negative ELBO" in text and "IWAE" in text and "active units" in text
    assert main(["sample", str(tmp_path / "r" / "model.npz"), "-n", "10", "--out", str(tmp_path / "s.png")]) == 0
    first = (tmp_path / "s.png").read_bytes()
    assert first[:4] == b"\x89PNG"
    # an existing image is not replaced unless asked: one line, exit 2, the file untouched
    assert main(["sample", str(tmp_path / "r" / "model.npz"), "-n", "4", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "s.png").read_bytes() == first
    assert main(["sample", str(tmp_path / "r" / "model.npz"), "-n", "4", "--out", str(tmp_path / "s.png"),
                 "--force"]) == 0
    assert (tmp_path / "s.png").read_bytes() != first


def test_init_flag_reaches_the_model_and_the_metrics(tmp_path, offline):
    assert main(["train", *TINY, "--epochs", "1", "--init", "torch", "--out", str(tmp_path / "r")]) == 0
    assert vn.load_model(tmp_path / "r" / "model.npz").init == "torch"
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["config"]["model"]["init"] == "torch"


def test_a_resumed_cli_run_equals_an_uninterrupted_one(tmp_path, capsys, offline):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", *TINY, "--epochs", "2", "--seed", "5", "--binarize", "dynamic", "--out", str(a)]) == 0
    assert main(["train", *TINY, "--epochs", "1", "--seed", "5", "--binarize", "dynamic", "--out", str(b)]) == 0
    assert main(["train", "--resume", str(b / "model.npz"), "--epochs", "2", "--no-progress", "--no-figures"]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    ma, mb = vn.load_model(a / "model.npz"), vn.load_model(b / "model.npz")
    assert np.array_equal(ma._flat_params, mb._flat_params)
    ha = json.loads((a / "metrics.json").read_text())["history"]
    hb = json.loads((b / "metrics.json").read_text())["history"]
    assert [r["test_loss"] for r in ha] == [r["test_loss"] for r in hb]
    assert main(["train", "--resume", str(b / "model.npz"), "--no-progress"]) == 2   # already complete
    assert "--epochs" in capsys.readouterr().err


def test_train_with_no_flags_works_offline_on_a_fresh_install(tmp_path):
    # a fresh HOME (empty cache), no network; the real default trains 30 epochs, one follows the same path
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": "", "VAE_NUMPY_DATA": ""}
    code, out, err = cli("train", "--epochs", "1", "--no-progress", "--no-figures", env=env, cwd=tmp_path)
    assert code == 0, err
    first = out.splitlines()[0]
    assert first.startswith("dataset: mnist-5k") and "downloads are off" in first
    assert "VAE 784-400-20, bernoulli" in out and "Adam lr 0.001, batch 128" in out
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "model.npz").is_file() and (runs[0] / "metrics.json").is_file()


def test_a_failed_download_falls_back_to_the_embedded_digits(monkeypatch, tmp_path):
    monkeypatch.delenv("VAE_NUMPY_OFFLINE", raising=False)
    monkeypatch.delenv("VAE_NUMPY_DATA", raising=False)  # a developer's own MNIST folder would be found first
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(datasets, "DEBIAN_DATASETS", tmp_path / "none")

    def no_network(urls, *args, **kwargs):
        raise datasets.DownloadFailed(urls[0], [(u, "name or service not known") for u in urls])

    monkeypatch.setattr(datasets, "fetch", no_network)
    name, train, test, line = choose_dataset(None, progress=False)
    assert name == "mnist-5k" and train.shape == (4000, 28, 28) and test.shape == (1000, 28, 28)
    assert "could not be downloaded" in line


def test_help_states_the_default_epochs(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "default 30 on mnist-5k, 5 on the 60,000-image sets" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "0"],
    ["train", "--epochs", "many"],
    ["train", "--hidden", "400,x"],
    ["train", "--lr", "-1"],
    ["train", "--likelihood", "poisson"],
    ["train", "--dataset", "cifar"],
    ["train", "--bogus"],
    ["train", "--resume", "no/such/model.npz"],
    ["train", "--dataset", "fashion-mnist", "--data-dir", "no/such/folder"],
    ["train", "--model", "ae", "--beta", "4"],
    ["train", "--init", "lecun"],
    ["evaluate"],
    ["evaluate", "no/such/model.npz"],
    ["sample", "no/such/model.npz"],
])
def test_bad_flags_exit_2_with_one_line(argv, capsys, offline):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (offline / "runs").exists()


def test_resume_refuses_changed_settings_and_an_occupied_out(tmp_path, capsys, offline):
    run = tmp_path / "r"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    for argv in (["train", "--resume", str(run / "model.npz"), "--hidden", "8"],
                 ["train", "--resume", str(run / "model.npz"), "--init", "torch"],
                 ["train", "--resume", str(run / "model.npz"), "--dataset", "mnist"],
                 ["train", *TINY, "--out", str(run)],
                 ["sample", str(run / "model.npz"), "--out", str(tmp_path / "x.jpg")],
                 ["sample", str(run / "model.npz"), "-n", "0"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err


def test_a_collapsed_posterior_is_named_with_its_cure():
    from vae_numpy.commands.train import collapse_note
    assert collapse_note(5.3, 0) is None and collapse_note(float("nan"), 0) is None
    assert "--beta-warmup 1" in collapse_note(0.008, 0)
    assert "longer --beta-warmup" in collapse_note(0.008, 1.0)
    assert "--beta 100 weighs the KL 100 times" in collapse_note(0.008, 0, beta=100.0)


def test_train_says_when_the_posterior_collapsed(tmp_path):
    code, out, err = cli("train", *TINY, "--epochs", "2", "--beta", "100", "--out", tmp_path / "run")
    assert code == 0, err
    assert "note: the test KL is" in out and "posterior collapsed" in out and "smaller --beta" in out
    code, out, err = cli("train", *TINY, "--epochs", "2", "--out", tmp_path / "run2")
    assert code == 0, err
    assert "collapsed" not in out
