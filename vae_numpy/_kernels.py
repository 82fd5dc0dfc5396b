"""Hot elementwise loops: each Numba kernel beside its plain-NumPy twin with the same signature.

Every kernel writes into arrays passed by the caller (``out``-style) so that the training path allocates
nothing per batch. ``NUMPY`` and ``NUMBA`` are two namespaces holding the same names; ``K`` is the one
the package calls. ``VAE_NUMPY_JIT=0`` (read at import) or :func:`use_jit` selects the NumPy twins.

Rules (see DESIGN.md, "Numba"): ``error_model="numpy"`` (no Python division checks), scalars cast to the
array's dtype by the caller (a float64 scalar would de-vectorize a float32 loop). Numba has no SIMD
`exp` or `log1p` here (no SVML), so float64 leaves them to NumPy; the float32 BCE computes both itself
with vectorizable formulas (see its comment), everything else elementwise runs fused in one loop.
Caching is on where a cache folder is writable and silently off where it is not (a read-only install).
"""

from __future__ import annotations

import contextlib
import math
import os
import types
import warnings

import numpy as np

try:  # numba is a run-time dependency, but the twins keep the package usable without it
    import numba
except ImportError:  # pragma: no cover - exercised only on a broken install
    numba = None


def _jit(fn, fastmath=False):
    """``numba.njit`` with the project's options; caching only where numba finds a writable place.

    fastmath={"reassoc"} lets LLVM reorder a sum, which is what vectorizes a loop that accumulates one
    (a strict left-to-right float sum cannot use SIMD lanes); {"contract"} lets it fuse a * b + c into one
    FMA (one rounding instead of two). Nothing else about the math changes.
    """
    if numba is None:
        return fn
    try:
        return numba.njit(error_model="numpy", fastmath=fastmath, cache=True)(fn)
    except Exception:  # "no locator available" on a read-only install: compile per process instead
        return numba.njit(error_model="numpy", fastmath=fastmath, cache=False)(fn)


# --------------------------------------------------------------------------------------------------
# Dense layer: the bias.  y += b (b broadcast over the rows) ;  db = sum_n dy[n, :]
# NumPy's broadcast add runs its inner loop once per row and costs about twice a plain add; its reduction
# over axis 0 pays a setup per call that dominates for the (N, 20) heads. Both loops below add in the
# same order as NumPy (row after row), so the results are bit-identical to the twins.
# --------------------------------------------------------------------------------------------------
def add_bias_np(y, b):
    """y: (N, O), b: (O,).  y += b in place."""
    y += b
    return y


def _add_bias_nb(y, b):
    n, d = y.shape
    for i in range(n):
        for j in range(d):
            y[i, j] += b[j]
    return y


def sum_rows_np(dy, out):
    """dy: (N, O) -> out: (O,) = sum over the rows (the bias gradient)."""
    return np.add.reduce(dy, axis=0, out=out)   # = np.sum(dy, axis=0), without np.sum's Python wrapper


def _sum_rows_nb(dy, out):
    n, d = dy.shape
    for j in range(d):
        out[j] = 0
    for i in range(n):
        for j in range(d):
            out[j] += dy[i, j]
    return out


# --------------------------------------------------------------------------------------------------
# Activation: leaky ReLU (slope = 0 gives ReLU).  y = a if a > 0 else slope * a ;  da = dy * (1 or slope)
# Give the forward kernel an `out` other than `a`: in place, LLVM sees that `a[i] = a[i] if a[i] > 0 ...`
# leaves the positive entries unchanged and stores only the others, with a masked store (vmaskmovps) that
# AMD's cores execute about 4x slower than a plain one: 25 us instead of 6.5 us for (128, 400) float32.
# In place still gives the right numbers, only slower.
# --------------------------------------------------------------------------------------------------
def leaky_relu_forward_np(a, slope, out):
    """a, out: (N, H); out may be a (slower with Numba, see above).  out = max(a, 0) + slope * min(a, 0)."""
    if slope == 0:
        np.maximum(a, 0, out=out)
    else:
        np.multiply(a, np.where(a > 0, 1, slope).astype(a.dtype), out=out)
    return out


def leaky_relu_backward_np(dy, y, slope, out):
    """dy, y, out: (N, H).  out = dy where y > 0, slope * dy elsewhere (y > 0 exactly when a > 0)."""
    np.multiply(dy, np.where(y > 0, 1, slope).astype(dy.dtype), out=out)
    return out


def _leaky_relu_forward_nb(a, slope, out):
    n, h = a.shape
    for i in range(n):
        for j in range(h):
            v = a[i, j]
            out[i, j] = v if v > 0 else slope * v
    return out


def _leaky_relu_backward_nb(dy, y, slope, out):
    n, h = dy.shape
    for i in range(n):
        for j in range(h):
            g = dy[i, j]
            out[i, j] = g if y[i, j] > 0 else slope * g
    return out


# --------------------------------------------------------------------------------------------------
# Activation backward from the output y: tanh  da = dy * (1 - y^2) ;  sigmoid  da = dy * (y (1 - y)).
# NumPy evaluates them as separate passes with two temporaries; the loops compute the same roundings in the
# same order (no FMA contraction: fastmath off), so the bits are NumPy's. `one` is 1 in the arrays' dtype
# (a literal 1 would promote float32 to float64 inside Numba).
# --------------------------------------------------------------------------------------------------
def tanh_backward_np(dy, y, one, out):
    """dy, y, out: (N, H).  out = dy * (1 - y * y)."""
    return np.multiply(dy, one - y * y, out=out)


def _tanh_backward_nb(dy, y, one, out):
    n, h = dy.shape
    for i in range(n):
        for j in range(h):
            v = y[i, j]
            out[i, j] = dy[i, j] * (one - v * v)
    return out


def sigmoid_backward_np(dy, y, one, out):
    """dy, y, out: (N, H).  out = dy * (y * (1 - y))."""
    return np.multiply(dy, y * (one - y), out=out)


def _sigmoid_backward_nb(dy, y, one, out):
    n, h = dy.shape
    for i in range(n):
        for j in range(h):
            v = y[i, j]
            out[i, j] = dy[i, j] * (v * (one - v))
    return out


# --------------------------------------------------------------------------------------------------
# Bernoulli negative log-likelihood on logits, value and gradient in one pass.
#   rec[n] = sum_d max(a, 0) - a x + log1p(exp(-|a|))        (stable BCE, any logit)
#   da     = scale * (sigmoid(a) - x),  sigmoid(a) = 1/(1+e) if a >= 0 else e/(1+e),  e = exp(-|a|)
# In float64 NumPy computes e = exp(-|a|) and log1p(e). NumPy's float32 log1p is not vectorized (~10x slower
# than its exp here), so in float32 the Numba loop evaluates it itself from
#   log1p(e) = 2 atanh(t) = 2 (t + t^3/3 + t^5/5 + ... + t^13/13),   t = e / (2 + e) in [0, 1/3],
# whose truncation error is below 1e-7 (float32 resolution); float64 keeps NumPy's log1p.
# In float32 e itself is computed by the Numba loops too (NumPy's abs, negative and exp passes took ~2/3 of
# the kernel): |a| = n ln2 + r with n = round(|a| / ln2), |r| <= ln2 / 2, so that
#   exp(-|a|) = 2^-n exp(-r),   exp(-r) = sum_{k<=6} (-r)^k / k!   (truncation error < 1.7e-7 relative),
# 2^-n being the float32 whose bits are (127 - n) << 23. |a| is capped at 87: exp(-87) = 1.6e-38 is still a
# normal number (subnormals are slow), and a logit beyond +-87 changes the loss by less than 2e-38. A NaN
# logit stays NaN in rec and da, as in the NumPy twin.
# --------------------------------------------------------------------------------------------------
def _exp_neg_abs(a, e):
    """e = exp(-|a|), in NumPy."""
    np.abs(a, out=e)
    np.negative(e, out=e)
    np.exp(e, out=e)


def bce_logits_np(a, x, scale, rec, da, e, l):
    """a, x, da, e, l: (N, D); rec: (N,).  Fills rec and da (and the scratch e, l)."""
    _exp_neg_abs(a, e)
    np.log1p(e, out=l)
    np.maximum(a, 0, out=da)
    da -= a * x
    da += l
    da.sum(axis=1, out=rec)
    np.add(e, 1, out=l)                       # l <- 1 + e
    np.divide(np.where(a >= 0, 1, e), l, out=da)   # da <- sigmoid(a)
    da -= x
    da *= scale
    return rec


_F32 = np.float32
_TWO, _C3, _C5, _C7, _C9, _C11, _C13 = (_F32(c) for c in (2, 2 / 3, 2 / 5, 2 / 7, 2 / 9, 2 / 11, 2 / 13))
_HALF, _LOG2E, _CAP = _F32(0.5), _F32(1.4426950408889634), _F32(87.0)
_LN2_HI, _LN2_LO = _F32(0.693359375), _F32(-2.12194440e-4)    # ln 2 = hi + lo, hi exact in few bits
_E1, _E2, _E3, _E4, _E5, _E6 = (_F32((-1) ** k / math.factorial(k)) for k in range(1, 7))
_I127, _I23 = np.int32(127), np.int32(23)


def _exp_neg_abs_split(a, e, l):
    """float32 a: (N, D) -> e = 2^-n (as float32 bits), l = exp(-r), so that exp(-|a|) = e * l (see above)."""
    n_rows, d = a.shape
    e_bits = e.view(np.int32)
    for i in range(n_rows):
        for j in range(d):
            x = abs(a[i, j])
            xn = x if x < _CAP else _CAP       # for n: a NaN becomes 87, so that the bits below stay valid
            x = _CAP if x >= _CAP else x       # for r: a NaN stays NaN
            n = np.floor(xn * _LOG2E + _HALF)
            r = (x - n * _LN2_HI) - n * _LN2_LO
            l[i, j] = _F32(1) + r * (_E1 + r * (_E2 + r * (_E3 + r * (_E4 + r * (_E5 + r * _E6)))))
            e_bits[i, j] = (_I127 - np.int32(n)) << _I23


def _bce_logits_loop(a, x, scale, rec, da, e, l):
    """The fused loop, reading log1p(e) from l."""
    n, d = a.shape
    one = scale / scale  # 1 in the array's dtype (a literal 1 would promote float32 to float64)
    zero = one - one
    for i in range(n):
        s = 0.0
        for j in range(d):
            av = a[i, j]
            xv = x[i, j]
            ev = e[i, j]
            s += (av if av > zero else zero) - av * xv + l[i, j]
            r = one / (one + ev)
            sig = r if av >= 0 else ev * r
            da[i, j] = scale * (sig - xv)
        rec[i] = s
    return rec


def _bce_logits_series_loop(a, x, scale, rec, da, e, l):
    """The fused loop for float32, exp(-|a|) = e * l from _exp_neg_abs_split, log1p of it by the series."""
    n, d = a.shape
    one = scale / scale
    zero = one - one
    for i in range(n):
        s = zero
        for j in range(d):
            av = a[i, j]
            xv = x[i, j]
            ev = e[i, j] * l[i, j]
            t = ev / (_TWO + ev)
            t2 = t * t
            lv = t * (_TWO + t2 * (_C3 + t2 * (_C5 + t2 * (_C7 + t2 * (_C9 + t2 * (_C11 + t2 * _C13))))))
            s += (av if av > zero else zero) - av * xv + lv
            r = one / (one + ev)
            sig = r if av >= zero else ev * r
            da[i, j] = scale * (sig - xv)
        rec[i] = s
    return rec


def _make_bce_nb(loop, split, series_loop):
    def bce_logits_nb(a, x, scale, rec, da, e, l):
        if a.dtype == np.float32:
            split(a, e, l)
            return series_loop(a, x, scale, rec, da, e, l)
        _exp_neg_abs(a, e)
        np.log1p(e, out=l)
        return loop(a, x, scale, rec, da, e, l)
    return bce_logits_nb


def bernoulli_loglik_rows_np(a, x, out, e, l):
    """a, e, l: (B, K, D) logits of K decoded samples; x: (B, D).  out[b, k] = log p(x_b | h_bk)."""
    _exp_neg_abs(a, e)
    np.log1p(e, out=l)
    np.maximum(a, 0, out=e)
    e -= a * x[:, None, :]
    e += l
    np.negative(e.sum(axis=2), out=out)
    return out


def _bernoulli_loglik_rows_loop(a, x, out, e, l):
    b, k, d = a.shape
    for i in range(b):
        for j in range(k):
            s = 0.0
            for m in range(d):
                av = a[i, j, m]
                s += (av if av > 0 else 0.0) - av * x[i, m] + l[i, j, m]
            out[i, j] = -s
    return out


def _bernoulli_loglik_rows_series_loop(a, x, out, e, l):
    """float32: exp(-|a|) = e * l from _exp_neg_abs_split, log1p of it by the series (as the BCE's loop)."""
    b, k, d = a.shape
    zero = _F32(0)
    for i in range(b):
        for j in range(k):
            s = zero
            for m in range(d):
                av = a[i, j, m]
                ev = e[i, j, m] * l[i, j, m]
                t = ev / (_TWO + ev)
                t2 = t * t
                lv = t * (_TWO + t2 * (_C3 + t2 * (_C5 + t2 * (_C7 + t2 * (_C9 + t2 * (_C11 + t2 * _C13))))))
                s += (av if av > zero else zero) - av * x[i, m] + lv
            out[i, j] = -s
    return out


def _make_rows_nb(loop, split, series_loop):
    def bernoulli_loglik_rows_nb(a, x, out, e, l):
        if a.dtype == np.float32:    # NumPy's float32 log1p is not vectorized: the series, as in bce_logits
            d = a.shape[2]
            split(a.reshape(-1, d), e.reshape(-1, d), l.reshape(-1, d))
            return series_loop(a, x, out, e, l)
        _exp_neg_abs(a, e)
        np.log1p(e, out=l)
        return loop(a, x, out, e, l)
    return bernoulli_loglik_rows_nb


# --------------------------------------------------------------------------------------------------
# Reparameterization and KL, fused.   std = exp(log_var / 2),  z = mu + std * eps,
#   kl[n] = -1/2 sum_j (1 + log_var - mu^2 - std^2)
# Backward, with kl_scale = beta / N (the weight of each KL term in the mean loss):
#   dmu      = dz + kl_scale * mu                         (mu feeds z and the KL: the gradients add)
#   dlog_var = dz * eps * std / 2 + kl_scale * (std^2 - 1) / 2
# --------------------------------------------------------------------------------------------------
def reparam_kl_forward_np(mu, log_var, eps, z, std, kl):
    """mu, log_var, eps, z, std: (N, Z); kl: (N,).  Fills std (via exp), z and kl."""
    np.multiply(log_var, 0.5, out=std)
    np.exp(std, out=std)
    np.multiply(std, eps, out=z)
    z += mu
    kl[:] = -0.5 * (1 + log_var - mu * mu - std * std).sum(axis=1)
    return z


def _reparam_kl_loop(mu, log_var, eps, z, std, kl):
    n, k = mu.shape
    for i in range(n):
        s = 0.0
        for j in range(k):
            m = mu[i, j]
            sd = std[i, j]
            z[i, j] = m + sd * eps[i, j]
            s += 1 + log_var[i, j] - m * m - sd * sd
        kl[i] = -0.5 * s
    return z


def _make_reparam_nb(loop):
    def reparam_kl_forward_nb(mu, log_var, eps, z, std, kl):
        np.multiply(log_var, 0.5, out=std)
        np.exp(std, out=std)
        return loop(mu, log_var, eps, z, std, kl)
    return reparam_kl_forward_nb


def reparam_kl_backward_np(dz, mu, std, eps, kl_scale, dmu, dlog_var):
    """dz, mu, std, eps, dmu, dlog_var: (N, Z).  Fills dmu and dlog_var (formulas above)."""
    np.multiply(mu, kl_scale, out=dmu)
    dmu += dz
    dlog_var[:] = 0.5 * (dz * eps * std + kl_scale * (std * std - 1))
    return dmu, dlog_var


def _reparam_kl_backward_nb(dz, mu, std, eps, kl_scale, dmu, dlog_var):
    n, k = dz.shape
    for i in range(n):
        for j in range(k):
            g = dz[i, j]
            sd = std[i, j]
            dmu[i, j] = g + kl_scale * mu[i, j]
            dlog_var[i, j] = 0.5 * (g * eps[i, j] * sd + kl_scale * (sd * sd - 1))
    return dmu, dlog_var


# --------------------------------------------------------------------------------------------------
# Optimizer updates, in place, one pass over memory.
#   Adam:  m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2 ;
#          p -= lr * (m * c1) / (sqrt(v * c2) + eps),  c1 = 1 / (1 - b1^t),  c2 = 1 / (1 - b2^t)
#   SGD:   vel = momentum * vel - lr * g ;  p += vel
# A momentum m below the dtype's smallest normal number (|m| < tiny: 1.2e-38 in float32) is stored as 0:
# where a gradient stays exactly 0 (pixels that are always black, dead ReLU units) m decays by b1 every
# step into subnormal numbers, on which the CPU's arithmetic is many times slower (measured: a few % of
# subnormal entries made the whole update 16% slower). Such an m would move p by at most lr * c1 * tiny / eps
# (c1 <= 1 / (1 - b1)), far below float32 resolution. v decays by b2 = 0.999 a step and needs tens of thousands
# of steps without a gradient to reach that range, so it is left as it is.
# --------------------------------------------------------------------------------------------------
def adam_update_np(p, g, m, v, lr, b1, b2, c1, c2, eps):
    """p, g, m, v: same shape (any), updated in place; scalars in p's dtype."""
    m *= b1
    m += (1 - b1) * g
    m[np.abs(m) < np.finfo(m.dtype).tiny] = 0
    v *= b2
    v += (1 - b2) * (g * g)
    p -= lr * (m * c1) / (np.sqrt(v * c2) + eps)
    return p


def _adam_update_nb(p, g, m, v, lr, b1, b2, c1, c2, eps):
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    mf = m.reshape(-1)
    vf = v.reshape(-1)
    one = c1 / c1  # 1 in p's dtype (c1 >= 1); a literal 1 would promote float32 math to float64
    tiny = np.finfo(mf.dtype).tiny
    zero = one - one
    for i in range(pf.size):
        gi = gf[i]
        mi = b1 * mf[i] + (one - b1) * gi
        mi = zero if abs(mi) < tiny else mi   # (a NaN stays NaN, as in the twin)
        vi = b2 * vf[i] + (one - b2) * (gi * gi)
        mf[i] = mi
        vf[i] = vi
        pf[i] -= lr * (mi * c1) / (np.sqrt(vi * c2) + eps)
    return p


def sgd_update_np(p, g, vel, lr, momentum):
    """p, g, vel: same shape, updated in place."""
    vel *= momentum
    vel -= lr * g
    p += vel
    return p


def _sgd_update_nb(p, g, vel, lr, momentum):
    pf = p.reshape(-1)
    gf = g.reshape(-1)
    vf = vel.reshape(-1)
    for i in range(pf.size):
        vi = momentum * vf[i] - lr * gf[i]
        vf[i] = vi
        pf[i] += vi
    return p


# --------------------------------------------------------------------------------------------------
# A minibatch of uint8 images as floats in [0, 1], gathered and scaled in one pass:
#   out[i, :] = x[idx[i], :] / 255        (a true division: 255 maps to exactly 1, as in to_unit)
# --------------------------------------------------------------------------------------------------
def gather_unit_np(x, idx, c255, u8, out):
    """x: (N, D) uint8; idx: (B,) rows in [0, N); c255: 255 in out's dtype; u8: (B, D) uint8 scratch; out: (B, D).

    The callers (Batches, vn.train) pass validated shapes and in-range indices; the Numba twin checks neither.
    """
    np.take(x, idx, axis=0, out=u8, mode="clip")
    np.copyto(out, u8)
    return np.divide(out, c255, out=out)


def _gather_unit_nb(x, idx, c255, u8, out):
    b, d = out.shape
    for i in range(b):
        row = idx[i]
        for j in range(d):
            out[i, j] = x[row, j] / c255
    return out


# --------------------------------------------------------------------------------------------------
NUMPY = types.SimpleNamespace(
    name="numpy",
    add_bias=add_bias_np,
    sum_rows=sum_rows_np,
    leaky_relu_forward=leaky_relu_forward_np,
    leaky_relu_backward=leaky_relu_backward_np,
    tanh_backward=tanh_backward_np,
    sigmoid_backward=sigmoid_backward_np,
    bce_logits=bce_logits_np,
    bernoulli_loglik_rows=bernoulli_loglik_rows_np,
    reparam_kl_forward=reparam_kl_forward_np,
    reparam_kl_backward=reparam_kl_backward_np,
    adam_update=adam_update_np,
    sgd_update=sgd_update_np,
    gather_unit=gather_unit_np,
)

if numba is not None:
    _REASSOC = {"reassoc"}
    _EXP_SPLIT_NB = _jit(_exp_neg_abs_split, {"contract"})
    NUMBA = types.SimpleNamespace(
        name="numba",
        add_bias=_jit(_add_bias_nb),
        sum_rows=_jit(_sum_rows_nb),
        leaky_relu_forward=_jit(_leaky_relu_forward_nb),
        leaky_relu_backward=_jit(_leaky_relu_backward_nb),
        tanh_backward=_jit(_tanh_backward_nb),
        sigmoid_backward=_jit(_sigmoid_backward_nb),
        bce_logits=_make_bce_nb(_jit(_bce_logits_loop, _REASSOC), _EXP_SPLIT_NB,
                                _jit(_bce_logits_series_loop, _REASSOC)),
        bernoulli_loglik_rows=_make_rows_nb(_jit(_bernoulli_loglik_rows_loop, _REASSOC), _EXP_SPLIT_NB,
                                            _jit(_bernoulli_loglik_rows_series_loop, _REASSOC)),
        reparam_kl_forward=_make_reparam_nb(_jit(_reparam_kl_loop)),
        reparam_kl_backward=_jit(_reparam_kl_backward_nb),
        adam_update=_jit(_adam_update_nb),
        sgd_update=_jit(_sgd_update_nb),
        gather_unit=_jit(_gather_unit_nb),
    )
else:  # pragma: no cover
    NUMBA = None
    warnings.warn("numba is not installed: vae_numpy runs its plain-NumPy kernels", stacklevel=1)

KERNEL_NAMES = tuple(k for k in vars(NUMPY) if k != "name")

K = NUMBA if (NUMBA is not None and os.environ.get("VAE_NUMPY_JIT", "1") != "0") else NUMPY


def jit_enabled() -> bool:
    """True when the Numba kernels are the ones in use."""
    return K is NUMBA and NUMBA is not None


@contextlib.contextmanager
def use_jit(enabled: bool):
    """Temporarily select the Numba kernels (True) or their NumPy twins (False)."""
    global K
    old = K
    K = NUMBA if (enabled and NUMBA is not None) else NUMPY
    try:
        yield K
    finally:
        K = old
