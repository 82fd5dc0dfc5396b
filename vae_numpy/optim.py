"""Optimizers that update a model's parameter arrays in place.

The contract (cs231n's ``update(w, dw, config)``, as objects): ``opt = Adam(model.params, ...)`` keeps
references to the live arrays; ``opt.step(model.grads)`` updates every array in place from the gradients
with the same names. ``state_dict()`` / ``load_state_dict()`` hold everything a resumed run needs.

The per-element loops run in ``_kernels`` (Numba, or their NumPy twins with ``VAE_NUMPY_JIT=0``).
When all parameters are views into one contiguous buffer (as in VAE and Autoencoder), the update is a
single pass over that buffer.
"""

from __future__ import annotations

import numpy as np

from . import _kernels
from ._validate import check_float
from .errors import ConfigError


def _shared_buffer(arrays):
    """The 1-D base array when `arrays` are consecutive views covering it exactly, else None."""
    base = arrays[0].base if arrays else None
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    offset = 0
    start = base.__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or not a.flags.c_contiguous or a.dtype != base.dtype:
            return None
        if a.__array_interface__["data"][0] != start + offset * base.itemsize:
            return None
        offset += a.size
    return base if offset == base.size else None


class Optimizer:
    """Shared bookkeeping: the parameters, their names, and the check of the gradients."""

    def __init__(self, params, lr):
        if not isinstance(params, dict) or not params:
            raise ConfigError("params must be a non-empty dict name -> ndarray, e.g. model.params")
        self.params = params
        self.names = list(params)
        self.lr = check_float("lr", lr, minimum=0.0, exclusive=True)
        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
            raise ConfigError(f"parameters must share one floating dtype; got {sorted(map(str, dtypes))}")
        self.dtype = next(iter(dtypes))
        self._flat = _shared_buffer([params[n] for n in self.names])
        self.t = 0

    def _state_like(self):
        if self._flat is not None:
            flat = np.zeros_like(self._flat)
            return flat, {n: flat[self._offset(n)].reshape(self.params[n].shape) for n in self.names}
        return None, {n: np.zeros_like(p) for n, p in self.params.items()}

    def _offset(self, name):
        start = 0
        for n in self.names:
            if n == name:
                return slice(start, start + self.params[n].size)
            start += self.params[n].size
        raise KeyError(name)

    def _check_grads(self, grads):
        """Validate grads against params; returns their shared flat buffer (or None).

        The verdict is remembered for the very same arrays, so that a training loop that passes
        model.grads every step pays for the check once.
        """
        last = getattr(self, "_last_grads", None)
        same = last is not None and last[0] is grads
        if same and all(grads.get(n) is a for n, a in zip(self.names, last[1], strict=True)):
            return last[2]
        flat = self._validate_grads(grads)
        if isinstance(grads, dict):
            self._last_grads = (grads, [grads[n] for n in self.names], flat)
        return flat

    def _validate_grads(self, grads):
        if not isinstance(grads, dict) or grads.keys() != self.params.keys():
            got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            raise ConfigError(f"grads must have the same names as params {sorted(self.params)}; got {got}")
        for n in self.names:
            if grads[n].shape != self.params[n].shape:
                raise ConfigError(f"grads[{n!r}] has shape {grads[n].shape}; expected {self.params[n].shape}")
        if self._flat is not None:
            g0 = _shared_buffer([grads[n] for n in self.names])
            if g0 is not None and g0.dtype == self.dtype:
                return g0
        return None

    def _pairs(self, grads, flat_grads, *states):
        """(param, grad, *state) arrays to update: the flat buffers when they exist, else each array."""
        if flat_grads is not None and all(s[0] is not None for s in states):
            return [(self._flat, flat_grads, *(s[0] for s in states))]
        return [(self.params[n], np.asarray(grads[n], dtype=self.dtype), *(s[1][n] for s in states))
                for n in self.names]

    @staticmethod
    def _kernels_for(arrays):
        """The active kernels, or the NumPy twins when an array is not C-contiguous (a strided view):
        the Numba loops walk memory in order, so they take contiguous arrays only."""
        return _kernels.K if all(a.flags.c_contiguous for a in arrays) else _kernels.NUMPY


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), bias-corrected, in place.

    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps),
    m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ConfigError(f"betas={betas!r} must be a pair (beta1, beta2), e.g. (0.9, 0.999)") from None
        self.b1 = check_float("betas[0]", b1, minimum=0.0)
        self.b2 = check_float("betas[1]", b2, minimum=0.0)
        if self.b1 >= 1 or self.b2 >= 1:
            raise ConfigError(f"betas={betas!r} must each lie in [0, 1)")
        self.eps = check_float("eps", eps, minimum=0.0, exclusive=True)
        self._m = self._state_like()
        self._v = self._state_like()

    @property
    def m(self):
        return self._m[1]

    @property
    def v(self):
        return self._v[1]

    def step(self, grads):
        """Update every parameter in place from grads (dict with the params' names and shapes)."""
        flat_grads = self._check_grads(grads)
        self.t += 1
        f = self.dtype.type
        c1, c2 = 1.0 / (1.0 - self.b1 ** self.t), 1.0 / (1.0 - self.b2 ** self.t)
        for p, g, m, v in self._pairs(grads, flat_grads, self._m, self._v):
            kernels = self._kernels_for((p, g, m, v))
            kernels.adam_update(p, g, m, v, f(self.lr), f(self.b1), f(self.b2), f(c1), f(c2), f(self.eps))

    def state_dict(self):
        """Arrays and numbers to save: {"t", "lr", "betas", "eps", "m.<name>", "v.<name>"}."""
        state = {"t": self.t, "lr": self.lr, "betas": (self.b1, self.b2), "eps": self.eps}
        for n in self.names:
            state[f"m.{n}"] = self.m[n]
            state[f"v.{n}"] = self.v[n]
        return state

    def load_state_dict(self, state):
        self.t = int(state["t"])
        self.lr = float(state["lr"])
        self.b1, self.b2 = (float(b) for b in state["betas"])
        self.eps = float(state["eps"])
        for n in self.names:
            self.m[n][...] = state[f"m.{n}"]
            self.v[n][...] = state[f"v.{n}"]


class SGD(Optimizer):
    """Stochastic gradient descent with momentum: vel = momentum * vel - lr * g;  p += vel."""

    def __init__(self, params, lr=0.1, momentum=0.0):
        super().__init__(params, lr)
        self.momentum = check_float("momentum", momentum, minimum=0.0, maximum=1.0)
        self._vel = self._state_like()

    @property
    def velocity(self):
        return self._vel[1]

    def step(self, grads):
        """Update every parameter in place from grads."""
        flat_grads = self._check_grads(grads)
        self.t += 1
        f = self.dtype.type
        for p, g, vel in self._pairs(grads, flat_grads, self._vel):
            self._kernels_for((p, g, vel)).sgd_update(p, g, vel, f(self.lr), f(self.momentum))

    def state_dict(self):
        state = {"t": self.t, "lr": self.lr, "momentum": self.momentum}
        for n in self.names:
            state[f"velocity.{n}"] = self.velocity[n]
        return state

    def load_state_dict(self, state):
        self.t = int(state["t"])
        self.lr = float(state["lr"])
        self.momentum = float(state["momentum"])
        for n in self.names:
            self.velocity[n][...] = state[f"velocity.{n}"]
