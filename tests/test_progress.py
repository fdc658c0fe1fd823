"""The progress display: quiet off a terminal, and its numbers (rate, ETA) against arithmetic
done by hand on a fake clock."""

import io

import numpy as np
import pytest

from symbp.progress import Progress, format_duration, status, track


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # lines are cut to the terminal's width


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


def last_line(stream):
    return stream.getvalue().split("\r")[-1].rstrip("\n").rstrip()


def test_quiet_off_a_terminal_and_when_asked(monkeypatch):
    monkeypatch.delenv("SYMBP_PROGRESS", raising=False)
    for stream, quiet in ((io.StringIO(), None), (Terminal(), True)):
        with Progress(5, "epoch", stream=stream, quiet=quiet) as bar:
            for _ in range(5):
                bar.update(loss=0.5)
        assert stream.getvalue() == ""
    with status("compiling", stream=io.StringIO()):
        pass
    terminal = Terminal()
    with Progress(2, stream=terminal) as bar:
        bar.update()
    assert "1/2" in terminal.getvalue()


def test_environment_forces_it(monkeypatch):
    monkeypatch.setenv("SYMBP_PROGRESS", "1")
    stream = io.StringIO()
    with Progress(1, stream=stream) as bar:
        bar.update()
    assert "1/1" in stream.getvalue()
    monkeypatch.setenv("SYMBP_PROGRESS", "0")
    terminal = Terminal()
    with Progress(1, stream=terminal) as bar:
        bar.update()
    assert terminal.getvalue() == ""


def test_rate_and_eta_by_hand():
    clock, stream = Clock(), Terminal()
    bar = Progress(10, "epoch", "epoch", stream=stream, clock=clock, min_interval=0)
    clock.t += 4.0
    bar.update(2, samples=2 * 1500, loss=np.float32(0.25), acc=0.5)
    # 2 epochs in 4 s: 8 left take 16 s; 3000 samples in 4 s = 750/s
    assert (
        bar.line()
        == "epoch 2/10 [####................] loss 0.25 acc 0.5 | 750 samples/s | 0:16 left"
    )
    assert last_line(stream) == bar.line()
    clock.t += 36.0
    bar.update(8, samples=8 * 1500, loss=0.0001234)
    # done: 15000 samples in 40 s = 375/s; the elapsed time replaces the ETA
    assert bar.line() == (
        "epoch 10/10 [####################] loss 1.234e-04 acc 0.5 | 375 samples/s | 0:40"
    )
    bar.close()
    assert stream.getvalue().endswith("\n")


def test_units_per_second_and_slow_units():
    clock = Clock()
    bar = Progress(None, "compile", "fn", stream=Terminal(), clock=clock, min_interval=0)
    clock.t += 10.0
    bar.update(4)  # 0.4 fn/s reads better as 2.5 s/fn; no total, no ETA
    assert bar.line() == "compile 4 fn | 2.5 s/fn | 0:10"
    clock.t += 0.002
    bar.update(45_000)
    assert "4.5k fn/s" in bar.line()


def test_redraws_are_throttled_and_lines_blanked():
    clock, stream = Clock(), Terminal()
    bar = Progress(1000, stream=stream, clock=clock, min_interval=0.5)
    for _ in range(100):
        bar.update(metric="a long metric value")
    assert stream.getvalue().count("\r") == 1  # the first update only: no time has passed
    clock.t += 1
    bar.metrics.clear()
    bar.update()
    drawn = stream.getvalue().split("\r")
    assert len(drawn[-1]) == len(drawn[-2])  # the shorter line is padded over the longer one


def test_track_yields_everything():
    stream = Terminal()
    assert list(track(["a", "b", "c"], "file", stream=stream)) == ["a", "b", "c"]
    assert "file 3/3 [####################]" in stream.getvalue()


def test_status_reports_time_and_failure():
    clock, stream = Clock(), Terminal()
    with status("compiling", stream=stream, clock=clock):
        clock.t += 1.94
    assert stream.getvalue() == "compiling ... 1.9 s\n"
    stream = Terminal()
    with pytest.raises(RuntimeError), status("compiling", stream=stream, clock=clock):
        raise RuntimeError("boom")
    assert stream.getvalue() == "compiling ... failed\n"


@pytest.mark.parametrize(
    "seconds, text", [(0, "0:00"), (7.4, "0:07"), (59.6, "1:00"), (754, "12:34"), (3723, "1:02:03")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
