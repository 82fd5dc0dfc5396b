"""How many BLAS threads the matmuls use: measured on the real training steps, re-checked as the load changes.

Why (issue 14): NumPy's OpenBLAS runs every matmul on all its threads (2 on a 2-core machine) and each call waits
for its slowest thread. On an idle machine 2 threads make a 784-400-20 epoch ~1.5x faster than 1; with another
program busy on one core, a 2-thread call waits until the scheduler gives its second thread a turn, and the same
epoch ran 7-12x slower. No fixed count is right for both, so the count is measured where it matters.

``ThreadTuner("auto")`` (the default) times the training steps themselves, as seconds per example (a smaller
last batch counts for what it is):

    probe    windows of >= 3 steps and >= 30 ms at each candidate count c in {1, 2, 4, ...} up to the count the
             BLAS had when training started (an outer ``threadpool_limits(1)`` or OPENBLAS_NUM_THREADS=1 leaves
             nothing to choose), in 2 interleaved rounds (1, 2, 2, 1): a load that drifts hits both alike.
             A candidate whose window runs > 2x slower than the best so far is dropped at once, so a probe of a
             count that collapses under load costs about one slow step.
    choose   the fastest; the count in use is kept unless another is >= 10% faster (hysteresis).
    re-check after 100 steps or 10 s (x2 each time a probe keeps the count, x4 when a count collapsed, up to
             32x; back to 100 steps when it changes), and at once when a monitoring block (>= 10 steps, >= 0.2 s)
             runs 1.5x slower or faster than the chosen count measured at its probe: a neighbour came or went.

``threads=N`` (``--threads N``, or ``VAE_NUMPY_THREADS=N`` for every run that passes no count) pins N threads.

Numbers: OpenBLAS rounds a float32 matmul differently at 1 and at 2 threads (it partitions the work and picks its
kernels by the thread count), ~1e-7 relative per product, so a run is bit for bit reproducible at a pinned count
and agrees to float32 rounding across counts; auto's choices depend on the load, so pin the count where bits
matter (tests/conftest.py pins 1 for the test suite). Numba's own threads play no part: no kernel of this
package is parallel (``prange``), see benchmarks/README.md.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import time

from .errors import ConfigError

ENV = "VAE_NUMPY_THREADS"
AUTO = "auto"


def _lib_controllers():
    """threadpoolctl's controllers of the loaded BLAS libraries; [] without threadpoolctl.

    Only BLAS: an OpenMP pool belongs to someone else (PyTorch in the same process, say). Scanned afresh at each
    call (~3 ms, once per run): a BLAS can load later (scipy's own OpenBLAS, which Numba's first compile imports).
    """
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - a run-time dependency; without it nothing is tuned
        return []
    return list(threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers)


def resolve_threads(threads=None):
    """'auto' or a positive int, from `threads`; None means $VAE_NUMPY_THREADS, else 'auto'."""
    source = "threads"
    if threads is None:
        env = os.environ.get(ENV, "").strip()
        if not env:
            return AUTO
        source, threads = f"${ENV}", (int(env) if env.isdigit() else env)
    if isinstance(threads, str) and threads.strip().lower() == AUTO:
        return AUTO
    if isinstance(threads, str) and threads.strip().isdigit():
        threads = int(threads)
    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ConfigError(f"{source}={threads!r} is not a thread count; give 'auto' (measure and pick, the "
                          "default) or a positive integer, e.g. 1 (reproducible to the bit on any load)")
    return int(threads)


def candidates(ceiling):
    """The counts auto compares: 1, 2, 4, ... below `ceiling`, and `ceiling` itself."""
    out, c = [], 1
    while c < ceiling:
        out.append(c)
        c *= 2
    return [*out, max(1, ceiling)]


class ThreadTuner:
    """Chooses the BLAS thread count while a loop runs (see the module docstring).

    Use: ``tuner.start()`` before the loop, ``tuner.tick(rows)`` after every step (rows: examples in it),
    ``tuner.pause()`` before time that is not a step (validation, checkpoints), ``tuner.close()`` at the end
    (restores the counts found at start). ``tuner.threads`` is the count in use; ``tuner.events`` lists each
    probe as (step, reason, {count: seconds per example}, chosen).
    """

    def __init__(self, threads=None, *, recheck_steps=100, recheck_seconds=10.0, slowdown=1.5, margin=0.1,
                 window_steps=3, window_seconds=0.03, monitor_steps=10, monitor_seconds=0.2, rounds=2,
                 warmup_steps=2, abort=2.0, max_backoff=32, clock=time.perf_counter):
        self.mode = resolve_threads(threads)
        self.recheck_steps, self.recheck_seconds = recheck_steps, recheck_seconds
        self.slowdown, self.margin, self.abort, self.rounds = slowdown, margin, abort, rounds
        self.window = (window_steps, window_seconds)
        self.monitor = (monitor_steps, monitor_seconds)
        self.warmup_steps, self.max_backoff, self.clock = warmup_steps, max_backoff, clock
        self.events, self.steps, self.threads, self.candidates = [], 0, 1, [1]
        self._libs, self._saved, self._epoch_steps = [], [], {}

    # ------------------------------------------------------------------------------------------ public
    @property
    def auto(self):
        return self.mode == AUTO and len(self.candidates) > 1

    @property
    def label(self):
        """For a progress line: '2 threads (auto)', '1 thread (pinned)'."""
        kind = "pinned" if self.mode != AUTO else "auto"
        return f"{self.threads} thread{'s' if self.threads != 1 else ''} ({kind})"

    def start(self):
        self._libs = _lib_controllers()
        self._saved = [lc.num_threads for lc in self._libs]
        ceiling = min(self._saved, default=1)   # an outer limit on any of them (they are all set alike)
        if self.mode == AUTO:
            self.candidates = candidates(ceiling)
            self._set(1 if len(self.candidates) > 1 else ceiling, force=True)
        else:
            self.candidates = [self.mode]
            self._set(self.mode, force=True)
        self._phase, self._incumbent = "warmup", self.threads
        self._backoff = 1
        self._reset_window()
        self.pause()
        return self

    def close(self):
        for lc, n in zip(self._libs, self._saved, strict=True):
            lc.set_num_threads(n)
        self._libs, self._saved = [], []

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def pause(self):
        """Restart the step clock: the time since the last tick was not a step."""
        self._t = self.clock()

    def epoch_summary(self):
        """{"threads": the count of most steps since the last call, "thread_steps": {"1": n1, "2": n2}}."""
        counts, self._epoch_steps = self._epoch_steps, {}
        main = max(counts, key=counts.get) if counts else self.threads
        return {"threads": int(main), "thread_steps": {str(k): v for k, v in sorted(counts.items())}}

    def tick(self, rows=1):
        """One step of `rows` examples has just ended."""
        now = self.clock()
        dt, self._t = now - self._t, now
        self.steps += 1
        self._epoch_steps[self.threads] = self._epoch_steps.get(self.threads, 0) + 1
        if not self.auto:
            return
        self._n, self._secs, self._rows = self._n + 1, self._secs + dt, self._rows + rows
        if self._phase == "warmup":
            if self._n >= self.warmup_steps:
                self._start_probe("start")
        elif self._phase == "probe":
            self._probe_tick()
        else:
            self._run_tick()

    def calibrate(self, step, rows=1, max_steps=200):
        """Run the initial probe on `step()` (a callable doing representative work on `rows` examples)."""
        for _ in range(max_steps):
            if not self.auto or self._phase == "run":
                return self.threads
            step()
            self.tick(rows)
        return self.threads

    # ---------------------------------------------------------------------------------------- internals
    def _set(self, n, force=False):
        if force or n != self.threads:
            for lc in self._libs:
                lc.set_num_threads(n)
        self.threads = n

    def _reset_window(self):
        self._n, self._secs, self._rows = 0, 0.0, 0

    def _start_probe(self, reason):
        others = [c for c in self.candidates if c != self._incumbent]
        order = [self._incumbent, *others]
        self._plan = [c for r in range(self.rounds) for c in (order if r % 2 == 0 else order[::-1])]
        self._results, self._lost, self._reason = {}, set(), reason
        self._next_window()

    def _next_window(self):
        while self._plan and self._plan[0] in self._lost:
            self._plan.pop(0)
        if not self._plan:
            return self._choose()
        self._phase = "probe"
        self._set(self._plan.pop(0))
        self._reset_window()
        self.pause()

    def _best_rate(self, exclude):
        rates = [s / r for c, (s, r) in self._results.items() if c != exclude and c not in self._lost and r]
        return min(rates) if rates else None

    def _probe_tick(self):
        c, rate = self.threads, self._secs / max(self._rows, 1)
        best = self._best_rate(exclude=c)
        if c != self._incumbent and best is not None and rate > self.abort * best:
            self._lost.add(c)
            s, r = self._results.get(c, (0.0, 0))
            self._results[c] = (s + self._secs, r + self._rows)
            return self._next_window()
        if self._n >= self.window[0] and self._secs >= self.window[1]:
            s, r = self._results.get(c, (0.0, 0))
            self._results[c] = (s + self._secs, r + self._rows)
            self._next_window()

    def _choose(self):
        rates = {c: s / r for c, (s, r) in self._results.items() if r}
        valid = {c: v for c, v in rates.items() if c not in self._lost}
        best = min(valid, key=valid.get)
        keep = self._incumbent in valid and valid[best] > (1 - self.margin) * valid[self._incumbent]
        chosen = self._incumbent if keep else best
        changed = chosen != self._incumbent or self._reason == "start"
        grow = 4 if self._lost else 2   # a count that collapsed costs ~10 steps to re-check: less often
        self._backoff = 1 if changed else min(grow * self._backoff, self.max_backoff)
        if len(self.events) < 1000:
            self.events.append((self.steps, self._reason, rates, chosen))
        self._incumbent, self._baseline = chosen, valid[chosen]
        self._phase, self._since_steps, self._since_secs = "run", 0, 0.0
        self._set(chosen)
        self._reset_window()
        self.pause()

    def _run_tick(self):
        if self._n < self.monitor[0] or self._secs < self.monitor[1]:
            return
        ratio = self._secs / self._rows / self._baseline
        self._since_steps += self._n
        self._since_secs += self._secs
        self._reset_window()
        if ratio > self.slowdown:
            self._start_probe("slower")
        elif ratio < 1 / self.slowdown:
            self._start_probe("faster")
        elif (self._since_steps >= self.recheck_steps * self._backoff
              or self._since_secs >= self.recheck_seconds * self._backoff):
            self._start_probe("periodic")


def cli_type(text):
    """argparse type of ``--threads``: 'auto' or a positive integer."""
    import argparse
    try:
        return resolve_threads(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a thread count; give auto or a positive integer, "
                                         "e.g. 1") from None


PROBE_ROWS = 1024       # decoded rows per probe step of decode_threads
MIN_PROBE_WORK = 20000  # decoded rows below which a probe costs more than a choice can save


@contextlib.contextmanager
def decode_threads(model, rows, threads=None):
    """The BLAS count for a block of decoding work (the IWAE), restored afterwards.

    rows: the decoded rows the block will compute (images x samples). Pinned: that count. Auto: the counts are
    compared on decoder passes over PROBE_ROWS codes (as ThreadTuner, with no re-check: the block is one call);
    for less than MIN_PROBE_WORK rows the count is left as it is.
    """
    tuner = ThreadTuner(threads, warmup_steps=1)
    tuner.start()
    try:
        if tuner.auto:
            if rows >= MIN_PROBE_WORK:
                import numpy as np
                h = np.zeros((min(rows, PROBE_ROWS), model.latent_dim), model.dtype)
                tuner.calibrate(lambda: model._decoder_forward(h), len(h))
            else:
                tuner._set(max(tuner.candidates))
        yield tuner
    finally:
        tuner.close()
