"""Recurrent cells as plain forward/backward pairs (cs231n style): the readable reference for the layers.

Shapes: x: (N, T, F) a batch of N sequences of T steps of F features, x_t: (N, F), h: (N, H) the state.
Row vectors throughout (as in layers.py): a step computes x_t @ Wx, never Wx @ x_t.

Vanilla RNN (Elman), params {"Wx": (F, H), "Wh": (H, H), "b": (H,)}:

    h_t = tanh(x_t Wx + h_{t-1} Wh + b)

GRU, PyTorch's convention (torch.nn.GRU; Cho et al. 2014 with the reset gate applied after the recurrent
product), params {"Wx": (F, 3H), "Wh": (H, 3H), "bx": (3H,), "bh": (3H,)}, the 3H columns being the gate
blocks [r | z | n] (torch's weight_ih_l0.T, weight_hh_l0.T, bias_ih_l0, bias_hh_l0):

    gx = x_t Wx + bx,  gh = h_{t-1} Wh + bh               (N, 3H) each, split as [r | z | n]
    r = sigma(gx_r + gh_r)                                reset gate
    z = sigma(gx_z + gh_z)                                update gate
    n = tanh(gx_n + r * gh_n)                             candidate (r multiplies gh_n, bias included)
    h_t = (1 - z) * n + z * h_{t-1}

(Keras's GRU with reset_after=True is the same cell; z keeps the old state, as in torch.)

Every ``*_step_forward`` returns ``(h, cache)``; ``*_step_backward(dh, cache)`` returns ``(dx, dh_prev,
dparams)`` and never mutates dh or the cache. The sequence versions run the steps over t = 0..T-1 and back
(backpropagation through time): the gradient reaching h_t is the one from the output at t plus the one
flowing back from h_{t+1}; each parameter's gradient is the sum over the steps.
"""

from __future__ import annotations

import numpy as np


def sigmoid(a):
    """sigma(a) = 1 / (1 + exp(-a)), computed without overflow for large |a| (as 0.5 (1 + tanh(a / 2)))."""
    return 0.5 * (1.0 + np.tanh(0.5 * a))


# -------------------------------------------------------------------------------------- vanilla RNN
def rnn_step_forward(x, h_prev, params):
    """One step: x: (N, F), h_prev: (N, H) -> h: (N, H) = tanh(x Wx + h_prev Wh + b); cache = (x, h_prev, h)."""
    h = np.tanh(x @ params["Wx"] + h_prev @ params["Wh"] + params["b"])
    return h, (x, h_prev, h, params)


def rnn_step_backward(dh, cache):
    """dh: (N, H) -> (dx (N, F), dh_prev (N, H), {"Wx", "Wh", "b"}).

    da = dh (1 - h^2) (tanh' written with its output);  dx = da Wx^T,  dh_prev = da Wh^T,
    dWx = x^T da,  dWh = h_prev^T da,  db = sum_n da.
    """
    x, h_prev, h, params = cache
    da = dh * (1.0 - h * h)
    dparams = {"Wx": x.T @ da, "Wh": h_prev.T @ da, "b": da.sum(axis=0)}
    return da @ params["Wx"].T, da @ params["Wh"].T, dparams


# ---------------------------------------------------------------------------------------------- GRU
def gru_step_forward(x, h_prev, params):
    """One GRU step (torch's convention, see the module docstring).

    x: (N, F), h_prev: (N, H) -> h: (N, H); cache = (x, h_prev, r, z, n, gh_n, params).
    """
    H = h_prev.shape[1]
    gx = x @ params["Wx"] + params["bx"]
    gh = h_prev @ params["Wh"] + params["bh"]
    r = sigmoid(gx[:, :H] + gh[:, :H])
    z = sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    gh_n = gh[:, 2 * H:]
    n = np.tanh(gx[:, 2 * H:] + r * gh_n)
    h = (1.0 - z) * n + z * h_prev
    return h, (x, h_prev, r, z, n, gh_n, params)


def gru_step_backward(dh, cache):
    """dh: (N, H) -> (dx (N, F), dh_prev (N, H), {"Wx", "Wh", "bx", "bh"}).

    From h = (1 - z) n + z h_prev:    dn = dh (1 - z),   dz = dh (h_prev - n),   dh_prev gets dh z directly.
    Through the nonlinearities:       da_n = dn (1 - n^2),  da_z = dz z (1 - z),
                                      dr = da_n gh_n,  da_r = dr r (1 - r).
    The pre-activations' gradients:   dgx = [da_r | da_z | da_n],  dgh = [da_r | da_z | da_n r]
    (r multiplies gh_n only, so the n blocks differ). Then dx = dgx Wx^T, dh_prev = dh z + dgh Wh^T,
    dWx = x^T dgx, dWh = h_prev^T dgh, dbx = sum_n dgx, dbh = sum_n dgh.
    """
    x, h_prev, r, z, n, gh_n, params = cache
    dn = dh * (1.0 - z)
    dz = dh * (h_prev - n)
    da_n = dn * (1.0 - n * n)
    da_z = dz * z * (1.0 - z)
    da_r = da_n * gh_n * r * (1.0 - r)
    dgx = np.concatenate([da_r, da_z, da_n], axis=1)
    dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)
    dh_prev = dh * z + dgh @ params["Wh"].T            # two paths from h_prev: the direct z h_prev and gh
    dparams = {"Wx": x.T @ dgx, "Wh": h_prev.T @ dgh, "bx": dgx.sum(axis=0), "bh": dgh.sum(axis=0)}
    return dgx @ params["Wx"].T, dh_prev, dparams


# ------------------------------------------------------------------------------ over a whole sequence
STEPS = {"rnn": (rnn_step_forward, rnn_step_backward), "gru": (gru_step_forward, gru_step_backward)}


def sequence_forward(cell, x, h0, params):
    """Unroll a cell ("rnn" or "gru") over T steps.

    x: (N, T, F), h0: (N, H) -> hs: (N, T, H), the states h_1..h_T (hs[:, -1] is the last); cache = per-step
    caches.
    """
    step_forward, _ = STEPS[cell]
    N, T, _ = x.shape
    hs = np.empty((N, T, h0.shape[1]), dtype=np.result_type(x, h0))
    caches, h = [], h0
    for t in range(T):
        h, cache = step_forward(x[:, t], h, params)
        hs[:, t] = h
        caches.append(cache)
    return hs, (cell, caches)


def sequence_backward(dhs, cache):
    """Backpropagation through time.

    dhs: (N, T, H), the loss's gradient with respect to each state h_t (zeros where a state is not used) ->
    (dx (N, T, F), dh0 (N, H), dparams summed over the steps). The gradient entering step t is
    dhs[:, t] + the dh_prev that step t + 1 sent back.
    """
    cell, caches = cache
    _, step_backward = STEPS[cell]
    N, T, _ = dhs.shape
    dx, dparams = None, None
    dh_next = np.zeros_like(dhs[:, 0])
    for t in reversed(range(T)):
        dx_t, dh_next, dp = step_backward(dhs[:, t] + dh_next, caches[t])
        if dx is None:
            dx = np.empty((N, T, dx_t.shape[1]), dtype=dx_t.dtype)
            dparams = {k: np.zeros_like(v) for k, v in dp.items()}
        dx[:, t] = dx_t
        for k, v in dp.items():
            dparams[k] += v                          # the same weights at every step: gradients add
    return dx, dh_next, dparams
