"""vae_numpy: a Variational Autoencoder from scratch in NumPy.

Symbols used in every docstring:

    N  batch size (examples)          D  pixels per example (784 = 28 x 28 for MNIST)
    H  hidden width                   Z  latent size (latent_dim)
    x: (N, D) data in [0, 1]          h, z: (N, Z) latent codes (h = mu + sigma * eps)
    mu, log_var: (N, Z) the encoder's q(h | x) = N(mu, diag exp(log_var))
    eps: (N, Z) standard-normal noise  beta: weight of the KL term

The loss is the negative ELBO per example in nats, averaged over the batch:
    L = mean_n [ -log p(x_n | h_n) + beta * KL(q(h | x_n) || N(0, I)) ]

Files: layers.py (dense, activations), sampling.py (reparameterization), losses.py (likelihoods, KL),
iwae.py (the importance-weighted bound), models.py (VAE, Autoencoder), optim.py (Adam, SGD),
_kernels.py (Numba kernels and NumPy twins), gradcheck.py, datasets.py, train.py, checkpoint.py, explore.py,
plots.py, cli.py.
"""

from . import datasets, evaluation, gradcheck, iwae, layers, losses, sampling
from .checkpoint import load_checkpoint, load_model, save_model
from .errors import CheckpointError, ConfigError, DataError, TrainingDiverged, VAENumpyError, WriteError
from .evaluation import evaluate
from .models import VAE, Autoencoder
from .optim import SGD, Adam
from .train import resume, train

__version__ = "0.1.0"

# explore and plots are imported on first use (``vn.plots``, ``from vae_numpy import plots``): plots pulls in
# matplotlib, which is half of the import time and ~30 MB of a training process that never draws.
_LAZY_MODULES = ("explore", "plots")


def __getattr__(name):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'vae_numpy' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_MODULES))

# (`from vae_numpy import *` imports explore and plots too, hence matplotlib: __all__ lists them)
__all__ = [
    "VAE", "Autoencoder", "Adam", "SGD",
    "train", "resume", "evaluate", "evaluation", "save_model", "load_model", "load_checkpoint",
    "VAENumpyError", "ConfigError", "DataError", "CheckpointError", "TrainingDiverged",
    "WriteError",
    "datasets", "gradcheck", "iwae", "layers", "losses", "sampling", "explore", "plots",
    "__version__",
]
