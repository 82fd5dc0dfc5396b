"""The recurrent cells' per-step elementwise math, fused: each Numba kernel beside its NumPy twin (same signature).

One step's matrix products (h_prev @ Wh, dgh @ Wh^T) stay with BLAS in the layer; these kernels do everything
between them in one pass over (N, H), writing into arrays the caller passes (nothing allocated per step by the
Numba versions). Conventions as in _kernels.py: ``NUMPY`` and ``NUMBA`` namespaces with the same names, the
package calls ``_kernels.K``'s choice (``VAE_NUMPY_JIT=0`` or ``use_jit`` select the twins for both files).

Shapes: gx, gh, dgx, dgh: (N, 3H) for the GRU (gate blocks [r | z | n]), (N, H) for the RNN; the rest (N, H).
The equations are in nn/recurrent_steps.py (the readable reference these are tested against):

    GRU forward    r = sigma(gx_r + gh_r + bh_r), z = sigma(gx_z + gh_z + bh_z), ghn = gh_n + bh_n,
                   n = tanh(gx_n + r ghn), h = (1 - z) n + z h_prev          (gx already holds bx)
    GRU backward   dh = dh_carry + dh_mm;  da_n = dh (1 - z)(1 - n^2),  da_z = dh (h_prev - n) z (1 - z),
                   da_r = da_n ghn r (1 - r);  dgx = [da_r | da_z | da_n],  dgh = [da_r | da_z | da_n r];
                   dh_carry <- dh z   (the direct path to h_prev; the caller adds dgh @ Wh^T)
    RNN forward    h = tanh(gx + gh)                                            (gx already holds b)
    RNN backward   da = (dh_carry + dh_mm)(1 - h^2)
"""

from __future__ import annotations

import math
import types

import numpy as np

from ._kernels import _jit, numba


# ---------------------------------------------------------------------------------------------- GRU
def gru_cell_forward_np(gx, gh, bh, h_prev, r, z, n, ghn, h):
    """gx, gh: (N, 3H), bh: (3H,), h_prev: (N, H) -> writes r, z, n, ghn, h: (N, H)."""
    H = h_prev.shape[1]
    with np.errstate(over="ignore"):             # exp(-a) = inf for a very negative a: sigma = 0, correct
        np.add(gx[:, :H], gh[:, :H], out=r)
        r += bh[:H]
        np.divide(1, 1 + np.exp(-r), out=r)
        np.add(gx[:, H:2 * H], gh[:, H:2 * H], out=z)
        z += bh[H:2 * H]
        np.divide(1, 1 + np.exp(-z), out=z)
    np.add(gh[:, 2 * H:], bh[2 * H:], out=ghn)
    np.multiply(r, ghn, out=n)
    n += gx[:, 2 * H:]
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h)
    h *= z
    h += n                                       # h = n + z (h_prev - n) = (1 - z) n + z h_prev
    return h


def _gru_cell_forward_nb(gx, gh, bh, h_prev, r, z, n, ghn, h):
    N, H = h_prev.shape
    one = gx.dtype.type(1)
    for i in range(N):
        for j in range(H):
            rr = one / (one + math.exp(-(gx[i, j] + gh[i, j] + bh[j])))
            zz = one / (one + math.exp(-(gx[i, H + j] + gh[i, H + j] + bh[H + j])))
            g = gh[i, 2 * H + j] + bh[2 * H + j]
            nn = math.tanh(gx[i, 2 * H + j] + rr * g)
            r[i, j], z[i, j], n[i, j], ghn[i, j] = rr, zz, nn, g
            h[i, j] = nn + zz * (h_prev[i, j] - nn)
    return h


def gru_cell_backward_np(dh_carry, dh_mm, h_prev, r, z, n, ghn, dgx, dgh):
    """dh_carry, dh_mm, h_prev, r, z, n, ghn: (N, H) -> writes dgx, dgh: (N, 3H) and dh_carry <- dh z."""
    H = h_prev.shape[1]
    dh = dh_carry + dh_mm
    da_n = dh * (1 - z) * (1 - n * n)
    dgx[:, 2 * H:] = da_n
    dgx[:, H:2 * H] = dh * (h_prev - n) * z * (1 - z)
    dgx[:, :H] = da_n * ghn * r * (1 - r)
    dgh[:, :2 * H] = dgx[:, :2 * H]
    np.multiply(da_n, r, out=dgh[:, 2 * H:])
    np.multiply(dh, z, out=dh_carry)
    return dgx


def _gru_cell_backward_nb(dh_carry, dh_mm, h_prev, r, z, n, ghn, dgx, dgh):
    N, H = h_prev.shape
    one = dgx.dtype.type(1)
    for i in range(N):
        for j in range(H):
            d = dh_carry[i, j] + dh_mm[i, j]
            rr, zz, nn = r[i, j], z[i, j], n[i, j]
            da_n = d * (one - zz) * (one - nn * nn)
            da_z = d * (h_prev[i, j] - nn) * zz * (one - zz)
            da_r = da_n * ghn[i, j] * rr * (one - rr)
            dgx[i, j], dgx[i, H + j], dgx[i, 2 * H + j] = da_r, da_z, da_n
            dgh[i, j], dgh[i, H + j], dgh[i, 2 * H + j] = da_r, da_z, da_n * rr
            dh_carry[i, j] = d * zz
    return dgx


# ---------------------------------------------------------------------------------------------- RNN
def rnn_cell_forward_np(gx, gh, h):
    """gx, gh: (N, H) -> writes h = tanh(gx + gh)."""
    np.add(gx, gh, out=h)
    return np.tanh(h, out=h)


def _rnn_cell_forward_nb(gx, gh, h):
    N, H = h.shape
    for i in range(N):
        for j in range(H):
            h[i, j] = math.tanh(gx[i, j] + gh[i, j])
    return h


def rnn_cell_backward_np(dh_carry, dh_mm, h, da):
    """dh_carry, dh_mm, h: (N, H) -> writes da = (dh_carry + dh_mm) (1 - h^2)."""
    np.add(dh_carry, dh_mm, out=da)
    da *= 1 - h * h
    return da


def _rnn_cell_backward_nb(dh_carry, dh_mm, h, da):
    N, H = h.shape
    one = da.dtype.type(1)
    for i in range(N):
        for j in range(H):
            hh = h[i, j]
            da[i, j] = (dh_carry[i, j] + dh_mm[i, j]) * (one - hh * hh)
    return da


# --------------------------------------------------------------------------------------------------
NUMPY = types.SimpleNamespace(
    name="numpy",
    gru_cell_forward=gru_cell_forward_np,
    gru_cell_backward=gru_cell_backward_np,
    rnn_cell_forward=rnn_cell_forward_np,
    rnn_cell_backward=rnn_cell_backward_np,
)

if numba is not None:
    NUMBA = types.SimpleNamespace(
        name="numba",
        gru_cell_forward=_jit(_gru_cell_forward_nb),
        gru_cell_backward=_jit(_gru_cell_backward_nb),
        rnn_cell_forward=_jit(_rnn_cell_forward_nb),
        rnn_cell_backward=_jit(_rnn_cell_backward_nb),
    )
else:  # pragma: no cover
    NUMBA = None

KERNEL_NAMES = tuple(k for k in vars(NUMPY) if k != "name")


def kernels():
    """The namespace in use: the Numba kernels when _kernels.K is Numba's (one switch for both files)."""
    from . import _kernels
    return NUMBA if (_kernels.K is _kernels.NUMBA and NUMBA is not None) else NUMPY
