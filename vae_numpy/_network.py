"""What VAE and Autoencoder share: the encoder and decoder stacks, parameters in one flat buffer, workspaces.

Shapes: x: (N, D); g: (N, F) the encoder's features that the heads read; h: (N, Z); out: (N, D).

The model is built from layers (vae_numpy/nn): an encoder stack, the heads (a Dense each, owned by the model:
``enc_mu`` and ``enc_log_var`` for the VAE, ``enc_z`` for the autoencoder), a decoder stack and an output head
(``dec_out``: Bernoulli logits or Gaussian means; ``dec_log_var``, a copy of it, for a learned Gaussian
variance). Building is two phases: every part reports its parameter shapes, the model allocates one flat
buffer for all of them, then hands each part its views (``bind``) and initialises them in order (encoder,
heads, decoder, output) from the model's generator. So every array in ``params`` (and ``grads``) is a view
into one contiguous buffer, and the optimizer updates all of them in a single pass.

Parameter names: arch="mlp" keeps the names it always had, ``enc1.W, enc1.b, ..., enc_mu.W, ...,
dec1.W, ..., dec_out.W, dec_log_var.W`` (old checkpoints load, the same seed gives the same numbers);
other archs use paths, ``encoder.1.W``, ``decoder.0.b``, ``dec_out.0.W``.
"""

from __future__ import annotations

import numpy as np

from . import architectures
from ._validate import (
    available_memory,
    byte_size,
    check_choice,
    check_dtype,
    check_float,
    check_int,
    check_matrix,
    check_rng,
)
from .errors import ConfigError
from .layers import (
    ACTIVATIONS,
    INITS,
    activation_backward,
    activation_forward,
    dense_backward,
    dense_forward,
)
from .nn import Dense, Layer, Sequential, flat_buffers, from_config

LIKELIHOODS = ("bernoulli", "gaussian")
DEFAULT_HIDDEN = (400,)   # the MLP's default widths; compared by identity to tell "not given" from a choice
HIDDEN_ACTIVATIONS = tuple(a for a in ACTIVATIONS if a != "linear")
MAX_PARAMS = 2 ** 28   # 1 GiB of float32 (params, grads and Adam's m, v: 4 GiB): far above any model here


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


def param_shapes(config) -> dict:
    """The parameters a ``model.config()`` implies: name -> shape, in build order, computed without allocating.

    The one place the checkpoint loader and the command line ask (every arch: ``kind`` picks VAE or
    Autoencoder, whose ``plan(**rest)`` builds the layers' shapes only). The checkpoint loader checks every
    stored array's header against it before reading any data; the CLI checks the size before building.

    Raises
    ------
    ConfigError
        An unknown kind, arguments the model refuses, or more than MAX_PARAMS parameters in all (the message
        gives the count).
    """
    from .models import VAE, Autoencoder
    kinds = {"vae": VAE, "ae": Autoencoder}
    if not isinstance(config, dict):
        raise ConfigError(f"config={config!r} must be a dict, as model.config() returns")
    kind = config.get("kind")
    if kind not in kinds:
        raise ConfigError(f"the config's kind {kind!r} is unknown; expected 'vae' or 'ae'")
    try:
        shapes = kinds[kind].plan(**{k: v for k, v in config.items() if k != "kind"})
    except TypeError as exc:
        raise ConfigError(f"the config does not fit {kinds[kind].__name__} ({exc})") from None
    check_param_count(sum(int(np.prod(s, dtype=object)) for s in shapes.values()))
    return shapes


def check_param_count(n: int) -> int:
    """n parameters must be at most MAX_PARAMS (a ConfigError naming n and the bound otherwise)."""
    if n > MAX_PARAMS:
        raise ConfigError(f"the model would have {n:,} parameters ({4 * n / 2**30:,.1f} GiB in float32, four "
                          f"times that to train); at most {MAX_PARAMS:,} are allowed: choose smaller "
                          "hidden_dims / latent_dim")
    return n


def _as_layer(name, stack):
    """A Layer from a Layer, a layer config (dict) or a list of either (a Sequential)."""
    if isinstance(stack, Layer):
        return stack
    if isinstance(stack, dict):
        return from_config(stack)
    if isinstance(stack, list | tuple):
        return Sequential(list(stack))
    raise ConfigError(f"{name}={stack!r} must be a layer, a list of layers (vae_numpy.nn) or a layer config")


class Network:
    """Parameters, encoder/decoder stacks and workspaces for an encoder/decoder pair (see module docstring).

    arch : "mlp" (default; hidden_dims), "conv" (channels, dense) or "rnn" (state_size, cell), see
        vae_numpy/architectures.py; or pass encoder= and decoder= (any layer stacks, arch "custom").
    encoder : layers x: (N, D) -> g: (N, F); decoder : layers h: (N, Z) -> features;
    output : layer features -> (N, D) (default Dense(D)); a learned Gaussian variance gets a copy of it.
    """

    kind = "network"

    def __init__(self, input_dim=784, hidden_dims=DEFAULT_HIDDEN, latent_dim=20, likelihood="bernoulli",
                 activation="relu", dtype="float32", seed=0, decoder_sigma=1.0, init="he-xavier",
                 arch=None, encoder=None, decoder=None, output=None, arch_options=None, **options):
        self.input_dim = check_int("input_dim", input_dim)
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
        if not isinstance(arch_options, dict | None):
            raise ConfigError(f"arch_options={arch_options!r} must be a dict of the arch's options")
        self.arch_options = {**(arch_options or {}), **options}
        self._arch = self._resolve_arch(arch, encoder, decoder, output, hidden_dims)
        self.hidden_dims = tuple(self.arch_options.get("hidden_dims", ())) if self.arch == "mlp" else ()
        self.enc_names = [f"enc{i + 1}" for i in range(len(self.hidden_dims))]   # the MLP's layer names
        self.dec_names = [f"dec{i + 1}" for i in range(len(self.hidden_dims))]
        self._ws = {}
        self._cache = None

    def _resolve_arch(self, arch, encoder, decoder, output, hidden_dims):
        """An architectures.Arch from a name and its options, or from given encoder/decoder stacks."""
        if arch is not None and not isinstance(arch, str):
            raise ConfigError(f"arch={arch!r} must be a name: one of {', '.join(architectures.ARCHS)}")
        if encoder is not None or decoder is not None:
            if encoder is None or decoder is None:
                raise ConfigError("give both encoder= and decoder= (layer stacks), or neither (arch= builds them)")
            if hidden_dims is not DEFAULT_HIDDEN:
                raise ConfigError("hidden_dims applies to arch='mlp'; with encoder= and decoder= the layers "
                                  "give the sizes")
            self.arch = arch or "custom"
            out = Dense(self.input_dim) if output is None else _as_layer("output", output)
            return architectures.Arch(_as_layer("encoder", encoder), _as_layer("decoder", decoder), out,
                                      names="mlp" if self.arch == "mlp" else "path")
        if output is not None:
            raise ConfigError("output= goes with encoder= and decoder=; a named arch builds its own output head")
        self.arch = arch or "mlp"
        if hidden_dims is not DEFAULT_HIDDEN:
            if self.arch != "mlp":
                raise ConfigError(f"hidden_dims applies to arch='mlp', not arch={self.arch!r}; see "
                                  f"architectures.OPTIONS for {self.arch!r}'s options")
            self.arch_options["hidden_dims"] = hidden_dims
        if self.arch == "mlp":
            self.arch_options["hidden_dims"] = _check_hidden_dims(self.arch_options.get("hidden_dims", (400,)))
        return architectures.build(self.arch, self.input_dim, self.latent_dim, self.activation,
                                   self.arch_options)

    # -------------------------------------------------------------------------------- parameters
    def _build(self, heads):
        """heads: [(name, Dense)] read from the encoder's features -> self.params / self.grads.

        Builds every part for its input shape, allocates one flat buffer for all parameters, binds each
        part's views and initialises them in order (encoder, heads, decoder, output) from self.rng.
        """
        a, D, Z = self._arch, self.input_dim, self.latent_dim
        self.encoder, self.decoder, self.output = a.encoder, a.decoder, a.output
        g_shape = self.encoder.build((D,))
        if len(g_shape) != 1:
            raise ConfigError(f"the encoder must end in flat features (N, F), it gives (N, {g_shape}): "
                              "end it with nn.Flatten()")
        for _, head in heads:
            head.build(g_shape)
        f_shape = self.decoder.build((Z,))
        if self.output.build(f_shape) != (D,):
            raise ConfigError(f"the output head turns the decoder's {f_shape} into {self.output.out_shape}; "
                              f"it must give ({D},): end it with nn.Flatten() or a Dense({D})")
        self.output_log_var = None
        if self.decoder_sigma == "learned":
            self.output_log_var = from_config(self.output.config())
            self.output_log_var.build(f_shape)
        mlp = a.names == "mlp"
        self._parts = [("" if mlp else "encoder", self.encoder), *heads, ("" if mlp else "decoder", self.decoder),
                       ("dec_out", self.output)]
        if self.output_log_var is not None:
            self._parts.append(("dec_log_var", self.output_log_var))
        shapes = {}
        for prefix, layer in self._parts:
            for k, s in layer.param_shapes().items():
                shapes[f"{prefix}.{k}" if prefix else k] = tuple(int(d) for d in s)
        if getattr(self, "_plan_only", False):   # plan(): the shapes, nothing allocated
            self._planned = shapes
            return
        n = check_param_count(sum(int(np.prod(s, dtype=object)) for s in shapes.values()))
        try:
            self._flat_params, self._flat_grads, self.params, self.grads = flat_buffers(shapes, self.dtype)
        except MemoryError:
            raise ConfigError(f"not enough memory for {n:,} parameters ({2 * n * self.dtype.itemsize / 2**30:.1f} "
                              "GiB with their gradients); choose smaller hidden_dims / latent_dim") from None
        for prefix, layer in self._parts:
            keys = {k: f"{prefix}.{k}" if prefix else k for k in layer.param_shapes()}
            layer.bind({k: self.params[n] for k, n in keys.items()}, {k: self.grads[n] for k, n in keys.items()})
            layer.init_params(self.rng, self.dtype, self.init)

    @classmethod
    def plan(cls, **config):
        """Parameter name -> shape, in order, of the model these constructor arguments describe; nothing is
        allocated (checkpoints check sizes with it before building). E.g. VAE.plan(arch="conv", latent_dim=2)."""
        obj = cls.__new__(cls)
        obj._plan_only = True
        cls.__init__(obj, **config)
        return obj._planned

    def describe(self):
        """A short name of the architecture: "784-400-20" for the MLP, "conv 32,64 784->2", "custom 12->3"."""
        if self.arch == "mlp" and not self.arch_options.keys() - {"hidden_dims"}:
            return "-".join(str(d) for d in (self.input_dim, *self.hidden_dims, self.latent_dim))
        opts = " ".join(",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
                        for k, v in self.arch_options.items() if k != "hidden_dims")
        return f"{self.arch}{' ' + opts if opts else ''} {self.input_dim}->{self.latent_dim}"

    @property
    def n_params(self):
        """The number of scalar parameters."""
        return self._flat_params.size

    def config(self):
        """The constructor's arguments, JSON-serializable (saved in checkpoints): the layers as data."""
        cfg = {"kind": self.kind, "arch": self.arch, "input_dim": self.input_dim, "latent_dim": self.latent_dim,
               "likelihood": self.likelihood, "activation": self.activation, "dtype": self.dtype.name,
               "seed": self.seed, "decoder_sigma": self.decoder_sigma, "init": self.init}
        if self.arch == "mlp" and self._arch.names == "mlp":
            cfg["hidden_dims"] = list(self.hidden_dims)   # the MLP is rebuilt from hidden_dims, as always
            return cfg
        options = {k: list(v) if isinstance(v, tuple) else v for k, v in self.arch_options.items()}
        return {**cfg, "arch_options": options, "encoder": self.encoder.config(),
                "decoder": self.decoder.config(), "output": self.output.config()}

    # -------------------------------------------------------------------------------- workspaces
    def _buf(self, key, shape):
        """A reusable array for an intermediate result; reallocated only when its shape changes."""
        arr = self._ws.get(key)
        if arr is None or arr.shape != shape:
            arr = self._ws[key] = np.empty(shape, dtype=self.dtype)
        return arr

    # ----------------------------------------------------------------------------------- heads
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

    # ---------------------------------------------------------------------------------- encoder
    def _encoder_forward(self, x, ws=False):
        """x: (N, D) -> (g (N, F): the encoder's features that the heads read, caches)."""
        g = self.encoder.forward(x, ws)
        return g, self.encoder.cache

    def _encoder_backward(self, dg, caches):
        """dg: (N, F) -> None; fills the encoder's gradients (x needs none)."""
        self.encoder.cache = caches
        self.encoder.backward(dg, need_dx=False)

    # ---------------------------------------------------------------------------------- decoder
    def _decoder_forward(self, z, ws=False):
        """z: (N, Z) -> (out (N, D): logits or Gaussian mean, log_var_x (N, D) or None, caches)."""
        g = self.decoder.forward(z, ws)
        out = self.output.forward(g, ws)
        log_var_x, lv_cache = None, None
        if self.output_log_var is not None:
            log_var_x = self.output_log_var.forward(g, ws)
            lv_cache = self.output_log_var.cache
        return out, log_var_x, (self.decoder.cache, self.output.cache, lv_cache)

    def _decoder_backward(self, dout, dlog_var_x, caches):
        """dout, dlog_var_x: (N, D) -> dz: (N, Z)."""
        dec_cache, out_cache, lv_cache = caches
        self.output.cache = out_cache
        dg = self.output.backward(dout)
        if lv_cache is not None:  # g feeds the mean and the log-variance heads: the gradients add
            self.output_log_var.cache = lv_cache
            dg = dg + self.output_log_var.backward(dlog_var_x)
        self.decoder.cache = dec_cache
        return self.decoder.backward(dg)

    def _decoder_row_elements(self, backward=False):
        """Numbers one decoded row keeps alive in the decoder stack (the output head's D not included): each
        layer's outputs and caches (im2col's columns, a recurrent layer's gates), with backward their gradients."""
        return self.decoder.row_elements(backward)

    def _decode_row_bytes(self):
        """Bytes one decoded row needs at least: the code (and its float64 draw), the decoder stack, the logits
        and the result (D each)."""
        return (self.dtype.itemsize * (self.latent_dim + self._decoder_row_elements() + 2 * self.input_dim)
                + 8 * self.latent_dim)

    def _check_decode_memory(self, n, what, fix="ask for fewer, or call it in batches of at most {rows}"):
        """Refuse to decode n codes at once when even a lower bound of its memory is more than is free.

        The decoder runs on all n rows in one pass: n = 10^8 samples would need ~0.5 TB for 784 pixels.
        Requests under 64 MiB are never checked (reading the free memory costs more than decoding a few rows).
        `fix` names the remedy in the caller's terms; {rows} is the number of rows that fit.
        """
        row = self._decode_row_bytes()
        need = n * row
        if need < 64 * 2**20:
            return
        have = available_memory()
        if have is not None and need > have:
            raise ConfigError(f"{what} decodes {n:,} codes at once and needs at least {byte_size(need)}; "
                              f"{byte_size(have)} are free: " + fix.format(rows=f"{max(1, have // row):,}"))

    def decode(self, h):
        """h: (N, Z) codes -> (N, D): Bernoulli probabilities, or Gaussian means."""
        h = check_matrix("h", h, ncols=self.latent_dim, dtype=self.dtype)
        self._check_decode_memory(h.shape[0], f"decode(h) with {h.shape[0]:,} rows")
        return self._decode(h)

    def _decode(self, h):
        """decode() without its checks: h (N, Z) of the model's dtype."""
        out, _, _ = self._decoder_forward(h)
        if self.likelihood == "bernoulli":
            from .layers import sigmoid
            return sigmoid(out)
        return out

    def sample(self, n, seed=0, rng=None):
        """n codes from the prior N(0, I), decoded -> (n, D) (probabilities or means, not binarized)."""
        n = check_int("n", n)
        rng = check_rng(seed, rng)
        self._check_decode_memory(n, f"sample(n={n:,})")
        return self._decode(rng.standard_normal((n, self.latent_dim)).astype(self.dtype))

    def _check_x(self, x):
        return check_matrix("x", x, ncols=self.input_dim, dtype=self.dtype, unit_interval=True)

    def save(self, path, overwrite=False):
        """Write the model (config and parameters) to a .npz file, atomically (checkpoint.py); returns the path.

        An existing file is replaced only when it is a bare model file of vae_numpy, or with overwrite=True:
        a training checkpoint (which vn.resume needs) or any other file raises CheckpointError.
        """
        from .checkpoint import check_replaceable, save_model
        if not overwrite:
            check_replaceable(path)
        return save_model(self, path)

    def backward(self):
        """Fill self.grads with dL/dparams for the last forward()."""
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() first: loss = model.forward(x); model.backward()")
        self._backward()
