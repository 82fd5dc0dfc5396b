"""``vae-numpy compare AE_CKPT VAE_CKPT``: samples of an autoencoder beside a VAE's, at one latent size.

Draws :func:`vae_numpy.plots.ae_vs_vae_figure`: the autoencoder decoding N(0, I) codes, the autoencoder
decoding codes from a Gaussian fitted to its codes of the training images, and the VAE decoding the same
N(0, I) codes (the lecture's d = 32 slide). The training images are the train split of the autoencoder's
dataset (saved in its checkpoint; --dataset overrides it, mnist-5k when the checkpoint does not say).
"""

from __future__ import annotations

from . import DATASETS, add_data_arguments, nonnegative_int, positive_int


def add_arguments(p):
    p.add_argument("ae_checkpoint", metavar="AE_CKPT", help="an Autoencoder's model.npz")
    p.add_argument("vae_checkpoint", metavar="VAE_CKPT", help="a VAE's model.npz, of the same latent_dim")
    p.add_argument("--out", default="ae_vs_vae.png", metavar="PNG", help="the figure to write (default ae_vs_vae.png)")
    p.add_argument("-n", "--n", type=positive_int, default=32, help="samples per panel (default 32)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seeds the codes (default 0)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="the training images the Gaussian is fitted on (default: the AE checkpoint's dataset)")
    p.add_argument("--fit-images", type=positive_int, default=10000, metavar="N",
                   help="how many training images to fit it on (default 10000)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    add_data_arguments(p)


def run(args):
    from .._validate import check_new_files
    from ..checkpoint import load_model
    from ..errors import ConfigError
    from ..explore import ae_vs_vae_samples
    from ..plots import ae_vs_vae_figure, save_figure
    from .explore import load_model_and_data
    check_new_files([args.out], "--out", args.force)
    ae, x_train, _, name = load_model_and_data(args.ae_checkpoint, args.dataset, "train", args.fit_images,
                                               args.data_dir, args.offline)
    vae = load_model(args.vae_checkpoint)
    if ae.kind == "vae" and vae.kind == "ae":
        raise ConfigError("the autoencoder comes first: vae-numpy compare AE_CKPT VAE_CKPT")
    samples = ae_vs_vae_samples(ae, vae, x_train, n=args.n, seed=args.seed)
    fig = ae_vs_vae_figure(samples, title=f"Samples at latent_dim = {vae.latent_dim} "
                                          f"(Gaussian fitted on {len(x_train)} {name} train images)")
    print(f"wrote {save_figure(fig, args.out)}")
    return 0
