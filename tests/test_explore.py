"""explore.py: the arrays behind the latent-space figures (shapes, what changes, end points, quantiles)."""

from statistics import NormalDist

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import explore


def _data(n=600):
    images, labels = vn.datasets.load_dataset("mnist-5k", split="train")
    return (images[:n].reshape(n, -1) / 255.0).astype(np.float32), labels[:n]


def _trained(model, x, epochs=3):
    vn.train(model, x, epochs=epochs, batch_size=100, seed=0, progress=False)
    return model


@pytest.fixture(scope="module")
def data():
    return _data()


@pytest.fixture(scope="module")
def vae(data):
    return _trained(vn.VAE(784, (64,), 4, seed=0), data[0])


@pytest.fixture(scope="module")
def vae2(data):
    return _trained(vn.VAE(784, (32,), 2, seed=1), data[0])


@pytest.fixture(scope="module")
def ae(data):
    return _trained(vn.Autoencoder(784, (64,), 4, seed=2), data[0])


# ------------------------------------------------------------------------- reconstructions, samples, KL
def test_reconstructions_decode_the_mean_codes(vae, data):
    x, x_hat = explore.reconstructions(vae, data[0][:10])
    assert x.shape == x_hat.shape == (10, 784)
    mu, _ = vae.encode(x)
    np.testing.assert_array_equal(x_hat, vae.decode(mu))
    np.testing.assert_array_equal(explore.codes(vae, x), mu)


def test_prior_samples_are_seeded(vae):
    a, b = explore.prior_samples(vae, 5, seed=3), explore.prior_samples(vae, 5, seed=3)
    assert a.shape == (5, 784)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, explore.prior_samples(vae, 5, seed=4))


def test_kl_per_dim_sums_to_the_kl_term(vae, data):
    kl = explore.kl_per_dim(vae, data[0][:200])
    assert kl.shape == (4,) and np.all(kl >= 0)
    mu, log_var = vae.encode(data[0][:200])
    assert kl.sum() == pytest.approx(float(vn.losses.gaussian_kl(mu, log_var).mean()), rel=1e-5)
    with pytest.raises(vn.ConfigError, match="VAE"):
        explore.kl_per_dim(vn.Autoencoder(784, (8,), 4), data[0][:5])


def test_inputs_are_checked(vae):
    with pytest.raises(vn.ConfigError, match=r"\(3, 10\)"):
        explore.reconstructions(vae, np.zeros((3, 10)))
    with pytest.raises(vn.ConfigError, match="model="):
        explore.codes(object(), np.zeros((1, 784)))


# ------------------------------------------------------------------------------------------ traversal
def test_traversal_changes_only_the_chosen_latent(vae, data):
    x = data[0]
    tr = explore.traversal(vae, x[0], n_steps=5, span=2.0, x_for_kl=x[:200])
    assert tr.images.shape == (4, 5, 784) and tr.codes.shape == (4, 5, 4)
    assert sorted(tr.dims.tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(tr.values, np.linspace(-2, 2, 5))
    mu_ref = vae.encode(x[:1])[0][0]
    np.testing.assert_array_equal(tr.reference, mu_ref)
    for k, d in enumerate(tr.dims):
        others = np.arange(4) != d
        np.testing.assert_array_equal(tr.codes[k][:, others], np.broadcast_to(mu_ref[others], (5, 3)))
        np.testing.assert_allclose(tr.codes[k][:, d], tr.values, rtol=1e-6)   # prior std: the values themselves
    np.testing.assert_array_equal(tr.images.reshape(20, 784), vae.decode(tr.codes.reshape(20, 4)))
    assert np.all(np.diff(tr.scores[tr.dims]) <= 0)                              # rows ordered by KL
    np.testing.assert_allclose(tr.scores, explore.kl_per_dim(vae, x[:200]))


def test_traversal_dims(vae, data):
    x = data[0]
    top2 = explore.traversal(vae, x[0], dims=2, x_for_kl=x[:100])
    assert top2.images.shape[0] == 2
    assert top2.dims.tolist() == explore.traversal(vae, x[0], x_for_kl=x[:100]).dims[:2].tolist()
    assert explore.traversal(vae, x[0], dims=[3, 1]).dims.tolist() == [3, 1]
    with pytest.raises(vn.ConfigError, match=r"dims=\[4\]"):
        explore.traversal(vae, x[0], dims=[4])
    with pytest.raises(vn.ConfigError, match="one image"):
        explore.traversal(vae, x[:2])
    with pytest.raises(vn.ConfigError, match="n_steps"):
        explore.traversal(vae, x[0], n_steps=1)


def test_traversal_of_an_autoencoder_uses_the_code_spread(ae, data):
    x = data[0][:200]
    with pytest.raises(vn.ConfigError, match="x_for_kl"):
        explore.traversal(ae, x[0])
    tr = explore.traversal(ae, x[0], dims=[1], n_steps=3, x_for_kl=x)
    c = ae.encode(x).astype(np.float64)
    np.testing.assert_allclose(tr.codes[0, :, 1], c[:, 1].mean() + np.array([-3, 0, 3]) * c[:, 1].std(), rtol=1e-5)
    assert tr.kind == "ae"


# -------------------------------------------------------------------------------------- interpolation
def test_interpolation_end_points(vae, data):
    xa, xb = data[0][0], data[0][1]
    mu = vae.encode(data[0][:2])[0]
    ends = vae.decode(mu)
    for kind in ("linear", "slerp"):
        path = explore.interpolate(vae, xa, xb, n_steps=6, kind=kind)
        assert path.shape == (6, 784)
        np.testing.assert_allclose(path[[0, -1]], ends, atol=1e-5)
    pix = explore.interpolate(vae, xa, xb, n_steps=3, kind="pixel")
    np.testing.assert_allclose(pix, [xa, (xa + xb) / 2, xb], atol=1e-6)
    assert set(explore.interpolations(vae, xa, xb, 4)) == {"pixel", "linear", "slerp"}
    with pytest.raises(vn.ConfigError, match="'cubic'"):
        explore.interpolate(vae, xa, xb, kind="cubic")


def test_slerp_keeps_the_norm_and_the_end_points():
    a, b = np.array([3.0, 0.0, 0.0]), np.array([0.0, 0.0, 3.0])
    path = explore.slerp(a, b, np.linspace(0, 1, 5))
    np.testing.assert_allclose(path[[0, -1]], [a, b], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 3.0)
    np.testing.assert_allclose(path[2], [3 / np.sqrt(2), 0, 3 / np.sqrt(2)])
    np.testing.assert_allclose(explore.slerp(a, 2 * a, [0.5]), [1.5 * a])      # parallel: the straight line


# ---------------------------------------------------------------------------------- map and manifold
def test_latent_map(vae, vae2, data):
    x, y = data[0][:300], data[1][:300]
    m2 = explore.latent_map(vae2, x, y)
    assert m2.method == "identity"
    np.testing.assert_array_equal(m2.coords, vae2.encode(x)[0].astype(np.float64))
    m4 = explore.latent_map(vae, x, y)
    assert m4.coords.shape == (300, 2) and m4.method == "pca"
    np.testing.assert_allclose(m4.coords.mean(axis=0), 0, atol=1e-9)
    cov = np.cov(m4.coords, rowvar=False)
    assert abs(cov[0, 1]) < 1e-8 * cov[0, 0] and cov[0, 0] >= cov[1, 1]
    mu = vae.encode(x)[0].astype(np.float64)
    assert m4.explained.sum() == pytest.approx(cov.trace() / np.cov(mu, rowvar=False).trace())
    with pytest.raises(vn.ConfigError, match=r"\(299,\)"):
        explore.latent_map(vae, x, y[:299])


def test_manifold_covers_the_quantiles(vae, vae2):
    mf = explore.manifold(vae2, n=5)
    assert mf.images.shape == (5, 5, 784) and mf.codes.shape == (5, 5, 2)
    np.testing.assert_allclose(mf.quantiles, np.linspace(0.05, 0.95, 5))
    np.testing.assert_allclose([NormalDist().cdf(v) for v in mf.values], mf.quantiles)
    np.testing.assert_allclose(mf.codes[0, :, 0], mf.values)          # h0 grows to the right
    np.testing.assert_allclose(mf.codes[:, 0, 1], mf.values[::-1])    # h1 grows upwards
    np.testing.assert_array_equal(mf.images.reshape(25, 784), vae2.decode(mf.codes.reshape(25, 2)))
    with pytest.raises(vn.ConfigError, match="latent_dim=4"):
        explore.manifold(vae)
    with pytest.raises(vn.ConfigError, match="quantile_range"):
        explore.manifold(vae2, quantile_range=(0.9, 0.1))


# ------------------------------------------------------------------------------------------- AE vs VAE
def test_ae_vs_vae_samples(ae, vae, data):
    x = data[0][:300]
    s = explore.ae_vs_vae_samples(ae, vae, x, n=6, seed=5)
    for key in ("ae_prior", "ae_fitted", "vae_prior"):
        assert s[key].shape == (6, 784)
    eps = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    np.testing.assert_array_equal(s["ae_prior"], ae.decode(eps))
    np.testing.assert_array_equal(s["vae_prior"], vae.decode(eps))
    c = ae.encode(x).astype(np.float64)
    np.testing.assert_allclose(s["ae_code_mean"], c.mean(axis=0))
    np.testing.assert_allclose(s["ae_code_cov"], np.cov(c, rowvar=False))
    with pytest.raises(vn.ConfigError, match="Autoencoder"):
        explore.ae_vs_vae_samples(vae, vae, x)
    with pytest.raises(vn.ConfigError, match="latent_dim=2"):
        explore.ae_vs_vae_samples(ae, vn.VAE(784, (8,), 2), x)


# --------------------------------------------------------------------------------------------- beta-VAE
def test_beta_sweep(data):
    x = data[0][:300]
    res = explore.beta_sweep((0.0, 8.0), x, epochs=2, latent_dim=3, hidden_dims=(16,), batch_size=100)
    assert [r.beta for r in res] == [0.0, 8.0]
    assert all(r.model.kind == "vae" and r.model.latent_dim == 3 for r in res)
    assert [r.model.beta for r in res] == [0.0, 8.0] and len(res[0].history) == 2
    kl0, kl8 = (explore.kl_per_dim(r.model, x).sum() for r in res)
    assert kl8 < kl0                                         # a heavier KL weight leaves less KL
    with pytest.raises(vn.ConfigError, match="-1"):
        explore.beta_sweep((-1.0,), x, epochs=1)
