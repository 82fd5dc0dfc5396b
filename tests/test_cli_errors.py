"""Every failure path of the command line: one line and exit 2 for a user error, exit 1 and one line for a bug
(the traceback with --debug), nothing overwritten, a full disk handled, and hints that work when followed."""

from __future__ import annotations

import errno
import itertools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_checkpoint_hardening import BAD_STATES, config_bytes, npy_bytes, rebuild, with_state

import vae_numpy as vn
from vae_numpy.cli import main
from vae_numpy.commands import train as train_cmd

ROOT = Path(__file__).resolve().parent.parent
TRAIN = sys.modules["vae_numpy.train"]   # the module (vn.train is the function)
TINY = ["--dataset", "mnist-5k", "--hidden", "16", "--latent-dim", "2", "--batch-size", "512", "--no-progress",
        "--no-figures"]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network, an empty user cache, the working directory in tmp_path."""
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("VAE_NUMPY_DATA", raising=False)
    monkeypatch.delenv("VAE_NUMPY_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
    """A finished one-epoch run (runs/a/model.npz) on mnist-5k, written by the command line."""
    out = tmp_path_factory.mktemp("runs") / "a"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out / "model.npz"


def one_line(capsys, code, argv, *match):
    """main(argv) exits `code` with exactly one line on stderr, no traceback, containing each of `match`."""
    assert main([str(a) for a in argv]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for m in match:
        assert m in err, (m, err)
    return err


def crafted(tmp_path, source, kind):
    if kind == "header 2**36":
        how = {"replace": {"param.enc1.W": npy_bytes(shape=(2 ** 36,), data=b"\0" * 64)}}
    else:
        how = {"replace": {"config": config_bytes(hidden_dims=[10 ** 11])}}
    return rebuild(source, tmp_path / "crafted.npz", **how)


# ------------------------------------------------------------------------------------------ one line, exit 2
@pytest.mark.parametrize("kind", ["header 2**36", "hidden_dims 1e11"])
@pytest.mark.parametrize("command", [["evaluate"], ["sample"], ["explore"], ["train", "--resume"]])
def test_crafted_checkpoints_are_one_line_in_every_command(tmp_path, capsys, offline, kind, command):
    good = vn.VAE(hidden_dims=(16,), latent_dim=3, seed=1).save(tmp_path / "good.npz")
    path = crafted(tmp_path, good, kind)
    one_line(capsys, 2, [*command, path], "crafted.npz", "68719476736" if "header" in kind else "parameters")


@pytest.mark.parametrize("argv, match", [
    (["train", "--latent-dim", "100000000"], "--latent-dim 100000000: the model would have"),
    (["train", "--hidden", "99999999999"], "--hidden 99999999999"),
    (["train", "--hidden", "100000,100000"], "at most 268,435,456"),
    (["train", "--model", "ae", "--latent-dim", "100000000"], "parameters"),
    (["gradcheck", "--seed", "-1"], "'-1' is not a non-negative integer"),
    (["evaluate", "nope.npz"], "does not exist"),
])
def test_impossible_values_are_one_line(capsys, offline, argv, match):
    one_line(capsys, 2, argv, match)


@pytest.mark.parametrize("command", [["train", *TINY], ["explore", "CKPT"], ["assignments", "--source", "SRC"]])
@pytest.mark.parametrize("where", ["file", "under a file"])
def test_out_naming_a_file_is_one_line(tmp_path, capsys, offline, run_a, command, where):
    (tmp_path / "taken").write_text("not a folder")
    out = tmp_path / "taken" if where == "file" else tmp_path / "taken" / "sub"
    argv = [str(run_a) if a == "CKPT" else str(ROOT / "tutorials") if a == "SRC" else a for a in command]
    one_line(capsys, 2, [*argv, "--out", out], "--out", "taken")
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_a_missing_or_unwritable_checkpoint_folder_is_found_before_training(tmp_path, monkeypatch):
    x = np.zeros((20, 784), np.uint8)
    calls = []
    monkeypatch.setattr(TRAIN._Shuffled, "__iter__", lambda self: calls.append(1) or iter(()))
    with pytest.raises(vn.ConfigError, match="does not exist"):
        vn.train(vn.VAE(hidden_dims=(4,), latent_dim=2), x, checkpoint=tmp_path / "missing" / "m.npz", progress=False)
    with pytest.raises(vn.ConfigError, match="is a folder"):
        vn.train(vn.VAE(hidden_dims=(4,), latent_dim=2), x, checkpoint=tmp_path, progress=False)
    import vae_numpy._validate as validate

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(validate.tempfile, "mkstemp", refuse)
    with pytest.raises(vn.ConfigError, match="cannot write into .*Permission denied"):
        vn.train(vn.VAE(hidden_dims=(4,), latent_dim=2), x, checkpoint=tmp_path / "m.npz", progress=False)
    assert calls == []   # no epoch started


def test_an_unwritable_out_is_one_line_before_training(tmp_path, capsys, offline, monkeypatch):
    import vae_numpy._validate as validate

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(validate.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(TRAIN, "train", lambda *a, **k: pytest.fail("training started"))
    one_line(capsys, 2, ["train", *TINY, "--out", tmp_path / "ro"], "Read-only file system")


# ------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("case", ["epoch two", "epoch missing", "history abc", "rng state text", "batch negative",
                                  "rng mt19937 short key", "seed text", "binarize maybe"])
def test_a_crafted_training_state_through_the_cli_is_one_line(tmp_path, capsys, offline, run_a, case):
    change, match = BAD_STATES[case]
    path = with_state(run_a, tmp_path / "edited.npz", change)
    one_line(capsys, 2, ["train", "--resume", path, "--epochs", "3"], "edited.npz", "start a new run")


def test_resume_into_an_out_that_holds_a_run_is_refused(tmp_path, capsys, offline, run_a):
    b = tmp_path / "b"
    assert main(["train", *TINY, "--epochs", "1", "--seed", "3", "--out", str(b)]) == 0
    before = (b / "model.npz").read_bytes()
    capsys.readouterr()
    one_line(capsys, 2, ["train", "--resume", run_a, "--epochs", "3", "--out", b], "already holds a run")
    assert (b / "model.npz").read_bytes() == before
    c = tmp_path / "c"    # an empty or new folder is fine, and the source run stays as it was
    source = run_a.read_bytes()
    assert main(["train", "--resume", str(run_a), "--epochs", "2", "--out", str(c), "--no-progress",
                 "--no-figures"]) == 0
    assert vn.load_checkpoint(c / "model.npz").train_state["epoch"] == 2 and run_a.read_bytes() == source


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # the overflow that the divergence is made of
def test_a_diverged_resumed_run_names_the_checkpoint_that_exists(tmp_path, capsys, offline, run_a):
    meta = json.loads(str(np.load(run_a)["optim_meta"]))
    meta["state"]["lr"] = 1e30
    hot = rebuild(run_a, tmp_path / "hot.npz", replace={"optim_meta": npy_bytes(np.array(json.dumps(meta)))})
    assert main(["train", "--resume", str(hot), "--epochs", "3", "--out", str(tmp_path / "b"), "--no-progress",
                 "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and f"it resumed from, {hot}, is unchanged" in err
    assert "no checkpoint was written" in err and not (tmp_path / "b" / "model.npz").exists()


# ------------------------------------------------------------------------------------------ disk full
def test_disk_full_while_writing_a_checkpoint_is_one_line_and_keeps_the_last_one(tmp_path, capsys, offline,
                                                                                 monkeypatch):
    out = tmp_path / "r"
    real, writes = np.savez, []

    def full_on_second(f, **arrays):
        writes.append(1)
        if len(writes) == 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, **arrays)

    monkeypatch.setattr("vae_numpy.checkpoint.np.savez", full_on_second)
    err = one_line(capsys, 2, ["train", *TINY, "--epochs", "3", "--out", out],
                   f"no space left writing {out / 'model.npz'}: free some space, or save elsewhere (--out)")
    assert "Errno" not in err
    assert vn.load_checkpoint(out / "model.npz").train_state["epoch"] == 1
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A tmpfs of `size` bytes mounted in tmp_path (root only; skipped where mounting is not allowed)."""
    mounted = []

    def mount(size):
        where = tmp_path / "small"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.skipif(sys.platform != "linux" or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux")
def test_a_real_full_disk_keeps_the_previous_checkpoint(tmp_path, capsys, offline, tiny_tmpfs):
    probe = tmp_path / "probe"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(probe)]) == 0
    size = (probe / "model.npz").stat().st_size
    disk = tiny_tmpfs((size * 3 // 2 // 4096 + 1) * 4096)      # room for one checkpoint, not for two at once
    capsys.readouterr()
    out = disk / "run"
    one_line(capsys, 2, ["train", *TINY, "--epochs", "3", "--out", out], f"no space left writing {out}")
    assert vn.load_checkpoint(out / "model.npz").train_state["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ bugs
def test_an_unexpected_error_is_one_line_exit_1_and_debug_shows_the_traceback(capsys, offline, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(train_cmd, "run", broken)
    err = one_line(capsys, 1, ["train"], "a bug in vae-numpy", "ZeroDivisionError", "--debug")
    assert main(["train", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("VAE_NUMPY_DEBUG", "1")
    assert main(["train"]) == 1
    assert "Traceback" in capsys.readouterr().err and err


@pytest.mark.parametrize("exc, code", [(MemoryError(), 2), (vn.DataError("no data"), 2),
                                       (IsADirectoryError(21, "Is a directory", "x"), 2),
                                       (NotADirectoryError(20, "Not a directory", "x/y"), 2)])
def test_memory_and_os_errors_are_one_line_exit_2(capsys, offline, monkeypatch, exc, code):
    def broken(args):
        raise exc

    monkeypatch.setattr(train_cmd, "run", broken)
    one_line(capsys, code, ["train"])


@pytest.mark.parametrize("argv, code", [
    (["train", "--latent-dim", "100000000"], 2),
    (["gradcheck", "--seed", "-1"], 2),
    (["evaluate", "CRAFTED"], 2),
])
def test_no_traceback_from_a_real_process(tmp_path, argv, code):
    good = vn.VAE(hidden_dims=(16,), latent_dim=3, seed=1).save(tmp_path / "good.npz")
    argv = [str(crafted(tmp_path, good, "header 2**36")) if a == "CRAFTED" else a for a in argv]
    env = {**os.environ, "VAE_NUMPY_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "vae_numpy", *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == code and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------ hints that work
def test_ctrl_c_before_the_first_epoch_says_nothing_was_saved(tmp_path, capsys, offline, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TRAIN, "train", interrupted)
    err = one_line(capsys, 130, ["train", *TINY, "--out", tmp_path / "r"], "nothing was saved")
    assert "--resume" not in err and not (tmp_path / "r" / "model.npz").exists()


def interrupt_at_epoch(monkeypatch, epoch):
    """Ctrl-C while the given epoch is being recorded (after the earlier epochs' checkpoints were written)."""
    real = TRAIN._record

    def record(model, e, *args):
        if e == epoch:
            raise KeyboardInterrupt
        return real(model, e, *args)

    monkeypatch.setattr(TRAIN, "_record", record)


def follow(hint_line):
    """The vae-numpy command that a printed hint names, as argv for main()."""
    command = hint_line.split("continue with: ", 1)[1] if "continue with: " in hint_line else hint_line
    argv = shlex.split(command.strip().split("|")[0])
    assert argv[0] == "vae-numpy"
    return argv[1:]


def test_the_ctrl_c_hint_works_when_followed(tmp_path, capsys, offline, monkeypatch):
    interrupt_at_epoch(monkeypatch, 2)
    err = one_line(capsys, 130, ["train", *TINY, "--epochs", "3", "--out", tmp_path / "r"], "continue with:")
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    assert main(follow(err)) == 0
    assert vn.load_checkpoint(tmp_path / "r" / "model.npz").train_state["epoch"] == 3


def test_ctrl_c_in_a_resumed_run_into_another_folder_points_at_what_exists(tmp_path, capsys, offline, run_a,
                                                                          monkeypatch):
    interrupt_at_epoch(monkeypatch, 2)
    err = one_line(capsys, 130, ["train", "--resume", run_a, "--epochs", "3", "--out", tmp_path / "b",
                                 "--no-progress"], f"--resume {run_a} --epochs 3 --out {tmp_path / 'b'}")
    monkeypatch.undo()
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    assert main([*follow(err), "--no-figures"]) == 0


def test_the_data_folder_is_remembered_and_used_only_while_it_verifies(tmp_path, capsys, offline, monkeypatch,
                                                                        full_mnist):
    data = tmp_path / "data"
    data.mkdir()
    for f in full_mnist.iterdir():
        if "idx" in f.name:
            (data / f.name).symlink_to(f.resolve())
    out = tmp_path / "r"
    every = TRAIN._Shuffled.__iter__     # 3 batches an epoch: this test is about the data folder, not training
    monkeypatch.setattr(TRAIN._Shuffled, "__iter__", lambda self: itertools.islice(every(self), 3))
    with monkeypatch.context() as m:
        interrupt_at_epoch(m, 2)
        one_line(capsys, 130, ["train", "--data-dir", data, "--hidden", "8", "--latent-dim", "2", "--epochs", "2",
                               "--out", out, "--no-progress", "--no-figures"], f"--data-dir {data}")
    state = vn.load_checkpoint(out / "model.npz").train_state
    assert state["dataset"] == "mnist" and state["data"] == str(data.resolve())
    assert main(["train", "--resume", str(out / "model.npz"), "--no-progress", "--no-figures"]) == 0  # no --data-dir
    lines = capsys.readouterr().out
    assert f"dataset: mnist (from {data.resolve()}" in lines or f"from {data}" in lines
    nxt = next(line for line in lines.splitlines() if line.startswith("next: "))
    assert main([*follow(nxt[len("next: "):]), "--iwae-samples", "0"]) == 0     # the printed next step works
    (data / "t10k-images-idx3-ubyte").unlink(missing_ok=True)                       # no longer verifies
    (data / "t10k-images-idx3-ubyte.gz").unlink(missing_ok=True)
    assert main(["evaluate", str(out / "model.npz"), "--iwae-samples", "0"]) == 2
    captured = capsys.readouterr()
    assert "no longer holds a verified mnist" in captured.out and captured.err.count("\n") == 1
