"""``vae-numpy sample CKPT -n 64 --out PNG``: decode n draws from the prior N(0, I) into one image grid."""

from __future__ import annotations

from pathlib import Path

from . import positive_int


def add_arguments(p):
    p.add_argument("checkpoint", metavar="CKPT", help="a model.npz written by 'vae-numpy train' or model.save")
    p.add_argument("-n", type=positive_int, default=64, metavar="N", help="how many samples, default 64")
    p.add_argument("--out", default="samples.png", metavar="PNG", help="the image to write, default samples.png")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seeds the draws h ~ N(0, I), default 0")
    p.add_argument("--cols", type=positive_int, default=None, metavar="C",
                   help="images per row, default about sqrt(N)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args):
    import math

    from .._validate import check_writable
    from ..checkpoint import load_checkpoint
    from ..errors import ConfigError
    from ..plots import samples_figure, save_figure
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed} must be a non-negative integer")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out!r} must name a .png file")
    if out.is_dir():
        raise ConfigError(f"--out {args.out!r} is a folder; name a .png file, e.g. {out / 'samples.png'}")
    if out.exists() and not args.force:
        raise ConfigError(f"--out {args.out!r} exists; add --force to replace it, or name another file")
    check_writable(out.parent, f"--out {args.out}")
    model = load_checkpoint(args.checkpoint).model
    model._check_decode_memory(args.n, f"-n {args.n:,}", fix="lower -n to at most {rows}")
    images = model.sample(args.n, seed=args.seed)
    cols = args.cols or math.ceil(math.sqrt(args.n))
    kind = "VAE" if model.kind == "vae" else "autoencoder"
    save_figure(samples_figure(images, n_cols=cols, title=f"{args.n} samples decode(h), h ~ N(0, I) ({kind})"), out)
    print(f"wrote {out}: {args.n} samples from {args.checkpoint}")
    return 0
