"""VAE and Autoencoder: whole-model gradient checks, the loss computed independently, eps reuse, log p(x).

Tiny float64 models (input_dim 6-7, hidden 5-7, latent 1-3, N = 4-5) keep the file fast.
"""

import copy
import math

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _kernels, losses
from vae_numpy.gradcheck import check_model

TOL = 1e-7
LOG_2PI = math.log(2 * math.pi)
D, Z, N = 6, 2, 4

LIKELIHOODS = {
    "bernoulli": dict(likelihood="bernoulli"),
    "gaussian-fixed": dict(likelihood="gaussian"),
    "gaussian-learned": dict(likelihood="gaussian", decoder_sigma="learned"),
}
HIDDEN = {"1-hidden": (5,), "3-hidden": (5, 6, 5)}
JIT = pytest.mark.parametrize("jit", [True, False], ids=["jit", "numpy"])


def _x(n=N, d=D, seed=1):
    x = np.random.default_rng(seed).random((n, d))
    x[0, :2] = (0.0, 1.0)   # the ends of [0, 1] too
    return x


def _eps(n=N, z=Z, seed=2):
    return np.random.default_rng(seed).standard_normal((n, z))


# ------------------------------------------------------------------------- independent reference
def _act(name, a):
    return {"relu": lambda: np.maximum(a, 0), "leaky_relu": lambda: np.where(a > 0, a, 0.01 * a),
            "tanh": lambda: np.tanh(a), "sigmoid": lambda: 1 / (1 + np.exp(-a)),
            "softplus": lambda: np.logaddexp(0, a)}[name]()


def _dense(model, name, v):
    return v @ model.params[f"{name}.W"] + model.params[f"{name}.b"]


def _manual_decode(model, code):
    """The decoder written out from model.params: (out = logits or mean, log_var_x or None)."""
    g = code
    for name in model.dec_names:
        g = _act(model.activation, _dense(model, name, g))
    log_var_x = _dense(model, "dec_log_var", g) if model.decoder_sigma == "learned" else None
    return _dense(model, "dec_out", g), log_var_x


def _manual_forward(model, x, eps=None):
    """The model's forward pass written out from model.params: (code, mu, log_var, out, log_var_x)."""
    h = x
    for name in model.enc_names:
        h = _act(model.activation, _dense(model, name, h))
    if isinstance(model, vn.VAE):
        mu, log_var = _dense(model, "enc_mu", h), _dense(model, "enc_log_var", h)
        code = mu + np.exp(log_var / 2) * eps
    else:
        mu = log_var = None
        code = _dense(model, "enc_z", h)
    return (code, mu, log_var, *_manual_decode(model, code))


def _bernoulli_nll_from_probs(p, x):
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return -np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=1)


def _gaussian_nll(x, mean, var):
    return np.sum(0.5 * np.log(2 * np.pi * var) + (x - mean) ** 2 / (2 * var), axis=1)


def _kl(mu, log_var):
    return 0.5 * np.sum(mu ** 2 + np.exp(log_var) - 1 - log_var, axis=1)


def _grads(model):
    return {k: g.copy() for k, g in model.grads.items()}


# -------------------------------------------------------------------------------- gradient checks
@JIT
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("hidden", HIDDEN.values(), ids=HIDDEN.keys())
@pytest.mark.parametrize("lik", LIKELIHOODS)
def test_vae_gradcheck(lik, hidden, beta, jit):
    model = vn.VAE(D, hidden, Z, beta=beta, dtype="float64", seed=0, **LIKELIHOODS[lik])
    with _kernels.use_jit(jit):
        report = check_model(model, _x(), eps=_eps())
    assert report.passed, str(report)
    assert report.max_error < TOL
    assert [r.name for r in report.rows] == list(model.params)


@JIT
@pytest.mark.parametrize("hidden", HIDDEN.values(), ids=HIDDEN.keys())
@pytest.mark.parametrize("lik", LIKELIHOODS)
def test_autoencoder_gradcheck(lik, hidden, jit):
    model = vn.Autoencoder(D, hidden, Z, dtype="float64", seed=0, **LIKELIHOODS[lik])
    with _kernels.use_jit(jit):
        report = check_model(model, _x())
    assert report.passed, str(report)
    assert report.max_error < TOL


@pytest.mark.parametrize("activation", ["leaky_relu", "tanh", "sigmoid", "softplus"])
def test_vae_gradcheck_other_activations(activation):
    model = vn.VAE(D, (6, 5), 3, activation=activation, dtype="float64", seed=1)
    report = check_model(model, _x(), seed=3)
    assert report.passed, str(report)


def test_vae_gradcheck_gaussian_sigma_not_one_and_kl_weight():
    model = vn.VAE(D, (6,), Z, likelihood="gaussian", decoder_sigma=0.3, beta=2.0, dtype="float64", seed=2)
    model.kl_weight = 0.25   # training's KL warm-up multiplies beta
    report = check_model(model, _x(), eps=_eps())
    assert report.passed, str(report)


# ------------------------------------------------------------- loss = mean(reconstruction + beta * KL)
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
@pytest.mark.parametrize("lik", ["bernoulli", "gaussian-fixed"])
def test_vae_loss_equals_mean_of_rec_plus_beta_kl(lik, beta):
    """The loss computed again from encode / decode, the sampler and the KL written out in the test."""
    sigma = 0.7
    cfg = dict(LIKELIHOODS[lik], **({"decoder_sigma": sigma} if lik == "gaussian-fixed" else {}))
    model = vn.VAE(D, (6, 5), Z, beta=beta, dtype="float64", seed=4, **cfg)
    x, eps = _x(), _eps()
    mu, log_var = model.encode(x)
    h = mu + np.exp(log_var / 2) * eps
    mean = model.decode(h)
    rec = _bernoulli_nll_from_probs(mean, x) if lik == "bernoulli" else _gaussian_nll(x, mean, sigma ** 2)
    kl = _kl(mu, log_var)
    loss = model.forward(x, eps=eps)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.mean(rec + beta * kl), rel=1e-10)
    assert model.last["loss"] == loss
    assert model.last["reconstruction"] == pytest.approx(rec.mean(), rel=1e-10)
    assert model.last["kl"] == pytest.approx(kl.mean(), rel=1e-10)


def test_vae_loss_gaussian_learned_variance_from_params():
    """Learned decoder variance: the whole forward pass written out from model.params."""
    model = vn.VAE(D, (6,), Z, likelihood="gaussian", decoder_sigma="learned", beta=4.0, dtype="float64", seed=5)
    x, eps = _x(), _eps()
    code, mu, log_var, mean, log_var_x = _manual_forward(model, x, eps)
    rec = _gaussian_nll(x, mean, np.exp(log_var_x))
    loss = model.forward(x, eps=eps)
    assert loss == pytest.approx(np.mean(rec + 4.0 * _kl(mu, log_var)), rel=1e-10)
    mu2, log_var2 = model.encode(x)
    np.testing.assert_allclose(mu2, mu, rtol=1e-12)
    np.testing.assert_allclose(log_var2, log_var, rtol=1e-12)
    np.testing.assert_allclose(model.decode(code), mean, rtol=1e-12)


def test_vae_loss_with_kl_weight():
    model = vn.VAE(D, (6,), Z, beta=2.0, dtype="float64", seed=6)
    x, eps = _x(), _eps()
    full = model.forward(x, eps=eps)
    rec, kl = model.last["reconstruction"], model.last["kl"]
    assert full == pytest.approx(rec + 2.0 * kl, rel=1e-12)
    model.kl_weight = 0.5
    assert model.forward(x, eps=eps) == pytest.approx(rec + 1.0 * kl, rel=1e-12)


@pytest.mark.parametrize("lik", ["bernoulli", "gaussian-fixed"])
def test_autoencoder_loss_equals_mean_reconstruction(lik):
    model = vn.Autoencoder(D, (6,), Z, dtype="float64", seed=7, **LIKELIHOODS[lik])
    x = _x()
    z = model.encode(x)
    mean = model.decode(z)
    rec = _bernoulli_nll_from_probs(mean, x) if lik == "bernoulli" else _gaussian_nll(x, mean, 1.0)
    loss = model.forward(x)
    assert loss == pytest.approx(rec.mean(), rel=1e-10)
    assert model.last == {"loss": loss, "reconstruction": loss, "kl": 0.0}
    assert model.forward(x, eps=_eps()) == loss   # no noise: eps is ignored
    np.testing.assert_allclose(z, _manual_forward(model, x)[0], rtol=1e-12)


def test_bernoulli_model_is_stable_with_saturated_logits():
    """Huge decoder logits (a saturated sigmoid) still give a finite loss and finite gradients."""
    model = vn.VAE(D, (6,), Z, dtype="float64", seed=8)
    model.params["dec_out.b"][:] = [60.0, -60.0, 60.0, -60.0, 0.0, 0.0]
    model.params["dec_out.W"][:] = 0.0
    x = _x()
    x[:, :4] = [0.0, 1.0, 1.0, 0.0]   # two badly wrong pixels (60 nats each) and two right ones
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss = model.forward(x, eps=_eps())
        model.backward()
    assert np.isfinite(loss) and all(np.all(np.isfinite(g)) for g in model.grads.values())
    assert model.last["reconstruction"] > 120.0
    np.testing.assert_allclose(model.grads["dec_out.b"][:4], [1.0, -1.0, 0.0, 0.0], atol=1e-15)


# ------------------------------------------------------------------------------------ eps reuse
class _OneDrawRng:
    """Stands in for model.rng: hands out one standard-normal draw, then raises on any other."""

    def __init__(self, rng):
        self._rng = rng
        self.draws = []

    def standard_normal(self, *args, **kwargs):
        if self.draws:
            raise AssertionError("the model drew a second eps")
        self.draws.append(self._rng.standard_normal(*args, **kwargs))
        return self.draws[-1].copy()


@JIT
@pytest.mark.parametrize("lik", LIKELIHOODS)
def test_backward_reuses_the_eps_of_forward(lik, jit):
    """backward after forward(x) (eps drawn inside) equals backward after forward(x, eps=that draw),
    and backward draws nothing."""
    model = vn.VAE(D, (6,), Z, dtype="float64", seed=9, **LIKELIHOODS[lik])
    x = _x()
    spy = _OneDrawRng(np.random.default_rng(123))
    model.rng = spy
    with _kernels.use_jit(jit):
        loss = model.forward(x)
        model.backward()           # would raise if it drew another eps
        drawn = _grads(model)
        assert len(spy.draws) == 1 and spy.draws[0].shape == (N, Z)
        assert model.forward(x, eps=spy.draws[0]) == loss
        model.backward()
    for k, g in model.grads.items():
        np.testing.assert_array_equal(g, drawn[k], err_msg=k)
    # and those are the finite-difference gradients of the loss at that very eps
    with _kernels.use_jit(jit):
        assert check_model(model, x, eps=spy.draws[0]).passed


def test_backward_after_forward_without_eps_with_the_seeded_rng():
    """The same with the model's own generator: a copy of it, made before forward, predicts the draw."""
    model = vn.VAE(D, (6,), Z, dtype="float64", seed=10)
    x = _x()
    twin = copy.deepcopy(model.rng)
    model.forward(x)
    model.backward()
    drawn = _grads(model)
    model.forward(x, eps=twin.standard_normal((N, Z)))
    model.backward()
    for k, g in model.grads.items():
        np.testing.assert_array_equal(g, drawn[k], err_msg=k)


def test_gradients_depend_on_the_draw():
    """A backward that drew a second eps would be caught: another eps gives other encoder gradients."""
    model = vn.VAE(D, (6,), Z, dtype="float64", seed=11)
    x = _x()
    model.forward(x, eps=_eps(seed=1))
    model.backward()
    g1 = _grads(model)
    model.forward(x, eps=_eps(seed=2))
    model.backward()
    assert not np.allclose(g1["enc_log_var.W"], model.grads["enc_log_var.W"], rtol=1e-3)
    assert not np.allclose(g1["enc_mu.W"], model.grads["enc_mu.W"], rtol=1e-3)


@pytest.mark.parametrize("kind", ["vae", "ae", "vae-learned"])
def test_evaluation_between_forward_and_backward_changes_nothing(kind):
    """encode / decode / sample / log_likelihood between forward and backward leave the cache intact."""
    if kind == "ae":
        model = vn.Autoencoder(D, (6, 5), Z, dtype="float64", seed=12)
    else:
        model = vn.VAE(D, (6, 5), Z, dtype="float64", seed=12,
                       **(LIKELIHOODS["gaussian-learned"] if kind == "vae-learned" else {}))
    x, eps = _x(), _eps()
    loss = model.forward(x, eps=eps)
    model.backward()
    ref = _grads(model)
    model.grads["dec_out.W"][...] = np.nan
    assert model.forward(x, eps=eps) == loss
    model.encode(_x(n=3, seed=5))
    model.decode(_eps(n=6, seed=6))
    model.sample(5, seed=1)
    if kind != "ae":
        model.log_likelihood(_x(n=2, seed=7), n_samples=9, seed=0)
    model.backward()
    for k, g in model.grads.items():
        np.testing.assert_array_equal(g, ref[k], err_msg=k)


def test_backward_before_forward_is_an_error():
    with pytest.raises(RuntimeError, match=r"forward\(\) first"):
        vn.VAE(D, (6,), Z).backward()
    with pytest.raises(RuntimeError, match=r"forward\(\) first"):
        vn.Autoencoder(D, (6,), Z).backward()


# ----------------------------------------------------------------------------------- the surface
@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
def test_params_and_grads_share_names_shapes_and_one_buffer(cls):
    model = cls(D, (6, 5), Z, dtype="float64", likelihood="gaussian", decoder_sigma="learned")
    assert list(model.params) == list(model.grads)
    assert all(model.params[k].shape == model.grads[k].shape for k in model.params)
    assert all(p.dtype == np.float64 for p in model.params.values())
    assert model.n_params == sum(p.size for p in model.params.values())
    flat = next(iter(model.params.values())).base
    assert all(p.base is flat for p in model.params.values())
    heads = {"enc_mu.W", "enc_log_var.W"} if cls is vn.VAE else {"enc_z.W"}
    assert heads | {"enc1.W", "enc2.b", "dec1.W", "dec2.W", "dec_out.W", "dec_log_var.b"} <= set(model.params)


def test_same_seed_same_model_and_float32_default():
    a, b = vn.VAE(D, (6,), Z, seed=3), vn.VAE(D, (6,), Z, seed=3)
    assert a.dtype == np.float32
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    x = _x().astype(np.float32)
    assert a.forward(x) == b.forward(x)   # the seeded generator also draws the same eps
    assert not np.array_equal(vn.VAE(D, (6,), Z, seed=4).params["enc1.W"], a.params["enc1.W"])


@pytest.mark.parametrize("lik", ["bernoulli", "gaussian-fixed"])
def test_sample_and_decode(lik):
    model = vn.VAE(D, (6,), Z, seed=0, **LIKELIHOODS[lik])
    s = model.sample(5, seed=1)
    assert s.shape == (5, D) and s.dtype == np.float32
    np.testing.assert_array_equal(s, model.sample(5, seed=1))
    assert not np.array_equal(s, model.sample(5, seed=2))
    np.testing.assert_array_equal(s, model.sample(5, rng=np.random.default_rng(1)))
    np.testing.assert_allclose(s, model.decode(np.random.default_rng(1).standard_normal((5, Z)).astype(np.float32)))
    if lik == "bernoulli":
        assert s.min() >= 0 and s.max() <= 1


# -------------------------------------------------------------------------------- log-likelihood
def _exact_log_px(model, x, lo=-10.0, hi=10.0, n=8001):
    """log p(x) = log int p(x | h) N(h; 0, 1) dh for a 1-D latent, by the trapezoid rule on a fine grid.

    The decoder is evaluated from model.params on the grid (the logits themselves, since a trained decoder's
    probabilities round to 0 or 1 far out in h), then the model's own likelihood formulas give log p(x | h).
    """
    grid = np.linspace(lo, hi, n)
    w = np.full(n, grid[1] - grid[0])
    w[[0, -1]] /= 2
    out, log_var_x = _manual_decode(model, grid[:, None])       # (n, D) logits or means
    np.testing.assert_allclose(model.decode(grid[::50, None]),
                               1 / (1 + np.exp(-out[::50])) if model.likelihood == "bernoulli" else out[::50],
                               rtol=1e-12)
    log_prior = -0.5 * (grid ** 2 + LOG_2PI)
    result = []
    for row in x:
        xs = np.broadcast_to(row, out.shape)
        if model.likelihood == "bernoulli":
            log_lik = -losses.bernoulli_nll(out, xs)
        elif log_var_x is not None:
            log_lik = -losses.gaussian_nll(xs, out, log_var_x)
        else:
            log_lik = -losses.gaussian_nll(xs, out, sigma=model.decoder_sigma)
        t = log_lik + log_prior + np.log(w)
        m = t.max()
        result.append(m + np.log(np.exp(t - m).sum()))
    return np.array(result)


@pytest.fixture(scope="module")
def trained_1d():
    """Tiny float64 VAEs with a 1-D latent, trained by plain gradient descent on two noisy prototypes, so that
    q(h | x) is a sensible proposal (as after real training); keyed by likelihood."""
    proto = np.array([[0, 1, 1, 0, 1], [1, 0, 0, 1, 0]], dtype=float)
    models = {}
    for lik in ("bernoulli", "gaussian-fixed"):
        rng = np.random.default_rng(0)
        data = np.abs(proto[rng.integers(0, 2, 32)] - (rng.random((32, 5)) < 0.1))
        model = vn.VAE(5, (8,), 1, dtype="float64", seed=3, **LIKELIHOODS[lik])
        for _ in range(400):
            model.forward(data)
            model.backward()
            for k in model.params:
                model.params[k] -= 0.1 * model.grads[k]
        models[lik] = model
    return models


X_1D = np.array([[0, 1, 1, 0, 1], [1, 0, 0, 1, 0], [1, 1, 1, 0, 1], [0.2, 0.9, 0.5, 0.1, 0.7]], dtype=float)


@pytest.mark.parametrize("lik", ["bernoulli", "gaussian-fixed"])
def test_log_likelihood_matches_numerical_integration(lik, trained_1d):
    model = trained_1d[lik]
    exact = _exact_log_px(model, X_1D)
    ll = model.log_likelihood(X_1D, n_samples=2000, seed=0)
    assert ll.shape == (4,) and ll.dtype == np.float64
    np.testing.assert_allclose(ll, exact, atol=0.05, rtol=0)
    # the grid is fine enough: halving its step changes the integral by far less than the tolerance
    np.testing.assert_allclose(_exact_log_px(model, X_1D, n=4001), exact, atol=1e-4)


@pytest.mark.parametrize("lik", LIKELIHOODS)
def test_log_likelihood_of_an_untrained_model_matches_too(lik):
    """Before training q is a poor proposal (sigma ~ 2): the estimate is noisier, but still close."""
    model = vn.VAE(5, (8,), 1, dtype="float64", seed=3, **LIKELIHOODS[lik])
    np.testing.assert_allclose(model.log_likelihood(X_1D, n_samples=4000, seed=0), _exact_log_px(model, X_1D),
                               atol=0.1, rtol=0)


def test_log_likelihood_is_exact_when_q_is_the_posterior():
    """With a decoder that ignores h and q = N(0, I) = p(h), every importance weight is p(x): exact."""
    model = vn.VAE(6, (5,), 2, dtype="float64", seed=4)
    for k in ("enc_mu.W", "enc_mu.b", "enc_log_var.W", "enc_log_var.b", "dec1.W"):
        model.params[k][...] = 0.0
    x = _x(n=3, d=6)
    logits = _manual_forward(model, x, np.zeros((3, 2)))[3]
    for n_samples in (1, 7):
        np.testing.assert_allclose(model.log_likelihood(x, n_samples=n_samples, seed=1),
                                   -losses.bernoulli_nll(logits, x), rtol=1e-12)


def test_log_likelihood_more_samples_is_not_worse_on_average():
    model = vn.VAE(5, (8,), 1, dtype="float64", seed=3)   # untrained: a poor q, so K matters
    x = (np.random.default_rng(0).random((6, 5)) > 0.5).astype(float)
    small = np.mean([model.log_likelihood(x, n_samples=2, seed=s).mean() for s in range(5)])
    big = np.mean([model.log_likelihood(x, n_samples=200, seed=s).mean() for s in range(5)])
    exact = _exact_log_px(model, x).mean()
    assert small <= big <= exact + 0.02


def test_log_likelihood_batching_and_seeding():
    """The same seed gives the same numbers, whether the samples are decoded in chunks of 7 rows or all at once
    (eps is drawn image by image in the same order either way); another seed gives other numbers."""
    model = vn.VAE(6, (5,), 2, dtype="float64", seed=5)
    x = _x(n=5, d=6)
    full = model.log_likelihood(x, n_samples=40, seed=0)
    np.testing.assert_array_equal(full, model.log_likelihood(x, n_samples=40, seed=0))
    np.testing.assert_allclose(model.log_likelihood(x, n_samples=40, seed=0, max_rows=7), full, rtol=1e-12)
    np.testing.assert_allclose(model.log_likelihood(x, n_samples=40, seed=0, max_rows=80), full, rtol=1e-12)
    np.testing.assert_allclose(model.log_likelihood(x, n_samples=40, rng=np.random.default_rng(0)), full,
                               rtol=1e-12)
    assert not np.allclose(model.log_likelihood(x, n_samples=40, seed=1), full, rtol=1e-6)
    # one image at a time is the same as the batch
    np.testing.assert_allclose(model.log_likelihood(x[:1], n_samples=40, seed=0), full[:1], rtol=1e-12)


def test_log_likelihood_float32_model_and_autoencoder():
    model = vn.VAE(6, (5,), 2, seed=5)
    ll = model.log_likelihood(_x(n=3, d=6).astype(np.float32), n_samples=20, seed=0)
    assert ll.dtype == np.float64 and ll.shape == (3,) and np.all(np.isfinite(ll)) and np.all(ll < 0)
    with pytest.raises(vn.ConfigError, match="Autoencoder defines no density"):
        vn.Autoencoder(6, (5,), 2).log_likelihood(_x(n=3, d=6))
