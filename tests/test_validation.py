"""Bad input at the public boundary: a vn.ConfigError (a ValueError) whose message names the value and what is
allowed. Every test asserts on the message."""

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import layers

D, Z = 10, 2


def _model(**kw):
    return vn.VAE(D, (5,), Z, **kw)


def _x(n=3, d=D):
    return np.random.default_rng(0).random((n, d)).astype(np.float32)


def test_error_hierarchy():
    for cls in (vn.ConfigError, vn.DataError, vn.CheckpointError):
        assert issubclass(cls, vn.VAENumpyError) and issubclass(cls, ValueError)
    assert issubclass(vn.TrainingDiverged, vn.VAENumpyError)


# ------------------------------------------------------------------------------------ constructors
@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
@pytest.mark.parametrize("kwargs, match", [
    (dict(latent_dim=0), r"latent_dim=0 must be an integer >= 1"),
    (dict(latent_dim=-3), r"latent_dim=-3 must be an integer >= 1"),
    (dict(latent_dim=2.5), r"latent_dim=2\.5 must be an integer >= 1"),
    (dict(latent_dim=True), r"latent_dim=True must be an integer >= 1"),
    (dict(input_dim=0), r"input_dim=0 must be an integer >= 1"),
    (dict(hidden_dims=(5, 0)), r"each of hidden_dims=0 must be an integer >= 1"),
    (dict(hidden_dims=None), r"hidden_dims=None must be a sequence of positive integers, e\.g\. \(400,\)"),
    (dict(activation="swish"),
     r"activation='swish' is unknown; choose one of 'relu', 'leaky_relu', 'tanh', 'sigmoid', 'softplus'"),
    (dict(activation="linear"), r"activation='linear' is unknown; choose one of 'relu'"),
    (dict(activation=None), r"activation=None is unknown; choose one of"),
    (dict(likelihood="poisson"), r"likelihood='poisson' is unknown; choose one of 'bernoulli', 'gaussian'"),
    (dict(likelihood="Bernoulli"), r"likelihood='Bernoulli' is unknown"),
    (dict(dtype="float16"), r"dtype='float16' is not supported; use 'float32' \(training\) or 'float64'"),
    (dict(dtype="int32"), r"dtype='int32' is not supported"),
    (dict(dtype="banana"), r"dtype='banana' is not supported"),
    (dict(decoder_sigma="learned"), r"decoder_sigma='learned' needs likelihood='gaussian'"),
    (dict(likelihood="gaussian", decoder_sigma=0.0), r"decoder_sigma=0\.0 must be > 0"),
    (dict(likelihood="gaussian", decoder_sigma=-1.0), r"decoder_sigma=-1\.0 must be > 0"),
    (dict(likelihood="gaussian", decoder_sigma=float("nan")), r"decoder_sigma=nan must be a finite number"),
    (dict(seed=-1), r"seed=-1 must be a non-negative integer or None"),
    (dict(seed=1.5), r"seed=1\.5 must be a non-negative integer or None"),
])
def test_bad_constructor_arguments(cls, kwargs, match):
    args = dict(input_dim=D, hidden_dims=(5,), latent_dim=Z)
    args.update(kwargs)
    with pytest.raises(vn.ConfigError, match=match):
        cls(**args)


@pytest.mark.parametrize("beta, match", [(-0.5, r"beta=-0\.5 must be >= 0\.0"), (-1, r"beta=-1\.0 must be >= 0"),
                                         (float("nan"), r"beta=nan must be a finite number"),
                                         (float("inf"), r"beta=inf must be a finite number"),
                                         ("1", r"beta='1' must be a finite number"),
                                         (True, r"beta=True must be a finite number")])
def test_bad_beta(beta, match):
    with pytest.raises(vn.ConfigError, match=match):
        _model(beta=beta)
    model = _model()
    with pytest.raises(vn.ConfigError, match=match):
        model.beta = beta   # the setter checks too
    assert model.beta == 1.0


def test_good_edge_values_are_accepted():
    assert _model(beta=0).beta == 0.0 and isinstance(_model(beta=4).beta, float)
    assert vn.VAE(D, 5, 1).hidden_dims == (5,) and vn.VAE(D, [6, 4], 1).hidden_dims == (6, 4)
    assert _model(dtype=np.float64).dtype == np.float64
    assert _model(likelihood="gaussian", decoder_sigma=2).decoder_sigma == 2.0


def test_bad_decoder_sigma_string_names_learned():
    """Any string but 'learned': the message says that 'learned' and positive numbers are what is allowed."""
    with pytest.raises(vn.ConfigError, match=r"decoder_sigma='fixed'.*positive number.*'learned'"):
        _model(likelihood="gaussian", decoder_sigma="fixed")


# ------------------------------------------------------------------------------------ forward / x
@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
@pytest.mark.parametrize("x, match", [
    (np.zeros(D), r"x has shape \(10,\); expected a 2-D array \(N, 10\)"),
    (np.zeros((3, 2, 5)), r"x has shape \(3, 2, 5\); expected a 2-D array \(N, 10\) \(flatten images with "
                          r"x\.reshape\(len\(x\), -1\)\)"),
    (np.zeros((3, 9)), r"x has shape \(3, 9\); expected \(N, 10\) to match the model"),
    (np.zeros((0, D)), r"x has shape \(0, 10\); it needs at least 1 row"),
    ([["a"] * D], r"x must be a numeric array"),
])
def test_bad_x_shape(cls, x, match):
    model = cls(D, (5,), Z)
    for call in (model.forward, model.encode):
        with pytest.raises(vn.ConfigError, match=match):
            call(x)


@pytest.mark.parametrize("bad, where", [(np.nan, r"\(1, 3\)"), (np.inf, r"\(1, 3\)"), (-np.inf, r"\(1, 3\)")])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_nan_and_inf_in_x(bad, where, likelihood):
    model = _model(likelihood=likelihood)
    x = _x()
    x[1, 3] = bad
    with pytest.raises(vn.ConfigError, match=rf"x contains NaN or inf \(first at index {where}\); clean the data"):
        model.forward(x)


UNIT = r"; the model takes pixel intensities in \[0, 1\] with every likelihood: divide uint8 pixels by 255"


@pytest.mark.parametrize("lo, hi, match", [
    (-0.1, 0.5, r"x\w* has values in \[-0\.1, 0\.99\d*\]" + UNIT),
    (0.0, 1.5, r"x\w* has values in \[0, 1\.5\]" + UNIT),
    (0.0, 255.0, r"x\w* has values in \[0, 255\]" + UNIT),
])
@pytest.mark.parametrize("likelihood", [dict(likelihood="bernoulli"), dict(likelihood="gaussian"),
                                        dict(likelihood="gaussian", decoder_sigma="learned")])
def test_inputs_outside_the_unit_interval_are_refused_for_every_likelihood(lo, hi, match, likelihood):
    x = _x()
    x[0, 0], x[2, 5] = lo, hi
    model = _model(**likelihood)
    ae = vn.Autoencoder(D, (5,), Z, **likelihood) if "decoder_sigma" not in likelihood else model
    for call in (model.forward, model.encode, lambda v: model.log_likelihood(v, n_samples=2), ae.forward,
                 lambda v: vn.train(model, v, epochs=1, progress=False), lambda v: vn.evaluate(model, v)):
        with pytest.raises(vn.ConfigError, match=match):
            call(x)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_uint8_pixels_raw_or_standardized_are_refused_and_vn_train_scales_uint8_images(likelihood):
    images = np.random.default_rng(0).integers(0, 256, (20, D), dtype=np.uint8)
    model = _model(likelihood=likelihood, dtype="float64")
    with pytest.raises(vn.ConfigError, match=r"divide uint8 pixels by 255"):
        model.forward(images)
    with pytest.raises(vn.ConfigError, match=r"divide uint8 pixels by 255"):   # no NaN from raw 0-255 floats
        model.forward(images.astype(np.float32))
    standardized = np.random.default_rng(1).standard_normal((3, D))
    with pytest.raises(vn.ConfigError, match=r"x has values in \[-\d"):
        model.forward(standardized)
    # the uint8 images as they are: vn.train and vn.evaluate scale them by 1/255, batch by batch
    history = vn.train(model, images, images[:5], epochs=2, batch_size=8, progress=False)
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in history)
    assert np.isfinite(vn.evaluate(model, images, iwae_samples=2)["neg_elbo"])


@pytest.mark.parametrize("eps, match", [
    (np.zeros((3, Z + 1)), r"eps has shape \(3, 3\); expected \(N, 2\) to match the model"),
    (np.zeros((4, Z)), r"eps has shape \(4, 2\); expected \(3, 2\) to match x"),
    (np.zeros(Z), r"eps has shape \(2,\); expected a 2-D array \(N, 2\)"),
    (np.full((3, Z), np.nan), r"eps contains NaN or inf"),
])
def test_bad_eps(eps, match):
    with pytest.raises(vn.ConfigError, match=match):
        _model().forward(_x(), eps=eps)


# ----------------------------------------------------------------------- decode / sample / evaluation
def test_bad_decode_sample_and_log_likelihood_arguments():
    model = _model()
    with pytest.raises(vn.ConfigError, match=r"h has shape \(4, 3\); expected \(N, 2\) to match the model"):
        model.decode(np.zeros((4, 3)))
    with pytest.raises(vn.ConfigError, match=r"h contains NaN or inf"):
        model.decode(np.full((1, Z), np.inf))
    with pytest.raises(vn.ConfigError, match=r"n=0 must be an integer >= 1"):
        model.sample(0)
    with pytest.raises(vn.ConfigError, match=r"rng=.* must be a numpy\.random\.Generator"):
        model.sample(2, rng=np.random.RandomState(0))
    with pytest.raises(vn.ConfigError, match=r"seed=-2 must be a non-negative integer or None"):
        model.sample(2, seed=-2)
    with pytest.raises(vn.ConfigError, match=r"n_samples=0 must be an integer >= 1"):
        model.log_likelihood(_x(), n_samples=0)
    with pytest.raises(vn.ConfigError, match=r"max_rows=0 must be an integer >= 1"):
        model.log_likelihood(_x(), n_samples=3, max_rows=0)
    with pytest.raises(vn.ConfigError, match=r"x has shape \(3, 9\)"):
        model.log_likelihood(np.zeros((3, D - 1)), n_samples=3)


# ---------------------------------------------------------------------------------------- layers
def test_dense_class_bad_arguments():
    with pytest.raises(vn.ConfigError, match=r"in_dim=0 must be an integer >= 1"):
        layers.Dense(0, 3)
    with pytest.raises(vn.ConfigError, match=r"activation='gelu' is unknown; choose one of 'relu'.*'linear'"):
        layers.Dense(2, 3, activation="gelu")


def test_activation_functions_refuse_unknown_names():
    """Not a bare KeyError: the named activation functions check the name like the constructors."""
    with pytest.raises(vn.ConfigError, match=r"activation='gelu' is unknown; choose one of 'relu'"):
        layers.activation_forward("gelu", np.zeros((2, 2)))
    with pytest.raises(vn.ConfigError, match=r"activation='gelu' is unknown; choose one of 'relu'"):
        layers.activation_backward("gelu", np.zeros((2, 2)), np.zeros((2, 2)))


# ------------------------------------------------------------------------- sizes that cannot be allocated
def test_sample_and_decode_refuse_more_rows_than_the_free_memory_holds(monkeypatch):
    """The decoder runs on all rows at once: a request past the free memory is a ConfigError naming n and the
    fix, raised before anything is drawn or allocated; with the memory unknown nothing is refused."""
    import vae_numpy._network as network
    model = vn.VAE(784, (16,), 2, seed=0)
    monkeypatch.setattr(network, "available_memory", lambda: 10 * 2**20)   # 10 MiB free
    with pytest.raises(vn.ConfigError, match=r"sample\(n=1,000,000\) decodes 1,000,000 codes .* needs at least "
                                             r"6\.\d GiB; 10 MiB are free: ask for fewer, or call it in batches"):
        model.sample(10**6)
    with pytest.raises(vn.ConfigError, match=r"decode\(h\) with 100,000 rows"):
        model.decode(np.zeros((100_000, 2), np.float32))
    assert model.sample(64).shape == (64, 784)              # a grid's worth fits
    monkeypatch.setattr(network, "available_memory", lambda: None)
    assert model.decode(np.zeros((3, 2), np.float32)).shape == (3, 784)


def test_the_sample_command_names_its_own_flag_when_n_cannot_fit(monkeypatch, tmp_path, capsys):
    import vae_numpy._network as network
    from vae_numpy.cli import main
    model = vn.VAE(784, (16,), 2, seed=0)
    model.save(tmp_path / "m.npz")
    monkeypatch.setattr(network, "available_memory", lambda: 100 * 2**20)   # 100 MiB free
    assert main(["sample", str(tmp_path / "m.npz"), "-n", "1000000", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "-n 1,000,000 decodes 1,000,000 codes" in err and "lower -n to at most 16," in err, err
    assert not (tmp_path / "s.png").exists()
