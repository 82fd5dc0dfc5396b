"""A recurrent decoder: a code (the latent h, or any features) -> T states, and a readout applied at every step.

Shapes: RecurrentDecoder c: (N, C) -> s: (N, T, H);  TimeDistributedDense s: (N, T, H) -> y: (N, T, F).
For MNIST, T = 28 rows of F = 28 pixel logits; a Flatten after the readout gives the model's (N, 784).

    s_0 = tanh(c W0 + b0)                       the initial state, a Dense with tanh (states live in (-1, 1))
    s_t = cell(u_t, s_{t-1}),  t = 1..T         a GRU or a vanilla RNN (nn/recurrent.py's cells)
    y_t = s_t Wy + by                           TimeDistributedDense: one readout, the same weights at every step

The step input u_t is not the previous row of pixels (teacher forcing would make decoding need x, and sampling
would have to feed its own outputs back): the decoder is non-autoregressive, so decode(h) needs only h.
step_input="code" (the default) feeds the code at every step, u_t = c (Keras's RepeatVector seq2seq
autoencoder): its projection c Wx + bx is computed once and reused by all T steps, and dWx = c^T sum_t dgx_t.
step_input="zeros" feeds nothing, u_t = 0 (only the biases remain): the sequence then comes from s_0 alone.

RecurrentDecoder's parameters, in initialisation order: "init.W" (C, H), "init.b" (H,), the cell's "Wx" (C, G)
(only with step_input="code"), "Wh" (H, G), "bx", "bh" (G,) (GRU; G = 3H) or "b" (H,) (RNN). The readout is a
layer of its own, so that a model can give a learned Gaussian variance a second readout of the same kind.
The Dense parts initialise as layers.init_weights (Xavier normal before tanh and before a linear readout;
"torch": U(+-1/sqrt(fan_in))), the cell as nn/recurrent.py's init_cell.
"""

from __future__ import annotations

import numpy as np

from .. import _kernels
from .._validate import check_choice, check_int
from ..errors import ConfigError
from ..layers import init_bias, init_weights
from .base import Layer, register
from .recurrent import CELLS, GATES, _Buffers, cell_param_shapes, init_cell, input_bias, unroll_backward, unroll_forward

STEP_INPUTS = ("code", "zeros")


@register
class RecurrentDecoder(Layer):
    """c: (N, C) -> the states s_1..s_T: (N, steps, units) (see the module docstring)."""

    def __init__(self, units, steps, cell="gru", step_input="code"):
        super().__init__()
        self.units = check_int("units", units)
        self.steps = check_int("steps", steps)
        self.cell = check_choice("cell", cell, CELLS)
        self.step_input = check_choice("step_input", step_input, STEP_INPUTS)

    def _out_shape(self, in_shape):
        if len(in_shape) != 1:
            raise ConfigError(f"RecurrentDecoder takes flat codes (N, C); it was given per-example shape "
                              f"{in_shape}: put a Flatten() before it")
        return (self.steps, self.units)

    def _cell_shapes(self):
        shapes = cell_param_shapes(self.cell, self.in_shape[0], self.units)
        if self.step_input == "zeros":
            del shapes["Wx"]
        return shapes

    def param_shapes(self):
        C, H = self.in_shape[0], self.units
        return {"init.W": (C, H), "init.b": (H,), **self._cell_shapes()}

    def _init(self, rng, dtype, init):
        C, H = self.in_shape[0], self.units
        out = {"init.W": init_weights(C, H, "tanh", rng, dtype, init), "init.b": init_bias(C, H, rng, dtype, init)}
        cell = init_cell(self.cell, C, H, rng, dtype, init)
        out.update({k: cell[k] for k in self._cell_shapes()})
        return out

    def forward(self, c, ws=None):
        """c: (N, C) -> states s: (N, T, H)."""
        self._check_input(c)
        p = self.params
        N, H, T = c.shape[0], self.units, self.steps
        G = p["Wh"].shape[1]
        dtype = p["Wh"].dtype
        buf = _Buffers(self, dtype, ws, steps=T)
        c = np.asarray(c, dtype=dtype)
        s0 = np.matmul(c, p["init.W"], out=buf("s0", (N, H)))
        _kernels.K.add_bias(s0, p["init.b"])
        np.tanh(s0, out=s0)
        gx = buf("gx", (N, G))                                # one input projection for all T steps
        if self.step_input == "code":
            np.matmul(c, p["Wx"], out=gx)
        else:
            gx[...] = 0
        _kernels.K.add_bias(gx, input_bias(self.cell, p))
        hs = unroll_forward(self.cell, gx, s0, p, buf)
        y = buf("y", (N, T, H))
        y[...] = hs[1:].transpose(1, 0, 2)                    # batch-first, as every layer's output
        self.cache = (buf, c, s0, hs)
        return y

    def backward(self, dy, need_dx=True):
        """ds: (N, T, H) -> dc: (N, C) (None unless need_dx); writes every grads entry."""
        buf, c, s0, hs = self.cache
        p, g = self.params, self.grads
        N, H, T = c.shape[0], self.units, self.steps
        G = p["Wh"].shape[1]
        dhs = buf("dhs", (T, N, H))
        dhs[...] = dy.transpose(1, 0, 2)                      # time-major, as the unrolled loop reads it
        dgx, _, ds0 = unroll_backward(self.cell, dhs, None, hs, p, buf)
        dgx_sum = np.add.reduce(dgx, axis=0, out=buf("dgx_sum", (N, G)))   # gx was shared by all steps
        _kernels.K.sum_rows(dgx_sum, g["bx" if self.cell == "gru" else "b"])
        da0 = ds0 * (1 - s0 * s0)                                            # through s_0 = tanh(a_0)
        np.matmul(c.T, da0, out=g["init.W"])
        _kernels.K.sum_rows(da0, g["init.b"])
        if self.step_input == "code":
            np.matmul(c.T, dgx_sum, out=g["Wx"])
        if not need_dx:
            return None
        dc = np.matmul(da0, p["init.W"].T, out=buf("dc", c.shape))
        if self.step_input == "code":
            dc += dgx_sum @ p["Wx"].T                   # c feeds two paths, s_0 and every step: gradients add
        return dc

    def row_elements(self, backward=False):
        """The unrolled states (T + 1) H, the input projection G and the GRU's per-step gates 4 T H, y T H;
        with backward the states' and gates' gradients 2 T G (one T G for the RNN) and T H. G = gates x H."""
        H, T, C = self.units, self.steps, self.in_shape[0]
        G = GATES[self.cell] * H
        fwd = (T + 1) * H + 2 * G + T * H + (4 * T * H if self.cell == "gru" else 0)
        bwd = T * H + T * G * (2 if self.cell == "gru" else 1) + 2 * H + G + C
        return fwd + (bwd if backward else 0)

    def config(self):
        return {"type": "RecurrentDecoder", "units": self.units, "steps": self.steps, "cell": self.cell,
                "step_input": self.step_input}


@register
class TimeDistributedDense(Layer):
    """The same Dense at every step: s: (N, T, H) -> y: (N, T, F),  y_t = s_t W + b  (no activation).

    One matrix product over all steps, s.reshape(N T, H) @ W; dW = sum_t s_t^T dy_t, db = sum_{n,t} dy,
    ds = dy @ W^T. Initialised as a linear Dense (layers.init_weights).
    """

    def __init__(self, units):
        super().__init__()
        self.units = check_int("units", units)

    def _out_shape(self, in_shape):
        if len(in_shape) != 2:
            raise ConfigError(f"TimeDistributedDense takes sequences (N, T, H); it was given per-example shape "
                              f"{in_shape}: use Dense for flat inputs")
        return (in_shape[0], self.units)

    def param_shapes(self):
        return {"W": (self.in_shape[1], self.units), "b": (self.units,)}

    def _init(self, rng, dtype, init):
        i, o = self.in_shape[1], self.units
        W = init_weights(i, o, "linear", rng, dtype, init)
        return {"W": W, "b": init_bias(i, o, rng, dtype, init)}

    def forward(self, s, ws=None):
        """s: (N, T, H) -> y: (N, T, F)."""
        self._check_input(s)
        W = self.params["W"]
        N, (T, H), F = s.shape[0], self.in_shape, self.units
        s2 = np.ascontiguousarray(s, dtype=W.dtype).reshape(N * T, H)
        y = np.matmul(s2, W, out=self._buf("y", (N * T, F), W.dtype, ws))
        _kernels.K.add_bias(y, self.params["b"])
        self.cache = s2
        return y.reshape(N, T, F)

    def backward(self, dy, need_dx=True):
        """dy: (N, T, F) -> ds: (N, T, H) (None unless need_dx); writes grads["W"], grads["b"]."""
        s2, W = self.cache, self.params["W"]
        N, T, F = dy.shape
        dy2 = np.ascontiguousarray(dy).reshape(N * T, F)
        np.matmul(s2.T, dy2, out=self.grads["W"])
        _kernels.K.sum_rows(dy2, self.grads["b"])
        if not need_dx:
            return None
        return np.matmul(dy2, W.T, out=self._buf("ds", (N * T, W.shape[0]), W.dtype, True)).reshape(N, T, -1)

    def row_elements(self, backward=False):
        """y: T F; with backward ds: T H (and a contiguous copy of dy when it is not one: not counted)."""
        (T, H), F = self.in_shape, self.units
        return T * F + (T * H if backward else 0)

    def config(self):
        return {"type": "TimeDistributedDense", "units": self.units}
