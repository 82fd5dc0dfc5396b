"""The recurrent layers against PyTorch from the same parameters, in float64: forward and every gradient.

Run with a Python that has torch (never a dependency of the package), from the repository root:
    /work/venv-bench/bin/python benchmarks/rnn_torch_equality.py
Checks torch.nn.GRU / nn.RNN (one layer, batch_first) against vae_numpy.nn.GRU / RNN over several lengths, and
the whole recurrent decoder (s_0 = tanh(Linear(h)), the cell fed h at every step, a Linear readout per step).
Prints one line per case with the largest relative error and exits 1 if any is above 1e-12.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from vae_numpy.gradcheck import array_rel_error
from vae_numpy.nn import GRU, RNN, RecurrentDecoder, TimeDistributedDense, materialize

TOL = 1e-12
torch.set_default_dtype(torch.float64)


def _t(a, grad=True):
    return torch.tensor(np.asarray(a), requires_grad=grad)


def _torch_cell(cell, F, H, p):
    """torch's module with our parameters: weight_ih = Wx^T, weight_hh = Wh^T; the RNN's one b in bias_ih."""
    mod = (torch.nn.GRU if cell == "gru" else torch.nn.RNN)(F, H, batch_first=True)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(_t(p["Wx"].T, False))
        mod.weight_hh_l0.copy_(_t(p["Wh"].T, False))
        mod.bias_ih_l0.copy_(_t(p["bx"] if cell == "gru" else p["b"], False))
        mod.bias_hh_l0.copy_(_t(p["bh"], False) if cell == "gru" else torch.zeros(H))
    return mod


def _grads_torch(mod, cell):
    g = {"Wx": mod.weight_ih_l0.grad.numpy().T, "Wh": mod.weight_hh_l0.grad.numpy().T}
    if cell == "gru":
        g.update(bx=mod.bias_ih_l0.grad.numpy(), bh=mod.bias_hh_l0.grad.numpy())
    else:
        g["b"] = mod.bias_ih_l0.grad.numpy()
    return g


def encoder_case(cell, N, T, F, H, seed):
    rng = np.random.default_rng(seed)
    layer = materialize((GRU if cell == "gru" else RNN)(H, return_sequences=True), (T, F), seed=seed, init="torch")
    x, dy = rng.standard_normal((N, T, F)), rng.standard_normal((N, T, H))
    y = layer.forward(x)
    dx = layer.backward(dy)
    mod = _torch_cell(cell, F, H, layer.params)
    xt = _t(x)
    yt, _ = mod(xt)
    (yt * _t(dy, False)).sum().backward()
    errs = [array_rel_error(y, yt.detach().numpy()), array_rel_error(dx, xt.grad.numpy())]
    errs += [array_rel_error(layer.grads[k], v) for k, v in _grads_torch(mod, cell).items()]
    return max(errs)


def decoder_case(cell, N, T, C, H, F, seed):
    rng = np.random.default_rng(seed)
    dec = materialize(RecurrentDecoder(H, T, cell=cell), (C,), seed=seed, init="torch")
    out = materialize(TimeDistributedDense(F), (T, H), seed=seed + 1, init="torch")
    c, dy = rng.standard_normal((N, C)), rng.standard_normal((N, T, F))
    y = out.forward(dec.forward(c))
    dc = dec.backward(out.backward(dy))
    p = dec.params
    mod = _torch_cell(cell, C, H, p)
    init_W, init_b, W, b = (_t(p["init.W"]), _t(p["init.b"]), _t(out.params["W"]), _t(out.params["b"]))
    ct = _t(c)
    s0 = torch.tanh(ct @ init_W + init_b)
    states, _ = mod(ct[:, None, :].expand(N, T, C), s0[None])
    yt = states @ W + b
    (yt * _t(dy, False)).sum().backward()
    errs = [array_rel_error(y, yt.detach().numpy()), array_rel_error(dc, ct.grad.numpy()),
            array_rel_error(dec.grads["init.W"], init_W.grad.numpy()),
            array_rel_error(dec.grads["init.b"], init_b.grad.numpy()),
            array_rel_error(out.grads["W"], W.grad.numpy()), array_rel_error(out.grads["b"], b.grad.numpy())]
    errs += [array_rel_error(dec.grads[k], v) for k, v in _grads_torch(mod, cell).items()]
    return max(errs)


def main():
    worst = 0.0
    for cell in ("gru", "rnn"):
        for N, T in ((1, 1), (3, 2), (4, 5), (5, 28)):
            e = encoder_case(cell, N, T, F=6, H=7, seed=T)
            d = decoder_case(cell, N, T, C=3, H=7, F=6, seed=T)
            print(f"{cell} N={N} T={T}: encoder {e:.1e}, decoder + readout {d:.1e} (relative, float64)")
            worst = max(worst, e, d)
    print(f"largest relative error {worst:.1e} (tolerance {TOL:.0e})")
    return 0 if worst < TOL else 1


if __name__ == "__main__":
    sys.exit(main())
