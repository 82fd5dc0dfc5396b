"""Evaluating a trained model: the negative ELBO and its two parts, the IWAE log-likelihood, active units.

Shapes: x: (N, D) floats in [0, 1], or uint8 images (N, 28, 28) / (N, D) (scaled by 1/255 batch by batch);
mu: (N, Z). Every number is per example, averaged over the N examples, in nats.

    negative ELBO   -ELBO(x) = E_q[-log p(x | h)] + KL(q(h | x) || N(0, I))     (reconstruction + KL)
                    estimated with one h = mu + sigma * eps per example; -ELBO >= -log p(x)
    log-likelihood  log p(x) ~= log (1/K) sum_k p(x | h_k) p(h_k) / q(h_k | x),  h_k ~ q(h | x)
                    the IWAE bound (Burda et al., 2016): it rises towards log p(x) as K grows
    active units    A = #{i : Cov_x(E_q[h_i | x]) > 0.01}: latent dimensions whose mean code varies with x

With beta != 1 the training loss is reconstruction + beta * KL; the numbers here are the plain ELBO (beta = 1),
so models trained with different betas compare. An Autoencoder has no KL and no density: its negative ELBO is
its reconstruction loss and its log-likelihood is None.

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016 (IWAE bound
and active units).
"""

from __future__ import annotations

import numpy as np

from ._threads import decode_threads
from ._validate import check_choice, check_float, check_int, check_matrix, check_rng
from .datasets import BINARIZE, binarize_static, flatten, to_unit
from .errors import ConfigError

EVAL_BINARIZE_SEED = 1  # static binarization of evaluation data: fixed, and not the train set's seed 0
ACTIVE_THRESHOLD = 0.01


def prepare_data(model, x, name="x", binarize="none"):
    """Validate `x` once for `model`: uint8 images stay uint8 (flattened), floats become the model's dtype.

    Shapes: x ``(N, 28, 28)`` / ``(N, D)`` uint8, or ``(N, D)`` float -> ``(N, D)`` (uint8 or model dtype).

    Parameters
    ----------
    binarize : {"none", "static", "dynamic"}
        For uint8 images, anything but "none" returns a statically binarized copy (seed
        ``EVAL_BINARIZE_SEED``): the fixed binary evaluation set that matches a binarized training set.
    """
    check_choice("binarize", binarize, BINARIZE)
    arr = np.asarray(x)
    if arr.dtype == np.uint8:
        if arr.ndim < 2 or len(arr) == 0:
            raise ConfigError(f"{name} has shape {arr.shape}; expected uint8 images (N, 28, 28) or (N, D)")
        arr = flatten(arr)
        if arr.shape[1] != model.input_dim:
            raise ConfigError(f"{name} has {arr.shape[1]} pixels per image; the model expects "
                              f"input_dim={model.input_dim}")
        return binarize_static(arr, EVAL_BINARIZE_SEED) if binarize != "none" else arr
    if binarize != "none":
        raise ConfigError(f"binarize={binarize!r} needs uint8 images (grey levels 0-255); {name} is "
                          f"{arr.dtype}: binarize it yourself or pass binarize='none'")
    return check_matrix(name, arr, ncols=model.input_dim, dtype=model.dtype, unit_interval=True)


def unit_batches(x, batch_size, dtype):
    """Yield consecutive float batches (B, D) in [0, 1] of prepared data `x` (see :func:`prepare_data`).

    uint8 rows are scaled by 1/255 into one reused buffer; float rows are yielded as views.
    """
    n = len(x)
    buf = np.empty((min(batch_size, n), x.shape[1]), dtype) if x.dtype == np.uint8 else None
    for start in range(0, n, batch_size):
        rows = x[start:start + batch_size]
        yield rows if buf is None else to_unit(rows, out=buf[:len(rows)])


def elbo(model, x, batch_size=500, seed=0, eps=None, binarize="none"):
    """The mean negative ELBO of `x` and its two parts, one posterior sample per example.

    Shapes: x: (N, D) float or uint8 (see :func:`prepare_data`); eps: (N, Z), optional.

    Parameters
    ----------
    eps : numpy.ndarray, optional
        The standard-normal draws to use (to compare with another implementation on the same noise);
        drawn from ``np.random.default_rng(seed)`` when None.

    Returns
    -------
    dict
        ``{"neg_elbo", "reconstruction", "kl"}``, floats in nats per example; neg_elbo = reconstruction + kl.
    """
    x = prepare_data(model, x, binarize=binarize)
    batch_size = check_int("batch_size", batch_size)
    N, Z = len(x), model.latent_dim
    if eps is not None:
        eps = check_matrix("eps", eps, ncols=Z, dtype=model.dtype)
        if len(eps) != N:
            raise ConfigError(f"eps has shape {eps.shape}; expected ({N}, {Z}) to match x")
    rng = check_rng(seed)
    noise = np.empty((min(batch_size, N), Z), model.dtype)
    rec_sum = kl_sum = 0.0
    for start, xb in zip(range(0, N, batch_size), unit_batches(x, batch_size, model.dtype), strict=True):
        B = len(xb)
        if eps is None:
            e = rng.standard_normal((B, Z), dtype=model.dtype, out=noise[:B])
        else:
            e = eps[start:start + B]
        model._forward(xb, e, need_grad=False)
        rec_sum += model.last["reconstruction"] * B
        kl_sum += model.last["kl"] * B
    rec, kl = rec_sum / N, kl_sum / N
    return {"neg_elbo": rec + kl, "reconstruction": rec, "kl": kl}


def log_likelihood(model, x, n_samples=100, seed=0, batch_size=500, binarize="none"):
    """The mean importance-sampled log p(x) over `x` (IWAE bound, K = n_samples), in nats.

    Shapes: x: (N, D) float or uint8. Calls ``model.log_likelihood`` on `batch_size` rows at a time.
    Higher is better; for a VAE it is >= -neg_elbo on average, and tightens as K grows.
    """
    x = prepare_data(model, x, binarize=binarize)
    K, batch_size = check_int("n_samples", n_samples), check_int("batch_size", batch_size)
    rng = check_rng(seed)
    total = 0.0
    for xb in unit_batches(x, batch_size, model.dtype):
        total += float(np.sum(model.log_likelihood(xb, n_samples=K, rng=rng)))
    return total / len(x)


def active_units(model, x, threshold=ACTIVE_THRESHOLD, batch_size=1000, binarize="none"):
    """Count the latent dimensions in use (Burda et al., 2016): Cov_x(E_q[h_i | x]) > threshold.

    Shapes: x: (N, D) float or uint8 -> variances: (Z,).

    Returns
    -------
    count : int
        The number of active units.
    variances : numpy.ndarray
        (Z,) float64: the variance over the examples of each dimension of the posterior mean mu(x)
        (of the code z for an Autoencoder).
    """
    x = prepare_data(model, x, binarize=binarize)
    threshold = check_float("threshold", threshold, minimum=0.0)
    means = []
    for xb in unit_batches(x, check_int("batch_size", batch_size), model.dtype):
        code = model.encode(xb)
        mu = code[0] if isinstance(code, tuple) else code      # VAE: (mu, log_var); Autoencoder: z
        means.append(mu.astype(np.float64))
    variances = np.var(np.concatenate(means), axis=0)
    return int(np.sum(variances > threshold)), variances


def evaluate(model, x, iwae_samples=100, seed=0, batch_size=500, binarize="none", threads=None):
    """All the test metrics of `model` on `x` (what ``vae-numpy evaluate`` prints).

    Shapes: x: (N, D) float or uint8 (N, 28, 28) / (N, D).

    Parameters
    ----------
    iwae_samples : int
        K for the IWAE log-likelihood; 0 skips it (it costs K decoder passes over x).
    binarize : {"none", "static", "dynamic"}
        How the model was trained: uint8 test images are then binarized once (see :func:`prepare_data`).
    threads : "auto" or int, optional
        BLAS threads (chosen for the IWAE's decoding, see :mod:`vae_numpy._threads`); default
        ``$VAE_NUMPY_THREADS``, else "auto".

    Returns
    -------
    dict
        ``neg_elbo, reconstruction, kl`` (nats per example), ``log_likelihood`` (nats, None for an
        Autoencoder or K = 0), ``iwae_samples``, ``active_units`` (int), ``latent_dim``, ``n`` (examples).
    """
    x = prepare_data(model, x, binarize=binarize)
    iwae_samples = check_int("iwae_samples", iwae_samples, minimum=0)
    iwae = bool(iwae_samples) and model.kind == "vae"
    with decode_threads(model, len(x) * iwae_samples if iwae else 0, threads):
        result = elbo(model, x, batch_size=batch_size, seed=seed)
        ll = None
        if iwae:
            ll = log_likelihood(model, x, n_samples=iwae_samples, seed=seed, batch_size=batch_size)
        count, _ = active_units(model, x)
    return {**result, "log_likelihood": ll, "iwae_samples": iwae_samples if ll is not None else 0,
            "active_units": count, "latent_dim": model.latent_dim, "n": len(x)}
