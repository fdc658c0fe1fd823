"""The indexing family's tensor ops: slices, gathers and their gradients, printed as Python
writes them (``x[:, 2:5]``, ``E[b, labels]``, ``place(δ at [:, 2:5])``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ir import B
from symbp.formulas.layout import _ATOM
from symbp.formulas.text import FUNCTIONS, TextPrinter
from symbp.formulas.vocabulary import TENSOR_NUMPY, TENSOR_SHAPES, Broadcast, Literal, TensorOp

# -- issue 12 . indexing (rows of this family go below this line)
#
# Indexing prints as Python writes it: x[:, 2:5] for a slice, E[:, labels] for a gather
# (a torch.gather's own positions print as their index letters: x[i, y]); a gradient's
# placement as place(δ at x[:, 2:5]), a scatter-add as scatter_add(δ at labels).


class Key(Literal):
    """A static argument of an indexing op as a plain Python literal: slices as (start,
    stop, step) with a batch-relative bound negative, as Python writes x[:-1]; a batch dim
    of a shape as None (the data's own)."""


def _bound(v: Any) -> int | None:
    """A slice bound as Python writes it: B - c is -c (B itself: None, the end)."""
    v = sympy.sympify(v)
    if v.is_Integer:
        return int(v)
    off = int(v - B)
    return off if off else None


def _key_of(box: Any) -> Key:
    return Key(
        tuple(
            (_bound(a.start), _bound(a.start + a.step * (a.size - 1) + 1), a.step)
            if a.size != 0
            else (0, 0, 1)
            for a in box
        )
    )


def _shape_key(shape: Any) -> tuple:
    return tuple(int(d) if sympy.sympify(d).is_Integer else None for d in shape)


class Sliced(TensorOp):
    """A slice; args (a, Key(slices)) and the box itself, for printing."""

    nargs = 2


class Placed(TensorOp):
    """A slice's gradient: a placed into zeros; args (a, Key((slices, shape)))."""

    nargs = 2


class Gathered(TensorOp):
    """A gather (``take``); args (x, Tuple(index arrays), Key(axis))."""

    nargs = 3


class Scattered(TensorOp):
    """A scatter-add into zeros (``put_add``); args (ct, Tuple(index arrays), Key((axis,
    shape)))."""

    nargs = 3


class Iota(TensorOp):
    """The position along an axis of the other index arrays; args (Key(axis),)."""

    nargs = 1
    tensors = 0


def _np_box(box: Any) -> tuple:
    return tuple(slice(*a) for a in box)


def _filled_shape(shape: Any, like: Any) -> tuple:
    return tuple(n if d is None else d for d, n in zip(shape, np.shape(like)))


def _np_indices(idx: Any) -> list:
    """The index arrays, iotas (``("iota", axis)``) made as the others' positions."""
    shape = np.broadcast_shapes(*(np.shape(i) for i in idx if not isinstance(i, tuple)))
    out = []
    for i in idx:
        if isinstance(i, tuple):
            view = [1] * len(shape)
            view[i[1]] = shape[i[1]]
            i = np.broadcast_to(np.arange(shape[i[1]]).reshape(view), shape)
        out.append(np.asarray(i))
    return out


def _np_scattered(ct: Any, idx: Any, arg: Any) -> Any:
    axis, shape = arg
    idx = _np_indices(idx)
    ct = np.asarray(ct)
    k = len(idx)
    full = [d if d is not None else ct.shape[a if a < axis else a - k + idx[0].ndim]
            for a, d in enumerate(shape)]  # fmt: skip
    out = np.zeros(full, dtype=ct.dtype)
    key = (slice(None),) * axis + tuple(i % full[axis + m] for m, i in enumerate(idx))
    np.add.at(out, key, ct)
    return out


def _np_placed(a: Any, arg: Any) -> Any:
    box, shape = arg
    out = np.zeros(_filled_shape(shape, a), dtype=np.asarray(a).dtype)
    out[_np_box(box)] = a
    return out


def _np_gathered(x: Any, idx: Any, axis: Any) -> Any:
    x = np.asarray(x)
    idx = _np_indices(idx)
    sizes = x.shape[axis : axis + len(idx)]
    key = (slice(None),) * axis + tuple(i % s for i, s in zip(idx, sizes))
    return x[key]


TENSOR_NUMPY.update(
    Sliced=lambda a, box: np.asarray(a)[_np_box(box)],
    Placed=_np_placed,
    Gathered=_np_gathered,
    Scattered=_np_scattered,
    Iota=lambda axis: ("iota", axis),
)


def _sliced_shape(e: Any, s: Callable) -> tuple:
    return tuple(len(range(*sl.indices(int(n)))) if isinstance(n, int) else n
                 for sl, n in zip(_np_box(e.args[1].value), s(e.args[0])))  # fmt: skip


TENSOR_SHAPES.update(
    Sliced=_sliced_shape,
    Placed=lambda e, s: _filled_shape(e.args[1].value[1], np.empty(s(e.args[0]), bool)),
    Gathered=lambda e, s: (
        *s(e.args[0])[: e.args[2].value],
        *s(e.args[1].args[0]),
        *s(e.args[0])[e.args[2].value + len(e.args[1].args) :],
    ),
    Scattered=lambda e, s: tuple(e.args[2].value[1]),
    Iota=lambda e, s: (),
)
FUNCTIONS.update(
    Placed=("place", r"\operatorname{place}"),
    Scattered=("scatter_add", r"\operatorname{scatter\_add}"),
)


def _key_text(box: Any) -> str:
    """x[:, 2:5] from the Key's (start, stop, step) triples."""
    parts = []
    for start, stop, step in box:
        if start in (0, None) and stop is None and step == 1:
            parts.append(":")
            continue
        text = (
            ("" if start in (0, None) else str(start)) + ":" + ("" if stop is None else str(stop))
        )
        parts.append(text + (f":{step}" if step != 1 else ""))
    while len(parts) > 1 and parts[-1] == ":":
        parts.pop()
    return ", ".join(parts)


def _print_sliced(self: TextPrinter, e: Sliced) -> str:
    a, box = e.args
    shape = self.shape_of(a)
    parts = []  # a bound at the end of its axis prints as Python omits it
    for (start, stop, step), n in zip(box.value, shape):
        end = stop is not None and isinstance(n, int) and stop - 1 + step >= n  # x[::2]
        parts.append((start, None if end or stop == n else stop, step))
    return f"{self.group(a, _ATOM)}[{_key_text(parts)}]"


def _index_names(self: TextPrinter, idx: sympy.Tuple) -> list[str]:
    """The index arrays as printed; a torch.gather's own positions as their letters, and the
    arrays beside them read at those letters: x[i, y[i]], the textbook's E[b, labels[b]]."""
    arrays = [i.args[0] if isinstance(i, Broadcast) else i for i in idx.args]
    positions = any(isinstance(i, Iota) for i in arrays)
    rank = max((len(self.shape_of(i)) for i in idx.args), default=0)  # their broadcast shape's
    letters = [sympy.Symbol(c, integer=True) for c in "ijklmn"[:rank]]
    names = []
    for full, i in zip(idx.args, arrays):
        if isinstance(i, Iota):
            names.append("ijklmn"[i.args[0].value])
        elif positions and rank:
            names.append(self.at(full, letters[rank - len(self.shape_of(full)) :], _ATOM))
        else:
            names.append(self._print(i))
    return names


def _print_gathered(self: TextPrinter, e: Gathered) -> str:
    x, idx, axis = e.args
    return f"{self.group(x, _ATOM)}[{', '.join([':'] * axis.value + _index_names(self, idx))}]"


def _print_placed(self: TextPrinter, e: Placed) -> str:
    a, arg = e.args
    shown = ("place", r"\operatorname{place}")[self._which]
    return self.call(shown, f"{self._print(a)} at [{_key_text(arg.value[0])}]")


def _print_scattered(self: TextPrinter, e: Scattered) -> str:
    ct, idx, arg = e.args
    shown = ("scatter_add", r"\operatorname{scatter\_add}")[self._which]
    at = ", ".join([":"] * arg.value[0] + _index_names(self, idx))
    return self.call(shown, f"{self._print(ct)} at [{at}]")


TextPrinter._print_Sliced = _print_sliced  # type: ignore[attr-defined]
TextPrinter._print_Gathered = _print_gathered  # type: ignore[attr-defined]
TextPrinter._print_Placed = _print_placed  # type: ignore[attr-defined]
TextPrinter._print_Scattered = _print_scattered  # type: ignore[attr-defined]
