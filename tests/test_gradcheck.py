"""vae_numpy.gradcheck: the error measures, numerical gradients, and checks that can fail."""

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _kernels, gradcheck, layers
from vae_numpy.gradcheck import array_rel_error, check_function, check_model, numerical_gradient, rel_error

JIT = pytest.mark.parametrize("jit", [True, False], ids=["jit", "numpy"])


# ---------------------------------------------------------------------------------- error measures
def test_rel_error_simple_cases():
    """cs231n's elementwise max |a - b| / max(|a| + |b|, 1e-8)."""
    assert rel_error(1.0, 1.0) == 0.0
    assert rel_error([1.0], [1.1]) == pytest.approx(0.1 / 2.1, rel=1e-12)
    assert rel_error([1.0, -2.0], [-1.0, -2.0]) == 1.0            # opposite signs: the largest possible
    assert rel_error([2.0, 100.0], [2.0, 101.0]) == pytest.approx(1 / 201, rel=1e-12)   # the max over entries
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0              # the 1e-8 floor: no 0 / 0
    assert rel_error([0.0], [1e-9]) == pytest.approx(0.1, rel=1e-12)
    assert rel_error([1.0, 3.0], [1.5, 2.0]) == rel_error([1.5, 2.0], [1.0, 3.0])
    assert rel_error(np.empty(0), np.empty(0)) == 0.0
    assert isinstance(rel_error(np.float32(1), np.float32(2)), float)
    with pytest.raises(vn.ConfigError, match=r"one shape; got \(2,\) and \(3,\)"):
        rel_error(np.zeros(2), np.zeros(3))


def test_array_rel_error_simple_cases():
    assert array_rel_error([1.0, 2.0], [1.0, 2.0]) == 0.0
    assert array_rel_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 2.2, rel=1e-12)
    assert array_rel_error(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0
    assert array_rel_error([0.0, 0.0], [0.0, 1e-3]) == 1.0
    assert array_rel_error([3.0, 1.0], [3.0, 2.0]) == array_rel_error([3.0, 2.0], [3.0, 1.0]) == pytest.approx(1 / 3)
    with pytest.raises(vn.ConfigError, match=r"one shape; got \(2,\) and \(2, 1\)"):
        array_rel_error(np.zeros(2), np.zeros((2, 1)))


def test_why_the_checks_use_the_array_relative_error():
    """A tiny gradient entry with a round-off-sized absolute error: rel_error blows it up, array_rel_error
    judges it against the array's scale (see the module docstring)."""
    exact = np.array([2.0, -1.5, 1e-5])
    numerical = exact + np.array([1e-11, -1e-11, 1e-11])   # the round-off of a central difference
    assert rel_error(exact, numerical) > 1e-7                # would fail a correct backward
    assert array_rel_error(exact, numerical) < 1e-10
    wrong = exact * np.array([1, 1, 1.5])                    # a genuinely wrong small entry still shows
    assert array_rel_error(exact, wrong) == pytest.approx(0.5e-5 / 2, rel=1e-6)


# ----------------------------------------------------------------------------- numerical gradients
@pytest.mark.parametrize("method, tol", [("central", 1e-8), ("five_point", 1e-10)])
def test_numerical_gradient_of_a_known_function(method, tol):
    x = np.random.default_rng(0).standard_normal((3, 4))
    x0 = x.copy()
    g = numerical_gradient(lambda v: np.sum(np.sin(v) * v ** 2), x, method=method)
    np.testing.assert_allclose(g, np.cos(x0) * x0 ** 2 + 2 * x0 * np.sin(x0), atol=tol)
    np.testing.assert_array_equal(x, x0)   # every perturbation undone


def test_numerical_gradient_reads_state_through_a_closure():
    """f may ignore its argument and read the perturbed array itself (a model's parameters)."""
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    v = np.array([1.0, -1.0])
    g = numerical_gradient(lambda _: float(v @ W @ v), W)
    np.testing.assert_allclose(g, np.outer(v, v), atol=1e-9)


def test_numerical_gradient_array():
    x = np.random.default_rng(1).standard_normal(5)
    dout = np.random.default_rng(2).standard_normal(5)
    g = gradcheck.numerical_gradient_array(lambda v: v ** 2, x, dout)
    np.testing.assert_allclose(g, 2 * x * dout, atol=1e-9)


def test_numerical_gradient_refuses_what_it_cannot_check():
    with pytest.raises(vn.ConfigError, match=r"x must be a float64 ndarray .*got float32"):
        numerical_gradient(np.sum, np.zeros(3, dtype=np.float32))
    with pytest.raises(vn.ConfigError, match=r"x must be a float64 ndarray .*got list"):
        numerical_gradient(np.sum, [1.0, 2.0])
    with pytest.raises(vn.ConfigError, match=r"method='forward' is unknown; choose one of central, five_point"):
        numerical_gradient(np.sum, np.zeros(3), method="forward")


# ------------------------------------------------------------------------------ checks that fail
def _dense_inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 5)), rng.standard_normal((5, 3)), rng.standard_normal(3)


@pytest.mark.parametrize("scale, passes", [(1.0, True), (1.01, False), (1 + 1e-6, False)])
def test_check_function_fails_a_wrong_backward(scale, passes):
    x, W, b = _dense_inputs()

    def backward(d):
        dx, dW, db = layers.dense_backward(d, (x, W))
        return {"x": dx, "W": dW * scale, "b": db}

    report = check_function(lambda x, W, b: layers.dense_forward(x, W, b)[0], backward,
                            {"x": x, "W": W, "b": b}, "dense, W scaled")
    assert report.passed is passes
    assert [r.passed for r in report.rows] == [True, passes, True]
    if passes:
        assert report.assert_ok() is report and report.max_error < 1e-9
    else:
        assert report.max_error == pytest.approx((scale - 1) / scale, rel=1e-3)
        assert "FAIL" in str(report) and "dense, W scaled" in str(report)
        with pytest.raises(AssertionError, match=r"gradient check failed: dense, W scaled: W \("):
            report.assert_ok()


def test_check_function_needs_float64():
    with pytest.raises(vn.ConfigError, match=r"x must be a float64 ndarray"):
        check_function(lambda x: x, lambda d: {"x": d}, {"x": np.zeros(3, dtype=np.float32)})


def _tiny_vae(beta, **kw):
    return vn.VAE(6, (5,), 2, beta=beta, dtype="float64", seed=0, **kw)


def _x():
    return np.random.default_rng(1).random((4, 6))


@JIT
def test_check_model_catches_a_backward_that_drops_the_kl(jit, monkeypatch):
    """Monkeypatch the fused kernel so that the KL's gradient is left out: the check must fail when beta > 0
    (in the encoder rows only, which the KL reaches) and pass when beta = 0 (nothing is missing)."""
    with _kernels.use_jit(jit) as K:
        real = K.reparam_kl_backward
        monkeypatch.setattr(K, "reparam_kl_backward",
                            lambda dz, mu, std, eps, kl_scale, dmu, dlv: real(dz, mu, std, eps, kl_scale * 0, dmu, dlv))
        bad = check_model(_tiny_vae(1.0), _x())
        ok = check_model(_tiny_vae(0.0), _x())
    assert not bad.passed and bad.max_error > 1e-3
    failed = {r.name for r in bad.rows if not r.passed}
    assert {"enc_mu.W", "enc_log_var.W"} <= failed
    assert not any(name.startswith("dec") for name in failed)
    with pytest.raises(AssertionError, match="gradient check failed: VAE bernoulli"):
        bad.assert_ok()
    assert ok.passed, str(ok)


def test_check_model_catches_a_gradient_off_by_one_percent(monkeypatch):
    model = _tiny_vae(1.0, likelihood="gaussian")
    real = model._backward

    def scaled():
        real()
        model.grads["dec_out.b"][...] *= 1.01

    monkeypatch.setattr(model, "_backward", scaled)
    report = check_model(model, _x())
    assert [r.name for r in report.rows if not r.passed] == ["dec_out.b"]
    assert report.max_error == pytest.approx(0.01 / 1.01, rel=1e-3)


def test_check_model_options_and_refusals(capsys):
    model = _tiny_vae(1.0)
    report = check_model(model, _x(), names=["enc1.W", "dec_out.b"], verbose=True)
    assert [r.name for r in report.rows] == ["enc1.W", "dec_out.b"] and report.passed
    assert [r.shape for r in report.rows] == [(6, 5), (6,)]
    out = capsys.readouterr().out
    assert "enc1.W" in out and "ok" in out and "VAE bernoulli" in out
    with pytest.raises(vn.ConfigError, match=r"the model is float32; gradient checks need dtype='float64'"):
        check_model(vn.VAE(6, (5,), 2), _x())


def test_report_of_nothing_passes():
    report = gradcheck.Report("empty")
    assert report.passed and report.max_error == 0.0 and report.assert_ok() is report
    row = gradcheck.Row("w", (2,), 1e-7, 1e-7)
    assert not row.passed   # the tolerance itself fails: "pass below tol"
