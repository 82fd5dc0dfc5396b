"""Training-epoch benchmark: the project against the matmul floor and against PyTorch (issue 7).

Run: ``python benchmarks/bench_epoch.py [--deep] [--float64] [--epochs 2] [--json PATH] [--skip-torch]
[--iwae-images 200 --iwae-k 1000] [--only project,floor,torch,firstbatch,iwae,profile] [--profile]``.
Offline: Fashion-MNIST's 60,000 train images from ``vn.datasets.load_dataset("fashion-mnist")`` (Debian's
``/usr/share/datasets/fashion-mnist``). Prints a table and writes ``benchmarks/results/epoch[_deep][_float64]
.json``. See ``benchmarks/README.md`` for what every number means and the goals it is read against.

Every measurement runs in a fresh subprocess of this script (``--worker NAME``), one after the other:

- ``project``: the real training path, per batch ``Batches`` -> ``rng.standard_normal(out=)`` ->
  ``model._forward`` -> ``model.backward`` -> ``Adam.step``; epoch 1 includes Numba compilation (or cache
  loading), epochs 2.. are timed. Then peak RSS, then the IWAE log-likelihood throughput.
- ``floor``: exactly the model's matmuls (the first layer computes no dx) into preallocated outputs.
- ``torch``: ``nn.Linear`` layers, BCE-with-logits (sum / B) + KL, ``torch.optim.Adam``, 2 threads, fed
  ``torch.from_numpy`` of a batch buffer filled exactly as ``Batches`` fills its own. It never imports
  vae_numpy (whose Numba import alone adds ~60 MB of RSS): it reads the images from a temporary .npy.
- ``firstbatch``: import + model build + the first forward/backward/step, with Numba's cache cold
  (``NUMBA_CACHE_DIR`` an empty temporary folder), then warm (the same folder again).
- ``profile`` (``--profile``): one batch split into its pieces, averaged over ``--profile-batches`` batches,
  by wrapping the package's functions and its ``np.matmul``/``np.sum``/``np.add.reduce`` with ``perf_counter`` timers.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))

BATCH = 128
LR = 1e-3
DATASET = "fashion-mnist"
IWAE_FULL = (10_000, 1_000)  # the test set x K the goal is stated for
GOALS = {"project_over_torch": 0.75, "project_over_floor": 1.25, "rss_project_over_torch": 0.5,
         "first_batch_warm_s": 1.0}
ENV_KEYS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR", "VAE_NUMPY_JIT", "VAE_NUMPY_DATA")
PARTS = ("project", "floor", "torch", "firstbatch", "iwae", "profile")


def architecture(deep: bool) -> tuple[int, tuple[int, ...], int]:
    """(D, hidden_dims, Z): 784-400-20, or 784-512-256-32 with --deep."""
    return (784, (512, 256), 32) if deep else (784, (400,), 20)


def _proc_status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, MB: VmHWM from /proc/self/status.

    Not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux carries that over exec from the process that forked, so
    every worker would report at least the driver's own RSS (vae_numpy, matplotlib and the data set: ~180 MB).
    ``ru_maxrss`` is the fallback where /proc is missing.
    """
    hwm = _proc_status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float | None:
    return _proc_status_mb("VmRSS")


def rss_stage() -> list:
    """[current RSS, peak RSS so far] in MB: where in a run the memory is taken."""
    return [current_rss_mb(), peak_rss_mb()]


def fill_batch(images_u8: np.ndarray, idx: np.ndarray, u8: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The torch side's batch: gather the uint8 rows, copy to float, divide by 255 in place.

    What ``Batches``' NumPy twin does (``Batches`` itself runs the fused ``gather_unit`` kernel, ~60 us a
    batch faster, under 1% of a PyTorch epoch); the torch process does not import vae_numpy.
    """
    np.take(images_u8, idx, axis=0, out=u8, mode="clip")
    np.copyto(out, u8)
    return np.divide(out, out.dtype.type(255), out=out)


def epoch_summary(times: list[float]) -> dict:
    """Epoch 1 (compilation / warm-up) apart; the rest summarized by their minimum and median."""
    timed = times[1:] or times
    return {"epoch_s": min(timed), "epoch_median_s": statistics.median(timed), "epoch1_s": times[0],
            "epoch_times_s": times}


# ================================================================================================ workers
def worker_project(spec: dict) -> dict:
    """The real training path (the per-batch sequence of vn.train), then peak RSS, then IWAE throughput."""
    t0 = time.perf_counter()
    import vae_numpy as vn
    from vae_numpy import _kernels
    t_import = time.perf_counter() - t0
    rss = {"import": rss_stage()}
    dtype = np.dtype(spec["dtype"])
    D, hidden, Z = spec["arch"]
    images, _ = vn.datasets.load_dataset(DATASET, split="train", download=False)
    rss["data"] = rss_stage()
    rng = np.random.default_rng(0)
    model = vn.VAE(input_dim=D, hidden_dims=hidden, latent_dim=Z, dtype=dtype.name, seed=0)
    opt = vn.Adam(model.params, lr=LR)
    batches = vn.datasets.Batches(images, BATCH, rng=rng, dtype=dtype.name)
    eps_buf = np.empty((BATCH, Z), dtype)
    rss["model"] = rss_stage()
    times, losses = [], []
    for epoch in range(spec["epochs"]):
        total, n = 0.0, 0
        start = time.perf_counter()
        for xb in batches:
            B = xb.shape[0]
            eps = eps_buf if B == BATCH else eps_buf[:B]
            rng.standard_normal((B, Z), dtype=dtype.type, out=eps)
            total += model._forward(xb, eps) * B
            model.backward()
            opt.step(model.grads)
            n += B
        times.append(time.perf_counter() - start)
        losses.append(total / n)
        rss[f"epoch{epoch + 1}"] = rss_stage()
    res = {**epoch_summary(times), "loss_per_epoch": losses, "import_s": t_import, "jit": _kernels.jit_enabled(),
           "rss_mb_current_peak": rss, "peak_rss_mb": peak_rss_mb(), "n_params": int(model.n_params)}
    res["vn_train"] = time_vn_train(vn, images, spec)
    if spec["iwae_images"] > 0:
        res["iwae"] = time_iwae(vn, model, spec)
        res["peak_rss_after_iwae_mb"] = peak_rss_mb()
    return res


def time_vn_train(vn, images, spec: dict) -> dict:
    """vn.train(model, x, epochs=1, progress=False), timed on its 2nd call, where train.py exists."""
    train = getattr(vn, "train", None)
    if not callable(train):
        return {"available": False, "reason": "vae_numpy has no train() (no train.py yet)"}
    D, hidden, Z = spec["arch"]
    model = vn.VAE(input_dim=D, hidden_dims=hidden, latent_dim=Z, dtype=spec["dtype"], seed=0)
    try:
        times, inner = [], []
        for _ in range(spec["epochs"]):
            start = time.perf_counter()
            history = train(model, images, epochs=1, progress=False, seed=0)
            times.append(time.perf_counter() - start)
            inner.append(history[-1].get("seconds") if history and isinstance(history[-1], dict) else None)
    except Exception as exc:  # an API not yet settled: say so rather than fail the whole run
        return {"available": False, "reason": f"{type(exc).__name__}: {exc}"[:300]}
    return {"available": True, **epoch_summary(times), "history_seconds": inner,
            "loss": history[-1].get("train_loss") if history and isinstance(history[-1], dict) else None}


def time_iwae(vn, model, spec: dict) -> dict:
    """model.log_likelihood on the first n test images with K samples: images * samples per second."""
    n, K = spec["iwae_images"], spec["iwae_k"]
    test, _ = vn.datasets.load_dataset(DATASET, split="test", download=False)
    x = vn.datasets.to_unit(vn.datasets.flatten(test[:n]), dtype=spec["dtype"])
    model.log_likelihood(x[:2], n_samples=min(K, 50), seed=0)  # compile / load the kernels first
    start = time.perf_counter()
    ll = model.log_likelihood(x, n_samples=K, seed=0)
    seconds = time.perf_counter() - start
    rate = n * K / seconds
    return {"images": n, "k": K, "seconds": seconds, "samples_per_s": rate,
            "full_images": IWAE_FULL[0], "full_k": IWAE_FULL[1],
            "full_extrapolated_s": IWAE_FULL[0] * IWAE_FULL[1] / rate, "mean_log_likelihood": float(ll.mean())}


def floor_ops(arch, dtype, B: int, rng) -> list[tuple[str, tuple, np.ndarray]]:
    """The model's matmuls for one batch, in its order: (label, (a, b), out) with preallocated outputs.

    Forward: every layer's x @ W. Backward, from the output layer down: dW = x.T @ d, then dx = d @ W.T,
    except the first encoder layer (no dx). The two heads each get their own dW and dx (dh is their sum).
    """
    D, hidden, Z = arch
    std = rng.standard_normal
    enc, dec = [f"enc{i + 1}" for i in range(len(hidden))], [f"dec{i + 1}" for i in range(len(hidden))]
    dims = [D, *hidden]
    ddims = [Z, *hidden[::-1]]
    layers = [(n, i, o) for n, i, o in zip(enc, dims[:-1], dims[1:], strict=True)]
    layers += [("enc_mu", dims[-1], Z), ("enc_log_var", dims[-1], Z)]
    layers += [(n, i, o) for n, i, o in zip(dec, ddims[:-1], ddims[1:], strict=True)]
    layers += [("dec_out", ddims[-1], D)]
    arr = {}  # name -> (x, W, y, dy, dW, dx)
    prev = None
    for name, i, o in layers:
        if name in ("enc_mu", "enc_log_var"):
            x = arr[enc[-1]][2] if enc else None
        elif name == (dec[0] if dec else "dec_out"):
            x = std((B, i)).astype(dtype)  # z, from the reparameterization
        else:
            x = std((B, i)).astype(dtype) if prev is None else arr[prev][2]
        arr[name] = (x, std((i, o)).astype(dtype), np.empty((B, o), dtype), std((B, o)).astype(dtype),
                     np.empty((i, o), dtype), np.empty((B, i), dtype))
        prev = name
    ops = [(f"fwd {n}", (arr[n][0], arr[n][1]), arr[n][2]) for n, _, _ in layers]
    back = ["dec_out", *dec[::-1], "enc_mu", "enc_log_var", *enc[::-1]]
    for n in back:
        x, W, _, dy, dW, dx = arr[n]
        ops.append((f"dW {n}", (x.T, dy), dW))
        if n != (enc[0] if enc else None):
            ops.append((f"dx {n}", (dy, W.T), dx))
    return ops


def run_ops(ops) -> None:
    mm = np.matmul
    for _, (a, b), out in ops:
        mm(a, b, out=out)


def worker_floor(spec: dict) -> dict:
    dtype = np.dtype(spec["dtype"])
    rng = np.random.default_rng(0)
    full = floor_ops(spec["arch"], dtype, BATCH, rng)
    n_full, rem = divmod(spec["n_train"], BATCH)
    last = floor_ops(spec["arch"], dtype, rem, rng) if rem else []
    times = []
    for _ in range(spec["epochs"]):
        start = time.perf_counter()
        for _ in range(n_full):
            run_ops(full)
        if last:
            run_ops(last)
        times.append(time.perf_counter() - start)
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for _, (a, b), _ in full) * n_full
    flops += sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for _, (a, b), _ in last)
    res = epoch_summary(times)
    return {**res, "n_matmuls_per_batch": len(full), "gflop_per_epoch": flops / 1e9,
            "gflops": flops / 1e9 / res["epoch_s"], "batches": n_full + bool(rem), "peak_rss_mb": peak_rss_mb()}


def worker_torch(spec: dict) -> dict:
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F
    from torch import nn
    t_import = time.perf_counter() - t0
    rss = {"import": rss_stage()}
    torch.set_num_threads(2)
    torch.manual_seed(0)
    dt = {"float32": torch.float32, "float64": torch.float64}[spec["dtype"]]
    dtype = np.dtype(spec["dtype"])
    D, hidden, Z = spec["arch"]
    images = np.load(spec["npy"]).reshape(-1, D)
    rss["data"] = rss_stage()

    class TorchVAE(nn.Module):
        def __init__(self):
            super().__init__()
            enc, d = [], D
            for h in hidden:
                enc += [nn.Linear(d, h), nn.ReLU()]
                d = h
            self.enc, self.mu, self.log_var = nn.Sequential(*enc), nn.Linear(d, Z), nn.Linear(d, Z)
            dec, d = [], Z
            for h in hidden[::-1]:
                dec += [nn.Linear(d, h), nn.ReLU()]
                d = h
            self.dec = nn.Sequential(*dec, nn.Linear(d, D))

        def forward(self, x, eps):
            h = self.enc(x)
            mu, log_var = self.mu(h), self.log_var(h)
            z = mu + torch.exp(0.5 * log_var) * eps
            logits = self.dec(z)
            B = x.shape[0]
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / B
            kl = -0.5 * torch.sum(1 + log_var - mu * mu - torch.exp(log_var)) / B
            return rec + kl

    model = TorchVAE().to(dt)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    rng = np.random.default_rng(0)
    order = np.arange(len(images))
    u8, buf = np.empty((BATCH, D), np.uint8), np.empty((BATCH, D), dtype)
    xt_full = torch.from_numpy(buf)  # shares memory with buf: refilled in place every batch
    rss["model"] = rss_stage()
    times, losses = [], []
    for epoch in range(spec["epochs"]):
        total, n = 0.0, 0
        start = time.perf_counter()
        rng.shuffle(order)
        for i in range(0, len(images), BATCH):
            idx = order[i:i + BATCH]
            B = len(idx)
            if B == BATCH:
                fill_batch(images, idx, u8, buf)
                xt = xt_full
            else:
                xt = torch.from_numpy(fill_batch(images, idx, u8[:B], buf[:B]))
            eps = torch.randn(B, Z, dtype=dt)
            opt.zero_grad()
            loss = model(xt, eps)
            loss.backward()
            opt.step()
            total += loss.item() * B
            n += B
        times.append(time.perf_counter() - start)
        losses.append(total / n)
        rss[f"epoch{epoch + 1}"] = rss_stage()
    return {**epoch_summary(times), "loss_per_epoch": losses, "import_s": t_import, "rss_mb_current_peak": rss,
            "peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads(), "torch": torch.__version__}


FIRST_BATCH_CODE = r"""
import json, sys, time
wall0 = time.time()
t0 = time.perf_counter()
import numpy as np
import vae_numpy as vn
t1 = time.perf_counter()
HEAVY = ("matplotlib", "scipy", "tqdm", "IPython", "pandas")
after_import = [m for m in HEAVY if m in sys.modules]
spec = json.loads(sys.argv[1])
images = np.load(spec["npy"])
t2 = time.perf_counter()
D, hidden, Z = spec["arch"]
rng = np.random.default_rng(0)
model = vn.VAE(input_dim=D, hidden_dims=hidden, latent_dim=Z, dtype=spec["dtype"], seed=0)
opt = vn.Adam(model.params, lr=1e-3)
batches = vn.datasets.Batches(images, 128, rng=rng, dtype=spec["dtype"])
t3 = time.perf_counter()
xb = next(iter(batches))
eps = np.empty((xb.shape[0], Z), spec["dtype"])
rng.standard_normal(eps.shape, dtype=eps.dtype.type, out=eps)
model._forward(xb, eps)
tf = time.perf_counter()
model.backward()
tb = time.perf_counter()
opt.step(model.grads)
t4 = time.perf_counter()
hits = misses = 0
try:
    from numba.core.registry import CPUDispatcher
    from vae_numpy import _kernels
    seen = []
    for obj in [*vars(_kernels).values(), *vars(_kernels.NUMBA).values()]:
        for o in [obj, *(c.cell_contents for c in (getattr(obj, "__closure__", None) or ()))]:
            if isinstance(o, CPUDispatcher) and all(o is not s for s in seen):
                seen.append(o)
                hits += sum(o.stats.cache_hits.values())
                misses += sum(o.stats.cache_misses.values())
except Exception:
    hits = misses = None
print("RESULT " + json.dumps({"import_s": t1 - t0, "load_npy_s": t2 - t1, "build_s": t3 - t2,
                              "first_step_s": t4 - t3, "first_batch_s": (t1 - t0) + (t4 - t2),
                              "first_forward_s": tf - t3, "first_backward_s": tb - tf, "first_adam_s": t4 - tb,
                              "wall_from_spawn_end": time.time() - (t2 - t1), "numba_cache_hits": hits,
                              "heavy_modules_after_import": after_import,
                              "heavy_modules_after_first_batch": [m for m in HEAVY if m in sys.modules],
                              "numba_cache_misses": misses}))
"""

TORCH_FIRST_BATCH_CODE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
t1 = time.perf_counter()
spec = json.loads(sys.argv[1])
torch.set_num_threads(2)
D, hidden, Z = spec["arch"]
dt = {"float32": torch.float32, "float64": torch.float64}[spec["dtype"]]
layers, d = [], D
for h in hidden:
    layers += [nn.Linear(d, h), nn.ReLU()]
    d = h
enc, mu_l, lv_l = nn.Sequential(*layers).to(dt), nn.Linear(d, Z).to(dt), nn.Linear(d, Z).to(dt)
layers, d = [], Z
for h in hidden[::-1]:
    layers += [nn.Linear(d, h), nn.ReLU()]
    d = h
dec = nn.Sequential(*layers, nn.Linear(d, D)).to(dt)
params = [*enc.parameters(), *mu_l.parameters(), *lv_l.parameters(), *dec.parameters()]
opt = torch.optim.Adam(params, lr=1e-3)
x = torch.rand(128, D, dtype=dt)
t2 = time.perf_counter()
h = enc(x)
mu, lv = mu_l(h), lv_l(h)
z = mu + torch.exp(0.5 * lv) * torch.randn(128, Z, dtype=dt)
loss = (F.binary_cross_entropy_with_logits(dec(z), x, reduction="sum")
        - 0.5 * torch.sum(1 + lv - mu * mu - torch.exp(lv))) / 128
opt.zero_grad()
loss.backward()
opt.step()
t3 = time.perf_counter()
print("RESULT " + json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "first_step_s": t3 - t2,
                              "first_batch_s": t3 - t0}))
"""


# ================================================================================================ profile
class Profiler:
    """Nested perf_counter timers: each label gets its exclusive time (its children's time subtracted)."""

    def __init__(self):
        self.on = False
        self.stack = []  # frames: [label, children_time, layer]
        self.excl = defaultdict(float)
        self.calls = defaultdict(int)
        self.kids = defaultdict(int)  # label -> timed calls made directly inside it ("loop": at the top)
        self.layer_of = {}  # id(W) or id(activation buffer) -> layer name

    def reset(self):
        self.excl.clear()
        self.calls.clear()
        self.kids.clear()

    def done(self, frame, dt):
        """Book a finished call: its exclusive time, and its inclusive time and one call to its parent."""
        self.excl[frame[0]] += dt - frame[1]
        self.calls[frame[0]] += 1
        if self.stack:
            self.stack[-1][1] += dt
            self.kids[self.stack[-1][0]] += 1
        else:
            self.kids["loop"] += 1

    def layer(self):
        for frame in reversed(self.stack):
            if frame[2] is not None:
                return frame[2]
        return None

    def timed(self, label, fn, *args, layer=None, **kwargs):
        frame = [label, 0.0, layer]
        self.stack.append(frame)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - start
            self.stack.pop()
            self.done(frame, dt)

    def wrap(self, labeler, fn):
        """fn with a timer; labeler(*args, **kwargs) -> (label, layer) names the call."""
        def wrapped(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            label, layer = labeler(*args, **kwargs)
            return self.timed(label, fn, *args, layer=layer, **kwargs)
        wrapped.__wrapped__ = fn
        return wrapped


class _UfuncProxy:
    """Stands in for a ufunc such as ``np.add``: calls go to it, ``reduce`` is the given (timed) function."""

    def __init__(self, ufunc, reduce):
        self._ufunc, self.reduce = ufunc, reduce

    def __call__(self, *args, **kwargs):
        return self._ufunc(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._ufunc, name)


class NumpyProxy:
    """Stands in for ``np`` inside a module: ``matmul``, ``sum`` and ``add.reduce`` are timed, the rest is numpy."""

    def __init__(self, prof: Profiler):
        self._prof = prof
        self.matmul = prof.wrap(self._label_matmul, np.matmul)
        self.sum = prof.wrap(self._label_sum, np.sum)
        self.add = _UfuncProxy(np.add, prof.wrap(self._label_sum, np.add.reduce))

    def __getattr__(self, name):
        return getattr(np, name)

    def _label_matmul(self, a, b, *args, **kwargs):
        prof = self._prof
        frame = prof.stack[-1] if prof.stack else None
        layer = prof.layer()
        if frame is not None and frame[0].startswith("dense fwd"):
            return f"matmul fwd {layer}", layer
        if frame is not None and frame[0].startswith("dense bwd"):
            W = frame[3]
            kind = "dW" if (a.shape[0], b.shape[-1]) == W.shape else "dx"
            return f"matmul {kind} {layer}", layer
        return f"matmul {a.shape}@{b.shape}", layer

    def _label_sum(self, a, *args, **kwargs):
        return "np.sum / np.add.reduce", self._prof.layer()


def install_profiler(prof: Profiler, model):
    """Wrap the package's dense/activation functions, its np.matmul/np.sum/np.add.reduce, and every _kernels.K kernel.

    Returns a function that undoes it all. Modules are patched by name, so a function the lead moves
    elsewhere simply stops being split out: its time then shows up in the enclosing glue.
    """
    from vae_numpy import _kernels, layers
    undo = []

    def setattr_undo(obj, name, value):
        undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    for key, arr in model.params.items():
        if key.endswith(".W"):
            prof.layer_of[id(arr)] = key[:-2]

    def lab_dense_fwd(x, W, b, out=None):
        return f"dense fwd {prof.layer_of.get(id(W), '?')}", prof.layer_of.get(id(W), "?")

    def lab_dense_bwd(dout, cache, *args, **kwargs):
        return f"dense bwd {prof.layer_of.get(id(cache[1]), '?')}", prof.layer_of.get(id(cache[1]), "?")

    def dense_fwd_factory(fn):
        def wrapped(x, W, b, out=None):
            if not prof.on:
                return fn(x, W, b, out=out)
            label, layer = lab_dense_fwd(x, W, b)
            y, cache = prof.timed(label, fn, x, W, b, out=out, layer=layer)
            prof.layer_of[id(y)] = layer  # so that the activation applied to y knows its layer
            return y, cache
        return wrapped

    def dense_bwd_factory(fn):
        def wrapped(dout, cache, *args, **kwargs):
            if not prof.on:
                return fn(dout, cache, *args, **kwargs)
            label, layer = lab_dense_bwd(dout, cache)
            frame = [label, 0.0, layer, cache[1]]  # the 4th slot: W, for NumpyProxy's dW/dx call
            prof.stack.append(frame)
            start = time.perf_counter()
            try:
                return fn(dout, cache, *args, **kwargs)
            finally:
                dt = time.perf_counter() - start
                prof.stack.pop()
                prof.done(frame, dt)
        return wrapped

    def lab_act_fwd(name, a, out=None):
        layer = prof.layer_of.get(id(a))
        return f"act fwd {name} {layer}", layer

    def lab_act_bwd(name, dy, cache, out=None):
        layer = prof.layer_of.get(id(cache)) if cache is not None else None
        return f"act bwd {name} {layer}", layer

    factories = {"dense_forward": dense_fwd_factory, "dense_backward": dense_bwd_factory,
                 "activation_forward": lambda fn: prof.wrap(lab_act_fwd, fn),
                 "activation_backward": lambda fn: prof.wrap(lab_act_bwd, fn)}
    originals = {name: getattr(layers, name) for name in factories}
    for modname, mod in list(sys.modules.items()):
        if not modname.startswith("vae_numpy") or modname == "vae_numpy._kernels" or mod is None:
            continue
        for name, factory in factories.items():
            if getattr(mod, name, None) is originals[name]:
                setattr_undo(mod, name, factory(originals[name]))
        if modname in ("vae_numpy.layers", "vae_numpy._network", "vae_numpy.models", "vae_numpy.optim") \
                and getattr(mod, "np", None) is np:
            setattr_undo(mod, "np", NumpyProxy(prof))
    K = _kernels.K
    for kname, fn in list(vars(K).items()):
        if callable(fn):
            def labeler(*args, _k=kname, **kwargs):
                layer = prof.layer()
                return (f"kernel {_k} {layer}" if layer else f"kernel {_k}"), layer
            setattr_undo(K, kname, prof.wrap(labeler, fn))

    def uninstall():
        for obj, name, value in reversed(undo):
            setattr(obj, name, value)
    return uninstall


# label prefix -> phase, first match wins ("{side}" is encoder/decoder by the label's layer)
_PHASES = (
    ("matmul fwd", "{side} matmuls (fwd)"), ("dense fwd", "{side} bias add + dense_forward glue"),
    ("kernel add_bias", "{side} bias add + dense_forward glue"), ("kernel sum_rows", "bias grads db"),
    ("act fwd", "activation forward (+ dispatch)"), ("kernel leaky_relu_forward", "activation forward (+ dispatch)"),
    ("kernel reparam_kl_forward", "reparam/KL kernel (fwd)"), ("kernel bce_logits", "BCE kernel"),
    ("matmul dW", "backward matmuls dW"), ("matmul dx", "backward matmuls dx"), ("matmul", "other matmuls"),
    ("dense bwd", "dense_backward glue"),
    ("act bwd", "activation backward (+ dispatch)"), ("kernel leaky_relu_backward", "activation backward (+ dispatch)"),
    ("kernel reparam_kl_backward", "reparam/KL kernel (bwd)"), ("kernel adam_update", "Adam kernel"),
    ("kernel gather_unit", "data (Batches: gather + scale)"),
)
_PLAIN_LABELS = {"data": "data (Batches: gather + scale)", "eps": "eps draw (rng.standard_normal)",
                 "forward": "forward glue (model._forward itself)",
                 "backward": "backward glue (model._backward itself)", "step": "Adam glue (opt.step itself)",
                 "loop": "loop glue"}


def category(label: str, enc_layers: set) -> str:
    """Group a profile label into the phases the summary reports."""
    side = "encoder" if label.split()[-1] in enc_layers else "decoder"
    for prefix, phase in _PHASES:
        if label.startswith(prefix):
            return phase.format(side=side)
    return _PLAIN_LABELS.get(label, "other: " + label)


CATEGORY_ORDER = (
    "data (Batches: gather + scale)", "eps draw (rng.standard_normal)",
    "encoder matmuls (fwd)", "encoder bias add + dense_forward glue", "activation forward (+ dispatch)",
    "reparam/KL kernel (fwd)", "decoder matmuls (fwd)", "decoder bias add + dense_forward glue", "BCE kernel",
    "forward glue (model._forward itself)", "backward matmuls dW", "backward matmuls dx", "other matmuls",
    "bias grads db", "dense_backward glue", "activation backward (+ dispatch)",
    "reparam/KL kernel (bwd)",
    "backward glue (model._backward itself)", "Adam kernel", "Adam glue (opt.step itself)", "loop glue",
)


def timer_overhead(n: int = 20_000) -> float:
    """Seconds a timed call adds to its caller's exclusive time (wrapper, labeler, bookkeeping): best of 5."""
    prof = Profiler()
    prof.on = True

    def labeler(*args, **kwargs):
        layer = prof.layer()
        return (f"kernel noop {layer}" if layer else "kernel noop"), layer

    def noop(*args, **kwargs):
        return None

    wrapped = prof.wrap(labeler, noop)
    best = float("inf")
    for _ in range(5):
        prof.stack = [["caller", 0.0, "enc1"]]
        start = time.perf_counter()
        for _ in range(n):
            wrapped(1, 2)
        t_wrapped = time.perf_counter() - start - prof.stack[0][1]  # what the caller keeps
        start = time.perf_counter()
        for _ in range(n):
            noop(1, 2)
        t_raw = time.perf_counter() - start
        best = min(best, (t_wrapped - t_raw) / n)
    return max(0.0, best)


def worker_profile(spec: dict) -> dict:
    """One batch, piece by piece, averaged over `profile_batches` full batches, in `rounds` rounds."""
    import vae_numpy as vn
    dtype = np.dtype(spec["dtype"])
    D, hidden, Z = spec["arch"]
    images, _ = vn.datasets.load_dataset(DATASET, split="train", download=False)
    rng = np.random.default_rng(0)
    model = vn.VAE(input_dim=D, hidden_dims=hidden, latent_dim=Z, dtype=dtype.name, seed=0)
    opt = vn.Adam(model.params, lr=LR)
    batches = vn.datasets.Batches(images, BATCH, rng=rng, dtype=dtype.name, drop_last=True)
    eps = np.empty((BATCH, Z), dtype)
    nb = min(spec["profile_batches"], len(batches))

    def plain(n):
        it = iter(batches)
        start = time.perf_counter()
        for _ in range(n):
            xb = next(it)
            rng.standard_normal((BATCH, Z), dtype=dtype.type, out=eps)
            model._forward(xb, eps)
            model.backward()
            opt.step(model.grads)
        return (time.perf_counter() - start) / n

    prof = Profiler()

    def instrumented(n):
        it = iter(batches)
        t = prof.timed
        prof.reset()
        prof.on = True
        start = time.perf_counter()
        for _ in range(n):
            xb = t("data", next, it)
            t("eps", rng.standard_normal, (BATCH, Z), dtype=dtype.type, out=eps)
            t("forward", model._forward, xb, eps)
            t("backward", model.backward)
            t("step", opt.step, model.grads)
        total = (time.perf_counter() - start) / n
        prof.on = False
        per = {k: v / n for k, v in prof.excl.items()}
        per["loop"] = total - sum(per.values())
        return total, per, {k: v / n for k, v in prof.calls.items()}, {k: v / n for k, v in prof.kids.items()}

    plain(len(batches))  # warm-up: compilation or cache loading, page faults, BLAS thread start
    uninstall = install_profiler(prof, model)
    instrumented(min(nb, 50))
    uninstall()
    ops = floor_ops(spec["arch"], dtype, BATCH, np.random.default_rng(0))
    for _ in range(50):
        run_ops(ops)
    # rounds interleave the three measurements, so that a neighbour's load drifting over time hits all alike
    per_call = timer_overhead()
    plain_times, inst_times, pers, raws, floor_times, floor_pers = [], [], [], [], [], []
    calls = {}
    for _ in range(spec["profile_rounds"]):
        plain_times.append(plain(nb))
        uninstall = install_profiler(prof, model)
        total, per, calls, kids = instrumented(nb)
        uninstall()
        inst_times.append(total)
        raws.append(per)
        # The timers' own cost lands in the exclusive time of the caller of each timed call (labels and
        # wrappers run outside the timed span): give it back from each caller's share, per direct child call.
        pers.append({k: max(0.0, v - per_call * kids.get(k, 0.0)) for k, v in per.items()})
        fper, fbatch = profile_floor(ops, nb)
        floor_pers.append(fper)
        floor_times.append(fbatch)
    labels = sorted({k for p in pers for k in p})
    per_label = {k: statistics.median(p.get(k, 0.0) for p in pers) for k in labels}
    raw_label = {k: statistics.median(p.get(k, 0.0) for p in raws) for k in labels}
    floor_per_op = {k: statistics.median(p[k] for p in floor_pers) for k in floor_pers[0]}
    floor_batch = statistics.median(floor_times)
    enc_layers = {n for n in model.params if n.startswith("enc")}
    enc_layers = {n[:-2] for n in enc_layers if n.endswith(".W")}
    cats = defaultdict(float)
    for k, v in per_label.items():
        cats[category(k, enc_layers)] += v
    floor_cat = defaultdict(float)
    for op, v in floor_per_op.items():
        kind, layer = op.split()
        if kind == "fwd":
            floor_cat[f"{'encoder' if layer in enc_layers else 'decoder'} matmuls (fwd)"] += v
        else:
            floor_cat[f"backward matmuls {kind}"] += v
    model_mm = {k.replace("matmul ", ""): v for k, v in per_label.items() if k.startswith("matmul ")}
    return {"batches_per_round": nb, "rounds": spec["profile_rounds"],
            "plain_batch_s": statistics.median(plain_times), "plain_batch_s_all": plain_times,
            "instrumented_batch_s": statistics.median(inst_times), "instrumented_batch_s_all": inst_times,
            "floor_batch_s": floor_batch, "floor_batch_s_all": floor_times,
            "categories_s": dict(cats), "floor_categories_s": dict(floor_cat),
            "timer_overhead_per_call_s": per_call, "labels_s": per_label, "labels_uncorrected_s": raw_label,
            "calls_per_batch": calls,
            "matmul_model_s": model_mm,
            "matmul_floor_s": floor_per_op}


def profile_floor(ops, nb: int) -> tuple[dict, float]:
    """The floor's batch: each matmul timed on its own within the sequence; then the sequence untimed."""
    per = defaultdict(float)
    mm, pc = np.matmul, time.perf_counter
    for _ in range(nb):
        for label, (a, b), out in ops:
            t = pc()
            mm(a, b, out=out)
            per[label] += pc() - t
    start = pc()
    for _ in range(nb):
        run_ops(ops)
    batch = (pc() - start) / nb
    return {k: v / nb for k, v in per.items()}, batch


def worker_floor_ops(spec: dict) -> dict:
    """The floor's matmuls one by one (median of rounds), e.g. under OPENBLAS_NUM_THREADS=1 for comparison."""
    ops = floor_ops(spec["arch"], np.dtype(spec["dtype"]), BATCH, np.random.default_rng(0))
    for _ in range(50):
        run_ops(ops)
    rounds = [profile_floor(ops, spec["profile_batches"]) for _ in range(spec["profile_rounds"])]
    return {"matmul_floor_s": {k: statistics.median(r[0][k] for r in rounds) for k in rounds[0][0]},
            "floor_batch_s": statistics.median(r[1] for r in rounds)}


WORKERS = {"floor_ops": worker_floor_ops, "project": worker_project, "floor": worker_floor, "torch": worker_torch,
           "profile": worker_profile}


# ================================================================================================ driver
def cpu_seconds() -> tuple[float, float] | None:
    """Machine-wide (busy, steal) CPU seconds since boot, from /proc/stat (None where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wait_idle(limit_s: float, threshold: float = 0.3) -> dict:
    """Wait (up to limit_s) until the machine's other processes use < threshold cores over 1 s."""
    waited, busy = 0.0, None
    while True:
        a, t0 = cpu_seconds(), time.perf_counter()
        time.sleep(1.0)
        b = cpu_seconds()
        if a is None or b is None:
            return {"waited_s": waited, "busy_cores_before": None}
        busy = (b[0] - a[0]) / (time.perf_counter() - t0)
        if busy < threshold or waited >= limit_s:
            return {"waited_s": round(waited, 1), "busy_cores_before": round(busy, 2)}
        time.sleep(2.0)
        waited += 3.0


def run_worker(name: str, spec: dict, env: dict | None = None, code: str | None = None) -> dict:
    """Run a worker (or a `python -c` snippet) in a fresh process; its last 'RESULT {json}' line is the answer.

    Beside the answer, "load": the cores the machine's *other* processes kept busy meanwhile (machine-wide
    busy time from /proc/stat less this worker's own CPU time) and the hypervisor's steal: a run with a
    neighbour near 1 core is not comparable with a quiet one (BLAS threads wait for a free core).
    """
    cmd = [sys.executable, "-c", code, json.dumps(spec)] if code else \
        [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--spec", json.dumps(spec)]
    idle = wait_idle(spec.get("wait_idle", 0.0)) if spec.get("wait_idle") else {}
    cpu0, own0, t0 = cpu_seconds(), children_cpu(), time.perf_counter()
    spawn = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(ROOT))
    wall, cpu1, own = time.perf_counter() - t0, cpu_seconds(), children_cpu() - own0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        return {"error": f"worker {name} exited {proc.returncode}: " + (proc.stderr.strip().splitlines() or ["?"])[-1]}
    res = json.loads(lines[-1][len("RESULT "):])
    if "wall_from_spawn_end" in res:
        res["first_batch_from_spawn_s"] = res.pop("wall_from_spawn_end") - spawn
    load = {"wall_s": round(wall, 2), **idle}
    if cpu0 and cpu1:
        load["neighbour_cores"] = round(max(0.0, cpu1[0] - cpu0[0] - own) / wall, 2)
        load["steal_cores"] = round((cpu1[1] - cpu0[1]) / wall, 2)
    res["load"] = load
    return res


def first_batch(spec: dict) -> dict:
    """Fresh processes: Numba's cache cold (an empty NUMBA_CACHE_DIR), then warm (the same folder again)."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="vae_numpy_numba_cache_") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out["cold"] = run_worker("firstbatch-cold", spec, env, FIRST_BATCH_CODE)
        out["cache_files"] = sum(len(files) for _, _, files in os.walk(cache))
        out["warm"] = run_worker("firstbatch-warm", spec, env, FIRST_BATCH_CODE)
        out["warm_again"] = run_worker("firstbatch-warm", spec, env, FIRST_BATCH_CODE)
    return out


def merge_repeats(runs: list[dict]) -> dict:
    """The fastest run's results, with every run's epoch time beside them (and the first run's IWAE)."""
    ok = [r for r in runs if "epoch_s" in r]
    if not ok:
        return runs[0]
    best = dict(min(ok, key=lambda r: r["epoch_s"]))
    best["repeats_epoch_s"] = [r["epoch_s"] for r in ok]
    best["repeats_peak_rss_mb"] = [r.get("peak_rss_mb") for r in ok]
    best["repeats_neighbour_cores"] = [r.get("load", {}).get("neighbour_cores") for r in ok]
    if "iwae" in runs[0]:
        best["iwae"] = runs[0]["iwae"]
    return best


def source_digest() -> dict:
    """Which code was measured: git commit, whether vae_numpy/ has uncommitted changes, a hash of its sources."""
    h = hashlib.sha256()
    for path in sorted((ROOT / "vae_numpy").glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    info = {"vae_numpy_sha256": h.hexdigest()[:16]}
    try:
        git = ["git", "-C", str(ROOT)]
        info["git_commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                            check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "vae_numpy"], capture_output=True,
                               text=True, check=True).stdout.split("\n")
        info["vae_numpy_modified"] = sorted(ln[3:] for ln in dirty if ln.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


def machine_info() -> dict:
    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "numpy": np.__version__, "numba": version("numba"), "llvmlite": version("llvmlite"),
            "scipy": version("scipy"),  # present, it is imported by Numba's first compile or cache load
            "torch": version("torch"), "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import threadpoolctl  # optional: used only when present
        info["threadpools"] = threadpoolctl.threadpool_info()
    except ImportError:
        pass
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["numpy_blas"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")}
        info["numpy_simd"] = cfg.get("SIMD Extensions")
    except Exception:  # show_config's layout is not a stable API
        pass
    info["env"] = {k: os.environ.get(k) for k in ENV_KEYS}
    return info


def ratio(a, b):
    return a / b if a and b else None


def summarize(res: dict) -> dict:
    """Ratios and the goals, from the workers' raw results."""
    p, f, t = (res.get(k) or {} for k in ("project", "floor", "torch"))
    pe, fe, te = p.get("epoch_s"), f.get("epoch_s"), t.get("epoch_s")
    s = {"epoch_s": {"project": pe, "floor": fe, "torch": te},
         "ratios": {"project_over_torch": ratio(pe, te), "project_over_floor": ratio(pe, fe),
                    "torch_over_floor": ratio(te, fe)},
         "peak_rss_mb": {"project": p.get("peak_rss_mb"), "torch": t.get("peak_rss_mb"),
                         "project_over_torch": ratio(p.get("peak_rss_mb"), t.get("peak_rss_mb"))}}
    fb = res.get("first_batch") or {}
    s["first_batch_s"] = {k: (fb.get(k) or {}).get("first_batch_s") for k in ("cold", "warm", "warm_again")}
    s["first_batch_s"]["torch"] = (res.get("torch_first_batch") or {}).get("first_batch_s")
    warm = [v for v in (s["first_batch_s"]["warm"], s["first_batch_s"]["warm_again"]) if v]
    values = {"project_over_torch": s["ratios"]["project_over_torch"],
              "project_over_floor": s["ratios"]["project_over_floor"],
              "rss_project_over_torch": s["peak_rss_mb"]["project_over_torch"],
              "first_batch_warm_s": min(warm) if warm else None}
    s["goals"] = {k: {"value": values[k], "target": f"<= {GOALS[k]}",
                      "met": None if values[k] is None else values[k] <= GOALS[k]} for k in GOALS}
    return s


def fmt(v, spec="8.3f", none="       -"):
    return none if v is None else format(v, spec)


def report(res: dict) -> None:
    cfg, s = res["config"], res["summary"]
    print(f"\n{cfg['arch_str']}  {cfg['dtype']}  batch {BATCH}  {cfg['n_train']:,} {DATASET} images, Adam lr {LR}, "
          f"{cfg['epochs']} epochs a run, the 1st untimed; min over epochs 2.. and over {cfg['repeat']} run(s)")
    env = res["machine"]["env"]
    print(f"numpy {res['machine']['numpy']}, numba {res['machine']['numba']}, torch {res['machine']['torch']}, "
          f"{res['machine']['cpu_count']} CPUs, loadavg {res['machine']['loadavg_at_start'][0]:.2f}, "
          f"OPENBLAS_CORETYPE={env.get('OPENBLAS_CORETYPE')}")
    print(f"\n{'':24}{'epoch s':>9}{'epoch 1 s':>11}{'peak RSS MB':>13}{'loss (last)':>13}{'neighbour':>11}"
          "  all runs: epoch s [neighbour cores]")
    for name in ("project", "floor", "torch"):
        r = res.get(name) or {}
        if not r:
            continue
        if "error" in r:
            print(f"  {name:<22}{r['error']}")
            continue
        loss = (r.get("loss_per_epoch") or [None])[-1]
        print(f"  {name:<22}{fmt(r['epoch_s'], '9.3f')}{fmt(r['epoch1_s'], '11.3f')}"
              f"{fmt(r.get('peak_rss_mb'), '13.1f')}{fmt(loss, '13.2f', '            -')}"
              f"{fmt(r.get('load', {}).get('neighbour_cores'), '11.2f', '          -')}  "
              + " ".join(f"{t:.3f} [{n}]" for t, n in zip(r.get("repeats_epoch_s", []),
                                                          r.get("repeats_neighbour_cores", []), strict=False)))
    vt = (res.get("project") or {}).get("vn_train")
    if vt:
        print(f"  {'vn.train (whole call)':<22}" + (fmt(vt["epoch_s"], "9.3f") + fmt(vt["epoch1_s"], "11.3f")
                                                     if vt.get("available") else vt["reason"]))
    fb = res.get("first_batch")
    if fb:
        print("\nfirst batch (fresh process: import + build + forward/backward/step), seconds:")
        for k in ("cold", "warm", "warm_again"):
            r = fb.get(k) or {}
            if "error" in r or not r:
                print(f"  {k:<12} {r.get('error', '-')}")
                continue
            print(f"  {k:<12}{r['first_batch_s']:7.3f}  (import {r['import_s']:.3f}, build {r['build_s']:.3f}, "
                  f"first step {r['first_step_s']:.3f} = fwd {r['first_forward_s']:.3f} + bwd "
                  f"{r['first_backward_s']:.3f} + adam {r['first_adam_s']:.3f}; "
                  f"from spawn {r['first_batch_from_spawn_s']:.3f}; neighbour {r['load'].get('neighbour_cores')}; "
                  f"numba cache hits {r['numba_cache_hits']}, misses {r['numba_cache_misses']}; "
                  f"imported by then: {','.join(r.get('heavy_modules_after_first_batch') or []) or '-'})")
        tf = res.get("torch_first_batch") or {}
        if "first_batch_s" in tf:
            print(f"  {'torch':<12}{tf['first_batch_s']:7.3f}  (import {tf['import_s']:.3f}, build "
                  f"{tf['build_s']:.3f}, first step {tf['first_step_s']:.3f})")
    iw = res.get("iwae")
    if iw and "error" not in iw:
        print(f"\nIWAE log_likelihood: {iw['images']} test images x K={iw['k']} in {iw['seconds']:.2f} s = "
              f"{iw['samples_per_s']:,.0f} image-samples/s -> {iw['full_images']:,} x {iw['full_k']:,} in "
              f"~{iw['full_extrapolated_s']:.0f} s (mean log p(x) {iw['mean_log_likelihood']:.1f})")
    print("\ngoals:")
    for k, g in s["goals"].items():
        mark = {True: "met", False: "NOT met", None: "n/a"}[g["met"]]
        print(f"  {k:<24}{fmt(g['value'], '8.3f')}  target {g['target']:<8} {mark}")
    if res.get("profile"):
        report_profile(res["profile"], res.get("profile_floor_1thread") or {})


def report_profile(p: dict, one: dict) -> None:
    if "error" in p:
        print(f"\nprofile: {p['error']}")
        return
    ms = 1e3
    plain, inst, floor = p["plain_batch_s"], p["instrumented_batch_s"], p["floor_batch_s"]
    print(f"\nprofile: one full batch, median of {p['rounds']} rounds x {p['batches_per_round']} batches, ms")
    print(f"  neighbour load during the profile: {p.get('load', {}).get('neighbour_cores')} cores")
    print(f"  uninstrumented batch {plain * ms:.3f} ms, instrumented {inst * ms:.3f} ms "
          f"(timer overhead {(inst - plain) * ms:+.3f}), matmul floor {floor * ms:.3f} ms "
          f"-> project/floor {plain / floor:.2f}")
    print(f"  (exclusive times; the timers' own cost, {p['timer_overhead_per_call_s'] * 1e6:.2f} us a call as "
          "calibrated, is taken off each caller)")
    print(f"  {'phase':<42}{'ms':>8}{'% batch':>9}{'floor ms':>10}{'over floor':>12}")
    cats, fcats = p["categories_s"], p["floor_categories_s"]
    total = sum(cats.values())
    for c in [*CATEGORY_ORDER, *sorted(set(cats) - set(CATEGORY_ORDER))]:
        if c not in cats:
            continue
        v, f = cats[c], fcats.get(c)
        over = v - (f or 0.0)
        fms = fmt(None if f is None else f * ms, "10.3f", "         -")
        print(f"  {c:<42}{v * ms:8.3f}{100 * v / total:8.1f}%{fms}{over * ms:12.3f}")
    print(f"  {'sum':<42}{total * ms:8.3f}{'':9}{sum(fcats.values()) * ms:10.3f}{(total - floor) * ms:12.3f}")
    print(f"  {'(sum - uninstrumented batch: timer residue)':<42}{(total - plain) * ms:8.3f}")
    print(f"  {'uninstrumented batch - floor batch':<42}{(plain - floor) * ms:8.3f}  <- the real overhead")
    one_ops = one.get("matmul_floor_s", {})
    print("\n  matmuls, ms per batch: in the model, alone (the floor), model/floor, and alone with 1 BLAS thread "
          f"(another process; load {one.get('load', {}).get('neighbour_cores')}):")
    for op, f in p["matmul_floor_s"].items():
        m, f1 = p["matmul_model_s"].get(op), one_ops.get(op)
        print(f"    {op:<22}{fmt(None if m is None else m * ms, '8.3f')}{f * ms:8.3f}"
              f"{fmt(None if m is None else m / f, '7.2f', '      -')}x{fmt(None if f1 is None else f1 * ms, '8.3f')}")
    if one:
        print(f"    {'batch (untimed ops)':<22}{'':8}{p['floor_batch_s'] * ms:8.3f}{'':8}"
              f"{fmt(one.get('floor_batch_s', 0) * ms, '8.3f')}")
    print("\n  every timed piece (exclusive ms per batch, calls per batch):")
    for k, v in sorted(p["labels_s"].items(), key=lambda kv: -kv[1]):
        print(f"    {k:<44}{v * ms:8.3f}  x{p['calls_per_batch'].get(k, 0):.0f}")


def default_json(args) -> Path:
    name = "epoch" + ("_deep" if args.deep else "") + ("_float64" if args.float64 else "")
    if args.only:
        name += "_" + "_".join(sorted(args.parts))
    return RESULTS / f"{name}.json"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deep", action="store_true", help="784-512-256-32 instead of 784-400-20")
    ap.add_argument("--float64", action="store_true", help="float64 instead of float32")
    ap.add_argument("--epochs", type=int, default=2, help="epochs per framework; the first is not timed")
    ap.add_argument("--json", type=Path, help="output file (default benchmarks/results/epoch[_deep][_float64].json)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run floor, project and torch this many times, round-robin; the fastest run counts")
    ap.add_argument("--wait-idle", type=float, default=30.0,
                    help="before each run, wait up to this many seconds for other processes to go quiet (0: no)")
    ap.add_argument("--skip-torch", action="store_true", help="no PyTorch run even when torch is installed")
    ap.add_argument("--iwae-images", type=int, default=200, help="test images for the IWAE throughput (0: skip)")
    ap.add_argument("--iwae-k", type=int, default=1000, help="importance samples per image")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--profile", action="store_true", help="also the per-phase profile of one batch")
    ap.add_argument("--profile-batches", type=int, default=200, help="batches per profile round")
    ap.add_argument("--profile-rounds", type=int, default=3, help="profile rounds (median taken)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = WORKERS[args.worker](json.loads(args.spec))
        print("RESULT " + json.dumps(res))
        return res
    if args.epochs < 2:
        ap.error("--epochs must be at least 2 (the first epoch compiles and is not timed)")
    if args.only:
        args.parts = {p.strip() for p in args.only.split(",") if p.strip()}
        if not args.parts <= set(PARTS):
            ap.error(f"--only takes a comma-separated subset of {','.join(PARTS)}; got {args.only!r}")
    else:
        args.parts = set(PARTS) - {"profile"}
    if args.profile:
        args.parts.add("profile")
    has_torch = importlib.util.find_spec("torch") is not None
    if args.skip_torch or not has_torch:
        args.parts.discard("torch")

    import vae_numpy as vn
    images, _ = vn.datasets.load_dataset(DATASET, split="train", download=False)
    arch = architecture(args.deep)
    dtype = "float64" if args.float64 else "float32"
    D, hidden, Z = arch
    config = {"arch": [D, list(hidden), Z], "arch_str": "-".join(map(str, (D, *hidden, Z))), "dtype": dtype,
              "batch_size": BATCH, "lr": LR, "dataset": DATASET, "n_train": len(images), "epochs": args.epochs,
              "repeat": args.repeat, "likelihood": "bernoulli on pixels/255", "torch_available": has_torch,
              "parts": sorted(args.parts)}
    res = {"config": config, "machine": machine_info(), "source": source_digest()}
    with tempfile.TemporaryDirectory(prefix="bench_epoch_") as tmp:
        npy = Path(tmp) / "train_images.npy"
        np.save(npy, images.reshape(len(images), -1))
        del images
        spec = {"arch": [D, list(hidden), Z], "dtype": dtype, "epochs": args.epochs, "n_train": config["n_train"],
                "npy": str(npy), "iwae_images": args.iwae_images if "iwae" in args.parts else 0,
                "iwae_k": args.iwae_k, "profile_batches": args.profile_batches,
                "profile_rounds": args.profile_rounds, "wait_idle": args.wait_idle}
        runs = defaultdict(list)
        for rep in range(args.repeat):  # round-robin, so that a neighbour's load hits every framework alike
            for part in ("floor", "project", "torch"):
                if part in args.parts:
                    print(f"running {part} ({rep + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
                    runs[part].append(run_worker(part, spec if rep == 0 else {**spec, "iwae_images": 0}))
        for part, rs in runs.items():
            res[part] = merge_repeats(rs)
        if "iwae" in args.parts and "project" not in args.parts:  # a model trained for one epoch
            print("running iwae ...", file=sys.stderr, flush=True)
            r = run_worker("project", {**spec, "epochs": 1})
            res["iwae"] = r.get("iwae", r)
        if "iwae" in res.get("project", {}):
            res["iwae"] = res["project"].pop("iwae")
        if "firstbatch" in args.parts:
            print("running firstbatch (cold, warm) ...", file=sys.stderr, flush=True)
            res["first_batch"] = first_batch(spec)
            if "torch" in args.parts:
                res["torch_first_batch"] = run_worker("torch-firstbatch", spec, None, TORCH_FIRST_BATCH_CODE)
        if "profile" in args.parts:
            print("running profile ...", file=sys.stderr, flush=True)
            res["profile"] = run_worker("profile", spec)
            env1 = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
            res["profile_floor_1thread"] = run_worker("floor_ops", spec, env1)
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["summary"] = summarize(res)
    report(res)
    out = args.json or default_json(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"\nwrote {out}")
    return res


if __name__ == "__main__":
    main()
