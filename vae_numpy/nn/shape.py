"""Flatten and Reshape: no parameters, no arithmetic; the backward reshapes the gradient back.

Shapes: Flatten (N, *S) -> (N, prod S);  Reshape(target) (N, *S) -> (N, *target) with prod target = prod S.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Layer, check_shape, register


@register
class Flatten(Layer):
    """(N, *S) -> (N, prod S); dx is dy reshaped to (N, *S)."""

    def _out_shape(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x, ws=None):
        self._check_input(x)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx=True):
        return dy.reshape(dy.shape[0], *self.in_shape) if need_dx else None

    def row_elements(self, backward=False):
        return 0   # views: no array of its own


@register
class Reshape(Layer):
    """(N, *S) -> (N, *target); e.g. Reshape((64, 7, 7)) after a Dense of 7*7*64 units (C, H, W order)."""

    def __init__(self, target):
        super().__init__()
        self.target = check_shape("target", target)

    def _out_shape(self, in_shape):
        if int(np.prod(in_shape)) != int(np.prod(self.target)):
            raise ConfigError(f"Reshape{self.target} cannot take inputs of shape {in_shape}: the sizes "
                              f"{int(np.prod(in_shape))} and {int(np.prod(self.target))} differ")
        return self.target

    def forward(self, x, ws=None):
        self._check_input(x)
        return x.reshape(x.shape[0], *self.target)

    def backward(self, dy, need_dx=True):
        return dy.reshape(dy.shape[0], *self.in_shape) if need_dx else None

    def row_elements(self, backward=False):
        return 0   # views: no array of its own

    def config(self):
        return {"type": "Reshape", "target": list(self.target)}
