"""The progress display: quiet off a terminal, and its numbers (rate, ETA) against arithmetic
done by hand on a fake clock."""

import io
import os
import subprocess
import sys

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


# ---------------------------------------------------------------- tqdm, where installed


def test_tqdm_bar_in_a_terminal_like_stream():
    pytest.importorskip("tqdm")
    from symbp.progress import TqdmProgress, progress_bar

    clock, stream = Clock(), Terminal()
    bar = progress_bar(4, "epoch", "epoch", stream=stream)
    assert isinstance(bar, TqdmProgress)
    bar.clock, bar.start = clock, clock()  # throughput on the fake clock
    clock.t += 2.0
    bar.update(samples=1500, loss=np.float32(0.25), accuracy=0.5)
    assert bar.postfix() == "loss=0.25, accuracy=0.5, 750 samples/s"  # 1500 in 2 s
    for _ in range(3):
        bar.update(samples=1500, loss=0.125)
    bar.close()
    text = stream.getvalue()
    final = text.rstrip("\n").split("\r")[-1]
    assert final.startswith("epoch: 100%") and "4/4" in final
    assert "loss=0.125, accuracy=0.5" in final and "samples/s" in final
    assert text.endswith("\n")


def test_tqdm_in_a_notebook_output(monkeypatch):
    """A notebook's stdout is no terminal: shown all the same, as the widget (tqdm.auto) or,
    without ipywidgets, as tqdm's text bar."""
    pytest.importorskip("tqdm")
    import sys

    import symbp.progress as progress

    monkeypatch.delenv("SYMBP_PROGRESS", raising=False)
    cell = io.StringIO()  # ipykernel's OutStream: isatty() False
    monkeypatch.setattr(sys, "stdout", cell)
    assert isinstance(progress.progress_bar(2), progress.Progress)  # not a notebook: quiet
    assert cell.getvalue() == ""
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)

    def widget(**kwargs):  # tqdm.notebook without ipywidgets
        raise ImportError("IProgress not found. Please update jupyter and ipywidgets.")

    monkeypatch.setattr(progress, "_tqdm", lambda: widget)
    with progress.progress_bar(2, "epoch", "epoch") as bar:
        assert isinstance(bar, progress.TqdmProgress)
        bar.update(loss=1.0)
        bar.update(loss=0.5)
    assert "epoch: 100%" in cell.getvalue() and "loss=0.5" in cell.getvalue()


def test_silent_in_a_pipe_and_when_quiet(monkeypatch):

    from symbp.progress import Progress, progress_bar

    monkeypatch.delenv("SYMBP_PROGRESS", raising=False)
    for stream, quiet in ((io.StringIO(), None), (Terminal(), True)):
        bar = progress_bar(3, "epoch", stream=stream, quiet=quiet)
        assert isinstance(bar, Progress) and not bar.enabled  # never a tqdm bar
        with bar:
            bar.update(loss=1.0)
        assert stream.getvalue() == ""
    _assert_silent_in_a_pipe(
        "from symbp.progress import progress_bar\n"
        "with progress_bar(3, 'epoch') as bar:\n"
        "    for _ in range(3): bar.update(loss=1.0)\n"
    )


def _assert_silent_in_a_pipe(code: str) -> None:
    """``code`` run in a subprocess whose output is a pipe (SYMBP_PROGRESS unset) prints
    nothing."""
    env = {k: v for k, v in os.environ.items() if k != "SYMBP_PROGRESS"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert done.stdout == "" and done.stderr == ""


def test_without_tqdm_it_is_symbps_own_bar(monkeypatch):
    import symbp.progress as progress

    monkeypatch.setattr(progress, "_tqdm", lambda: None)
    stream = Terminal()
    with progress.progress_bar(2, "epoch", stream=stream) as bar:
        assert type(bar) is progress.Progress
        bar.update(loss=0.5)
        bar.update(loss=0.25)
    assert "epoch 2/2 [####################] loss 0.25" in stream.getvalue()


# ---------------------------------------------------------------- a compile's stages


def _compile(stages):
    """What CompiledModel does for one program: its plan, a stage, a cache hit, Numba."""
    stages.begin("training program", ("trace", "derive and simplify", "generate code", "Numba"))
    with stages.stage("trace"):
        pass
    stages.skip(2, "found in the cache")
    with stages.stage("Numba"):
        pass


def test_compile_stages_on_tqdm_in_a_notebook_output(monkeypatch):
    """The stages on the display the fit bar uses, decided the same way: in a notebook's output
    (no terminal) tqdm's bar, one per program, with the stage running and no rate or ETA."""
    pytest.importorskip("tqdm")
    import sys

    import symbp.progress as progress

    monkeypatch.delenv("SYMBP_PROGRESS", raising=False)
    cell = io.StringIO()  # ipykernel's OutStream: isatty() False
    monkeypatch.setattr(sys, "stdout", cell)
    with progress.Stages() as stages:  # not a notebook: quiet
        _compile(stages)
    assert cell.getvalue() == ""
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)

    def widget(**kwargs):  # tqdm.notebook without ipywidgets
        raise ImportError("IProgress not found. Please update jupyter and ipywidgets.")

    monkeypatch.setattr(progress, "_tqdm", lambda: widget)
    with progress.Stages() as stages:
        assert cell.getvalue() == ""  # nothing before a program begins
        _compile(stages)
        assert isinstance(stages.bar, progress.TqdmProgress)
        stages.begin("training program", ("Numba",))  # the same program: the same bar
        stages.begin("inference program", ("trace",))  # another: the first one ends
        with stages.stage("trace"):
            pass
    lines = [line.split("\r")[-1] for line in cell.getvalue().split("\n")]
    assert lines[0].startswith("compiling training program: 100%") and "4/4" in lines[0]
    assert lines[0].endswith(", stage=Numba]") and "stage/s" not in lines[0]
    assert lines[1].startswith("compiling inference program: 100%") and "1/1" in lines[1]
    assert lines[2:] == [""] and stages.bar is None  # each bar ended its line


def test_compile_stages_without_tqdm_and_their_time(monkeypatch):
    import symbp.progress as progress

    monkeypatch.setattr(progress, "_tqdm", lambda: None)
    stream = Terminal()
    with progress.Stages(stream=stream) as stages:
        _compile(stages)
    final = last_line(stream)
    assert final.startswith("compiling training program 4/4 [####################] stage Numba")
    assert final.endswith("| 0:00") and "stage/s" not in final  # the time so far, no rate
    assert stages.seconds >= 0.0


def test_compile_stages_silent_in_a_pipe_and_when_quiet(monkeypatch):

    from symbp.progress import Stages

    monkeypatch.delenv("SYMBP_PROGRESS", raising=False)
    for stream, quiet in ((io.StringIO(), None), (Terminal(), True)):
        with Stages(quiet=quiet, stream=stream) as stages:
            _compile(stages)
        assert stream.getvalue() == ""
    _assert_silent_in_a_pipe(
        "import sys\n"
        "from symbp.progress import Stages\n"
        "with Stages() as stages:\n"
        "    stages.begin('training program', ('trace',))\n"
        "    with stages.stage('trace'): pass\n"
    )
