"""arch="mlp" stays bit for bit: trained parameters pinned by SHA-256, recorded on the code before the
models-from-layers redesign (commit 9b3cd9e + the _encoder_forward hook), at one BLAS thread.

Any change to the MLP's initialisation order, its kernels or the training loop's use of the generator shows
here. The hashes were recorded on this project's 2-core x86-64 machines (OpenBLAS from numpy's wheel); a BLAS
that sums in another order gives other bits, which is why the thread count is pinned.
"""

import hashlib

import numpy as np
import pytest

import vae_numpy as vn

threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl pins the BLAS to one thread")

PINNED = {
    "vae-bernoulli-f32": "06fcbf1c804b9564d8604c803f50073e83b8e760e1c9aa64a9487d22c114c151",
    "vae-gaussian-learned-f64": "52a3df8bbf91a035de17765b87e58e1f01ef81464ae36c285dc6fc92a4124678",
    "ae-bernoulli-f32": "0ba91ba3d1bf0a2146d2fb40bef9af8cf6440fefdcb9fbeb0cd7aeb87cdef508",
    "vae-deep-tanh-f32-torch": "c2aaddc7953393b63fbdcc8825b77ad9c3c121341875c786a30c15c940c0af3c",
}


def _digest(model):
    h = hashlib.sha256()
    for name in sorted(model.params):
        h.update(name.encode())
        h.update(np.ascontiguousarray(model.params[name]).tobytes())
    return h.hexdigest()


def _case(name):
    x, _ = vn.datasets.load_dataset("mnist-5k", "train")
    x = x[:640]
    if name == "vae-bernoulli-f32":
        model = vn.VAE(hidden_dims=(400,), latent_dim=20, seed=0)
    elif name == "vae-gaussian-learned-f64":
        model = vn.VAE(hidden_dims=(64,), latent_dim=8, likelihood="gaussian", decoder_sigma="learned",
                       dtype="float64", seed=1)
    elif name == "ae-bernoulli-f32":
        model = vn.Autoencoder(hidden_dims=(128,), latent_dim=16, seed=2)
    else:
        model = vn.VAE(hidden_dims=(200, 100), latent_dim=10, activation="tanh", init="torch", seed=3)
    with threadpoolctl.threadpool_limits(1):
        vn.train(model, x, None, epochs=2, batch_size=128, seed=4, progress=False)
    return model


@pytest.mark.parametrize("name", sorted(PINNED))
def test_trained_parameters_are_pinned(name):
    assert _digest(_case(name)) == PINNED[name]
