"""arch="rnn": the recurrent encoder-decoder inside the VAE and the Autoencoder (finite differences < 1e-7)."""

import json

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy.checkpoint import build_model
from vae_numpy.gradcheck import check_model

LIKELIHOODS = {"bernoulli": {"likelihood": "bernoulli"}, "gaussian": {"likelihood": "gaussian"},
               "learned": {"likelihood": "gaussian", "decoder_sigma": "learned"}}


def _x(n, d, seed=0):
    return np.random.default_rng(seed).random((n, d))


@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
@pytest.mark.parametrize("lik", list(LIKELIHOODS))
@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_rnn_arch_gradients(cls, lik, cell):
    """6 x 6 images: 6 steps of 6 pixels (the MNIST shape, 28 steps, is the next test)."""
    model = cls(arch="rnn", input_dim=36, latent_dim=2, state_size=3, cell=cell, dtype="float64", seed=1,
                init="torch", **LIKELIHOODS[lik])
    check_model(model, _x(3, 36)).assert_ok()


def test_rnn_arch_gradients_on_mnist_rows():
    """28 rows of 28 pixels: backpropagation through all 28 steps of the encoder and of the decoder."""
    model = vn.VAE(arch="rnn", latent_dim=2, state_size=2, dtype="float64", seed=2)
    check_model(model, _x(2, 784)).assert_ok()


def test_rnn_arch_layers_names_and_json_config():
    model = vn.VAE(arch="rnn", latent_dim=4, state_size=8, cell="rnn", seed=3)
    assert list(model.params) == ["encoder.1.Wx", "encoder.1.Wh", "encoder.1.b", "enc_mu.W", "enc_mu.b",
                                  "enc_log_var.W", "enc_log_var.b", "decoder.init.W", "decoder.init.b",
                                  "decoder.Wx", "decoder.Wh", "decoder.b", "dec_out.0.W", "dec_out.0.b"]
    assert model.params["encoder.1.Wh"].shape == (8, 8) and model.params["dec_out.0.W"].shape == (8, 28)
    again = build_model(json.loads(json.dumps(model.config())))
    for k in model.params:
        np.testing.assert_array_equal(again.params[k], model.params[k])
    x = _x(5, 784).astype(np.float32)
    eps = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    assert again.forward(x, eps=eps) == model.forward(x, eps=eps)


def test_rnn_decodes_and_samples_from_h_alone():
    """The decoder is non-autoregressive: decode(h) and sample(n) need no image."""
    model = vn.VAE(arch="rnn", latent_dim=3, state_size=6, seed=4)
    out = model.decode(np.zeros((2, 3), np.float32))
    assert out.shape == (2, 784) and np.all((out >= 0) & (out <= 1))
    assert model.sample(3, seed=0).shape == (3, 784)


def test_cli_trains_evaluates_and_samples_the_rnn_arch(tmp_path, monkeypatch):
    from vae_numpy.cli import main
    monkeypatch.setenv("VAE_NUMPY_OFFLINE", "1")
    monkeypatch.delenv("VAE_NUMPY_DATA", raising=False)
    run = tmp_path / "run"
    assert main(["train", "--dataset", "mnist-5k", "--arch", "rnn", "--state-size", "8", "--cell", "rnn",
                 "--latent-dim", "2", "--epochs", "1", "--batch-size", "256", "--no-progress", "--no-figures",
                 "--out", str(run)]) == 0
    model = vn.load_model(run / "model.npz")
    assert model.arch == "rnn" and model.decoder.cell == "rnn" and model.decoder.units == 8
    assert main(["evaluate", str(run / "model.npz"), "--iwae-samples", "2"]) == 0
    assert main(["sample", str(run / "model.npz"), "--out", str(tmp_path / "s.png")]) == 0


@pytest.mark.parametrize("flags", [["--state-size", "8"], ["--cell", "rnn"]])
def test_cli_refuses_rnn_flags_for_other_archs(flags, tmp_path, capsys):
    from vae_numpy.cli import main
    assert main(["train", "--dataset", "mnist-5k", "--no-progress", "--out", str(tmp_path / "r"), *flags]) == 2
    assert "applies to --arch rnn" in capsys.readouterr().err
