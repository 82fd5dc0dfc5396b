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

import types

import numpy as np

from ._kernels import _jit, numba


# ---------------------------------------------------------------------------------------------- GRU
def gru_cell_forward_np(gx, gh, bh, h_prev, r, z, n, ghn, h):
    """gx, gh: (N, 3H), bh: (3H,), h_prev: (N, H) -> writes r, z, n, ghn, h: (N, H).

    sigma(a) = (1 + tanh(a / 2)) / 2: no overflow for any a, and NumPy's tanh is vectorized.
    """
    H = h_prev.shape[1]
    half = r.dtype.type(0.5)
    for g, cols in ((r, slice(0, H)), (z, slice(H, 2 * H))):
        np.add(gx[:, cols], gh[:, cols], out=g)
        g += bh[cols]
        g *= half
        np.tanh(g, out=g)
        g *= half
        g += half
    np.add(gh[:, 2 * H:], bh[2 * H:], out=ghn)
    np.multiply(r, ghn, out=n)
    n += gx[:, 2 * H:]
    np.tanh(n, out=n)
    np.subtract(h_prev, n, out=h)
    h *= z
    h += n                                       # h = n + z (h_prev - n) = (1 - z) n + z h_prev
    return h


# Numba has no vectorized tanh or exp here (no SVML: a scalar libm call per element made one fully fused loop
# 3-5x slower than the NumPy twin). In float32 the loops below compute tanh with a rational function that LLVM
# vectorizes (Eigen's float32 tanh: x p(x^2) / q(x^2), degrees 13 / 6, clamped at |x| = 7.905; relative error
# below 4e-7 on the whole line, a test checks it), about 3x faster than NumPy's float32 tanh here. Each loop
# touches at most four arrays: with more, LLVM gives up its runtime aliasing checks and does not vectorize.
# float64 (the checks' precision) keeps the NumPy twin.
_F32 = np.float32
_TCLAMP = _F32(7.90531110763549805)
_TA1, _TA3, _TA5, _TA7, _TA9, _TA11, _TA13 = (_F32(c) for c in (
    4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
    -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16))
_TB0, _TB2, _TB4, _TB6 = (_F32(c) for c in (
    4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06))
_HALF32 = _F32(0.5)


def tanh32(x):
    """float32 tanh(x) = x p(x^2) / q(x^2) on x clamped to [-7.905, 7.905] (see above); a NaN stays NaN."""
    x = min(max(x, -_TCLAMP), _TCLAMP)
    x2 = x * x
    p = x * (_TA1 + x2 * (_TA3 + x2 * (_TA5 + x2 * (_TA7 + x2 * (_TA9 + x2 * (_TA11 + x2 * _TA13))))))
    return p / (_TB0 + x2 * (_TB2 + x2 * (_TB4 + x2 * _TB6)))


def _make_gru_forward_loops(tanh):
    def gates_rz(gx, gh, bh, r, z):
        N, H = r.shape
        for i in range(N):
            for j in range(H):
                r[i, j] = _HALF32 * tanh(_HALF32 * (gx[i, j] + gh[i, j] + bh[j])) + _HALF32
                z[i, j] = _HALF32 * tanh(_HALF32 * (gx[i, H + j] + gh[i, H + j] + bh[H + j])) + _HALF32

    def gh_n(gh, bh, ghn):
        N, H = ghn.shape
        for i in range(N):
            for j in range(H):
                ghn[i, j] = gh[i, 2 * H + j] + bh[2 * H + j]

    def candidate(gx, r, ghn, n):
        N, H = n.shape
        for i in range(N):
            for j in range(H):
                n[i, j] = tanh(gx[i, 2 * H + j] + r[i, j] * ghn[i, j])

    def mix(h_prev, z, n, h):
        N, H = h.shape
        for i in range(N):
            for j in range(H):
                nn = n[i, j]
                h[i, j] = z[i, j] * (h_prev[i, j] - nn) + nn
    return gates_rz, gh_n, candidate, mix


def _make_gru_forward_nb(gates_rz, gh_n, candidate, mix):
    def gru_cell_forward_nb(gx, gh, bh, h_prev, r, z, n, ghn, h):
        if h.dtype != np.float32:
            return gru_cell_forward_np(gx, gh, bh, h_prev, r, z, n, ghn, h)
        gates_rz(gx, gh, bh, r, z)
        gh_n(gh, bh, ghn)
        candidate(gx, r, ghn, n)
        mix(h_prev, z, n, h)
        return h
    return gru_cell_forward_nb


def gru_cell_backward_np(dh_carry, dh_mm, h_prev, r, z, n, ghn, dgx, dgh):
    """dh_carry, dh_mm, h_prev, r, z, n, ghn: (N, H) -> writes dgx, dgh: (N, 3H) and dh_carry <- dh z.

    dh_mm is scratch: the Numba version leaves dh in it.
    """
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


# Six short loops rather than one: each touches at most four arrays, so that LLVM vectorizes it (see above).
def _gru_bwd_total(dh_carry, dh_mm, z):                  # dh_mm <- dh = carry + mm;  dh_carry <- dh z
    N, H = z.shape
    for i in range(N):
        for j in range(H):
            d = dh_carry[i, j] + dh_mm[i, j]
            dh_mm[i, j] = d
            dh_carry[i, j] = d * z[i, j]


def _gru_bwd_n(dh, z, n, dgx):                           # da_n = dh (1 - z)(1 - n^2)
    N, H = z.shape
    one = dgx.dtype.type(1)
    for i in range(N):
        for j in range(H):
            nn = n[i, j]
            dgx[i, 2 * H + j] = dh[i, j] * (one - z[i, j]) * (one - nn * nn)


def _gru_bwd_z(dh, h_prev, z, n, dgx):                   # da_z = dh (h_prev - n) z (1 - z)
    N, H = z.shape
    one = dgx.dtype.type(1)
    for i in range(N):
        for j in range(H):
            zz = z[i, j]
            dgx[i, H + j] = dh[i, j] * (h_prev[i, j] - n[i, j]) * zz * (one - zz)


def _gru_bwd_r(ghn, r, dgx):                             # da_r = da_n ghn r (1 - r)
    N, H = r.shape
    one = dgx.dtype.type(1)
    for i in range(N):
        for j in range(H):
            rr = r[i, j]
            dgx[i, j] = dgx[i, 2 * H + j] * ghn[i, j] * rr * (one - rr)


def _gru_bwd_gh(dgx, r, dgh):                            # dgh = [da_r | da_z | da_n r]
    N, H = r.shape
    for i in range(N):
        for j in range(2 * H):
            dgh[i, j] = dgx[i, j]
        for j in range(H):
            dgh[i, 2 * H + j] = dgx[i, 2 * H + j] * r[i, j]


def _make_gru_backward_nb(total, bwd_n, bwd_z, bwd_r, bwd_gh):
    def gru_cell_backward_nb(dh_carry, dh_mm, h_prev, r, z, n, ghn, dgx, dgh):
        total(dh_carry, dh_mm, z)                        # dh_mm now holds dh (the twin leaves it unchanged)
        bwd_n(dh_mm, z, n, dgx)
        bwd_z(dh_mm, h_prev, z, n, dgx)
        bwd_r(ghn, r, dgx)
        bwd_gh(dgx, r, dgh)
        return dgx
    return gru_cell_backward_nb


# ---------------------------------------------------------------------------------------------- RNN
def rnn_cell_forward_np(gx, gh, h):
    """gx, gh: (N, H) -> writes h = tanh(gx + gh)."""
    np.add(gx, gh, out=h)
    return np.tanh(h, out=h)


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
    _TANH32_NB = numba.njit(inline="always", error_model="numpy")(tanh32)
    NUMBA = types.SimpleNamespace(
        name="numba",
        gru_cell_forward=_make_gru_forward_nb(*(_jit(f) for f in _make_gru_forward_loops(_TANH32_NB))),
        gru_cell_backward=_make_gru_backward_nb(*(_jit(f) for f in (_gru_bwd_total, _gru_bwd_n, _gru_bwd_z,
                                                                     _gru_bwd_r, _gru_bwd_gh))),
        rnn_cell_forward=rnn_cell_forward_np,      # an add and NumPy's vectorized tanh: nothing to fuse
        rnn_cell_backward=_jit(_rnn_cell_backward_nb),
    )
else:  # pragma: no cover
    NUMBA = None

KERNEL_NAMES = tuple(k for k in vars(NUMPY) if k != "name")


def kernels():
    """The namespace in use: the Numba kernels when _kernels.K is Numba's (one switch for both files)."""
    from . import _kernels
    return NUMBA if (_kernels.K is _kernels.NUMBA and NUMBA is not None) else NUMPY
