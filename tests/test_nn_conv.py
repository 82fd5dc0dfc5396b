"""Conv2d, ConvTranspose2d (im2col + one matrix product): against naive loops, Numba against NumPy twins,
the transpose as the adjoint of the convolution, finite differences in float64 (relative error < 1e-7) for
several stride/padding/shape cases, and whole conv VAEs and Autoencoders."""

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _conv_kernels, _kernels, nn
from vae_numpy.gradcheck import check_model
from vae_numpy.nn.conv import Conv2d, ConvTranspose2d

TOL = 1e-7
JIT = pytest.mark.parametrize("jit", [True, False], ids=["jit", "numpy"])
# (filters, kernel, stride, padding, activation, per-example input shape (H, W, C))
CASES = [(4, 3, 2, "same", "tanh", (7, 7, 2)), (3, (3, 2), 1, "valid", "tanh", (5, 6, 2)),
         (2, 3, 2, 1, "linear", (6, 5, 3)), (2, 2, 3, "same", "sigmoid", (8, 7, 1)),
         (3, 3, 1, "same", "relu", (4, 4, 2)), (2, (2, 3), 2, "valid", "softplus", (3, 4, 2))]


def _x(shape, seed=0):
    a = np.random.default_rng(seed).standard_normal(shape)
    return a + np.sign(a) * 0.1


def _conv_naive(layer, x):
    """a[n, i, j, o] = b[o] + sum_{p, q, c} x[n, i s + p - pt, j s + q - pl, c] W[p, q, c, o] (zero outside)."""
    W, b, s, (pt, pl) = layer.params["W"], layer.params["b"], layer.stride, layer._pad
    N, (H, Wd, _), (Ho, Wo, O) = x.shape[0], layer.in_shape, layer.out_shape
    a = np.zeros((N, Ho, Wo, O)) + b
    for i in range(Ho):
        for j in range(Wo):
            for p in range(W.shape[0]):
                for q in range(W.shape[1]):
                    r, c = i * s + p - pt, j * s + q - pl
                    if 0 <= r < H and 0 <= c < Wd:
                        a[:, i, j] += x[:, r, c] @ W[p, q]
    return a


def _conv_transpose_naive(layer, x):
    """Each input pixel scatters x[n, i, j] @ W[p, q]^T to the output pixel (i s + p - pt, j s + q - pl)."""
    W, b, s, (pt, pl) = layer.params["W"], layer.params["b"], layer.stride, layer._pad
    N, (H, Wd, _), (Ho, Wo, O) = x.shape[0], layer.in_shape, layer.out_shape
    a = np.zeros((N, Ho, Wo, O))
    for i in range(H):
        for j in range(Wd):
            for p in range(W.shape[0]):
                for q in range(W.shape[1]):
                    r, c = i * s + p - pt, j * s + q - pl
                    if 0 <= r < Ho and 0 <= c < Wo:
                        a[:, r, c] += x[:, i, j] @ W[p, q].T
    return a + b


@JIT
@pytest.mark.parametrize("cls,naive", [(Conv2d, _conv_naive), (ConvTranspose2d, _conv_transpose_naive)])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_fast_equals_naive_loops(jit, cls, naive, case):
    f, k, s, pad, _, shape = case
    layer = nn.materialize(cls(f, k, s, pad), shape, seed=1, init="torch")   # torch init: non-zero biases
    x = _x((3, *shape))
    with _kernels.use_jit(jit):
        np.testing.assert_allclose(layer.forward(x), naive(layer, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_numba_kernels_equal_numpy_twins_bit_for_bit(case):
    if _conv_kernels.NUMBA is None:
        pytest.skip("numba is not installed")
    f, k, s, pad, _, shape = case
    layer = Conv2d(f, k, s, pad)
    layer.build(shape)
    kh, kw = layer.kernel_size
    Ho, Wo, _ = layer.out_shape
    x = _x((2, *shape)).astype(np.float32)
    cols = [ns.im2col(x, s, *layer._pad, np.full((2, Ho, Wo, kh, kw, shape[2]), np.nan, np.float32))
            for ns in (_conv_kernels.NUMPY, _conv_kernels.NUMBA)]
    np.testing.assert_array_equal(cols[0], cols[1])
    d = _x(cols[0].shape, seed=1).astype(np.float32)
    back = [ns.col2im(d, s, *layer._pad, np.full(x.shape, np.nan, np.float32))
            for ns in (_conv_kernels.NUMPY, _conv_kernels.NUMBA)]
    np.testing.assert_array_equal(back[0], back[1])


@pytest.mark.parametrize("case", CASES, ids=str)
def test_transpose_is_the_adjoint_of_the_convolution(case):
    # <conv(x), y> = <x, conv_transpose(y)> with the same kernel and no bias: col2im is im2col's backward
    f, k, s, pad, _, shape = case
    conv = nn.materialize(Conv2d(f, k, s, pad), shape, seed=2)
    Ho, Wo, _ = conv.out_shape
    tr = ConvTranspose2d(shape[2], k, s, pad)
    tr.build((Ho, Wo, f))
    tr._pad = conv._pad                        # the same geometry, whatever the size rule gives
    tr.out_shape = shape
    _, _, p, g = nn.flat_buffers(tr.param_shapes(), np.float64)
    tr.bind(p, g)
    tr.params["W"][...] = conv.params["W"]      # Keras layouts: (kh, kw, C, O) is the transpose's (kh, kw, out, in)
    conv.params["b"][...] = 0
    x, y = _x((2, *shape)), _x((2, Ho, Wo, f), seed=3)
    assert np.isclose(np.sum(conv.forward(x) * y), np.sum(x * tr.forward(y)), rtol=1e-12)


@pytest.mark.parametrize("cls", [Conv2d, ConvTranspose2d])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_conv_gradients(cls, case):
    f, k, s, pad, act, shape = case
    layer = nn.materialize(cls(f, k, s, pad, activation=act), shape, seed=1, init="torch")
    nn.check_layer(layer, _x((2, *shape)), tol=TOL).assert_ok()


def test_conv_shapes_follow_keras():
    layer = Conv2d(32, 3, 2, "same")
    assert layer.build((28, 28, 1)) == (14, 14, 32) and layer._pad == (0, 0)   # TF: the extra row at the bottom
    assert ConvTranspose2d(64, 3, 2, "same").build((7, 7, 64)) == (14, 14, 64)
    assert ConvTranspose2d(8, 3, 2, "valid").build((7, 7, 64)) == (15, 15, 8)
    assert Conv2d(8, 3, 1, 1).build((5, 5, 2)) == (5, 5, 8)


def test_conv_config_round_trip_and_errors():
    layer = Conv2d(8, (3, 2), 2, "same", "relu")
    assert nn.from_config(layer.config()).config() == layer.config()
    with pytest.raises(vn.ConfigError, match="Reshape"):
        Conv2d(8, 3).build((784,))
    with pytest.raises(vn.ConfigError, match="padding"):
        Conv2d(8, 3, padding="full")
    with pytest.raises(vn.ConfigError, match="does not fit"):
        Conv2d(8, 5).build((3, 3, 1))


def _perturbed(model, seed=0):
    """Every parameter moved off its initial value (zero biases put ReLU inputs exactly on the kink)."""
    model._flat_params += 0.05 * np.random.default_rng(seed).standard_normal(model._flat_params.shape)
    return model


@pytest.mark.parametrize("cls", [vn.VAE, vn.Autoencoder])
@pytest.mark.parametrize("lik", ["bernoulli", "gaussian", "learned"])
def test_whole_conv_model_gradients(cls, lik):
    kw = {"likelihood": "gaussian", "decoder_sigma": "learned"} if lik == "learned" else {"likelihood": lik}
    model = _perturbed(cls(input_dim=64, arch="conv", channels=(2, 3), dense=4, latent_dim=2, activation="tanh",
                           dtype="float64", seed=0, **kw))
    x = np.random.default_rng(1).random((3, 64))
    check_model(model, x, tol=TOL).assert_ok()


def test_conv_vae_relu_gradients():
    model = _perturbed(vn.VAE(input_dim=64, arch="conv", channels=(2, 3), dense=4, latent_dim=2, dtype="float64",
                              seed=0), seed=3)
    check_model(model, np.random.default_rng(1).random((3, 64)), tol=TOL).assert_ok()


def test_conv_vae_is_the_keras_example():
    model = vn.VAE(arch="conv", latent_dim=2, seed=0)
    types = [layer.config()["type"] for layer in model.encoder.layers + model.decoder.layers + model.output.layers]
    assert types == ["Reshape", "Conv2d", "Conv2d", "Flatten", "Dense", "Dense", "Reshape", "ConvTranspose2d",
                     "ConvTranspose2d", "ConvTranspose2d", "Flatten"]
    assert model.params["encoder.2.W"].shape == (3, 3, 32, 64) and model.params["dec_out.0.W"].shape == (3, 3, 1, 32)
    x = np.random.default_rng(0).random((5, 784)).astype(np.float32)
    assert np.isfinite(model.forward(x)) and model.decode(model.encode(x)[0]).shape == (5, 784)
    assert vn.VAE(arch="conv", channels=(4, 8), latent_dim=2).params["encoder.2.W"].shape == (3, 3, 4, 8)
