"""The layer contract: every building block of an encoder or a decoder is a ``Layer``.

Shapes: per-example shapes exclude the batch axis, e.g. ``in_shape = (784,)``, ``(1, 28, 28)`` (C, H, W) or
``(28, 28)`` (T, F); arrays are batch-first, ``x: (N, *in_shape) -> y: (N, *out_shape)``.

Building is two phases, so that a model can hold every parameter in one flat buffer:

1. ``out_shape = layer.build(in_shape)`` fixes the shapes; ``layer.param_shapes()`` then lists the
   parameters (local name -> shape, in initialisation order), without allocating anything.
2. The model allocates its flat ``params`` / ``grads`` buffers and hands each layer its views,
   ``layer.bind(params, grads)`` (dicts by local name), then ``layer.init_params(rng, dtype, init)`` fills
   ``layer.params`` in place, drawing from the model's generator in a fixed order.

``forward(x, ws=None)`` keeps what ``backward`` needs in ``layer.cache``; ``backward(dy, need_dx=True)``
returns dx (None when ``need_dx`` is False) and WRITES (does not accumulate) ``layer.grads``. A backward never
modifies dy or the cache. ``ws=True`` lets a layer reuse its own output buffers from call to call (the
training loop's way of allocating nothing per batch); an array returned with ``ws=True`` is overwritten by
the layer's next ``ws=True`` call.

``config()`` is JSON data, ``{"type": "Conv2d", ...}``; :func:`from_config` rebuilds a layer from it through
a registry of known types: a checkpoint stores its architecture as data, never as code.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

REGISTRY: dict = {}


def register(cls):
    """Class decorator: make ``cls`` constructible by :func:`from_config` under ``cls.__name__``."""
    REGISTRY[cls.__name__] = cls
    return cls


def from_config(config):
    """A fresh (unbuilt) layer from ``layer.config()``; unknown types and bad values are ConfigErrors."""
    if not isinstance(config, dict) or not isinstance(config.get("type"), str):
        raise ConfigError(f"a layer config must be a dict with a 'type' name, got {config!r}")
    cls = REGISTRY.get(config["type"])
    if cls is None:
        raise ConfigError(f"layer type {config['type']!r} is unknown; known types: {sorted(REGISTRY)}")
    kwargs = {k: v for k, v in config.items() if k != "type"}
    try:
        return cls.from_config(kwargs)
    except TypeError as exc:
        raise ConfigError(f"layer config {config!r} does not fit {cls.__name__} ({exc})") from None


def check_shape(name, shape):
    """A per-example shape: a tuple of positive ints."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ConfigError(f"{name}={shape!r} must be a tuple of positive integers") from None
    if not shape or min(shape) < 1:
        raise ConfigError(f"{name}={shape!r} must be a non-empty tuple of positive integers")
    return shape


class Layer:
    """A forward/backward pair that declares its own parameters (see the module docstring).

    Subclasses override ``_out_shape``, ``param_shapes``, ``_init``, ``forward``, ``backward`` and
    ``config``; a layer without parameters keeps the defaults of the parameter methods.
    """

    def __init__(self):
        self.in_shape = None
        self.out_shape = None
        self.params, self.grads = {}, {}
        self.cache = None
        self._ws = {}

    # ------------------------------------------------------------------ building
    def build(self, in_shape):
        """in_shape: per-example input shape -> per-example output shape (remembered, with in_shape)."""
        self.in_shape = check_shape(f"{type(self).__name__} input shape", in_shape)
        self.out_shape = tuple(self._out_shape(self.in_shape))
        return self.out_shape

    def _out_shape(self, in_shape):
        return in_shape

    def param_shapes(self):
        """Local name -> shape, in initialisation order, e.g. {"W": (I, O), "b": (O,)}. Needs build()."""
        return {}

    def bind(self, params, grads):
        """Take the model's views (dicts by local name, the shapes of param_shapes())."""
        want = self.param_shapes()
        for d, what in ((params, "params"), (grads, "grads")):
            if set(d) != set(want) or any(d[k].shape != tuple(s) for k, s in want.items()):
                raise ConfigError(f"{type(self).__name__}.bind: {what} {_shapes(d)} do not match "
                                  f"param_shapes() {want}")
        self.params, self.grads = dict(params), dict(grads)

    def init_params(self, rng, dtype, init="he-xavier"):
        """Fill self.params in place, drawing from rng in a fixed order (needs bind())."""
        for name, value in self._init(rng, np.dtype(dtype), init).items():
            self.params[name][...] = value

    def _init(self, rng, dtype, init):
        return {}

    def n_params(self):
        return sum(int(np.prod(s)) for s in self.param_shapes().values())

    def row_elements(self, backward=False):
        """Numbers one example (row) keeps alive in this layer: a lower bound for the memory checks.

        Default: its output, prod(out_shape); with backward, also the gradient it hands down, prod(in_shape).
        Layers with larger caches (im2col's columns, a recurrent layer's per-step gates) count those too; a
        reshape that returns views counts nothing. Needs build().
        """
        n = int(np.prod(self.out_shape))
        return n + (int(np.prod(self.in_shape)) if backward else 0)

    # ------------------------------------------------------------------ computing
    def forward(self, x, ws=None):
        raise NotImplementedError

    def backward(self, dy, need_dx=True):
        raise NotImplementedError

    def _buf(self, key, shape, dtype, ws):
        """An output array: this layer's reusable one when ws, else a fresh one."""
        if not ws:
            return np.empty(shape, dtype=dtype)
        arr = self._ws.get(key)
        if arr is None or arr.shape != shape or arr.dtype != dtype:
            arr = self._ws[key] = np.empty(shape, dtype=dtype)
        return arr

    def _check_input(self, x):
        if self.in_shape is None:
            raise RuntimeError(f"{type(self).__name__}: call build(in_shape) before forward()")
        if x.shape[1:] != self.in_shape:
            raise ConfigError(f"{type(self).__name__} was built for inputs of shape (N, "
                              f"{', '.join(map(str, self.in_shape))}), got {x.shape}")

    # ------------------------------------------------------------------ data
    def config(self):
        return {"type": type(self).__name__}

    @classmethod
    def from_config(cls, kwargs):
        return cls(**kwargs)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


def _shapes(d):
    return {k: tuple(v.shape) for k, v in d.items()}


@register
class Sequential(Layer):
    """A stack of layers is a layer: y = f_L(... f_2(f_1(x))); backward runs the chain rule in reverse.

    Parameter local names are ``<child name>.<its local name>``; children are named "0", "1", ... unless
    ``names`` are given (the MLP's "enc1", "enc2", ... keep old checkpoints loadable).
    """

    def __init__(self, layers, names=None):
        super().__init__()
        self.layers = [from_config(c) if isinstance(c, dict) else c for c in layers]
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise ConfigError(f"Sequential takes Layers, got {layer!r}")
        self.names = [str(i) for i in range(len(self.layers))] if names is None else [str(n) for n in names]
        if len(self.names) != len(self.layers) or len(set(self.names)) != len(self.names):
            raise ConfigError(f"Sequential: names {self.names} must be unique, one per layer")

    def _out_shape(self, in_shape):
        for layer in self.layers:
            in_shape = layer.build(in_shape)
        # backward stops below the first layer with parameters when dx is not needed
        self._first = next((k for k, layer in enumerate(self.layers) if layer.param_shapes()), len(self.layers))
        return in_shape

    def param_shapes(self):
        return {f"{n}.{k}": s for n, layer in zip(self.names, self.layers, strict=True)
                for k, s in layer.param_shapes().items()}

    def bind(self, params, grads):
        super().bind(params, grads)
        for n, layer in zip(self.names, self.layers, strict=True):
            keys = layer.param_shapes()
            layer.bind({k: params[f"{n}.{k}"] for k in keys}, {k: grads[f"{n}.{k}"] for k in keys})

    def init_params(self, rng, dtype, init="he-xavier"):
        for layer in self.layers:
            layer.init_params(rng, dtype, init)

    @property
    def cache(self):
        return tuple(layer.cache for layer in self.layers) if hasattr(self, "layers") else None

    @cache.setter
    def cache(self, value):
        if value is not None and hasattr(self, "layers"):
            for layer, c in zip(self.layers, value, strict=True):
                layer.cache = c

    def forward(self, x, ws=None):
        for layer in self.layers:
            x = layer.forward(x, ws)
        return x

    def row_elements(self, backward=False):
        return sum(layer.row_elements(backward) for layer in self.layers)

    def backward(self, dy, need_dx=True):
        first = self._first   # below it only dx is left to compute: skipped unless asked for
        for k in range(len(self.layers) - 1, -1, -1):
            if k < first and not need_dx:
                return None
            dy = self.layers[k].backward(dy, need_dx=need_dx or k > first)
        return dy

    def config(self):
        cfg = {"type": "Sequential", "layers": [layer.config() for layer in self.layers]}
        if self.names != [str(i) for i in range(len(self.layers))]:
            cfg["names"] = list(self.names)
        return cfg

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]


def flat_buffers(shapes, dtype):
    """One flat params and one flat grads buffer for {name: shape}, and dicts of views into them, in order.

    Returns (flat_params, flat_grads, params, grads): every params[name] is a view of flat_params.
    """
    sizes = [int(np.prod(s)) for s in shapes.values()]
    flat_p = np.zeros(sum(sizes), dtype=dtype)
    flat_g = np.zeros_like(flat_p)
    params, grads, offset = {}, {}, 0
    for (name, shape), n in zip(shapes.items(), sizes, strict=True):
        params[name] = flat_p[offset:offset + n].reshape(shape)
        grads[name] = flat_g[offset:offset + n].reshape(shape)
        offset += n
    return flat_p, flat_g, params, grads


def materialize(layer, in_shape, dtype="float64", seed=0, init="he-xavier"):
    """Build a standalone layer: build(in_shape), its own flat buffers, bind, init from default_rng(seed)."""
    layer.build(in_shape)
    _, _, params, grads = flat_buffers(layer.param_shapes(), np.dtype(dtype))
    layer.bind(params, grads)
    layer.init_params(np.random.default_rng(seed), np.dtype(dtype), init)
    return layer
