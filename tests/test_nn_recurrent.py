"""Recurrent cells and layers: finite differences in float64 (< 1e-7), fast layers equal to the reference steps."""

import numpy as np
import pytest

from vae_numpy.gradcheck import array_rel_error, numerical_gradient
from vae_numpy.nn import recurrent_steps as rs

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
