"""The floor of a learned Gaussian decoder variance: sigma >= 0.01, i.e. log-variance = max(head, 2 log 0.01).

Exact above the floor, flat below it (zero gradient); finite differences away from the kink in float64; and
training on MNIST digits, whose corner pixels are black in every image, stays bounded below.
"""

import math

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import losses
from vae_numpy.gradcheck import check_function, check_model

TOL = 1e-7
PIXEL_BOUND = math.log(losses.SIGMA_MIN) + 0.5 * math.log(2 * math.pi)   # the least a pixel can cost: -3.69 nats


def test_the_floor_is_sigma_0_01():
    assert losses.SIGMA_MIN == 0.01 and losses.LOG_VAR_MIN == pytest.approx(2 * math.log(0.01), rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_exact_above_the_floor_constant_and_flat_below(dtype):
    rng = np.random.default_rng(0)
    x, mean = rng.random((3, 6)).astype(dtype), rng.random((3, 6)).astype(dtype)
    above = (losses.LOG_VAR_MIN + 0.5 + 3 * rng.random((3, 6))).astype(dtype)
    expected = np.sum(0.5 * ((x - mean) ** 2 / np.exp(above.astype(np.float64)) + above + np.log(2 * np.pi)), axis=1)
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(losses.gaussian_nll(x, mean, above), expected, rtol=rtol)
    below = (losses.LOG_VAR_MIN - 0.5 - 30 * rng.random((3, 6))).astype(dtype)
    at_floor = np.full_like(below, losses.LOG_VAR_MIN)
    np.testing.assert_array_equal(losses.gaussian_nll(x, mean, below), losses.gaussian_nll(x, mean, at_floor))
    mixed = np.where(rng.random((3, 6)) < 0.5, above, below)
    dmean, dlv = losses.gaussian_nll_backward(np.ones(3, dtype), x, mean, mixed)
    assert dmean.dtype == dlv.dtype == dtype
    assert np.all(dlv[mixed < losses.LOG_VAR_MIN] == 0) and np.all(dlv[mixed > losses.LOG_VAR_MIN] != 0)
    np.testing.assert_allclose(dmean, (mean - x) / np.exp(np.maximum(mixed, losses.LOG_VAR_MIN)), rtol=1e-5)
    # a pixel costs at least log 0.01 + log(2 pi) / 2, however small the head
    assert losses.gaussian_nll(np.zeros((1, 1)), np.zeros((1, 1)), np.full((1, 1), -1e4))[0] == pytest.approx(
        PIXEL_BOUND, rel=1e-15)


def test_gradcheck_on_both_sides_away_from_the_kink():
    rng = np.random.default_rng(1)
    x, mean = rng.random((4, 8)), rng.standard_normal((4, 8))
    side = np.where(rng.random((4, 8)) < 0.5, 1.0, -1.0)
    lvx = losses.LOG_VAR_MIN + side * (0.1 + 3 * rng.random((4, 8)))   # at least 0.1 from the floor
    mean_near = x + 0.02 * rng.standard_normal((4, 8))   # residuals of the size the floor is about
    for m in (mean, mean_near):
        report = check_function(lambda mean, log_var_x: losses.gaussian_nll(x, mean, log_var_x),
                                lambda d, m=m: dict(zip(("mean", "log_var_x"),
                                                        losses.gaussian_nll_backward(d, x, m, lvx), strict=True)),
                                {"mean": m, "log_var_x": lvx}, "Gaussian, floored learned variance")
        assert report.passed and report.max_error < TOL, str(report)


def test_a_learned_variance_vae_gradcheck_with_heads_below_the_floor():
    """The whole model: the heads of some pixels pushed below the floor (their gradient is exactly zero)."""
    rng = np.random.default_rng(2)
    x = rng.random((5, 6))
    model = vn.VAE(6, (7,), 3, likelihood="gaussian", decoder_sigma="learned", dtype="float64", seed=0)
    model.params["dec_log_var.b"][:3] = losses.LOG_VAR_MIN - 20   # far below: no finite step crosses the kink
    # pixels fitted as the floor's pixels are (mean 0.5, residuals ~ sigma): else their (x - m)^2 / 1e-4 terms
    # make the loss ~1e4 and the differences' rounding noise alone ~1e-7
    model.params["dec_out.W"][:, :3], model.params["dec_out.b"][:3] = 0, 0.5
    x[:, :3] = 0.5 + 0.01 * rng.standard_normal((5, 3))
    report = check_model(model, x, seed=0)
    assert report.passed and report.max_error < TOL, str(report)


def _fit_an_always_black_pixel(steps=1500):
    """Adam on a free mean and log-variance for 8 pixels that are 0 in every image: (loss, log-variance)."""
    x = np.zeros((4, 8))
    p = {"m": np.full((1, 8), 0.3), "v": np.zeros((1, 8))}
    opt = vn.Adam(p, lr=0.01)
    for _ in range(steps):
        m, v = np.repeat(p["m"], 4, axis=0), np.repeat(p["v"], 4, axis=0)
        loss = losses.gaussian_nll(x, m, v).mean()
        dm, dv = losses.gaussian_nll_backward(np.full(4, 0.25), x, m, v)
        opt.step({"m": dm.sum(axis=0, keepdims=True), "v": dv.sum(axis=0, keepdims=True)})
    return loss, p["v"]


def test_an_always_black_pixel_no_longer_runs_away(monkeypatch):
    loss, v = _fit_an_always_black_pixel()
    assert loss >= 8 * PIXEL_BOUND - 1e-9 and loss == pytest.approx(8 * PIXEL_BOUND, rel=1e-6)
    assert np.all(v > losses.LOG_VAR_MIN - 1)   # the head stops where its gradient vanishes
    monkeypatch.setattr(losses, "LOG_VAR_MIN", -np.inf)   # without the floor: the mean fits 0, sigma -> 0
    loss, v = _fit_an_always_black_pixel()
    assert loss < 8 * PIXEL_BOUND - 10 and np.all(v < 2 * math.log(0.01) - 3)


def test_training_on_mnist_digits_stays_bounded_and_the_floor_binds_on_black_pixels():
    images, _ = vn.datasets.load_dataset("mnist-5k", "train")
    images = images[:16].reshape(16, -1)
    black = images.max(axis=0) == 0   # pixels that are 0 in all 16 digits (the corners and borders)
    assert black.sum() > 300
    model = vn.VAE(hidden_dims=(32,), latent_dim=2, likelihood="gaussian", decoder_sigma="learned", seed=0)
    history = vn.train(model, images, epochs=1500, batch_size=16, seed=0, progress=False,
                       optimizer=vn.Adam(model.params, lr=3e-3))
    loss = np.array([r["train_loss"] for r in history])
    assert np.isfinite(loss).all() and loss.min() >= 784 * PIXEL_BOUND
    mu, _ = model.encode(images / 255)
    _, heads, _ = model._decoder_forward(mu)
    assert np.mean(heads[:, black] <= losses.LOG_VAR_MIN) > 0.9   # the floor is what holds them
