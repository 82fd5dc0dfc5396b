"""What the tutorial notebooks need beside the library: fast-mode settings, MNIST as float arrays, a latent-variable
model whose log p(x) is exact (notebook 01), and the timing helpers of notebook 06.

Shapes: x: (N, D) in [0, 1] (MNIST) or real (the linear-Gaussian model); mu, log_var: (N, Z); h: (N, K, Z)
with K samples per example. N examples, D pixels or observed dimensions, Z latent.

Fast mode: ``VAE_NUMPY_FAST=1`` (also true, yes, on) makes every notebook run top to bottom in seconds on less
data and fewer epochs (the notebook tests set it); unset, the notebooks produce the real results. Each notebook
writes ``n = tutorial.pick(fast=500, full=60_000)`` where the two settings differ.

The notebooks import this module and never define helpers of their own (STYLE.md, habit 10).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from . import losses, sampling
from ._validate import check_float, check_int, check_matrix, check_rng
from .datasets import EMBEDDED, flatten, is_offline, load_dataset, passed_over, to_unit
from .errors import ConfigError, DataError

FAST_ENV = "VAE_NUMPY_FAST"
LOG_2PI = losses.LOG_2PI


# ------------------------------------------------------------------------------------------ fast mode
def fast_mode() -> bool:
    """True when ``$VAE_NUMPY_FAST`` is 1, true, yes or on: the notebooks use less data and fewer epochs."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def pick(fast, full):
    """`fast` in fast mode (``VAE_NUMPY_FAST=1``), `full` otherwise: ``epochs = pick(fast=1, full=30)``."""
    return fast if fast_mode() else full


# ---------------------------------------------------------------------------------------------- data
@dataclass
class MNIST:
    """MNIST as the models take it: x_train (N, D) and x_test (M, D) floats in [0, 1], labels (N,), (M,) int64.

    name: the dataset the arrays came from ("mnist", or the embedded "mnist-5k" when MNIST is not available).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __repr__(self):
        return (f"MNIST(name={self.name!r}, x_train={self.x_train.shape} {self.x_train.dtype}, "
                f"x_test={self.x_test.shape} {self.x_test.dtype})")


def load_mnist(n_train=None, n_test=None, name=None, dtype="float32", download=True) -> MNIST:
    """MNIST digits as flat float arrays, in [0, 1].

    Shapes: returns x_train ``(n_train, 784)``, x_test ``(n_test, 784)`` in `dtype`, labels int64.

    Parameters
    ----------
    n_train, n_test : int, optional
        Keep the first n examples of each split (all when None). The embedded subset's order is shuffled,
        so any prefix mixes the digits.
    name : str, optional
        A dataset name for :func:`vae_numpy.datasets.load_dataset`. Default: the embedded ``"mnist-5k"``
        in fast mode, else ``"mnist"`` (found on disk or downloaded), falling back to ``"mnist-5k"`` with a
        message when it cannot be had (offline, say).
    """
    if name is None:
        name = EMBEDDED if fast_mode() else "mnist"
    try:
        (xtr, ytr), (xte, yte) = (load_dataset(name, split, download=download) for split in ("train", "test"))
    except DataError:
        if name == EMBEDDED:
            raise
        why = "downloads are off" if not download or is_offline() else "the download failed"
        damaged = passed_over(name)
        state = f"{name} on disk cannot be used ({damaged}) and" if damaged else f"{name} is not on disk and"
        print(f"{state} {why}: using the {EMBEDDED} digits embedded in vae_numpy instead "
              "(see vae_numpy.datasets for where the files are looked for)")
        name = EMBEDDED
        (xtr, ytr), (xte, yte) = (load_dataset(name, split) for split in ("train", "test"))
    n_train = len(xtr) if n_train is None else check_int("n_train", n_train)
    n_test = len(xte) if n_test is None else check_int("n_test", n_test)
    return MNIST(name, to_unit(flatten(xtr[:n_train]), dtype), ytr[:n_train],
                 to_unit(flatten(xte[:n_test]), dtype), yte[:n_test])


def print_epoch(model, history):
    """A :func:`vae_numpy.train` callback that prints one line per epoch (the notebooks train without a bar).

    A VAE's line splits the training loss into reconstruction and KL; an autoencoder has no KL term, and its
    line says only its loss (-log p(x | h) with h the code).
    """
    r = history[-1]
    val = "" if r.get("val_loss") is None else f"  test {r['val_loss']:8.2f}"
    parts = (f"  (reconstruction {r['reconstruction']:7.2f}, KL {r['kl']:6.2f})" if model.kind == "vae" else "")
    print(f"epoch {r['epoch']:3d}  train {r['train_loss']:8.2f}{parts}{val}  {r['seconds']:5.1f} s")


# ------------------------------------------------------------------------------- an exact model (01)
class LinearGaussian:
    """A latent-variable model whose evidence log p(x) and posterior p(h | x) are exact (probabilistic PCA).

    Shapes: W: (D, Z), b: (D,); x: (N, D); q(h | x) = N(mu, diag exp(log_var)) with mu, log_var: (N, Z).

    Notes
    -----
    The generative model, and what follows from it in closed form (s = noise_std)::

        h ~ N(0, I_Z),   x | h ~ N(W h + b, s^2 I_D)
        p(x)      = N(b, W W^T + s^2 I_D)
        p(h | x)  = N(m, P^-1),  P = I_Z + W^T W / s^2,  m = P^-1 W^T (x - b) / s^2
        ELBO(q)   = E_q[log p(x | h)] - KL(q || p(h))
                  = -D/2 log(2 pi s^2) - (|x - b - W mu|^2 + sum_j sigma_j^2 |W_j|^2) / (2 s^2) - KL(q || N(0, I))
        log p(x)  = ELBO(q) + KL(q || p(h | x))           for every q
        dELBO/dmu      = W^T (x - b - W mu) / s^2 - mu
        dELBO/dlog_var = -sigma^2 |W_j|^2 / (2 s^2) - (sigma^2 - 1) / 2

    The VAE replaces the linear decoder W h + b by a neural network (and p(x) is then intractable) and the
    per-example q by an encoder network mu(x), log_var(x).
    """

    def __init__(self, W, b, noise_std=0.5):
        self.W = check_matrix("W", W, dtype=np.float64)
        self.b = np.asarray(b, dtype=np.float64)
        if self.b.shape != (self.W.shape[0],):
            raise ConfigError(f"b has shape {self.b.shape}; expected ({self.W.shape[0]},) to match W {self.W.shape}")
        self.noise_std = check_float("noise_std", noise_std, minimum=0.0, exclusive=True)
        self.data_dim, self.latent_dim = self.W.shape
        s2 = self.noise_std ** 2
        self.precision = np.eye(self.latent_dim) + self.W.T @ self.W / s2      # P: (Z, Z)
        self.cov_x = self.W @ self.W.T + s2 * np.eye(self.data_dim)             # C: (D, D)

    @classmethod
    def random(cls, data_dim=5, latent_dim=2, noise_std=0.5, orthogonal=False, seed=0):
        """A model with random W (D, Z) and b (D,). orthogonal=True gives W orthogonal columns, so that W^T W and
        the posterior covariance are diagonal and a diagonal q can match the posterior exactly."""
        rng = check_rng(seed)
        W = rng.standard_normal((data_dim, latent_dim))
        if orthogonal:
            q, _ = np.linalg.qr(W)
            W = q * np.linspace(2.0, 1.0, latent_dim)
        return cls(W, rng.standard_normal(data_dim), noise_std)

    def sample(self, n, seed=0):
        """n draws of (x, h) from the model: x (n, D), h (n, Z)."""
        rng = check_rng(check_int("seed", seed, minimum=0))
        h = rng.standard_normal((check_int("n", n), self.latent_dim))
        return h @ self.W.T + self.b + self.noise_std * rng.standard_normal((n, self.data_dim)), h

    # ------------------------------------------------------------------------------ exact quantities
    def log_px(self, x):
        """The exact evidence log p(x) = log N(x | b, W W^T + s^2 I). x: (N, D) -> (N,)."""
        r = self._x(x) - self.b
        _, logdet = np.linalg.slogdet(self.cov_x)
        maha = np.sum(r * np.linalg.solve(self.cov_x, r.T).T, axis=1)
        return -0.5 * (self.data_dim * LOG_2PI + logdet + maha)

    def posterior(self, x):
        """The exact posterior p(h | x) = N(m, P^-1): m (N, Z) and the covariance P^-1 (Z, Z), the same for all x."""
        cov = np.linalg.inv(self.precision)
        return (self._x(x) - self.b) @ self.W @ cov / self.noise_std ** 2, cov

    def kl_to_posterior(self, x, mu, log_var):
        """KL(q(h | x) || p(h | x)) for q = N(mu, diag exp(log_var)). x: (N, D), mu, log_var: (N, Z) -> (N,).

        KL = 1/2 [ sum_j P_jj sigma_j^2 + (mu - m)^T P (mu - m) - Z - log det P - sum_j log sigma_j^2 ]
        """
        m, _ = self.posterior(x)
        d = mu - m
        _, logdet_p = np.linalg.slogdet(self.precision)
        var = np.exp(log_var)
        return 0.5 * (var @ np.diag(self.precision) + np.sum(d @ self.precision * d, axis=1)
                      - self.latent_dim - logdet_p - log_var.sum(axis=1))

    def elbo(self, x, mu, log_var):
        """The ELBO of q = N(mu, diag exp(log_var)), in closed form. x: (N, D), mu, log_var: (N, Z) -> (N,)."""
        x, s2 = self._x(x), self.noise_std ** 2
        r = x - self.b - mu @ self.W.T
        col2 = np.sum(self.W ** 2, axis=0)                                    # |W_j|^2: (Z,)
        expected_ll = (-0.5 * self.data_dim * (LOG_2PI + np.log(s2))
                       - (np.sum(r * r, axis=1) + np.exp(log_var) @ col2) / (2 * s2))
        return expected_ll - losses.gaussian_kl(mu, log_var)

    def elbo_grad(self, x, mu, log_var):
        """(dELBO/dmu, dELBO/dlog_var), each (N, Z), per example (see the class notes)."""
        x, s2 = self._x(x), self.noise_std ** 2
        r = x - self.b - mu @ self.W.T
        var = sampling.std_from_log_var(log_var) ** 2
        dmu_kl, dlog_var_kl = losses.gaussian_kl_backward(np.ones(len(x)), mu, log_var)
        return r @ self.W / s2 - dmu_kl, -var * np.sum(self.W ** 2, axis=0) / (2 * s2) - dlog_var_kl

    # ------------------------------------------------------------------------ Monte Carlo, as a VAE does
    def log_px_given_h(self, x, h):
        """log p(x | h) = log N(x | W h + b, s^2 I). x: (N, D), h: (N, K, Z) -> (N, K).

        The same number as ``-vn.losses.gaussian_nll(x, W h + b, sigma=s)`` for each h, computed with
        broadcasting instead of K copies of x.
        """
        x, s2 = self._x(x), self.noise_std ** 2
        r = x[:, None, :] - (h @ self.W.T + self.b)                         # (N, K, D)
        return -0.5 * (np.einsum("nkd,nkd->nk", r, r) / s2 + self.data_dim * (LOG_2PI + np.log(s2)))

    def log_posterior(self, x, h):
        """The exact log p(h | x) = log p(x | h) + log p(h) - log p(x). x: (N, D), h: (N, K, Z) -> (N, K)."""
        log_prior = -0.5 * np.sum(h * h + LOG_2PI, axis=2)
        return self.log_px_given_h(x, h) + log_prior - self.log_px(x)[:, None]

    def elbo_mc(self, x, mu, log_var, n_samples=1, seed=0):
        """The ELBO estimated as a VAE does: mean_k log p(x | h_k) - KL(q || N(0, I)), h_k = mu + sigma * eps_k.

        x: (N, D), mu, log_var: (N, Z) -> (N,). The reconstruction term is sampled with the package's
        reparameterization (vn.sampling), the KL is the package's closed form (vn.losses.gaussian_kl).
        """
        h = self._draw(mu, log_var, n_samples, seed)
        return self.log_px_given_h(x, h).mean(axis=1) - losses.gaussian_kl(mu, log_var)

    def log_px_importance(self, x, mu, log_var, n_samples=100, seed=0):
        """The importance-weighted bound (IWAE) with q as proposal: log 1/K sum_k p(x, h_k) / q(h_k | x). -> (N,).

        It is the ELBO for K = 1 in expectation, and tends to log p(x) as K grows (model.log_likelihood
        computes the same for a VAE).
        """
        h = self._draw(mu, log_var, n_samples, seed)
        log_prior = -0.5 * np.sum(h * h + LOG_2PI, axis=2)
        log_w = self.log_px_given_h(x, h) + log_prior - log_q(h, mu, log_var)
        m = log_w.max(axis=1, keepdims=True)
        return m[:, 0] + np.log(np.mean(np.exp(log_w - m), axis=1))

    def _draw(self, mu, log_var, n_samples, seed):
        """h: (N, K, Z) = mu + sigma * eps with eps from `seed`, through vn.sampling.reparameterize_forward."""
        K = check_int("n_samples", n_samples)
        N, Z = mu.shape
        eps = check_rng(seed).standard_normal((N, K, Z))
        h, _ = sampling.reparameterize_forward(mu[:, None, :], log_var[:, None, :], eps)   # broadcast over K
        return h

    def _x(self, x):
        return check_matrix("x", x, ncols=self.data_dim, dtype=np.float64)


def log_q(h, mu, log_var):
    """log N(h | mu, diag exp(log_var)). h: (N, K, Z), mu, log_var: (N, Z) -> (N, K)."""
    mu, log_var = mu[:, None, :], log_var[:, None, :]
    return -0.5 * np.sum((h - mu) ** 2 * np.exp(-log_var) + log_var + LOG_2PI, axis=2)


# ------------------------------------------------------------------------------------- profiling (06)
def time_epoch(model, x, batch_size=128, optimizer=None, seed=0):
    """One training epoch, as :func:`vae_numpy.train` runs it, timed phase by phase with time.perf_counter.

    x: (N, D) floats in the model's dtype. Each batch: gather the rows of a shuffled order and draw eps
    (``batch``), the forward pass (``forward``; ``model._forward``, which skips the input checks that the
    training loop does once per data set), ``model.backward()`` (``backward``) and ``optimizer.step``
    (``step``; an Adam with lr=1e-3 when None). Returns a dict of seconds for each phase, ``total``,
    ``n_batches`` and ``loss`` (the mean training loss of the epoch).
    """
    from .optim import Adam
    x = check_matrix("x", x, ncols=model.input_dim, dtype=model.dtype)
    B = check_int("batch_size", batch_size)
    opt = Adam(model.params, lr=1e-3) if optimizer is None else optimizer
    rng = check_rng(seed)
    order = rng.permutation(len(x))
    xb_buf = np.empty((min(B, len(x)), x.shape[1]), model.dtype)
    eps_buf = np.empty((min(B, len(x)), model.latent_dim), model.dtype)
    draw_eps = model.kind == "vae"
    times = dict.fromkeys(("batch", "forward", "backward", "step"), 0.0)
    loss, n_batches = 0.0, 0
    clock = time.perf_counter
    t_start = clock()
    for start in range(0, len(x), B):
        t0 = clock()
        idx = order[start:start + B]
        xb = np.take(x, idx, axis=0, out=xb_buf[:len(idx)])
        eps = rng.standard_normal(dtype=model.dtype, out=eps_buf[:len(idx)]) if draw_eps else None
        t1 = clock()
        loss += model._forward(xb, eps)
        t2 = clock()
        model.backward()
        t3 = clock()
        opt.step(model.grads)
        t4 = clock()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[key] += dt
        n_batches += 1
    return {**times, "total": clock() - t_start, "n_batches": n_batches, "loss": loss / max(n_batches, 1)}


def matmul_floor(model, n_examples, batch_size=128, repeat=1):
    """Seconds an epoch of N examples spends in the matrix products alone: the floor under any implementation.

    Every dense layer (I, O) does x @ W (B, I)(I, O) forward and x^T @ dout, dout @ W^T backward (the first
    layer skips dx). The products are timed on random arrays of the model's dtype, `repeat` times (the best).
    """
    N, B = check_int("n_examples", n_examples), check_int("batch_size", batch_size)
    rng = np.random.default_rng(0)
    first = next(iter(model.params))
    arrays = []
    for key, W in ((k, p) for k, p in model.params.items() if k.endswith(".W")):
        I, O = W.shape
        x, dout = (rng.standard_normal(s).astype(model.dtype) for s in ((B, I), (B, O)))
        arrays.append((x, W, dout, key == first))
    n_batches = -(-N // B)
    best = float("inf")
    for _ in range(check_int("repeat", repeat)):
        t0 = time.perf_counter()
        for _ in range(n_batches):
            for x, W, dout, is_first in arrays:
                x @ W
                x.T @ dout
                if not is_first:
                    dout @ W.T
        best = min(best, time.perf_counter() - t0)
    return best
