"""Dense (fully connected) layer with an optional activation after it, as a Layer.

Shapes: x: (N, I) -> y: (N, O);  W: (I, O), b: (O,).

    a = x @ W + b,  y = act(a)
    da = dy * act'(a);  dW = x^T @ da;  db = sum_n da;  dx = da @ W^T

The computation is vae_numpy/layers.py's dense_forward / activation_forward, with the same output buffers
as the MLP always used, so an MLP built from these layers trains to the same bits.
"""

from __future__ import annotations

from .._validate import check_choice, check_int
from ..errors import ConfigError
from ..layers import (
    ACTIVATIONS,
    INITS,
    activation_backward,
    activation_forward,
    dense_backward,
    dense_forward,
    init_bias,
    init_weights,
)
from .base import Layer, register


@register
class Dense(Layer):
    """y = act(x @ W + b) with `units` outputs.

    The initialisation depends on the activation that follows (layers.init_weights): He normal before
    relu / leaky_relu, Xavier normal otherwise, zero biases; init="torch" is nn.Linear's U(+-1/sqrt(I)).
    """

    def __init__(self, units, activation="linear"):
        super().__init__()
        self.units = check_int("units", units)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))

    def _out_shape(self, in_shape):
        if len(in_shape) != 1:
            raise ConfigError(f"Dense takes flat inputs (N, I); it was given per-example shape {in_shape}: "
                              "put a Flatten() before it")
        return (self.units,)

    def param_shapes(self):
        return {"W": (self.in_shape[0], self.units), "b": (self.units,)}

    def _init(self, rng, dtype, init):
        check_choice("init", init, INITS)
        i, o = self.in_shape[0], self.units
        W = init_weights(i, o, self.activation, rng, dtype, init)   # W drawn before b: the MLP's order
        return {"W": W, "b": init_bias(i, o, rng, dtype, init)}

    def forward(self, x, ws=None):
        """x: (N, I) -> y: (N, O)."""
        self._check_input(x)
        W, b = self.params["W"], self.params["b"]
        shape = (x.shape[0], self.units)
        a, dcache = dense_forward(x, W, b, out=self._buf("a", shape, W.dtype, True) if ws else None)
        y_buf = self._buf("y", shape, W.dtype, True) if ws and self.activation != "linear" else None
        y, acache = activation_forward(self.activation, a, out=y_buf)
        self.cache = (dcache, acache)
        return y

    def backward(self, dy, need_dx=True):
        """dy: (N, O) -> dx: (N, I) (None unless need_dx); writes grads["W"], grads["b"]."""
        dcache, acache = self.cache
        da_buf = None if self.activation == "linear" else self._buf("da", dy.shape, dy.dtype, True)
        da = activation_backward(self.activation, dy, acache, out=da_buf)
        x = dcache[0]
        dx_buf = self._buf("dx", x.shape, dy.dtype, True) if need_dx else None
        dx, _, _ = dense_backward(da, dcache, dW=self.grads["W"], db=self.grads["b"], need_dx=need_dx,
                                  dx=dx_buf)
        return dx

    def row_elements(self, backward=False):
        """a and y (O each, one array when linear); with backward, da (O, when not linear) and dx (I)."""
        o, act = self.units, self.activation != "linear"
        return o * (1 + act) + ((o * act + self.in_shape[0]) if backward else 0)

    def config(self):
        return {"type": "Dense", "units": self.units, "activation": self.activation}
