"""Progress where the output is not a terminal: a line every ~10 s during an epoch, driven by a fake clock."""

from __future__ import annotations

import io

import numpy as np
import pytest

import vae_numpy as vn
from vae_numpy import _progress
from vae_numpy._progress import Bar, LogLines, make_progress


class FakeClock:
    """Seconds that advance by `step` at every reading."""

    def __init__(self, step):
        self.t, self.step = 1000.0, step

    def __call__(self):
        self.t += self.step
        return self.t


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_a_line_every_ten_seconds_with_batch_running_loss_and_rate():
    out = io.StringIO()
    log = LogLines(100, clock=FakeClock(1.0), stream=out)   # the clock is read once a batch: a batch a second
    for epoch in (1, 2):
        log.epoch(epoch, 2)
        for b in range(1, 101):
            log.step(b, loss=float(b), size=32)
    lines = out.getvalue().splitlines()
    assert 19 <= len(lines) <= 21   # 200 s of training, a line each 10 s
    first = lines[0].split()
    assert first[:3] == ["epoch", "1/2", "batch"] and first[4] == "loss" and first[-1] == "images/s"
    b = int(first[3].split("/")[0])
    assert 8 <= b <= 11 and first[3].endswith("/100")
    assert float(first[5]) == pytest.approx(np.mean(np.arange(1, b + 1)), abs=0.01)   # the epoch's running mean
    assert float(first[6].replace(",", "")) == pytest.approx(32, rel=0.15)   # 32 images a second
    assert any(line.startswith("epoch 2/2  batch ") for line in lines)


def test_nothing_before_ten_seconds_and_the_note_is_shown():
    out = io.StringIO()
    log = LogLines(50, clock=FakeClock(0.25), stream=out)   # 0.25 s a reading (exact in binary)
    log.note = "2 threads"
    log.epoch(1, 1)
    for b in range(1, 39):
        log.step(b, 100.0, 8)
    assert out.getvalue() == ""   # 10 s have not passed since the start
    log.step(39, 100.0, 8)
    assert out.getvalue() == "epoch 1/1  batch 39/50  loss 100.00  32 images/s  2 threads\n"


def test_a_terminal_keeps_the_bar_and_disabled_means_nothing():
    assert isinstance(make_progress(10, 30, stream=TTY()), Bar)
    assert isinstance(make_progress(10, 30, stream=io.StringIO()), LogLines)
    assert make_progress(10, 30, enabled=False, stream=io.StringIO()) is None
    assert make_progress(10, 0, stream=io.StringIO()) is None
    bar = make_progress(10, 30, stream=TTY())
    bar.epoch(1, 3)
    bar.step(1, 5.0, 4)
    bar.close()


def test_vn_train_into_a_log_prints_progress_lines(monkeypatch, capsys):
    """stderr captured (not a terminal): train prints 'epoch i/n  batch b/B  loss  images/s' lines."""
    monkeypatch.setattr(_progress, "CLOCK", FakeClock(4.0))
    x = np.random.default_rng(0).random((64, 12)).astype(np.float32)
    model = vn.VAE(12, (8,), 2, seed=0)
    vn.train(model, x, epochs=2, batch_size=16, progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(lines) >= 3 and "batch 2/4" in err and lines[-1].startswith("epoch 2/2")
    assert all(" images/s  1 thread (auto)" in line for line in lines)   # the note: vn.train's BLAS thread count
    vn.train(vn.VAE(12, (8,), 2, seed=0), x, epochs=1, batch_size=16, progress=False)
    assert capsys.readouterr().err == ""
