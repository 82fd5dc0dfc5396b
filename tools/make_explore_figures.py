"""Make the README's "Exploring the latent space" figures: docs/img/explore_*.png.

Trains, on the embedded mnist-5k digits (4,000 train, offline), a 784-400-20 VAE, a 784-400-2 VAE (latent map,
manifold; three times the epochs), an Autoencoder and a VAE with Z = 32 (the lecture's AE-vs-VAE slide) and a
small beta sweep, then draws every figure of vae_numpy.plots from the 1,000 test digits. About three minutes
on two idle cores.

    MPLBACKEND=Agg python tools/make_explore_figures.py [--epochs 20] [--out docs/img]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

import vae_numpy as vn
from vae_numpy import explore, plots


def fit(model, x, epochs, seed=0, batch_size=128, lr=1e-3):
    """Adam on shuffled minibatches (vn.train when the package has it); prints the last epoch's loss."""
    t0 = time.perf_counter()
    opt = vn.Adam(model.params, lr=lr)
    train = getattr(vn, "train", None)
    if callable(train):
        train(model, x, epochs=epochs, batch_size=batch_size, optimizer=opt, seed=seed, progress=False)
    else:
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            order = rng.permutation(len(x))
            for start in range(0, len(x), batch_size):
                model.forward(x[order[start:start + batch_size]])
                model.backward()
                opt.step(model.grads)
    loss = model.forward(x[:1000])
    print(f"  {model.kind} Z={model.latent_dim} beta={getattr(model, 'beta', 0):g}: train loss {loss:.1f} nats "
          f"({time.perf_counter() - t0:.0f} s)")
    return model


def load(split):
    images, labels = vn.datasets.load_dataset("mnist-5k", split=split)
    return (images.reshape(len(images), -1) / 255.0).astype(np.float32), labels


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default="docs/img")
    args = p.parse_args(argv)
    out, E = Path(args.out), args.epochs
    x_train, _ = load("train")
    x_test, y_test = load("test")
    ref, other = 0, int(np.argmax(y_test != y_test[0]))

    def save(fig, name):
        path = plots.save_figure(fig, out / f"explore_{name}.png")
        Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)   # palette PNG: 3-4x smaller
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")

    print("training")
    vae = fit(vn.VAE(784, (400,), 20, seed=0), x_train, E)
    vae2 = fit(vn.VAE(784, (400,), 2, seed=0), x_train, 3 * E)   # Z = 2 needs longer to settle
    ae32 = fit(vn.Autoencoder(784, (400,), 32, seed=0), x_train, E)
    vae32 = fit(vn.VAE(784, (400,), 32, seed=0), x_train, E)

    save(plots.reconstructions_figure(*explore.reconstructions(vae, x_test[:30])), "reconstructions")
    save(plots.samples_figure(explore.prior_samples(vae, 64, seed=0)), "samples")
    save(plots.traversal_figure(explore.traversal(vae, x_test[ref], dims=10, x_for_kl=x_test)), "traversal")
    save(plots.interpolation_figure(explore.interpolations(vae, x_test[ref], x_test[other], 9)), "interpolation")
    save(plots.kl_figure(explore.kl_per_dim(vae, x_test)), "kl_per_dim")
    save(plots.latent_map_figure(explore.latent_map(vae, x_test, y_test),
                                 title="Latent map of the Z = 20 VAE: PCA of the mean codes"), "latent_map_pca")
    save(plots.latent_map_figure(explore.latent_map(vae2, x_test, y_test),
                                 title="Latent map of a Z = 2 VAE: mean codes"), "latent_map")
    save(plots.manifold_figure(explore.manifold(vae2, n=15)), "manifold")
    save(plots.ae_vs_vae_figure(explore.ae_vs_vae_samples(ae32, vae32, x_train, n=32, seed=0),
                                title="Samples at d = 32"), "ae_vs_vae")

    print("beta sweep")
    sweep = explore.beta_sweep((1.0, 4.0, 8.0), x_train, epochs=E)
    travs = [explore.traversal(r.model, x_test[ref], dims=6, x_for_kl=x_test) for r in sweep]
    save(plots.beta_sweep_figure([r.beta for r in sweep], travs), "beta_sweep")


if __name__ == "__main__":
    main()
