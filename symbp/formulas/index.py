"""Index notation: a formula printed entry by entry, every tensor with its indices.

``z1[b,o,y,x] = Σ_{i,p,q} W1[o,i,p,q]·x[b,i,y+p−1,x+q−1] + b1[o]``: convolutions, poolings
and their gradients, and sums, broadcasts or reshapes of images print this way
(``_indexed`` says which equations), and so do the structural ops a textbook writes entry by
entry: a batched product ``Z[b,i,j] = Σ_k A[b,i,k]·B[b,k,j]``, a cumsum ``Σ_{j′≤j}``, a roll
``x[i,(j−2) mod 5]``, a constant pad's cases. ``IndexNotation`` is the printers' layer that
does it: each tensor op with an index form has an ``_index_<Class>`` rule binding fresh
index symbols for its sum; one without prints as the tensor it makes, indexed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sympy

from symbp.compiler.ops import Pool2dArg
from symbp.formulas.layout import _ATOM, _MUL, _PRODUCT, Layout
from symbp.formulas.vocabulary import (
    _SUM_BATCH,
    AvgPool,
    AvgPoolGrad,
    Broadcast,
    Conv,
    ConvInputGrad,
    ConvWeightGrad,
    Dot,
    Fill,
    MaxPool,
    MaxPoolGrad,
    Permute,
    Reshape,
    SumOver,
    TensorOp,
    Window,
    _axes,
    shape_of,
)

# Index letters by role, the order their terms print in: batch, channels, positions, taps
# (y+p−1, not p+y−1; 4c+2y+x).
_INDEX_ORDER = "bocikyxuvpq"


def _letters(ndim: int, image: tuple[str, ...] = ("b", "o", "y", "x")) -> tuple[str, ...]:
    """Index letters of an ndim tensor: an image's, or i, j, k ..."""
    return image if ndim == 4 else tuple("ijklmn"[:ndim])


def _reshape_index(idx: Sequence[Any], shape: tuple, src: tuple) -> list[sympy.Expr] | None:
    """The index into ``src`` of entry ``idx`` of its row-major reshape to ``shape``, where
    consecutive axes of ``shape`` merge into one of ``src`` (an unflatten: [b, 4c+2y+x]).

    None where an axis of ``src`` would have to be split (that needs ÷ and mod), or where an
    index is more than a bare index letter: 2y+p−1 may fall outside its axis, and merged
    into 4c+2y+x it would land in the wrong row instead of leaving the term out.
    """
    if not all(i == 0 or isinstance(i, sympy.Symbol) for i in idx):
        return None
    live = [(i, d) for i, d in zip(idx, shape) if d != 1]  # axes of size 1 carry no index
    out: list[sympy.Expr] = [sympy.Integer(0)] * len(src)
    k = 0
    for axis, size in enumerate(src):
        if size == 1:
            continue
        flat, prod = sympy.Integer(0), sympy.Integer(1)
        while k < len(live) and prod != size:
            i, d = live[k]
            flat, prod, k = flat * d + i, prod * d, k + 1
        if prod != size:
            return None
        out[axis] = flat
    return out if k == len(live) else None


class Wrapped(sympy.Function):
    """An index taken modulo its axis' size, (i − s) mod n (a roll's); args (index, n).
    SymPy's own Mod would print (i − 2) mod 5 as (i + 3) mod 5."""

    nargs = 2
    is_integer = True


# (expression, its symbols' shapes) -> whether this tensor op is what a textbook writes in
# index notation (``INDEX_TRIGGERS``), and whether it has an index form at all
# (``INDEX_FORMS``: an ``_index_<Class>`` rule that prints it). The families add theirs.
Predicate = Callable[[Any, Mapping[sympy.Symbol, tuple]], bool]


def _always(e: Any, shapes: Mapping[sympy.Symbol, tuple]) -> bool:
    return True


def _never(e: Any, shapes: Mapping[sympy.Symbol, tuple]) -> bool:
    return False


def _batched(e: Any, shapes: Mapping[sympy.Symbol, tuple]) -> bool:
    return len(shape_of(e, shapes)) > 2  # Z[b,i,j] = Σ_k A[b,i,k]·B[b,k,j]; A·B stays A·B


INDEX_TRIGGERS: dict[type, Predicate] = {Dot: _batched}
INDEX_FORMS: dict[type, Predicate] = dict.fromkeys(
    (Broadcast, Reshape, Fill, SumOver, Dot, Permute), _always
)
# In index notation a view (its argument at other indices) binds as its argument does, and
# a sum (Σ_k ...) as a product does; every other tensor op prints as one bracketed tensor.
INDEX_VIEWS: set[type] = {Broadcast, Reshape, Permute}
INDEX_SUMS: dict[type, Predicate] = {Dot: _batched}


def _indexed(expr: sympy.Expr, shapes: Mapping[sympy.Symbol, tuple]) -> bool:
    """Whether ``expr`` prints in index notation: it convolves or pools, or it sums,
    broadcasts or reshapes images (a silent broadcast of [B, C] to [B, C, H, W] misleads),
    or it holds an op of ``INDEX_TRIGGERS`` and every tensor op in it has an index form
    (one without would print as a bracketed tensor, indexed: worse than its name)."""
    if expr.has(Window):
        return True
    sums = expr.atoms(SumOver)
    images = expr.atoms(Broadcast, Reshape)  # (not a flatten: that prints as flatten(s1))
    if any(len(shape_of(e.args[0], shapes)) > 2 for e in sums) or any(
        len(shape_of(e, shapes)) > 2 for e in images
    ):
        return True
    ops = expr.atoms(TensorOp)
    trigger = any(INDEX_TRIGGERS.get(type(e), _never)(e, shapes) for e in ops)
    return trigger and all(INDEX_FORMS.get(type(e), _never)(e, shapes) for e in ops)


class IndexNotation(Layout):
    """The printers' index notation (``indexed``, ``at``, the ``_index_<Class>`` rules).

    A formula holding a convolution or a pooling prints in index notation: every tensor
    carries its indices, z1[b,o,y,x] = Σ_{i,p,q} W1[o,i,p,q]·x[b,i,y+p−1,x+q−1] + b1[o].
    Indices are SymPy integer symbols and their affine combinations; each window op binds
    fresh ones for its sum (``_index_<Class>``); ops without an index form print as the
    tensor they make, indexed: (δ2·W2)[b,4c+2y+x].
    """

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        # Index notation: the indices the expression being printed is taken at (None at the
        # tensor level), the index symbols of this equation in the order they were bound, and
        # which notations were used, for the legend.
        self._at: tuple[sympy.Expr, ...] | None = None
        self._bound: dict[sympy.Symbol, int] = {}
        self.used: dict[str, Any] = {}

    # tokens of index notation; LatexPrinter overrides them
    le, ge, ne, mod = "≤", "≥", "≠", " mod "

    def prec(self, e: sympy.Expr) -> int:
        if self._at is not None and isinstance(e, TensorOp) and not isinstance(e, Window):
            # indexed: a view is its argument, a Σ_k binds as a product, anything else
            # prints as one tensor: (δ2·W2)[b,k]
            if type(e) in INDEX_VIEWS:
                return self.prec(e.args[0])
            return _PRODUCT if self.sum_like(e) else _ATOM
        return super().prec(e)

    def shape_of(self, e: sympy.Expr) -> tuple:
        return shape_of(e, self._settings["shapes"])

    def indexed(self, expr: sympy.Expr) -> tuple[str, str]:
        """(the indices, the formula) of ``expr`` in index notation: ('[o,i,p,q]', 'Σ ...')."""
        shape = self.shape_of(expr)
        letters: Sequence[str | None] = _letters(len(shape), ("b", "c", "u", "v"))
        for e in sympy.preorder_traversal(expr):
            if isinstance(e, Window) and e.out_shape == shape:
                letters = e.letters  # a convolution's output is [b,o,y,x], its weight's [o,i,p,q]
                break
            if (product := self._product_letters(e, shape)) is not None:
                letters = product
                break
            if isinstance(e, SumOver):
                full, summed = _letters(len(self.shape_of(e.args[0]))), _axes(e.args[1])
                if e.args[2] == sympy.true and self.shape_of(e) == shape:
                    # Σ_{y,x} h[b,o,y,x]/25 kept in its dims: s[b,o,0,0]
                    letters = [None if k in summed else c for k, c in enumerate(full)]
                    break
                kept = tuple(c for k, c in enumerate(full) if k not in summed)
                if len(kept) == len(shape):  # ∂E/∂b1[o] = Σ_{b,y,x} δ1[b,o,y,x]
                    letters = kept
                    break
        names = iter(self.index_vars(*(c for c in letters if c is not None)))
        idx = [sympy.Integer(0) if c is None else next(names) for c in letters]
        return self.subscript(idx), self.at(expr, idx, 0)

    def sum_like(self, e: sympy.Expr) -> bool:
        """Whether tensor op ``e`` prints as a Σ in index notation (``INDEX_SUMS``)."""
        return INDEX_SUMS.get(type(e), _never)(e, self._settings["shapes"])

    def _product_letters(self, e: sympy.Expr, shape: tuple) -> tuple[str, ...] | None:
        """Z[b,i,j]'s letters where ``e`` is a batched product of ``shape``, else None."""
        if isinstance(e, Dot) and 2 < len(shape) < 7 and self.shape_of(e) == shape:
            return (*("b", "h", "g", "f")[: len(shape) - 2], "i", "j")
        return None

    def index_vars(self, *names: str) -> list[sympy.Symbol]:
        """Fresh index symbols: y, x, or y′, x′ when y and x are bound already."""
        taken = {s.name for s in self._bound}
        out = []
        for name in names:
            while name in taken:
                name += "′"
            taken.add(name)
            sym = sympy.Symbol(name, integer=True)
            self._bound[sym] = len(self._bound)
            out.append(sym)
        return out

    def at(self, e: sympy.Expr, idx: Sequence[sympy.Expr], level: int) -> str:
        """``e`` printed at the indices ``idx``."""
        saved, self._at = self._at, tuple(idx)
        try:
            return self.group(e, level)
        finally:
            self._at = saved

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if self._at is None or not isinstance(expr, TensorOp):
            return super()._print(expr, **kwargs)
        rule = getattr(self, f"_index_{type(expr).__name__}", None)
        out = rule(expr, self._at) if rule is not None else None
        if out is None:  # no index form: the tensor, then its indices
            idx, self._at = self._at, None
            try:
                shown = self._print(expr) if isinstance(expr, Window) else self.group(expr, _ATOM)
                out = shown + self.subscript(idx)
            finally:
                self._at = idx
        return out

    def subscript(self, idx: Sequence[sympy.Expr]) -> str:
        if not idx:  # a scalar: E, not E[]
            return ""
        return "[" + ",".join(self.index(i) for i in idx) + "]"

    def index_name(self, s: sympy.Symbol) -> str:
        return s.name

    def index(self, e: sympy.Expr) -> str:
        """An index: 2y+p−1, (u−p+1)/2, 4c+2y+x, outer indices first, the constant last;
        (j−2) mod 5 for a ``Wrapped`` one."""
        if isinstance(e, Wrapped):
            return self.paren(self.index(e.args[0])) + self.mod + self.index(e.args[1])
        e = sympy.expand(e)
        den = math.lcm(*(sympy.Rational(c).q for c in e.as_coefficients_dict().values()))

        def key(t: sympy.Expr) -> tuple[int, int]:
            if t.is_Number:
                return (len(_INDEX_ORDER) + 1, 0)
            v = t.as_coeff_Mul()[1]
            role = _INDEX_ORDER.find(v.name[0]) if v.is_Symbol else -1
            return (role if role >= 0 else len(_INDEX_ORDER), self._bound.get(v, 0))

        terms = sorted(sympy.Add.make_args(sympy.expand(e * den)), key=key)
        out = ""
        for t in terms:
            c, v = (t, None) if t.is_Number else t.as_coeff_Mul()
            mag = abs(int(c))
            name = (
                ""
                if v is None
                else self.index_name(v)
                if v.is_Symbol
                else self.paren(self.index(v))
            )
            body = str(mag) if v is None else ("" if mag == 1 else str(mag)) + name
            out += (self.neg if c < 0 else "+" if out else "") + body
        if den != 1:
            out = (self.paren(out) if len(terms) > 1 else out) + f"/{den}"
        return out

    def bigop(self, op: str, names: Sequence[sympy.Symbol]) -> str:
        """Σ_{i,p,q}, max_{p,q}, argmax_{p,q}, followed by a space."""
        sign = {"sum": "Σ", "max": "max", "argmax": "argmax"}[op]
        return sign + "_{" + ",".join(self.index_name(n) for n in names) + "} "

    def running(
        self, op: str, var: sympy.Symbol, reverse: bool, limit: sympy.Expr, but: Any = None
    ) -> str:
        """Σ_{j′≤j}, Π_{j′≥j}, Π_{j″≤j′,j″≠j}: a running sum's or product's index and bound
        (and the one index it leaves out), then a space."""
        sign = {"sum": "Σ", "prod": "Π"}[op]
        name = self.index_name(var)
        rel = self.ge if reverse else self.le
        out = f"{name}{rel}{self.index(limit)}"
        if but is not None:
            out += f",{name}{self.ne}{self.index(but)}"
        return f"{sign}_{{{out}}} "

    def mean(self, body: str, divisor: str) -> str:
        return f"{body}/{divisor}"

    def indexed_name(self, name: str, sub: str) -> str:
        return name + sub

    def _taps(self, out, taps, a_stride, a_dilation, pad) -> list[sympy.Expr]:
        """Input positions of kernel taps (p, q) at output (y, x): s·y + d·p − pad."""
        if any(pad):
            self.used["outside"] = True
        return [s * y + d * p - lo for y, p, s, d, lo in zip(out, taps, a_stride, a_dilation, pad)]

    def _sources(self, pos, taps, a_stride, a_dilation, pad) -> list[sympy.Expr]:
        """The output positions whose tap (p, q) reads input position (u, v): the transposed
        form (u − d·p + pad)/s, left out where it is no whole number or outside."""
        self.used["outside"] = True
        if any(s != 1 for s in a_stride):
            self.used["stride"] = True
        return [
            (u - d * p + lo) / sympy.Integer(s)
            for u, p, s, d, lo in zip(pos, taps, a_stride, a_dilation, pad)
        ]

    def _index_Broadcast(self, e: Broadcast, idx: tuple) -> str | None:
        a, shape = e.args
        inner = self.shape_of(a)
        if len(idx) != len(shape) or len(inner) > len(shape):
            return None
        lead = len(shape) - len(inner)  # an axis broadcast from size 1 has index 0 in a
        src = [0 if d == 1 and shape[lead + k] != 1 else idx[lead + k] for k, d in enumerate(inner)]
        return self.at(a, [sympy.Integer(i) if i == 0 else i for i in src], 0)

    def _index_Reshape(self, e: Reshape, idx: tuple) -> str | None:
        a, shape = e.args
        inner = self.shape_of(a)
        src = _reshape_index(idx, tuple(shape), inner)
        if src is not None:
            return self.at(a, src, 0)
        # each sample's row back in image shape, or some other reshape: say which
        unflatten = len(inner) == 2 and len(shape) > 2 and inner[0] == shape[0]
        if unflatten:
            self.used.setdefault("unflatten", (a, tuple(shape)))
        saved, self._at = self._at, None
        try:
            name = "unflatten" if unflatten else "reshape"
            shown = self.call((name, rf"\operatorname{{{name}}}")[self._which], self._print(a))
            return shown + self.subscript(idx)
        finally:
            self._at = saved

    def _index_SumOver(self, e: SumOver, idx: tuple) -> str | None:
        a, axes, keepdim, _ = e.args
        shape = self.shape_of(a)
        if len(shape) < 3 and int(e.args[3]) == _SUM_BATCH:  # Σ_batch δ2, not Σ_{b} δ2[b,k]
            return None
        # a sum of a batched product runs over its letters, Σ_{b,i,j}
        found = (self._product_letters(d, shape) for d in sympy.preorder_traversal(a))
        letters = next((ls for ls in found if ls is not None), _letters(len(shape)))
        kept = iter(idx)
        inner = []
        for k in range(len(shape)):
            if k not in _axes(axes):
                inner.append(next(kept))
                continue
            if keepdim == sympy.true:
                next(kept)
            inner.append(self.index_vars(letters[k])[0])
        summed = [inner[k] for k in _axes(axes)]
        return self.bigop("sum", summed) + self.at(a, inner, _MUL)

    def _index_Dot(self, e: Dot, idx: tuple) -> str | None:
        """(A·B)[b,i,j] = Σ_k A[b,i,k]·B[b,k,j]: the batch axes are shared (bmm's). A matrix
        product keeps its matrix notation, indexed: (δ2·W2)[b,k]."""
        a, b = e.args
        ra, rb = len(self.shape_of(a)), len(self.shape_of(b))
        if ra < 2 or rb < 2 or len(idx) < 3:
            return None
        *batch, i, j = idx
        (k,) = self.index_vars("k")
        left = [*batch[len(batch) - (ra - 2) :], i, k]
        right = [*batch[len(batch) - (rb - 2) :], k, j]
        body = self.at(a, left, _MUL) + self.times_scalar + self.at(b, right, _MUL)
        return self.bigop("sum", [k]) + body

    def _index_Permute(self, e: Permute, idx: tuple) -> str:
        """aᵀ[i,j] = a[j,i]: output axis k is the argument's axis perm[k]."""
        a, perm = e.args
        src: list[Any] = [sympy.Integer(0)] * len(idx)
        for k, axis in enumerate(_axes(perm)):
            src[axis] = idx[k]
        return self.at(a, src, 0)

    def _index_Fill(self, e: Fill, idx: tuple) -> str:
        return self._print(e.args[0])

    def _index_Conv(self, e: Conv, idx: tuple) -> str | None:
        x, w = e.args[:2]
        a = e.arg
        if a.groups != 1:
            return None
        b, o, y, col = idx
        i, p, q = self.index_vars("i", "p", "q")
        pad = (a.padding[0][0], a.padding[1][0])
        taps = self._taps((y, col), (p, q), a.stride, a.dilation, pad)
        return (
            self.bigop("sum", (i, p, q))
            + self.at(w, (o, i, p, q), _MUL)
            + self.times_scalar
            + self.at(x, (b, i, *taps), _MUL)
        )

    def _index_ConvInputGrad(self, e: ConvInputGrad, idx: tuple) -> str | None:
        ct, w = e.args[:2]
        a = e.arg[0]
        if a.groups != 1:
            return None
        b, i, u, v = idx
        o, p, q = self.index_vars("o", "p", "q")
        pad = (a.padding[0][0], a.padding[1][0])
        rows, cols = self._sources((u, v), (p, q), a.stride, a.dilation, pad)
        return (
            self.bigop("sum", (o, p, q))
            + self.at(ct, (b, o, rows, cols), _MUL)
            + self.times_scalar
            + self.at(w, (o, i, p, q), _MUL)
        )

    def _index_ConvWeightGrad(self, e: ConvWeightGrad, idx: tuple) -> str | None:
        x, ct = e.args[:2]
        a = e.arg[0]
        if a.groups != 1:
            return None
        o, i, p, q = idx
        b, y, col = self.index_vars("b", "y", "x")
        pad = (a.padding[0][0], a.padding[1][0])
        taps = self._taps((y, col), (p, q), a.stride, a.dilation, pad)
        return (
            self.bigop("sum", (b, y, col))
            + self.at(ct, (b, o, y, col), _MUL)
            + self.times_scalar
            + self.at(x, (b, i, *taps), _MUL)
        )

    def _index_MaxPool(self, e: MaxPool, idx: tuple) -> str:
        a = e.arg
        b, c, y, col = idx
        p, q = self.index_vars("p", "q")
        taps = self._taps((y, col), (p, q), a.stride, a.dilation, a.padding)
        return self.bigop("max", (p, q)) + self.at(e.args[0], (b, c, *taps), _MUL)

    def _index_MaxPoolGrad(self, e: MaxPoolGrad, idx: tuple) -> str:
        x, ct = e.args[:2]
        a = e.arg
        b, c, u, v = idx
        y, col, p, q = self.index_vars("y", "x", "p", "q")
        taps = self._taps((y, col), (p, q), a.stride, a.dilation, a.padding)
        self.used["argmax"] = True
        where = f"({self.index(u)}, {self.index(v)}) = "
        window = self.bigop("argmax", (p, q)) + self.at(x, (b, c, *taps), _MUL)
        return (
            self.bigop("sum", (y, col))
            + self.at(ct, (b, c, y, col), _MUL)
            + self.times_scalar
            + self.indicator(where + window)
        )

    def _index_AvgPool(self, e: AvgPool, idx: tuple) -> str:
        a = e.arg
        b, c, y, col = idx
        p, q = self.index_vars("p", "q")
        taps = self._taps((y, col), (p, q), a.stride, a.dilation, a.padding)
        body = self.bigop("sum", (p, q)) + self.at(e.args[0], (b, c, *taps), _MUL)
        return self.mean(body, self._divisor(a, (y, col)))

    def _index_AvgPoolGrad(self, e: AvgPoolGrad, idx: tuple) -> str:
        a = e.arg[0]
        b, c, u, v = idx
        p, q = self.index_vars("p", "q")
        rows, cols = self._sources((u, v), (p, q), a.stride, a.dilation, a.padding)
        body = self.bigop("sum", (p, q)) + self.at(e.args[0], (b, c, rows, cols), _MUL)
        return self.mean(body, self._divisor(a, (rows, cols)))

    def _divisor(self, a: Pool2dArg, window: Sequence[sympy.Expr]) -> str:
        """What average pooling divides window (y, x)'s sum by."""
        if a.divisor is not None:
            return str(a.divisor)
        if a.count_include_pad:
            return str(a.kernel[0] * a.kernel[1])
        self.used["count"] = True
        return "n" + self.subscript(window)
