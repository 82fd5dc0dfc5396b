"""The candidates of bench_peers.py, each run in its own process: ``python peers_workers.py SPEC_JSON``.

Protocol (lines on stdin / stdout): the worker imports its framework, builds the model, trains one batch and
prints ``READY {json}`` (import and first-batch times); then each ``epoch`` line runs one epoch over the data and
prints ``EPOCH {json}`` (seconds, CPU seconds of the process, mean loss); ``quit`` (or end of input) prints
``DONE {json}`` (peak RSS) and exits. Candidates:

- ``vae-numpy``: ``vn.train`` itself (threads "auto", 1 or 2), one epoch per command through its callback;
- ``floor``: the model's matmuls alone (bench_epoch.floor_ops), at a BLAS count set by threadpoolctl;
- ``torch``, ``torch-compile``: nn.Linear layers, BCE-with-logits + KL, torch.optim.Adam; compile wraps the
  model's loss (forward and, through AOTAutograd, backward) in ``torch.compile``;
- ``jax``: the whole step (loss, gradient, Adam) under one ``jax.jit`` with donated buffers, fed a host batch
  each step. One thread: ``--xla_cpu_multi_thread_eigen=false`` and the process restricted to one CPU while
  XLA builds its thread pools, then released (the pools keep their size).

Peers never import vae_numpy (its Numba import alone is ~60 MB of RSS): they read the images from a .npy.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

T_START = time.perf_counter()
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LR = 1e-3


def send(tag, obj):
    sys.stdout.write(f"{tag} {json.dumps(obj)}\n")
    sys.stdout.flush()


def command():
    line = sys.stdin.readline()
    return line.strip() or "quit"


def cpu_s():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_mb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(run_epoch, ready):
    """The command loop for a framework whose epoch is a plain function."""
    send("READY", ready)
    while command() == "epoch":
        c0, t0 = cpu_s(), time.perf_counter()
        loss = run_epoch()
        send("EPOCH", {"seconds": time.perf_counter() - t0, "cpu_s": cpu_s() - c0, "loss": loss})
    send("DONE", {"peak_rss_mb": peak_rss_mb()})


def batches(np, images, B, rng, dtype, copy=False):
    """Shuffled (B, D) float batches in [0, 1], gathered into one reused buffer (as vae-numpy's Batches);
    copy=True yields a new array each time (JAX may still read a batch after the step returned)."""
    u8, buf = np.empty((B, images.shape[1]), np.uint8), np.empty((B, images.shape[1]), dtype)
    order = rng.permutation(len(images))
    for i in range(0, len(images), B):
        idx = order[i:i + B]
        n = len(idx)
        np.take(images, idx, axis=0, out=u8[:n], mode="clip")
        np.copyto(buf[:n], u8[:n])
        x = np.divide(buf[:n], np.float32(255), out=buf[:n])
        yield x.copy() if copy else x


# ============================================================================================= vae-numpy
def worker_vae_numpy(spec):
    sys.path.insert(0, ROOT)
    import numpy as np

    import vae_numpy as vn
    t_import = time.perf_counter() - T_START
    images = np.load(spec["npy"])
    D, hidden, Z = spec["arch"][0], spec["arch"][1:-1], spec["arch"][-1]
    model = vn.VAE(input_dim=D, hidden_dims=hidden, latent_dim=Z, activation=spec["activation"], seed=0)
    opt = vn.Adam(model.params, lr=LR)
    B = spec["batch"]
    x0 = images[:B].astype(np.float32) / np.float32(255)
    model._forward(x0, np.random.default_rng(0).standard_normal((B, Z), dtype=np.float32))
    model.backward()
    opt.step(model.grads)
    ready = {"import_s": t_import, "first_batch_s": time.perf_counter() - T_START, "vae_numpy": vn.__file__}
    send("READY", ready)
    if command() != "epoch":
        send("DONE", {"peak_rss_mb": peak_rss_mb()})
        return
    clock = {"cpu": cpu_s()}

    def after_epoch(model, history):
        r = history[-1]
        send("EPOCH", {"seconds": r["seconds"], "cpu_s": cpu_s() - clock["cpu"], "loss": r["train_loss"],
                       "threads": r.get("threads"), "thread_steps": r.get("thread_steps")})
        stop = command() != "epoch"
        clock["cpu"] = cpu_s()
        return stop

    threads = spec["threads"] if spec["threads"] == "auto" else int(spec["threads"])
    vn.train(model, images, epochs=10**6, batch_size=B, optimizer=opt, seed=0, progress=False,
             callbacks=[after_epoch], threads=threads)
    send("DONE", {"peak_rss_mb": peak_rss_mb()})


# ================================================================================================= floor
def worker_floor(spec):
    import numpy as np
    import threadpoolctl
    sys.path.insert(0, HERE)
    from bench_epoch import floor_ops, run_ops
    threadpoolctl.threadpool_limits(int(spec["threads"]))
    rng = np.random.default_rng(0)
    arch = (spec["arch"][0], tuple(spec["arch"][1:-1]), spec["arch"][-1])
    n_full, rem = divmod(spec["n_images"], spec["batch"])
    full = floor_ops(arch, np.float32, spec["batch"], rng)
    last = floor_ops(arch, np.float32, rem, rng) if rem else []
    run_ops(full)

    def run_epoch():
        for _ in range(n_full):
            run_ops(full)
        run_ops(last)
        return None

    serve(run_epoch, {"import_s": 0.0, "first_batch_s": time.perf_counter() - T_START})


# ================================================================================================= torch
def worker_torch(spec, compiled=False):
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn
    t_import = time.perf_counter() - T_START
    torch.set_num_threads(int(spec["threads"]))
    torch.manual_seed(0)
    images = np.load(spec["npy"])
    D, hidden, Z = spec["arch"][0], spec["arch"][1:-1], spec["arch"][-1]
    Act = {"relu": nn.ReLU, "tanh": nn.Tanh}[spec["activation"]]

    class TorchVAE(nn.Module):
        def __init__(self):
            super().__init__()
            enc, d = [], D
            for h in hidden:
                enc += [nn.Linear(d, h), Act()]
                d = h
            self.enc, self.mu, self.log_var = nn.Sequential(*enc), nn.Linear(d, Z), nn.Linear(d, Z)
            dec, d = [], Z
            for h in hidden[::-1]:
                dec += [nn.Linear(d, h), Act()]
                d = h
            self.dec = nn.Sequential(*dec, nn.Linear(d, D))

        def forward(self, x, eps):
            h = self.enc(x)
            mu, log_var = self.mu(h), self.log_var(h)
            z = mu + torch.exp(0.5 * log_var) * eps
            B = x.shape[0]
            rec = F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="sum") / B
            kl = -0.5 * torch.sum(1 + log_var - mu * mu - torch.exp(log_var)) / B
            return rec + kl

    model = TorchVAE()
    loss_fn = torch.compile(model) if compiled else model
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    rng = np.random.default_rng(0)
    B = spec["batch"]

    def step(xb):
        xt = torch.from_numpy(xb)
        loss = loss_fn(xt, torch.randn(xt.shape[0], Z))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss

    step(images[:B].astype(np.float32) / np.float32(255))

    def run_epoch():
        total = torch.zeros(())
        for xb in batches(np, images, B, rng, np.float32):
            total += step(xb).detach() * len(xb)
        return float(total) / len(images)

    serve(run_epoch, {"import_s": t_import, "first_batch_s": time.perf_counter() - T_START,
                      "torch": torch.__version__, "threads": torch.get_num_threads()})


# =================================================================================================== jax
def worker_jax(spec):
    one = int(spec["threads"]) == 1
    cpus = os.sched_getaffinity(0)
    if one:  # XLA sizes its pools to the CPUs it may use when its backend starts
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        os.sched_setaffinity(0, {min(cpus)})
    import numpy as np
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp
    jnp.zeros(1).block_until_ready()
    if one:
        os.sched_setaffinity(0, cpus)
    t_import = time.perf_counter() - T_START
    images = np.load(spec["npy"])
    D, hidden, Z = spec["arch"][0], spec["arch"][1:-1], spec["arch"][-1]
    act = {"relu": jax.nn.relu, "tanh": jnp.tanh}[spec["activation"]]
    rng = np.random.default_rng(0)

    def dense(i, o):
        return (jnp.asarray(rng.standard_normal((i, o)) * np.sqrt(2 / (i + o)), jnp.float32),
                jnp.zeros(o, jnp.float32))

    dims, ddims = [D, *hidden], [Z, *hidden[::-1]]
    params = {"enc": [dense(i, o) for i, o in zip(dims[:-1], dims[1:], strict=True)], "mu": dense(dims[-1], Z),
              "lv": dense(dims[-1], Z), "dec": [dense(i, o) for i, o in zip(ddims[:-1], ddims[1:], strict=True)],
              "out": dense(ddims[-1], D)}

    def loss_fn(p, x, eps):
        h = x
        for W, b in p["enc"]:
            h = act(h @ W + b)
        mu, lv = h @ p["mu"][0] + p["mu"][1], h @ p["lv"][0] + p["lv"][1]
        g = mu + jnp.exp(0.5 * lv) * eps
        for W, b in p["dec"]:
            g = act(g @ W + b)
        a = g @ p["out"][0] + p["out"][1]
        n = x.shape[0]
        rec = jnp.sum(jnp.maximum(a, 0) - a * x + jnp.log1p(jnp.exp(-jnp.abs(a)))) / n
        return rec - 0.5 * jnp.sum(1 + lv - mu * mu - jnp.exp(lv)) / n

    b1, b2 = 0.9, 0.999
    tmap = jax.tree_util.tree_map

    def step(p, m, v, t, key, x):
        key, sub = jax.random.split(key)
        loss, g = jax.value_and_grad(loss_fn)(p, x, jax.random.normal(sub, (x.shape[0], Z), jnp.float32))
        t = t + 1
        m = tmap(lambda m_, g_: b1 * m_ + (1 - b1) * g_, m, g)
        v = tmap(lambda v_, g_: b2 * v_ + (1 - b2) * g_ * g_, v, g)
        c1, c2 = 1 / (1 - b1 ** t), 1 / (1 - b2 ** t)
        p = tmap(lambda p_, m_, v_: p_ - LR * (m_ * c1) / (jnp.sqrt(v_ * c2) + 1e-8), p, m, v)
        return p, m, v, t, key, loss

    step = jax.jit(step, donate_argnums=(0, 1, 2))
    state = [params, tmap(jnp.zeros_like, params), tmap(jnp.zeros_like, params), jnp.float32(0),
             jax.random.PRNGKey(0)]
    B = spec["batch"]

    def one_step(xb):
        *new, loss = step(*state, xb)
        state[:] = new
        return loss

    one_step(images[:B].astype(np.float32) / np.float32(255)).block_until_ready()

    def run_epoch():
        total = jnp.float32(0)
        for xb in batches(np, images, B, rng, np.float32, copy=True):
            total = total + one_step(xb) * len(xb)
        return float(total) / len(images)

    serve(run_epoch, {"import_s": t_import, "first_batch_s": time.perf_counter() - T_START,
                      "jax": jax.__version__})


def main():
    spec = json.loads(sys.argv[1])
    kind = spec["kind"]
    if kind == "vae-numpy":
        worker_vae_numpy(spec)
    elif kind == "floor":
        worker_floor(spec)
    elif kind in ("torch", "torch-compile"):
        worker_torch(spec, compiled=kind == "torch-compile")
    elif kind == "jax":
        worker_jax(spec)
    else:
        raise SystemExit(f"unknown candidate {kind!r}")


if __name__ == "__main__":
    main()
