"""Finite-difference check of any Layer: its dx and every parameter gradient, in float64.

For a random dout, the scalar f = sum(layer.forward(x) * dout) has df/dx = layer.backward(dout) and
df/dtheta = layer.grads[theta]; both are compared with central differences (gradcheck.numerical_gradient).
"""

from __future__ import annotations

import numpy as np

from ..gradcheck import CHECK_H, TOL, Report, Row, array_rel_error, numerical_gradient


def check_layer(layer, x, tol=TOL, seed=0, h=CHECK_H, check_dx=True):
    """Report with a row "dx" and one per parameter. layer: built, bound, float64; x: (N, *in_shape) float64."""
    x = np.array(x, dtype=np.float64)
    y = np.array(layer.forward(x), dtype=np.float64)
    dout = np.random.default_rng(seed).standard_normal(y.shape)
    dx = layer.backward(dout.copy(), need_dx=check_dx)
    analytic = {k: g.copy() for k, g in layer.grads.items()}
    if check_dx:
        analytic = {"dx": np.array(dx), **analytic}

    def f(_):
        return float(np.sum(layer.forward(x) * dout))

    report = Report(f"{layer!r}")
    for name, grad in analytic.items():
        target = x if name == "dx" else layer.params[name]
        num = numerical_gradient(f, target, h)
        report.rows.append(Row(name, tuple(grad.shape), array_rel_error(grad, num), tol))
    return report
