"""The MLP's epoch on two checkouts of vae-numpy (issue 12: "the MLP epoch no slower than today's").

    python benchmarks/bench_ab.py OLD_CHECKOUT NEW_CHECKOUT [--rounds 3] [--json PATH]
    (e.g. git worktree add --detach /tmp/old 745e9c2, the code before the models-from-layers redesign)

Each measurement is a fresh process that imports vae_numpy from the given checkout and runs the training loop
(``model._forward``, ``model.backward()``, ``opt.step(model.grads)``, as vn.train does) over 30,000 random
float32 images, batch 128, one BLAS thread: one warm-up epoch, then the fastest of 3 epochs in CPU seconds
(``time.process_time``: on a shared machine CPU time is steadier than wall time; at one thread they agree when
the machine is quiet). The checkouts alternate, A B A B ..., for 784-400-20 and 784-512-256-32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

WORKER = r"""
import sys, time, numpy as np
sys.path.insert(0, sys.argv[1])
import vae_numpy as vn
from threadpoolctl import threadpool_limits
hidden, latent = tuple(int(h) for h in sys.argv[2].split(",")), int(sys.argv[3])
rng = np.random.default_rng(0)
x = rng.random((30000, 784)).astype(np.float32)
model = vn.VAE(hidden_dims=hidden, latent_dim=latent, seed=0)
opt = vn.Adam(model.params)
eps = rng.standard_normal((128, latent)).astype(np.float32)
def epoch():
    for i in range(0, 30000 - 127, 128):
        model._forward(x[i:i + 128], eps); model.backward(); opt.step(model.grads)
with threadpool_limits(1):
    epoch()
    best = 1e9
    for _ in range(3):
        c = time.process_time(); epoch(); best = min(best, time.process_time() - c)
print(best)
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("old", type=Path)
    p.add_argument("new", type=Path)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "mlp_ab.json")
    args = p.parse_args(argv)
    out = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "load_before": os.getloadavg(),
           "old": str(args.old), "new": str(args.new), "unit": "CPU s per 30,000 images, 1 thread", "results": {}}
    for hidden, latent in (("400", 20), ("512,256", 32)):
        key = f"784-{hidden.replace(',', '-')}-{latent}"
        rows = {"old": [], "new": []}
        for _ in range(args.rounds):
            for name in ("old", "new"):
                done = subprocess.run([sys.executable, "-c", WORKER, str(getattr(args, name)), hidden, str(latent)],
                                      capture_output=True, text=True, check=True)
                rows[name].append(float(done.stdout.split()[-1]))
        out["results"][key] = {**rows, "min_old": min(rows["old"]), "min_new": min(rows["new"]),
                               "new_over_old": min(rows["new"]) / min(rows["old"])}
        print(key, json.dumps(out["results"][key]), flush=True)
    out["load_after"] = os.getloadavg()
    args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
