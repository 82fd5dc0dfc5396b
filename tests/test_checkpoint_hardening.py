"""Checkpoints that cannot be crafted into a crash or a memory blow-up: names and sizes are checked before any
member is read, every .npy header before its data, the config's sizes are bounded; old files still load."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _network
from vae_numpy import checkpoint as ck
from vae_numpy._network import MAX_PARAMS, param_shapes


def small(**kw):
    return vn.VAE(hidden_dims=(16,), latent_dim=3, seed=1, **kw)


def training_checkpoint(tmp_path, name="train.npz", optimizer="adam"):
    """A training checkpoint written by today's code (vn.train), 2 epochs on 40 random images."""
    x = np.random.default_rng(0).integers(0, 256, (40, 784), dtype=np.uint8)
    model = small()
    opt = vn.SGD(model.params, lr=0.01, momentum=0.9) if optimizer == "sgd" else None
    vn.train(model, x, x[:10], epochs=2, batch_size=16, optimizer=opt, progress=False,
             checkpoint=tmp_path / name, info={"dataset": "mnist-5k"})
    return tmp_path / name, model


def npy_bytes(array=None, *, descr="<f4", shape=None, fortran=False, data=b""):
    """The bytes of an .npy member: a real array, or a header declaring anything followed by `data`."""
    buf = io.BytesIO()
    if array is not None:
        np.lib.format.write_array(buf, np.asarray(array), allow_pickle=False)
        return buf.getvalue()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": fortran, "shape": shape})
    return buf.getvalue() + data


def rebuild(src, dst, replace=None, drop=(), extra=()):
    """Copy the archive src to dst member by member: `replace` {key: bytes}, `drop` keys, `extra` (name, bytes)."""
    replace = replace or {}
    with warnings.catch_warnings(), zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            key = info.filename[:-4]
            if key in drop:
                continue
            zout.writestr(info.filename, replace.get(key, zin.read(info)))
        warnings.simplefilter("ignore")   # a duplicate name is one of the crafted cases
        for name, data in extra:
            zout.writestr(name, data)
    return dst


def claim_size(path, member, size):
    """Make `member` declare `size` uncompressed bytes in the zip's local and central headers (data unchanged)."""
    raw = bytearray(path.read_bytes())
    name = member.encode()
    # (signature, offset of the uncompressed size, of the name's length, of the name): local and central headers
    for sig, size_at, len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        pos = raw.find(sig)
        while pos >= 0:
            n = struct.unpack_from("<H", raw, pos + len_at)[0]
            if raw[pos + name_at:pos + name_at + n] == name:
                struct.pack_into("<I", raw, pos + size_at, size)
            pos = raw.find(sig, pos + 4)
    path.write_bytes(bytes(raw))
    return path


def config_bytes(**changes):
    return npy_bytes(np.array(json.dumps({**small().config(), **changes})))


def refused(path, match):
    with pytest.raises(vn.CheckpointError, match=match) as info:
        vn.load_checkpoint(path)
    assert str(path.name) in str(info.value) and "\n" not in str(info.value)
    return str(info.value)


# ------------------------------------------------------------------------------------------ compatibility
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_training_checkpoint_written_by_todays_code_loads_and_resumes(tmp_path, optimizer):
    path, model = training_checkpoint(tmp_path, optimizer=optimizer)
    got = vn.load_checkpoint(path)
    assert got.model.config() == model.config() and got.train_state["epoch"] == 2
    with np.load(path, allow_pickle=False) as z:      # the plain reader sees the same arrays
        for name, value in got.model.params.items():
            assert np.array_equal(z[f"param.{name}"], value) and np.array_equal(value, model.params[name])
    x = np.random.default_rng(0).integers(0, 256, (40, 784), dtype=np.uint8)
    again, history = vn.resume(path, x, x[:10], epochs=3, progress=False)
    assert len(history) == 3


def test_a_bare_model_written_by_todays_code_loads(tmp_path):
    model = vn.VAE(hidden_dims=(8, 6), latent_dim=2, likelihood="gaussian", decoder_sigma="learned",
                   dtype="float64", seed=5)
    loaded = vn.load_model(model.save(tmp_path / "m.npz"))
    assert all(np.array_equal(loaded.params[n], p) for n, p in model.params.items())


@pytest.mark.parametrize("make", [
    lambda: small(), lambda: vn.VAE(hidden_dims=(8, 6), latent_dim=2), lambda: vn.VAE(hidden_dims=(), latent_dim=2),
    lambda: vn.Autoencoder(hidden_dims=(5,), latent_dim=2, likelihood="gaussian", decoder_sigma="learned"),
    lambda: vn.VAE(hidden_dims=(4,), latent_dim=2, likelihood="gaussian", decoder_sigma="learned"),
])
def test_param_shapes_is_the_models_layout_in_order(make):
    model = make()
    shapes = param_shapes(model.config())
    assert list(shapes.items()) == [(n, p.shape) for n, p in model.params.items()]


@pytest.mark.parametrize("change", [{"hidden_dims": [10 ** 11]}, {"latent_dim": 10 ** 8},
                                    {"input_dim": 2 ** 40}, {"hidden_dims": [2 ** 14, 2 ** 14, 2 ** 14]}])
def test_param_shapes_bounds_the_size_without_allocating(change):
    with pytest.raises(vn.ConfigError, match="parameters .*at most"):
        param_shapes({**small().config(), **change})
    with pytest.raises(vn.ConfigError, match="parameters"):
        vn.VAE(**{k: v for k, v in {**small().config(), **change}.items() if k != "kind"})


def test_not_enough_memory_for_a_model_is_a_config_error(monkeypatch):
    real = np.zeros

    def no_memory(shape, *args, **kwargs):   # np is numpy itself: fail only the parameter buffer
        if shape == 26054:
            raise MemoryError
        return real(shape, *args, **kwargs)

    monkeypatch.setattr(_network.np, "zeros", no_memory)
    with pytest.raises(vn.ConfigError, match="not enough memory for 26,054"):
        small()


# ------------------------------------------------------------------------------------------ crafted files
@pytest.mark.parametrize("member, size, match", [
    ("param.extra.npy", 2 ** 30, "unexpected .*not read"),          # a name no config implies
    ("evil.npy", 2 ** 30, "unknown entries .*not read"),
    ("param.dec_out.W.npy", 2 ** 30, "declares 1,073,741,824 bytes .*at most 60,176"),  # a known name, too big
    ("param.extra.npy", 2 ** 32 - 2, "declares 4,294,967,294 bytes"),   # more than any model allowed
])
def test_a_member_claiming_gigabytes_is_refused_unopened(tmp_path, monkeypatch, member, size, match):
    good = small().save(tmp_path / "good.npz")
    extra = [] if member.startswith("param.dec_out") else [(member, npy_bytes(np.zeros(4)))]
    bad = claim_size(rebuild(good, tmp_path / "big.npz", extra=extra), member, size)
    with zipfile.ZipFile(bad) as z:
        assert z.getinfo(member).file_size == size
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(getattr(
        name, "filename", name)) or real_open(self, name, *a, **k))
    refused(bad, match)
    assert member not in opened and all(name in ("format.npy", "config.npy") for name in opened)


CRAFTED = {
    # name: (how to change the good archive, what the message says)
    "unknown entry": (dict(extra=[("evil.npy", npy_bytes(np.zeros(3)))]), "unknown entries"),
    "extra parameter": (dict(extra=[("param.extra.npy", npy_bytes(np.zeros(3)))]), "unexpected"),
    "missing parameter": (dict(drop=["param.enc1.b"]), "missing"),
    "folder member": (dict(extra=[("a/param.x.npy", npy_bytes(np.zeros(3)))]), "no checkpoint has"),
    "not .npy": (dict(extra=[("notes.txt", b"hello")]), "no checkpoint has"),
    "duplicate": (dict(extra=[("param.enc1.b.npy", npy_bytes(np.zeros(16, np.float32)))]), "twice"),
    "header 2**36": (dict(replace={"param.enc1.W": npy_bytes(shape=(2 ** 36,), data=b"\0" * 64)}),
                     r"float32 \(68719476736,\); the config needs float32 \(784, 16\)"),
    "header float64": (dict(replace={"param.enc1.b": npy_bytes(np.zeros(16))}), "float64 .*needs float32"),
    "header big-endian": (dict(replace={"param.enc1.b": npy_bytes(np.zeros(16, ">f4"))}), ">f4 .*needs float32"),
    "header fortran": (dict(replace={"param.enc1.W": npy_bytes(descr="<f4", shape=(784, 16), fortran=True,
                                                               data=b"\0" * 784 * 16 * 4)}), "Fortran"),
    "data truncated": (dict(replace={"param.enc1.b": npy_bytes(np.zeros(16, np.float32))[:-8]}),
                       "truncated or padded"),
    "data padded": (dict(replace={"param.enc1.b": npy_bytes(np.zeros(16, np.float32)) + b"\0" * 8}),
                    "truncated or padded"),
    "object header": (dict(replace={"param.enc1.b": npy_bytes(descr="|O", shape=(16,), data=b"\0" * 128)}),
                      "pickles"),
    "no header": (dict(replace={"param.enc1.b": b"not an npy member at all"}), "no valid .npy header"),
    "header too long": (dict(replace={"param.enc1.W": b"\x93NUMPY\x01\x00" + struct.pack("<H", 12000)
                                      + b" " * 12000}), "no valid .npy header"),
    "config hidden 1e11": (dict(replace={"config": config_bytes(hidden_dims=[10 ** 11])}), "parameters"),
    "config latent 1e8": (dict(replace={"config": config_bytes(latent_dim=10 ** 8)}), "parameters"),
    "config latent string": (dict(replace={"config": config_bytes(latent_dim="3")}), "latent_dim"),
    "config dtype": (dict(replace={"config": config_bytes(dtype="float16")}), "dtype"),
    "config not json": (dict(replace={"config": npy_bytes(np.array("{not json"))}), "not valid JSON"),
    "config an array": (dict(replace={"config": npy_bytes(np.zeros(3))}), "should be a string"),
    "config huge string": (dict(replace={"config": npy_bytes(np.array("x" * 70000))}), "characters"),
    "train_state nested": (dict(extra=[("train_state.npy", npy_bytes(np.array("[" * 100000)))]),
                           "nested too deeply|not valid JSON"),
    "optim_meta unknown": (dict(extra=[("optim_meta.npy", npy_bytes(np.array('{"class": "Evil", "state": {}}')))]),
                           "optimizer 'Evil' is unknown"),
    "optim arrays missing": (dict(extra=[("optim_meta.npy", npy_bytes(np.array(
        '{"class": "Adam", "state": {"t": 1, "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-8}}')))]), "missing"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_archives_are_refused_with_one_line(tmp_path, case):
    how, match = CRAFTED[case]
    good = small().save(tmp_path / "good.npz")
    refused(rebuild(good, tmp_path / "bad.npz", **how), match)


def test_a_header_declaring_2_36_floats_never_allocates(tmp_path):
    import tracemalloc
    good = small().save(tmp_path / "good.npz")
    bad = rebuild(good, tmp_path / "bad.npz",
                  replace={"param.dec_out.W": npy_bytes(shape=(2 ** 36,), data=b"\0" * 64)})
    tracemalloc.start()
    try:
        refused(bad, "68719476736")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2 ** 20


def test_memory_error_while_loading_is_a_checkpoint_error_naming_the_size(tmp_path, monkeypatch):
    good = small().save(tmp_path / "good.npz")

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(ck, "build_model", no_memory)
    refused(good, "not enough memory .*26,054")


def test_the_bounds_are_the_ones_documented():
    assert MAX_PARAMS == 2 ** 28 and ck.MAX_MEMBER > 4 * MAX_PARAMS


# ------------------------------------------------------------------------------------------ training states
@pytest.fixture(scope="module")
def run_checkpoint(tmp_path_factory):
    return training_checkpoint(tmp_path_factory.mktemp("run"))[0]


def with_state(src, dst, change):
    """A copy of the checkpoint src whose train_state is change(state) (a function editing the dict)."""
    with zipfile.ZipFile(src) as z:
        state = json.loads(str(np.load(io.BytesIO(z.read("train_state.npy")))))
    change(state)
    return rebuild(src, dst, replace={"train_state": npy_bytes(np.array(json.dumps(state)))})


def setter(key, value):
    return lambda s: s.update({key: value})


def deleter(key):
    return lambda s: s.pop(key)


def rng_edit(**changes):
    return lambda s: s["rng"].update(changes)


def history_edit(i, **changes):
    return lambda s: s["history"][i].update(changes)


BAD_STATES = {
    "epoch two": (setter("epoch", "two"), "epoch"), "epoch missing": (deleter("epoch"), "'epoch'.* is missing"),
    "epoch negative": (setter("epoch", -1), "epoch"), "epoch float": (setter("epoch", 1.5), "epoch"),
    "epoch bool": (setter("epoch", True), "epoch"), "epochs zero": (setter("epochs", 0), "epochs"),
    "epochs string": (setter("epochs", "3"), "epochs"), "history abc": (setter("history", "abc"), "history"),
    "history short": (lambda s: s["history"].pop(), "history"), "history ints": (setter("history", [1, 2]), "history"),
    "history loss text": (history_edit(0, train_loss="x"), "history"),
    "history epoch wrong": (history_edit(1, epoch=7), "history"),
    "rng abc": (setter("rng", "abc"), "rng"), "rng missing": (deleter("rng"), "rng"),
    "rng unknown generator": (rng_edit(bit_generator="Evil"), "rng"),
    "rng state text": (rng_edit(state="abc"), "rng"), "rng inner missing": (rng_edit(state={}), "rng"),
    "rng mt19937 short key": (setter("rng", {"bit_generator": "MT19937", "state": {"key": [1, 2], "pos": 0}}), "rng"),
    "batch negative": (setter("batch_size", -16), "batch_size"), "batch zero": (setter("batch_size", 0), "batch_size"),
    "batch text": (setter("batch_size", "16"), "batch_size"), "seed negative": (setter("seed", -5), "seed"),
    "seed text": (setter("seed", "0"), "seed"), "binarize maybe": (setter("binarize", "maybe"), "binarize"),
    "clip negative": (setter("clip_grad", -1), "clip_grad"), "warmup text": (setter("beta_warmup", "x"), "beta_warmup"),
    "n_train zero": (setter("n_train", 0), "n_train"), "dataset number": (setter("dataset", 5), "dataset"),
    "data list": (setter("data", ["/tmp"]), "'data'"),
    "threads huge": (setter("threads", 10 ** 9), "threads"), "threads text": (setter("threads", "many"), "threads"),
}


@pytest.mark.parametrize("case", list(BAD_STATES))
def test_a_crafted_training_state_is_a_checkpoint_error_naming_the_key(tmp_path, run_checkpoint, case):
    change, match = BAD_STATES[case]
    path = with_state(run_checkpoint, tmp_path / "edited.npz", change)
    x = np.zeros((40, 784), np.uint8)
    with pytest.raises(vn.CheckpointError, match=match) as info:
        vn.resume(path, x, progress=False, checkpoint=None)
    message = str(info.value)
    assert "edited.npz" in message and "\n" not in message and "start a new run" in message
    with pytest.raises(vn.CheckpointError, match=match):      # the same through train(state=...)
        ck_ = vn.load_checkpoint(path)
        vn.train(ck_.model, x, optimizer=ck_.optimizer, state=ck_.train_state, progress=False)


def test_a_training_state_that_is_not_an_object_is_refused_at_load(tmp_path, run_checkpoint):
    path = rebuild(run_checkpoint, tmp_path / "list.npz", replace={"train_state": npy_bytes(np.array("[1, 2]"))})
    refused(path, "train_state.* JSON object")


# ------------------------------------------------------------------------------------------ overwrites
def test_save_refuses_to_replace_a_training_checkpoint_unless_asked(tmp_path, run_checkpoint):
    path = tmp_path / "run.npz"
    path.write_bytes(run_checkpoint.read_bytes())
    before = path.read_bytes()
    with pytest.raises(vn.CheckpointError, match="training checkpoint .*overwrite=True"):
        small().save(path)
    assert path.read_bytes() == before
    small().save(path, overwrite=True)
    assert vn.load_checkpoint(path).train_state == {}


@pytest.mark.parametrize("content", [b"my thesis", b"", b"PK\x03\x04 broken zip"])
def test_save_refuses_to_replace_a_file_that_is_not_a_model(tmp_path, content):
    path = tmp_path / "notes.npz"
    path.write_bytes(content)
    with pytest.raises(vn.CheckpointError, match="not a model file of vae_numpy"):
        small().save(path)
    assert path.read_bytes() == content


def test_save_replaces_a_bare_model_and_refuses_a_folder(tmp_path):
    path = small().save(tmp_path / "m.npz")
    other = vn.VAE(hidden_dims=(8,), latent_dim=2, seed=3)
    other.save(path)
    assert vn.load_model(path).config() == other.config()
    with pytest.raises(vn.CheckpointError, match="is a folder"):
        other.save(tmp_path)


def test_the_readmes_python_snippet_runs(tmp_path, monkeypatch):
    """The README's "From Python" block, with fewer epochs: train with a checkpoint, save, load, resume."""
    import re
    from pathlib import Path
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"### From Python\s+```python\n(.*?)```", readme, re.S).group(1)
    small_run = {"epochs=30": "epochs=1", "epochs=40": "epochs=2", "iwae_samples=100": "iwae_samples=2"}
    for old, new in small_run.items():
        assert old in block, f"the README snippet changed: update this test's {old!r}"
        block = block.replace(old, new)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(block, "README.md", "exec"), scope)
    assert len(scope["history"]) == 2 and vn.load_checkpoint("run.npz").train_state["epoch"] == 2
    assert vn.load_checkpoint("model.npz").train_state == {}
