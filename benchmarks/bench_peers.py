"""vae-numpy against its peers, quiet or under load (issue 14): epochs interleaved, each candidate its own process.

Run with an interpreter that has the peers (the project's own venv has neither torch nor jax; they are skipped):

    /work/venv-bench/bin/python benchmarks/bench_peers.py                 # 784-400-20, threads 1,2, quiet
    .../python benchmarks/bench_peers.py --load 2                         # two busy processes meanwhile
    .../python benchmarks/bench_peers.py --arch 784-512-256-32 --epochs 3
    .../python benchmarks/bench_peers.py --step20                         # batch 20, 784-200-200-50 tanh

Candidates (``--peers``): vae-numpy (``vn.train``, threads auto and each of ``--threads``), floor (the same
matmuls alone), torch (eager), torch-compile, jax (the whole step under ``jax.jit``); see peers_workers.py.
Every candidate starts in its own process (one after the other: their imports and first batches do not
overlap), then the epochs run interleaved, A B C A B C ...: epoch 1 is the warm-up, the next ``--epochs`` are
timed; min and median per candidate. ``--load N`` keeps N busy processes (pure-Python loops) running from before
the first start to the end, bounded by ``--load-max-seconds`` and killed on every exit path. The results go to
``benchmarks/results/peers.json`` under a key naming the setting (arch, batch, activation, load), beside the
load average and the busiest other processes before and after.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "peers.json"
PEERS = ("vae-numpy", "floor", "torch", "torch-compile", "jax")
NEEDS = {"torch": "torch", "torch-compile": "torch", "jax": "jax"}
SPIN = ("import os, sys, time\nend, ppid = time.monotonic() + float(sys.argv[1]), os.getppid()\n"
        "while time.monotonic() < end and os.getppid() == ppid:\n    for _ in range(200000):\n        pass\n")


# ========================================================================================== data, machine
def read_idx_images(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[2] != 0x08 or raw[3] != 3:
        raise SystemExit(f"{path} is not an IDX file of uint8 images")
    n, h, w = (int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(raw, np.uint8, n * h * w, 16).reshape(n, h * w)


def find_images(data_dir):
    dirs = [data_dir] if data_dir else [os.environ.get("VAE_NUMPY_DATA"), ROOT.parent / "shared/data/mnist",
                                        ROOT.parent.parent / "shared/data/mnist", "/usr/share/datasets/fashion-mnist"]
    for d in filter(None, dirs):
        for name in ("train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"):
            if (Path(d) / name).is_file():
                return Path(d) / name
    raise SystemExit(f"no train-images-idx3-ubyte(.gz) in {[str(d) for d in dirs if d]}; pass --data-dir")


def cpu_ticks():
    """{pid: (comm, utime + stime ticks)} of every process."""
    out = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
                out[int(d.name)] = (comm, int(rest[11]) + int(rest[12]))
            except (OSError, ValueError, IndexError):
                pass
    return out


def busy_processes(exclude=(), interval=1.0, top=8):
    """The busiest processes over `interval` s (name and cores), ours excluded; the load average."""
    a = cpu_ticks()
    time.sleep(interval)
    b, hz = cpu_ticks(), os.sysconf("SC_CLK_TCK")
    busy = [(comm, (t - a[pid][1]) / hz / interval) for pid, (comm, t) in b.items()
            if pid in a and pid not in exclude and pid != os.getpid()]
    busy = sorted((x for x in busy if x[1] >= 0.05), key=lambda x: -x[1])[:top]
    return {"loadavg": [round(v, 2) for v in os.getloadavg()],
            "busy_processes": [{"name": c, "cores": round(v, 2)} for c, v in busy],
            "busy_cores_total": round(sum(v for _, v in busy), 2)}


def has(module, python):
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


# ================================================================================================ workers
class Worker:
    def __init__(self, name, spec, python):
        self.name, self.spec, self.epochs = name, spec, []
        self.proc = subprocess.Popen([python, str(HERE / "peers_workers.py"), json.dumps(spec)], cwd=str(ROOT),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self.expect("READY")

    def expect(self, tag):
        for line in self.proc.stdout:
            if line.startswith(tag + " "):
                return json.loads(line[len(tag) + 1:])
        raise RuntimeError(f"{self.name} exited (code {self.proc.wait()}) before {tag}")

    def epoch(self):
        self.proc.stdin.write("epoch\n")
        self.epochs.append(self.expect("EPOCH"))

    def finish(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        done = self.expect("DONE")
        self.proc.wait(timeout=60)
        return done

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def summarize(w: Worker, done: dict, steps: int) -> dict:
    timed = [e["seconds"] for e in w.epochs[1:]] or [e["seconds"] for e in w.epochs]
    res = {"epoch_min_s": min(timed), "epoch_median_s": statistics.median(timed),
           "step_min_ms": 1e3 * min(timed) / steps, "step_median_ms": 1e3 * statistics.median(timed) / steps,
           "epoch_min_s_per_60k": min(timed) * 60000 / w.spec["n_images"],
           "epoch1_s": w.epochs[0]["seconds"], "epochs_s": [round(e["seconds"], 3) for e in w.epochs],
           "cpu_per_wall": [round(e["cpu_s"] / e["seconds"], 2) for e in w.epochs],
           "loss_per_epoch": [e["loss"] for e in w.epochs], **w.ready, **done}
    if w.epochs and "thread_steps" in w.epochs[0]:
        res["thread_steps"] = [e["thread_steps"] for e in w.epochs]
    return res


def candidates(args, arch):
    out = []
    for peer in args.peers:
        counts = (["auto"] if peer == "vae-numpy" and not args.no_auto else []) + args.threads
        for t in counts:
            spec = {"kind": peer, "threads": t, "arch": arch, "batch": args.batch, "activation": args.activation,
                    "npy": args.npy, "n_images": args.n_images}
            out.append((f"{peer}/{t}", spec))
    return out


def run_setting(args, arch, skipped):
    steps = -(-args.n_images // args.batch)
    workers, results = [], {}
    try:
        for name, spec in candidates(args, arch):
            if spec["kind"] in skipped:
                continue
            print(f"  starting {name} ...", flush=True)
            try:
                workers.append(Worker(name, spec, args.python))
            except RuntimeError as exc:
                results[name] = {"error": str(exc)}
        for r in range(1 + args.epochs):
            for w in workers:
                w.epoch()
            print(f"  epoch {r + 1}: " + ", ".join(f"{w.name} {w.epochs[-1]['seconds']:.2f}" for w in workers),
                  flush=True)
        for w in workers:
            results[w.name] = summarize(w, w.finish(), steps)
    finally:
        for w in workers:
            w.kill()
    return results


def ratios(res):
    """vae-numpy over JAX (same thread count; auto over JAX's best) and over the floor."""
    def best(prefix):
        vals = [v["epoch_min_s"] for k, v in res.items() if k.startswith(prefix) and "epoch_min_s" in v]
        return min(vals) if vals else None

    out = {}
    for key, v in res.items():
        if not key.startswith("vae-numpy/") or "epoch_min_s" not in v:
            continue
        t = key.split("/")[1]
        for peer in ("jax", "floor", "torch", "torch-compile"):
            ref = best(f"{peer}/") if t == "auto" else res.get(f"{peer}/{t}", {}).get("epoch_min_s")
            if ref:
                out[f"{key} / {peer}{'(best)' if t == 'auto' else '/' + t}"] = round(v["epoch_min_s"] / ref, 3)
    return out


# =================================================================================================== main
def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="784-400-20", help="comma-separated, e.g. 784-400-20,784-512-256-32")
    p.add_argument("--threads", default="1,2", help="thread counts each candidate runs at, default 1,2")
    p.add_argument("--no-auto", action="store_true", help="no vae-numpy run with threads='auto'")
    p.add_argument("--peers", default=",".join(PEERS), help=f"subset of {','.join(PEERS)}")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch, default 3")
    p.add_argument("--images", type=int, default=60000, help="training images per epoch, default 60,000")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--activation", choices=("relu", "tanh"), default="relu")
    p.add_argument("--step20", action="store_true", help="the literature's setting: batch 20, 784-200-200-50 tanh")
    p.add_argument("--load", type=int, default=0, metavar="N", help="busy processes kept running meanwhile")
    p.add_argument("--load-max-seconds", type=float, default=1200.0, help="the busy processes' hard time limit")
    p.add_argument("--data-dir", default=None, help="a folder with train-images-idx3-ubyte (MNIST or Fashion)")
    p.add_argument("--python", default=sys.executable, help="the interpreter of the workers")
    p.add_argument("--tag", default="", help="appended to the result's key, e.g. 'busy machine' (load 0 by us)")
    p.add_argument("--json", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.step20:
        args.batch, args.activation = 20, "tanh"
        if args.arch == "784-400-20":
            args.arch = "784-200-200-50"
    args.archs = [[int(d) for d in a.split("-")] for a in args.arch.split(",")]
    args.threads = [int(t) for t in args.threads.split(",") if t]
    args.peers = [q for q in args.peers.split(",") if q]
    bad = [q for q in args.peers if q not in PEERS]
    if bad or not args.threads or min(args.threads) < 1 or any(len(a) < 3 for a in args.archs):
        p.error(f"check --peers {bad or ''} --threads --arch")
    return args


def main(argv=None):
    args = parse(argv)
    spinners = []

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    tmp = tempfile.TemporaryDirectory(prefix="bench_peers_")
    try:
        src = find_images(args.data_dir)
        images = read_idx_images(src)
        reps = -(-args.images // len(images))
        images = np.concatenate([images] * reps)[:args.images] if reps > 1 else images[:args.images]
        args.n_images, args.npy = len(images), str(Path(tmp.name) / "images.npy")
        np.save(args.npy, images)
        skipped = {q: f"{m} is not importable by {args.python}" for q, m in NEEDS.items()
                   if q in args.peers and not has(m, args.python)}
        for q, why in skipped.items():
            print(f"skipping {q}: {why}")
        before = busy_processes()
        for _ in range(args.load):
            spinners.append(subprocess.Popen([sys.executable, "-c", SPIN, str(args.load_max_seconds)]))
        print(f"data {src} x {len(images)}, load {args.load}, loadavg {before['loadavg']}", flush=True)
        settings = {}
        for arch in args.archs:
            key = f"{'-'.join(map(str, arch))} batch {args.batch} {args.activation} load {args.load}"
            key += f" [{args.tag}]" if args.tag else ""
            print(key, flush=True)
            t0 = time.time()
            res = run_setting(args, arch, skipped)
            after = busy_processes(exclude={s.pid for s in spinners})
            settings[key] = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t0)),
                             "wall_s": round(time.time() - t0, 1), "data": str(src), "images": args.n_images,
                             "batch": args.batch, "steps_per_epoch": -(-args.n_images // args.batch),
                             "timed_epochs": args.epochs, "load_processes": args.load, "before": before,
                             "after": after, "skipped": skipped, "results": res, "ratios": ratios(res)}
            report(key, settings[key])
        save(args.json, settings)
    finally:
        for s in spinners:
            s.kill()
            s.wait()
        tmp.cleanup()


def report(key, s):
    print(f"\n{key}   (loadavg before {s['before']['loadavg']}, after {s['after']['loadavg']})")
    print(f"{'candidate':<22}{'min s':>8}{'median s':>10}{'step ms':>9}{'1st batch s':>12}{'RSS MB':>8}  cpu/wall")
    for name, r in s["results"].items():
        if "error" in r:
            print(f"{name:<22} {r['error']}")
            continue
        print(f"{name:<22}{r['epoch_min_s']:8.2f}{r['epoch_median_s']:10.2f}{r['step_min_ms']:9.3f}"
              f"{r['first_batch_s']:12.2f}{r['peak_rss_mb']:8.0f}  {r['cpu_per_wall']}")
    for k, v in s["ratios"].items():
        print(f"  {k}: {v}")


def load_goals(runs):
    """For each loaded run with its quiet twin in the file (same key with load 0): vae-numpy's epochs under load
    over its own quiet 1-thread epoch (per 60,000 images; issue 14's goal: <= 1.5), and over JAX's under load."""
    for key, run in runs.items():
        if run.get("load_processes", 0) == 0 and " [" not in key:
            continue
        quiet = runs.get(key.rsplit(" load ", 1)[0] + " load 0", {}).get("results", {}).get("vae-numpy/1", {})
        res = run["results"]
        jax = min((v["epoch_min_s_per_60k"] for k, v in res.items() if k.startswith("jax/") and
                   "epoch_min_s_per_60k" in v), default=None)
        goals = {}
        for name, v in res.items():
            if name.startswith("vae-numpy/") and "epoch_min_s_per_60k" in v:
                if quiet.get("epoch_min_s_per_60k"):
                    goals[f"{name} loaded / vae-numpy/1 quiet"] = round(
                        v["epoch_min_s_per_60k"] / quiet["epoch_min_s_per_60k"], 3)
                if jax:
                    goals[f"{name} / jax(best) loaded"] = round(v["epoch_min_s_per_60k"] / jax, 3)
        run["load_goals"] = goals


def save(path, settings):
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("runs", {}).update(settings)
    load_goals(data["runs"])
    data["machine"] = {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                       "platform": platform.platform(), "numpy": np.__version__}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
