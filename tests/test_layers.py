"""Dense layers and activations: values, gradient checks (float64, central differences), the Dense class.

Every gradient check goes through vae_numpy.gradcheck and asserts an array-relative error < 1e-7.
"""

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _kernels, layers
from vae_numpy.errors import ConfigError
from vae_numpy.gradcheck import array_rel_error, check_function, numerical_gradient_array

TOL = 1e-7
ACTIVATIONS = tuple(layers.ACTIVATIONS)
JIT = pytest.mark.parametrize("jit", [True, False], ids=["jit", "numpy"])

def _away_from_kink(rng, shape, margin=0.1):
    """Pre-activations at least `margin` from 0, so that a step h = 1e-5 never crosses a ReLU kink."""
    a = rng.standard_normal(shape)
    return a + np.sign(a) * margin


# ------------------------------------------------------------------------------------------ values
@JIT
def test_activation_values(jit):
    a = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0]])
    with _kernels.use_jit(jit):
        y = {n: layers.activation_forward(n, a.copy())[0] for n in ACTIVATIONS}
    np.testing.assert_array_equal(y["relu"], [[0, 0, 0, 0.5, 3.0]])
    np.testing.assert_allclose(y["leaky_relu"], [[-0.02, -0.005, 0, 0.5, 3.0]], rtol=1e-15)
    np.testing.assert_allclose(y["tanh"], np.tanh(a), rtol=1e-15)
    np.testing.assert_allclose(y["sigmoid"], 1 / (1 + np.exp(-a)), rtol=1e-15)
    np.testing.assert_allclose(y["softplus"], np.log1p(np.exp(a)), rtol=1e-15)
    np.testing.assert_array_equal(y["linear"], a)
    assert layers.LEAKY_SLOPE == 0.01


def test_sigmoid_and_softplus_are_stable_for_huge_inputs():
    a = np.array([[-1000.0, -50.0, 0.0, 50.0, 1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # exp(-1000) may underflow to 0; nothing else
        s = layers.sigmoid(a)
        sp = layers.activation_forward("softplus", a.copy())[0]
        dsp = layers.activation_backward("softplus", np.ones_like(a), sp)
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(sp)) and np.all(np.isfinite(dsp))
    np.testing.assert_allclose(s, [[0.0, np.exp(-50.0), 0.5, 1.0, 1.0]], rtol=1e-14, atol=0)
    np.testing.assert_allclose(sp, [[0.0, np.exp(-50.0), np.log(2.0), 50.0, 1000.0]], rtol=1e-14)
    np.testing.assert_allclose(dsp, s, rtol=1e-12)   # softplus' = sigmoid, read from y alone


def test_sigmoid_float32_keeps_dtype():
    a = np.linspace(-20, 20, 9, dtype=np.float32).reshape(1, -1)
    assert layers.sigmoid(a).dtype == np.float32


# ------------------------------------------------------------------------------ gradient checks
@JIT
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradcheck(name, jit):
    rng = np.random.default_rng(0)
    a = _away_from_kink(rng, (4, 5))
    with _kernels.use_jit(jit):
        report = check_function(
            lambda a: layers.activation_forward(name, a.copy())[0],
            lambda d: {"a": layers.activation_backward(name, d, layers.activation_forward(name, a.copy())[1])},
            {"a": a}, f"activation {name}")
    assert report.passed, str(report)
    assert report.max_error < TOL


@JIT
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_in_place_equals_out_of_place(name, jit):
    """Models run activations in place (out=a); the result and the backward must not change.
    (Regression: sigmoid(a, out=a) passed out= to np.where, a TypeError.)"""
    rng = np.random.default_rng(1)
    a = _away_from_kink(rng, (3, 4))
    dy = rng.standard_normal((3, 4))
    with _kernels.use_jit(jit):
        y_ref, cache_ref = layers.activation_forward(name, a.copy())
        da_ref = layers.activation_backward(name, dy, cache_ref)
        buf = a.copy()
        y, cache = layers.activation_forward(name, buf, out=buf)
        da = layers.activation_backward(name, dy, cache, out=np.empty_like(dy))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(da, da_ref)


@JIT
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_mutates_nothing(name, jit):
    rng = np.random.default_rng(2)
    a = _away_from_kink(rng, (3, 4))
    dy = rng.standard_normal((3, 4))
    with _kernels.use_jit(jit):
        y, cache = layers.activation_forward(name, a.copy())
        y0, dy0 = y.copy(), dy.copy()
        layers.activation_backward(name, dy, cache)
    np.testing.assert_array_equal(dy, dy0)
    np.testing.assert_array_equal(y, y0)


def test_relu_backward_at_zero_is_zero_and_leaky_is_slope():
    a = np.array([[0.0, -1.0, 2.0]])
    dy = np.ones_like(a)
    for jit in (True, False):
        with _kernels.use_jit(jit):
            np.testing.assert_array_equal(
                layers.activation_backward("relu", dy, layers.activation_forward("relu", a.copy())[1]), [[0, 0, 1]])
            np.testing.assert_allclose(
                layers.activation_backward("leaky_relu", dy, layers.activation_forward("leaky_relu", a.copy())[1]),
                [[0.01, 0.01, 1]], rtol=1e-15)


def test_dense_forward_values():
    x = np.array([[1.0, 2.0]])
    W = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 1.0]])
    b = np.array([0.1, 0.2, 0.3])
    y, cache = layers.dense_forward(x, W, b)
    np.testing.assert_allclose(y, [[2.1, 4.2, 1.3]], rtol=1e-15)
    assert cache[0] is x and cache[1] is W


@pytest.mark.parametrize("x_shape, b_shape", [((2,), (3,)), ((1, 2), (1, 3)), ((1, 2), (4,))])
def test_dense_forward_names_bad_shapes(x_shape, b_shape):
    W = np.ones((2, 3))
    with pytest.raises(ConfigError, match=r"b of shape \(O,\) = \(3,\)"):
        layers.dense_forward(np.ones(x_shape), W, np.ones(b_shape))


def test_dense_gradcheck():
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)
    report = check_function(lambda x, W, b: layers.dense_forward(x, W, b)[0],
                            lambda d: dict(zip("xWb", layers.dense_backward(d, (x, W)), strict=True)),
                            {"x": x, "W": W, "b": b}, "dense")
    assert report.passed, str(report)
    assert [r.name for r in report.rows] == ["x", "W", "b"]


def test_dense_backward_fills_buffers_and_skips_dx():
    rng = np.random.default_rng(4)
    x, W = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    dout = rng.standard_normal((4, 3))
    dout0 = dout.copy()
    dx_ref, dW_ref, db_ref = layers.dense_backward(dout, (x, W))
    dW, db, dx = np.full((5, 3), np.nan), np.full(3, np.nan), np.full((4, 5), np.nan)
    dx2, dW2, db2 = layers.dense_backward(dout, (x, W), dW=dW, db=db, dx=dx)
    assert dW2 is dW and db2 is db and dx2 is dx
    np.testing.assert_allclose(dW, dW_ref, rtol=1e-14)
    np.testing.assert_allclose(db, db_ref, rtol=1e-14)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-14)
    none, _, _ = layers.dense_backward(dout, (x, W), need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dout, dout0)


# ------------------------------------------------------------------------------------ Dense class
@JIT
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_class_gradcheck(activation, jit):
    """Dense.forward / Dense.backward: dx returned, dW and db filled, all against finite differences."""
    rng = np.random.default_rng(5)
    layer = layers.Dense(5, 4, activation=activation, rng=np.random.default_rng(0), dtype="float64")
    layer.b[...] = rng.standard_normal(4)
    x = rng.standard_normal((4, 5))
    with _kernels.use_jit(jit):
        assert np.abs(x @ layer.W + layer.b).min() > 1e-3, "test input too close to a ReLU kink"
        report = check_function(lambda x, W, b: layer.forward(x),
                                lambda d: {"x": layer.backward(d), "W": layer.dW.copy(), "b": layer.db.copy()},
                                {"x": x, "W": layer.W, "b": layer.b}, f"Dense {activation}")
    assert report.passed, str(report)
    assert layer.params["W"] is layer.W and layer.grads["W"] is layer.dW and layer.grads["b"] is layer.db


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
def test_dense_class_matches_functions(activation):
    rng = np.random.default_rng(6)
    layer = layers.Dense(3, 2, activation=activation, rng=np.random.default_rng(1), dtype="float64")
    x, dout = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    y = layer.forward(x)
    a, dcache = layers.dense_forward(x, layer.W, layer.b)
    y_ref, acache = layers.activation_forward(activation, a.copy())
    np.testing.assert_allclose(y, y_ref, rtol=1e-14)
    dx = layer.backward(dout)
    dx_ref, dW_ref, db_ref = layers.dense_backward(layers.activation_backward(activation, dout, acache), dcache)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-14)
    np.testing.assert_allclose(layer.dW, dW_ref, rtol=1e-14)
    np.testing.assert_allclose(layer.db, db_ref, rtol=1e-14)


def test_dense_class_numerical_gradient_of_weights():
    """The same check written without check_function: d sum(y * dout) / dW by central differences."""
    rng = np.random.default_rng(7)
    layer = layers.Dense(4, 3, activation="tanh", rng=rng, dtype="float64")
    x, dout = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    layer.forward(x)
    layer.backward(dout)
    num = numerical_gradient_array(lambda _: layer.forward(x), layer.W, dout)
    assert array_rel_error(layer.dW, num) < TOL


def test_dense_class_dtype_and_errors():
    layer = layers.Dense(3, 2, activation="relu")
    assert layer.W.dtype == np.float32 and layer.b.dtype == np.float32 and layer.dW.dtype == np.float32
    assert layer.forward(np.ones((2, 3), dtype=np.float32)).dtype == np.float32
    with pytest.raises(RuntimeError, match="forward"):
        layers.Dense(3, 2).backward(np.ones((1, 2)))
    with pytest.raises(vn.ConfigError, match=r"activation='swish' is unknown; choose one of .*'relu'"):
        layers.Dense(3, 2, activation="swish")
    with pytest.raises(vn.ConfigError, match=r"out_dim=0 must be an integer >= 1"):
        layers.Dense(3, 0)


def test_init_weights_scale():
    """He normal before ReLU-like activations, Xavier normal otherwise (checked statistically)."""
    rng = np.random.default_rng(8)
    he = layers.init_weights(400, 300, "relu", rng, np.float64)
    xavier = layers.init_weights(400, 300, "tanh", rng, np.float64)
    # the sample std of 120,000 normal draws is within 1% of the true std with overwhelming probability
    assert he.std() == pytest.approx(np.sqrt(2 / 400), rel=0.01)
    assert xavier.std() == pytest.approx(np.sqrt(2 / 700), rel=0.01)
    assert layers.init_weights(3, 2, "relu", rng, "float32").dtype == np.float32


def test_torch_init_is_uniform_on_one_over_sqrt_fan_in_for_w_and_b():
    """init="torch" is nn.Linear's default: W, b ~ U(-1/sqrt(in), 1/sqrt(in)), whatever the activation."""
    rng = np.random.default_rng(9)
    W = layers.init_weights(400, 300, "relu", rng, np.float64, init="torch")
    b = layers.init_bias(400, 300, rng, np.float64, init="torch")
    bound = 1 / np.sqrt(400)
    assert np.abs(W).max() <= bound and np.abs(b).max() <= bound
    assert W.std() == pytest.approx(bound / np.sqrt(3), rel=0.01)     # the std of U(-a, a) is a / sqrt(3)
    assert np.array_equal(layers.init_bias(4, 3, rng, np.float32), np.zeros(3, np.float32))
    dense = layers.Dense(5, 4, rng=np.random.default_rng(0), init="torch")
    assert np.abs(dense.b).max() > 0 and np.abs(dense.W).max() <= 1 / np.sqrt(5)
    with pytest.raises(vn.ConfigError, match=r"init='kaiming' is unknown; choose one of 'he-xavier', 'torch'"):
        layers.init_weights(3, 2, "relu", rng, "float32", init="kaiming")


def test_model_init_choice_sets_every_layer_and_is_kept_in_the_config():
    default, torch_like = vn.VAE(hidden_dims=(16,), latent_dim=2), vn.VAE(hidden_dims=(16,), latent_dim=2,
                                                                           init="torch")
    assert default.config()["init"] == "he-xavier" and torch_like.config()["init"] == "torch"
    for name, p in torch_like.params.items():
        fan_in = torch_like.params[name[:-2] + ".W"].shape[0]
        assert np.abs(p).max() <= 1 / np.sqrt(fan_in) and np.abs(p).max() > 0, name
        if name.endswith(".b"):
            assert not default.params[name].any(), name
    with pytest.raises(vn.ConfigError, match=r"init='he' is unknown"):
        vn.Autoencoder(init="he")
