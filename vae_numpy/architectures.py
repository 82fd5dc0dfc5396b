"""The lecture's encoder-decoders by name: mlp, conv, rnn (Keras-style layer stacks from vae_numpy.nn).

Each builder returns an :class:`Arch`: the encoder (x: (N, D) -> features g: (N, F)), the decoder (h: (N, Z) ->
features), and the output head (features -> (N, D): Bernoulli logits or Gaussian means; a learned Gaussian
variance gets a second head of the same kind). The VAE puts the heads mu, log_var (Dense Z) between them.

    mlp   D -> H1 -> ... -> Hk (act)                          | Z -> Hk -> ... -> H1 (act) | Dense D
    conv  (28, 28, 1) -> Conv 32 3x3 s2 same -> Conv 64 3x3 s2 same (relu) -> Flatten -> Dense 16 (relu)
          | Z -> Dense 7*7*64 (relu) -> Reshape (7, 7, 64) -> ConvT 64 3x3 s2 -> ConvT 32 3x3 s2 (relu)
          | ConvT 1 3x3 s1 same -> Flatten (the Keras example; channels configurable)
    rnn   the image as 28 rows of 28 pixels, recurrent encoder and decoder (nn/recurrent.py)

Images are channels-last (H, W, C), as in the Keras example: the convolution's matrix product then yields
(N, H, W, C) directly, with no transpose. x stays (N, D) at the model's surface for every arch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import check_int
from .errors import ConfigError
from .nn import Dense, Flatten, Layer, Reshape, Sequential


@dataclass
class Arch:
    encoder: Layer
    decoder: Layer
    output: Layer
    names: str = "path"      # "mlp": the MLP's old parameter names (enc1, ..., dec_out); "path": encoder.0.W


def _side(input_dim, arch, multiple=1):
    side = int(round(np.sqrt(input_dim)))
    if side * side != input_dim or side % multiple:
        raise ConfigError(f"arch={arch!r} needs square images (input_dim = side^2, side a multiple of "
                          f"{multiple}); input_dim={input_dim} is not: use arch='mlp' for other data")
    return side


def mlp(input_dim, latent_dim, hidden_dims=(400,), activation="relu"):
    """Today's MLP: Dense layers named enc1.. / dec1.. (so old checkpoints load), output Dense D."""
    hidden = tuple(hidden_dims)
    enc = Sequential([Dense(h, activation) for h in hidden], names=[f"enc{i + 1}" for i in range(len(hidden))])
    dec = Sequential([Dense(h, activation) for h in hidden[::-1]],
                     names=[f"dec{i + 1}" for i in range(len(hidden))])
    return Arch(enc, dec, Dense(input_dim), names="mlp")


def conv(input_dim, latent_dim, activation="relu", channels=(32, 64), dense=16):
    """The Keras example's convolutional VAE; channels = (c1, c2) of the two convolutions."""
    from .nn.conv import Conv2d, ConvTranspose2d
    side = _side(input_dim, "conv", 4)
    try:
        c1, c2 = (check_int("each of channels", c) for c in channels)
    except (TypeError, ValueError):
        raise ConfigError(f"channels={channels!r} must be two positive integers, e.g. (32, 64)") from None
    dense = check_int("dense", dense)
    s4 = side // 4
    enc = Sequential([Reshape((side, side, 1)),
                      Conv2d(c1, 3, stride=2, padding="same", activation=activation),
                      Conv2d(c2, 3, stride=2, padding="same", activation=activation),
                      Flatten(), Dense(dense, activation)])
    dec = Sequential([Dense(s4 * s4 * c2, activation), Reshape((s4, s4, c2)),
                      ConvTranspose2d(c2, 3, stride=2, padding="same", activation=activation),
                      ConvTranspose2d(c1, 3, stride=2, padding="same", activation=activation)])
    out = Sequential([ConvTranspose2d(1, 3, stride=1, padding="same"), Flatten()])
    return Arch(enc, dec, out)


def rnn(input_dim, latent_dim, activation="tanh", **options):
    """Rows of the image as a sequence; the recurrent layers come from vae_numpy/nn/recurrent.py."""
    try:
        from .nn import recurrent
    except ImportError:
        raise ConfigError("arch='rnn' needs the recurrent layers (vae_numpy/nn/recurrent.py), which this "
                          "installation lacks; use arch='mlp' or arch='conv'") from None
    builder = getattr(recurrent, "rnn_arch", None)   # rnn_arch(input_dim, latent_dim, side, activation, ...)
    if builder is None:
        raise ConfigError("arch='rnn' is not available yet in this version; use arch='mlp' or arch='conv'")
    return builder(input_dim, latent_dim, _side(input_dim, "rnn"), activation=activation, **options)


ARCHS = {"mlp": mlp, "conv": conv, "rnn": rnn}
# the options each arch takes beyond (input_dim, latent_dim, activation); the CLI's flags map onto these
OPTIONS = {"mlp": ("hidden_dims",), "conv": ("channels", "dense"), "rnn": ("state_size", "cell")}


def build(arch, input_dim, latent_dim, activation, options):
    """The named arch's Arch, after checking that every option belongs to it."""
    if arch not in ARCHS:
        raise ConfigError(f"arch={arch!r} is unknown; choose one of {', '.join(ARCHS)}, or pass encoder= and "
                          "decoder= layer stacks")
    bad = sorted(set(options) - set(OPTIONS[arch]))
    if bad:
        where = {o: a for a, opts in OPTIONS.items() for o in opts}
        hint = "; ".join(f"{o} applies to arch={where[o]!r}" if o in where else f"{o} is no option"
                         for o in bad)
        raise ConfigError(f"arch={arch!r} takes the options {list(OPTIONS[arch])}, not {bad} ({hint})")
    return ARCHS[arch](input_dim, latent_dim, activation=activation, **options)
