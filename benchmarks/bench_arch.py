"""The lecture's convolutional VAE (and, once it has a PyTorch twin here, the recurrent one), trained by vae-numpy
and by PyTorch with the same architecture and the same initial parameters, in one run.

Run (full measurement, about an hour on 2 quiet cores):
    /work/venv-bench/bin/python benchmarks/bench_arch.py --epochs 5 --n-train 60000
A quick look: ``--epochs 1 --n-train 6000 --n-test 2000``. Needs the full MNIST (``--data-dir``, default
../shared/data/mnist or $VAE_NUMPY_DATA) and torch (a benchmark-only dependency). Writes
``benchmarks/results/arch.json``.

1. Equality first, in float64: the vae-numpy model's parameters are copied into the PyTorch model, both compute
   the loss and every gradient on one batch with the same eps; the run stops unless they agree (rel. error < 1e-9).
2. Then float32 training, batch 128, Adam lr 1e-3, both from the same initial parameters (vae-numpy's
   init="torch", PyTorch's default distributions, copied across), the same batches in the same order; the epochs
   alternate (vae-numpy epoch k, then PyTorch epoch k) so that both see the same load on a shared machine. After
   each epoch: the test negative ELBO of both on the same eps (one draw per image), and each epoch's time.

The PyTorch twin of arch="conv" (Keras layouts and TensorFlow's 'same' padding in vae-numpy): a channels-last
image is permuted to NCHW; 'same' with stride 2 pads one row/column at the bottom/right (F.pad) before a
Conv2d; a stride-2 'same' ConvTranspose2d is the full transposed convolution cropped to 2H x 2W from the top
left; the flattening order of (7, 7, 64) is vae-numpy's (H, W, C). Weights: (kh, kw, in, out) -> (out, in, kh, kw)
for Conv2d and (kh, kw, out, in) -> (in, out, kh, kw) for ConvTranspose2d, both a transpose (3, 2, 0, 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import vae_numpy as vn  # noqa: E402
from vae_numpy.evaluation import elbo  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "arch.json"
_ROOT = Path(__file__).resolve().parents[1]        # ../shared/data/mnist beside the checkout (or a worktree's)
DEFAULT_DATA = next((d for d in (_ROOT.parent / "shared/data/mnist", _ROOT.parent.parent / "shared/data/mnist")
                     if d.is_dir()), _ROOT.parent / "shared/data/mnist")
BATCH, LR, EVAL_SEED = 128, 1e-3, 2024


def torch_conv(model, torch):
    """A torch.nn.Module computing what vae-numpy's arch="conv" `model` computes, with its parameters copied."""
    F, nn = torch.nn.functional, torch.nn
    enc = model.encoder.layers
    c1, c2, d16 = enc[1].filters, enc[2].filters, enc[4].units
    Z, side = model.latent_dim, enc[0].target[0]
    s4 = side // 4
    dt = torch.float64 if model.dtype == np.float64 else torch.float32

    class ConvVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(1, c1, 3, 2), nn.Conv2d(c1, c2, 3, 2)
            self.fc, self.mu, self.log_var = nn.Linear(s4 * s4 * c2, d16), nn.Linear(d16, Z), nn.Linear(d16, Z)
            self.fc_dec = nn.Linear(Z, s4 * s4 * c2)
            self.up1, self.up2 = nn.ConvTranspose2d(c2, c2, 3, 2), nn.ConvTranspose2d(c2, c1, 3, 2)
            self.out = nn.ConvTranspose2d(c1, 1, 3, 1, padding=1)

        def encode(self, x):
            h = x.view(-1, 1, side, side)
            h = F.relu(self.conv1(F.pad(h, (0, 1, 0, 1))))           # TF 'same', stride 2: the extra at the end
            h = F.relu(self.conv2(F.pad(h, (0, 1, 0, 1))))
            h = F.relu(self.fc(h.permute(0, 2, 3, 1).reshape(len(x), -1)))   # flatten in (H, W, C) order
            return self.mu(h), self.log_var(h)

        def decode(self, z):
            h = F.relu(self.fc_dec(z)).view(-1, s4, s4, c2).permute(0, 3, 1, 2)
            h = F.relu(self.up1(h)[:, :, :2 * s4, :2 * s4])            # full transpose conv, cropped from top left
            h = F.relu(self.up2(h)[:, :, :side, :side])
            return self.out(h).reshape(len(z), -1)                      # logits

        def forward(self, x, eps):
            mu, log_var = self.encode(x)
            return self.decode(mu + torch.exp(0.5 * log_var) * eps), mu, log_var

    net = ConvVAE().to(dt)
    p = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.params.items()}
    conv = {"conv1": "encoder.1", "conv2": "encoder.2", "up1": "decoder.2", "up2": "decoder.3", "out": "dec_out.0"}
    dense = {"fc": "encoder.4", "mu": "enc_mu", "log_var": "enc_log_var", "fc_dec": "decoder.0"}
    names = {}
    with torch.no_grad():
        for t, v in conv.items():
            getattr(net, t).weight.copy_(p[f"{v}.W"].permute(3, 2, 0, 1))
            getattr(net, t).bias.copy_(p[f"{v}.b"])
            names[f"{t}.weight"], names[f"{t}.bias"] = (f"{v}.W", (3, 2, 0, 1)), (f"{v}.b", None)
        for t, v in dense.items():
            getattr(net, t).weight.copy_(p[f"{v}.W"].T)
            getattr(net, t).bias.copy_(p[f"{v}.b"])
            names[f"{t}.weight"], names[f"{t}.bias"] = (f"{v}.W", (1, 0)), (f"{v}.b", None)
    return net, names


def torch_rnn(model, torch):
    """The PyTorch twin of arch="rnn": nn.GRU / nn.RNN encoder (its last state), the heads, s_0 = tanh(Linear(h)),
    the same kind of cell fed h at every step, a Linear readout per step (benchmarks/rnn_torch_equality.py)."""
    nn = torch.nn
    enc_cell, dec = model.encoder.layers[1], model.decoder
    cell, S, Z, T = dec.cell, dec.units, model.latent_dim, dec.steps
    F = model.encoder.layers[0].target[1]
    Cell = nn.GRU if cell == "gru" else nn.RNN
    dt = torch.float64 if model.dtype == np.float64 else torch.float32

    class RnnVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc, self.dec = Cell(F, S, batch_first=True), Cell(Z, S, batch_first=True)
            self.mu, self.log_var, self.init = nn.Linear(S, Z), nn.Linear(S, Z), nn.Linear(Z, S)
            self.readout = nn.Linear(S, F)

        def encode(self, x):
            _, h = self.enc(x.view(len(x), T, F))
            return self.mu(h[0]), self.log_var(h[0])

        def decode(self, z):
            s0 = torch.tanh(self.init(z))
            states, _ = self.dec(z[:, None, :].expand(len(z), T, Z).contiguous(), s0[None].contiguous())
            return self.readout(states).reshape(len(z), -1)

        def forward(self, x, eps):
            mu, log_var = self.encode(x)
            return self.decode(mu + torch.exp(0.5 * log_var) * eps), mu, log_var

    net = RnnVAE().to(dt)
    p = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.params.items()}
    names = {}
    with torch.no_grad():
        for t, v in (("enc", "encoder.1"), ("dec", "decoder")):
            mod = getattr(net, t)
            mod.weight_ih_l0.copy_(p[f"{v}.Wx"].T)
            mod.weight_hh_l0.copy_(p[f"{v}.Wh"].T)
            names[f"{t}.weight_ih_l0"], names[f"{t}.weight_hh_l0"] = (f"{v}.Wx", (1, 0)), (f"{v}.Wh", (1, 0))
            if cell == "gru":
                mod.bias_ih_l0.copy_(p[f"{v}.bx"])
                mod.bias_hh_l0.copy_(p[f"{v}.bh"])
                names[f"{t}.bias_ih_l0"], names[f"{t}.bias_hh_l0"] = (f"{v}.bx", None), (f"{v}.bh", None)
            else:                                   # one bias b in vae-numpy: torch's second one stays 0, frozen
                mod.bias_ih_l0.copy_(p[f"{v}.b"])
                mod.bias_hh_l0.zero_()
                mod.bias_hh_l0.requires_grad_(False)
                names[f"{t}.bias_ih_l0"] = (f"{v}.b", None)
        for t, v in (("mu", "enc_mu"), ("log_var", "enc_log_var"), ("init", "decoder.init"), ("readout", "dec_out.0")):
            getattr(net, t).weight.copy_(p[f"{v}.W"].T)
            getattr(net, t).bias.copy_(p[f"{v}.b"])
            names[f"{t}.weight"], names[f"{t}.bias"] = (f"{v}.W", (1, 0)), (f"{v}.b", None)
    assert enc_cell.cell == cell
    return net, names


TWINS = {"conv": torch_conv, "rnn": torch_rnn}


def torch_loss(net, x, eps, torch, kl_weight=1.0):
    """Mean over the batch of [BCE(logits, x) summed over pixels + w KL(q || N(0, I))]: vae-numpy's loss.

    w: the KL weight of a warm-up (vn.train's beta_warmup: w = min(1, step / warm-up steps)); 1 otherwise."""
    logits, mu, log_var = net(x, eps)
    rec = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mu.pow(2) - log_var.exp())
    return (rec + kl_weight * kl) / len(x), rec / len(x), kl / len(x)


def check_equal(arch, options, x, torch):
    """Float64: the same loss and gradients from the same parameters and eps (raises when they differ)."""
    model = vn.VAE(arch=arch, latent_dim=2, dtype="float64", init="torch", seed=0, **options)
    net, names = TWINS[arch](model, torch)
    eps = np.random.default_rng(1).standard_normal((len(x), model.latent_dim))
    loss = model.forward(x, eps=eps)
    model.backward()
    tl, _, _ = torch_loss(net, torch.from_numpy(x), torch.from_numpy(eps), torch)
    tl.backward()
    errors = {"loss": abs(loss - tl.item()) / abs(loss)}
    for tname, param in net.named_parameters():
        if not param.requires_grad:
            continue
        name, perm = names[tname]
        g = param.grad.numpy()
        mine = model.grads[name] if perm is None else model.grads[name].transpose(perm)
        errors[name] = vn.gradcheck.array_rel_error(mine, g)
    worst = max(errors.values())
    if worst > 1e-9:
        raise SystemExit(f"{arch}: vae-numpy and PyTorch differ (max relative error {worst:.2e}): {errors}")
    return worst


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="conv", choices=sorted(TWINS))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--n-test", type=int, default=10000)
    p.add_argument("--latent-dim", type=int, default=2)
    p.add_argument("--channels", default=None, help="[conv] e.g. 32,64 (default)")
    p.add_argument("--state-size", type=int, default=None, help="[rnn] default: the arch's (128)")
    p.add_argument("--cell", choices=("gru", "rnn"), default=None, help="[rnn] default gru")
    p.add_argument("--threads", type=int, default=2, help="BLAS / torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", choices=("torch", "he-xavier"), default="torch",
                   help="vae-numpy's initialization, copied into the PyTorch twin (default torch: PyTorch's own "
                        "distributions)")
    p.add_argument("--beta-warmup", type=float, default=0.0, metavar="EPOCHS",
                   help="raise the KL weight linearly from 0 to 1 over this many epochs (as vn.train), in both")
    p.add_argument("--data-dir", default=os.environ.get("VAE_NUMPY_DATA", str(DEFAULT_DATA)))
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits
    torch.set_num_threads(args.threads)
    options = {k: v for k, v in (("channels", args.channels and tuple(map(int, args.channels.split(",")))),
                                 ("state_size", args.state_size), ("cell", args.cell)) if v is not None}
    load0 = os.getloadavg()
    xtr = vn.datasets.load_dataset("mnist", "train", data_dir=args.data_dir, download=False, progress=False)[0]
    xte = vn.datasets.load_dataset("mnist", "test", data_dir=args.data_dir, download=False, progress=False)[0]
    x_train = vn.datasets.to_unit(vn.datasets.flatten(xtr[:args.n_train]))
    x_test = vn.datasets.to_unit(vn.datasets.flatten(xte[:args.n_test]))

    worst = check_equal(args.arch, options, x_train[:16].astype(np.float64), torch)
    print(f"{args.arch}: loss and gradients equal in float64 (max relative error {worst:.1e})", flush=True)

    model = vn.VAE(arch=args.arch, latent_dim=args.latent_dim, init=args.init, seed=args.seed, **options)
    net, _ = TWINS[args.arch](model, torch)
    opt, topt = vn.Adam(model.params, lr=LR), torch.optim.Adam(net.parameters(), lr=LR)
    rng = np.random.default_rng(args.seed)
    eps_test = np.random.default_rng(EVAL_SEED).standard_normal((len(x_test), args.latent_dim)).astype(np.float32)
    xt, xe, ee = torch.from_numpy(x_train), torch.from_numpy(x_test), torch.from_numpy(eps_test)
    # warm up (JIT compilation, BLAS buffers) outside the timings
    model._forward(x_train[:BATCH], np.zeros((BATCH, args.latent_dim), np.float32))
    model.backward()
    rows = []
    n_batches = -(-len(x_train) // BATCH)
    warm_steps = int(round(args.beta_warmup * n_batches))
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x_train))
        batches = [order[i:i + BATCH] for i in range(0, len(order), BATCH)]
        eps = [rng.standard_normal((len(b), args.latent_dim)).astype(np.float32) for b in batches]
        first = (epoch - 1) * n_batches
        weights = [min(1.0, (first + i + 1) / warm_steps) if warm_steps else 1.0 for i in range(len(batches))]
        with threadpool_limits(args.threads):
            t0 = time.perf_counter()
            for b, e, w in zip(batches, eps, weights, strict=True):
                model.kl_weight = w
                model._forward(x_train[b], e)
                model.backward()
                opt.step(model.grads)
            t_np = time.perf_counter() - t0
        net.train()
        t0 = time.perf_counter()
        for b, e, w in zip(batches, eps, weights, strict=True):
            loss, _, _ = torch_loss(net, xt[b], torch.from_numpy(e), torch, kl_weight=w)
            topt.zero_grad()
            loss.backward()
            topt.step()
        t_torch = time.perf_counter() - t0
        model.kl_weight = 1.0
        ev_np = elbo(model, x_test, eps=eps_test)
        with torch.no_grad():
            parts = [torch_loss(net, x, e, torch) for x, e in zip(xe.split(1000), ee.split(1000), strict=True)]
            sizes = [len(x) for x in xe.split(1000)]
            ev_t = {k: sum(float(p[i]) * n for p, n in zip(parts, sizes, strict=True)) / len(xe)
                    for i, k in enumerate(("neg_elbo", "reconstruction", "kl"))}
        row = {"epoch": epoch, "numpy_seconds": t_np, "torch_seconds": t_torch, "load": os.getloadavg()[0],
               **{f"numpy_{k}": v for k, v in ev_np.items()}, **{f"torch_{k}": v for k, v in ev_t.items()}}
        rows.append(row)
        print(f"epoch {epoch}  vae-numpy {t_np:7.1f} s  -ELBO {ev_np['neg_elbo']:7.2f}   |   PyTorch {t_torch:7.1f} s  "
              f"-ELBO {ev_t['neg_elbo']:7.2f}   time ratio {t_np / t_torch:.2f}   (load {row['load']:.1f})",
              flush=True)
    result = {"arch": args.arch, "config": model.config(), "n_params": model.n_params, "epochs": args.epochs,
              "beta_warmup_epochs": args.beta_warmup,
              "n_train": len(x_train), "n_test": len(x_test), "batch": BATCH, "lr": LR, "threads": args.threads,
              "float64_check_max_rel_error": worst, "rows": rows, "load_at_start": load0,
              "load_at_end": os.getloadavg(), "torch": torch.__version__, "numpy": np.__version__,
              "machine": platform.machine(), "cpu_count": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
