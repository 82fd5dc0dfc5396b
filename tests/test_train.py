"""The training loop (vn.train, vn.resume) and the evaluation metrics, on small models and data subsets."""

from __future__ import annotations

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy.checkpoint import load_checkpoint
from vae_numpy.evaluation import active_units, elbo, log_likelihood
from vae_numpy.train import clip_grad_norm

N_TRAIN, N_VAL, BATCH = 512, 200, 64


@pytest.fixture(scope="module")
def data():
    train, _ = vn.datasets.load_dataset("mnist-5k", "train")
    test, _ = vn.datasets.load_dataset("mnist-5k", "test")
    return train[:N_TRAIN], test[:N_VAL]


def small(kind="vae", seed=0, **kw):
    cls = vn.VAE if kind == "vae" else vn.Autoencoder
    return cls(hidden_dims=(32,), latent_dim=4, seed=seed, **kw)


def fit(model, data, epochs=2, **kw):
    x, xv = data
    kw.setdefault("batch_size", BATCH)
    return vn.train(model, x, xv, epochs=epochs, progress=False, **kw)


# ---------------------------------------------------------------------------------------------- train
def test_a_short_run_lowers_the_loss(data):
    history = fit(small(), data, epochs=3)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 50
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    for r in history:
        assert set(r) >= {"train_loss", "val_loss", "reconstruction", "kl", "seconds"}
        assert r["train_loss"] == pytest.approx(r["reconstruction"] + r["kl"], rel=1e-6)
        assert r["val_loss"] == pytest.approx(r["val_reconstruction"] + r["val_kl"], rel=1e-6)


def test_the_same_seed_gives_identical_parameters(data):
    a, b, c = small(), small(), small()
    fit(a, data, seed=3)
    fit(b, data, seed=3)
    fit(c, data, seed=4)
    assert np.array_equal(a._flat_params, b._flat_params)
    assert not np.array_equal(a._flat_params, c._flat_params)


@pytest.mark.parametrize("options", [{}, {"binarize": "dynamic", "beta_warmup": 1.5, "clip_grad": 20.0,
                                          "seed": 7}])
def test_a_resumed_run_equals_an_uninterrupted_run_bit_for_bit(data, tmp_path, options):
    whole = small()
    h_whole = fit(whole, data, epochs=3, checkpoint=tmp_path / "whole.npz", **options)
    first = small()
    fit(first, data, epochs=1, checkpoint=tmp_path / "part.npz", **options)
    assert load_checkpoint(tmp_path / "part.npz").train_state["epoch"] == 1
    model, h_resumed = vn.resume(tmp_path / "part.npz", data[0], data[1], epochs=3, progress=False)
    assert np.array_equal(model._flat_params, whole._flat_params)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in h_whole]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in h_resumed] == strip
    a, b = load_checkpoint(tmp_path / "whole.npz"), load_checkpoint(tmp_path / "part.npz")
    assert a.optimizer.t == b.optimizer.t
    for name in whole.params:
        assert np.array_equal(a.optimizer.m[name], b.optimizer.m[name])
        assert np.array_equal(a.optimizer.v[name], b.optimizer.v[name])
    assert a.train_state["rng"] == b.train_state["rng"]


def test_float_data_and_uint8_images_train_the_same(data):
    x, xv = data
    a, b = small(), small()
    fit(a, data)
    fit(b, (vn.datasets.to_unit(vn.datasets.flatten(x)), vn.datasets.to_unit(vn.datasets.flatten(xv))))
    assert np.array_equal(a._flat_params, b._flat_params)


def test_a_nan_loss_stops_with_the_epoch_and_batch_and_keeps_the_last_good_checkpoint(data, tmp_path):
    model, ckpt, calls, snapshot = small(), tmp_path / "model.npz", [], {}
    forward = model._forward

    def poisoned(x, eps, need_grad=True):
        calls.append(need_grad)            # training steps need gradients, the validation does not
        return float("nan") if sum(calls) == 8 + 3 else forward(x, eps, need_grad)   # epoch 2, batch 3

    model._forward = poisoned
    with pytest.raises(vn.TrainingDiverged, match=r"epoch 2 of 3, batch 3 of 8") as info:
        fit(model, data, epochs=3, checkpoint=ckpt,
            callbacks=[lambda m, h: snapshot.setdefault("p", m._flat_params.copy())])
    assert info.value.epoch == 2 and info.value.batch == 3
    assert str(ckpt) in str(info.value)
    saved = load_checkpoint(ckpt)
    assert saved.train_state["epoch"] == 1
    assert np.array_equal(saved.model._flat_params, snapshot["p"])
    assert model.kl_weight == 1.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_learning_rate_far_too_high_diverges(data):
    model = small()
    with pytest.raises(vn.TrainingDiverged, match="epoch 1 of 3, batch"):
        fit(model, data, epochs=3, optimizer=vn.SGD(model.params, lr=100.0))


def test_beta_warmup_raises_the_kl_weight_linearly(data):
    model = small()
    history = fit(model, data, epochs=3, beta_warmup=2)
    assert [r["kl_weight"] for r in history] == pytest.approx([0.5, 1.0, 1.0])
    assert history[0]["kl"] > 0 and model.kl_weight == 1.0
    assert history[0]["train_loss"] < history[0]["reconstruction"] + history[0]["kl"]


def test_clip_grad_norm_scales_to_the_limit():
    g = np.array([3.0, 4.0], np.float32)
    assert clip_grad_norm(g, 10.0) == pytest.approx(5.0) and np.array_equal(g, [3.0, 4.0])
    assert clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-6)


def test_an_autoencoder_trains_and_a_callback_can_stop(data):
    model = small("ae")
    history = fit(model, data, epochs=5, callbacks=[lambda m, h: len(h) == 2])
    assert len(history) == 2 and history[-1]["kl"] == 0.0
    assert history[1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("kwargs, match", [
    ({"x_train": np.zeros((10, 100), np.uint8)}, "input_dim=784"),
    ({"x_train": np.full((10, 784), 2.0)}, r"\[0, 1\]"),
    ({"epochs": 0}, "epochs"),
    ({"binarize": "sometimes"}, "binarize"),
    ({"binarize": "static", "x_train": np.zeros((10, 784), np.float32)}, "uint8"),
    ({"optimizer": vn.Adam(small().params)}, "this model's parameters"),
])
def test_bad_arguments_are_refused(data, kwargs, match):
    args = {"x_train": data[0], **kwargs}
    with pytest.raises(vn.ConfigError, match=match):
        vn.train(small(), progress=False, **args)


# ----------------------------------------------------------------------------------------- evaluation
def test_evaluate_reports_the_elbo_parts_iwae_and_active_units(data):
    model = small()
    fit(model, data)
    x = data[1]
    result = vn.evaluate(model, x, iwae_samples=20)
    assert result["neg_elbo"] == pytest.approx(result["reconstruction"] + result["kl"])
    assert result["n"] == N_VAL and result["iwae_samples"] == 20
    assert result["log_likelihood"] > -result["neg_elbo"] - 0.5   # the IWAE bound is at least the ELBO
    assert result["log_likelihood"] == pytest.approx(log_likelihood(model, x, n_samples=20), abs=1e-9)
    assert 0 <= result["active_units"] <= 4


def test_elbo_with_given_noise_matches_forward():
    model = small(dtype="float64")
    rng = np.random.default_rng(0)
    x, eps = rng.random((30, 784)), rng.standard_normal((30, 4))
    loss = model.forward(x, eps=eps)
    got = elbo(model, x, batch_size=7, eps=eps)
    assert got["neg_elbo"] == pytest.approx(loss, rel=1e-12)


def test_active_units_follow_burda_et_al(data):
    model = small()
    x = vn.datasets.to_unit(vn.datasets.flatten(data[1]))
    count, variances = active_units(model, data[1])
    mu, _ = model.encode(x)
    np.testing.assert_allclose(variances, np.var(mu.astype(np.float64), axis=0), rtol=1e-6)
    assert count == int(np.sum(variances > 0.01))
    model.params["enc_mu.W"][:, :2] = 0.0      # two dimensions whose mean no longer depends on x
    assert active_units(model, data[1])[0] == count - int(np.sum(variances[:2] > 0.01))


def test_an_autoencoder_has_no_log_likelihood(data):
    result = vn.evaluate(small("ae"), data[1], iwae_samples=5)
    assert result["log_likelihood"] is None and result["kl"] == 0.0
    assert result["neg_elbo"] == result["reconstruction"]
