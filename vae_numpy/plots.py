"""Figures for slides and notebooks from the arrays of :mod:`vae_numpy.explore`.

Shapes: images (N, D) or (R, C, D) flat, D = 28 * 28 for MNIST; a grid is drawn as **one** array,
(R * 28, C * 28), with a single ``imshow`` (not a subplot per image). Dark digits on white (``gray_r``),
grey levels clipped to [0, 1].

Every ``*_figure`` function returns a :class:`ShownFigure`, a :class:`matplotlib.figure.Figure` built without
pyplot: no backend is chosen at import, nothing is left open in a global figure list, and it renders headless
(Agg). It carries its own ``_repr_png_``, so a Jupyter kernel shows it as an image when it is the last expression
of a cell whatever the backend (a bare Figure shows only the text ``<Figure size ... with N Axes>`` when no pyplot
figure was made first). :func:`subplots` makes one for a figure of your own, as ``plt.subplots`` does.
:func:`save_figure` writes a PNG atomically.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from . import explore
from ._validate import check_int
from .errors import ConfigError

CMAP = "gray_r"
TILE_INCHES = 0.42   # the size of one 28 x 28 image on the figure


# ------------------------------------------------------------------------------------ figures that show
class ShownFigure(Figure):
    """A :class:`matplotlib.figure.Figure` that IPython and Jupyter display as a PNG image.

    ``_repr_png_`` renders the figure with the Agg canvas (headless, no pyplot, nothing registered with a
    backend), so the image appears in any kernel: with the inline backend, with ``MPLBACKEND=Agg``, or before
    pyplot was ever imported. Everything else is a plain Figure (``savefig``, ``add_subplot``, ...).
    """

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=self.dpi)
        return buffer.getvalue()

    def __repr__(self):
        w, h = self.get_size_inches() * self.dpi
        title = self._suptitle.get_text() if self._suptitle is not None else ""
        titles = [t for t in (title, *(ax.get_title() for ax in self.axes)) if t]
        about = f": {titles[0].splitlines()[0]!r}" if titles else ""
        return f"<vae_numpy figure, {w:.0f} x {h:.0f} px, {len(self.axes)} axes{about}>"


def figure(figsize=(6.0, 4.0), layout="constrained", **kwargs):
    """A new empty :class:`ShownFigure` (figsize in inches); add axes with ``fig.add_subplot()``."""
    return ShownFigure(figsize=figsize, layout=layout, **kwargs)


def subplots(nrows=1, ncols=1, figsize=(6.0, 4.0), layout="constrained", **kwargs):
    """``(fig, axes)`` as ``plt.subplots`` gives them, in a :class:`ShownFigure` made without pyplot.

    kwargs go to :meth:`matplotlib.figure.Figure.subplots` (sharex, squeeze, ...). End a notebook cell with
    ``fig`` to show it.
    """
    fig = figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


# ------------------------------------------------------------------------------------------ grids
def _image_shape(D, image_shape=None):
    if image_shape is not None:
        h, w = (int(v) for v in image_shape)
        if h * w != D:
            raise ConfigError(f"image_shape={tuple(image_shape)!r} has {h * w} pixels; the images have D={D}")
        return h, w
    side = int(round(np.sqrt(D)))
    if side * side != D:
        raise ConfigError(f"images of D={D} pixels are not square; pass image_shape=(height, width)")
    return side, side


def image_grid(images, n_cols=None, image_shape=None, pad=0, pad_value=0.0):
    """images: (R, C, D) or (N, D) -> one (R * h + (R - 1) * pad, C * w + (C - 1) * pad) float array.

    (N, D) images fill rows of `n_cols` (default: ceil(sqrt(N))) left to right; a last row that is not full
    is padded with blank (0) tiles. h, w = image_shape, by default sqrt(D) each (28 x 28 for D = 784).
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 2:
        N, D = images.shape
        C = check_int("n_cols", n_cols) if n_cols is not None else int(np.ceil(np.sqrt(N)))
        R = -(-N // C)
        images = np.concatenate([images, np.zeros((R * C - N, D))]).reshape(R, C, D)
    if images.ndim != 3 or images.shape[0] * images.shape[1] == 0:
        raise ConfigError(f"images have shape {images.shape}; expected (N, D) or (rows, cols, D)")
    R, C, D = images.shape
    h, w = _image_shape(D, image_shape)
    pad = check_int("pad", pad, minimum=0)
    grid = np.full((R * (h + pad) - pad, C * (w + pad) - pad), float(pad_value))
    for r in range(R):
        for c in range(C):
            grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[r, c].reshape(h, w)
    return grid


def _draw_grid(ax, images, n_cols=None, row_labels=None, col_labels=None, title=None, image_shape=None):
    """Draw images (R, C, D) or (N, D) on `ax` as one imshow; label rows/columns at the tile centres."""
    images = np.asarray(images)
    grid = image_grid(images, n_cols, image_shape)
    h, w = _image_shape(images.shape[-1], image_shape)
    ax.imshow(np.clip(grid, 0.0, 1.0), cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([] if col_labels is None else np.arange(len(col_labels)) * w + (w - 1) / 2)
    ax.set_yticks([] if row_labels is None else np.arange(len(row_labels)) * h + (h - 1) / 2)
    if col_labels is not None:
        ax.set_xticklabels(col_labels, fontsize=8)
    if row_labels is not None:
        ax.set_yticklabels(row_labels, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    return grid.shape


def _figure(n_rows, n_cols, extra_w=0.0, extra_h=0.45):
    """A constrained-layout Figure sized so that each image tile is about TILE_INCHES wide."""
    return ShownFigure(figsize=(n_cols * TILE_INCHES + extra_w, n_rows * TILE_INCHES + extra_h), layout="constrained")


# --------------------------------------------------------------------------------------- figures
def images_figure(images, n_cols=8, title=None):
    """images: (N, D) or (R, C, D) -> Figure of one grid (e.g. samples from the prior)."""
    images = np.asarray(images)
    R, C = (images.shape[:2] if images.ndim == 3 else
            (-(-len(images) // min(n_cols, len(images))), min(n_cols, len(images))))
    fig = _figure(R, C)
    _draw_grid(fig.add_subplot(), images, n_cols=C, title=title)
    return fig


def samples_figure(samples, n_cols=8, title="Samples from the prior N(0, I)"):
    """samples: (N, D) -> Figure: the decoded prior samples as one grid."""
    return images_figure(samples, n_cols, title)


def reconstructions_figure(x, x_hat, n_cols=10, title="Inputs above their reconstructions"):
    """x, x_hat: (N, D) -> Figure: blocks of n_cols inputs, each row above the row of their reconstructions."""
    x, x_hat = np.asarray(x), np.asarray(x_hat)
    if x.shape != x_hat.shape or x.ndim != 2:
        raise ConfigError(f"x {x.shape} and x_hat {x_hat.shape} must be two (N, D) arrays of one shape")
    C = min(check_int("n_cols", n_cols), len(x))
    B = len(x) // C                                          # full blocks only
    if B == 0:
        raise ConfigError(f"need at least n_cols={n_cols} images")
    pairs = np.stack([x[:B * C].reshape(B, C, -1), x_hat[:B * C].reshape(B, C, -1)], axis=1)
    fig = _figure(2 * B, C, extra_w=0.8)
    _draw_grid(fig.add_subplot(), pairs.reshape(2 * B, C, -1), row_labels=["input", "recon."] * B, title=title)
    return fig


def traversal_figure(trav, title=None):
    """trav: :class:`~vae_numpy.explore.Traversal` (K, S, D) -> Figure: a row per latent, -span..+span."""
    score = "KL" if trav.kind == "vae" else "std"
    rows = [f"h{d}  {score} {trav.scores[d]:.2f}" for d in trav.dims]
    cols = [f"{v:+.1f}" for v in trav.values]
    fig = _figure(len(trav.dims), len(trav.values), extra_w=1.2, extra_h=0.7)
    ax = fig.add_subplot()
    _draw_grid(ax, trav.images, row_labels=rows, col_labels=cols,
               title=title or "Latent traversal\n(one latent varied per row, the others fixed)")
    ax.set_xlabel("value of the varied latent, in prior standard deviations" if trav.kind == "vae" else
                  "code mean + t x code std, t =", fontsize=8)
    return fig


def interpolation_figure(interps, title="Interpolation between two images"):
    """interps: dict kind -> (S, D), as from :func:`~vae_numpy.explore.interpolations` -> Figure, a row per kind."""
    names = {"pixel": "pixels", "linear": "latent, linear", "slerp": "latent, slerp"}
    kinds = list(interps)
    S = len(interps[kinds[0]])
    fig = _figure(len(kinds), S, extra_w=1.2, extra_h=0.7)
    ax = fig.add_subplot()
    _draw_grid(ax, np.stack([interps[k] for k in kinds]), row_labels=[names.get(k, k) for k in kinds],
               col_labels=[f"{t:.2g}" for t in np.linspace(0, 1, S)], title=title)
    ax.set_xlabel("t (0: first image, 1: second)", fontsize=8)
    return fig


def latent_map_figure(lmap, title=None, class_names=None):
    """lmap: :class:`~vae_numpy.explore.LatentMap` -> Figure: the codes in 2-D, coloured by label."""
    fig = ShownFigure(figsize=(5.6, 4.6), layout="constrained")
    ax = fig.add_subplot()
    xy = lmap.coords
    if lmap.labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=4, alpha=0.6, color="tab:blue", linewidths=0)
    else:
        from matplotlib import colormaps
        classes = np.unique(lmap.labels)
        cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
        for i, c in enumerate(classes):
            sel = lmap.labels == c
            name = class_names[c] if class_names is not None else str(c)
            ax.scatter(xy[sel, 0], xy[sel, 1], s=5, alpha=0.7, color=cmap(i % cmap.N), label=name, linewidths=0)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, markerscale=3, frameon=False)
    if lmap.method == "pca":
        ax.set_xlabel(f"PC 1 of the mean codes ({100 * lmap.explained[0]:.0f}% of variance)")
        ax.set_ylabel(f"PC 2 ({100 * lmap.explained[1]:.0f}%)")
    else:
        ax.set_xlabel("h0")
        ax.set_ylabel("h1")
    ax.set_title(title or "Latent map: mean codes, coloured by label", fontsize=10)
    return fig


def manifold_figure(mf, title="Decoded manifold over the prior's quantiles"):
    """mf: :class:`~vae_numpy.explore.Manifold` (n, n, D) -> Figure: h0 grows to the right, h1 upwards."""
    n = len(mf.values)
    step = max(1, n // 8)
    fig = ShownFigure(figsize=(n * 0.34 + 0.7, n * 0.34 + 0.8), layout="constrained")
    ax = fig.add_subplot()
    h, w = _image_shape(mf.images.shape[-1])
    _draw_grid(ax, mf.images, title=title)
    ticks = np.arange(0, n, step)
    label = lambda v: f"{v:.2f}" if abs(v) >= 5e-3 else "0"  # noqa: E731  (Phi^-1(0.5) is -1e-16)
    ax.set_xticks(ticks * w + (w - 1) / 2, [label(mf.values[j]) for j in ticks], fontsize=7)
    ax.set_yticks(ticks * h + (h - 1) / 2, [label(mf.values[n - 1 - i]) for i in ticks], fontsize=7)
    ax.set_xlabel(f"h0 (quantiles {mf.quantiles[0]:.2g} to {mf.quantiles[-1]:.2g} of N(0, 1))", fontsize=8)
    ax.set_ylabel("h1", fontsize=8)
    return fig


def _kl_bars(ax, kl, title=None):
    order = np.argsort(-kl, kind="stable")
    ax.bar(np.arange(len(kl)), kl[order], color="tab:blue")
    ax.set_xticks(np.arange(len(kl)), [str(d) for d in order], fontsize=7 if len(kl) <= 32 else 5)
    ax.set_xlabel("latent dimension (sorted by KL)", fontsize=8)
    ax.set_ylabel("KL (nats)", fontsize=8)
    ax.set_title(title or f"KL per latent dimension (total {kl.sum():.1f} nats)", fontsize=10)


def kl_figure(kl, title=None):
    """kl: (Z,) from :func:`~vae_numpy.explore.kl_per_dim` -> Figure: a bar per dimension, largest first."""
    kl = np.asarray(kl, dtype=np.float64)
    fig = ShownFigure(figsize=(max(4.0, 0.22 * len(kl) + 1.5), 3.0), layout="constrained")
    _kl_bars(fig.add_subplot(), kl, title)
    return fig


def ae_vs_vae_figure(samples, n_cols=8, title=None):
    """samples: dict from :func:`~vae_numpy.explore.ae_vs_vae_samples` -> Figure: three grids side by side."""
    panels = [("ae_prior", "Autoencoder: decode N(0, I)"), ("ae_fitted", "Autoencoder: decode N(m, C)\nfitted "
              "to its training codes"), ("vae_prior", "VAE: decode N(0, I)")]
    n = len(samples["vae_prior"])
    C = min(n_cols, n)
    R = -(-n // C)
    fig = ShownFigure(figsize=(3 * (C * TILE_INCHES + 0.2), R * TILE_INCHES + 1.0), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, (key, name) in zip(axes, panels, strict=True):
        _draw_grid(ax, samples[key], n_cols=C, title=name)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def beta_sweep_figure(betas, traversals, title="beta-VAE: traversals and KL per dimension"):
    """betas: (B,), traversals: B :class:`~vae_numpy.explore.Traversal` of one size -> Figure, a column per beta.

    Top: each model's traversal (rows ordered by KL); bottom: its KL per dimension.
    """
    if len(betas) != len(traversals) or not betas:
        raise ConfigError(f"give one traversal per beta; got {len(betas)} betas and {len(traversals)} traversals")
    K, S = traversals[0].images.shape[:2]
    fig = ShownFigure(figsize=(len(betas) * (S * TILE_INCHES + 1.0), K * TILE_INCHES + 3.2), layout="constrained")
    axes = fig.subplots(2, len(betas), squeeze=False, height_ratios=[K * TILE_INCHES, 2.0])
    top = max(float(np.max(tr.scores)) for tr in traversals) * 1.05
    for j, (beta, tr) in enumerate(zip(betas, traversals, strict=True)):
        _draw_grid(axes[0, j], tr.images, row_labels=[f"h{d}  KL {tr.scores[d]:.1f}" for d in tr.dims],
                   col_labels=[f"{v:+.0f}" for v in tr.values], title=f"beta = {beta:g}")
        _kl_bars(axes[1, j], np.asarray(tr.scores), title=f"KL per dimension (total {np.sum(tr.scores):.1f})")
        axes[1, j].set_ylim(0, top)              # one scale for every beta, so the bars compare
    fig.suptitle(title, fontsize=11)
    return fig


# ---------------------------------------------------------------------------------- one model, all
FIGURES = ("reconstructions", "samples", "traversal", "interpolation", "latent_map", "manifold", "kl_per_dim")


def model_figures(model, x, labels=None, what=None, n=32, seed=0):
    """Every figure that fits `model`: x: (N, D) data (N >= 2), labels: (N,) -> dict name -> Figure.

    what: names from FIGURES (default all that fit: "manifold" needs latent_dim=2, "kl_per_dim" a VAE).
    Asking for one that does not fit raises ConfigError. The traversal uses x[0] as reference and all of x
    for the KL; the interpolation goes from x[0] to the first image with another label (else x[1]).
    """
    fits = {"manifold": model.latent_dim == 2, "kl_per_dim": model.kind == "vae", "latent_map": model.latent_dim >= 2}
    names = [f for f in FIGURES if fits.get(f, True)] if what is None else list(what)
    for name in names:
        if name not in FIGURES:
            raise ConfigError(f"figure {name!r} is unknown; choose from {', '.join(FIGURES)}")
        if not fits.get(name, True):
            raise ConfigError(f"figure {name!r} does not fit this model ({model.kind}, latent_dim="
                              f"{model.latent_dim}): manifold needs latent_dim=2, kl_per_dim a VAE")
    x, labels = np.asarray(x), None if labels is None else np.asarray(labels)
    if len(x) < 2:
        raise ConfigError(f"x has {len(x)} rows; the figures need at least 2 images")
    other = 1 if labels is None or not np.any(labels != labels[0]) else int(np.argmax(labels != labels[0]))
    make = {
        "reconstructions": lambda: reconstructions_figure(*explore.reconstructions(model, x[:min(n, len(x))]),
                                                          n_cols=min(10, len(x))),
        "samples": lambda: samples_figure(explore.prior_samples(model, n, seed=seed)),
        "traversal": lambda: traversal_figure(explore.traversal(model, x[0], dims=min(10, model.latent_dim),
                                                                x_for_kl=x)),
        "interpolation": lambda: interpolation_figure(explore.interpolations(model, x[0], x[other])),
        "latent_map": lambda: latent_map_figure(explore.latent_map(model, x, labels)),
        "manifold": lambda: manifold_figure(explore.manifold(model)),
        "kl_per_dim": lambda: kl_figure(explore.kl_per_dim(model, x)),
    }
    return {name: make[name]() for name in names}


def save_figure(fig, path, dpi=100):
    """Write `fig` as a PNG at `path` atomically (a temporary file, then os.replace) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
        os.chmod(tmp, 0o666 & ~_umask())              # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        if "matplotlib.pyplot" in sys.modules:      # a pyplot figure stays open until closed
            sys.modules["matplotlib.pyplot"].close(fig)
    return path


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
