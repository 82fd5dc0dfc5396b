"""Conv2d and ConvTranspose2d as im2col + one matrix product (channels-last, as in the Keras example).

Shapes: x: (N, H, W, C) -> y: (N, Ho, Wo, O); a kernel of kh x kw, stride s, padding pt (top), pl (left).

Conv2d, W: (kh, kw, C, O), b: (O,) (Keras's kernel layout):
    cols = im2col(x): (N Ho Wo, kh kw C),   a = cols @ W.reshape(kh kw C, O) + b,   y = act(a)
    backward: dW = cols^T da,  db = sum da,  dcols = da W^T,  dx = col2im(dcols)
ConvTranspose2d, W: (kh, kw, O, C), b: (O,): the backward of a Conv2d (from O to C channels) as its forward:
    cols = x.reshape(N H W, C) @ W.reshape(kh kw O, C)^T,   a = col2im(cols) + b,   y = act(a)
    backward: dcols = im2col(da),  dW = dcols^T x,  db = sum da,  dx = dcols W

Padding: "valid" (none), "same" (Ho = ceil(H / s) for Conv2d, Ho = H s for ConvTranspose2d; TensorFlow's
split, the extra row at the bottom/right) or an int p on every side (Ho = (H + 2p - kh) // s + 1, and
Ho = (H - 1) s + kh - 2p for the transpose, as in PyTorch). im2col and col2im are in vae_numpy/_conv_kernels.py.
"""

from __future__ import annotations

import numpy as np

from .._conv_kernels import K
from .._validate import check_choice, check_int
from ..errors import ConfigError
from ..layers import ACTIVATIONS, INITS, activation_backward, activation_forward
from .base import Layer, register


def _pair(name, v):
    if isinstance(v, int | np.integer):
        v = (v, v)
    try:
        a, b = v
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={v!r} must be an int or a pair of ints") from None
    return check_int(name, a), check_int(name, b)


def _at_b(a, b, out):
    """out = a^T @ b for tall a: (L, m), b: (L, n). With m < n the product is taken as (b^T a)^T: OpenBLAS
    splits a (9, 100352) @ (100352, 32) product so badly over two busy threads that it ran 100x slower."""
    if a.shape[1] >= b.shape[1]:
        return np.matmul(a.T, b, out=out)
    np.copyto(out, np.matmul(b.T, a).T)
    return out


def _same_pad(n_in, n_out, k, s):
    """The top (or left) padding of TensorFlow's 'same': half the total, the odd one at the bottom."""
    return max((n_out - 1) * s + k - n_in, 0) // 2


class _Conv(Layer):
    """What the two convolutions share: kernel, stride, padding, activation, parameters, config."""

    def __init__(self, filters, kernel_size=3, stride=1, padding="valid", activation="linear"):
        super().__init__()
        self.filters = check_int("filters", filters)
        self.kernel_size = _pair("kernel_size", kernel_size)
        self.stride = check_int("stride", stride)
        if isinstance(padding, str):
            self.padding = check_choice("padding", padding, ("valid", "same"))
        else:
            self.padding = check_int("padding", padding, minimum=0)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))

    def _check_image(self, in_shape):
        if len(in_shape) != 3:
            raise ConfigError(f"{type(self).__name__} takes images (N, H, W, C); it was given per-example shape "
                              f"{in_shape}: put a Reshape((H, W, C)) before it")
        return in_shape

    def param_shapes(self):
        kh, kw = self.kernel_size
        return {"W": (kh, kw, *self._channels()), "b": (self.filters,)}

    def _init(self, rng, dtype, init):
        """he-xavier: He normal (std sqrt(2 / fan_in)) before relu, Xavier normal otherwise, zero bias;
        torch: PyTorch's default, W and b ~ U(+-1/sqrt(fan_in)) with its fan_in (see _torch_fan_in)."""
        check_choice("init", init, INITS)
        shape = self.param_shapes()["W"]
        kh, kw, c_in, c_out = shape
        if init == "torch":
            bound = 1.0 / np.sqrt(self._torch_fan_in())
            W = rng.uniform(-bound, bound, shape).astype(dtype)
            return {"W": W, "b": rng.uniform(-bound, bound, (self.filters,)).astype(dtype)}
        fan_in, fan_out = kh * kw * c_in, kh * kw * c_out
        std = np.sqrt(2.0 / fan_in) if self.activation in ("relu", "leaky_relu") else np.sqrt(2.0 / (fan_in + fan_out))
        return {"W": (rng.standard_normal(shape) * std).astype(dtype), "b": np.zeros(self.filters, dtype=dtype)}

    def _act_forward(self, a, ws):
        y_buf = self._buf("y", a.shape, a.dtype, True) if ws and self.activation != "linear" else None
        return activation_forward(self.activation, a, out=y_buf)

    def _act_backward(self, dy2, acache):
        out = None if self.activation == "linear" else self._buf("da", dy2.shape, dy2.dtype, True)
        return activation_backward(self.activation, dy2, acache, out=out)

    def row_elements(self, backward=False):
        """a and y (y when not linear); with backward also da, dx and im2col's columns: their gradient, and
        for Conv2d the columns themselves, which its cache keeps for dW (ConvTranspose2d's are transient).

        Conv2d's columns hold Ho Wo kh kw C numbers per example; ConvTranspose2d's H W kh kw O. They dominate:
        a 3 x 3 kernel keeps 9 numbers for each input (or output) number.
        """
        act = self.activation != "linear"
        out, inp = int(np.prod(self.out_shape)), int(np.prod(self.in_shape))
        cols = self._cols_per_row() * (2 if self._keeps_cols else 1)
        return out * (1 + act) + ((out * act + cols + inp) if backward else 0)

    def config(self):
        return {"type": type(self).__name__, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "stride": self.stride, "padding": self.padding, "activation": self.activation}


@register
class Conv2d(_Conv):
    """y = act(conv(x, W) + b): x (N, H, W, C) -> (N, Ho, Wo, filters); see the module docstring."""

    def _out_shape(self, in_shape):
        H, W, _ = self._check_image(in_shape)
        (kh, kw), s = self.kernel_size, self.stride
        if self.padding == "same":
            Ho, Wo = -(-H // s), -(-W // s)
            self._pad = (_same_pad(H, Ho, kh, s), _same_pad(W, Wo, kw, s))
        else:
            p = 0 if self.padding == "valid" else self.padding
            Ho, Wo = (H + 2 * p - kh) // s + 1, (W + 2 * p - kw) // s + 1
            self._pad = (p, p)
        if Ho < 1 or Wo < 1:
            raise ConfigError(f"Conv2d kernel {self.kernel_size} does not fit images {in_shape[:2]} with "
                              f"padding {self.padding!r}")
        return (Ho, Wo, self.filters)

    def _channels(self):
        return (self.in_shape[2], self.filters)

    _keeps_cols = True    # its cache holds the columns for dW

    def _cols_per_row(self):
        (Ho, Wo, _), (kh, kw) = self.out_shape, self.kernel_size
        return Ho * Wo * kh * kw * self.in_shape[2]

    def _torch_fan_in(self):
        return self.kernel_size[0] * self.kernel_size[1] * self.in_shape[2]

    def forward(self, x, ws=None):
        """x: (N, H, W, C) -> y: (N, Ho, Wo, O)."""
        self._check_input(x)
        N, C, (Ho, Wo, O) = x.shape[0], self.in_shape[2], self.out_shape
        (kh, kw), dt = self.kernel_size, self.params["W"].dtype
        cols = K.im2col(x, self.stride, *self._pad, self._buf("cols", (N, Ho, Wo, kh, kw, C), dt, ws))
        cols2 = cols.reshape(N * Ho * Wo, kh * kw * C)
        Wm = self.params["W"].reshape(kh * kw * C, O)
        a = np.matmul(cols2, Wm, out=self._buf("a", (N * Ho * Wo, O), dt, ws))
        a += self.params["b"]
        y, acache = self._act_forward(a, ws)
        self.cache = (cols2, acache, N)
        return y.reshape(N, Ho, Wo, O)

    def backward(self, dy, need_dx=True):
        """dy: (N, Ho, Wo, O) -> dx: (N, H, W, C); writes grads["W"], grads["b"]."""
        cols2, acache, N = self.cache
        (H, W, C), (Ho, Wo, O), (kh, kw) = self.in_shape, self.out_shape, self.kernel_size
        da = self._act_backward(dy.reshape(N * Ho * Wo, O), acache)
        Wm = self.params["W"].reshape(kh * kw * C, O)
        _at_b(cols2, da, self.grads["W"].reshape(kh * kw * C, O))
        np.add.reduce(da, axis=0, out=self.grads["b"])
        if not need_dx:
            return None
        dcols = np.matmul(da, Wm.T, out=self._buf("dcols", cols2.shape, da.dtype, True))
        return K.col2im(dcols.reshape(N, Ho, Wo, kh, kw, C), self.stride, *self._pad,
                        self._buf("dx", (N, H, W, C), da.dtype, True))


@register
class ConvTranspose2d(_Conv):
    """y = act(conv_transpose(x, W) + b): x (N, H, W, C) -> (N, Ho, Wo, filters); the backward of a Conv2d."""

    def _out_shape(self, in_shape):
        H, W, _ = self._check_image(in_shape)
        (kh, kw), s = self.kernel_size, self.stride
        if self.padding == "same":
            Ho, Wo = H * s, W * s
            self._pad = (_same_pad(Ho, H, kh, s), _same_pad(Wo, W, kw, s))
        else:
            p = 0 if self.padding == "valid" else self.padding
            Ho, Wo = (H - 1) * s + kh - 2 * p, (W - 1) * s + kw - 2 * p
            self._pad = (p, p)
        if Ho < 1 or Wo < 1:
            raise ConfigError(f"ConvTranspose2d padding {self.padding} leaves no output for images {in_shape[:2]}")
        return (Ho, Wo, self.filters)

    def _channels(self):
        return (self.filters, self.in_shape[2])

    _keeps_cols = False   # its columns are transient; only their gradient lives through backward

    def _cols_per_row(self):
        (H, W, _), (kh, kw) = self.in_shape, self.kernel_size
        return H * W * kh * kw * self.filters

    def _torch_fan_in(self):
        # PyTorch's ConvTranspose2d weight is (C_in, C_out, kh, kw) and its fan_in reads dimension 1: C_out
        return self.kernel_size[0] * self.kernel_size[1] * self.filters

    def forward(self, x, ws=None):
        """x: (N, H, W, C) -> y: (N, Ho, Wo, O)."""
        self._check_input(x)
        N, (H, W, C), (Ho, Wo, O) = x.shape[0], self.in_shape, self.out_shape
        (kh, kw), dt = self.kernel_size, self.params["W"].dtype
        x2 = x.reshape(N * H * W, C)
        Wm = self.params["W"].reshape(kh * kw * O, C)
        cols = np.matmul(x2, Wm.T, out=self._buf("cols", (N * H * W, kh * kw * O), dt, ws))
        a = K.col2im(cols.reshape(N, H, W, kh, kw, O), self.stride, *self._pad,
                     self._buf("a", (N, Ho, Wo, O), dt, ws)).reshape(N * Ho * Wo, O)
        a += self.params["b"]
        y, acache = self._act_forward(a, ws)
        self.cache = (x2, acache, N)
        return y.reshape(N, Ho, Wo, O)

    def backward(self, dy, need_dx=True):
        """dy: (N, Ho, Wo, O) -> dx: (N, H, W, C); writes grads["W"], grads["b"]."""
        x2, acache, N = self.cache
        (H, W, C), (Ho, Wo, O), (kh, kw) = self.in_shape, self.out_shape, self.kernel_size
        da = self._act_backward(dy.reshape(N * Ho * Wo, O), acache)
        dcols = K.im2col(da.reshape(N, Ho, Wo, O), self.stride, *self._pad,
                         self._buf("dcols", (N, H, W, kh, kw, O), da.dtype, True)).reshape(N * H * W, kh * kw * O)
        _at_b(dcols, x2, self.grads["W"].reshape(kh * kw * O, C))
        np.add.reduce(da, axis=0, out=self.grads["b"])
        if not need_dx:
            return None
        Wm = self.params["W"].reshape(kh * kw * O, C)
        return np.matmul(dcols, Wm, out=self._buf("dx", (N * H * W, C), da.dtype, True)).reshape(N, H, W, C)
