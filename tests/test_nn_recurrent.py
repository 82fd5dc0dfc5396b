"""Recurrent cells and layers: finite differences in float64 (< 1e-7), fast layers equal to the reference steps."""

import numpy as np
import pytest

from vae_numpy import _kernels, _rnn_kernels
from vae_numpy import errors as vn_errors
from vae_numpy.gradcheck import array_rel_error, numerical_gradient
from vae_numpy.nn import Dense, Flatten, Reshape, Sequential, check_layer, materialize
from vae_numpy.nn import recurrent_steps as rs
from vae_numpy.nn.base import from_config
from vae_numpy.nn.recurrent import GRU, RNN
from vae_numpy.nn.recurrent_decoder import RecurrentDecoder, TimeDistributedDense

TOL = 1e-7
CELLS = ("rnn", "gru")


def _params(cell, F, H, rng, scale=0.5):
    g = 3 if cell == "gru" else 1
    p = {"Wx": scale * rng.standard_normal((F, g * H)), "Wh": scale * rng.standard_normal((H, g * H))}
    if cell == "gru":
        p["bx"], p["bh"] = 0.3 * rng.standard_normal(3 * H), 0.3 * rng.standard_normal(3 * H)
    else:
        p["b"] = 0.3 * rng.standard_normal(H)
    return p


def _check_all(f, grads, arrays):
    """Every analytic gradient in `grads` against central differences of the scalar f over `arrays`."""
    for name, x in arrays.items():
        num = numerical_gradient(lambda _: f(), x)
        err = array_rel_error(grads[name], num)
        assert err < TOL, f"{name}: relative error {err:.2e}"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("N", [1, 3])
def test_step_backward_matches_finite_differences(cell, N):
    rng = np.random.default_rng(0)
    F, H = 4, 5
    x, h_prev = rng.standard_normal((N, F)), rng.standard_normal((N, H))
    p = _params(cell, F, H, rng)
    w = rng.standard_normal((N, H))
    step_fwd, step_bwd = rs.STEPS[cell]
    h, cache = step_fwd(x, h_prev, p)
    dx, dh_prev, dp = step_bwd(w, cache)
    f = lambda: float(np.sum(step_fwd(x, h_prev, p)[0] * w))  # noqa: E731
    _check_all(f, {"x": dx, "h_prev": dh_prev, **dp}, {"x": x, "h_prev": h_prev, **p})


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,N", [(1, 2), (2, 1), (5, 3), (28, 2)])
def test_sequence_backward_matches_finite_differences(cell, T, N):
    """BPTT: a loss on every state (weights w) and, more weight, on the last state."""
    rng = np.random.default_rng(T * 10 + N)
    F, H = 3, 4
    x, h0 = rng.standard_normal((N, T, F)), rng.standard_normal((N, H))
    p = _params(cell, F, H, rng, scale=0.4)
    w = rng.standard_normal((N, T, H))
    w[:, -1] *= 3
    hs, cache = rs.sequence_forward(cell, x, h0, p)
    dx, dh0, dp = rs.sequence_backward(w, cache)
    f = lambda: float(np.sum(rs.sequence_forward(cell, x, h0, p)[0] * w))  # noqa: E731
    _check_all(f, {"x": dx, "h0": dh0, **dp}, {"x": x, "h0": h0, **p})
    assert dx.shape == x.shape and dh0.shape == h0.shape


def test_gru_keeps_the_state_when_z_is_one_and_takes_n_when_z_is_zero():
    """The convention: h' = (1 - z) n + z h (torch's), checked by saturating the update gate."""
    rng = np.random.default_rng(1)
    F, H = 2, 3
    p = _params("gru", F, H, rng)
    x, h = rng.standard_normal((4, F)), rng.uniform(-1, 1, (4, H))
    for bias, want in ((60.0, h), (-60.0, None)):
        q = dict(p, bx=p["bx"].copy())
        q["bx"][H:2 * H] = bias
        h_new, cache = rs.gru_step_forward(x, h, q)
        np.testing.assert_allclose(h_new, cache[4] if want is None else want, atol=1e-12)


# ------------------------------------------------------------------------------------------ the layers

JIT = pytest.mark.parametrize("jit", [True, False], ids=["numba", "numpy"])
ENCODERS = {"gru": GRU, "rnn": RNN}


@JIT
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_encoder_layer_equals_the_reference_steps(cell, return_sequences, jit):
    rng = np.random.default_rng(3)
    N, T, F, H = 3, 6, 4, 5
    layer = materialize(ENCODERS[cell](H, return_sequences=return_sequences), (T, F), seed=1, init="torch")
    x = rng.standard_normal((N, T, F))
    dy = rng.standard_normal((N, T, H) if return_sequences else (N, H))
    with _kernels.use_jit(jit):
        y = layer.forward(x)
        dx = layer.backward(dy)
    p = {k: v.copy() for k, v in layer.params.items()}
    hs, cache = rs.sequence_forward(cell, x, np.zeros((N, H)), p)
    dhs = np.zeros_like(hs)
    if return_sequences:
        dhs[...] = dy
    else:
        dhs[:, -1] = dy
    dx_ref, _, dp_ref = rs.sequence_backward(dhs, cache)
    np.testing.assert_allclose(y, hs if return_sequences else hs[:, -1], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-11, atol=1e-12)
    for k, v in dp_ref.items():
        np.testing.assert_allclose(layer.grads[k], v, rtol=1e-11, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("T,N", [(1, 2), (2, 3), (5, 1), (28, 2)])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_encoder_layer_matches_finite_differences(cell, T, N, return_sequences):
    layer = materialize(ENCODERS[cell](4, return_sequences=return_sequences), (T, 3), seed=T, init="torch")
    x = np.random.default_rng(T + N).standard_normal((N, T, 3))
    check_layer(layer, x, seed=N).assert_ok()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("step_input", ["code", "zeros"])
@pytest.mark.parametrize("T,N", [(1, 2), (2, 1), (5, 3), (28, 2)])
def test_decoder_layer_matches_finite_differences(cell, step_input, T, N):
    layer = materialize(RecurrentDecoder(4, T, cell=cell, step_input=step_input), (2,), seed=T, init="torch")
    c = np.random.default_rng(T + N).standard_normal((N, 2))
    check_layer(layer, c, seed=N).assert_ok()


@pytest.mark.parametrize("T,N", [(1, 2), (5, 3)])
def test_time_distributed_dense_matches_finite_differences(T, N):
    layer = materialize(TimeDistributedDense(3), (T, 4), seed=T, init="torch")
    check_layer(layer, np.random.default_rng(N).standard_normal((N, T, 4)), seed=N).assert_ok()


@pytest.mark.parametrize("init", ["he-xavier", "torch"])
def test_layers_rebuild_from_their_config_and_initialise_deterministically(init):
    for layer, shape in ((GRU(5), (7, 3)), (RNN(5, return_sequences=True), (7, 3)),
                         (RecurrentDecoder(5, 7, cell="rnn", step_input="zeros"), (4,)),
                         (TimeDistributedDense(3), (7, 5))):
        twin = from_config(layer.config())
        assert twin.config() == layer.config()
        a, b = materialize(layer, shape, seed=2, init=init), materialize(twin, shape, seed=2, init=init)
        assert list(a.params) == list(a.param_shapes())
        for k in a.params:
            assert np.array_equal(a.params[k], b.params[k]), k


def test_he_xavier_recurrent_weights_are_orthogonal_blocks():
    layer = materialize(GRU(6), (4, 3), seed=0)
    Wh = layer.params["Wh"]
    for g in range(3):
        block = Wh[:, 6 * g:6 * (g + 1)]
        np.testing.assert_allclose(block.T @ block, np.eye(6), atol=1e-12)
    assert not layer.params["bx"].any() and not layer.params["bh"].any()


def test_wrong_input_shapes_name_the_fix():
    with pytest.raises(vn_errors.ConfigError, match="Reshape"):
        GRU(4).build((784,))
    with pytest.raises(vn_errors.ConfigError, match="Flatten"):
        RecurrentDecoder(4, 28).build((7, 3))
    with pytest.raises(vn_errors.ConfigError, match="cell"):
        RecurrentDecoder(4, 28, cell="lstm")


# ------------------------------------------------------------------------------------- the kernels
@pytest.mark.skipif(_rnn_kernels.NUMBA is None, reason="numba is not installed")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", _rnn_kernels.KERNEL_NAMES)
def test_numba_kernel_equals_its_numpy_twin(name, dtype):
    rng = np.random.default_rng(5)
    N, H = 5, 7
    G = 3 * H if name.startswith("gru") else H
    m = lambda *s: rng.standard_normal(s).astype(dtype)  # noqa: E731
    u = lambda *s: rng.uniform(0.01, 0.99, s).astype(dtype)  # noqa: E731
    e = lambda *s: np.empty(s, dtype)  # noqa: E731
    if name == "gru_cell_forward":
        gx = m(N, G)
        gx[0, :3] = (100.0, -100.0, 0.0)                                    # saturated gates
        args, outs = (gx, m(N, G), m(G), m(N, H), e(N, H), e(N, H), e(N, H), e(N, H), e(N, H)), (4, 5, 6, 7, 8)
    elif name == "gru_cell_backward":
        args, outs = (m(N, H), m(N, H), m(N, H), u(N, H), u(N, H), m(N, H), m(N, H), e(N, G), e(N, G)), (0, 7, 8)
    elif name == "rnn_cell_forward":
        args, outs = (m(N, H), m(N, H), e(N, H)), (2,)
    else:
        args, outs = (m(N, H), m(N, H), u(N, H), e(N, H)), (3,)
    got = {}
    for ns in (_rnn_kernels.NUMPY, _rnn_kernels.NUMBA):
        a = tuple(v.copy() for v in args)
        getattr(ns, name)(*a)
        got[ns.name] = [a[i] for i in outs]
    rtol = 2e-6 if dtype == np.float32 else 1e-13
    for x, y in zip(got["numpy"], got["numba"], strict=True):
        np.testing.assert_allclose(y, x, rtol=rtol, atol=rtol)


@pytest.mark.skipif(_rnn_kernels.NUMBA is None, reason="numba is not installed")
def test_float32_rational_tanh_is_within_4e7_relative_everywhere():
    x = np.concatenate([np.linspace(-20, 20, 400001), np.geomspace(1e-30, 1, 2000), [0.0, np.inf, -np.inf]])
    x = x.astype(np.float32).reshape(1, -1)
    r, z = np.empty_like(x), np.empty_like(x)
    gates_rz = _kernels._jit(_rnn_kernels._make_gru_forward_loops(_rnn_kernels._TANH32_NB)[0])
    zero = np.zeros_like(x)
    gates_rz(np.concatenate([2 * x, zero], axis=1), np.zeros((1, 2 * x.shape[1]), np.float32),
             np.zeros(2 * x.shape[1], np.float32), r, z)             # r = sigma(2x) = (1 + tanh x) / 2
    got = (2 * r.astype(np.float64) - 1)[0]
    want = np.tanh(x[0].astype(np.float64))
    assert np.all(np.abs(got - want) <= 4e-7 * np.maximum(np.abs(want), 1.0))   # near 0 through 2r - 1: absolute
    np.testing.assert_array_equal(z, 0.5)


@pytest.mark.parametrize("cell", CELLS)
def test_float32_layers_with_workspaces_follow_float64(cell):
    """The training path (float32, ws=True, Numba kernels) against the float64 one, forward and backward."""
    rng = np.random.default_rng(7)
    N, T, F, H, C = 16, 28, 28, 32, 5
    x, c = rng.random((N, T, F)), rng.standard_normal((N, C))
    dy_enc, dy_dec = rng.standard_normal((N, H)), rng.standard_normal((N, T, H))
    out = {}
    for dtype in ("float64", "float32"):
        enc = materialize(ENCODERS[cell](H), (T, F), dtype=dtype, seed=0)
        dec = materialize(RecurrentDecoder(H, T, cell=cell), (C,), dtype=dtype, seed=0)
        ws = dtype == "float32"
        results = []
        for _ in range(2):                                    # a second call reuses the workspaces
            y = enc.forward(x.astype(dtype), ws=ws).copy()
            enc.backward(dy_enc.astype(dtype), need_dx=False)
            s = dec.forward(c.astype(dtype), ws=ws).copy()
            dc = dec.backward(dy_dec.astype(dtype)).copy()
            results.append([y, s, dc, *(g.copy() for g in enc.grads.values()),
                            *(g.copy() for g in dec.grads.values())])
        for a, b in zip(*results, strict=True):
            np.testing.assert_array_equal(a, b)
        out[dtype] = results[0]
    for a, b in zip(out["float64"], out["float32"], strict=True):
        assert array_rel_error(a, b) < 2e-5


@pytest.mark.parametrize("cell", CELLS)
def test_encoder_decoder_stack_matches_finite_differences(cell):
    """The rnn arch's layers in one Sequential: image -> rows -> encoder -> code -> decoder -> rows -> image."""
    Enc = ENCODERS[cell]
    stack = Sequential([Reshape((6, 5)), Enc(4), Dense(2, "tanh"), RecurrentDecoder(3, 6, cell=cell),
                        TimeDistributedDense(5), Flatten()])
    materialize(stack, (30,), seed=1, init="torch")
    assert stack.out_shape == (30,)
    check_layer(stack, np.random.default_rng(2).random((3, 30))).assert_ok()
