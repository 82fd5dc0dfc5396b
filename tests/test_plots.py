"""plots.py and the explore/compare commands: grids, headless non-blank PNGs, file names, exit codes."""

import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import vae_numpy as vn  # noqa: E402
from vae_numpy import explore, plots  # noqa: E402
from vae_numpy.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def data():
    images, labels = vn.datasets.load_dataset("mnist-5k", split="test")
    return (images[:300].reshape(300, -1) / 255.0).astype(np.float32), labels[:300]


@pytest.fixture(scope="module")
def models(data):
    out = {"vae": vn.VAE(784, (32,), 4, seed=0), "vae2": vn.VAE(784, (32,), 2, seed=1),
           "ae": vn.Autoencoder(784, (32,), 4, seed=2)}
    for m in out.values():
        vn.train(m, data[0], epochs=2, batch_size=100, seed=0, progress=False)
    return out


def _png_ok(path):
    """The file is a PNG with some contrast (not a blank canvas)."""
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img[..., :3].std() > 0.02, f"{path} looks blank"
    return img


# ----------------------------------------------------------------------------------------------- grids
def test_image_grid_is_one_array():
    images = np.arange(2 * 3 * 784, dtype=float).reshape(2, 3, 784)
    grid = plots.image_grid(images)
    assert grid.shape == (2 * 28, 3 * 28)
    np.testing.assert_array_equal(grid[28:56, 0:28], images[1, 0].reshape(28, 28))
    np.testing.assert_array_equal(grid[0:28, 56:84], images[0, 2].reshape(28, 28))
    flat = plots.image_grid(np.ones((5, 784)), n_cols=3)                 # (N, D): rows of n_cols, blank fill
    assert flat.shape == (56, 84) and flat[28:, 56:].sum() == 0 and flat[28:, :56].min() == 1
    assert plots.image_grid(np.ones((2, 6)), n_cols=2, image_shape=(2, 3), pad=1).shape == (2, 7)
    with pytest.raises(vn.ConfigError, match="image_shape"):
        plots.image_grid(np.ones((2, 10)))


def test_plots_import_chooses_no_backend():
    code = "import sys, vae_numpy.plots; sys.exit('matplotlib.pyplot' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


# --------------------------------------------------------------------------------------------- figures
def _figures(models, data):
    vae, vae2, ae = models["vae"], models["vae2"], models["ae"]
    x, y = data
    trav = explore.traversal(vae, x[0], x_for_kl=x)
    return {
        "reconstructions": lambda: plots.reconstructions_figure(*explore.reconstructions(vae, x[:20])),
        "samples": lambda: plots.samples_figure(explore.prior_samples(vae, 16)),
        "traversal": lambda: plots.traversal_figure(trav),
        "traversal_ae": lambda: plots.traversal_figure(explore.traversal(ae, x[0], x_for_kl=x)),
        "interpolation": lambda: plots.interpolation_figure(explore.interpolations(vae, x[0], x[1], 5)),
        "latent_map_pca": lambda: plots.latent_map_figure(explore.latent_map(vae, x, y)),
        "latent_map": lambda: plots.latent_map_figure(explore.latent_map(vae2, x)),
        "manifold": lambda: plots.manifold_figure(explore.manifold(vae2, n=6)),
        "kl_per_dim": lambda: plots.kl_figure(explore.kl_per_dim(vae, x)),
        "ae_vs_vae": lambda: plots.ae_vs_vae_figure(explore.ae_vs_vae_samples(ae, vae, x, n=8)),
        "beta_sweep": lambda: plots.beta_sweep_figure([1.0, 4.0], [trav, trav]),
        "images": lambda: plots.images_figure(x[:12].reshape(3, 4, 784)),
    }


def test_every_figure_renders_headless_to_a_non_blank_png(models, data, tmp_path):
    for name, make in _figures(models, data).items():
        fig = make()
        assert isinstance(fig, Figure), name
        path = plots.save_figure(fig, tmp_path / "sub" / f"{name}.png")
        _png_ok(path)
    assert sorted(os.listdir(tmp_path / "sub")) == sorted(f"{n}.png" for n in _figures(models, data))  # no temps


def test_save_figure_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "f.png"
    path.write_bytes(b"old")
    fig = plots.samples_figure(np.random.default_rng(0).random((4, 784)))
    monkeypatch.setattr(Figure, "savefig", lambda self, f, **kw: (f.write(b"partial"), 1 / 0))
    with pytest.raises(ZeroDivisionError):
        plots.save_figure(fig, path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f.png"]


def test_model_figures_fit_the_model(models, data):
    x, y = data
    assert set(plots.model_figures(models["vae2"], x, y, what=["manifold"])) == {"manifold"}
    names = set(plots.model_figures(models["ae"], x[:40], y[:40]))
    assert "kl_per_dim" not in names and "manifold" not in names and "traversal" in names
    with pytest.raises(vn.ConfigError, match="manifold"):
        plots.model_figures(models["vae"], x, what=["manifold"])
    with pytest.raises(vn.ConfigError, match="'nope'"):
        plots.model_figures(models["vae"], x, what=["nope"])
    assert set(plots.FIGURES) == set(__import__("vae_numpy.commands.explore", fromlist=["x"]).FIGURES)


# ------------------------------------------------------------------------------------------ commands
def test_explore_command_writes_named_pngs(models, tmp_path, capsys):
    ckpt = vn.save_model(models["vae2"], tmp_path / "model.npz")
    assert main(["explore", str(ckpt), "-n", "200"]) == 0
    out = tmp_path / "explore"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.png" for n in plots.FIGURES)
    for p in out.iterdir():
        _png_ok(p)
    ckpt4 = vn.save_model(models["vae"], tmp_path / "z4.npz")
    assert main(["explore", str(ckpt4), "--out", str(tmp_path / "z4"), "-n", "100", "--what", "traversal",
                 "samples"]) == 0
    assert sorted(p.name for p in (tmp_path / "z4").iterdir()) == ["samples.png", "traversal.png"]
    capsys.readouterr()
    before = (tmp_path / "z4" / "samples.png").read_bytes()
    again = ["explore", str(ckpt4), "--out", str(tmp_path / "z4"), "-n", "100", "--what", "samples", "--seed", "3"]
    assert main(again) == 2                               # figures of the same names are not replaced unasked
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "z4" / "samples.png").read_bytes() == before
    assert main([*again, "--force"]) == 0
    assert (tmp_path / "z4" / "samples.png").read_bytes() != before
    capsys.readouterr()
    assert main(["explore", str(ckpt4), "--what", "manifold"]) == 2
    assert "latent_dim=4" in capsys.readouterr().err
    assert main(["explore", str(tmp_path / "missing.npz")]) == 2


def test_compare_command(models, tmp_path, capsys):
    ae = vn.save_model(models["ae"], tmp_path / "ae.npz")
    vae = vn.save_model(models["vae"], tmp_path / "vae.npz")
    out = tmp_path / "cmp.png"
    assert main(["compare", str(ae), str(vae), "--out", str(out), "-n", "8", "--fit-images", "500"]) == 0
    _png_ok(out)
    capsys.readouterr()
    before = out.read_bytes()
    assert main(["compare", str(ae), str(vae), "--out", str(out), "-n", "4"]) == 2   # exists: not replaced
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["compare", str(vae), str(ae), "--out", str(out), "--force"]) == 2
    assert "AE_CKPT VAE_CKPT" in capsys.readouterr().err


# ------------------------------------------------------------------------------- shown in a notebook
def test_figures_display_as_png_without_pyplot(models, data):
    """IPython's display machinery (what a Jupyter kernel runs on a cell's last value) gives every figure an
    image/png, in a process where no pyplot figure exists; a bare Figure would give only '<Figure size ...>'."""
    formatters = pytest.importorskip("IPython.core.formatters")
    display = formatters.DisplayFormatter()
    bare, _ = display.format(Figure())
    assert "image/png" not in bare and "<Figure size" in bare["text/plain"]      # the bug this guards against
    fig, (ax1, ax2) = plots.subplots(1, 2, figsize=(4, 2))
    ax1.plot([0, 1], [1, 0])
    ax1.set_title("a line")
    shown = {"subplots": fig, "figure": plots.figure(figsize=(2, 2)),
             "loss": __import__("vae_numpy.plots_train", fromlist=["x"]).loss_figure(
                 [{"epoch": 1, "train_loss": 2.0}, {"epoch": 2, "train_loss": 1.0}]),
             **{name: make() for name, make in _figures(models, data).items()}}
    for name, fig in shown.items():
        assert isinstance(fig, plots.ShownFigure), name
        out, _ = display.format(fig)
        assert out["image/png"].startswith(b"\x89PNG\r\n\x1a\n"), name
        assert "<Figure size" not in out["text/plain"] and "vae_numpy figure" in out["text/plain"], name
    assert "'a line'" in repr(shown["subplots"]) and "2 axes" in repr(shown["subplots"])
    code = ("import sys, vae_numpy.plots as p; p.subplots()[0]._repr_png_(); "
            "sys.exit('matplotlib.pyplot' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0   # renders, pyplot untouched
