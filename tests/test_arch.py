"""Models from layers: vn.VAE(encoder=..., decoder=...), named archs, parameters in one flat buffer,
configs as data; whole-model finite-difference checks in float64 (relative error < 1e-7)."""

import json

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import nn
from vae_numpy.checkpoint import build_model
from vae_numpy.errors import ConfigError
from vae_numpy.gradcheck import check_model

TOL = 1e-7


def _x(n, d, seed=0):
    return np.random.default_rng(seed).random((n, d))


def _custom(cls, **kw):
    enc = [nn.Dense(7, "tanh"), nn.Dense(5, "softplus")]
    dec = [nn.Dense(6, "tanh"), nn.Reshape((2, 3)), nn.Flatten()]
    return cls(input_dim=12, latent_dim=3, encoder=enc, decoder=dec, dtype="float64", seed=0, **kw)


@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
@pytest.mark.parametrize("lik", ["bernoulli", "gaussian", "learned"])
def test_custom_stacks_gradients(cls, lik):
    kw = {"likelihood": "gaussian", "decoder_sigma": "learned"} if lik == "learned" else {"likelihood": lik}
    model = _custom(cls, **kw)
    assert model.arch == "custom"
    assert "encoder.0.W" in model.params and "dec_out.W" in model.params
    check_model(model, _x(4, 12), tol=TOL).assert_ok()


def test_params_are_views_of_one_buffer():
    model = _custom(vn.VAE)
    model._flat_params[:] = 0.5
    assert all(np.all(p == 0.5) for p in model.params.values())
    assert model.n_params == sum(p.size for p in model.params.values())
    assert model.encoder.layers[0].params["W"].base is model._flat_params.base or \
        np.shares_memory(model.encoder.layers[0].params["W"], model._flat_params)


def test_mlp_names_and_order_unchanged():
    model = vn.VAE(hidden_dims=(8, 6), latent_dim=2, likelihood="gaussian", decoder_sigma="learned")
    assert list(model.params) == ["enc1.W", "enc1.b", "enc2.W", "enc2.b", "enc_mu.W", "enc_mu.b", "enc_log_var.W",
                                  "enc_log_var.b", "dec1.W", "dec1.b", "dec2.W", "dec2.b", "dec_out.W",
                                  "dec_out.b", "dec_log_var.W", "dec_log_var.b"]
    assert model.config()["arch"] == "mlp" and model.config()["hidden_dims"] == [8, 6]


@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
def test_custom_config_is_json_and_rebuilds(cls):
    model = _custom(cls)
    cfg = json.loads(json.dumps(model.config()))
    again = build_model(cfg)
    assert list(again.params) == list(model.params)
    for k in model.params:
        np.testing.assert_array_equal(again.params[k], model.params[k])
    x = _x(3, 12)
    assert again.forward(x, eps=np.zeros((3, 3))) == model.forward(x, eps=np.zeros((3, 3)))


def test_bad_arch_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="unknown"):
        vn.VAE(arch="transformer")
    with pytest.raises(ConfigError, match="both"):
        vn.VAE(encoder=[nn.Dense(3)])
    with pytest.raises(ConfigError, match="hidden_dims applies"):
        vn.VAE(arch="conv", hidden_dims=(10,))
    with pytest.raises(ConfigError, match="channels applies to arch='conv'"):
        vn.VAE(arch="mlp", channels=(8, 8))
    with pytest.raises(ConfigError, match="Flatten"):
        vn.VAE(input_dim=12, latent_dim=2, encoder=[nn.Reshape((3, 4))], decoder=[nn.Dense(12)])


@pytest.mark.parametrize("kw", [{}, {"arch": "conv", "channels": (3, 5), "latent_dim": 2},
                                {"hidden_dims": (10**11,)}, {"likelihood": "gaussian", "decoder_sigma": "learned"}])
def test_plan_gives_the_shapes_without_allocating(kw):
    shapes = vn.VAE.plan(**kw)
    if kw.get("hidden_dims") == (10**11,):
        assert shapes["enc1.W"] == (784, 10**11)      # no MemoryError: nothing was allocated
        return
    model = vn.VAE(**kw)
    assert shapes == {k: v.shape for k, v in model.params.items()}
    assert list(vn.Autoencoder.plan(**kw)) == list(vn.Autoencoder(**kw).params)


@pytest.mark.parametrize("arch,kw,d", [("conv", {"channels": (2, 3), "dense": 4, "activation": "tanh"}, 64),
                                       ("rnn", {"state_size": 3}, 16)])
@pytest.mark.parametrize("lik", ["bernoulli", "gaussian"])
def test_iwae_objective_through_every_arch(arch, kw, d, lik):
    # the IWAE objective reaches the networks only through the encoder/decoder hooks: any arch works
    model = vn.VAE(input_dim=d, arch=arch, latent_dim=2, dtype="float64", seed=0, objective="iwae", k=3,
                   likelihood=lik, **kw)
    model._flat_params += 0.05 * np.random.default_rng(0).standard_normal(model._flat_params.shape)
    eps = np.random.default_rng(2).standard_normal((3, 3, 2))
    check_model(model, np.random.default_rng(1).random((3, d)), eps=eps, tol=TOL).assert_ok()
