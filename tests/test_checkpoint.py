"""Checkpoints: round trips, atomic writes, and refusal of garbage, truncated, foreign and pickle-bearing files."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _atomic as atomic
from vae_numpy import checkpoint as ck
from vae_numpy.cli import main

ROOT = Path(__file__).resolve().parent.parent


def small(**kw):
    return vn.VAE(hidden_dims=(16,), latent_dim=3, seed=1, **kw)


def trained(seed=1):
    model = small()
    opt = vn.Adam(model.params, lr=1e-2)
    x = np.random.default_rng(seed).random((20, 784)).astype(np.float32)
    for _ in range(3):
        model.forward(x)
        model.backward()
        opt.step(model.grads)
    return model, opt


class Payload:
    """Unpickling this creates the file `marker`: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def temporaries(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("make", [
    lambda: small(),
    lambda: vn.VAE(hidden_dims=(8, 6), latent_dim=2, likelihood="gaussian", decoder_sigma="learned",
                   dtype="float64", beta=4.0, activation="tanh", seed=5),
    lambda: vn.Autoencoder(hidden_dims=(8,), latent_dim=2, seed=2),
    lambda: vn.VAE(hidden_dims=(8,), latent_dim=3, init="torch", seed=1),
])
def test_a_saved_model_loads_with_the_same_config_and_outputs(tmp_path, make):
    model = make()
    model.params["dec_out.b"][...] = 0.25
    path = model.save(tmp_path / "m.npz")
    loaded = vn.load_model(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    for name, value in model.params.items():
        assert np.array_equal(loaded.params[name], value) and loaded.params[name].dtype == value.dtype
    rng = np.random.default_rng(0)
    x, eps = rng.random((5, 784)), rng.standard_normal((5, model.latent_dim))
    assert loaded.forward(x, eps=eps) == model.forward(x, eps=eps)
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)        # not mkstemp's private mode


def test_a_training_checkpoint_holds_the_optimizer_and_the_state(tmp_path):
    model, opt = trained()
    state = {"epoch": 3, "rng": np.random.default_rng(4).bit_generator.state, "history": [{"a": 1.5}]}
    ck.save_model(model, tmp_path / "t.npz", opt, state)
    got = ck.load_checkpoint(tmp_path / "t.npz")
    assert got.train_state == state
    assert isinstance(got.optimizer, vn.Adam) and got.optimizer.t == opt.t and got.optimizer.lr == opt.lr
    for name in model.params:
        assert np.array_equal(got.optimizer.m[name], opt.m[name])
        assert np.array_equal(got.optimizer.v[name], opt.v[name])
    sgd = vn.SGD(model.params, lr=0.1, momentum=0.9)
    sgd.step(model.grads)
    ck.save_model(model, tmp_path / "s.npz", sgd)
    got = ck.load_checkpoint(tmp_path / "s.npz")
    assert isinstance(got.optimizer, vn.SGD) and got.optimizer.momentum == 0.9
    assert np.array_equal(got.optimizer.velocity["enc1.W"], sgd.velocity["enc1.W"])


# ------------------------------------------------------------------------------------------ atomic writes
def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = small().save(tmp_path / "model.npz")
    before = path.read_bytes()
    model, _ = trained()

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(vn.WriteError, match="no space left writing .*model.npz"):
        model.save(path)
    assert path.read_bytes() == before and temporaries(tmp_path) == []


def test_a_write_interrupted_half_way_keeps_the_old_file(tmp_path, monkeypatch):
    path = small().save(tmp_path / "model.npz")
    before = path.read_bytes()
    real = np.savez

    def half(file, **arrays):
        real(file, **dict(list(arrays.items())[:3]))
        raise KeyboardInterrupt   # Ctrl-C in the middle of the archive

    monkeypatch.setattr(ck.np, "savez", half)
    with pytest.raises(KeyboardInterrupt):
        trained()[0].save(path)
    assert path.read_bytes() == before and temporaries(tmp_path) == []


def test_a_writer_killed_half_way_never_replaces_the_good_file(tmp_path):
    path = small().save(tmp_path / "model.npz")
    before = path.read_bytes()
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        import vae_numpy as vn
        from vae_numpy import checkpoint as ck
        real, written = np.savez, [0]

        class Dying:                      # a file that SIGKILLs the process after 20 kB
            def __init__(self, f): self.f = f
            def __getattr__(self, name): return getattr(self.f, name)
            def write(self, data):
                written[0] += len(data)
                if written[0] > 20000:
                    self.f.flush(); os.kill(os.getpid(), signal.SIGKILL)
                return self.f.write(data)

        ck.np.savez = lambda f, **arrays: real(Dying(f), **arrays)
        vn.VAE(hidden_dims=(64,), latent_dim=3, seed=9).save({str(path)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr.decode()
    assert path.read_bytes() == before
    assert vn.load_model(path).config() == small().config()
    leftovers = temporaries(tmp_path)   # the killed writer could not clean up: a hidden temporary, never read
    assert all(name.startswith(".model.npz.") for name in leftovers)


# ------------------------------------------------------------------------------------------ refusals
def write_bad(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    good = small().save(tmp_path / "good.npz").read_bytes()
    marker = tmp_path / "PWNED"
    if kind == "garbage":
        path.write_bytes(os.urandom(3000))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind.startswith("truncated"):
        path.write_bytes(good[:int(len(good) * float(kind.split("-")[1]))])
    elif kind == "pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
    elif kind == "npz-with-pickle":
        np.savez(path, format=np.array(ck.FORMAT), config=np.array(json.dumps(small().config())),
                 evil=np.array([Payload(marker)], dtype=object))
    elif kind == "foreign":
        np.savez(path, weights=np.zeros(3))
    elif kind == "npy":
        np.save(path, np.zeros(3))
        path = path.with_suffix(".npz.npy")
    elif kind == "version":
        z = dict(np.load(tmp_path / "good.npz"))
        np.savez(path, **{**z, "format": np.array("vae_numpy.checkpoint/99")})
    elif kind == "shape":
        z = dict(np.load(tmp_path / "good.npz"))
        np.savez(path, **{**z, "param.enc1.W": np.zeros((784, 17), np.float32)})
    elif kind == "nan":
        z = dict(np.load(tmp_path / "good.npz"))
        np.savez(path, **{**z, "param.dec_out.b": np.full(784, np.nan, np.float32)})
    elif kind == "kind":
        z = dict(np.load(tmp_path / "good.npz"))
        np.savez(path, **{**z, "config": np.array(json.dumps({**small().config(), "kind": "gan"}))})
    return path, marker


BAD = ["garbage", "empty", "truncated-0.5", "truncated-0.99", "pickle", "npz-with-pickle", "foreign", "npy",
       "version", "shape", "nan", "kind"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_files_raise_checkpoint_error_and_run_no_code(tmp_path, kind):
    path, marker = write_bad(tmp_path, kind)
    with pytest.raises(vn.CheckpointError, match=str(path.name)):
        vn.load_model(path)
    assert not marker.exists()


def test_a_missing_file_or_a_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(vn.CheckpointError, match="does not exist"):
        vn.load_model(tmp_path / "nope.npz")
    with pytest.raises(vn.CheckpointError, match="folder"):
        vn.load_model(tmp_path)


@pytest.mark.parametrize("kind", ["garbage", "truncated-0.5", "pickle", "npz-with-pickle", "foreign"])
@pytest.mark.parametrize("command", [["evaluate"], ["sample"], ["train", "--resume"]])
def test_the_cli_refuses_bad_checkpoints_with_exit_2_and_one_line(tmp_path, capsys, kind, command):
    path, marker = write_bad(tmp_path, kind)
    assert main([*command, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and path.name in err
    assert not marker.exists()
