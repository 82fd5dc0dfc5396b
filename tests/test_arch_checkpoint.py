"""Architectures in checkpoints and on the command line: the layers stored as JSON data, old MLP checkpoints
(tests/data, written by the code before the models-from-layers redesign, commit 745e9c2) load and decode the
same, crafted layer configs are refused, and `vae-numpy train --arch conv` runs with its options."""

import json
from pathlib import Path

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy.checkpoint import load_checkpoint
from vae_numpy.cli import main

DATA = Path(__file__).parent / "data"


def test_old_mlp_checkpoints_load_and_decode_the_same():
    exp = np.load(DATA / "old_mlp_expected.npz", allow_pickle=False)
    vae = vn.load_model(DATA / "old_mlp_vae_gaussian.npz")
    assert vae.arch == "mlp" and vae.hidden_dims == (6, 5) and vae.decoder_sigma == "learned"
    np.testing.assert_allclose(vae.decode(exp["h2"]), exp["vae_decode"], rtol=1e-6)
    assert vae.forward(exp["x"], eps=exp["eps"]) == pytest.approx(float(exp["vae_loss"]), rel=1e-6)
    ck = load_checkpoint(DATA / "old_mlp_ae_train.npz")
    assert ck.optimizer is not None and ck.train_state["epoch"] == 2
    np.testing.assert_allclose(ck.model.decode(exp["h3"]), exp["ae_decode"], rtol=1e-6)
    assert ck.model.forward(exp["x"]) == pytest.approx(float(exp["ae_loss"]), rel=1e-6)


@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
def test_conv_checkpoint_stores_layers_as_data(tmp_path, cls):
    model = cls(input_dim=64, arch="conv", channels=(2, 3), dense=4, latent_dim=2, likelihood="gaussian",
                decoder_sigma="learned", seed=0)
    model._flat_params += 0.01   # not the initial values: the file's numbers must be the ones loaded
    path = model.save(tmp_path / "m.npz") or tmp_path / "m.npz"
    with np.load(path, allow_pickle=False) as f:
        cfg = json.loads(str(f["config"]))
    assert cfg["arch"] == "conv" and cfg["arch_options"] == {"channels": [2, 3], "dense": 4}
    assert [c["type"] for c in cfg["encoder"]["layers"]] == ["Reshape", "Conv2d", "Conv2d", "Flatten", "Dense"]
    again = vn.load_model(path)
    assert list(again.params) == list(model.params)
    h = np.random.default_rng(0).standard_normal((3, 2)).astype(np.float32)
    np.testing.assert_array_equal(again.decode(h), model.decode(h))


@pytest.mark.parametrize("layer", [{"type": "os.system", "cmd": "ls"}, {"type": "Conv2d", "filters": "x"},
                                   {"type": "Reshape", "target": ["a"]}, {"type": "Sequential", "layers": 5}])
def test_crafted_layer_configs_are_checkpoint_errors(tmp_path, layer):
    model = vn.VAE(input_dim=64, arch="conv", channels=(2, 3), dense=4, latent_dim=2, seed=0)
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as f:
        entries = dict(f)
    cfg = json.loads(str(entries["config"]))
    cfg["encoder"]["layers"][1] = layer
    entries["config"] = np.array(json.dumps(cfg))
    np.savez(path, **entries)
    with pytest.raises(vn.CheckpointError):
        vn.load_model(path)


TINY_CONV = ["--dataset", "mnist-5k", "--arch", "conv", "--channels", "2,2", "--latent-dim", "2",
             "--batch-size", "500", "--epochs", "1", "--no-progress", "--no-figures"]


def test_cli_trains_conv_and_every_command_reads_it(tmp_path, capsys):
    run = tmp_path / "r"
    assert main(["train", *TINY_CONV, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "conv 2,2" in out
    ckpt = str(run / "model.npz")
    assert vn.load_model(ckpt).arch == "conv"
    assert main(["evaluate", ckpt, "--iwae-samples", "2"]) == 0
    assert main(["sample", ckpt, "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()


@pytest.mark.parametrize("argv,msg", [(["--arch", "mlp", "--channels", "4,8"], "--channels applies to --arch conv"),
                                      (["--arch", "conv", "--hidden", "10"], "--hidden applies to --arch mlp"),
                                      (["--state-size", "8"], "--state-size applies to --arch rnn"),
                                      (["--arch", "conv", "--cell", "gru"], "--cell applies to --arch rnn")])
def test_cli_arch_options_belong_to_their_arch(tmp_path, capsys, argv, msg):
    assert main(["train", "--dataset", "mnist-5k", *argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_help_says_which_option_applies_to_which_arch(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[--arch mlp] hidden widths" in text and "[--arch conv] channels" in text
    assert "[--arch rnn] size of the recurrent state" in text and "[--arch rnn] gru (default)" in text
