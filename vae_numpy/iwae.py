"""The importance-weighted bound (IWAE) and the k-sample ELBO: values and derivatives.

Shapes: N examples, K samples each, Z latent. mu, log_var, std: (N, Z); eps, h: (N, K, Z); rec, kl: (N, K);
bound: (N,).

For one example x and K draws h_j = mu + sigma * eps_j from q(h | x) (Burda, Grosse, Salakhutdinov, 2016):

    log w_j = log p(x | h_j) + log p(h_j) - log q(h_j | x) = -rec_j - kl_j       (log importance weight)
    rec_j   = -log p(x | h_j)                                                   (the decoder's loss, losses.py)
    kl_j    = log q(h_j | x) - log p(h_j) = 1/2 sum_z (h_jz^2 - eps_jz^2 - log sigma_z^2)
              (the sample's KL estimate: the log(2 pi) terms of the two Gaussians cancel)
    L_k     = -log (1/K) sum_j w_j = -(logsumexp_j log w_j - log K)             (nats, >= -log p(x))

L_k falls towards -log p(x) as K grows (L_1 >= L_2 >= ... on average). With K = 1 it is rec_1 + kl_1: the
negative ELBO with the KL estimated from the sample instead of the closed form, equal to it in expectation.

beta: the weights become log w_j = -rec_j - beta * kl_j. Only beta = 1 gives a bound on log p(x); other
values are a beta-VAE-like trade-off without that meaning (and beta * kl_weight during a KL warm-up).

Derivatives, with the normalized weights w~_j = w_j / sum_i w_i (the softmax of log w over j):

    dL_k / drec_j = w~_j,     dL_k / dkl_j = beta * w~_j
    dkl_j / dh_j = h_j,       dkl_j / dlog_var = -1/2   (eps_j held fixed: the eps^2 term is a constant)
    h_j = mu + sigma * eps_j:   dmu      = sum_j g_j,
                                dlog_var = sum_j g_j * eps_j * sigma / 2 - beta / 2 * sum_j w~_j
    where g_j = dL/dh_j = w~_j * drec_j/dh_j + beta * w~_j * h_j   (h_j feeds the decoder and the KL estimate)

Each sample's gradient is its single-sample gradient weighted by w~_j: samples that explain x well count
more. The k-sample ELBO (``objective="elbo"`` with K > 1) is L = (1/K) sum_j rec_j + beta * KL(q || N(0, I)):
the reconstruction averaged over K draws and the closed-form KL (losses.py); its weights are w~_j = 1/K.

Float64 where it matters: the log-sum-exp over j (log w of a few hundred nats, differences of a few) is taken
in float64; the per-sample sums (rec, kl) come in the model's dtype.

References: Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.
"""

from __future__ import annotations

import numpy as np

OBJECTIVES = ("elbo", "iwae")


def reparameterize(mu, std, eps, out=None):
    """h_j = mu + sigma * eps_j for every sample. mu, std: (N, Z); eps: (N, K, Z) -> h: (N, K, Z)."""
    h = np.multiply(std[:, None, :], eps, out=out)
    h += mu[:, None, :]
    return h


def kl_estimate(h, eps, log_var):
    """kl_j = log q(h_j | x) - log p(h_j) = 1/2 sum_z (h^2 - eps^2 - log_var). h, eps: (N, K, Z) -> (N, K)."""
    t = h * h
    t -= eps * eps
    t -= log_var[:, None, :]
    return 0.5 * t.sum(axis=2)


def log_mean_exp(log_w):
    """log (1/K) sum_j exp(log_w_j) over the last axis, stable (log-sum-exp), in float64. (N, K) -> (N,)."""
    log_w = np.asarray(log_w, dtype=np.float64)
    m = log_w.max(axis=-1)
    m = np.where(np.isfinite(m), m, 0.0)     # all -inf: the result is -inf, not NaN
    s = np.exp(log_w - m[..., None]).sum(axis=-1)
    with np.errstate(divide="ignore"):
        return m + np.log(s / log_w.shape[-1])


def normalized_weights(log_w):
    """w~_j = w_j / sum_i w_i over the last axis (a softmax), float64. (N, K) -> (N, K), rows sum to 1."""
    log_w = np.asarray(log_w, dtype=np.float64)
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)
    return w


def iwae_bound(rec, kl, beta=1.0):
    """L_k per example and the normalized weights. rec, kl: (N, K) -> (bound (N,), w~ (N, K)), float64.

    bound = -log (1/K) sum_j exp(-rec_j - beta * kl_j);  w~ = softmax_j(-rec_j - beta * kl_j).
    """
    log_w = -np.asarray(rec, dtype=np.float64) - beta * np.asarray(kl, dtype=np.float64)
    return -log_mean_exp(log_w), normalized_weights(log_w)


def iwae_latent_backward(dh, h, eps, std, c, beta):
    """Gradients of sum_n sum_j c_nj * (rec_nj + beta * kl_nj) w.r.t. mu and log_var (see the module docstring).

    dh: (N, K, Z), the gradient of sum c * rec w.r.t. h (the decoder's backward of the weighted rows);
    h, eps: (N, K, Z); std: (N, Z); c: (N, K) the weights of the loss (w~ / N for the batch mean).
    Returns (dmu, dlog_var), each (N, Z).
    """
    g = h * (beta * c)[:, :, None]
    g += dh                                   # h_j feeds the decoder and the KL estimate: the gradients add
    dmu = g.sum(axis=1)
    g *= eps
    dlog_var = 0.5 * std * g.sum(axis=1)
    dlog_var -= (0.5 * beta * c.sum(axis=1))[:, None]
    return dmu, dlog_var


def elbo_k_latent_backward(dh, mu, eps, std, kl_scale):
    """The k-sample ELBO's dmu, dlog_var: (N, Z), from dh: (N, K, Z) (the decoder's gradient w.r.t. h).

    dmu = sum_j dh_j + kl_scale * mu;  dlog_var = sum_j dh_j * eps_j * sigma / 2 + kl_scale * (sigma^2 - 1) / 2,
    kl_scale = beta / N: mu and log_var feed both the samples and the closed-form KL, so the gradients add.
    """
    dmu = dh.sum(axis=1)
    dmu += kl_scale * mu
    dlog_var = 0.5 * std * (dh * eps).sum(axis=1)
    dlog_var += 0.5 * kl_scale * (std * std - 1)
    return dmu, dlog_var
