"""The two terms of the negative ELBO, per example, with their derivatives.

Shapes: x, logits, mean, log_var_x: (N, D); mu, log_var: (N, Z); every loss returns (N,) in nats.

    L = mean_n [ -log p(x_n | h_n) + beta * KL(q(h | x_n) || N(0, I)) ]

KL of a diagonal Gaussian to the standard normal (closed form):
    KL = -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2)
    dKL/dmu = mu,   dKL/dlog_var = (sigma^2 - 1) / 2

Bernoulli decoder on logits a (p = sigmoid(a)), stable for any a:
    -log p(x | h) = sum_d max(a, 0) - a x + log(1 + exp(-|a|)),      d/da = sigmoid(a) - x

Gaussian decoder with mean m and variance s^2 per pixel (constants kept, so the numbers are nats):
    -log p(x | h) = sum_d (x - m)^2 / (2 s^2) + log s + log(2 pi) / 2
    d/dm = (m - x) / s^2;   with a learned log-variance v = log s^2:  d/dv = (1 - (x - m)^2 / s^2) / 2

The floor of a learned variance, s >= SIGMA_MIN = 0.01. The decoder's head a gives v = max(a, LOG_VAR_MIN),
LOG_VAR_MIN = 2 log 0.01 = -9.21: the loss is exact above the floor, and below it the head gets no gradient
(dv/da = 0). Why: a Gaussian density on pixels is unbounded. MNIST has pixels that are 0 in every image (the
corners); there the mean fits exactly, (x - m)^2 -> 0, and the term log s keeps falling as s -> 0, so the loss
runs to -inf and the log-variance with it (until exp overflows and the loss turns NaN) while nothing is learned.
Grey levels are quantized in steps of 1/255 = 0.004, so a standard deviation below 0.01 describes no real
uncertainty of a pixel: 0.01 bounds each pixel's term below by log 0.01 + log(2 pi) / 2 = -3.69 nats and leaves
every real fit unchanged. (A fixed sigma is not bounded: it is the user's choice, any positive number.)
"""

from __future__ import annotations

import numpy as np

from .layers import sigmoid
from .sampling import std_from_log_var

LOG_2PI = float(np.log(2 * np.pi))
SIGMA_MIN = 0.01                              # the floor of a learned decoder standard deviation
LOG_VAR_MIN = float(2 * np.log(SIGMA_MIN))    # -9.2103: log-variance = max(head, LOG_VAR_MIN)


# ------------------------------------------------------------------------------------------ KL
def gaussian_kl(mu, log_var):
    """KL(N(mu, sigma^2) || N(0, I)) per example. mu, log_var: (N, Z) -> (N,)."""
    var = std_from_log_var(log_var) ** 2
    return -0.5 * np.sum(1 + log_var - mu * mu - var, axis=1)


def gaussian_kl_backward(dkl, mu, log_var):
    """dkl: (N,) upstream gradient -> (dmu, dlog_var), each (N, Z): dkl * mu, dkl * (sigma^2 - 1) / 2."""
    var = std_from_log_var(log_var) ** 2
    dkl = np.asarray(dkl)[:, None]
    return dkl * mu, dkl * 0.5 * (var - 1)


# ------------------------------------------------------------------------------------ Bernoulli
def bernoulli_nll(logits, x):
    """-log Bernoulli(x | sigmoid(logits)) summed over pixels. logits, x: (N, D) -> (N,)."""
    return np.sum(np.maximum(logits, 0) - logits * x + np.log1p(np.exp(-np.abs(logits))), axis=1)


def bernoulli_nll_backward(dloss, logits, x):
    """dloss: (N,) -> dlogits: (N, D) = dloss * (sigmoid(logits) - x)."""
    return np.asarray(dloss)[:, None] * (sigmoid(logits) - x)


# ------------------------------------------------------------------------------------- Gaussian
def floor_log_var(log_var_x):
    """The learned log-variance with its floor: max(log_var_x, LOG_VAR_MIN), i.e. sigma >= SIGMA_MIN. (N, D)."""
    return np.maximum(log_var_x, LOG_VAR_MIN)


def gaussian_nll(x, mean, log_var_x=None, sigma=1.0):
    """-log N(x | mean, s^2) summed over pixels. x, mean: (N, D) -> (N,).

    The variance is exp(max(log_var_x, LOG_VAR_MIN)) (N, D) when log_var_x is given (a learned decoder
    variance, floored at sigma = 0.01: see the module notes), else the fixed sigma^2.
    """
    if log_var_x is None:
        r2 = (x - mean) ** 2 / (sigma * sigma)
        return np.sum(0.5 * r2 + np.log(sigma) + 0.5 * LOG_2PI, axis=1)
    v = floor_log_var(log_var_x)
    r2 = (x - mean) ** 2 * np.exp(-v)
    return np.sum(0.5 * (r2 + v + LOG_2PI), axis=1)


def gaussian_nll_backward(dloss, x, mean, log_var_x=None, sigma=1.0):
    """dloss: (N,) -> dmean (N, D), and dlog_var_x (N, D) when the variance is learned (else None).

    dlog_var_x is the gradient w.r.t. the head before the floor: zero where log_var_x < LOG_VAR_MIN.
    """
    dloss = np.asarray(dloss)[:, None]
    if log_var_x is None:
        return dloss * (mean - x) / (sigma * sigma), None
    inv_var = np.exp(-floor_log_var(log_var_x))
    dmean = dloss * (mean - x) * inv_var
    dlog_var_x = dloss * 0.5 * (1 - (x - mean) ** 2 * inv_var)
    dlog_var_x[log_var_x < LOG_VAR_MIN] = 0   # below the floor the loss does not depend on the head
    return dmean, dlog_var_x
