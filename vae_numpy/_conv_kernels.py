"""im2col and col2im for channels-last images: each Numba kernel beside its NumPy twin (same signature).

Shapes: x: (N, H, W, C) an image batch; cols: (N, Ho, Wo, kh, kw, C), one row per output pixel holding the
kh x kw x C patch it reads:

    cols[n, i, j, p, q, c] = x[n, i*s + p - pt, j*s + q - pl, c]     (0 outside the image: the padding)

col2im is its adjoint (the backward of im2col), summing every patch entry back where it came from:

    x[n, i*s + p - pt, j*s + q - pl, c] += cols[n, i, j, p, q, c]

Both twins visit (p, q) in the outer loops and add in the same order, so they agree to the bit. As with
vae_numpy/_kernels.py, ``K`` is the namespace the package calls and follows ``_kernels.use_jit``.
"""

from __future__ import annotations

import types

from . import _kernels
from ._kernels import _jit


def im2col_np(x, s, pt, pl, out):
    """x: (N, H, W, C) -> out: (N, Ho, Wo, kh, kw, C), the patches (zero outside x)."""
    N, H, W, C = x.shape
    _, Ho, Wo, kh, kw, _ = out.shape
    for p in range(kh):
        for q in range(kw):
            # output rows i read image row i*s + p - pt; keep those inside [0, H)
            i0, i1 = _valid(p - pt, s, H, Ho)
            j0, j1 = _valid(q - pl, s, W, Wo)
            o = out[:, :, :, p, q, :]
            o[:, :i0] = 0
            o[:, i1:] = 0
            o[:, :, :j0] = 0
            o[:, :, j1:] = 0
            if i1 > i0 and j1 > j0:
                r0, c0 = i0 * s + p - pt, j0 * s + q - pl
                o[:, i0:i1, j0:j1] = x[:, r0:r0 + (i1 - i0 - 1) * s + 1:s, c0:c0 + (j1 - j0 - 1) * s + 1:s]
    return out


def col2im_np(cols, s, pt, pl, out):
    """cols: (N, Ho, Wo, kh, kw, C) -> out: (N, H, W, C) = the sum of every patch entry at its pixel."""
    N, H, W, C = out.shape
    _, Ho, Wo, kh, kw, _ = cols.shape
    out[...] = 0
    for p in range(kh):
        for q in range(kw):
            i0, i1 = _valid(p - pt, s, H, Ho)
            j0, j1 = _valid(q - pl, s, W, Wo)
            if i1 > i0 and j1 > j0:
                r0, c0 = i0 * s + p - pt, j0 * s + q - pl
                out[:, r0:r0 + (i1 - i0 - 1) * s + 1:s, c0:c0 + (j1 - j0 - 1) * s + 1:s] += \
                    cols[:, i0:i1, j0:j1, p, q]
    return out


def _valid(offset, s, size, n_out):
    """The output indices i in [i0, i1) with 0 <= i*s + offset < size."""
    i0 = 0
    while i0 < n_out and i0 * s + offset < 0:
        i0 += 1
    i1 = n_out
    while i1 > i0 and (i1 - 1) * s + offset >= size:
        i1 -= 1
    return i0, i1


def _im2col_nb(x, s, pt, pl, out):
    N, H, W, C = x.shape
    Ho, Wo, kh, kw = out.shape[1], out.shape[2], out.shape[3], out.shape[4]
    for n in range(N):
        for i in range(Ho):
            for j in range(Wo):
                for p in range(kh):
                    r = i * s + p - pt
                    for q in range(kw):
                        c = j * s + q - pl
                        if 0 <= r < H and 0 <= c < W:
                            for ch in range(C):
                                out[n, i, j, p, q, ch] = x[n, r, c, ch]
                        else:
                            for ch in range(C):
                                out[n, i, j, p, q, ch] = 0
    return out


def _col2im_nb(cols, s, pt, pl, out):
    N, H, W, C = out.shape
    Ho, Wo, kh, kw = cols.shape[1], cols.shape[2], cols.shape[3], cols.shape[4]
    out[...] = 0
    for n in range(N):
        for p in range(kh):          # (p, q) outermost: the twin's order of addition, so the same bits
            for q in range(kw):
                for i in range(Ho):
                    r = i * s + p - pt
                    if r < 0 or r >= H:
                        continue
                    for j in range(Wo):
                        c = j * s + q - pl
                        if c < 0 or c >= W:
                            continue
                        for ch in range(C):
                            out[n, r, c, ch] += cols[n, i, j, p, q, ch]
    return out


NUMPY = types.SimpleNamespace(name="numpy", im2col=im2col_np, col2im=col2im_np)
NUMBA = (types.SimpleNamespace(name="numba", im2col=_jit(_im2col_nb), col2im=_jit(_col2im_nb))
         if _kernels.NUMBA is not None else None)


class _Current:
    """``K.im2col`` / ``K.col2im``: the Numba kernels when _kernels uses them, else the NumPy twins."""

    def __getattr__(self, name):
        return getattr(NUMBA if (NUMBA is not None and _kernels.K is _kernels.NUMBA) else NUMPY, name)


K = _Current()
