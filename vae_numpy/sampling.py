"""The reparameterization trick: h = mu + sigma * eps, forward and backward.

Shapes: mu, log_var, eps, h: (N, Z).

The encoder emits the log-variance log sigma^2; :func:`std_from_log_var` is the one place that turns it
into sigma = exp(log_var / 2), used by the sampler, its backward, and the KL (losses.py).

Backward (eps is the very draw of the forward pass, kept in the cache, never drawn again):
    dL/dmu      = dL/dh                       (dh/dmu = 1)
    dL/dlog_var = dL/dh * eps * sigma / 2     (dh/dlog_var = eps * d sigma / d log_var = eps * sigma / 2)
"""

from __future__ import annotations

import numpy as np


def std_from_log_var(log_var, out=None):
    """sigma = exp(log_var / 2). log_var: (N, Z) -> sigma: (N, Z)."""
    return np.exp(np.multiply(log_var, 0.5, out=out), out=out)


def reparameterize_forward(mu, log_var, eps):
    """h = mu + sigma * eps.

    mu, log_var, eps: (N, Z) -> h: (N, Z), cache = (eps, sigma).
    """
    sigma = std_from_log_var(log_var)
    h = mu + sigma * eps
    return h, (eps, sigma)


def reparameterize_backward(dh, cache):
    """dh: (N, Z) -> (dmu, dlog_var), each (N, Z): dmu = dh, dlog_var = dh * eps * sigma / 2."""
    eps, sigma = cache
    dmu = dh.copy()
    dlog_var = 0.5 * dh * eps * sigma
    return dmu, dlog_var
