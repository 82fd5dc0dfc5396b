"""What VAE and Autoencoder share: parameters in one flat buffer, MLP stacks, reusable workspaces.

Parameter names: ``enc1.W, enc1.b, ...`` for the encoder's hidden layers, the heads (``enc_mu``,
``enc_log_var`` for the VAE, ``enc_z`` for the autoencoder), ``dec1 ...`` for the decoder's hidden layers,
``dec_out`` for the decoder's output (Bernoulli logits or Gaussian mean) and ``dec_log_var`` for a
learned Gaussian decoder variance. Every array in ``params`` (and ``grads``) is a view into one
contiguous buffer, so the optimizer can update all of them in a single pass.
"""

from __future__ import annotations

import numpy as np

from ._validate import check_choice, check_dtype, check_float, check_int, check_matrix, check_rng
from .errors import ConfigError
from .layers import (
    ACTIVATIONS,
    INITS,
    activation_backward,
    activation_forward,
    dense_backward,
    dense_forward,
    init_bias,
    init_weights,
)

LIKELIHOODS = ("bernoulli", "gaussian")
HIDDEN_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a != "linear")


def _check_hidden_dims(hidden_dims):
    if isinstance(hidden_dims, int | np.integer):
        hidden_dims = (int(hidden_dims),)
    try:
        dims = tuple(hidden_dims)
    except TypeError:
        raise ConfigError(f"hidden_dims={hidden_dims!r} must be a sequence of positive integers, "
                          "e.g. (400,) or (512, 256)") from None
    for h in dims:
        check_int("each of hidden_dims", h)
    return tuple(int(h) for h in dims)


class Network:
    """Parameters, MLP helpers and workspaces for an encoder/decoder pair (see module docstring)."""

    kind = "network"

    def __init__(self, input_dim=784, hidden_dims=(400,), latent_dim=20, likelihood="bernoulli",
                 activation="relu", dtype="float32", seed=0, decoder_sigma=1.0, init="he-xavier"):
        self.input_dim = check_int("input_dim", input_dim)
        self.hidden_dims = _check_hidden_dims(hidden_dims)
        self.latent_dim = check_int("latent_dim", latent_dim)
        self.likelihood = check_choice("likelihood", likelihood, LIKELIHOODS)
        self.activation = check_choice("activation", activation, HIDDEN_ACTIVATIONS)
        self.dtype = check_dtype(dtype)
        self.init = check_choice("init", init, INITS)
        self.seed = seed
        self.rng = check_rng(seed)
        if decoder_sigma == "learned":
            if self.likelihood != "gaussian":
                raise ConfigError("decoder_sigma='learned' needs likelihood='gaussian' "
                                  "(a Bernoulli decoder has no variance)")
            self.decoder_sigma = "learned"
        elif isinstance(decoder_sigma, str):
            raise ConfigError(f"decoder_sigma={decoder_sigma!r} is unknown; give a positive number (a fixed "
                              "std, default 1.0) or 'learned' (a per-pixel log-variance head)")
        else:
            self.decoder_sigma = check_float("decoder_sigma", decoder_sigma, minimum=0.0, exclusive=True)
        self.enc_names = [f"enc{i + 1}" for i in range(len(self.hidden_dims))]
        self.dec_names = [f"dec{i + 1}" for i in range(len(self.hidden_dims))]
        self._ws = {}
        self._cache = None

    # -------------------------------------------------------------------------------- parameters
    def _build(self, layers):
        """layers: list of (name, in_dim, out_dim, activation after it) -> self.params / self.grads."""
        sizes = [i * o + o for _, i, o, _ in layers]
        self._flat_params = np.zeros(sum(sizes), dtype=self.dtype)
        self._flat_grads = np.zeros_like(self._flat_params)
        self.params, self.grads = {}, {}
        offset = 0
        for name, i, o, act in layers:
            for key, shape in ((f"{name}.W", (i, o)), (f"{name}.b", (o,))):
                n = int(np.prod(shape))
                self.params[key] = self._flat_params[offset:offset + n].reshape(shape)
                self.grads[key] = self._flat_grads[offset:offset + n].reshape(shape)
                offset += n
            self.params[f"{name}.W"][...] = init_weights(i, o, act, self.rng, self.dtype, self.init)
            self.params[f"{name}.b"][...] = init_bias(i, o, self.rng, self.dtype, self.init)

    @property
    def n_params(self):
        """The number of scalar parameters."""
        return self._flat_params.size

    def config(self):
        """The constructor's arguments, JSON-serializable (saved in checkpoints)."""
        return {"kind": self.kind, "input_dim": self.input_dim, "hidden_dims": list(self.hidden_dims),
                "latent_dim": self.latent_dim, "likelihood": self.likelihood, "activation": self.activation,
                "dtype": self.dtype.name, "seed": self.seed, "decoder_sigma": self.decoder_sigma, "init": self.init}

    # -------------------------------------------------------------------------------- workspaces
    def _buf(self, key, shape):
        """A reusable array for an intermediate result; reallocated only when its shape changes."""
        arr = self._ws.get(key)
        if arr is None or arr.shape != shape:
            arr = self._ws[key] = np.empty(shape, dtype=self.dtype)
        return arr

    # ------------------------------------------------------------------------------------- MLPs
    def _dense(self, name, x, act="linear", ws=False):
        """y = act(x @ W + b) for the layer `name`; x: (N, I) -> (y (N, O), cache).

        y gets its own workspace, not a's: the ReLU kernel runs ~4x slower in place (see _kernels).
        """
        W, b = self.params[f"{name}.W"], self.params[f"{name}.b"]
        shape = (x.shape[0], W.shape[1])
        a, dcache = dense_forward(x, W, b, out=self._buf(name, shape) if ws else None)
        y_buf = self._buf(f"{name}.y", shape) if ws and act != "linear" else None
        y, acache = activation_forward(act, a, out=y_buf)
        return y, (name, act, dcache, acache)

    def _dense_backward(self, dy, cache, need_dx=True):
        """dy: (N, O) -> dx: (N, I); fills grads[name.W], grads[name.b]. dy is not modified."""
        name, act, dcache, acache = cache
        da_buf = None if act == "linear" else self._buf(f"{name}.da", dy.shape)
        da = activation_backward(act, dy, acache, out=da_buf)
        x = dcache[0]
        dx_buf = self._buf(f"{name}.dx", x.shape) if need_dx else None
        dx, _, _ = dense_backward(da, dcache, dW=self.grads[f"{name}.W"], db=self.grads[f"{name}.b"],
                                  need_dx=need_dx, dx=dx_buf)
        return dx

    def _mlp(self, names, x, ws=False):
        """The hidden stack: x: (N, I) -> (h (N, H_last), caches)."""
        caches = []
        for name in names:
            x, cache = self._dense(name, x, self.activation, ws)
            caches.append(cache)
        return x, caches

    def _mlp_backward(self, dh, caches, need_dx=True):
        for k in range(len(caches) - 1, -1, -1):
            dh = self._dense_backward(dh, caches[k], need_dx=need_dx or k > 0)
        return dh

    # ---------------------------------------------------------------------------------- encoder
    def _encoder_forward(self, x, ws=False):
        """x: (N, D) -> (g (N, H_last): the encoder's features that the heads read, caches)."""
        return self._mlp(self.enc_names, x, ws)

    def _encoder_backward(self, dg, caches):
        """dg: (N, H_last) -> None; fills the encoder's gradients (x needs none)."""
        self._mlp_backward(dg, caches, need_dx=False)

    # ---------------------------------------------------------------------------------- decoder
    def _decoder_forward(self, z, ws=False):
        """z: (N, Z) -> (out (N, D): logits or Gaussian mean, log_var_x (N, D) or None, caches)."""
        g, caches = self._mlp(self.dec_names, z, ws)
        out, out_cache = self._dense("dec_out", g, ws=ws)
        log_var_x, lv_cache = None, None
        if self.decoder_sigma == "learned":
            log_var_x, lv_cache = self._dense("dec_log_var", g, ws=ws)
        return out, log_var_x, (caches, out_cache, lv_cache)

    def _decoder_backward(self, dout, dlog_var_x, caches):
        """dout, dlog_var_x: (N, D) -> dz: (N, Z)."""
        mlp_caches, out_cache, lv_cache = caches
        dg = self._dense_backward(dout, out_cache)
        if lv_cache is not None:  # g feeds the mean and the log-variance heads: the gradients add
            dg = dg + self._dense_backward(dlog_var_x, lv_cache)
        return self._mlp_backward(dg, mlp_caches)

    def decode(self, h):
        """h: (N, Z) codes -> (N, D): Bernoulli probabilities, or Gaussian means."""
        h = check_matrix("h", h, ncols=self.latent_dim, dtype=self.dtype)
        out, _, _ = self._decoder_forward(h)
        if self.likelihood == "bernoulli":
            from .layers import sigmoid
            return sigmoid(out)
        return out

    def sample(self, n, seed=0, rng=None):
        """n codes from the prior N(0, I), decoded -> (n, D) (probabilities or means, not binarized)."""
        n = check_int("n", n)
        rng = check_rng(seed, rng)
        return self.decode(rng.standard_normal((n, self.latent_dim)).astype(self.dtype))

    def _check_x(self, x):
        return check_matrix("x", x, ncols=self.input_dim, dtype=self.dtype, unit_interval=True)

    def save(self, path):
        """Write the model (config and parameters) to a .npz checkpoint, atomically (checkpoint.py)."""
        from .checkpoint import save_model
        return save_model(self, path)

    def backward(self):
        """Fill self.grads with dL/dparams for the last forward()."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first: loss = model.forward(x); model.backward()")
        self._backward()
