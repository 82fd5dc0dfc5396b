"""The figures of a training run: loss curves, test reconstructions, samples from the prior.

Shapes: x_test: (N, D) floats in [0, 1] or uint8 images (N, 28, 28) / (N, D). The image grids come from
:mod:`vae_numpy.plots` (one ``imshow`` per grid, built without pyplot); this file adds the loss curves and
writes the three PNGs of a run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from . import explore, plots
from .datasets import to_unit
from .evaluation import prepare_data


def loss_figure(history, title="Loss = reconstruction + beta * KL (nats per image)"):
    """history: list of per-epoch dicts (:func:`vae_numpy.train.train`) -> Figure with two panels.

    Left: the training loss (mean over the epoch's batches, as the weights moved) and the test loss (at the
    epoch's end). Right: the test loss's two parts, reconstruction -log p(x | h) and KL(q(h | x) || p(h)).
    """
    epochs = [r["epoch"] for r in history]
    fig = plots.ShownFigure(figsize=(9.0, 3.4), layout="constrained")
    ax_loss, ax_parts = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", ms=3, label="train")
    has_val = history and history[0].get("val_loss") is not None
    if has_val:
        ax_loss.plot(epochs, [r["val_loss"] for r in history], "o-", ms=3, label="test")
        ax_parts.plot(epochs, [r["val_reconstruction"] for r in history], "o-", ms=3, color="C2",
                      label="reconstruction")
        ax_kl = ax_parts.twinx()
        ax_kl.plot(epochs, [r["val_kl"] for r in history], "s--", ms=3, color="C3", label="KL (right axis)")
        ax_kl.set_ylabel("KL (nats)")
        lines = ax_parts.get_lines() + ax_kl.get_lines()
        ax_parts.legend(lines, [ln.get_label() for ln in lines], loc="center right", frameon=False)
        ax_parts.set_title("test loss = reconstruction + KL", fontsize=10)
        ax_parts.set_ylabel("reconstruction (nats)")
    else:
        ax_parts.set_axis_off()
    ax_loss.set_title(title, fontsize=10)
    ax_loss.legend(frameon=False)
    for ax in (ax_loss, ax_parts):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return fig


def run_figures(model, history, x_test, out, binarize="none", n_reconstructions=20, n_samples=64, seed=0):
    """Write loss.png, reconstructions.png and samples.png into the folder `out`; returns their paths.

    The first `n_reconstructions` test images (binarized as in training) sit above their reconstructions
    decode(mu(x)); the samples are decode(h) for h ~ N(0, I) (Bernoulli means, not binarized).
    """
    out = Path(out)
    x = prepare_data(model, np.asarray(x_test)[:n_reconstructions], "x_test", binarize)
    if x.dtype == np.uint8:
        x = to_unit(x, dtype=model.dtype)
    x, x_hat = explore.reconstructions(model, x)
    kind = "VAE" if model.kind == "vae" else "autoencoder"
    figures = {
        "loss.png": loss_figure(history),
        "reconstructions.png": plots.reconstructions_figure(
            x, x_hat, n_cols=10, title=f"Test images above their reconstructions ({kind}, epoch "
                                       f"{history[-1]['epoch']})"),
        "samples.png": plots.samples_figure(
            explore.prior_samples(model, n_samples, seed=seed), n_cols=8,
            title=f"Samples: decode(h), h ~ N(0, I) ({kind})"),
    }
    return [plots.save_figure(fig, out / name) for name, fig in figures.items()]
