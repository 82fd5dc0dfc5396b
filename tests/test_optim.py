"""Adam and SGD against hand-written references: float32 and float64, jitted and not, flat buffer and dicts."""

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _kernels

STEPS = 5
JIT = pytest.mark.parametrize("jit", [True, False], ids=["jit", "numpy"])
DTYPE = pytest.mark.parametrize("dtype", ["float32", "float64"])
RTOL = {"float32": 1e-5, "float64": 1e-12}
ATOL = {"float32": 1e-7, "float64": 1e-15}   # for entries that pass close to 0


# ------------------------------------------------------------------------------------- references
def adam_reference(params, grad_steps, lr, b1, b2, eps):
    """Adam (Kingma & Ba, 2015, Algorithm 1) in float64, one array at a time: -> (params, m, v)."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    for t, grads in enumerate(grad_steps, start=1):
        for k in p:
            g = grads[k].astype(np.float64)
            m[k] = b1 * m[k] + (1 - b1) * g
            v[k] = b2 * v[k] + (1 - b2) * g * g
            m_hat = m[k] / (1 - b1 ** t)
            v_hat = v[k] / (1 - b2 ** t)
            p[k] = p[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return p, m, v


def sgd_reference(params, grad_steps, lr, momentum):
    """vel = momentum * vel - lr * g;  p += vel, in float64."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    vel = {k: np.zeros_like(v) for k, v in p.items()}
    for grads in grad_steps:
        for k in p:
            vel[k] = momentum * vel[k] - lr * grads[k].astype(np.float64)
            p[k] = p[k] + vel[k]
    return p, vel


# ---------------------------------------------------------------------------------------- set-ups
def _model_params(dtype, seed=0):
    """A model's params (views into one flat buffer) and, per step, gradients written into model.grads."""
    model = vn.VAE(6, (5,), 2, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 100)
    steps = [{k: rng.standard_normal(g.shape).astype(dtype) for k, g in model.grads.items()} for _ in range(STEPS)]
    return model.params, model.grads, steps


def _dict_params(dtype, seed=0):
    """An independent dict of arrays (the per-array path): 2-D and 1-D entries of different sizes."""
    rng = np.random.default_rng(seed)
    shapes = {"W1": (4, 3), "b1": (3,), "W2": (3, 5), "scale": (1,)}
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()}
    steps = [{k: rng.standard_normal(s).astype(dtype) for k, s in shapes.items()} for _ in range(STEPS)]
    return params, None, steps


SETUPS = {"flat-buffer": _model_params, "dict-of-arrays": _dict_params}


def _run(opt, params, grads_buf, steps):
    """Step the optimizer; with a model, the gradients are written into model.grads as backward() would."""
    for grads in steps:
        if grads_buf is None:
            opt.step(grads)
        else:
            for k, g in grads.items():
                grads_buf[k][...] = g
            opt.step(grads_buf)


class _CountingKernel:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, *args):
        self.calls += 1
        return self.fn(*args)


# ------------------------------------------------------------------------------------------- Adam
@JIT
@DTYPE
@pytest.mark.parametrize("setup", SETUPS)
def test_adam_matches_reference(setup, dtype, jit, monkeypatch):
    params, grads_buf, steps = SETUPS[setup](dtype)
    start = {k: v.copy() for k, v in params.items()}
    hyper = dict(lr=0.01, b1=0.9, b2=0.999, eps=1e-8)
    ref_p, ref_m, ref_v = adam_reference(start, steps, **hyper)
    with _kernels.use_jit(jit) as K:
        counter = _CountingKernel(K.adam_update)
        monkeypatch.setattr(K, "adam_update", counter)
        opt = vn.Adam(params, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
        _run(opt, params, grads_buf, steps)
    # one pass over the shared buffer per step, or one per array
    assert counter.calls == STEPS * (1 if setup == "flat-buffer" else len(params))
    assert opt.t == STEPS
    for k in params:
        assert params[k].dtype == np.dtype(dtype)
        np.testing.assert_allclose(params[k], ref_p[k], rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=k)
        np.testing.assert_allclose(opt.m[k], ref_m[k], rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=k)
        np.testing.assert_allclose(opt.v[k], ref_v[k], rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=k)
        assert not np.allclose(params[k], start[k])


@DTYPE
def test_adam_model_params_with_gradients_in_separate_arrays(dtype):
    """Flat params, but gradients in a dict of independent arrays: the per-array path, same numbers."""
    params, _, steps = _model_params(dtype)
    ref_p, _, _ = adam_reference({k: v.copy() for k, v in params.items()}, steps, 0.01, 0.9, 0.999, 1e-8)
    opt = vn.Adam(params, lr=0.01)
    for grads in steps:
        opt.step({k: g.copy() for k, g in grads.items()})
    for k in params:
        np.testing.assert_allclose(params[k], ref_p[k], rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=k)


def test_adam_first_step_moves_each_weight_by_lr():
    """The bias correction makes the first step -lr * sign(g) (up to eps), whatever the scale of g."""
    p = {"w": np.zeros(4)}
    vn.Adam(p, lr=0.1).step({"w": np.array([1e-3, -2.0, 50.0, -1e4])})
    np.testing.assert_allclose(p["w"], [-0.1, 0.1, -0.1, 0.1], rtol=1e-5)


def test_adam_updates_the_live_model_arrays_and_lowers_the_loss():
    model = vn.VAE(6, (5,), 2, dtype="float64", seed=0)
    x = np.random.default_rng(0).random((16, 6))
    eps = np.random.default_rng(1).standard_normal((16, 2))
    W = model.params["enc1.W"]
    opt = vn.Adam(model.params, lr=0.01)
    first = model.forward(x, eps=eps)
    for _ in range(30):
        model.forward(x, eps=eps)
        model.backward()
        opt.step(model.grads)
    assert model.params["enc1.W"] is W
    assert model.forward(x, eps=eps) < first


@JIT
def test_adam_state_dict_resumes_exactly(jit):
    with _kernels.use_jit(jit):
        params, grads_buf, steps = _model_params("float32")
        twin = {k: v.copy() for k, v in params.items()}
        opt = vn.Adam(params, lr=0.01)
        _run(opt, params, grads_buf, steps)
        opt2 = vn.Adam(twin, lr=0.5, betas=(0.5, 0.5), eps=1e-3)
        _run(opt2, twin, None, steps[:2])            # some other history, overwritten below
        for k in twin:
            twin[k][...] = params[k]
        opt2.load_state_dict({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in opt.state_dict().items()})
        assert opt2.t == STEPS and opt2.lr == 0.01 and (opt2.b1, opt2.b2) == (0.9, 0.999)
        _run(opt, params, grads_buf, steps)
        _run(opt2, twin, None, steps)
    for k in params:
        np.testing.assert_array_equal(params[k], twin[k], err_msg=k)


# -------------------------------------------------------------------------------------------- SGD
@JIT
@DTYPE
@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("setup", SETUPS)
def test_sgd_matches_reference(setup, momentum, dtype, jit):
    params, grads_buf, steps = SETUPS[setup](dtype)
    ref_p, ref_vel = sgd_reference({k: v.copy() for k, v in params.items()}, steps, 0.05, momentum)
    with _kernels.use_jit(jit):
        opt = vn.SGD(params, lr=0.05, momentum=momentum)
        _run(opt, params, grads_buf, steps)
    for k in params:
        np.testing.assert_allclose(params[k], ref_p[k], rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=k)
        np.testing.assert_allclose(opt.velocity[k], ref_vel[k], rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=k)


def test_sgd_state_dict_round_trip():
    params, _, steps = _dict_params("float64")
    opt = vn.SGD(params, lr=0.1, momentum=0.5)
    _run(opt, params, None, steps[:2])
    state = opt.state_dict()
    assert state["t"] == 2 and state["momentum"] == 0.5 and set(state) >= {f"velocity.{k}" for k in params}
    other = vn.SGD({k: v.copy() for k, v in params.items()}, lr=1.0)
    other.load_state_dict(state)
    _run(opt, params, None, steps[2:])
    _run(other, other.params, None, steps[2:])
    for k in params:
        np.testing.assert_array_equal(params[k], other.params[k])


# ----------------------------------------------------------------------------- odd parameter arrays
@JIT
@pytest.mark.parametrize("opt_cls", [vn.Adam, vn.SGD])
@pytest.mark.parametrize("view", ["strided", "transposed"])
def test_non_contiguous_params(view, opt_cls, jit):
    """A dict may hold any arrays, e.g. a strided or transposed view of a bigger one.
    (Regression: the Numba loops call p.reshape(-1), which Numba allows on C-contiguous arrays only.)"""
    base = np.random.default_rng(0).standard_normal((4, 6))
    p = base[:, ::2] if view == "strided" else base.T
    ref = p.copy()
    g = np.ones_like(ref)
    with _kernels.use_jit(jit):
        opt_cls({"w": p}, lr=0.1).step({"w": g})
    expected = ref - 0.1 * (1 if opt_cls is vn.Adam else g)
    np.testing.assert_allclose(p, expected, rtol=1e-6)


@JIT
@pytest.mark.parametrize("opt_cls", [vn.Adam, vn.SGD])
def test_zero_dim_param(opt_cls, jit):
    """A scalar parameter (a 0-d array, e.g. a learned temperature).
    (Regression: np.ascontiguousarray turned a 0-d gradient into shape (1,), which the NumPy twins refused.)"""
    p = {"s": np.array(1.5)}
    with _kernels.use_jit(jit):
        opt_cls(p, lr=0.1).step({"s": np.array(2.0)})
    assert p["s"].shape == () and p["s"] == pytest.approx(1.4 if opt_cls is vn.Adam else 1.3)


# --------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("lr, match", [(0.0, r"lr=0\.0 must be > 0"), (-1e-3, r"lr=-0\.001 must be > 0"),
                                       (float("nan"), r"lr=nan must be a finite number"),
                                       ("0.1", r"lr='0\.1' must be a finite number")])
@pytest.mark.parametrize("opt_cls", [vn.Adam, vn.SGD])
def test_bad_lr(opt_cls, lr, match):
    with pytest.raises(vn.ConfigError, match=match):
        opt_cls({"w": np.zeros(3)}, lr=lr)


@pytest.mark.parametrize("betas, match", [
    ((1.0, 0.999), r"betas=\(1\.0, 0\.999\) must each lie in \[0, 1\)"),
    ((0.9, 1.5), r"betas=\(0\.9, 1\.5\) must each lie in \[0, 1\)"),
    ((-0.1, 0.999), r"betas\[0\]=-0\.1 must be >= 0"),
    ((0.9, float("inf")), r"betas\[1\]=inf must be a finite number"),
    (0.9, r"betas=0\.9 must be a pair \(beta1, beta2\)"),
    ((0.9, 0.99, 0.999), r"must be a pair"),
])
def test_adam_bad_betas(betas, match):
    with pytest.raises(vn.ConfigError, match=match):
        vn.Adam({"w": np.zeros(3)}, betas=betas)


def test_adam_bad_eps_and_sgd_bad_momentum():
    with pytest.raises(vn.ConfigError, match=r"eps=0\.0 must be > 0"):
        vn.Adam({"w": np.zeros(3)}, eps=0.0)
    with pytest.raises(vn.ConfigError, match=r"momentum=-0\.5 must be >= 0"):
        vn.SGD({"w": np.zeros(3)}, momentum=-0.5)
    with pytest.raises(vn.ConfigError, match=r"momentum=1\.5 must be <= 1"):
        vn.SGD({"w": np.zeros(3)}, momentum=1.5)


@pytest.mark.parametrize("params, match", [
    ({}, "non-empty dict"),
    ([np.zeros(3)], "non-empty dict"),
    ({"a": np.zeros(3), "b": np.zeros(3, dtype=np.float32)}, r"one floating dtype; got \['float32', 'float64'\]"),
    ({"a": np.zeros(3, dtype=np.int64)}, r"one floating dtype; got \['int64'\]"),
])
def test_bad_params(params, match):
    with pytest.raises(vn.ConfigError, match=match):
        vn.Adam(params)


@pytest.mark.parametrize("opt_cls", [vn.Adam, vn.SGD])
def test_bad_grads(opt_cls):
    params, grads, steps = _model_params("float32")
    for k, g in steps[0].items():
        grads[k][...] = g
    opt = opt_cls(params, lr=0.1)
    missing = {k: g for k, g in grads.items() if k != "enc1.W"}
    with pytest.raises(vn.ConfigError, match=r"grads must have the same names as params .*'enc1\.W'"):
        opt.step(missing)
    with pytest.raises(vn.ConfigError, match=r"grads must have the same names"):
        opt.step({**grads, "extra": np.zeros(1, dtype=np.float32)})
    with pytest.raises(vn.ConfigError, match=r"grads must have the same names as params .*got list"):
        opt.step(list(grads.values()))
    wrong = dict(grads, **{"enc1.b": np.zeros(7, dtype=np.float32)})
    with pytest.raises(vn.ConfigError, match=r"grads\['enc1\.b'\] has shape \(7,\); expected \(5,\)"):
        opt.step(wrong)
    assert opt.t == 0   # nothing was applied
    before = {k: p.copy() for k, p in params.items()}
    opt.step(grads)     # a good call after the bad ones works (a refused dict is not remembered)
    assert opt.t == 1 and not np.array_equal(params["enc1.W"], before["enc1.W"])
    with pytest.raises(vn.ConfigError, match=r"grads\['enc1\.b'\] has shape"):
        opt.step(wrong)
