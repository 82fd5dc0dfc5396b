"""Dense layers and activations, each a forward/backward pair (cs231n style).

Shapes: x: (N, I) a batch of N inputs, W: (I, O), b: (O,), y: (N, O).

Every ``*_forward`` returns ``(out, cache)``; the matching ``*_backward(dout, cache)`` returns the
gradient with respect to the input and never mutates ``dout`` or the cache. Activations keep only their
output y in the cache, because each derivative can be written with y alone (so they may run in place):

    relu        y = max(a, 0)                 da = dy * [y > 0]
    leaky_relu  y = a if a > 0 else s a       da = dy * (1 if y > 0 else s),  s = 0.01
    tanh        y = tanh(a)                   da = dy * (1 - y^2)
    sigmoid     y = 1 / (1 + exp(-a))         da = dy * y (1 - y)
    softplus    y = log(1 + exp(a))           da = dy * sigmoid(a) = dy * (1 - exp(-y))
    linear      y = a                         da = dy
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from ._validate import check_choice, check_int
from .errors import ConfigError

LEAKY_SLOPE = 0.01


# ---------------------------------------------------------------------------------------- dense
def dense_forward(x, W, b, out=None):
    """y = x @ W + b.

    x: (N, I), W: (I, O), b: (O,) -> y: (N, O) (written into `out` when given). cache = (x, W).
    """
    y = np.matmul(x, W, out=out)
    if y.ndim != 2 or getattr(b, "shape", None) != (y.shape[1],):
        raise ConfigError(f"dense_forward: x {np.shape(x)} @ W {np.shape(W)} gives {y.shape}; it needs x of "
                          f"shape (N, I) and b of shape (O,) = ({y.shape[-1]},), got b {np.shape(b)}")
    _kernels.K.add_bias(y, b)                 # y += b, every row
    return y, (x, W)


def dense_backward(dout, cache, dW=None, db=None, need_dx=True, dx=None):
    """Gradients of y = x @ W + b.

    dout: (N, O).  Returns (dx (N, I) or None, dW (I, O), db (O,)):
    dx = dout @ W^T,  dW = x^T @ dout,  db = sum_n dout.  dW/db/dx are filled in place when given.
    need_dx=False skips dx (the first layer has no use for the gradient of the data).
    """
    x, W = cache
    dW = np.matmul(x.T, dout, out=dW)
    db = _kernels.K.sum_rows(dout, np.empty_like(dout, shape=dout.shape[1:]) if db is None else db)
    dx_ = np.matmul(dout, W.T, out=dx) if need_dx else None
    return dx_, dW, db


# ---------------------------------------------------------------------------------- activations
def _relu_forward(a, out=None):
    y = _kernels.K.leaky_relu_forward(a, a.dtype.type(0), np.empty_like(a) if out is None else out)
    return y, y


def _relu_backward(dy, y, out=None):
    return _kernels.K.leaky_relu_backward(dy, y, dy.dtype.type(0), np.empty_like(dy) if out is None else out)


def _leaky_relu_forward(a, out=None):
    s = a.dtype.type(LEAKY_SLOPE)
    y = _kernels.K.leaky_relu_forward(a, s, np.empty_like(a) if out is None else out)
    return y, y


def _leaky_relu_backward(dy, y, out=None):
    s = dy.dtype.type(LEAKY_SLOPE)
    return _kernels.K.leaky_relu_backward(dy, y, s, np.empty_like(dy) if out is None else out)


def _tanh_forward(a, out=None):
    y = np.tanh(a, out=out)
    return y, y


def _tanh_backward(dy, y, out=None):
    if _fusable(dy, y, out):   # one pass (Numba) instead of three, the same bits
        return _kernels.K.tanh_backward(dy, y, dy.dtype.type(1), np.empty_like(dy) if out is None else out)
    return np.multiply(dy, 1 - y * y, out=out)


def _sigmoid_forward(a, out=None):
    y = sigmoid(a, out=out)
    return y, y


def _sigmoid_backward(dy, y, out=None):
    if _fusable(dy, y, out):
        return _kernels.K.sigmoid_backward(dy, y, dy.dtype.type(1), np.empty_like(dy) if out is None else out)
    return np.multiply(dy, y * (1 - y), out=out)


def _fusable(dy, y, out):
    """The fused kernels take 2-D float arrays of one shape and dtype; anything else (a broadcast, mixed
    dtypes, a student's 1-D array) goes through NumPy's expression."""
    return (isinstance(dy, np.ndarray) and isinstance(y, np.ndarray) and dy.ndim == 2 and dy.shape == y.shape
            and dy.dtype == y.dtype and dy.dtype in (np.float32, np.float64)
            and (out is None or (out.shape == dy.shape and out.dtype == dy.dtype)))


def _softplus_forward(a, out=None):
    # log(1 + e^a) = max(a, 0) + log1p(e^{-|a|}): finite for any a
    y = np.add(np.maximum(a, 0), np.log1p(np.exp(-np.abs(a))), out=out)
    return y, y


def _softplus_backward(dy, y, out=None):
    return np.multiply(dy, -np.expm1(-y), out=out)   # 1 - e^{-y} = sigmoid(a), accurate for small y


def _linear_forward(a, out=None):
    if out is None or out is a:
        return a, None
    np.copyto(out, a)
    return out, None


def _linear_backward(dy, cache, out=None):
    return dy  # the identity: no copy (nobody writes into the gradient it returns)


def sigmoid(a, out=None):
    """Logistic function 1 / (1 + exp(-a)), stable for any a (no overflow warning). a: any shape."""
    e = np.exp(-np.abs(a))
    pos = 1 / (1 + e)
    y = np.where(a >= 0, pos, e * pos)
    if out is None:
        return y
    np.copyto(out, y)
    return out


ACTIVATIONS = {
    "relu": (_relu_forward, _relu_backward),
    "leaky_relu": (_leaky_relu_forward, _leaky_relu_backward),
    "tanh": (_tanh_forward, _tanh_backward),
    "sigmoid": (_sigmoid_forward, _sigmoid_backward),
    "softplus": (_softplus_forward, _softplus_backward),
    "linear": (_linear_forward, _linear_backward),
}


def _activation(name):
    """The (forward, backward) pair of a named activation; an unknown name is a ConfigError."""
    pair = ACTIVATIONS.get(name) if isinstance(name, str) else None
    return pair if pair is not None else ACTIVATIONS[check_choice("activation", name, tuple(ACTIVATIONS))]


def activation_forward(name, a, out=None):
    """y = act(a) for a named activation. a: (N, H) -> (y (N, H), cache). `out` may be `a` (in place)."""
    return _activation(name)[0](a, out)


def activation_backward(name, dy, cache, out=None):
    """da = dy * act'(a), from the cache of :func:`activation_forward`. dy: (N, H) -> (N, H)."""
    return _activation(name)[1](dy, cache, out)


INITS = ("he-xavier", "torch")


def init_weights(in_dim, out_dim, activation, rng, dtype, init="he-xavier"):
    """W: (in_dim, out_dim) drawn for the activation that follows the layer.

    init="he-xavier" (the default): He (Kaiming) normal, std = sqrt(2 / in_dim), before relu and leaky_relu;
    Xavier (Glorot) normal, std = sqrt(2 / (in_dim + out_dim)), before tanh, sigmoid, softplus and linear outputs.
    init="torch": PyTorch's nn.Linear default whatever the activation, W ~ U(-1/sqrt(in_dim), +1/sqrt(in_dim))
    (kaiming_uniform_ with a = sqrt(5)); its variance 1 / (3 in_dim) is a sixth of He's.
    """
    if check_choice("init", init, INITS) == "torch":
        return _torch_uniform(in_dim, (in_dim, out_dim), rng, dtype)
    if activation in ("relu", "leaky_relu"):
        std = np.sqrt(2.0 / in_dim)
    else:
        std = np.sqrt(2.0 / (in_dim + out_dim))
    return (rng.standard_normal((in_dim, out_dim)) * std).astype(dtype)


def init_bias(in_dim, out_dim, rng, dtype, init="he-xavier"):
    """b: (out_dim,): zeros for "he-xavier"; U(-1/sqrt(in_dim), +1/sqrt(in_dim)) for "torch" (nn.Linear's)."""
    if check_choice("init", init, INITS) == "torch":
        return _torch_uniform(in_dim, (out_dim,), rng, dtype)
    return np.zeros(out_dim, dtype=dtype)


def _torch_uniform(in_dim, shape, rng, dtype):
    """U(-1/sqrt(in_dim), +1/sqrt(in_dim)) of the given shape: nn.Linear's default for W and b."""
    bound = 1.0 / np.sqrt(in_dim)
    return rng.uniform(-bound, bound, shape).astype(dtype)


class Dense:
    """A dense layer followed by an activation: y = act(x @ W + b).

    The layer owns W: (I, O), b: (O,) and their gradients dW, db; ``forward(x)`` keeps the cache of the
    last call and ``backward(dout)`` fills dW, db and returns dx.  (Models use the functions above and
    keep their own caches; this class is the object students build networks from.)
    """

    def __init__(self, in_dim, out_dim, activation="linear", rng=None, dtype="float32", init="he-xavier"):
        check_int("in_dim", in_dim)
        check_int("out_dim", out_dim)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        rng = np.random.default_rng(0) if rng is None else rng
        self.W = init_weights(in_dim, out_dim, activation, rng, dtype, init)
        self.b = init_bias(in_dim, out_dim, rng, self.W.dtype, init)
        self.dW = np.zeros_like(self.W)
        self.db = np.zeros_like(self.b)
        self._cache = None

    @property
    def params(self):
        return {"W": self.W, "b": self.b}

    @property
    def grads(self):
        return {"W": self.dW, "b": self.db}

    def forward(self, x):
        """x: (N, I) -> y: (N, O)."""
        a, dense_cache = dense_forward(x, self.W, self.b)
        y, act_cache = activation_forward(self.activation, a)
        self._cache = (dense_cache, act_cache)
        return y

    def backward(self, dout):
        """dout: (N, O) -> dx: (N, I); fills self.dW, self.db."""
        if self._cache is None:
            raise RuntimeError("call forward() before backward()")
        dense_cache, act_cache = self._cache
        da = activation_backward(self.activation, dout, act_cache)
        dx, _, _ = dense_backward(da, dense_cache, dW=self.dW, db=self.db)
        return dx
