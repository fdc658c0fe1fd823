"""The joining and shaping family's tensor ops: cat, flip, roll, crop, pad and its gradient."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ops import OPS
from symbp.formulas.index import INDEX_FORMS, INDEX_TRIGGERS, INDEX_VIEWS, Wrapped, _always
from symbp.formulas.layout import _ATOM
from symbp.formulas.text import FUNCTIONS, TextPrinter
from symbp.formulas.vocabulary import TENSOR_NUMPY, TENSOR_SHAPES, TensorOp, _axes, _Stub

# -- issue 12 . shaping (rows of this family go below this line)
# Joining and shaping: a cat prints as a block [a; b] (rows) or [a, b] (columns), a crop as
# a slice a[:, 2:5], a flip, roll or pad by name; in index notation a flip reads a[n−1−i]
# and a crop a[i+2]. Static arguments are SymPy tuples; a pad's mode is its index in
# ``_pad_modes()``.


class Cat(TensorOp):
    """Join along an axis; args (a1, ..., ak, axis): every argument but the last a tensor."""

    @property
    def tensors(self) -> int:  # type: ignore[override]
        return len(self.args) - 1


class Flip(TensorOp):
    """Reverse along axes; args (a, axes)."""

    nargs = 2


class Roll(TensorOp):
    """Cyclic shift; args (a, ((axis, shift), ...))."""

    nargs = 2


class Crop(TensorOp):
    """The box a[start:stop, ...]; args (a, ((start, stop), ...))."""

    nargs = 2


class Pad(TensorOp):
    """A border; args (a, ((before, after), ...), mode index, value)."""

    nargs = 4


class PadGrad(TensorOp):
    """A copying pad's adjoint: the border's entries added back; args (a, widths, mode)."""

    nargs = 3


def _pad_modes() -> tuple[str, ...]:
    from symbp.compiler.ops import (
        PAD_MODES,  # imported here: this family's lines stay in its section
    )

    return PAD_MODES


def _pairs(t: Any) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in t)


def _mode(m: Any) -> str:
    return _pad_modes()[int(m)]


def _np_pad(a: Any, widths: Any, mode: Any, value: Any) -> np.ndarray:
    node: Any = _Stub((_pairs(widths), _mode(mode), float(value)), (), np.dtype(np.float64))
    return OPS["pad"].numpy(node, [np.asarray(a)], {})


def _np_pad_grad(a: Any, widths: Any, mode: Any) -> np.ndarray:
    node: Any = _Stub((_pairs(widths), _mode(mode)), (), np.dtype(np.float64))
    return OPS["pad_grad"].numpy(node, [np.asarray(a)], {})


def _cat_shape(e: Any, s: Callable) -> tuple:
    *parts, axis = e.args
    shapes = [s(p) for p in parts]
    k = int(axis)
    return (*shapes[0][:k], sum(sh[k] for sh in shapes), *shapes[0][k + 1 :])


TENSOR_NUMPY.update(
    {
        "Cat": lambda *args: np.concatenate([np.asarray(a) for a in args[:-1]], int(args[-1])),
        "Flip": lambda a, axes: np.flip(a, _axes(axes)),
        "Roll": lambda a, pairs: np.roll(a, [int(s) for _, s in pairs], [int(x) for x, _ in pairs]),
        "Crop": lambda a, ranges: np.asarray(a)[tuple(slice(int(x), int(y)) for x, y in ranges)],
        "Pad": _np_pad,
        "PadGrad": _np_pad_grad,
    }
)
TENSOR_SHAPES.update(
    {
        "Cat": _cat_shape,
        "Flip": lambda e, s: s(e.args[0]),
        "Roll": lambda e, s: s(e.args[0]),
        "Crop": lambda e, s: tuple(b - a for a, b in e.args[1]),  # b may be the batch B
        "Pad": lambda e, s: tuple(d + lo + hi for d, (lo, hi) in zip(s(e.args[0]), e.args[1])),
        "PadGrad": lambda e, s: tuple(d - lo - hi for d, (lo, hi) in zip(s(e.args[0]), e.args[1])),
    }
)
FUNCTIONS.update(
    {
        "Cat": ("cat", r"\operatorname{cat}"),
        "Flip": ("flip", r"\operatorname{flip}"),
        "Roll": ("roll", r"\operatorname{roll}"),
        "Pad": ("pad", r"\operatorname{pad}"),
        "PadGrad": ("pad_grad", r"\operatorname{pad\_grad}"),
    }
)


def _print_cat(self: TextPrinter, e: Cat) -> str:
    """[a; b] stacks rows (dim 0), [a, b] puts blocks side by side (the last dim)."""
    *parts, axis = e.args
    ndim = len(self.shape_of(parts[0]))
    shown = [self._print(p) for p in parts]
    if int(axis) == 0 and ndim <= 2:
        body = "; ".join(shown) if self._which == 0 else r" \\ ".join(shown)
    elif int(axis) == ndim - 1:  # blocks side by side: [a, b] (mathtext has no bmatrix)
        return f"[{', '.join(shown)}]" if self._which == 0 else rf"\left[{', '.join(shown)}\right]"
    else:
        return self.call(f"cat_{int(axis)}", ", ".join(shown))
    if self._which == 0:
        return f"[{body}]"
    return r"\begin{bmatrix}" + body + r"\end{bmatrix}"


def _print_crop(self: TextPrinter, e: Crop) -> str:
    a, ranges = e.args
    shape = self.shape_of(a)
    cuts = [
        ":" if (int(x), y) == (0, d) else f"{int(x)}:{int(y)}" for (x, y), d in zip(ranges, shape)
    ]
    return self.group(a, _ATOM) + "[" + ", ".join(cuts) + "]"


def _index_flip(self: TextPrinter, e: Flip, idx: tuple) -> str | None:
    a, axes = e.args
    shape = self.shape_of(a)
    flipped = [d - 1 - i if k in _axes(axes) else i for k, (d, i) in enumerate(zip(shape, idx))]
    return self.at(a, flipped, 0)


def _index_crop(self: TextPrinter, e: Crop, idx: tuple) -> str | None:
    a, ranges = e.args
    return self.at(a, [i + int(x) for (x, _), i in zip(ranges, idx)], 0)


# The printers' rules for this family's notation, attached here so that they stay together.
for _name, _rule in {
    "_print_Cat": _print_cat,
    "_print_Crop": _print_crop,
    "_index_Flip": _index_flip,
    "_index_Crop": _index_crop,
}.items():
    setattr(TextPrinter, _name, _rule)


# In index notation a roll reads its argument at wrapped indices, x[i,(j−2) mod 5], and a
# constant pad as cases: x[i,j−2] where 2 ≤ j < 2 + n, the value elsewhere. Both are what a
# textbook writes, so an equation holding one prints entry by entry (``INDEX_TRIGGERS``);
# a reflect or replicate pad keeps its name (pad(x)[i,j]).
def _index_roll(self: TextPrinter, e: Roll, idx: tuple) -> str:
    a, pairs = e.args
    shape = self.shape_of(a)
    src = list(idx)
    for axis, shift in pairs:
        src[int(axis)] = Wrapped(src[int(axis)] - shift, shape[int(axis)])
    return self.at(a, src, 0)


def _constant_pad(e: Any, shapes: Any) -> bool:
    return _mode(e.args[2]) == "constant"


def _index_pad(self: TextPrinter, e: Pad, idx: tuple) -> str | None:
    a, widths, mode, value = e.args
    if _mode(mode) != "constant":
        return None
    src, inside = [], []
    for i, (lo, hi), n in zip(idx, _pairs(widths), self.shape_of(a)):
        src.append(i - lo)
        at, end = self.index(i), self.index(sympy.sympify(lo + n))
        if lo and hi:
            inside.append(f"{lo} {self.le} {at} < {end}")
        elif lo:
            inside.append(f"{at} {self.ge} {lo}")
        elif hi:
            inside.append(f"{at} < {end}")
    shown = self.at(a, src, 0)
    if not inside:
        return shown
    return self.cases([(shown, ", ".join(inside)), (self._print(value), None)])


TextPrinter._index_Roll = _index_roll
TextPrinter._index_Pad = _index_pad
INDEX_TRIGGERS.update({Roll: _always, Pad: _constant_pad})
INDEX_FORMS.update({Roll: _always, Pad: _constant_pad, Flip: _always, Crop: _always})
INDEX_VIEWS.update({Roll, Flip, Crop})
