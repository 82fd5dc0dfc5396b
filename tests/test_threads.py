"""The BLAS thread choice (vae_numpy._threads): the tuner's decisions on a simulated clock, and that the choice
never changes the numbers beyond BLAS's own rounding (bit for bit at a pinned count)."""

from __future__ import annotations

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _threads
from vae_numpy._threads import ThreadTuner, candidates, resolve_threads

threadpoolctl = pytest.importorskip("threadpoolctl", reason="the thread count is set through threadpoolctl")


def blas_threads():
    return max(lc.num_threads for lc in _threads._lib_controllers())


@pytest.fixture
def two_threads(monkeypatch):
    """Auto has 1 and 2 to choose from (the suite pins 1 through the environment: lifted here)."""
    monkeypatch.delenv(_threads.ENV, raising=False)
    if not _threads._lib_controllers():
        pytest.skip("threadpoolctl finds no BLAS thread pool to set")
    with threadpoolctl.threadpool_limits(2):
        yield


# ------------------------------------------------------------------------------------------ settings
def test_resolve_threads(monkeypatch):
    monkeypatch.delenv(_threads.ENV, raising=False)
    assert resolve_threads() == "auto" and resolve_threads("AUTO") == "auto"
    assert resolve_threads(2) == 2 and resolve_threads("3") == 3 and resolve_threads(np.int64(1)) == 1
    monkeypatch.setenv(_threads.ENV, "1")
    assert resolve_threads() == 1 and resolve_threads("auto") == "auto" and resolve_threads(4) == 4
    monkeypatch.setenv(_threads.ENV, "many")
    with pytest.raises(vn.ConfigError, match=r"\$VAE_NUMPY_THREADS='many'.*positive integer"):
        resolve_threads()


@pytest.mark.parametrize("bad", [0, -1, "two", True, 1.5, ""])
def test_a_bad_thread_count_is_a_config_error(bad, monkeypatch):
    monkeypatch.delenv(_threads.ENV, raising=False)
    with pytest.raises(vn.ConfigError, match="threads=.*'auto' .* positive integer"):
        resolve_threads(bad)


def test_candidates():
    assert candidates(1) == [1] and candidates(2) == [1, 2] and candidates(3) == [1, 2, 3]
    assert candidates(8) == [1, 2, 4, 8] and candidates(12) == [1, 2, 4, 8, 12]


# ------------------------------------------------------------------------ decisions, simulated time
class FakeLib:
    def __init__(self, n):
        self.num_threads = n

    def set_num_threads(self, n):
        self.num_threads = n


class Sim:
    """A clock whose steps take `cost[threads]` seconds; `cost` can change mid-run (a neighbour arrives)."""

    def __init__(self, monkeypatch, cost, ceiling=2):
        self.lib, self.t, self.cost = FakeLib(ceiling), 0.0, dict(cost)
        monkeypatch.setattr(_threads, "_lib_controllers", lambda: [self.lib])
        self.tuner = ThreadTuner("auto", clock=lambda: self.t)
        self.per_count = {}

    def run(self, steps, rows=128):
        for _ in range(steps):
            n = self.lib.num_threads
            self.t += self.cost[n]
            self.per_count[n] = self.per_count.get(n, 0) + 1
            self.tuner.tick(rows)


def test_auto_picks_two_threads_on_an_idle_machine_and_restores(monkeypatch):
    sim = Sim(monkeypatch, {1: 0.006, 2: 0.004})
    sim.tuner.start()
    sim.run(300)
    assert sim.tuner.threads == 2 and sim.tuner.events[0][1] == "start" and sim.tuner.events[0][3] == 2
    assert sim.per_count[2] > 0.9 * 300
    sim.tuner.close()
    assert sim.lib.num_threads == 2


def test_auto_avoids_a_collapsing_count_and_pays_little_to_check_it(monkeypatch):
    sim = Sim(monkeypatch, {1: 0.006, 2: 0.060})    # a busy neighbour: 2 threads 10x slower
    sim.tuner.start()
    sim.run(2000)
    assert sim.tuner.threads == 1
    probes = len(sim.tuner.events)
    assert 3 <= probes <= 10                           # re-checked, less often while nothing changes
    assert sim.per_count[2] <= probes                  # one slow step per probe: the window is cut short


def test_auto_follows_the_load_both_ways(monkeypatch):
    sim = Sim(monkeypatch, {1: 0.006, 2: 0.004})
    sim.tuner.start()
    sim.run(200)
    assert sim.tuner.threads == 2
    sim.cost = {1: 0.006, 2: 0.050}                    # a neighbour starts: the slow-down triggers a probe
    sim.run(30)
    assert sim.tuner.threads == 1 and sim.tuner.events[-1][1] == "slower"
    sim.cost = {1: 0.006, 2: 0.004}                    # it stops: found at a periodic re-check
    sim.run(2000)
    assert sim.tuner.threads == 2
    summary = sim.tuner.epoch_summary()
    assert summary["threads"] == 2 and set(summary["thread_steps"]) == {"1", "2"}
    assert sum(summary["thread_steps"].values()) == 2230 and sim.tuner.epoch_summary()["thread_steps"] == {}


def test_hysteresis_keeps_the_count_within_the_margin(monkeypatch):
    sim = Sim(monkeypatch, {1: 0.0060, 2: 0.0057})    # 5% apart: not worth a change (margin 10%)
    sim.tuner.start()
    sim.run(1000)
    assert {e[3] for e in sim.tuner.events} == {1} and sim.per_count[1] > 900


def test_pinned_and_a_ceiling_of_one_never_probe(monkeypatch):
    sim = Sim(monkeypatch, {1: 0.006, 2: 0.004, 3: 0.001})
    sim.tuner = ThreadTuner(3, clock=lambda: sim.t)
    sim.tuner.start()
    assert sim.lib.num_threads == 3 and sim.tuner.label == "3 threads (pinned)"
    sim.run(500)
    assert sim.per_count == {3: 500} and not sim.tuner.events
    sim.tuner.close()
    assert sim.lib.num_threads == 2
    one = Sim(monkeypatch, {1: 0.006, 2: 0.004}, ceiling=1)     # threadpool_limits(1) around the run
    one.tuner.start()
    one.run(500)
    assert one.per_count == {1: 500} and not one.tuner.events and one.tuner.label == "1 thread (auto)"


def test_the_lowest_count_of_the_loaded_blas_libraries_is_the_ceiling(monkeypatch):
    # numpy's BLAS limited to 1 thread, scipy's (loaded later, by Numba's first compile) still at 2
    libs = [FakeLib(2), FakeLib(1)]
    monkeypatch.setattr(_threads, "_lib_controllers", lambda: libs)
    with ThreadTuner("auto") as tuner:
        assert tuner.candidates == [1] and [lib.num_threads for lib in libs] == [1, 1]
    assert [lib.num_threads for lib in libs] == [2, 1]


# ------------------------------------------------------------------------------- numbers, real BLAS
@pytest.fixture(scope="module")
def images():
    x, _ = vn.datasets.load_dataset("mnist-5k", "train")
    return x[:512]


def _trained(images, threads, **kw):
    model = vn.VAE(hidden_dims=(64,), latent_dim=8, seed=0, **kw)
    history = vn.train(model, images, epochs=2, batch_size=64, seed=1, progress=False, threads=threads)
    return model, history


def test_a_pinned_count_is_bit_for_bit_and_recorded(images, two_threads):
    for n in (1, 2):
        a, ha = _trained(images, n)
        b, _ = _trained(images, n)
        assert np.array_equal(a._flat_params, b._flat_params)
        assert [(r["threads"], r["thread_steps"]) for r in ha] == [(n, {str(n): 8})] * 2
    assert blas_threads() == 2                         # restored after the run


def test_one_and_two_threads_agree_to_float32_rounding(images, two_threads):
    x = vn.datasets.to_unit(vn.datasets.flatten(images[:128]))
    grads = {}
    for n in (1, 2):
        model = vn.VAE(hidden_dims=(400,), latent_dim=20, seed=0)
        eps = np.random.default_rng(0).standard_normal((128, 20)).astype(np.float32)
        with threadpoolctl.threadpool_limits(n):
            loss = model.forward(x, eps)
            model.backward()
        grads[n] = (loss, model._flat_grads.copy())
    assert grads[1][0] == pytest.approx(grads[2][0], rel=1e-5)
    g1, g2 = grads[1][1], grads[2][1]
    assert np.linalg.norm(g1 - g2) <= 1e-5 * np.linalg.norm(g1)
    _, h1 = _trained(images, 1)
    _, h2 = _trained(images, 2)
    for r1, r2 in zip(h1, h2, strict=True):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-5)


def test_auto_respects_an_outer_limit_and_restores_the_count(images, two_threads):
    with threadpoolctl.threadpool_limits(1):
        a, ha = _trained(images, "auto")
        assert blas_threads() == 1
    b, _ = _trained(images, 1)
    assert np.array_equal(a._flat_params, b._flat_params)
    assert all(r["thread_steps"] == {"1": 8} for r in ha)
    _, h = _trained(images, "auto")                    # may switch; the steps are all accounted for
    assert all(sum(r["thread_steps"].values()) == 8 and r["threads"] in (1, 2) for r in h)
    assert blas_threads() == 2


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_the_count_is_restored_when_training_fails(images, two_threads):
    model = vn.VAE(hidden_dims=(64,), latent_dim=8, seed=0)
    with pytest.raises(vn.VAENumpyError):          # a bad state is refused (CheckpointError) before any step
        vn.train(model, images, epochs=1, progress=False, threads=1, state={"epoch": 0})
    opt = vn.Adam(model.params, lr=1e9)               # diverges
    with pytest.raises(vn.TrainingDiverged):
        vn.train(model, images, epochs=3, batch_size=64, optimizer=opt, progress=False, threads=1)
    assert blas_threads() == 2


def test_a_pinned_run_resumes_pinned(images, two_threads, tmp_path):
    whole, _ = _trained(images, 2)
    part = vn.VAE(hidden_dims=(64,), latent_dim=8, seed=0)
    vn.train(part, images, epochs=1, batch_size=64, seed=1, progress=False, threads=2,
             checkpoint=tmp_path / "part.npz")
    model, history = vn.resume(tmp_path / "part.npz", images, epochs=2, progress=False)
    assert history[-1]["threads"] == 2
    assert np.array_equal(model._flat_params, whole._flat_params)


def test_evaluation_with_a_thread_choice(images, two_threads):
    model, _ = _trained(images, 1)
    x = images[:40]
    with threadpoolctl.threadpool_limits(1):
        ref = vn.evaluation.evaluate(model, x, iwae_samples=20, seed=3)
    pinned = vn.evaluation.evaluate(model, x, iwae_samples=20, seed=3, threads=1)
    assert pinned == ref
    auto = vn.evaluation.evaluate(model, x, iwae_samples=20, seed=3, threads="auto")
    assert auto["log_likelihood"] == pytest.approx(ref["log_likelihood"], rel=1e-5)
    assert blas_threads() == 2


# ---------------------------------------------------------------------------------------------- CLI
def _cli(*args, cwd):
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "VAE_NUMPY_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    env.pop(_threads.ENV, None)
    proc = subprocess.run([sys.executable, "-m", "vae_numpy", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_the_threads_flag_refuses_a_bad_count_in_one_line(command, tmp_path):
    args = ["evaluate", str(tmp_path / "model.npz")] if command == "evaluate" else ["train"]
    code, _, err = _cli(*args, "--threads", "0", cwd=tmp_path)
    assert code == 2 and err.count("\n") == 1 and "'0' is not a thread count" in err


def test_the_threads_flag_pins_and_shows_the_count(tmp_path):
    code, out, err = _cli("train", "--dataset", "mnist-5k", "--hidden", "16", "--latent-dim", "2", "--epochs",
                          "1", "--batch-size", "512", "--no-progress", "--no-figures", "--out", "run",
                          "--threads", "2", cwd=tmp_path)
    assert code == 0, err
    assert "2 threads)" in out
    state = vn.checkpoint.load_checkpoint(tmp_path / "run" / "model.npz").train_state
    assert state["threads"] == 2 and state["history"][0]["threads"] == 2
