"""``repr`` of a tensor as PyTorch prints it: ``tensor([0.1000, 2.0000], requires_grad=True)``.

PyTorch's layout rules (its default print options: 4 decimals, 80 columns, 1000 elements
before summarising with 3 at each edge), on the NumPy value:

- floats: all integers print ``1.``; otherwise fixed ``0.1000``; scientific ``1.0000e-05``
  when the nonzero magnitudes span more than 1000x, exceed 1e8, or (non-integers) go under
  1e-4. Every element is padded to one width.
- suffixes: ``dtype=`` unless it is the default float, int64 or bool; then
  ``grad_fn=<AddBackward0>``, or ``requires_grad=True`` for a leaf.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PRECISION = 4
LINEWIDTH = 80
THRESHOLD = 1000
EDGEITEMS = 3


class _Formatter:
    """One width and mode for every element (PyTorch's ``_Formatter``)."""

    def __init__(self, values: np.ndarray):
        self.floating = values.dtype.kind == "f"
        self.int_mode = True
        self.sci_mode = False
        self.max_width = 1
        flat = values.reshape(-1)
        if not self.floating:
            for v in flat:
                self.max_width = max(self.max_width, len(self._plain(v)))
            return
        finite = flat[np.isfinite(flat) & (flat != 0)]
        if finite.size == 0:
            for v in flat:  # nan, inf, zeros: their own widths
                self.max_width = max(self.max_width, len(self.format(v)))
            return
        mags = np.abs(finite.astype(np.float64))
        lo, hi = float(mags.min()), float(mags.max())
        self.int_mode = bool(np.all(finite == np.ceil(finite)))
        if self.int_mode:
            if hi / lo > 1000.0 or hi > 1.0e8:
                self.sci_mode = True
                strs = [f"{float(v):.{PRECISION}e}" for v in finite]
            else:
                strs = [f"{float(v):.0f}." for v in finite]
        else:
            if hi / lo > 1000.0 or hi > 1.0e8 or lo < 1.0e-4:
                self.sci_mode = True
                strs = [f"{float(v):.{PRECISION}e}" for v in finite]
            else:
                strs = [f"{float(v):.{PRECISION}f}" for v in finite]
        self.max_width = max(len(s) for s in strs)
        for v in flat[~np.isfinite(flat)]:
            self.max_width = max(self.max_width, len(self._special(v)))

    @staticmethod
    def _special(v: Any) -> str:
        return "nan" if np.isnan(v) else ("inf" if v > 0 else "-inf")

    @staticmethod
    def _plain(v: Any) -> str:
        return str(bool(v)) if isinstance(v, (bool, np.bool_)) else str(v)

    def format(self, v: Any) -> str:
        if not self.floating:
            text = self._plain(v)
        elif not np.isfinite(v):
            text = self._special(v)
        elif self.sci_mode:
            text = f"{float(v):{self.max_width}.{PRECISION}e}"
        elif self.int_mode:
            text = f"{float(v):.0f}."
        else:
            text = f"{float(v):.{PRECISION}f}"
        return " " * (self.max_width - len(text)) + text


def _summarized(values: np.ndarray) -> np.ndarray:
    """The elements a summarised print shows (for the formatter's width)."""
    if values.ndim == 0:
        return values.reshape(1)
    if values.shape[0] > 2 * EDGEITEMS:
        parts = [values[:EDGEITEMS], values[-EDGEITEMS:]]
    else:
        parts = [values]
    return np.concatenate([_summarized(p[i]).reshape(-1) for p in parts for i in range(len(p))])


def _body(values: np.ndarray, indent: int, fmt: _Formatter, summarize: bool) -> str:
    if values.ndim == 0:
        return fmt.format(values.item())
    n = values.shape[0]
    cut = summarize and n > 2 * EDGEITEMS
    if values.ndim == 1:
        width = fmt.max_width + 2
        per_line = max(1, math.floor((LINEWIDTH - indent) / width))
        vals = values.tolist() if values.dtype.kind != "f" else list(values)
        if cut:
            data = [fmt.format(v) for v in vals[:EDGEITEMS]] + [" ..."]
            data += [fmt.format(v) for v in vals[-EDGEITEMS:]]
        else:
            data = [fmt.format(v) for v in vals]
        lines = [", ".join(data[i : i + per_line]) for i in range(0, len(data), per_line)]
        return "[" + ("," + "\n" + " " * (indent + 1)).join(lines) + "]"
    rows = range(n) if not cut else [*range(EDGEITEMS), -1, *range(n - EDGEITEMS, n)]
    parts = ["..." if i == -1 else _body(values[i], indent + 1, fmt, summarize) for i in rows]
    sep = "," + "\n" * (values.ndim - 1) + " " * (indent + 1)
    return "[" + sep.join(parts) + "]"


def tensor_repr(values: np.ndarray, suffixes: list[str], default_dtype: np.dtype) -> str:
    """``tensor(...)`` for ``values`` with PyTorch's layout, then ``suffixes``."""
    prefix = "tensor("
    indent = len(prefix)
    dtype = values.dtype
    shown_dtype = dtype not in (default_dtype, np.dtype(np.int64), np.dtype(np.bool_))
    extra: list[str] = []
    if values.size == 0:
        body = "[]"
        if values.shape != (0,):
            extra.append(f"size={tuple(values.shape)}")
    else:
        summarize = values.size > THRESHOLD
        fmt = _Formatter(_summarized(values) if summarize else values)
        body = _body(values, indent, fmt, summarize)
    if shown_dtype:
        from symbp import dtypes

        extra.append(f"dtype={dtypes.of(dtype)!r}")
    text = prefix + body
    last = len(text) - text.rfind("\n") + 1 if "\n" in text else len(text) + 1
    for s in [*extra, *suffixes]:
        if last + len(s) + 2 > LINEWIDTH:
            text += ",\n" + " " * indent + s
            last = indent + len(s)
        else:
            text += ", " + s
            last += len(s) + 2
    return text + ")"


__all__ = ["tensor_repr"]
