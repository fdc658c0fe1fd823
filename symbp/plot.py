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
    """
    _matplotlib()
    from matplotlib.figure import Figure

    runs = _runs(history)
    panels = _panels(runs)
    if not panels:
        raise ValueError("plot_history: the history holds no metrics")
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
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
    fontsize: float = 16,
    dpi: int = 150,
) -> Any:
    """Render LaTeX with matplotlib's mathtext (no TeX installation needed) and save it.

    ``latex`` is a string, or anything with a ``latex()`` method (``symbp.formulas(loss)``).
    Rows of an ``aligned`` block line up at their ``&``. Returns the ``Figure``; raises
    ``ValueError`` naming the row mathtext cannot parse.
    """
    _matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.mathtext import MathTextParser

    if hasattr(latex, "latex") and callable(latex.latex):
        latex = latex.latex()
    rows = mathtext_lines(str(latex))
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

    # Draw every part once to measure it, then size the figure to the rows and place them:
    # the left parts right-aligned and the right parts left-aligned at one column, the "&".
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = Figure(dpi=dpi)
    renderer = FigureCanvasAgg(fig).get_renderer()
    style: dict[str, Any] = {"va": "center", "fontsize": fontsize}
    texts = [
        (
            fig.text(0, 0, f"${left}$", ha="right", **style) if left else None,
            fig.text(0, 0, f"${right}$", ha="left", **style) if right else None,
        )
        for left, right in rows
    ]

    def size(t: Any) -> tuple[float, float]:
        if t is None:
            return 0.0, 0.0
        box = t.get_window_extent(renderer)
        return box.width, box.height

    px = fontsize * dpi / 72  # one em in pixels
    pad, gap = 0.6 * px, 0.25 * px
    left_w = max(size(lt)[0] for lt, _ in texts)
    right_w = max(size(rt)[0] for _, rt in texts)
    heights = [max(size(lt)[1], size(rt)[1], px) + 0.5 * px for lt, rt in texts]
    width = left_w + gap + right_w + 2 * pad
    height = sum(heights) + 2 * pad
    fig.set_size_inches(width / dpi, height / dpi)
    y = height - pad
    for (lt, rt), h in zip(texts, heights):
        y -= h / 2
        if lt is not None:
            lt.set_position(((pad + left_w) / width, y / height))
        if rt is not None:
            rt.set_position(((pad + left_w + gap) / width, y / height))
        y -= h / 2
    _save(fig, path, dpi=dpi, facecolor="white")
    return fig
