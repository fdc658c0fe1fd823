"""Pictures: training curves and formulas to PNG (or SVG, PDF), with matplotlib.

matplotlib is optional (``pip install "symbp[plot]"``); everything else in symbp works without
it, and these functions say how to get it when it is missing. They draw on a bare
``matplotlib.figure.Figure``, never through ``pyplot``: no window, no global state, safe on a
headless machine and inside a notebook alike::

    history = model.fit(X, y, epochs=20, validation_data=(Xv, yv))
    symbp.plot_history(history, "curves.png")           # loss and val_loss, accuracy ...
    symbp.plot_formula(symbp.formulas(loss), "grads.png")  # the derived δ equations
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["mathtext_lines", "plot_formula", "plot_history"]


def _matplotlib() -> Any:
    try:
        import matplotlib
        from matplotlib.figure import Figure  # noqa: F401 -- imported here to fail early
    except ImportError as e:
        raise ImportError(
            "plotting needs matplotlib: pip install 'symbp[plot]' (or pip install matplotlib)"
        ) from e
    return matplotlib


def _save(fig: Any, path: str | os.PathLike[str] | None, **kwargs: Any) -> None:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, **kwargs)


# ---------------------------------------------------------------- training curves

History = Mapping[str, Sequence[float]]

# Panels in this order when present; any other metric gets its own panel after them.
_FIRST = ("loss", "accuracy", "acc")


def _runs(history: History | Mapping[str, History]) -> dict[str, History]:
    """One history, or several by run name (``{"SGD": h1, "Adam": h2}``)."""
    if history and all(isinstance(v, Mapping) for v in history.values()):
        return dict(history)  # type: ignore[arg-type]
    return {"": history}  # type: ignore[dict-item]


def _panels(runs: Mapping[str, History]) -> list[str]:
    """Metric names without their ``val_`` prefix, training and validation share a panel."""
    names: list[str] = []
    for h in runs.values():
        for key in h:
            base = key.removeprefix("val_")
            if base not in names:
                names.append(base)
    first = [n for n in _FIRST if n in names]
    return first + [n for n in names if n not in first]


def plot_history(
    history: History | Mapping[str, History],
    path: str | os.PathLike[str] | None = None,
    *,
    ax: Any = None,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
    logy: bool | None = None,
    dpi: int = 120,
) -> Any:
    """Training curves: one panel per metric, validation dashed beside training.

    ``history`` is what ``fit`` returns (``{"loss": [...], "val_loss": [...], ...}``, one
    value per epoch), or several of them by run name to compare runs (``{"SGD": h1,
    "Adam": h2}``, one colour per run). Loss panels use a log scale when the loss spans more
    than two decades (``logy`` forces it on or off). Saves to ``path`` when given (the suffix
    picks the format: ``.png``, ``.svg``, ``.pdf``) and returns the matplotlib ``Figure``.

    ``metrics`` picks the panels (``["loss"]``: loss and val_loss), in that order. ``ax``
    draws into your own axes instead of a new figure: one ``Axes`` for one panel, or a
    sequence of them, one per panel; the figure returned is theirs::

        fig, (left, right) = plt.subplots(1, 2)
        symbp.plot_history(history, ax=left, metrics=["loss"])
        right.imshow(...)
    """
    _matplotlib()
    from matplotlib.figure import Figure

    runs = _runs(history)
    panels = _panels(runs)
    if not panels:
        raise ValueError("plot_history: the history holds no metrics")
    if metrics is not None:
        missing = [m for m in metrics if m not in panels]
        if missing:
            raise ValueError(
                f"plot_history: metrics {missing} are not in the history (it has {panels})"
            )
        panels = list(metrics)
    if ax is not None:
        axes = _user_axes(ax, panels)
        fig = axes[0].figure
    else:
        cols = min(len(panels), 3)
        rows = math.ceil(len(panels) / cols)
        fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
        axes = list(fig.subplots(rows, cols, squeeze=False).ravel())
    colors = [f"C{i}" for i in range(10)]
    for ax, panel in zip(axes, panels):
        values: list[float] = []
        for i, (run, h) in enumerate(runs.items()):
            for key, style, what in ((panel, "-", "train"), (f"val_{panel}", "--", "val")):
                if key not in h:
                    continue
                ys = [float(v) for v in h[key]]
                values += [v for v in ys if math.isfinite(v)]
                label = " ".join(s for s in (run, what if f"val_{panel}" in h else "") if s)
                ax.plot(
                    range(1, len(ys) + 1),
                    ys,
                    style,
                    color=colors[i % len(colors)],
                    marker="o" if len(ys) <= 20 else None,
                    markersize=3,
                    label=label or None,
                )
        spread = min(values) > 0 and max(values) / min(values) > 100 if values else False
        if logy if logy is not None else ("loss" in panel and spread):
            ax.set_yscale("log")
        ax.set_title(panel)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.get_legend_handles_labels()[1]:
            ax.legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    _save(fig, path, dpi=dpi)
    return fig


def _user_axes(ax: Any, panels: Sequence[str]) -> list[Any]:
    """The caller's axes, one per panel (a single Axes for a single panel)."""
    axes = list(ax) if isinstance(ax, Sequence) or hasattr(ax, "ravel") else [ax]
    if hasattr(ax, "ravel"):  # a NumPy array of axes, as plt.subplots returns
        axes = list(ax.ravel())
    if len(axes) != len(panels):
        raise ValueError(
            f"plot_history: {len(panels)} panels {list(panels)} need {len(panels)} axes, "
            f"ax= gave {len(axes)} (pick panels with metrics=[...])"
        )
    return axes


# ---------------------------------------------------------------- formulas

_ENVIRONMENT = re.compile(r"\\(begin|end)\{(aligned|align\*?|equation\*?|gathered|split)\}")
# LaTeX that mathtext lacks, and its mathtext spelling
_SPELLING = [
    (re.compile(r"\\textbf\{"), r"\\mathbf{"),
    (re.compile(r"\\text\{"), r"\\mathrm{"),
    (re.compile(r"\\operatorname\{"), r"\\mathrm{"),
    (re.compile(r"\\(,|;|:|!|quad|qquad)(?![a-zA-Z])"), " "),
]


def mathtext_lines(latex: str) -> list[tuple[str, str]]:
    """A LaTeX display as rows of ``(left, right)`` mathtext, split at the alignment ``&``.

    ``\\begin{aligned} ... \\end{aligned}`` and ``$``/``$$`` delimiters are dropped, ``\\\\``
    separates rows, and the few commands mathtext lacks are respelled (``\\textbf`` ->
    ``\\mathbf``). A row without ``&`` has everything on the right.
    """
    text = _ENVIRONMENT.sub("", latex.strip().strip("$"))
    for pattern, replacement in _SPELLING:
        text = pattern.sub(replacement, text)
    rows = []
    for line in re.split(r"\\\\", text):
        parts = re.split(r"(?<!\\)&", line, maxsplit=1)
        left, right = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        right = re.sub(r"(?<!\\)&", " ", right)  # further columns: spaced, not aligned
        if left.strip() or right.strip():
            rows.append((left.strip(), right.strip()))
    return rows


def plot_formula(
    latex: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    ax: Any = None,
    fontsize: float = 16,
    dpi: int = 150,
) -> Any:
    """Render LaTeX with matplotlib's mathtext (no TeX installation needed) and save it.

    ``latex`` is a string, or anything with a ``latex()`` method (``symbp.formulas(loss)``).
    Rows of an ``aligned`` block line up at their ``&``. Returns the ``Figure``; raises
    ``ValueError`` naming the row mathtext cannot parse.

    Without ``ax`` the figure is sized to the rows. With ``ax`` (your ``Axes``) the rows are
    drawn into it, its frame and ticks turned off, at ``fontsize`` or smaller where they would
    not fit; the figure returned (and saved to ``path``, when given) is the axes'.
    """
    _matplotlib()
    from matplotlib.figure import Figure

    if hasattr(latex, "latex") and callable(latex.latex):
        latex = latex.latex()
    rows = _parsed_rows(str(latex))
    px = fontsize * dpi / 72  # one em in pixels
    if ax is not None:
        fig = ax.figure
        dpi = fig.dpi  # measure at the user's resolution
        px = fontsize * dpi / 72
        left_w, right_w, heights = _measure(rows, fontsize, dpi)
        pad, gap = 0.3 * px, 0.25 * px
        need_w = left_w + gap + right_w + 2 * pad
        need_h = sum(heights) + 2 * pad
        box = ax.bbox  # the axes in display pixels, known without drawing
        scale = min(1.0, box.width / need_w, box.height / need_h)
        if scale < 1.0:  # shrink to fit: measure again, text does not scale exactly linearly
            fontsize *= scale
            left_w, right_w, heights = _measure(rows, fontsize, dpi)
            px, pad, gap = px * scale, pad * scale, gap * scale
        ax.set_axis_off()
        _place(
            rows, fontsize, left_w, gap, heights, pad, box.width, box.height,
            lambda x, y, text, ha, **kw: ax.text(x, y, text, ha=ha, transform=ax.transAxes, **kw),
            top_pad=pad,
        )  # fmt: skip
        _save(fig, path, dpi=dpi, facecolor="white")
        return fig

    left_w, right_w, heights = _measure(rows, fontsize, dpi)
    pad, gap = 0.6 * px, 0.25 * px
    width = left_w + gap + right_w + 2 * pad
    height = sum(heights) + 2 * pad
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
    _place(
        rows, fontsize, left_w, gap, heights, pad, width, height,
        lambda x, y, text, ha, **kw: fig.text(x, y, text, ha=ha, **kw),
        top_pad=pad,
    )  # fmt: skip
    _save(fig, path, dpi=dpi, facecolor="white")
    return fig


def _parsed_rows(latex: str) -> list[tuple[str, str]]:
    """The rows of ``latex``, each part checked by mathtext first (an error names the row)."""
    from matplotlib.mathtext import MathTextParser

    rows = mathtext_lines(latex)
    if not rows:
        raise ValueError("plot_formula: nothing to render")
    parser = MathTextParser("path")
    for i, (left, right) in enumerate(rows):
        for part in (left, right):
            if not part:
                continue
            try:
                parser.parse(f"${part}$", dpi=72)
            except ValueError as e:
                raise ValueError(
                    f"plot_formula: matplotlib's mathtext cannot render row {i + 1} "
                    f"{part!r}: {str(e).strip().splitlines()[-1]}"
                ) from e
    return rows


def _measure(
    rows: Sequence[tuple[str, str]], fontsize: float, dpi: float
) -> tuple[float, float, list[float]]:
    """Pixel widths of the widest left and right parts, and each row's height.

    Drawn once on a scratch Agg figure: a user's figure keeps its own canvas untouched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scratch = Figure(dpi=dpi)
    renderer = FigureCanvasAgg(scratch).get_renderer()

    def size(part: str) -> tuple[float, float]:
        if not part:
            return 0.0, 0.0
        box = scratch.text(0, 0, f"${part}$", fontsize=fontsize).get_window_extent(renderer)
        return box.width, box.height

    px = fontsize * dpi / 72
    sizes = [(size(left), size(right)) for left, right in rows]
    left_w = max(lt[0] for lt, _ in sizes)
    right_w = max(rt[0] for _, rt in sizes)
    heights = [max(lt[1], rt[1], px) + 0.5 * px for lt, rt in sizes]
    return left_w, right_w, heights


def _place(
    rows: Sequence[tuple[str, str]],
    fontsize: float,
    left_w: float,
    gap: float,
    heights: Sequence[float],
    pad: float,
    width: float,
    height: float,
    text: Any,
    top_pad: float,
) -> None:
    """Put the rows on a ``width`` x ``height`` pixel area (positions as fractions of it):
    the left parts right-aligned and the right parts left-aligned at one column, the "&"."""
    y = height - top_pad
    for (left, right), h in zip(rows, heights):
        y -= h / 2
        if left:
            text((pad + left_w) / width, y / height, f"${left}$", "right",
                 va="center", fontsize=fontsize)  # fmt: skip
        if right:
            text((pad + left_w + gap) / width, y / height, f"${right}$", "left",
                 va="center", fontsize=fontsize)  # fmt: skip
        y -= h / 2
