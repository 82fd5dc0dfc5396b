"""Activation as a layer: y = act(a), elementwise, any per-example shape.

Shapes: a: (N, *S) -> y: (N, *S). The derivatives (written with y alone, see vae_numpy/layers.py):
relu da = dy [y > 0]; leaky_relu da = dy (1 or 0.01); tanh da = dy (1 - y^2); sigmoid da = dy y (1 - y);
softplus da = dy (1 - e^-y); linear da = dy.
"""

from __future__ import annotations

from .._validate import check_choice
from ..layers import ACTIVATIONS, activation_backward, activation_forward
from .base import Layer, register


@register
class Activation(Layer):
    """y = act(a) for a named activation (relu, leaky_relu, tanh, sigmoid, softplus, linear); no parameters."""

    def __init__(self, activation="relu"):
        super().__init__()
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))

    def forward(self, x, ws=None):
        """x: (N, *S) -> y: (N, *S); keeps y (each derivative is a function of y)."""
        self._check_input(x)
        a = x.reshape(x.shape[0], -1)   # the kernels walk (N, H) arrays
        out = self._buf("y", a.shape, a.dtype, True) if ws else None
        y, cache = activation_forward(self.activation, a, out=out)
        self.cache = (cache, x.shape)
        return y.reshape(x.shape)

    def backward(self, dy, need_dx=True):
        """dy: (N, *S) -> dx: (N, *S) = dy * act'(a)."""
        if not need_dx:
            return None
        cache, shape = self.cache
        g = dy.reshape(dy.shape[0], -1)
        out = None if self.activation == "linear" else self._buf("da", g.shape, g.dtype, True)
        return activation_backward(self.activation, g, cache, out=out).reshape(shape)

    def config(self):
        return {"type": "Activation", "activation": self.activation}
