"""Every Numba kernel against its NumPy twin; VAE_NUMPY_JIT and use_jit; float32 models with JIT on and off."""

import os
import subprocess
import sys

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _kernels

pytestmark = pytest.mark.skipif(_kernels.NUMBA is None, reason="numba is not installed")

DTYPE = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


# --------------------------------------------------------------------------------- kernel inputs
def _logits(rng, shape, dtype):
    """Random logits with the edge cases: 0, +-30, +-100 (the BCE's stable branches)."""
    a = 4 * rng.standard_normal(shape)
    flat = a.reshape(-1)
    edges = [0.0, 30.0, -30.0, 100.0, -100.0]
    flat[:len(edges)] = edges
    flat[-len(edges):] = edges[::-1]
    return a.astype(dtype)


def _targets(rng, shape, dtype):
    x = rng.random(shape)
    flat = x.reshape(-1)
    flat[::3] = np.round(flat[::3])   # exact 0 and 1 pixels among the grey ones
    return x.astype(dtype)


def _cases(name, dtype, rng):
    """(args, indices of the arrays the kernel writes) for each kernel; args are fresh arrays."""
    f = dtype
    if name == "add_bias":
        return [((rng.standard_normal((5, 7)).astype(f), rng.standard_normal(7).astype(f)), (0,))]
    if name == "sum_rows":
        return [((rng.standard_normal((n, 7)).astype(f), np.empty(7, dtype=f)), (1,)) for n in (1, 5, 130)]
    if name in ("leaky_relu_forward", "leaky_relu_backward"):
        cases = []
        for slope in (0.0, 0.01):
            a = rng.standard_normal((5, 7)).astype(f)
            a[0, :3] = 0.0
            if name == "leaky_relu_forward":
                cases.append(((a, f(slope), np.empty_like(a)), (2,)))
            else:
                y = np.where(a > 0, a, f(slope) * a).astype(f)
                cases.append(((rng.standard_normal((5, 7)).astype(f), y, f(slope), np.empty_like(a)), (3,)))
        return cases
    if name in ("tanh_backward", "sigmoid_backward"):
        y = (np.tanh(rng.standard_normal((5, 7))) if name == "tanh_backward" else rng.random((5, 7))).astype(f)
        y[0, :3] = (0.0, 1.0, -1.0 if name == "tanh_backward" else 0.5)
        return [((rng.standard_normal((5, 7)).astype(f), y, f(1), np.empty_like(y)), (3,))]
    if name == "bce_logits":
        N, D = 6, 50
        a, x = _logits(rng, (N, D), f), _targets(rng, (N, D), f)
        bufs = [np.empty(N, dtype=f)] + [np.empty((N, D), dtype=f) for _ in range(3)]
        return [((a, x, f(1 / N), *bufs), (3, 4))]
    if name == "bernoulli_loglik_rows":
        B, K, D = 3, 4, 40
        a, x = _logits(rng, (B, K, D), f), _targets(rng, (B, D), f)
        return [((a, x, np.empty((B, K), dtype=f), np.empty_like(a), np.empty_like(a)), (2,))]
    if name == "reparam_kl_forward":
        mu, lv, eps = (rng.standard_normal((5, 3)).astype(f) for _ in range(3))
        return [((mu, lv, eps, np.empty_like(mu), np.empty_like(mu), np.empty(5, dtype=f)), (3, 4, 5))]
    if name == "reparam_kl_backward":
        dz, mu, eps = (rng.standard_normal((5, 3)).astype(f) for _ in range(3))
        std = np.exp(0.5 * rng.standard_normal((5, 3))).astype(f)
        return [((dz, mu, std, eps, f(0.25), np.empty_like(mu), np.empty_like(mu)), (5, 6))]
    if name == "adam_update":
        cases = []
        for shape in ((37,), (4, 6)):
            p, g, m = (rng.standard_normal(shape).astype(f) for _ in range(3))
            v = rng.random(shape).astype(f)
            g.reshape(-1)[:3] = 0.0                        # a momentum that decays below the smallest normal
            m.reshape(-1)[:3] = np.finfo(f).tiny * np.array([2.0, 1.05, -1.05], dtype=f)
            c1, c2 = 1 / (1 - 0.9 ** 3), 1 / (1 - 0.999 ** 3)
            cases.append(((p, g, m, v, f(1e-3), f(0.9), f(0.999), f(c1), f(c2), f(1e-8)), (0, 2, 3)))
        return cases
    if name == "sgd_update":
        p, g, vel = (rng.standard_normal((4, 6)).astype(f) for _ in range(3))
        return [((p, g, vel, f(0.1), f(0.9)), (0, 2))]
    if name == "gather_unit":
        x = rng.integers(0, 256, (9, 40), dtype=np.uint8)
        x[0, :3] = (0, 1, 255)
        idx = np.array([3, 0, 8, 3, 5])
        return [((x, idx, f(255), np.empty((5, 40), np.uint8), np.empty((5, 40), dtype=f)), (4,))]
    raise AssertionError(f"no test inputs for the kernel {name!r}: add them to _cases")


def _copy(args):
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


@DTYPE
def test_gather_unit_is_exactly_the_correctly_rounded_division(dtype):
    """Every grey level 0..255 maps to dtype(level) / dtype(255) exactly (255 -> 1.0), in both twins."""
    levels = np.arange(256, dtype=np.uint8)[None, :]
    want = levels.astype(dtype) / dtype(255)
    for kernels in (_kernels.NUMPY, _kernels.NUMBA):
        got = kernels.gather_unit(levels, np.array([0]), dtype(255), np.empty_like(levels),
                                  np.empty((1, 256), dtype))
        assert np.array_equal(got, want) and got[0, 255] == 1.0


def test_float32_exp_split_matches_exp_to_float32_precision():
    """exp(-|a|) = e * l of _exp_neg_abs_split: within 3e-7 relative of float64 exp for |a| <= 87, capped beyond."""
    a = np.concatenate([np.linspace(-87, 87, 20001), [0.0, 1e-30, -1e-30, 88.0, -200.0, 1e4]]).astype(np.float32)
    a = a.reshape(1, -1)
    e, l = np.empty_like(a), np.empty_like(a)
    split = _kernels._EXP_SPLIT_NB     # the compiled loop bce_logits calls
    split(a, e, l)
    got = (e * l).astype(np.float64)[0]
    want = np.exp(-np.minimum(np.abs(a[0].astype(np.float64)), 87.0))
    assert np.all(np.abs(got - want) <= 3e-7 * want)
    capped = got[np.abs(a[0]) >= 87]                     # |a| >= 87: all exp(-87), a normal float32
    assert np.all(capped == capped[0]) and capped[0] == pytest.approx(np.exp(-87.0), rel=3e-7)
    assert np.all(got >= np.finfo(np.float32).tiny)


@DTYPE
def test_bce_keeps_nan_and_handles_infinite_logits_like_its_twin(dtype):
    a = np.array([[np.nan, np.inf, -np.inf, 1.0, 200.0, -200.0]], dtype=dtype)
    x = np.array([[1.0, 1.0, 0.0, 0.5, 1.0, 0.0]], dtype=dtype)
    got = {}
    for kernels in (_kernels.NUMPY, _kernels.NUMBA):
        bufs = [np.empty(1, dtype)] + [np.empty_like(a) for _ in range(3)]
        with np.errstate(all="ignore"):
            kernels.bce_logits(a, x, dtype(1.0), *bufs)
        got[kernels.name] = bufs[:2]
    for rec, da in got.values():
        assert np.isnan(rec[0]) and np.isnan(da[0, 0])               # a NaN logit propagates
        np.testing.assert_allclose(da[0, 1:], [0.0, 0.0, 0.5 * (np.tanh(0.5) + 1) - 0.5, 0.0, 0.0], atol=1e-7)


def test_adam_stores_a_subnormal_momentum_as_zero():
    """b1 * m below the smallest normal number is stored as 0 by both twins (the kernels' comment says why)."""
    for dtype in (np.float32, np.float64):
        tiny = np.finfo(dtype).tiny
        for kernels in (_kernels.NUMPY, _kernels.NUMBA):
            p, g = np.ones(4, dtype), np.zeros(4, dtype)
            m, v = np.array([2 * tiny, 1.05 * tiny, -1.05 * tiny, 0.5], dtype), np.ones(4, dtype)
            f = dtype
            kernels.adam_update(p, g, m, v, f(1e-3), f(0.9), f(0.999), f(1.0), f(1.0), f(1e-8))
            assert m[0] == dtype(0.9) * dtype(2 * tiny) and m[0] >= tiny      # still normal: kept
            assert m[1] == 0 and m[2] == 0                                   # 0.945 tiny: flushed
            assert m[3] == dtype(0.45)
            g, m = np.array([np.nan, 0.0], dtype), np.zeros(2, dtype)    # a NaN gradient: NaN, not flushed
            kernels.adam_update(p[:2], g, m, v[:2], f(1e-3), f(0.9), f(0.999), f(1.0), f(1.0), f(1e-8))
            assert np.isnan(m[0]) and m[1] == 0


# ------------------------------------------------------------------------------- twins agree
@DTYPE
@pytest.mark.parametrize("name", _kernels.KERNEL_NAMES)
def test_numba_and_numpy_twins_agree(name, dtype):
    rng = np.random.default_rng(0)
    for args, outputs in _cases(name, dtype, rng):
        a_np, a_nb = _copy(args), _copy(args)
        r_np = getattr(_kernels.NUMPY, name)(*a_np)
        r_nb = getattr(_kernels.NUMBA, name)(*a_nb)
        for i in outputs:
            ref, got = a_np[i], a_nb[i]
            assert got.dtype == dtype, (name, i, got.dtype)
            assert np.all(np.isfinite(got)), (name, i)
            # atol: values that pass through ~0 (a float32 BCE term of 1e-44, say) carry no relative meaning
            atol = RTOL[dtype] * 1e-3 * max(1.0, float(np.abs(ref).max()))
            np.testing.assert_allclose(got, ref, rtol=RTOL[dtype], atol=atol, err_msg=f"{name} output {i}")
        # both return the same thing (the first output, or a tuple of outputs)
        for x, y in zip(r_np if isinstance(r_np, tuple) else (r_np,), r_nb if isinstance(r_nb, tuple) else (r_nb,),
                        strict=True):
            np.testing.assert_allclose(y, x, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3 * max(1, np.abs(x).max()))


@DTYPE
def test_bias_kernels_add_in_numpys_order(dtype):
    """add_bias and sum_rows give NumPy's bits exactly: the same additions, in the same order."""
    rng = np.random.default_rng(3)
    y, b = rng.standard_normal((128, 33)).astype(dtype), rng.standard_normal(33).astype(dtype)
    expected = y + b
    assert _kernels.NUMBA.add_bias(y, b) is y
    np.testing.assert_array_equal(y, expected)
    d = (1e4 * rng.standard_normal((130, 21))).astype(dtype)   # large terms: a reordered sum would differ
    out = np.full(21, np.nan, dtype=dtype)
    np.testing.assert_array_equal(_kernels.NUMBA.sum_rows(d, out), np.add.reduce(d, axis=0))


def test_both_namespaces_hold_every_kernel():
    assert set(_kernels.KERNEL_NAMES) == set(vars(_kernels.NUMPY)) - {"name"} == set(vars(_kernels.NUMBA)) - {"name"}
    assert _kernels.NUMPY.name == "numpy" and _kernels.NUMBA.name == "numba"
    assert len(_kernels.KERNEL_NAMES) >= 8


@pytest.mark.parametrize("jit", [True, False], ids=["jit", "numpy"])
@pytest.mark.parametrize("slope", [0.0, 0.01])
@DTYPE
def test_leaky_relu_in_place(dtype, slope, jit):
    """In place (out=a) is slower with Numba (a masked store, see _kernels) but must give the same numbers."""
    a = np.random.default_rng(1).standard_normal((4, 5)).astype(dtype)
    expected = np.where(a > 0, a, dtype(slope) * a)
    K = _kernels.NUMBA if jit else _kernels.NUMPY
    out = K.leaky_relu_forward(a, dtype(slope), a)
    assert out is a
    np.testing.assert_array_equal(a, expected)


@DTYPE
def test_bce_kernels_match_the_float64_formula(dtype):
    """Both twins against stable BCE in float64: the float32 log1p series is as good as float32 allows."""
    rng = np.random.default_rng(2)
    a, x = _logits(rng, (6, 200), dtype), _targets(rng, (6, 200), dtype)
    a64, x64 = a.astype(np.float64), x.astype(np.float64)
    rec_ref = np.sum(np.maximum(a64, 0) - a64 * x64 + np.log1p(np.exp(-np.abs(a64))), axis=1)
    da_ref = (1 / (1 + np.exp(-a64)) - x64) / 6
    tol = 5e-7 if dtype == np.float32 else 1e-13
    for K in (_kernels.NUMPY, _kernels.NUMBA):
        rec, da = np.empty(6, dtype=dtype), np.empty((6, 200), dtype=dtype)
        K.bce_logits(a, x, dtype(1 / 6), rec, da, np.empty_like(a), np.empty_like(a))
        np.testing.assert_allclose(rec, rec_ref, rtol=tol, err_msg=K.name)
        np.testing.assert_allclose(da, da_ref, rtol=tol, atol=tol * np.abs(da_ref).max(), err_msg=K.name)


# ------------------------------------------------------------------------------------- selection
def _python(code, **env):
    full = {k: v for k, v in os.environ.items() if k != "VAE_NUMPY_JIT"}
    full.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=120)


def test_env_var_selects_the_numpy_twins():
    r = _python("import vae_numpy._kernels as k; assert k.K is k.NUMPY and not k.jit_enabled(); print('ok')",
                VAE_NUMPY_JIT="0")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_jit_is_the_default():
    if os.environ.get("VAE_NUMPY_JIT", "1") == "0":
        pytest.skip("this test session runs with VAE_NUMPY_JIT=0")
    assert _kernels.K is _kernels.NUMBA and _kernels.jit_enabled()


def test_use_jit_switches_and_restores():
    before = _kernels.K
    with _kernels.use_jit(False) as K:
        assert K is _kernels.K is _kernels.NUMPY and not _kernels.jit_enabled()
        with _kernels.use_jit(True) as K2:
            assert K2 is _kernels.K is _kernels.NUMBA and _kernels.jit_enabled()
        assert _kernels.K is _kernels.NUMPY
    assert _kernels.K is before
    with pytest.raises(KeyError), _kernels.use_jit(not _kernels.jit_enabled()):
        raise KeyError("boom")
    assert _kernels.K is before


# ------------------------------------------------------------------------ float32 models, jit on/off
def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


@pytest.mark.parametrize("cfg", [dict(likelihood="bernoulli"), dict(likelihood="gaussian"),
                                 dict(likelihood="gaussian", decoder_sigma="learned"),
                                 dict(likelihood="bernoulli", activation="leaky_relu", kind="ae")],
                         ids=["bernoulli", "gaussian", "gaussian-learned", "ae-leaky"])
def test_float32_model_agrees_with_and_without_jit(cfg):
    cfg = dict(cfg)
    cls = vn.Autoencoder if cfg.pop("kind", "vae") == "ae" else vn.VAE
    model = cls(20, (16, 12), 4, seed=0, **cfg)
    assert model.dtype == np.float32
    x = np.random.default_rng(0).random((32, 20)).astype(np.float32)
    eps = np.random.default_rng(1).standard_normal((32, 4)).astype(np.float32)
    results = {}
    for jit in (True, False):
        with _kernels.use_jit(jit):
            loss = model.forward(x, eps=eps)
            model.backward()
            results[jit] = (loss, dict(model.last), {k: g.copy() for k, g in model.grads.items()})
            if cls is vn.VAE:
                results[jit] += (model.log_likelihood(x[:3], n_samples=50, seed=0),)
    (l1, last1, g1, *ll1), (l0, last0, g0, *ll0) = results[True], results[False]
    assert l1 == pytest.approx(l0, rel=1e-5)
    for k in last1:
        assert last1[k] == pytest.approx(last0[k], rel=1e-5, abs=1e-6), k
    for k in g1:
        assert g1[k].dtype == np.float32
        assert _rel(g1[k], g0[k]) < 1e-5, k
    if ll1:
        np.testing.assert_allclose(ll1[0], ll0[0], rtol=1e-5)
