"""What the latent space does, as arrays: reconstructions, samples, traversals, interpolations, maps.

Shapes: x: (N, D) in [0, 1]; codes h: (N, Z); images come back flat, (..., D). N examples, D pixels,
Z latent. :mod:`vae_numpy.plots` turns each result into a figure; nothing here draws.

The code of an image is the encoder's mean ``mu(x)`` for a VAE (the centre of q(h | x), no noise) and ``z(x)``
for an Autoencoder; :func:`codes` computes it. Every function that draws random numbers takes ``seed`` or
``rng`` (never the global generator), so that a figure is the same on every run.

Notes
-----
KL per latent dimension j, averaged over the examples (it sums to the model's KL term):
    KL_j = mean_n -1/2 (1 + log sigma_nj^2 - mu_nj^2 - sigma_nj^2)
A dimension with KL_j ~ 0 is *inactive*: q(h_j | x) = N(0, 1) whatever x, so the decoder ignores it.

Spherical interpolation (slerp; Shoemake 1985, White 2016) between codes a and b, Omega the angle between them:
    slerp(a, b, t) = sin((1 - t) Omega) / sin Omega * a + sin(t Omega) / sin Omega * b
It keeps the path at a typical distance from the origin, where the prior N(0, I) puts its mass, while the
straight line between two codes passes closer to the origin than either end.

References: I. Higgins et al., "beta-VAE: Learning Basic Visual Concepts with a Constrained Variational
Framework", ICLR 2017. T. White, "Sampling Generative Networks", arXiv:1609.04468, 2016.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ._validate import check_choice, check_float, check_int, check_matrix, check_rng
from .errors import ConfigError
from .sampling import std_from_log_var

INTERPOLATIONS = ("pixel", "linear", "slerp")


# --------------------------------------------------------------------------------------- helpers
def _check_model(model, kind=None):
    if getattr(model, "kind", None) not in ("vae", "ae") or not hasattr(model, "decode"):
        raise ConfigError(f"model={type(model).__name__} is not a vae_numpy model; pass a vn.VAE or vn.Autoencoder")
    if kind is not None and model.kind != kind:
        want = {"vae": "a VAE (vn.VAE)", "ae": "an Autoencoder (vn.Autoencoder)"}[kind]
        raise ConfigError(f"this needs {want}; got a model of kind {model.kind!r}")
    return model


def _rows(name, x, model):
    """x: (D,) one image or (N, D) -> (N, D) in the model's dtype (checked)."""
    x = np.asarray(x)
    return check_matrix(name, x[None, :] if x.ndim == 1 else x, ncols=model.input_dim, dtype=model.dtype,
                        unit_interval=model.likelihood == "bernoulli")


def codes(model, x):
    """x: (N, D) -> (N, Z): the mean code mu(x) of a VAE, the code z(x) of an Autoencoder."""
    _check_model(model)
    out = model.encode(_rows("x", x, model))
    return out[0] if model.kind == "vae" else out


# ------------------------------------------------------------------------- reconstructions, samples
def reconstructions(model, x):
    """x: (N, D) -> (x, x_hat), each (N, D): the inputs and the decoded mean codes, decode(codes(x))."""
    x = _rows("x", x, _check_model(model))
    return x, model.decode(codes(model, x))


def prior_samples(model, n=64, seed=0, rng=None):
    """(n, D): n codes drawn from the prior N(0, I) and decoded (probabilities or means, not binarized)."""
    return _check_model(model).sample(check_int("n", n), seed=seed, rng=rng)


def kl_per_dim(model, x):
    """x: (N, D) -> (Z,) float64: the KL of each latent dimension, averaged over x (see the module notes).

    The entries sum to ``vn.losses.gaussian_kl(mu, log_var).mean()``. A VAE only: an autoencoder has no q.
    """
    mu, log_var = _check_model(model, "vae").encode(_rows("x", x, model))
    mu, log_var = mu.astype(np.float64), log_var.astype(np.float64)
    var = std_from_log_var(log_var) ** 2
    return np.mean(-0.5 * (1.0 + log_var - mu * mu - var), axis=0)


# ------------------------------------------------------------------------------------- traversal
@dataclass(frozen=True)
class Traversal:
    """One latent dimension varied per row while the others stay at a reference image's code.

    images : (K, S, D) decoded images, row k varies latent dims[k], column s takes values[s].
    codes : (K, S, Z) the codes that were decoded.
    dims : (K,) int, the latent dimension of each row.
    values : (S,) the offsets in standard deviations, from -span to +span.
    reference : (Z,) the reference image's code (the fixed values).
    scores : (Z,) what the rows are ordered by: mean KL per dimension (VAE) or code std (AE).
    kind : the model's kind, "vae" (scores are KL in nats, values are prior std) or "ae" (code std).
    """

    images: np.ndarray
    codes: np.ndarray
    dims: np.ndarray
    values: np.ndarray
    reference: np.ndarray
    scores: np.ndarray
    kind: str = "vae"


def traversal(model, x_ref, dims=None, n_steps=7, span=3.0, x_for_kl=None):
    """x_ref: (D,) one image -> :class:`Traversal` with images (K, S=n_steps, D) and codes (K, S, Z).

    Parameters
    ----------
    model : VAE or Autoencoder
    x_ref : (D,) or (1, D) the image whose code fixes the dimensions that are not varied.
    dims : None (every dimension), an int k (the k with the largest score), or a sequence of dimension
        indices (used in the order given). None and int order the rows by score, largest first.
    n_steps : S, the columns, evenly spaced from -span to +span standard deviations.
    span : how many standard deviations each side.
    x_for_kl : (M, D) images over which the score is averaged; default x_ref. Required for an Autoencoder.

    Notes
    -----
    Row k decodes h with h_j = reference_j for j != dims[k] and h_dims[k] = value, where for a VAE the
    "standard deviation" is the **prior's**, N(0, 1): the value is t itself, t in linspace(-span, span, S),
    whatever the reference's mu_j (so every row spans the same region the decoder saw during training),
    and the score is KL_j (module notes). An autoencoder has no prior, so its value is m_j + t * s_j with
    m_j, s_j the mean and std of code j over x_for_kl, and the score is s_j.
    """
    _check_model(model)
    ref = codes(model, _rows("x_ref", x_ref, model))
    if ref.shape[0] != 1:
        raise ConfigError(f"x_ref has {ref.shape[0]} rows; pass one image, shape (D,) or (1, D)")
    S, span = check_int("n_steps", n_steps, minimum=2), check_float("span", span, minimum=0.0, exclusive=True)
    Z = model.latent_dim
    t = np.linspace(-span, span, S)
    if model.kind == "vae":
        scores = kl_per_dim(model, x_ref if x_for_kl is None else x_for_kl)
        center, scale = np.zeros(Z), np.ones(Z)
    else:
        if x_for_kl is None:
            raise ConfigError("an Autoencoder has no prior to measure standard deviations with; pass "
                              "x_for_kl=(M, D) images (M >= 2) to use the spread of their codes")
        c = codes(model, check_matrix("x_for_kl", x_for_kl, ncols=model.input_dim, min_rows=2)).astype(np.float64)
        center, scale = c.mean(axis=0), c.std(axis=0)
        scores = scale
    order = np.argsort(-scores, kind="stable")
    if dims is None:
        dims = order
    elif isinstance(dims, int | np.integer) and not isinstance(dims, bool):
        dims = order[:check_int("dims", dims, minimum=1)]
    else:
        dims = np.asarray(dims)
        if dims.ndim != 1 or dims.size == 0 or dims.dtype.kind not in "iu" or dims.min() < 0 or dims.max() >= Z:
            raise ConfigError(f"dims={dims.tolist()!r} must be latent dimensions in 0..{Z - 1} (or an int k "
                              "for the k with the largest KL, or None for all)")
    dims = np.asarray(dims, dtype=np.int64)
    K = len(dims)
    h = np.repeat(ref.astype(np.float64), K * S, axis=0).reshape(K, S, Z)
    h[np.arange(K), :, dims] = center[dims, None] + t[None, :] * scale[dims, None]
    images = model.decode(h.reshape(K * S, Z).astype(model.dtype)).reshape(K, S, -1)
    return Traversal(images, h.astype(model.dtype), dims, t, ref[0], scores, model.kind)


# --------------------------------------------------------------------------------- interpolation
def slerp(h_a, h_b, t):
    """h_a, h_b: (Z,), t: (S,) in [0, 1] -> (S, Z): spherical interpolation (module notes).

    Falls back to the straight line when the codes are (anti)parallel or one is zero (Omega undefined).
    """
    a, b = np.asarray(h_a, np.float64), np.asarray(h_b, np.float64)
    t = np.asarray(t, np.float64)[:, None]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = np.clip(a @ b / (na * nb), -1.0, 1.0) if na > 0 and nb > 0 else 1.0
    omega = np.arccos(cos)
    if np.sin(omega) < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def interpolate(model, x_a, x_b, n_steps=9, kind="slerp"):
    """x_a, x_b: (D,) two images -> (S=n_steps, D): from x_a's end to x_b's end.

    kind="pixel": (1 - t) x_a + t x_b, the images themselves blended (no model involved beyond the check);
    kind="linear": decode((1 - t) h_a + t h_b); kind="slerp": decode(slerp(h_a, h_b, t)), with h = codes(x)
    (the means for a VAE), t in linspace(0, 1, S). The latent kinds start at decode(h_a) and end at
    decode(h_b), which are the reconstructions, not the inputs.
    """
    _check_model(model)
    kind = check_choice("kind", kind, INTERPOLATIONS)
    S = check_int("n_steps", n_steps, minimum=2)
    xa, xb = _rows("x_a", x_a, model), _rows("x_b", x_b, model)
    if xa.shape[0] != 1 or xb.shape[0] != 1:
        raise ConfigError(f"x_a and x_b must be single images (D,); got shapes {xa.shape} and {xb.shape}")
    t = np.linspace(0.0, 1.0, S)[:, None]
    if kind == "pixel":
        return ((1 - t) * xa + t * xb).astype(model.dtype)
    ha, hb = codes(model, xa)[0].astype(np.float64), codes(model, xb)[0].astype(np.float64)
    h = (1 - t) * ha + t * hb if kind == "linear" else slerp(ha, hb, t[:, 0])
    return model.decode(h.astype(model.dtype))


def interpolations(model, x_a, x_b, n_steps=9):
    """x_a, x_b: (D,) -> dict kind -> (S, D) for every kind in INTERPOLATIONS ("pixel", "linear", "slerp")."""
    return {kind: interpolate(model, x_a, x_b, n_steps, kind) for kind in INTERPOLATIONS}


# ------------------------------------------------------------------------------- maps, manifold
@dataclass(frozen=True)
class LatentMap:
    """Codes reduced to 2-D. coords: (N, 2); labels: (N,) or None; method: "identity" (Z = 2) or "pca";
    explained: (2,) the fraction of the codes' variance each axis carries (PCA), [1, 1]/2-ish for Z = 2."""

    coords: np.ndarray
    labels: np.ndarray | None
    method: str
    explained: np.ndarray


def latent_map(model, x, labels=None):
    """x: (N, D), labels: (N,) -> :class:`LatentMap` with coords (N, 2).

    Z = 2: the codes themselves. Z > 2: their projection on the first two principal axes, from the SVD of the
    centred codes C - mean = U S V^T, coords = (C - mean) V[:, :2]; each axis's sign makes its largest
    loading positive, so the picture does not flip between runs. Z = 1 is refused (no second axis).
    """
    _check_model(model)
    x = _rows("x", x, model)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (x.shape[0],):
            raise ConfigError(f"labels has shape {labels.shape}; expected ({x.shape[0]},) to match x")
    if model.latent_dim < 2:
        raise ConfigError(f"latent_dim={model.latent_dim}: a 2-D latent map needs latent_dim >= 2")
    c = codes(model, x).astype(np.float64)
    var = c.var(axis=0)
    if model.latent_dim == 2:
        return LatentMap(c, labels, "identity", var / max(var.sum(), 1e-300))
    centred = c - c.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2] * np.sign(vt[:2][np.arange(2), np.argmax(np.abs(vt[:2]), axis=1)])[:, None]
    return LatentMap(centred @ axes.T, labels, "pca", s[:2] ** 2 / max(np.sum(s ** 2), 1e-300))


@dataclass(frozen=True)
class Manifold:
    """Decoded codes over a grid of prior quantiles (Z = 2).

    images : (n, n, D); row i, column j decodes h = (values[j], values[n - 1 - i]): h_0 grows to the right,
        h_1 grows upwards, as on the axes of a scatter plot.
    codes : (n, n, 2) the decoded codes.  quantiles : (n,) probabilities.  values : (n,) Phi^-1(quantiles).
    """

    images: np.ndarray
    codes: np.ndarray
    quantiles: np.ndarray
    values: np.ndarray


def manifold(model, n=15, quantile_range=(0.05, 0.95)):
    """-> :class:`Manifold`, images (n, n, D): the decoder over the prior's quantiles (latent_dim must be 2).

    The grid values are Phi^-1(q), q evenly spaced over quantile_range, Phi the standard normal CDF: equal
    steps of prior probability mass, as in Kingma & Welling's figure 4.
    """
    _check_model(model)
    if model.latent_dim != 2:
        raise ConfigError(f"latent_dim={model.latent_dim}: the decoded manifold needs latent_dim=2; "
                          "use traversal() or latent_map() for other sizes")
    n = check_int("n", n, minimum=2)
    lo, hi = (check_float("quantile_range", q, minimum=0.0, exclusive=True, maximum=1.0) for q in quantile_range)
    if not lo < hi < 1.0:
        raise ConfigError(f"quantile_range={tuple(quantile_range)!r} must be (lo, hi) with 0 < lo < hi < 1")
    q = np.linspace(lo, hi, n)
    v = np.array([NormalDist().inv_cdf(p) for p in q])
    h = np.stack(np.broadcast_arrays(v[None, :], v[::-1, None]), axis=-1)   # (n, n, 2)
    images = model.decode(h.reshape(n * n, 2).astype(model.dtype)).reshape(n, n, -1)
    return Manifold(images, h, q, v)


# ------------------------------------------------------------------------------------ AE vs VAE
def ae_vs_vae_samples(ae, vae, x_train, n=64, seed=0, rng=None):
    """x_train: (N, D) -> dict of (n, D) arrays, the lecture's "AE vs VAE samples at the same d" comparison.

    Keys: "ae_prior" (the autoencoder decoding eps ~ N(0, I)), "ae_fitted" (the autoencoder decoding
    m + L eps, with m and L L^T = C the mean and covariance of its codes of x_train), "vae_prior" (the VAE
    decoding eps). The same eps are used for all three, so the columns differ only by the decoder.
    Also "ae_code_mean" (Z,) and "ae_code_cov" (Z, Z): the fitted Gaussian.
    """
    _check_model(ae, "ae")
    _check_model(vae, "vae")
    if (ae.latent_dim, ae.input_dim) != (vae.latent_dim, vae.input_dim):
        raise ConfigError(f"the autoencoder has latent_dim={ae.latent_dim}, input_dim={ae.input_dim} and the VAE "
                          f"latent_dim={vae.latent_dim}, input_dim={vae.input_dim}; compare models of one size")
    n, rng = check_int("n", n), check_rng(seed, rng)
    c = codes(ae, check_matrix("x_train", x_train, ncols=ae.input_dim, min_rows=2)).astype(np.float64)
    m, cov = c.mean(axis=0), np.atleast_2d(np.cov(c, rowvar=False))
    w, v = np.linalg.eigh(cov)                     # C = V diag(w) V^T; L = V sqrt(w) (PSD-safe Cholesky)
    L = v * np.sqrt(np.clip(w, 0.0, None))
    eps = rng.standard_normal((n, ae.latent_dim))
    return {"ae_prior": ae.decode(eps.astype(ae.dtype)),
            "ae_fitted": ae.decode((m + eps @ L.T).astype(ae.dtype)),
            "vae_prior": vae.decode(eps.astype(vae.dtype)),
            "ae_code_mean": m, "ae_code_cov": cov}


# ---------------------------------------------------------------------------------------- beta-VAE
@dataclass(frozen=True)
class SweepResult:
    """One model of :func:`beta_sweep`: its beta, the trained VAE, and its history (what ``vn.train`` returns:
    a list of per-epoch dicts with "train_loss", "reconstruction", "kl", ...)."""

    beta: float
    model: object
    history: object


def beta_sweep(betas=(1.0, 4.0, 8.0), x_train=None, epochs=10, latent_dim=10, hidden_dims=(256,),
               batch_size=128, lr=1e-3, seed=0, progress=False):
    """x_train: (N, D) -> list of :class:`SweepResult`, one VAE per beta, trained on the same data.

    Every model starts from the same weights (same `seed`) and sees the batches in the same order, so beta
    is the only difference. Draw them with ``traversal(r.model, x_ref, dims=k, x_for_kl=x)`` and
    :func:`vae_numpy.plots.beta_sweep_figure`. The defaults train three small VAEs on 4,000 digits in a few
    seconds each, with ``vn.train`` and Adam(lr).
    """
    betas = [check_float("each of betas", b, minimum=0.0) for b in np.atleast_1d(betas)]
    if x_train is None:
        raise ConfigError("beta_sweep needs x_train=(N, D) images in [0, 1] to train on")
    x = check_matrix("x_train", x_train, ncols=None, dtype=np.float32, unit_interval=True)
    epochs, batch_size = check_int("epochs", epochs), check_int("batch_size", batch_size)
    from .models import VAE
    results = []
    for beta in betas:
        model = VAE(x.shape[1], hidden_dims, latent_dim, beta=beta, seed=seed)
        results.append(SweepResult(beta, model, _fit(model, x, epochs, batch_size, lr, seed, progress)))
    return results


def _fit(model, x, epochs, batch_size, lr, seed, progress):
    """Train `model` in place with vn.train and Adam(lr); returns its history (a list of per-epoch dicts)."""
    from .optim import Adam
    from .train import train  # lazily: train.py imports checkpointing and evaluation
    return train(model, x, epochs=epochs, batch_size=batch_size, optimizer=Adam(model.params, lr=lr), seed=seed,
                 progress=progress)


__all__ = ["INTERPOLATIONS", "LatentMap", "Manifold", "SweepResult", "Traversal", "ae_vs_vae_samples", "beta_sweep",
           "codes", "interpolate", "interpolations", "kl_per_dim", "latent_map", "manifold", "prior_samples",
           "reconstructions", "slerp", "traversal"]
