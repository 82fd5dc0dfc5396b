"""The reparameterization, the KL and the likelihoods: known values, Monte-Carlo, stability, gradient checks.

Also the two defects of public NumPy VAEs, at the level of the pieces: the sampler and the KL read log_var
the same way (sigma = exp(log_var / 2), through sampling.std_from_log_var), and the sampler's backward uses
the eps of its forward pass.
"""

import math

import numpy as np
import pytest

from vae_numpy import _kernels, losses, sampling
from vae_numpy.gradcheck import check_function

TOL = 1e-7
LOG_2PI = math.log(2 * math.pi)


def _rng(seed=0):
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------- reparameterization
def test_reparameterize_values_and_cache():
    mu = np.array([[1.0, -2.0]])
    log_var = np.array([[0.0, 2 * math.log(3.0)]])   # sigma = 1 and 3
    eps = np.array([[0.5, -1.0]])
    h, cache = sampling.reparameterize_forward(mu, log_var, eps)
    np.testing.assert_allclose(h, [[1.5, -5.0]], rtol=1e-15)
    assert cache[0] is eps   # the very draw of the forward pass is what backward reads
    np.testing.assert_allclose(cache[1], [[1.0, 3.0]], rtol=1e-15)


def test_reparameterize_gradcheck():
    rng = _rng(1)
    mu, log_var, eps = rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    report = check_function(
        lambda mu, log_var: sampling.reparameterize_forward(mu, log_var, eps)[0],
        lambda d: dict(zip(("mu", "log_var"),
                           sampling.reparameterize_backward(d, sampling.reparameterize_forward(mu, log_var, eps)[1]),
                           strict=True)),
        {"mu": mu, "log_var": log_var}, "h = mu + sigma * eps")
    assert report.passed and report.max_error < TOL, str(report)


def test_reparameterize_backward_uses_the_forward_eps_and_mutates_nothing():
    rng = _rng(2)
    mu, log_var, eps, dh = (rng.standard_normal((3, 2)) for _ in range(4))
    _, cache = sampling.reparameterize_forward(mu, log_var, eps)
    saved = [a.copy() for a in (dh, *cache)]
    dmu, dlog_var = sampling.reparameterize_backward(dh, cache)
    np.testing.assert_array_equal(dmu, dh)
    assert dmu is not dh
    np.testing.assert_allclose(dlog_var, dh * eps * np.exp(log_var / 2) / 2, rtol=1e-15)
    for before, after in zip(saved, (dh, *cache), strict=True):
        np.testing.assert_array_equal(before, after)
    # another draw gives another gradient: the check above would see a backward that re-draws eps
    _, cache2 = sampling.reparameterize_forward(mu, log_var, rng.standard_normal((3, 2)))
    assert not np.allclose(sampling.reparameterize_backward(dh, cache2)[1], dlog_var)


# --------------------------------------------------------------- sampler and KL read log_var alike
def test_sampler_variance_is_exp_log_var():
    """h = mu + sigma * eps has variance exp(log_var): sigma = exp(log_var / 2), not exp(log_var).

    (numpy-ml's sampler used exp(log_var) as the std while its KL used it as the variance.)
    """
    n = 200_000
    mu = np.array([0.5, -1.0, 2.0])
    log_var = np.array([-1.0, 0.0, 1.5])
    eps = _rng(3).standard_normal((n, 3))
    h, _ = sampling.reparameterize_forward(np.broadcast_to(mu, (n, 3)), np.broadcast_to(log_var, (n, 3)), eps)
    var = h.var(axis=0, ddof=1)
    # the sample variance of n normal draws has relative standard error sqrt(2 / (n - 1)) ~ 0.0032; allow 5 of them
    np.testing.assert_allclose(var, np.exp(log_var), rtol=5 * math.sqrt(2 / (n - 1)))
    assert np.all(np.abs(h.mean(axis=0) - mu) < 5 * np.sqrt(np.exp(log_var) / n))
    assert not np.allclose(var, np.exp(2 * log_var), rtol=0.1)   # what the std-as-exp(log_var) defect gives


def test_kl_variance_is_exp_log_var():
    log_var = np.linspace(-4, 4, 9).reshape(1, -1)
    mu = np.zeros_like(log_var)
    _, dlog_var = losses.gaussian_kl_backward(np.ones(1), mu, log_var)
    # dKL/dlog_var = (sigma^2 - 1) / 2 with sigma^2 = exp(log_var), to rounding (exp(lv / 2)^2 vs exp(lv))
    np.testing.assert_allclose(2 * dlog_var + 1, np.exp(log_var), rtol=1e-14)
    kl_per_dim = np.array([losses.gaussian_kl(mu[:, j:j + 1], log_var[:, j:j + 1])[0] for j in range(9)])
    np.testing.assert_allclose(kl_per_dim, 0.5 * (np.exp(log_var[0]) - 1 - log_var[0]), rtol=1e-14)


def test_sampler_and_kl_both_use_std_from_log_var(monkeypatch):
    """A spy in place of the one helper: both the sampler and the KL call it, with the very log_var."""
    real = sampling.std_from_log_var
    seen = []

    def spy(log_var, out=None):
        seen.append(log_var)
        return 2 * real(log_var, out=out)   # a visibly different sigma, to see that both use what it returns

    monkeypatch.setattr(sampling, "std_from_log_var", spy)
    monkeypatch.setattr(losses, "std_from_log_var", spy)
    rng = _rng(4)
    mu, log_var, eps = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    h, _ = sampling.reparameterize_forward(mu, log_var, eps)
    kl = losses.gaussian_kl(mu, log_var)
    _, dlog_var = losses.gaussian_kl_backward(np.ones(2), mu, log_var)
    assert len(seen) == 3 and all(s is log_var for s in seen)
    sigma = 2 * np.exp(log_var / 2)
    np.testing.assert_allclose(h, mu + sigma * eps, rtol=1e-14)
    np.testing.assert_allclose(kl, -0.5 * np.sum(1 + log_var - mu ** 2 - sigma ** 2, axis=1), rtol=1e-14)
    np.testing.assert_allclose(dlog_var, 0.5 * (sigma ** 2 - 1), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("jit", [True, False], ids=["jit", "numpy"])
def test_model_kernel_std_is_std_from_log_var(dtype, jit):
    """The models' fused kernel computes the same sigma (to a few ulp) and the same KL as the pieces."""
    rng = _rng(5)
    mu, log_var, eps = (rng.standard_normal((4, 3)).astype(dtype) for _ in range(3))
    z, std, kl = np.empty_like(mu), np.empty_like(mu), np.empty(4, dtype=dtype)
    with _kernels.use_jit(jit) as K:
        K.reparam_kl_forward(mu, log_var, eps, z, std, kl)
    ulp = np.finfo(dtype).eps
    np.testing.assert_allclose(std, sampling.std_from_log_var(log_var), rtol=4 * ulp, atol=0)   # exp(lv / 2)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(z, sampling.reparameterize_forward(mu, log_var, eps)[0], rtol=rtol, atol=rtol)
    np.testing.assert_allclose(kl, losses.gaussian_kl(mu, log_var), rtol=rtol, atol=rtol)


# ------------------------------------------------------------------------------------------------ KL
def test_kl_known_values():
    Z = 5
    zeros = np.zeros((1, Z))
    assert losses.gaussian_kl(zeros, zeros)[0] == 0.0
    assert losses.gaussian_kl(np.full((1, Z), 2.0), zeros)[0] == 2.0 * Z            # mu^2 / 2 = 2 per dimension
    kl = losses.gaussian_kl(np.zeros((1, 1)), np.full((1, 1), 2.0))[0]
    assert kl == pytest.approx((math.exp(2) - 3) / 2, rel=1e-15, abs=0)            # (e^2 - 1 - 2) / 2
    assert kl == pytest.approx(2.194528049465325, rel=1e-15)
    # one row per case, rows are independent
    both = losses.gaussian_kl(np.array([[0.0], [2.0]]), np.zeros((2, 1)))
    np.testing.assert_array_equal(both, [0.0, 2.0])


def test_kl_matches_monte_carlo():
    """KL(q || p) = E_q[log q(h) - log p(h)]: the closed form lies within 3 standard errors of the MC mean."""
    n = 200_000
    rng = _rng(6)
    mu = np.array([[0.3, -1.2, 2.0], [0.0, 0.5, -0.7]])
    log_var = np.array([[-0.5, 0.8, 0.0], [1.2, -2.0, 0.3]])
    exact = losses.gaussian_kl(mu, log_var)
    for i in range(2):
        eps = rng.standard_normal((n, 3))
        h = mu[i] + np.exp(log_var[i] / 2) * eps
        log_q = -0.5 * np.sum(eps ** 2 + LOG_2PI + log_var[i], axis=1)
        log_p = -0.5 * np.sum(h ** 2 + LOG_2PI, axis=1)
        d = log_q - log_p
        se = d.std(ddof=1) / math.sqrt(n)
        assert abs(d.mean() - exact[i]) < 3 * se, (d.mean(), exact[i], se)
        assert se < 0.01 * exact[i]   # the test has teeth: 3 SE is a small fraction of the KL


def test_kl_gradcheck():
    rng = _rng(7)
    mu, log_var = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    report = check_function(losses.gaussian_kl,
                            lambda d: dict(zip(("mu", "log_var"), losses.gaussian_kl_backward(d, mu, log_var),
                                               strict=True)),
                            {"mu": mu, "log_var": log_var}, "KL")
    assert report.passed and report.max_error < TOL, str(report)


# ----------------------------------------------------------------------------------------- Bernoulli
def test_bernoulli_nll_equals_naive_formula():
    rng = _rng(8)
    logits, x = 3 * rng.standard_normal((4, 6)), rng.random((4, 6))
    x[0, :3] = 0.0
    x[0, 3:] = 1.0
    p = 1 / (1 + np.exp(-logits))
    naive = -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)
    np.testing.assert_allclose(losses.bernoulli_nll(logits, x), naive, rtol=1e-12)
    np.testing.assert_allclose(losses.bernoulli_nll_backward(np.ones(4), logits, x), p - x, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("big", [30.0, 50.0, 100.0, 800.0])
def test_bernoulli_extreme_logits_are_finite_and_stable(big):
    logits = np.array([[big, big, -big, -big]])
    x = np.array([[1.0, 0.0, 1.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        per_pixel = np.array([losses.bernoulli_nll(logits[:, j:j + 1], x[:, j:j + 1])[0] for j in range(4)])
        dlogits = losses.bernoulli_nll_backward(np.ones(1), logits, x)
    assert np.all(np.isfinite(per_pixel)) and np.all(np.isfinite(dlogits))
    tiny = math.log1p(math.exp(-big))   # -log sigmoid(big) = log(1 + e^-big): kept, never negative
    np.testing.assert_allclose(per_pixel, [tiny, big + tiny, big + tiny, tiny], rtol=1e-15, atol=0)
    assert np.all(per_pixel >= 0)
    # sigmoid(big) - 1 rounds to 0 in float64 (1 - e^-30 == 1); sigmoid(-big) - 0 keeps e^-big exactly
    np.testing.assert_allclose(dlogits, [[-math.exp(-big), 1.0, -1.0, math.exp(-big)]], rtol=1e-12, atol=1e-13)
    assert dlogits[0, 3] == pytest.approx(math.exp(-big), rel=1e-12, abs=0)


def test_bernoulli_gradcheck_including_logits_of_50():
    rng = _rng(9)
    logits = 3 * rng.standard_normal((4, 6))
    logits[0, :2] = 50.0
    logits[1, :2] = -50.0
    x = rng.random((4, 6))
    x[0, 0] = x[1, 0] = 1.0
    x[0, 1] = x[1, 1] = 0.0
    report = check_function(lambda logits: losses.bernoulli_nll(logits, x),
                            lambda d: {"logits": losses.bernoulli_nll_backward(d, logits, x)},
                            {"logits": logits}, "Bernoulli")
    assert report.passed and report.max_error < TOL, str(report)


# ------------------------------------------------------------------------------------------ Gaussian
@pytest.mark.parametrize("sigma", [1.0, 0.7, 2.5])
def test_gaussian_nll_fixed_sigma_values(sigma):
    rng = _rng(10)
    x, mean = rng.random((3, 5)), rng.standard_normal((3, 5))
    expected = np.sum(0.5 * math.log(2 * math.pi * sigma ** 2) + (x - mean) ** 2 / (2 * sigma ** 2), axis=1)
    np.testing.assert_allclose(losses.gaussian_nll(x, mean, sigma=sigma), expected, rtol=1e-14)
    # a learned log-variance equal to log sigma^2 everywhere is the same density
    lvx = np.full_like(x, 2 * math.log(sigma))
    np.testing.assert_allclose(losses.gaussian_nll(x, mean, lvx), expected, rtol=1e-13)
    dmean, none = losses.gaussian_nll_backward(np.ones(3), x, mean, sigma=sigma)
    assert none is None
    np.testing.assert_allclose(dmean, (mean - x) / sigma ** 2, rtol=1e-14)


def test_gaussian_nll_keeps_its_constant():
    """At x = mean with sigma = 1 each pixel costs log(2 pi) / 2 = 0.9189385... nats (constants kept)."""
    x = np.zeros((1, 4))
    assert losses.gaussian_nll(x, x)[0] == pytest.approx(4 * 0.9189385332046727, rel=1e-15)
    assert losses.LOG_2PI == pytest.approx(LOG_2PI, rel=1e-16)


@pytest.mark.parametrize("sigma", [1.0, 0.7])
def test_gaussian_fixed_sigma_gradcheck(sigma):
    rng = _rng(11)
    x, mean = rng.random((4, 6)), rng.standard_normal((4, 6))
    report = check_function(lambda mean: losses.gaussian_nll(x, mean, sigma=sigma),
                            lambda d: {"mean": losses.gaussian_nll_backward(d, x, mean, sigma=sigma)[0]},
                            {"mean": mean}, "Gaussian fixed sigma")
    assert report.passed and report.max_error < TOL, str(report)


def test_gaussian_learned_variance_gradcheck():
    rng = _rng(12)
    x, mean, lvx = rng.random((4, 6)), rng.standard_normal((4, 6)), rng.standard_normal((4, 6))
    report = check_function(lambda mean, log_var_x: losses.gaussian_nll(x, mean, log_var_x),
                            lambda d: dict(zip(("mean", "log_var_x"), losses.gaussian_nll_backward(d, x, mean, lvx),
                                               strict=True)),
                            {"mean": mean, "log_var_x": lvx}, "Gaussian learned variance")
    assert report.passed and report.max_error < TOL, str(report)
    assert [r.name for r in report.rows] == ["mean", "log_var_x"]
