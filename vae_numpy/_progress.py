"""Progress during training: a bar where one can be drawn, a plain line every ~10 s where it cannot.

A terminal (stderr is a tty) or a Jupyter kernel gets tqdm's bar, redrawn in place. Anywhere else (a log
file, ``2>&1 | tee``, CI, a notebook's captured output) a bar would be a wall of carriage returns or nothing
until the epoch ends, so :class:`LogLines` prints one line to stderr whenever INTERVAL seconds have passed
since the last one (or since training started), e.g.::

    epoch 2/5  batch 120/469  loss 105.32  2,345 images/s

loss: the running mean of the epoch's training objective so far; images/s: images seen this epoch over the
seconds since the epoch began. The clock is an argument (time.monotonic by default), so a test can drive it.
Both kinds share the interface the training loop calls: ``epoch(epoch, epochs)``, ``step(batch, loss,
size)``, ``close()``; ``note`` is a short text shown beside the numbers (e.g. the thread count).
"""

from __future__ import annotations

import sys
import time

INTERVAL = 10.0   # seconds between two lines when the output is not a terminal
CLOCK = time.monotonic   # the default clock (tests replace it)


class LogLines:
    """Progress as plain lines on `stream` (default: sys.stderr at each write), at most one per `interval` s.

    n_batches: batches per epoch. clock: a function returning seconds (default CLOCK, time.monotonic).
    """

    def __init__(self, n_batches, interval=INTERVAL, clock=None, stream=None):
        self.n_batches, self.interval, self.stream = n_batches, float(interval), stream
        self.clock = CLOCK if clock is None else clock
        self.note = ""
        self.last = self.clock()
        self.epoch_no, self.epochs = 0, 0
        self.t0, self.images, self.loss_sum = self.last, 0, 0.0

    def epoch(self, epoch, epochs):
        """A new epoch begins: the running loss and the rate start again."""
        self.epoch_no, self.epochs = epoch, epochs
        self.t0, self.images, self.loss_sum = self.clock(), 0, 0.0

    def step(self, batch, loss, size):
        """Batch number `batch` (1-based) of `size` images ended with mean loss `loss`; print if it is time."""
        self.images += size
        self.loss_sum += float(loss) * size
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            rate = self.images / max(now - self.t0, 1e-9)
            note = f"  {self.note}" if self.note else ""
            print(f"epoch {self.epoch_no}/{self.epochs}  batch {batch}/{self.n_batches}  loss "
                  f"{self.loss_sum / self.images:.2f}  {rate:,.0f} images/s{note}",
                  file=self.stream or sys.stderr, flush=True)

    def close(self):
        pass


class Bar:
    """tqdm's bar (a widget in a notebook): the epoch in its description, the loss every 20 batches."""

    def __init__(self, total):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, unit="batch", leave=False, dynamic_ncols=True)
        self.note = ""

    def epoch(self, epoch, epochs):
        self.bar.set_description(f"epoch {epoch}/{epochs}")

    def step(self, batch, loss, size):
        self.bar.update(1)
        if batch % 20 == 0:
            self.bar.set_postfix_str(f"loss {loss:.2f}" + (f", {self.note}" if self.note else ""), refresh=False)

    def close(self):
        self.bar.close()


def _in_notebook():
    try:
        from IPython import get_ipython
        shell = get_ipython()
        return shell is not None and "IPKernelApp" in shell.config
    except Exception:  # no IPython, or an unusual shell: not a notebook then
        return False


def make_progress(n_batches, total, enabled=True, stream=None, clock=None):
    """The progress display for a run of `total` batches, `n_batches` an epoch; None when disabled.

    A :class:`Bar` in a notebook or when `stream` (default sys.stderr) is a terminal, else :class:`LogLines`.
    """
    if not enabled or total <= 0:
        return None
    out = sys.stderr if stream is None else stream
    isatty = getattr(out, "isatty", None)
    if _in_notebook() or (isatty is not None and isatty()):
        return Bar(total)
    return LogLines(n_batches, clock=clock, stream=stream)
