"""Layers as building blocks (the contract is in base.py): each a forward/backward pair that declares its
parameter shapes and initialisation. A Sequential stack of layers is a layer.

Shapes are batch-first: dense (N, F), convolutional (N, H, W, C) (channels-last, as Keras), recurrent (N, T, F).
A new layer: subclass Layer in its own module, decorate it with @register (so that JSON configs can name
it), and import the module here; nothing in models.py changes. nn.check_layer checks its gradients.
"""

from .activations import Activation
from .base import REGISTRY, Layer, Sequential, flat_buffers, from_config, materialize, register
from .check import check_layer
from .conv import Conv2d, ConvTranspose2d
from .dense import Dense
from .recurrent import GRU, RNN
from .recurrent_decoder import RecurrentDecoder, TimeDistributedDense
from .shape import Flatten, Reshape

__all__ = ["GRU", "REGISTRY", "RNN", "Activation", "Conv2d", "ConvTranspose2d", "Dense", "Flatten", "Layer",
           "RecurrentDecoder", "Reshape", "Sequential", "TimeDistributedDense", "check_layer", "flat_buffers",
           "from_config", "materialize", "register"]
