"""Recurrent encoder layers: a vanilla tanh RNN and a GRU unrolled over a sequence, as Layers.

Shapes: x: (N, T, F) (an image as T = 28 rows of F = 28 pixels) -> the last state h_T: (N, H), or every state
(N, T, H) with ``return_sequences=True``. The state starts at h_0 = 0.

The cells are nn/recurrent_steps.py's (GRU in PyTorch's convention, gate blocks [r | z | n]):

    RNN   h_t = tanh(x_t Wx + h_{t-1} Wh + b)
    GRU   r, z = sigma(x_t Wx + bx + h_{t-1} Wh + bh)  (their blocks),  n = tanh(gx_n + r * gh_n),
          h_t = (1 - z) n + z h_{t-1}

Computed fast, with the same numbers as the readable steps (a test asserts it):
- The input projections of all T steps are one matrix product outside the time loop,
  Gx = x.reshape(N T, F) @ Wx + bx; inside the loop each step does one product h_{t-1} @ Wh and one fused
  elementwise kernel (_rnn_kernels.py, Numba beside its NumPy twin).
- Backpropagation through time keeps only the product dgh_t @ Wh^T inside the loop (it carries the gradient to
  h_{t-1}); the weight gradients are one product each after the loop, over all steps at once:
  dWh = [h_0 .. h_{T-1}]^T [dgh_1 .. dgh_T],  dWx = X^T dGx,  dx = dGx Wx^T.
- Internally time-major (T, N, .): each step's slice is contiguous.

Initialisation: init="he-xavier" (the Keras GRU's choice): Wx Xavier normal, std = sqrt(2 / (F + H)); Wh
orthogonal, one H x H block per gate; biases zero. init="torch": every parameter U(-1/sqrt(H), +1/sqrt(H)),
torch.nn.GRU's / nn.RNN's default. Parameters are drawn in the order Wx, Wh, then the biases.
"""

from __future__ import annotations

import numpy as np

from .. import _kernels, _rnn_kernels
from .._validate import check_choice, check_int
from ..errors import ConfigError
from ..layers import INITS
from .base import Layer, Sequential, register
from .shape import Flatten, Reshape

CELLS = ("gru", "rnn")
GATES = {"gru": 3, "rnn": 1}


# ------------------------------------------------------------------------------ shared by the layers
def cell_param_shapes(cell, F, H):
    """The cell's parameters for inputs of F features and H units, in initialisation order."""
    G = GATES[cell] * H
    if cell == "gru":
        return {"Wx": (F, G), "Wh": (H, G), "bx": (G,), "bh": (G,)}
    return {"Wx": (F, G), "Wh": (H, G), "b": (G,)}


def orthogonal(n, rng):
    """An n x n orthogonal matrix, Haar-distributed: Q of the QR of a Gaussian, columns signed by diag(R)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def init_cell(cell, F, H, rng, dtype, init):
    """Initial values {name: array} of cell_param_shapes(cell, F, H) (see the module docstring)."""
    check_choice("init", init, INITS)
    shapes = cell_param_shapes(cell, F, H)
    if init == "torch":
        bound = 1.0 / np.sqrt(H)
        return {k: rng.uniform(-bound, bound, s).astype(dtype) for k, s in shapes.items()}
    g = GATES[cell]
    out = {"Wx": (rng.standard_normal((F, g * H)) * np.sqrt(2.0 / (F + H))).astype(dtype),
           "Wh": np.concatenate([orthogonal(H, rng) for _ in range(g)], axis=1).astype(dtype)}
    out.update({k: np.zeros(s, dtype=dtype) for k, s in shapes.items() if k not in out})
    return out


def input_bias(cell, params):
    """The bias added to x Wx: bx for the GRU, b for the RNN (whose one bias is folded into Gx)."""
    return params["bx"] if cell == "gru" else params["b"]


def unroll_forward(cell, gx, h0, params, buf):
    """Run T steps. gx: (T, N, G) holding x_t Wx + input_bias (or one (N, G) used at every step), h0: (N, H).

    Returns hs: (T + 1, N, H) with hs[0] = h0; the GRU's gates go to buf's "r", "z", "n", "ghn" (T, N, H).
    buf(key, shape) gives the output arrays.
    """
    K = _rnn_kernels.kernels()
    T = len(gx) if gx.ndim == 3 else buf.steps
    N, H = h0.shape
    Wh = params["Wh"]
    hs = buf("hs", (T + 1, N, H))
    hs[0] = h0
    gh = buf("gh", (N, Wh.shape[1]))
    if cell == "gru":
        r, z, n, ghn = (buf(k, (T, N, H)) for k in ("r", "z", "n", "ghn"))
    for t in range(T):
        gx_t = gx[t] if gx.ndim == 3 else gx
        np.matmul(hs[t], Wh, out=gh)
        if cell == "gru":
            K.gru_cell_forward(gx_t, gh, params["bh"], hs[t], r[t], z[t], n[t], ghn[t], hs[t + 1])
        else:
            K.rnn_cell_forward(gx_t, gh, hs[t + 1])
    return hs


def unroll_backward(cell, dhs, dh_last, hs, params, buf):
    """Backpropagation through time over unroll_forward's steps.

    dhs: (T, N, H) the gradient reaching each state from outside (or None), dh_last: (N, H) the gradient of
    the last state (or None). Returns (dgx (T, N, G), dgh (T, N, G), dh0 (N, H)) and writes grads "Wh" and
    (GRU) "bh" into the dict buf.grads; dgx is the gradient of x_t Wx + input_bias (for the RNN dgh is dgx).
    """
    K = _rnn_kernels.kernels()
    T, N, H = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    Wh, G = params["Wh"], params["Wh"].shape[1]
    WhT = Wh.T
    dgx = buf("dgx", (T, N, G))
    dgh = buf("dgh", (T, N, G)) if cell == "gru" else dgx
    carry, mm = buf("carry", (N, H)), buf("mm", (N, H))
    carry[...] = 0 if dh_last is None else dh_last
    mm[...] = 0
    if cell == "gru":
        r, z, n, ghn = (buf(k, (T, N, H)) for k in ("r", "z", "n", "ghn"))
    for t in range(T - 1, -1, -1):
        if dhs is not None:
            carry += dhs[t]                        # the output's gradient at h_{t+1} joins the carried one
        if cell == "gru":
            K.gru_cell_backward(carry, mm, hs[t], r[t], z[t], n[t], ghn[t], dgx[t], dgh[t])
        else:
            K.rnn_cell_backward(carry, mm, hs[t + 1], dgx[t])
            carry[...] = 0                         # the RNN has no direct path h_{t-1} -> h_t
        np.matmul(dgh[t], WhT, out=mm)             # dh_{t-1} = carry + dgh_t Wh^T (the kernel adds them)
    dh0 = carry + mm
    grads = buf.grads
    np.matmul(hs[:T].reshape(T * N, H).T, dgh.reshape(T * N, G), out=grads["Wh"])
    if cell == "gru":
        _kernels.K.sum_rows(dgh.reshape(T * N, G), grads["bh"])
    return dgx, dgh, dh0


class _Buffers:
    """buf(key, shape) -> an array of the layer's dtype: reused across calls when ws, fresh otherwise."""

    def __init__(self, layer, dtype, ws, steps=None):
        self.layer, self.dtype, self.ws, self.steps, self.grads = layer, dtype, ws, steps, layer.grads
        self.fresh = {}

    def __call__(self, key, shape):
        if self.ws:
            return self.layer._buf(key, tuple(shape), self.dtype, True)
        arr = self.fresh.get(key)                  # one call's forward and backward share the cache arrays
        if arr is None or arr.shape != tuple(shape):
            arr = self.fresh[key] = np.empty(shape, dtype=self.dtype)
        return arr


# ------------------------------------------------------------------------------------- the encoders
class _RecurrentEncoder(Layer):
    cell = None

    def __init__(self, units, return_sequences=False):
        super().__init__()
        self.units = check_int("units", units)
        if not isinstance(return_sequences, bool):
            raise ConfigError(f"return_sequences={return_sequences!r} must be True or False")
        self.return_sequences = return_sequences

    def _out_shape(self, in_shape):
        if len(in_shape) != 2:
            raise ConfigError(f"{type(self).__name__} takes sequences (N, T, F); it was given per-example shape "
                              f"{in_shape}: put a Reshape((T, F)) before it, e.g. Reshape((28, 28)) for MNIST")
        return (in_shape[0], self.units) if self.return_sequences else (self.units,)

    def param_shapes(self):
        return cell_param_shapes(self.cell, self.in_shape[1], self.units)

    def _init(self, rng, dtype, init):
        return init_cell(self.cell, self.in_shape[1], self.units, rng, dtype, init)

    def forward(self, x, ws=None):
        """x: (N, T, F) -> h_T: (N, H), or (N, T, H) with return_sequences."""
        self._check_input(x)
        p = self.params
        N, (T, F), H, G = x.shape[0], self.in_shape, self.units, p["Wh"].shape[1]
        buf = _Buffers(self, p["Wh"].dtype, ws)
        xt = buf("xt", (T, N, F))
        xt[...] = x.transpose(1, 0, 2)                                   # time-major copy
        gx = np.matmul(xt.reshape(T * N, F), p["Wx"], out=buf("gx", (T * N, G)))
        _kernels.K.add_bias(gx, input_bias(self.cell, p))                # all T input projections at once
        hs = unroll_forward(self.cell, gx.reshape(T, N, G), np.zeros((N, H), p["Wh"].dtype), p, buf)
        self.cache = (buf, xt, hs)
        if self.return_sequences:
            y = buf("y", (N, T, H))
            y[...] = hs[1:].transpose(1, 0, 2)
            return y
        return hs[T]

    def backward(self, dy, need_dx=True):
        """dy: (N, H) or (N, T, H) -> dx: (N, T, F) (None unless need_dx); writes every grads entry."""
        buf, xt, hs = self.cache
        p, g = self.params, self.grads
        T, N, F = xt.shape
        G = p["Wh"].shape[1]
        dhs = dy.transpose(1, 0, 2) if self.return_sequences else None
        dgx, _, _ = unroll_backward(self.cell, dhs, None if self.return_sequences else dy, hs, p, buf)
        dgx2 = dgx.reshape(T * N, G)
        np.matmul(xt.reshape(T * N, F).T, dgx2, out=g["Wx"])
        _kernels.K.sum_rows(dgx2, g["bx" if self.cell == "gru" else "b"])
        if not need_dx:
            return None
        dxt = np.matmul(dgx2, p["Wx"].T, out=buf("dxt", (T * N, F)))
        dx = buf("dx", (N, T, F))
        dx[...] = dxt.reshape(T, N, F).transpose(1, 0, 2)
        return dx

    def config(self):
        cfg = {"type": type(self).__name__, "units": self.units}
        if self.return_sequences:
            cfg["return_sequences"] = True
        return cfg


@register
class GRU(_RecurrentEncoder):
    """A GRU over the sequence (PyTorch's convention): x: (N, T, F) -> last state (N, H) (see module docstring)."""

    cell = "gru"


@register
class RNN(_RecurrentEncoder):
    """A vanilla tanh RNN over the sequence: x: (N, T, F) -> last state (N, H) (see the module docstring)."""

    cell = "rnn"


# ------------------------------------------------------------------------------------- arch="rnn"
STATE_SIZE = 128


def rnn_arch(input_dim, latent_dim, side, activation=None, state_size=STATE_SIZE, cell="gru"):
    """arch="rnn" (architectures.py calls this): an image as `side` rows of `side` pixels.

        encoder  x: (N, D) -> Reshape (T, F) -> GRU(S) -> its last state (N, S), which the heads read
        decoder  h: (N, Z) -> s_0 = tanh(h W0 + b0) -> GRU(S) over T steps, fed h at every step -> (N, T, S)
        output   TimeDistributedDense(F): one row of F logits (or Gaussian means) per step -> Flatten (N, D)

    T = F = side (28 for MNIST). cell="rnn" puts the vanilla tanh RNN in both places. state_size S defaults to
    128: the recurrent products cost O(S^2) per step, and S = 256 made an epoch about 3.5x longer. The cells have
    their own nonlinearities (sigma and tanh), so `activation` does not apply to this arch.
    """
    from ..architectures import Arch  # here, not at the top: both modules import this one
    from .recurrent_decoder import RecurrentDecoder, TimeDistributedDense
    state_size = check_int("state_size", state_size)
    cell = check_choice("cell", cell, CELLS)
    encoder_cell = {"gru": GRU, "rnn": RNN}[cell]
    encoder = Sequential([Reshape((side, side)), encoder_cell(state_size)])
    decoder = RecurrentDecoder(state_size, side, cell=cell)
    output = Sequential([TimeDistributedDense(side), Flatten()])
    return Arch(encoder, decoder, output)
