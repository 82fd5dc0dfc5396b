"""``vae-numpy explore CKPT``: every latent-space figure that fits a trained model, as PNG files.

Writes into --out (default: an ``explore/`` folder beside the checkpoint) the figures of
:func:`vae_numpy.plots.model_figures`, each named for what it shows: reconstructions.png, samples.png,
traversal.png, interpolation.png, latent_map.png, kl_per_dim.png (a VAE) and manifold.png (latent_dim 2).
The data are the first --n images of the test split of the dataset the model was trained on (saved in the
checkpoint; --dataset overrides it, mnist-5k when the checkpoint does not say).
"""

from __future__ import annotations

from pathlib import Path

from . import DATASETS, add_data_arguments, nonnegative_int, positive_int

FIGURES = ("reconstructions", "samples", "traversal", "interpolation", "latent_map", "manifold", "kl_per_dim")


def add_arguments(p):
    p.add_argument("checkpoint", metavar="CKPT", help="a model.npz written by 'vae-numpy train' (or model.save)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="where to write the PNGs (default: CKPT's folder/explore)")
    p.add_argument("--what", nargs="+", choices=FIGURES, default=None, metavar="FIG",
                   help=f"only these figures, from: {', '.join(FIGURES)} (default: every one that fits the model)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="the images to encode (default: the checkpoint's dataset, else mnist-5k)")
    p.add_argument("-n", "--n", type=positive_int, default=1000, help="test images used (default 1000)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seeds the prior samples (default 0)")
    p.add_argument("--force", action="store_true", help="replace figures of the same names in --out")
    add_data_arguments(p)


def load_model_and_data(path, dataset, split, n, data_dir=None, offline=False):
    """The model at `path` and the first n images (n, D) in [0, 1] and labels (n,) of `split` of its dataset."""
    from .._train_state import saved_data_dir
    from ..checkpoint import load_checkpoint
    from ..datasets import is_offline, load_dataset, to_unit
    from ..errors import ConfigError
    ck = load_checkpoint(path)
    model = ck.model
    name = dataset or ck.train_state.get("dataset") or "mnist-5k"
    if data_dir is None:   # the folder the run was trained from, while it still verifies
        data_dir, note = saved_data_dir(name, ck.train_state.get("data"), splits=(split,))
        if note:
            print(note)
    images, labels = load_dataset(name, split, data_dir=data_dir, download=not (offline or is_offline()))
    images, labels = images[:n].reshape(min(n, len(images)), -1), labels[:n]
    if images.shape[1] != model.input_dim:
        raise ConfigError(f"{path} takes input_dim={model.input_dim} pixels; {name} images have "
                          f"{images.shape[1]}; pass the --dataset it was trained on")
    return model, to_unit(images, model.dtype.name), labels, name


def run(args):
    from .._validate import check_new_files, check_out_dir
    from ..plots import model_figures, save_figure
    out = check_out_dir(Path(args.out) if args.out is not None else Path(args.checkpoint).parent / "explore",
                        "--out", create=False)
    model, x, labels, name = load_model_and_data(args.checkpoint, args.dataset, "test", args.n,
                                                 args.data_dir, args.offline)
    print(f"{model.kind} latent_dim={model.latent_dim}; {len(x)} {name} test images")
    if args.what is None:
        skipped = [f for f, fits in (("manifold", model.latent_dim == 2), ("kl_per_dim", model.kind == "vae"))
                   if not fits]
        if skipped:
            print(f"skipped {', '.join(skipped)} (manifold needs latent_dim=2, kl_per_dim a VAE)")
    figures = model_figures(model, x, labels, what=args.what, seed=args.seed)
    check_new_files([out / f"{fig_name}.png" for fig_name in figures], "--out", args.force)
    written = [save_figure(fig, out / f"{fig_name}.png") for fig_name, fig in figures.items()]
    print(f"wrote {out}/: " + ", ".join(p.name for p in written))
    return 0
