"""Progress displays for training epochs and compilation.

``progress_bar`` (what ``fit(verbose=True)`` uses) is a ``tqdm`` bar when tqdm is installed
(``pip install "symbp[progress]"``): ``tqdm.auto`` draws the notebook widget in Jupyter and a
text bar in a terminal, with the loss, the metrics and the throughput after it::

    epoch:  24%|##4       | 12/50 [00:01<00:03, 11.2epoch/s, loss=0.0831, 41.2k samples/s]

Without tqdm it is ``Progress``, symbp's own one-line bar with no dependency, redrawn in place::

    epoch 12/50 [#######.............] loss 0.0831 acc 0.973 | 41.2k samples/s | 0:03 left

Either is quiet (prints nothing at all) when the stream is neither a terminal nor a notebook's
output (so logs and pipes stay clean), or when ``quiet=True``. ``SYMBP_PROGRESS=1`` forces it
on, ``=0`` off. ``Stages`` shows a compile's stages on the same display, one per program
(what ``fit(verbose=True)`` shows before its first epoch when it compiles)::

    compiling training program: 100%|##########| 5/5 [00:03, stage=Numba compile]

``status`` shows one line for other work without steps to count.

>>> import io
>>> with Progress(3, "epoch", stream=io.StringIO(), quiet=False) as bar:
...     for epoch in range(3):
...         bar.update(loss=1.0 / (epoch + 1))
>>> bar.line().startswith("epoch 3/3 [####################] loss 0.3333")
True
"""

from __future__ import annotations

import contextlib
import numbers
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO, TypeVar

__all__ = ["Progress", "Stages", "format_duration", "progress_bar", "status", "track"]

T = TypeVar("T")


def _enabled(stream: TextIO, quiet: bool | None) -> bool:
    """Shown unless quiet; by default only on a terminal or in a notebook's output
    (SYMBP_PROGRESS=0/1 overrides)."""
    if quiet is not None:
        return not quiet
    env = os.environ.get("SYMBP_PROGRESS")
    if env in ("0", "1"):
        return env == "1"
    isatty = getattr(stream, "isatty", None)
    if isatty and isatty():
        return True
    # Jupyter's stdout is ipykernel's OutStream, not a terminal, but a person reads it
    return stream in (sys.stdout, sys.stderr) and _in_notebook()


def _in_notebook() -> bool:
    """Running in a Jupyter kernel (IPython's kernel app), the test tqdm.auto makes too."""
    if "ipykernel" not in sys.modules:  # never import IPython just to ask
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _tqdm() -> Any:
    """``tqdm.auto.tqdm``, or None when tqdm is not installed (then symbp's own bar)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def format_duration(seconds: float) -> str:
    """``0:07``, ``1:02:03``: minutes and seconds, hours when there are any."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _rate(value: float, unit: str) -> str:
    """``41.2k samples/s``; a slow rate reads better as time per unit (``2.5 s/epoch``)."""
    if value <= 0:
        return f"- {unit}/s"
    if value < 1:
        return f"{1 / value:.3g} s/{unit}"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g}{suffix} {unit}/s"
    return f"{value:.3g} {unit}/s"


def _metric(value: Any) -> str:
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):  # Python and NumPy floats alike
        v = float(value)
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(value)


class Progress:
    """A one-line progress bar: ``update()`` once per unit of work (an epoch, a batch).

    ``total`` may be None (no bar, no ETA). Metrics passed to ``update`` or ``set`` show after
    the bar (``loss 0.083``); ``samples=`` counts the samples a unit processed, so the
    throughput reads in samples per second rather than units per second. ``pace=False``
    leaves out the rate and the time left, which units of unequal length (the stages of a
    compile) would make up: the time so far instead.
    """

    width = 20  # characters in the bar

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        *,
        quiet: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.1,
        pace: bool = True,
    ) -> None:
        self.total, self.desc, self.unit, self.pace = total, desc, unit, pace
        self.stream: TextIO = stream if stream is not None else sys.stdout
        self.enabled = _enabled(self.stream, quiet)
        self.clock, self.min_interval = clock, min_interval
        self.n = 0
        self.samples = 0
        self.metrics: dict[str, Any] = {}
        self.start = clock()
        self._last_draw = -float("inf")
        self._drawn = 0  # characters on the line now, to blank out when it gets shorter
        self.closed = False

    # ------------------------------------------------------------ updating

    def update(self, n: int = 1, *, samples: int | None = None, **metrics: Any) -> None:
        """Advance by ``n`` units (of ``samples`` samples in all) and set the shown metrics."""
        self.n += n
        if samples is not None:
            self.samples += samples
        self.metrics.update(metrics)
        self._draw(force=self.total is not None and self.n >= self.total)

    def set(self, **metrics: Any) -> None:
        """Change the shown metrics without advancing, drawn at once (as tqdm's postfix is):
        a change worth seeing now, such as the stage that starts."""
        self.metrics.update(metrics)
        self._draw(force=True)

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.closed:
            return
        self.closed = True
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ rendering

    def elapsed(self) -> float:
        return self.clock() - self.start

    def rate(self) -> float:
        """Units (or samples, when counted) per second so far."""
        t = self.elapsed()
        done = self.samples if self.samples else self.n
        return done / t if t > 0 else 0.0

    def eta(self) -> float | None:
        """Seconds left at the average pace so far (None without a total or a start)."""
        if self.total is None or self.n == 0:
            return None
        return self.elapsed() / self.n * max(self.total - self.n, 0)

    def line(self) -> str:
        """The text of the display as it stands."""
        parts = []
        head = self.desc + " " if self.desc else ""
        if self.total:
            filled = min(self.width, self.width * self.n // self.total)
            bar = "#" * filled + "." * (self.width - filled)
            parts.append(f"{head}{self.n}/{self.total} [{bar}]")
        else:
            parts.append(f"{head}{self.n} {self.unit}")
        metrics = " ".join(f"{k} {_metric(v)}" for k, v in self.metrics.items())
        if metrics:
            parts[0] += " " + metrics
        if not self.pace:
            return " | ".join([*parts, format_duration(self.elapsed())])
        parts.append(_rate(self.rate(), "samples" if self.samples else self.unit))
        eta = self.eta()
        done = self.total is not None and self.n >= self.total
        if done or eta is None:
            parts.append(format_duration(self.elapsed()))
        else:
            parts.append(f"{format_duration(eta)} left")
        return " | ".join(parts)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled or (self.closed and not force):
            return
        now = self.clock()
        if not force and now - self._last_draw < self.min_interval:
            return  # redraw at most every min_interval: printing is not free
        self._last_draw = now
        columns = shutil.get_terminal_size((100, 20)).columns
        text = self.line()[: max(columns - 1, 10)]
        self.stream.write("\r" + text + " " * max(self._drawn - len(text), 0))
        self.stream.flush()
        self._drawn = len(text)


class TqdmProgress:
    """``Progress``'s interface (``update``, ``set``, ``n``, ``close``) over a ``tqdm`` bar.

    The metrics and the throughput in samples per second follow tqdm's own rate (units per
    second): ``loss=0.0831, accuracy=0.973, 41.2k samples/s``. ``pace=False``: no rate and no
    time left, as ``Progress``'s.
    """

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        *,
        stream: TextIO,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.1,
        tqdm: Any = None,
        pace: bool = True,
    ) -> None:
        bar_class = tqdm if tqdm is not None else _tqdm()
        kwargs: dict[str, Any] = {"total": total, "desc": desc, "unit": unit, "file": stream}
        kwargs.update(mininterval=min_interval, dynamic_ncols=True, leave=True)
        if not pace:  # tqdm's default, less {remaining} and {rate_fmt}
            kwargs["bar_format"] = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
        try:
            self.bar = bar_class(**kwargs)
        except ImportError:
            # tqdm.auto's notebook widget needs ipywidgets ("IProgress not found"): the text
            # bar works in a notebook too (it redraws with a carriage return)
            from tqdm.std import tqdm as text_bar

            self.bar = text_bar(**kwargs)
        self.clock = clock
        self.start = clock()
        self.samples = 0
        self.metrics: dict[str, Any] = {}
        self.closed = False

    @property
    def n(self) -> int:
        return int(self.bar.n)

    @n.setter
    def n(self, value: int) -> None:
        """Start from ``value`` done (a resumed run): tqdm's rate counts from there."""
        self.bar.n = self.bar.initial = self.bar.last_print_n = value
        self.bar.refresh()

    def postfix(self) -> str:
        """What follows tqdm's own fields: ``loss=0.0831, 41.2k samples/s``."""
        parts = [f"{k}={_metric(v)}" for k, v in self.metrics.items()]
        if self.samples:
            t = self.clock() - self.start
            parts.append(_rate(self.samples / t if t > 0 else 0.0, "samples"))
        return ", ".join(parts)

    def update(self, n: int = 1, *, samples: int | None = None, **metrics: Any) -> None:
        if samples is not None:
            self.samples += samples
        self.metrics.update(metrics)
        self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.update(n)

    def set(self, **metrics: Any) -> None:
        self.metrics.update(metrics)
        self.bar.set_postfix_str(self.postfix())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.bar.close()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress_bar(
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    *,
    quiet: bool | None = None,
    stream: TextIO | None = None,
    pace: bool = True,
) -> Progress | TqdmProgress:
    """A progress display: tqdm's (``tqdm.auto``) when installed and shown, else ``Progress``.

    Shown as ``Progress`` decides (``quiet``, ``SYMBP_PROGRESS``, a terminal or a notebook):
    a quiet display is always the silent ``Progress``, so a pipe never sees tqdm.
    """
    out: TextIO = stream if stream is not None else sys.stdout
    tqdm = _tqdm() if _enabled(out, quiet) else None
    if tqdm is None:
        return Progress(total, desc, unit, quiet=quiet, stream=out, pace=pace)
    return TqdmProgress(total, desc, unit, stream=out, tqdm=tqdm, pace=pace)


class Stages:
    """The stages of compiling programs, each program on a display of its own from
    ``progress_bar`` (tqdm's when installed; shown or quiet as it decides, from ``quiet``
    and ``stream``). Nothing is drawn before a program's stages begin, so work that compiles
    nothing shows nothing.

    ``begin(what, names)`` opens the display of program ``what`` for the stages ``names``
    (unless it is open already), ``with stage(name):`` shows a stage while it runs and counts
    it when done, ``skip(n, why)`` counts stages that had nothing to do (found in the cache).
    ``seconds`` sums the time spent in stages.

    >>> import io
    >>> stream = io.StringIO()
    >>> with Stages(quiet=False, stream=stream) as stages:
    ...     stages.begin("training program", ("trace", "derive", "Numba compile"))
    ...     with stages.stage("trace"):
    ...         pass
    ...     stages.skip(1, "found in the cache")
    ...     with stages.stage("Numba compile"):
    ...         pass
    >>> "compiling training program" in stream.getvalue() and "3/3" in stream.getvalue()
    True
    """

    def __init__(self, *, quiet: bool | None = None, stream: TextIO | None = None) -> None:
        self.quiet, self.stream = quiet, stream
        self.what: str | None = None  # the program whose display is open
        self.bar: Progress | TqdmProgress | None = None
        self.seconds = 0.0

    def begin(self, what: str, names: Sequence[str]) -> None:
        if self.what == what:
            return
        self.close()
        self.what = what
        # no rate, no time left: the stages differ in length (Numba's is most of the time)
        self.bar = progress_bar(
            len(names),
            f"compiling {what}",
            "stage",
            quiet=self.quiet,
            stream=self.stream,
            pace=False,
        )

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.bar is not None:
            self.bar.set(stage=name)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
        if self.bar is not None:
            self.bar.update()

    def skip(self, n: int, why: str) -> None:
        if self.bar is not None:
            self.bar.update(n, stage=why)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.what = None

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def track(
    iterable: Iterable[T],
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    *,
    quiet: bool | None = None,
    stream: TextIO | None = None,
) -> Iterator[T]:
    """Iterate with a progress display, like ``tqdm``: ``for epoch in track(range(10)): ...``."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit, quiet=quiet, stream=stream) as bar:
        for item in iterable:
            yield item
            bar.update()


@contextlib.contextmanager
def status(
    message: str,
    *,
    quiet: bool | None = None,
    stream: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[None]:
    """Show ``message ...`` while a block runs, then how long it took (``compiling ... 1.9 s``).

    For work without steps to count, such as compiling a model.
    """
    out: TextIO = stream if stream is not None else sys.stdout
    shown = _enabled(out, quiet)
    if shown:
        out.write(f"{message} ...")
        out.flush()
    start = clock()
    try:
        yield
    except BaseException:
        if shown:
            out.write(" failed\n")
            out.flush()
        raise
    if shown:
        out.write(f" {clock() - start:.1f} s\n")
        out.flush()
