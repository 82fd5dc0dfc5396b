"""The fused activation-backward kernels (issue 14, small batches) give NumPy's expressions bit for bit."""

import numpy as np
import pytest

from vae_numpy import _kernels, layers

EXPR = {"tanh": lambda dy, y: np.multiply(dy, 1 - y * y), "sigmoid": lambda dy, y: np.multiply(dy, y * (1 - y))}


def _inputs(name, shape, dtype, rng):
    a = 3 * rng.standard_normal(shape)
    y = np.tanh(a) if name == "tanh" else 1 / (1 + np.exp(-a))
    dy = rng.standard_normal(shape)
    if y.size >= 4:   # the edges: y = 0, +-1, 1/2, tiny; dy = -0 and inf (inf * 0 is NaN in both)
        y.reshape(-1)[:4] = (0.0, 1.0, -1.0, 0.5) if name == "tanh" else (0.0, 1.0, 0.5, 1e-30)
        dy.reshape(-1)[:2] = (-0.0, np.inf)
    return dy.astype(dtype), y.astype(dtype)


@pytest.mark.parametrize("jit", [True, False], ids=["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_activation_backward_equals_numpys_expression_bit_for_bit(name, dtype, jit):
    rng = np.random.default_rng(1)
    with _kernels.use_jit(jit), np.errstate(invalid="ignore"):
        for shape in ((20, 200), (1, 7), (128, 400), (3, 0)):
            dy, y = _inputs(name, shape, dtype, rng)
            ref = EXPR[name](dy, y)
            got = layers.activation_backward(name, dy, y)
            out = np.empty_like(dy)
            assert layers.activation_backward(name, dy, y, out=out) is out
            for arr in (got, out):
                assert arr.dtype == ref.dtype and np.array_equal(arr.view(np.uint8), ref.view(np.uint8))
        dy, y = _inputs(name, (40, 30), dtype, rng)      # strided views
        ref = EXPR[name](dy[::2, 1:], y[::2, 1:])
        assert np.array_equal(layers.activation_backward(name, dy[::2, 1:], y[::2, 1:]), ref, equal_nan=True)
        ref = EXPR[name](dy, y)                          # written in place
        assert layers.activation_backward(name, dy, y, out=dy) is dy
        assert np.array_equal(dy, ref, equal_nan=True)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_other_inputs_take_numpys_expression(name):
    y = np.linspace(-0.9, 0.9, 7).astype(np.float32)
    dy64 = np.ones((3, 7))                                # mixed dtypes and a broadcast: the old expression
    assert np.array_equal(layers.activation_backward(name, dy64, y), EXPR[name](dy64, y))
    y16 = y.astype(np.float16)[None, :]
    assert np.array_equal(layers.activation_backward(name, y16, y16), EXPR[name](y16, y16))
