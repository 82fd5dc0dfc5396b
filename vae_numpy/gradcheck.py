"""Finite-difference gradient checks, as assertions for tests and as tables for students.

Central differences (cs231n):  df/dx_i ~= (f(x + h e_i) - f(x - h e_i)) / (2 h), with a truncation error
O(h^2) and a round-off error of about eps_machine * |f| / h: in float64 with h = 1e-5 about 1e-11 to 1e-10
absolute. (``method="five_point"`` uses (-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / (12h), O(h^4), for
smooth functions; near a ReLU kink a larger h crosses it, so the checks keep the central difference.)

Two relative errors:
- :func:`rel_error` (cs231n), elementwise: max_i |a_i - b_i| / max(|a_i| + |b_i|, 1e-8). Good for small
  arrays of comparable entries; on an entry of 1e-5 the round-off above alone is already ~1e-6.
- :func:`array_rel_error`, the checks' measure: max_i |a_i - b_i| / max_i max(|a_i|, |b_i|), the error
  relative to the gradient array's own scale (the normwise relative error of numerical linear algebra).
  It ignores nothing: every entry's absolute error is compared against 1e-7 of the largest entry.
A correct backward gives ~1e-9 to 1e-10 in float64; the checks pass below ``tol = 1e-7``, fail above.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError

TOL = 1e-7


def rel_error(a, b):
    """max_i |a_i - b_i| / max(|a_i| + |b_i|, 1e-8) over arrays of the same shape (a float)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(f"rel_error needs arrays of one shape; got {a.shape} and {b.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-8)))


STENCILS = {"central": ((1, 0.5), (-1, -0.5)),
            "five_point": ((2, -1 / 12), (1, 8 / 12), (-1, -8 / 12), (-2, 1 / 12))}
CHECK_H = 1e-5   # step of the central differences in the checks


def array_rel_error(a, b):
    """max_i |a_i - b_i| / max_i max(|a_i|, |b_i|) (0 when both are zero): the checks' measure."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ConfigError(f"array_rel_error needs arrays of one shape; got {a.shape} and {b.shape}")
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    return 0.0 if scale == 0 else float(np.abs(a - b).max() / scale)


def numerical_gradient(f, x, h=1e-5, method="central"):
    """df/dx by central differences for a scalar f(x); x (any shape) is perturbed in place and restored.

    f is called as f(x). It may ignore its argument and read x itself (a model whose params include x).
    """
    x = _check_float64(x, "x")
    if method not in STENCILS:
        raise ConfigError(f"method={method!r} is unknown; choose one of {', '.join(STENCILS)}")
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        total = 0.0
        for k, w in STENCILS[method]:
            x[i] = old + k * h
            total += w * float(f(x))
        x[i] = old
        grad[i] = total / h
    return grad


def numerical_gradient_array(f, x, dout, h=1e-5, method="central"):
    """Gradient of sum(f(x) * dout) w.r.t. x, for an array-valued f: the check of a backward(dout)."""
    dout = np.asarray(dout, dtype=np.float64)
    return numerical_gradient(lambda x_: np.sum(np.array(f(x_), dtype=np.float64) * dout), x, h, method)


def _check_float64(x, name):
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise ConfigError(f"{name} must be a float64 ndarray for a gradient check (got "
                          f"{getattr(x, 'dtype', type(x).__name__)}); build models with dtype='float64'")
    return x


@dataclass
class Row:
    name: str
    shape: tuple
    error: float
    tol: float

    @property
    def passed(self):
        return bool(self.error < self.tol)


@dataclass
class Report:
    """A gradient-check table: one row per checked array. ``assert_ok()`` raises when one fails."""
    title: str
    rows: list = field(default_factory=list)

    @property
    def passed(self):
        return all(r.passed for r in self.rows)

    @property
    def max_error(self):
        return max((r.error for r in self.rows), default=0.0)

    def __str__(self):
        lines = [self.title, f"  {'name':<22}{'shape':<14}{'max rel error':>15}  result"]
        for r in self.rows:
            lines.append(f"  {r.name:<22}{str(r.shape):<14}{r.error:>15.2e}  {'ok' if r.passed else 'FAIL'}")
        return "\n".join(lines)

    def assert_ok(self):
        if not self.passed:
            bad = ", ".join(f"{r.name} ({r.error:.2e} >= {r.tol:g})" for r in self.rows if not r.passed)
            raise AssertionError(f"gradient check failed: {self.title}: {bad}")
        return self


def check_function(forward, backward, inputs, title="function", tol=TOL, seed=0, h=CHECK_H, verbose=False):
    """Check backward against finite differences of forward.

    forward(**inputs) -> out (array); backward(dout) -> dict name -> gradient for some of `inputs`
    (float64 arrays). dout is a seeded random array like out. Returns a :class:`Report`.
    """
    for name, arr in inputs.items():
        _check_float64(arr, name)
    out = np.array(forward(**inputs), dtype=np.float64)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    analytic = backward(dout)
    report = Report(title)
    for name, grad in analytic.items():
        num = numerical_gradient_array(lambda _: forward(**inputs), inputs[name], dout, h)
        report.rows.append(Row(name, tuple(np.shape(grad)), array_rel_error(grad, num), tol))
    if verbose:
        print(report)
    return report


def check_model(model, x, eps=None, tol=TOL, h=CHECK_H, seed=0, verbose=False, names=None):
    """Check model.backward() against finite differences of model.forward(x, eps), for every parameter.

    The model must be float64. eps (N, Z) is drawn once from `seed` so that every forward uses the same
    noise. Returns a :class:`Report` with a row per parameter.
    """
    if model.dtype != np.float64:
        raise ConfigError(f"the model is {model.dtype}; gradient checks need dtype='float64'")
    x = np.asarray(x, dtype=np.float64)
    if eps is None:
        eps = np.random.default_rng(seed).standard_normal((x.shape[0], model.latent_dim))
    model.forward(x, eps=eps)
    model.backward()
    analytic = {k: g.copy() for k, g in model.grads.items()}
    report = Report(f"{type(model).__name__} {model.likelihood} hidden={list(model.hidden_dims)} "
                    f"beta={getattr(model, 'beta', 0)} activation={model.activation} sigma={model.decoder_sigma}")
    for name in names or model.params:
        num = numerical_gradient(lambda _: model.forward(x, eps=eps), model.params[name], h)
        report.rows.append(Row(name, model.params[name].shape, array_rel_error(analytic[name], num), tol))
    if verbose:
        print(report)
    return report


# ------------------------------------------------------------------------------- every piece
def _piece_reports(seed):
    """Reports for each layer, activation, the sampler, the KL and each likelihood (float64)."""
    from . import layers, losses, sampling
    rng = np.random.default_rng(seed)
    N, I, O, Z, D = 4, 5, 3, 3, 6
    out = []
    x, W, b = rng.standard_normal((N, I)), rng.standard_normal((I, O)), rng.standard_normal(O)
    out.append(check_function(lambda x, W, b: layers.dense_forward(x, W, b)[0],
                              lambda d: dict(zip("xWb", layers.dense_backward(d, (x, W)), strict=True)),
                              {"x": x, "W": W, "b": b}, "dense: y = x W + b", seed=seed))
    a = rng.standard_normal((N, O)) + np.sign(rng.standard_normal((N, O))) * 0.1  # away from the kink
    for name in layers.ACTIVATIONS:
        out.append(check_function(lambda a, n=name: layers.activation_forward(n, a)[0],
                                  lambda d, n=name: {"a": layers.activation_backward(
                                      n, d, layers.activation_forward(n, a.copy())[1])},
                                  {"a": a}, f"activation: {name}", seed=seed))
    mu, lv, eps = rng.standard_normal((N, Z)), rng.standard_normal((N, Z)), rng.standard_normal((N, Z))
    out.append(check_function(lambda mu, log_var: sampling.reparameterize_forward(mu, log_var, eps)[0],
                              lambda d: dict(zip(("mu", "log_var"), sampling.reparameterize_backward(
                                  d, sampling.reparameterize_forward(mu, lv, eps)[1]), strict=True)),
                              {"mu": mu, "log_var": lv}, "reparameterization: h = mu + sigma * eps", seed=seed))
    out.append(check_function(losses.gaussian_kl,
                              lambda d: dict(zip(("mu", "log_var"), losses.gaussian_kl_backward(d, mu, lv),
                                                 strict=True)),
                              {"mu": mu, "log_var": lv}, "KL(N(mu, sigma^2) || N(0, I))", seed=seed))
    logits, xt = 3 * rng.standard_normal((N, D)), rng.random((N, D))
    out.append(check_function(lambda logits: losses.bernoulli_nll(logits, xt),
                              lambda d: {"logits": losses.bernoulli_nll_backward(d, logits, xt)},
                              {"logits": logits}, "Bernoulli -log p(x | h) on logits", seed=seed))
    mean, lvx = rng.standard_normal((N, D)), 0.5 * rng.standard_normal((N, D))
    out.append(check_function(lambda mean: losses.gaussian_nll(xt, mean, sigma=0.7),
                              lambda d: {"mean": losses.gaussian_nll_backward(d, xt, mean, sigma=0.7)[0]},
                              {"mean": mean}, "Gaussian -log p(x | h), fixed sigma", seed=seed))
    out.append(check_function(lambda mean, log_var_x: losses.gaussian_nll(xt, mean, log_var_x),
                              lambda d: dict(zip(("mean", "log_var_x"),
                                                 losses.gaussian_nll_backward(d, xt, mean, lvx), strict=True)),
                              {"mean": mean, "log_var_x": lvx}, "Gaussian -log p(x | h), learned variance",
                              seed=seed))
    return out


def check_all(seed=0, verbose=True):
    """Check every piece and small float64 models of every kind; returns the list of reports.

    Models: VAE with Bernoulli, Gaussian (fixed and learned variance) decoders, 1 and 3 hidden layers,
    beta = 0, 1, 4, and the Autoencoder.
    """
    from .models import VAE, Autoencoder
    reports = _piece_reports(seed)
    x = np.random.default_rng(seed + 1).random((5, 6))
    configs = [dict(likelihood="bernoulli"), dict(likelihood="gaussian"),
               dict(likelihood="gaussian", decoder_sigma="learned")]
    for cfg in configs:
        for hidden in ((7,), (7, 6, 5)):
            for beta in (0.0, 1.0, 4.0):
                model = VAE(6, hidden, 3, beta=beta, dtype="float64", seed=seed, **cfg)
                reports.append(check_model(model, x, seed=seed))
    for cfg in configs[:2]:
        reports.append(check_model(Autoencoder(6, (7,), 3, dtype="float64", seed=seed, **cfg), x, seed=seed))
    if verbose:
        for r in reports:
            print(r)
    return reports
