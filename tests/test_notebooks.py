"""The tutorial notebooks: each runs top to bottom in fast mode, and the committed files are what
tools/make_notebooks.py writes (outputs stripped).

Each notebook runs in its own Jupyter kernel (nbclient, as nbmake does) with VAE_NUMPY_FAST=1 and MPLBACKEND=Agg,
and every cell that draws a figure (``vn.plots.*_figure``, ``vn.plots.subplots``) must show it as an image/png
output: with Agg no inline backend helps, so only the figures' own ``_repr_png_`` can (and no output may read
``<Figure size ...>``). The BLAS libraries get one thread unless the environment says otherwise: the fast-mode
matrices are small, and on a shared machine an oversubscribed OpenBLAS thread pool runs a (100, 784) x (784, 256)
product 50 times slower than one thread. A failing cell fails the test with the cell's source and traceback.
``VAE_NUMPY_FAST=1 pytest --nbmake tutorials`` runs the same notebooks through nbmake (tutorials/README.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 300        # seconds; a fast-mode notebook takes well under 20 s in all
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
FIGURE_CALL = re.compile(r"\bvn\.plots\.(\w+_figure|subplots|figure)\(")   # a cell that draws a figure


def test_the_eight_notebooks_are_there():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == ["01", "02", "03", "04", "05", "06", "07", "08"], [p.name for p in NOTEBOOKS]


def test_notebooks_match_their_generator():
    """The committed notebooks are tools/make_notebooks.py's output: same cells, no outputs."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), "--check"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_complete(path):
    """Outputs stripped; an introduction with equations, the package's code, and exercises."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit notebooks without outputs"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and re.match(rf"# {path.name[:2]} · ", first.source)
    assert "$$" in first.source, "the introduction shows the equations"
    assert any("import vae_numpy as vn" in c.source for c in code)
    assert any(c.cell_type == "markdown" and re.search(r"^## Exercises", c.source, re.M) for c in nb.cells)
    assert not any(re.search(r"^\s*(def|class) ", c.source, re.M) for c in code
                   if "nbgrader" not in c.metadata), "helpers belong in the package (vae_numpy/tutorial.py)"
    assert nb.metadata.kernelspec.name == "python3"
    assert not any(re.search(r"\bplt\.|matplotlib\.pyplot", c.source) for c in code), \
        "draw with vn.plots (figures that show in any kernel), not pyplot"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_fast_mode(path, monkeypatch):
    monkeypatch.setenv("VAE_NUMPY_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel imports this checkout's vae_numpy, whatever copy is installed
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    for var in THREAD_VARS:
        if var not in os.environ:
            monkeypatch.setenv(var, "1")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(TUTORIALS)}})
    start = time.perf_counter()
    client.execute()              # raises CellExecutionError (with the cell and its traceback) on an error
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s in fast mode")
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors
    # every figure reaches the student as an image, with MPLBACKEND=Agg (no inline backend to help)
    figure_cells = [c for c in code if FIGURE_CALL.search(c.source)]
    assert figure_cells, "each notebook shows at least one figure"
    for cell in figure_cells:
        images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert len(images) == 1, f"this cell shows {len(images)} images, not one:\n{cell.source}"
    for cell in code:
        text = json.dumps(cell.outputs)
        assert "<Figure size" not in text, f"a figure shown as text, not as an image:\n{cell.source}"


# ------------------------------------------------------------------ what the notebooks import
def test_fast_mode_and_pick(monkeypatch):
    from vae_numpy import tutorial
    for value, fast in (("1", True), ("yes", True), ("On", True), ("0", False), ("", False)):
        monkeypatch.setenv("VAE_NUMPY_FAST", value)
        assert tutorial.fast_mode() is fast
        assert tutorial.pick(fast="small", full="big") == ("small" if fast else "big")


def test_linear_gaussian_is_exact():
    """ELBO + KL(q || posterior) = log p(x); the ELBO's gradient and its Monte Carlo estimate agree."""
    import numpy as np

    from vae_numpy import gradcheck, tutorial
    model = tutorial.LinearGaussian.random(data_dim=4, latent_dim=3, noise_std=0.7, seed=1)
    x, _ = model.sample(5, seed=2)
    rng = np.random.default_rng(3)
    mu, log_var = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert np.allclose(model.elbo(x, mu, log_var) + model.kl_to_posterior(x, mu, log_var), model.log_px(x),
                       rtol=0, atol=1e-10)
    dmu, dlog_var = model.elbo_grad(x, mu, log_var)
    assert gradcheck.array_rel_error(dmu, gradcheck.numerical_gradient(
        lambda m: model.elbo(x, m, log_var).sum(), mu)) < 1e-7
    assert gradcheck.array_rel_error(dlog_var, gradcheck.numerical_gradient(
        lambda v: model.elbo(x, mu, v).sum(), log_var)) < 1e-7
    assert np.abs(model.elbo_mc(x, mu, log_var, n_samples=50_000) - model.elbo(x, mu, log_var)).max() < 0.5
    m, cov = model.posterior(x)            # the exact posterior's density at its mean
    peak = -0.5 * (3 * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1])
    assert np.allclose(model.log_posterior(x, m[:, None, :])[:, 0], peak, atol=1e-10)
    assert np.allclose(tutorial.log_q(m[:, None, :], m, np.log(np.diag(cov)) * np.ones((5, 1)))[:, 0],
                       -0.5 * (3 * np.log(2 * np.pi) + np.log(np.diag(cov)).sum()))


def test_time_epoch_times_every_phase():
    import vae_numpy as vn
    from vae_numpy import tutorial
    model = vn.VAE(input_dim=12, hidden_dims=(8,), latent_dim=3, seed=0)
    x = vn.datasets.to_unit(vn.datasets.flatten(vn.datasets.load_dataset("mnist-5k")[0][:50, :3, :4]))
    result = tutorial.time_epoch(model, x, batch_size=16)
    assert result["n_batches"] == 4 and result["loss"] > 0
    assert sum(result[k] for k in ("batch", "forward", "backward", "step")) <= result["total"]
    assert tutorial.matmul_floor(model, 50, batch_size=16) > 0
