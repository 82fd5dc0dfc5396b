"""The graded exercises cannot be delegated: for each, the solution passes, the student's stub fails, and an
answer that calls the library's own version fails with "write this yourself".

The graded test cells are run in this process (no kernel, no notebook execution, seconds): the notebook's import
cell and the solutions of the earlier exercises, then the answer under test in place of the solution cell, then
the instructor's test cell, hidden tests included. A graded test cell therefore depends on nothing else that the
notebook computes (no data, no trained model), which keeps the grader's cell-by-cell runs fast too.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
from pathlib import Path

import pytest

import vae_numpy as vn
from vae_numpy import exercises

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
NOTEBOOK_MODULES = ("nb01", "nb02", "nb03", "nb04", "nb05", "nb06", "nb07", "nb08")

# Answers a student could hand in by calling the library: each must fail its graded test cell.
DELEGATING = {
    "nb01-elbo-grad": ['''
def elbo_estimate_and_grad(model, x, mu, log_var, eps):
    h = mu[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps
    value = model.log_px_given_h(x, h).mean(axis=1) - vn.losses.gaussian_kl(mu, log_var)
    return (value, *model.elbo_grad(x, mu, log_var))
''', '''
def elbo_estimate_and_grad(model, x, mu, log_var, eps):
    f = lambda m, v: (model.log_px_given_h(x, m[:, None, :] + np.exp(0.5 * v)[:, None, :] * eps).mean(axis=1)
                      - vn.losses.gaussian_kl(m, v)).sum()
    dmu = vn.gradcheck.numerical_gradient(lambda m: f(m, log_var), mu.copy())
    dlv = vn.gradcheck.numerical_gradient(lambda v: f(mu, v), log_var.copy())
    h = mu[:, None, :] + np.exp(0.5 * log_var)[:, None, :] * eps
    return model.log_px_given_h(x, h).mean(axis=1) - vn.losses.gaussian_kl(mu, log_var), dmu, dlv
'''],
    "nb02-dense-backward": ['''
def dense_backward(dout, cache):
    return vn.layers.dense_backward(dout, cache)
''', '''
from vae_numpy.layers import dense_backward as _library_dense_backward
def dense_backward(dout, cache):
    return _library_dense_backward(dout, cache)
''', '''
def dense_backward(dout, cache):
    x, W = cache
    layer = vn.layers.Dense(W.shape[0], W.shape[1], dtype="float64")
    layer.params["W"][...] = W
    layer.forward(x)
    return (layer.backward(dout), layer.grads["W"], layer.grads["b"])
''', '''
_layers = {}
def dense_backward(dout, cache):
    x, W = cache
    layer = vn.nn.materialize(vn.nn.Dense(W.shape[1]), (x.shape[1],)) if W.shape not in _layers else _layers[W.shape]
    _layers[W.shape] = layer
    layer.params["W"][...] = W
    layer.forward(x)
    return layer.backward(dout), layer.grads["W"].copy(), layer.grads["b"].copy()
'''],
    "nb02-ae-backprop": ['''
def ae_forward(params, x):
    ae = vn.Autoencoder(input_dim=x.shape[1], hidden_dims=(params["enc1.W"].shape[1],),
                        latent_dim=params["enc_z.W"].shape[1], dtype="float64")
    for k, v in params.items():
        ae.params[k][...] = v
    return ae.forward(x), ae
def ae_backward(ae):
    ae.backward()
    return {k: v.copy() for k, v in ae.grads.items()}
''', '''
def ae_forward(params, x):
    return _model.forward(x), None
def ae_backward(cache):
    _model.backward()
    return dict(_model.grads)
_model = vn.Autoencoder(input_dim=12, hidden_dims=(8,), latent_dim=3, dtype="float64", seed=0)
'''],
    "nb03-reparam-backward": ['''
def reparameterize_backward(dh, cache):
    return vn.sampling.reparameterize_backward(dh, cache)
''', '''
from vae_numpy import _kernels
def reparameterize_backward(dh, cache):
    eps, sigma = cache
    dmu, dlv = np.empty_like(dh), np.empty_like(dh)
    _kernels.K.reparam_kl_backward(dh, np.zeros_like(dh), sigma, eps, 0.0, dmu, dlv)
    return dmu, dlv
'''],
    "nb03-kl": ['''
def kl_divergence(mu, log_var):
    return vn.losses.gaussian_kl(mu, log_var)
def kl_backward(dkl, mu, log_var):
    return vn.losses.gaussian_kl_backward(dkl, mu, log_var)
'''],
    "nb03-vae-backprop": ['''
def vae_forward(params, x, eps):
    vae = vn.VAE(input_dim=x.shape[1], hidden_dims=(params["enc1.W"].shape[1],),
                 latent_dim=eps.shape[1], dtype="float64")
    for k, v in params.items():
        vae.params[k][...] = v
    return vae.forward(x, eps=eps), vae
def vae_backward(vae):
    vae.backward()
    return {k: v.copy() for k, v in vae.grads.items()}
'''],
    "nb04-decoder-grad": ['''
def code_objective_and_grad(params, h, x):
    vae = vn.VAE(input_dim=x.shape[1], hidden_dims=(params["dec1.W"].shape[1],), latent_dim=h.shape[1],
                 dtype="float64")
    for k, v in params.items():
        vae.params[k][...] = v
    return vae._code_objective(h, x)
''', '''
def code_objective_and_grad(params, h, x):
    def f(hh):
        a = np.maximum(hh @ params["dec1.W"] + params["dec1.b"], 0) @ params["dec_out.W"] + params["dec_out.b"]
        return float(np.sum(vn.losses.bernoulli_nll(a, x)) + 0.5 * np.sum(hh ** 2))
    return f(h), vn.gradcheck.numerical_gradient(f, h.copy())
'''],
    "nb05-free-bits": ['''
def free_bits_kl(mu, log_var, lam):
    per_dim = np.stack([vn.losses.gaussian_kl(mu[:, [j]], log_var[:, [j]]) for j in range(mu.shape[1])], 1)
    kl_j = per_dim.mean(axis=0)
    dmu, dlv = vn.losses.gaussian_kl_backward(np.full(len(mu), 1 / len(mu)), mu, log_var)
    keep = kl_j > lam
    return float(np.maximum(kl_j, lam).sum()), dmu * keep, dlv * keep
'''],
    "nb06-adam": ['''
def adam_step(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    from vae_numpy import _kernels
    dt = p.dtype.type
    _kernels.K.adam_update(p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1), dt(lr), dt(b1), dt(b2),
                           dt(1 / (1 - b1 ** t)), dt(1 / (1 - b2 ** t)), dt(eps))
''', '''
from vae_numpy._kernels import adam_update_np as _adam
def adam_step(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    _adam(p, g, m, v, lr, b1, b2, 1 / (1 - b1 ** t), 1 / (1 - b2 ** t), eps)
''', '''
_opts = {}
def adam_step(p, g, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    if id(p) not in _opts or t == 1:
        _opts[id(p)] = vn.Adam({"p": p}, lr=lr, betas=(b1, b2), eps=eps)
    _opts[id(p)].step({"p": g})
    m[...], v[...] = _opts[id(p)].m["p"], _opts[id(p)].v["p"]
'''],
    "nb07-conv-backward": ['''
def conv_backward(dy, cache):
    x, W, stride, pad, cols = cache
    layer = vn.nn.materialize(vn.nn.Conv2d(W.shape[3], W.shape[:2], stride=stride, padding=pad), x.shape[1:])
    layer.params["W"][...], layer.params["b"][...] = W, 0.0
    layer.forward(x)
    return layer.backward(dy).copy(), layer.grads["W"].copy(), layer.grads["b"].copy()
''', '''
from vae_numpy._conv_kernels import col2im_np as _col2im
def conv_backward(dy, cache):
    x, W, stride, pad, cols = cache
    N, Ho, Wo, O = dy.shape
    dy2 = dy.reshape(-1, O)
    dcols = (dy2 @ W.reshape(-1, O).T).reshape(cols.shape)
    dx = _col2im(dcols, stride, pad, pad, np.empty_like(x))
    return dx, (cols.reshape(len(dy2), -1).T @ dy2).reshape(W.shape), dy2.sum(axis=0)
''', '''
from vae_numpy import _conv_kernels
def conv_backward(dy, cache, _k=_conv_kernels.K.col2im):
    x, W, stride, pad, cols = cache
    N, Ho, Wo, O = dy.shape
    dy2 = dy.reshape(-1, O)
    dcols = (dy2 @ W.reshape(-1, O).T).reshape(cols.shape)
    dx = _k(dcols, stride, pad, pad, np.empty_like(x))
    return dx, (cols.reshape(len(dy2), -1).T @ dy2).reshape(W.shape), dy2.sum(axis=0)
''', '''
def conv_backward(dy, cache):
    x, W, stride, pad, cols = cache
    layer = vn.nn.materialize(vn.nn.ConvTranspose2d(W.shape[2], W.shape[:2], stride=stride), dy.shape[1:])
    layer.params["W"][...], layer.params["b"][...] = W, 0.0
    full = layer.forward(dy)                            # the padded image's gradient, up to the last window
    dxp = np.zeros((len(x), x.shape[1] + 2 * pad, x.shape[2] + 2 * pad, x.shape[3]))
    dxp[:, :full.shape[1], :full.shape[2]] = full
    dx = dxp[:, pad:pad + x.shape[1], pad:pad + x.shape[2]]
    dy2 = dy.reshape(-1, W.shape[3])
    return dx, (cols.reshape(len(dy2), -1).T @ dy2).reshape(W.shape), dy2.sum(axis=0)
'''],
    "nb07-gru-backward": ['''
def gru_step_backward(dh, cache):
    return recurrent_steps.gru_step_backward(dh, cache)
''', '''
def gru_step_backward(dh, cache):
    x, h_prev, r, z, n, gh_n, params = cache
    dx, dh0, dp = recurrent_steps.sequence_backward(dh[:, None, :], ("gru", [cache]))
    return dx[:, 0], dh0, dp
''', '''
from vae_numpy.nn.recurrent_steps import gru_step_backward as _library
def gru_step_backward(dh, cache):
    return _library(dh, cache)
'''],
    "nb08-iwae-bound": ['''
def iwae_from_log_weights(log_w):
    return -vn.iwae.log_mean_exp(log_w), -vn.iwae.normalized_weights(log_w)
''', '''
from vae_numpy.iwae import iwae_bound as _library
def iwae_from_log_weights(log_w):
    loss, w = _library(-log_w, np.zeros_like(log_w))
    return loss, -w
''', '''
def iwae_from_log_weights(log_w):
    m = log_w.max(axis=1, keepdims=True)
    loss = -(m[:, 0] + np.log(np.exp(log_w - m).mean(axis=1)))
    grad = vn.gradcheck.numerical_gradient(lambda v: -np.log(np.exp(v - m).mean(axis=1)).sum(), log_w.copy())
    return loss, grad
'''],
}


# the conv exercise's cell gives conv_forward above the function to write: a delegating answer keeps it
_GIVEN = next(src for _, src, meta in importlib.import_module("notebooks.nb07").CELLS
              if (meta or {}).get("nbgrader", {}).get("grade_id") == "nb07-conv-backward").split("\n\n\ndef conv_b")[0]
DELEGATING["nb07-conv-backward"] = [_GIVEN + "\n" + answer for answer in DELEGATING["nb07-conv-backward"]]


def _cells(module):
    return importlib.import_module(f"notebooks.{module}").CELLS


def _graded_pairs():
    """(module, solution grade_id) for every graded test cell with a solution cell of the same id."""
    pairs = []
    for module in NOTEBOOK_MODULES:
        ids = {meta["nbgrader"]["grade_id"]: kind for kind, _, meta in _cells(module)
               if meta and "nbgrader" in meta}
        pairs += [(module, g) for g in ids if f"{g}-tests" in ids]
    return pairs


PAIRS = _graded_pairs()


def _parts(module, grade_id):
    """(the code that runs before the answer, the solution cell, the test cell): the import cell and the solution
    cells of the earlier exercises (a later exercise may call an earlier one's function, as the AE's backward
    calls the student's dense_backward)."""
    cells = _cells(module)
    by_id = {meta["nbgrader"]["grade_id"]: src for _, src, meta in cells if meta and "nbgrader" in meta}
    before = [next(src for kind, src, meta in cells if kind == "code")]
    for kind, src, meta in cells:
        gid = (meta or {}).get("nbgrader", {}).get("grade_id")
        if gid == grade_id:
            break
        if kind == "code" and (meta or {}).get("nbgrader", {}).get("solution"):
            before.append(src)
    return "\n\n".join(before), by_id[grade_id], by_id[f"{grade_id}-tests"]


def _stub(source):
    """The student's version of a solution cell, as `vae-numpy assignments` writes it."""
    import nbformat

    from vae_numpy.assignments import make_student_version
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": False, "grade_id": "x", "locked": False, "schema_version": 3,
                                 "solution": True, "task": False}
    nb.cells.append(cell)
    return make_student_version(nb).cells[0].source


def _run(module, before, answer, tests):
    namespace = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        for source in (before, answer, tests):
            exec(compile(source, f"<{module}>", "exec"), namespace)  # noqa: S102


def test_every_notebook_has_a_graded_exercise_with_a_delegation_case():
    assert {m for m, _ in PAIRS} == set(NOTEBOOK_MODULES)
    assert {g for _, g in PAIRS} - {"nb01-optimal-q"} == set(DELEGATING), "a delegating answer for each"


@pytest.mark.parametrize(("module", "grade_id"), PAIRS, ids=[g for _, g in PAIRS])
def test_solution_passes_stub_and_delegation_fail(module, grade_id, monkeypatch):
    monkeypatch.setenv("VAE_NUMPY_FAST", "1")
    before, solution, tests = _parts(module, grade_id)
    assert "exercises.graded(" in tests or "exercises.own_work(" in tests or grade_id == "nb01-optimal-q"
    _run(module, before, solution, tests)                                   # the solution passes, hidden tests too
    with pytest.raises(NotImplementedError):
        _run(module, before, _stub(solution), tests)
    for answer in DELEGATING.get(grade_id, []):
        with pytest.raises(exercises.NotYourOwnWork, match="write this yourself"):
            _run(module, before, answer, tests)
    assert not exercises._ACTIVE                                    # every block closed, everything restored


# ------------------------------------------------------------------------------------- own_work itself
def test_own_work_refuses_every_alias_and_restores_everything():
    import numpy as np

    from vae_numpy import _kernels, layers
    from vae_numpy.layers import dense_backward as alias
    kernel = _kernels.K.adam_update                       # a Numba dispatcher (or the NumPy twin), held by us
    answer = lambda p, g, m, v, *s, _k=kernel: _k(p, g, m, v, *s)      # noqa: E731  (held in a default)
    held = exercises.graded(answer, "kernels.adam_update")
    x, W, dout = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    args = [np.ones(3) for _ in range(4)] + [np.float64(0.1)] * 6
    calls = {"vn.layers": lambda: vn.layers.dense_backward(dout, (x, W)), "alias": lambda: alias(dout, (x, W)),
             "model": lambda: vn.VAE(4, (3,), 2),
             "Adam": lambda: vn.Adam({"w": np.ones(3)}).step({"w": np.ones(3)}),
             "held kernel": lambda: held(*args), "numpy twin": lambda: _kernels.NUMPY.adam_update(*args),
             "finite differences": lambda: vn.gradcheck.numerical_gradient(lambda v: float(v.sum()), np.ones(2))}
    with exercises.own_work("layers.dense_backward", *exercises.MODELS, "kernels.adam_update",
                            *exercises.FINITE_DIFFERENCES) as block:
        for name, call in calls.items():
            with pytest.raises(exercises.NotYourOwnWork, match="write this yourself"):
                call()
            assert block.refused, name
        block.refused.clear()
        assert layers.dense_forward(x, W, np.zeros(4))[0].shape == (2, 4)     # what is not named still works
    assert alias(dout, (x, W))[1].sum() == 24 and kernel is _kernels.K.adam_update
    assert answer.__kwdefaults__["_k"] is kernel                        # the default argument is back
    assert vn.VAE(4, (3,), 2).n_params > 0 and not exercises._ACTIVE


def test_own_work_fails_a_caught_refusal_and_restores_after_an_error():
    import numpy as np
    x, W, dout = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    with pytest.raises(exercises.NotYourOwnWork, match="caught"):
        with exercises.own_work("layers.dense_backward"):
            try:
                vn.layers.dense_backward(dout, (x, W))
            except Exception:
                pass
    with pytest.raises(ZeroDivisionError):
        with exercises.own_work("layers.dense_backward"):
            raise ZeroDivisionError
    assert vn.layers.dense_backward(dout, (x, W))[1].sum() == 24
    graded = exercises.graded(lambda: vn.layers.dense_backward(dout, (x, W)), "layers.dense_backward")
    with pytest.raises(exercises.NotYourOwnWork):
        graded()
    assert vn.layers.dense_backward(dout, (x, W))[1].sum() == 24


def test_own_work_names_what_exists():
    with pytest.raises(vn.ConfigError, match="no 'nope'"):
        exercises.own_work("layers.nope")
    with pytest.raises(vn.ConfigError, match="no kernel"):
        exercises.own_work("kernels.nope")
    with pytest.raises(vn.ConfigError, match="module"):
        exercises.own_work("layers")
    for name in (*exercises.FINITE_DIFFERENCES, *exercises.MODELS, *exercises.DENSE_BACKWARD):
        exercises.own_work(name)                              # every name in the shared lists resolves


def test_print_epoch_says_kl_only_for_a_vae(capsys):
    from vae_numpy import tutorial
    record = {"epoch": 1, "train_loss": 100.0, "reconstruction": 90.0, "kl": 10.0, "val_loss": 99.0, "seconds": 1.0}
    tutorial.print_epoch(vn.VAE(4, (3,), 2), [record])
    tutorial.print_epoch(vn.Autoencoder(4, (3,), 2), [{**record, "kl": 0.0, "reconstruction": 100.0}])
    vae_line, ae_line = capsys.readouterr().out.splitlines()
    assert "KL  10.00" in vae_line and "test" in vae_line
    assert "KL" not in ae_line and "train   100.00" in ae_line
