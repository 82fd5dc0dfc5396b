"""The layer contract (vae_numpy/nn/base.py): Dense, Activation, Flatten/Reshape and Sequential.

Gradient checks: central differences in float64 through nn.check_layer, asserting relative error < 1e-7.
"""

import json

import numpy as np
import pytest

from vae_numpy import layers, nn
from vae_numpy.errors import ConfigError

TOL = 1e-7


def _x(shape, seed=0, margin=0.1):
    a = np.random.default_rng(seed).standard_normal(shape)
    return a + np.sign(a) * margin      # away from the ReLU kink


@pytest.mark.parametrize("act", sorted(layers.ACTIVATIONS))
def test_dense_gradients(act):
    layer = nn.materialize(nn.Dense(5, act), (7,), seed=1)
    nn.check_layer(layer, _x((4, 7)), tol=TOL).assert_ok()


@pytest.mark.parametrize("act", sorted(layers.ACTIVATIONS))
def test_activation_gradients_any_shape(act):
    layer = nn.materialize(nn.Activation(act), (2, 3, 4))
    nn.check_layer(layer, _x((3, 2, 3, 4))).assert_ok()


def test_sequential_gradients_and_names():
    net = nn.Sequential([nn.Reshape((2, 6)), nn.Flatten(), nn.Dense(5, "tanh"), nn.Activation("softplus"),
                         nn.Dense(3)])
    nn.materialize(net, (12,), seed=2)
    assert list(net.param_shapes()) == ["2.W", "2.b", "4.W", "4.b"]
    assert net.out_shape == (3,)
    nn.check_layer(net, _x((4, 12))).assert_ok()


def test_dense_layer_equals_the_functions():
    layer = nn.materialize(nn.Dense(6, "relu"), (5,), dtype="float32", seed=3)
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    a, _ = layers.dense_forward(x, layer.params["W"], layer.params["b"])
    np.testing.assert_array_equal(layer.forward(x, ws=True), np.maximum(a, 0))


def test_init_order_matches_the_mlp():
    # W then b, drawn from one generator: what keeps arch="mlp" bit for bit
    layer = nn.materialize(nn.Dense(4, "relu"), (3,), seed=5, init="torch")
    rng = np.random.default_rng(5)
    W = layers.init_weights(3, 4, "relu", rng, np.float64, "torch")
    b = layers.init_bias(3, 4, rng, np.float64, "torch")
    np.testing.assert_array_equal(layer.params["W"], W)
    np.testing.assert_array_equal(layer.params["b"], b)


def test_backward_writes_not_accumulates():
    layer = nn.materialize(nn.Dense(2), (3,))
    x, dy = _x((4, 3)), _x((4, 2), seed=1)
    layer.forward(x)
    layer.backward(dy)
    first = layer.grads["W"].copy()
    layer.forward(x)
    layer.backward(dy)
    np.testing.assert_array_equal(layer.grads["W"], first)


def test_config_round_trip_is_json():
    net = nn.Sequential([nn.Dense(8, "relu"), nn.Dense(4)], names=["enc1", "enc2"])
    cfg = json.loads(json.dumps(net.config()))
    again = nn.from_config(cfg)
    assert again.config() == net.config()
    assert again.names == ["enc1", "enc2"]
    again.build((3,))
    assert list(again.param_shapes()) == ["enc1.W", "enc1.b", "enc2.W", "enc2.b"]


@pytest.mark.parametrize("cfg", [{"type": "os.system"}, {"layers": []}, "Dense",
                                 {"type": "Dense", "units": 3, "code": "x"}, {"type": "Dense", "units": -1}])
def test_bad_configs_are_config_errors(cfg):
    with pytest.raises(ConfigError):
        nn.from_config(cfg)


def test_shape_errors_name_the_fix():
    with pytest.raises(ConfigError, match="Flatten"):
        nn.Dense(3).build((2, 4))
    with pytest.raises(ConfigError, match="differ"):
        nn.Reshape((3, 3)).build((8,))
    layer = nn.materialize(nn.Dense(3), (4,))
    with pytest.raises(ConfigError, match="built for inputs"):
        layer.forward(np.zeros((2, 5)))
    with pytest.raises(ConfigError, match="param_shapes"):
        layer.bind({}, {})
