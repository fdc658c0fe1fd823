"""Gradient formulas: the derived backward program, printed the way a textbook writes it.

Everything here reads the program ``api.derive`` builds; nothing calls ``sympy.diff`` again,
so what is printed is what symbp computes. Two levels:

- **Tensor level.** Every node becomes a SymPy expression over named tensors: leaves are
  ``x, t, W1, b1 ...``, layer outputs are ``z1, h, o ...`` (named from the modules that made
  them, see ``ir.LABELS``), error signals are ``δ2, δ1 ...``. Elementwise algebra is plain
  SymPy algebra on those symbols (it acts entry by entry, so it commutes); the structural ops
  are the ``TensorOp`` functions below, printed as ``·`` (matrix product), ``ᵀ``, ``Σ``.
  Fused formulas are named back: ``σ(h·W2ᵀ + b2)`` inside a δ becomes ``o``, so the δ of a
  sigmoid output under half-SSE reads ``(o − t) ⊙ o ⊙ (1 − o)``. Each equation still
  evaluates with NumPy (``Formulas.evaluate``), which is how the tests check the printed form.
- **Index notation** (convolutional networks). Convolutions, poolings and their gradients are
  ``Window`` tensor ops; an equation holding one (or summing, broadcasting or reshaping
  images) prints entry by entry with the layer's stride, padding and dilation:
  ``∂E/∂W1[o,i,p,q] = Σ_{b,y,x} δ1[b,o,y,x]·x[b,i,2y+p−1,2x+q−1]``. A term whose index
  falls outside its tensor, or is no whole number (a transposed stride), is left out, which
  is zero padding; the legend says so.
- **Scalar level** (small models). The same derived program runs through the reference
  executor on object arrays of SymPy symbols, one per entry (``w1 .. w8`` for the weights,
  row-major in model order, ``x1``, ``t1`` ...), with every layer-output entry named
  (``h1``, ``o1``), so ``∂E/∂w5 = (o1 − t1)·o1·(1 − o1)·h1``.

The printers follow SymPy's design: one ``_print_<Class>`` method per node type and tables of
known functions; text and LaTeX share the layout logic and differ in their tokens.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import sympy
from sympy.core.sorting import default_sort_key
from sympy.printing.printer import Printer

from symbp import scalar
from symbp.api import Derived, Traced, derive
from symbp.ir import LABELS, B, Node, bind_dims, consumers, toposort, type_str
from symbp.ops import OPS, Conv2dArg, Formula, NotApplicable, Pool2dArg, to_expr, xsym
from symbp.reference import evaluate, evaluate_all
from symbp.tensor import Parameter, Tensor

__all__ = [
    "Equation",
    "Formulas",
    "ScalarGradient",
    "ScalarGradients",
    "formulas",
]

# Above this many parameter (or data) entries the scalar level refuses unless forced: one
# SymPy expression per entry, each a sum over the batch, grows past what anyone reads.
SCALAR_LIMIT = 200


# ================================================================ tensor-level vocabulary


class TensorOp(sympy.Function):
    """A structural op on whole tensors. Argument 0 is the tensor; later ones are static
    (axes, shapes) unless ``tensors`` says more arguments are tensors."""

    is_real = True
    tensors = 1


class Dot(TensorOp):
    """Matrix product ``a·b``."""

    nargs = 2
    tensors = 2


class Permute(TensorOp):
    """Axis permutation (a transpose ``aᵀ`` for two axes); args (a, perm)."""

    nargs = 2


class SumOver(TensorOp):
    """Sum; args (a, axes, keepdim, kind), kind 0: over ``axes``, 1: over the batch, 2: all."""

    nargs = 4


class MaxOver(TensorOp):
    """Max; args (a, axes, keepdim, whole): whole says ``axes`` are all of a's axes."""

    nargs = 4


class Broadcast(TensorOp):
    """Broadcast to a shape; printed as its argument (broadcasting is implicit in math)."""

    nargs = 2


class Reshape(TensorOp):
    """Reshape; printed as its argument (a bias gradient of shape [1, n] is the [n] one)."""

    nargs = 2


class OneHot(TensorOp):
    """Integer labels to one-hot rows; args (y, classes)."""

    nargs = 2


class Fill(TensorOp):
    """A tensor filled with one value; args (value, shape)."""

    nargs = 2
    tensors = 0


class Softmax(TensorOp):
    """softmax along ``axes``, recognised in exp(u − max u) / Σ exp(u − max u)."""

    nargs = 2


class LogSoftmax(TensorOp):
    """log-softmax along ``axes``, recognised in u − max u − log Σ exp(u − max u)."""

    nargs = 2


class Static(sympy.Atom):
    """A static argument that is no number (a convolution's ``Conv2dArg`` and output shape):
    compared by value, handed to NumPy as a Python literal (``evaluate`` lambdifies it)."""

    is_commutative = True
    value: Any

    def __new__(cls, value: Any) -> Static:
        obj = super().__new__(cls)
        obj.value = value
        return obj

    def _hashable_content(self) -> tuple:
        return (self.value,)

    def _numpycode(self, printer: Any) -> str:
        arg, shape = self.value
        return repr((arg, tuple(int(d) for d in shape[2:])))  # the batch B stays out

    _lambdacode = _pythoncode = _numpycode

    def _sympystr(self, printer: Any) -> str:
        return str(self.value[0])


class Window(TensorOp):
    """A convolution or pooling op, or one of their gradients: the IR op ``op`` on the
    leading tensor arguments; the last argument is ``Static((op's arg, output shape))``.
    Printed in index notation (``TextPrinter._index_<Class>``) with ``letters`` for the
    output's indices."""

    op = ""
    letters: tuple[str, ...] = ("b", "c", "y", "x")

    @property
    def arg(self) -> Any:
        return self.args[-1].value[0]

    @property
    def out_shape(self) -> tuple:
        return tuple(self.args[-1].value[1])


class Conv(Window):
    """conv2d(x, w): z[b,o,y,x] = Σ_{i,p,q} w[o,i,p,q]·x[b,i,y+p,x+q] (stride 1, no padding)."""

    op, nargs, tensors, letters = "conv2d", 3, 2, ("b", "o", "y", "x")


class ConvInputGrad(Window):
    """conv2d_input_grad(δ, w), transposed: x̄[b,i,u,v] = Σ δ[b,o,u−p,v−q]·w[o,i,p,q]."""

    op, nargs, tensors, letters = "conv2d_input_grad", 3, 2, ("b", "i", "u", "v")


class ConvWeightGrad(Window):
    """conv2d_weight_grad(x, δ): w̄[o,i,p,q] = Σ_{b,y,x} δ[b,o,y,x]·x[b,i,y+p,x+q]."""

    op, nargs, tensors, letters = "conv2d_weight_grad", 3, 2, ("o", "i", "p", "q")


class MaxPool(Window):
    """maxpool2d(x): the maximum of each window."""

    op, nargs, tensors = "maxpool2d", 2, 1


class MaxPoolGrad(Window):
    """maxpool2d_grad(x, δ): δ routed to each window's arg-max."""

    op, nargs, tensors, letters = "maxpool2d_grad", 3, 2, ("b", "c", "u", "v")


class AvgPool(Window):
    """avgpool2d(x): the mean of each window."""

    op, nargs, tensors = "avgpool2d", 2, 1


class AvgPoolGrad(Window):
    """avgpool2d_grad(δ): each window's δ spread evenly over it."""

    op, nargs, tensors, letters = "avgpool2d_grad", 2, 1, ("b", "c", "u", "v")


# The IR's window ops and their tensor-level functions.
WINDOWS: dict[str, type[Window]] = {
    cls.op: cls
    for cls in (Conv, ConvInputGrad, ConvWeightGrad, MaxPool, MaxPoolGrad, AvgPool, AvgPoolGrad)
}


def _axes(a: Any) -> tuple[int, ...]:
    return tuple(int(i) for i in a)


def _np_softmax(a, axes):
    e = np.exp(a - np.max(a, axis=_axes(axes), keepdims=True))
    return e / np.sum(e, axis=_axes(axes), keepdims=True)


def _np_log_softmax(a, axes):
    s = a - np.max(a, axis=_axes(axes), keepdims=True)
    return s - np.log(np.sum(np.exp(s), axis=_axes(axes), keepdims=True))


class _Stub(NamedTuple):
    """What an op's NumPy rule reads of its node (the output's spatial size, not the batch)."""

    arg: Any
    shape: tuple
    dtype: np.dtype


def _window_numpy(op: str) -> Callable[..., np.ndarray]:
    """A window op's NumPy form: the op table's own reference rule."""

    def run(*args: Any) -> np.ndarray:
        *vals, (arg, hw) = args
        vals = [np.asarray(v) for v in vals]
        node: Any = _Stub(arg, (0, 0, *hw), np.result_type(*vals))
        return OPS[op].numpy(node, vals, {})

    return run


# NumPy forms of the tensor ops, for lambdify: this is how printed equations are evaluated.
TENSOR_NUMPY: dict[str, Callable[..., Any]] = {
    **{cls.__name__: _window_numpy(op) for op, cls in WINDOWS.items()},
    "Conv2dArg": Conv2dArg,  # Static arguments print as these constructors
    "Pool2dArg": Pool2dArg,
    "Dot": np.matmul,
    "Permute": lambda a, perm: np.transpose(a, _axes(perm)),
    "SumOver": lambda a, axes, keepdim, kind: np.sum(a, axis=_axes(axes), keepdims=bool(keepdim)),
    "MaxOver": lambda a, axes, keepdim, whole: np.max(a, axis=_axes(axes), keepdims=bool(keepdim)),
    "Broadcast": lambda a, shape: np.broadcast_to(a, _axes(shape)),
    "Reshape": lambda a, shape: np.reshape(a, _axes(shape)),
    "OneHot": lambda y, c: (np.asarray(y)[..., None] == np.arange(c)).astype(np.float64),
    "Fill": lambda value, shape: np.full(_axes(shape), value, dtype=np.float64),
    "Softmax": _np_softmax,
    "LogSoftmax": _np_log_softmax,
}
_LAMBDIFY_MODULES = [TENSOR_NUMPY, scalar.NUMPY, "numpy"]


def _reduced(e: Any, shape_of: Callable) -> tuple:
    a, axes, keepdim = e.args[:3]
    shape = shape_of(a)
    if keepdim == sympy.true:
        return tuple(1 if k in _axes(axes) else d for k, d in enumerate(shape))
    return tuple(d for k, d in enumerate(shape) if k not in _axes(axes))


# The shape of each tensor op's result, from its arguments' (``shape_of``): index notation
# needs it to line up a broadcast or a reshape with the indices of its argument.
TENSOR_SHAPES: dict[str, Callable[[Any, Callable], tuple]] = {
    "Dot": lambda e, s: (*s(e.args[0])[:-1], *s(e.args[1])[-1:]),
    "Permute": lambda e, s: tuple(s(e.args[0])[k] for k in _axes(e.args[1])),
    "SumOver": _reduced,
    "MaxOver": _reduced,
    "Broadcast": lambda e, s: tuple(e.args[1]),
    "Reshape": lambda e, s: tuple(e.args[1]),
    "Fill": lambda e, s: tuple(e.args[1]),
    "OneHot": lambda e, s: (*s(e.args[0]), e.args[1]),
    "Softmax": lambda e, s: s(e.args[0]),
    "LogSoftmax": lambda e, s: s(e.args[0]),
    **{cls.__name__: lambda e, s: e.out_shape for cls in WINDOWS.values()},
}


def shape_of(expr: sympy.Basic, shapes: Mapping[sympy.Symbol, tuple]) -> tuple:
    """The shape of a tensor-level expression, given its symbols' (unknown ones: scalars)."""

    def walk(e: sympy.Basic) -> tuple:
        if isinstance(e, TensorOp):
            return tuple(TENSOR_SHAPES[type(e).__name__](e, walk))
        if e.is_Symbol:
            return tuple(shapes.get(e, ()))
        out: tuple = ()
        for arg in e.args:  # elementwise: NumPy's broadcasting of the arguments' shapes
            s = walk(arg)
            n = max(len(out), len(s))
            out, s = (1,) * (n - len(out)) + out, (1,) * (n - len(s)) + s
            out = tuple(d2 if d1 == 1 else d1 for d1, d2 in zip(out, s))
        return out

    return walk(expr)


_SUM_AXES, _SUM_BATCH, _SUM_ALL = 0, 1, 2


def _tuple(values: Iterable[Any]) -> sympy.Tuple:
    return sympy.Tuple(*(sympy.sympify(v) for v in values))


Express = Callable[[Node, list[sympy.Expr], "_Namer"], sympy.Expr]


def _window_expr(n: Node, a: list[sympy.Expr], c: _Namer) -> sympy.Expr:
    return WINDOWS[n.op](*a, Static((n.arg, n.shape)))


def _max_expr(n: Node, a: list[sympy.Expr], c: _Namer) -> sympy.Expr:
    whole = sympy.sympify(len(n.arg[0]) == n.src[0].ndim)
    return MaxOver(a[0], _tuple(n.arg[0]), sympy.sympify(n.arg[1]), whole)


@dataclass(frozen=True)
class Printing:
    """How ``formulas`` shows the nodes of one op: its row of ``PRINTING``.

    ``express(n, args, namer)``: the node as a SymPy expression of its sources' (``args``),
    elementwise algebra or a ``TensorOp``; NotApplicable for the nodes ``_Namer`` names as
    tensors of their own (leaves, dropout masks). ``scalar``: how the scalar level computes a
    node (a ``_ScalarLevel`` method); NotApplicable: the scalar level refuses models with one.
    ``delta``: a backward node of the op may be an error signal δ (elementwise, or a pooling's
    gradient); ``reads_delta``: the op reads one (a product, a convolution's gradient), which
    makes its source a δ; ``to_delta``: a weight's gradient reaches its δ through the op.
    ``mask``: a random 0/1 tensor (dropout's), named ``m`` beside the data and drawn from
    its seed when equations are evaluated.
    """

    express: Express | NotApplicable
    scalar: Callable[[_ScalarLevel, Node, set[Node]], None] | NotApplicable
    delta: bool = False
    reads_delta: bool = False
    to_delta: bool = False
    mask: bool = False


# The table itself, ``PRINTING``, closes this module: its scalar rules are methods of
# ``_ScalarLevel``.


def _express(node: Node, args: list[sympy.Expr], namer: _Namer) -> sympy.Expr:
    rule = printing(node).express
    if isinstance(rule, NotApplicable):
        raise ValueError(f"formulas: a '{node.op}' node is named, not expressed: {rule.why}")
    return rule(node, args, namer)


def printing(node: Node) -> Printing:
    """The printing rule of ``node``'s op; an op without a row is named in the error."""
    rule = PRINTING.get(node.op)
    if rule is None:
        raise NotImplementedError(f"formulas: no printing rule for op '{node.op}'")
    return rule


# ================================================================ tidying rewrites


def _is_tensor(e: sympy.Expr) -> bool:
    return bool(e.free_symbols - {B}) or e.has(TensorOp)


def _broadcast_inward(e: Broadcast) -> sympy.Expr | None:
    # Broadcast(f(a, b)) = f(Broadcast(a), Broadcast(b)) for elementwise f: moves the (silent)
    # broadcast onto tensors, so a 1/(5·Σ exp) computed per row reads as the textbook's.
    a, shape = e.args
    # (a Piecewise's args are (value, condition) pairs, not operands: where, clamp, masks)
    if isinstance(a, (TensorOp, sympy.Piecewise)) or not (
        a.is_Add or a.is_Mul or a.is_Pow or a.is_Function
    ):
        return None
    return a.func(*(Broadcast(x, shape) if _is_tensor(x) else x for x in a.args))


def _unshift(a: sympy.Expr, axes: sympy.Tuple) -> sympy.Expr:
    """u for u − max(u) along ``axes`` (the shift that keeps exp from overflowing), else a."""
    for term in sympy.Add.make_args(a):
        m = -term
        if isinstance(m, Broadcast):
            m = m.args[0]
        if isinstance(m, MaxOver) and m.args[1] == axes and a - term == m.args[0]:
            return m.args[0]
    return a


def _sum_of_exp(d: sympy.Expr) -> tuple[sympy.Expr, sympy.Tuple] | None:
    """(a, axes) when d is Σ_axes exp(a) kept in its dims (maybe broadcast back)."""
    if isinstance(d, Broadcast):
        d = d.args[0]
    if isinstance(d, SumOver) and d.args[2] == sympy.true and isinstance(d.args[0], sympy.exp):
        return d.args[0].args[0], d.args[1]
    return None


def _softmax(e: sympy.Mul) -> sympy.Expr | None:
    # exp(a) / Σ exp(a) = softmax(a), and softmax ignores a shift constant along its axes.
    for f in e.args:
        if f.is_Pow and f.exp == -1 and (found := _sum_of_exp(f.base)) is not None:
            a, axes = found
            rest = list(e.args)
            if sympy.exp(a) in rest:
                rest.remove(f)
                rest.remove(sympy.exp(a))
                return sympy.Mul(*rest, Softmax(_unshift(a, axes), axes))
    return None


def _sum_of_scaled(e: SumOver) -> sympy.Expr | None:
    # Σ (c·a) = c·Σ a for a number c: the mean's 1/N and a loss's sign move out of the sum.
    coeff, rest = e.args[0].as_content_primitive()
    if rest.is_Mul:
        sign, rest = rest.as_coeff_Mul()
        coeff *= sign
    if coeff == 1:
        return None
    return coeff * e.func(rest, *e.args[1:])


def _log_softmax(e: sympy.Add) -> sympy.Expr | None:
    # a − log Σ exp(a) = log_softmax(a)
    terms = Counter(e.args)
    for t in e.args:
        inner = -t
        if isinstance(inner, sympy.log) and (found := _sum_of_exp(inner.args[0])) is not None:
            a, axes = found
            need = Counter(sympy.Add.make_args(a))
            rest = terms - Counter([t])
            if all(rest[k] >= v for k, v in need.items()):
                rest -= need
                return sympy.Add(*rest.elements(), LogSoftmax(_unshift(a, axes), axes))
    return None


# (type, rewrite): each returns the rewritten node or None. Applied bottom-up to a fixpoint.
TIDY: list[tuple[type, Callable[[Any], sympy.Expr | None]]] = [
    (Broadcast, _broadcast_inward),
    (SumOver, _sum_of_scaled),
    (sympy.Mul, _softmax),
    (sympy.Add, _log_softmax),
]


def _bottom_up(expr: sympy.Expr, fn: Callable[[sympy.Expr], sympy.Expr]) -> sympy.Expr:
    """Rebuild ``expr`` from its leaves up, applying ``fn`` to every rebuilt node."""
    memo: dict[sympy.Basic, sympy.Expr] = {}

    def walk(e: sympy.Basic) -> Any:
        if e in memo:
            return memo[e]
        if e.is_Atom or isinstance(e, (sympy.Tuple, sympy.logic.boolalg.BooleanAtom)):
            out = e
        else:
            args = tuple(walk(a) for a in e.args)
            out = fn(e.func(*args) if args != e.args else e)
        memo[e] = out
        return out

    return walk(expr)


def tidy(expr: sympy.Expr) -> sympy.Expr:
    """Apply the ``TIDY`` rewrites until none fires."""

    def step(e: sympy.Expr) -> sympy.Expr:
        for _ in range(20):  # each rule makes the expression smaller or moves a broadcast
            for cls, rule in TIDY:
                new: sympy.Expr | None = rule(e) if isinstance(e, cls) else None
                if new is not None:
                    e = tidy(new)  # the rewrite may enable rules below the top again
                    break
            else:
                return e
        return e

    return _bottom_up(expr, step)


class _NameBack:
    """Replace definitions by their names: σ(z2) -> o, w1·x1 + w2·x2 + b1 -> z1_1.

    Works bottom-up, so names nest (z2 then σ(z2) -> o); a definition that is a sum also
    matches inside a larger sum (z1 + x -> z1 + x when z1 = x·W1ᵀ + b1 is part of it).
    """

    def __init__(self) -> None:
        self.exact: dict[sympy.Expr, sympy.Symbol] = {}
        self.sums: list[tuple[Counter, sympy.Symbol]] = []

    def add(self, definition: sympy.Expr, name: sympy.Symbol) -> None:
        if definition.is_Atom:
            return
        self.exact.setdefault(definition, name)
        if definition.is_Add:
            self.sums.append((Counter(definition.args), name))

    def _one(self, e: sympy.Expr) -> sympy.Expr:
        if e in self.exact:
            return self.exact[e]
        if not e.is_Add:
            return e
        # A sum may hold a definition scaled: −x·W1ᵀ − b1 = −z1, (h·W2ᵀ + b2 − t)/4 ...
        c, prim = e.primitive()
        for scale, form in ((1, e), (c, prim), (-c, -prim)):
            if form in self.exact:
                return scale * self.exact[form]
            terms = Counter(sympy.Add.make_args(form))
            for need, name in self.sums:
                if len(need) < len(terms) and all(terms[k] >= v for k, v in need.items()):
                    return scale * sympy.Add(*(terms - need).elements(), name)
        return e

    def __call__(self, expr: sympy.Expr) -> sympy.Expr:
        if not self.exact:
            return expr
        return _bottom_up(expr, self._one)


# ================================================================ printers


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_GREEK = {"δ": r"\delta", "σ": r"\sigma", "θ": r"\theta", "ε": r"\varepsilon", "∂": r"\partial"}

# function name -> (text, LaTeX). Functions not listed print as name(args).
FUNCTIONS: dict[str, tuple[str, str]] = {
    "sigmoid": ("σ", r"\sigma"),
    "exp": ("exp", r"\exp"),
    "log": ("log", r"\log"),
    "clog": ("log", r"\log"),
    "bce": ("bce", r"\operatorname{bce}"),
    "tanh": ("tanh", r"\tanh"),
    "relu": ("relu", r"\operatorname{relu}"),
    "softplus": ("softplus", r"\operatorname{softplus}"),
    "erf": ("erf", r"\operatorname{erf}"),
    "sign": ("sign", r"\operatorname{sign}"),
    "Softmax": ("softmax", r"\operatorname{softmax}"),
    "LogSoftmax": ("log_softmax", r"\log\operatorname{softmax}"),
    "OneHot": ("onehot", r"\operatorname{onehot}"),
    # window ops print in index notation; these names are for a convolution in groups
    **{
        c.__name__: (c.op, rf"\operatorname{{{c.op}}}".replace("_", r"\_"))
        for c in WINDOWS.values()
    },
}

# Index letters by role, the order their terms print in: batch, channels, positions, taps
# (y+p−1, not p+y−1; 4c+2y+x).
_INDEX_ORDER = "bocikyxuvpq"


def _letters(ndim: int, image: tuple[str, ...] = ("b", "o", "y", "x")) -> tuple[str, ...]:
    """Index letters of an ndim tensor: an image's, or i, j, k ..."""
    return image if ndim == 4 else tuple("ijklmn"[:ndim])


# Precedences, SymPy's scale: a sub-expression binding weaker than its context gets brackets.
_ADD, _PRODUCT, _MUL, _POW, _ATOM = 40, 45, 50, 60, 1000


def _negative(e: sympy.Expr) -> bool:
    """Whether a term prints with a leading minus (−t, −2·x), not whether its value is < 0."""
    c = e.as_coeff_Mul()[0]
    return bool(c.is_Number and c.is_negative)


def _is_one_minus(e: sympy.Expr) -> bool:
    """1 − o, 1 − h²: the second factor of an activation's derivative."""
    return e.is_Add and any(a.is_Number for a in e.args)


class TextPrinter(Printer):
    """Unicode formulas: ``(δ2·W2) ⊙ h ⊙ (1 − h)``, ``Σ_batch δ2``, ``[z1 > 0]``.

    ``hadamard``: products print as ⊙ (tensor level) or · (scalar level). ``rank`` orders the
    factors of a product as the chain rule produces them: later layers first. ``shapes`` maps
    the tensors' symbols to their shapes, which index notation needs (``indexed``).
    """

    printmethod = "_symbp_text"
    _default_settings: dict[str, Any] = {"hadamard": True, "rank": None, "shapes": {}}

    # tokens; LatexPrinter overrides them
    times_hadamard, times_scalar, matmul, minus, neg = " ⊙ ", "·", "·", " − ", "−"
    transpose_mark, ones = "ᵀ", "𝟙"
    frac_delimits = False  # whether a fraction's numerator needs no brackets (LaTeX \frac)

    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.rank: Callable[[sympy.Expr], int] = self._settings["rank"] or (lambda e: 0)
        # Index notation: the indices the expression being printed is taken at (None at the
        # tensor level), the index symbols of this equation in the order they were bound, and
        # which notations were used, for the legend.
        self._at: tuple[sympy.Expr, ...] | None = None
        self._bound: dict[sympy.Symbol, int] = {}
        self.used: dict[str, Any] = {}

    # ------------------------------------------------------------ layout hooks

    def paren(self, s: str) -> str:
        return f"({s})"

    def group(self, e: sympy.Expr, level: int) -> str:
        s = self._print(e)
        return self.paren(s) if self.prec(e) < level else s

    def prec(self, e: sympy.Expr) -> int:
        if self._at is not None and isinstance(e, TensorOp) and not isinstance(e, Window):
            # indexed: a broadcast or reshape is its argument, anything else (δ2·W2)[b,k]
            return self.prec(e.args[0]) if isinstance(e, (Broadcast, Reshape)) else _ATOM
        return _prec(e)

    def frac(self, num: str, den: str, den_expr: sympy.Expr) -> str:
        # den comes printed with its own brackets if it needs them; a product gets one pair
        single = len(sympy.Mul.make_args(den_expr)) == 1 and not _negative(den_expr)
        return f"{num}/{den}" if single else f"{num}/{self.paren(den)}"

    def power(self, base: str, exp: sympy.Expr) -> str:
        if exp.is_Integer and exp > 0:
            return base + str(exp).translate(_SUPERSCRIPT)
        return f"{base}^{self.group(exp, _ATOM)}"

    def sqrt(self, arg: sympy.Expr) -> str:
        return "√" + self.group(arg, _ATOM)

    def call(self, name: str, args: str) -> str:
        return f"{name}({args})"

    def sum_sign(self, kind: int, axes: tuple[int, ...]) -> str:
        if kind == _SUM_ALL:
            return "Σ"
        if kind == _SUM_BATCH:
            return "Σ_batch"
        return "Σ_dim" + ",".join(map(str, axes))

    def symbol(self, name: str) -> str:
        return name

    def indicator(self, cond: str) -> str:
        return f"[{cond}]"

    # ------------------------------------------------------------ atoms

    def emptyPrinter(self, expr: Any) -> str:
        return sympy.sstr(expr)

    def _print_Symbol(self, e: sympy.Symbol) -> str:
        shape = self._settings["shapes"].get(e)
        if self._at is None or not shape:
            return self.symbol(e.name)
        # broadcasting lines the shapes up on the right
        return self.symbol(e.name) + self.subscript(self._at[len(self._at) - len(shape) :])

    def _print_Integer(self, e: sympy.Integer) -> str:
        return str(e.p)

    def _print_Rational(self, e: sympy.Rational) -> str:
        sign = self.neg if e.p < 0 else ""
        return sign + self.frac(str(abs(e.p)), str(e.q), sympy.Integer(e.q))

    def _print_Float(self, e: sympy.Float) -> str:
        return f"{float(e):.10g}".replace("-", self.neg)

    # ------------------------------------------------------------ arithmetic

    def _print_Add(self, e: sympy.Add) -> str:
        terms = sorted(e.args, key=self._term_key)
        out = ""
        for i, t in enumerate(terms):
            if _negative(t):
                out += (self.neg if i == 0 else self.minus) + self.group(-t, _MUL)
            else:
                out += ("" if i == 0 else " + ") + self.group(t, _ADD + 1)
        return out

    def _term_key(self, t: sympy.Expr) -> tuple:
        # 1 − o, x·W1ᵀ + b1, w5·h1 + w6·h2 + b3: numbers, then products, then plain symbols
        kind = 0 if t.is_Number else 1 if _structural(t) else 3 if t.is_Symbol else 2
        return (_negative(t), kind, default_sort_key(t))

    def _print_Mul(self, e: sympy.Mul) -> str:
        coeff, factors = e.as_coeff_mul()
        sign = ""
        if coeff.is_negative:
            sign, coeff = self.neg, -coeff
        num: list[sympy.Expr] = []
        den: list[sympy.Expr] = []
        for f in factors:
            if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
                den.append(f.base ** (-f.exp))
            else:
                num.append(f)
        head = ""
        if coeff.is_Rational:
            if coeff.q != 1:
                den.insert(0, sympy.Integer(coeff.q))
            if coeff.p != 1:
                head = str(coeff.p)
        elif coeff != 1:
            head = self._print(coeff)
        # √2, π: numbers scale a tensor (·), they are not multiplied entry by entry (⊙)
        consts = [f for f in num if f.is_number]
        num = [f for f in num if not f.is_number]
        if consts:
            shown = [self.group(c, _MUL) for c in consts]
            head = self.times_scalar.join([head, *shown] if head else shown)
        hadamard = self._settings["hadamard"] and self._at is None  # indexed: numbers
        join = self.times_hadamard if hadamard else self.times_scalar
        # In a Hadamard product a matrix product or a sum gets brackets: (δ2·W2) ⊙ h.
        level = _MUL if join is self.times_scalar else _MUL + 1
        if len(num) == 1:  # Σ (o − t)²/2: a lone factor needs no ⊙ brackets
            level = _ADD if den and not head and self.frac_delimits else _PRODUCT
        ordered = self._order(num)
        sums = [f for f in ordered if f.has(Window, SumOver)]
        last = self._at is not None and len(sums) == 1 and not den
        if last:  # indexed, a·Σ_{y,x} ...: the Σ last, where it needs no brackets
            ordered = [f for f in ordered if f is not sums[0]] + sums
        parts = [self.group(f, _PRODUCT if last and f is sums[0] else level) for f in ordered]
        body = join.join(parts)
        if head:
            body = head + (self.times_scalar + body if body else "")
        body = body or "1"
        if den:
            d = sympy.Mul(*den)
            dparts = [self.group(f, _MUL + 1) for f in self._order(den)]
            body = self.frac(body, self.times_scalar.join(dparts), d)
        return sign + body

    def _order(self, factors: list[sympy.Expr]) -> list[sympy.Expr]:
        """Chain-rule order: (δ·W) first, then (o − t), then o, (1 − o), then earlier layers."""

        def key(f: sympy.Expr) -> tuple:
            if _structural(f):
                return (0, 0, 0, 0, default_sort_key(f))
            if f.is_Add and not _is_one_minus(f):
                return (1, 0, 0, 0, default_sort_key(f))
            # s before 1 − s, bigger before smaller: σ(u)·(1 − σ(u))·w5 when fully expanded
            core = f
            if _is_one_minus(f):  # 1 − h² -> h²
                core = sympy.Add(*(a for a in f.args if not a.is_Number))
                core = -core if _negative(core) else core
            size = sum(1 for _ in sympy.preorder_traversal(core))
            return (2, -self.rank(f), -size, _is_one_minus(f), default_sort_key(f))

        weight = [f for f in factors if f.is_Symbol and self.rank(f) == _RANK_PARAM]
        if len(factors) == 2 and weight:  # w5·h1, w1·x1, w5·σ(...): the weight first, as in w·x
            return [weight[0], *(f for f in factors if f is not weight[0])]
        if all(f.is_Symbol for f in factors):
            return sorted(factors, key=lambda f: (self.rank(f) != _RANK_PARAM, key(f)))
        return sorted(factors, key=key)

    def _print_Pow(self, e: sympy.Pow) -> str:
        base, exp = e.as_base_exp()
        if exp == sympy.Rational(1, 2):
            return self.sqrt(base)
        if exp.is_Number and exp.is_negative:
            return self.frac("1", self.group(base ** (-exp), _MUL + 1), base ** (-exp))
        b = self.group(base, _POW + 1)
        return self.power(b, exp)

    # ------------------------------------------------------------ functions

    def _print_Function(self, e: sympy.Function) -> str:
        name = type(e).__name__
        n_args = e.tensors if isinstance(e, TensorOp) else len(e.args)
        shown = FUNCTIONS.get(name, (name, rf"\operatorname{{{name}}}"))[self._which]
        return self.call(shown, self._args(e.args[:n_args]))

    _which = 0  # index into FUNCTIONS entries: 0 text, 1 LaTeX

    def _print_Heaviside(self, e: sympy.Heaviside) -> str:
        # ReLU's derivative: Heaviside(z, 0) is 0 at 0 (PyTorch's convention), i.e. [z > 0]
        arg = self._print(e.args[0])
        h0 = e.args[1] if len(e.args) > 1 else sympy.Rational(1, 2)
        if h0 == 0:
            return self.indicator(f"{arg} > 0")
        if h0 == 1:
            return self.indicator(f"{arg} ≥ 0" if self._which == 0 else rf"{arg} \geq 0")
        return self.call("H", arg)

    def _print_Abs(self, e: sympy.Abs) -> str:
        return f"|{self._print(e.args[0])}|"

    def _print_Max(self, e: sympy.Max) -> str:  # the clamp in BCELoss's log: max(1e-12, o)
        return self.call("max" if self._which == 0 else r"\max", self._args(e.args))

    def _print_Min(self, e: sympy.Min) -> str:
        return self.call("min" if self._which == 0 else r"\min", self._args(e.args))

    def _args(self, args: Sequence[sympy.Expr]) -> str:
        return ", ".join(self._print(a) for a in args)

    def _print_Pi(self, e: Any) -> str:
        return ("π", r"\pi")[self._which]

    def _print_Exp1(self, e: Any) -> str:
        return "e"

    def _print_Dot(self, e: Dot) -> str:
        a, b = e.args
        # (z1 ⊙ σ(z1))·W2ᵀ: a product inside a matrix product keeps its brackets
        return self.group(a, _MUL + 1) + self.matmul + self.group(b, _MUL + 1)

    def _print_Permute(self, e: Permute) -> str:
        a, perm = e.args
        if len(perm) == 2:
            return self.group(a, _ATOM) + self.transpose_mark
        return self.call("permute", f"{self._print(a)}, {tuple(_axes(perm))}")

    def _print_SumOver(self, e: SumOver) -> str:
        a, axes, _, kind = e.args
        inner = self._print(a) if isinstance(a, SumOver) else self.group(a, _POW)  # Σ Σ_dim1
        return f"{self.sum_sign(int(kind), _axes(axes))} {inner}"

    def _print_MaxOver(self, e: MaxOver) -> str:
        a, axes, _, whole = e.args
        dims = "" if whole else ",".join(map(str, _axes(axes)))
        name = ("max_dim" + dims, rf"\max_{{\text{{dim }}{dims}}}")[self._which] if dims else None
        return self.call(name or ("max", r"\max")[self._which], self._print(a))

    def _print_Relational(self, e: sympy.core.relational.Relational) -> str:
        op = {"==": "=", ">=": "≥", "<=": "≤", "!=": "≠"}.get(e.rel_op, e.rel_op)
        if self._which:
            op = {"=": "=", "≥": r"\geq", "≤": r"\leq", "≠": r"\neq"}.get(op, op)
        return f"{self._print(e.lhs)} {op} {self._print(e.rhs)}"

    def _print_Piecewise(self, e: sympy.Piecewise) -> str:
        # max's tie mask: Piecewise((1, z = max z), (0, True)) is the indicator [z = max z]
        (value, cond), *rest = e.args
        if value == 1 and len(rest) == 1 and rest[0] == (0, sympy.true):
            return self.indicator(self._print(cond))
        return self.cases(
            [(self._print(v), None if c == sympy.true else self._print(c)) for v, c in e.args]
        )

    def cases(self, rows: list[tuple[str, str | None]]) -> str:
        shown = [f"{v} if {c}" if c is not None else f"{v} otherwise" for v, c in rows]
        return "{" + "; ".join(shown) + "}"

    def _print_Broadcast(self, e: Broadcast) -> str:
        return self._print(e.args[0])

    def _print_Reshape(self, e: Reshape) -> str:
        a, shape = e.args
        inner = self.shape_of(a)
        if len(inner) > 2 and len(shape) == 2 and inner[0] == shape[0]:  # Flatten
            self.used.setdefault("flatten", (a, inner))
            return self.call(("flatten", r"\operatorname{flatten}")[self._which], self._print(a))
        return self._print(a)  # [1, n] -> [n] and the like

    # ------------------------------------------------------------ index notation
    #
    # A formula holding a convolution or a pooling prints in index notation: every tensor
    # carries its indices, z1[b,o,y,x] = Σ_{i,p,q} W1[o,i,p,q]·x[b,i,y+p−1,x+q−1] + b1[o].
    # Indices are SymPy integer symbols and their affine combinations; each window op binds
    # fresh ones for its sum (``_index_<Class>``); ops without an index form print as the
    # tensor they make, indexed: (δ2·W2)[b,4c+2y+x].

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
        return "[" + ",".join(self.index(i) for i in idx) + "]"

    def index_name(self, s: sympy.Symbol) -> str:
        return s.name

    def index(self, e: sympy.Expr) -> str:
        """An index: 2y+p−1, (u−p+1)/2, 4c+2y+x, outer indices first, the constant last."""
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
            body = str(mag) if v is None else ("" if mag == 1 else str(mag)) + self.index_name(v)
            out += (self.neg if c < 0 else "+" if out else "") + body
        if den != 1:
            out = (self.paren(out) if len(terms) > 1 else out) + f"/{den}"
        return out

    def bigop(self, op: str, names: Sequence[sympy.Symbol]) -> str:
        """Σ_{i,p,q}, max_{p,q}, argmax_{p,q}, followed by a space."""
        sign = {"sum": "Σ", "max": "max", "argmax": "argmax"}[op]
        return sign + "_{" + ",".join(self.index_name(n) for n in names) + "} "

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
        if len(shape) < 3:  # Σ_batch δ2 reads better than Σ_{b} δ2[b,k]
            return None
        kept = iter(idx)
        inner = []
        for k in range(len(shape)):
            if k not in _axes(axes):
                inner.append(next(kept))
                continue
            if keepdim == sympy.true:
                next(kept)
            inner.append(self.index_vars(_letters(len(shape))[k])[0])
        summed = [inner[k] for k in _axes(axes)]
        return self.bigop("sum", summed) + self.at(a, inner, _MUL)

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

    def _print_Fill(self, e: Fill) -> str:
        value = e.args[0]
        if value == 0:
            return "0"
        if value == 1:
            return self.ones
        return self.group(value, _MUL) + self.times_scalar + self.ones


class LatexPrinter(TextPrinter):
    """The same layout as ``TextPrinter`` in LaTeX: ``\\delta_{2} \\odot``, ``W_{1}^{\\top}``."""

    printmethod = "_symbp_latex"
    times_hadamard, times_scalar, matmul, minus, neg = (
        r" \odot ",
        r" \cdot ",
        r" \cdot ",
        " - ",
        "-",
    )
    transpose_mark, ones = r"^{\top}", r"\mathbf{1}"
    frac_delimits = True
    _which = 1

    def paren(self, s: str) -> str:
        return rf"\left({s}\right)"

    def frac(self, num: str, den: str, den_expr: sympy.Expr) -> str:
        return rf"\frac{{{num}}}{{{den}}}"

    def power(self, base: str, exp: sympy.Expr) -> str:
        return f"{{{base}}}^{{{self._print(exp)}}}"

    def sqrt(self, arg: sympy.Expr) -> str:
        return rf"\sqrt{{{self._print(arg)}}}"

    def call(self, name: str, args: str) -> str:
        return rf"{name}\left({args}\right)"

    def sum_sign(self, kind: int, axes: tuple[int, ...]) -> str:
        if kind == _SUM_ALL:
            return r"\sum"
        if kind == _SUM_BATCH:
            return r"\sum_{\text{batch}}"
        return r"\sum_{\text{dim }" + ",".join(map(str, axes)) + "}"

    def symbol(self, name: str) -> str:
        return latex_name(name)

    def indicator(self, cond: str) -> str:
        return rf"\left[{cond}\right]"

    def cases(self, rows: list[tuple[str, str | None]]) -> str:
        otherwise = r"\text{otherwise}"
        shown = [f"{v} & {c if c is not None else otherwise}" for v, c in rows]
        return r"\begin{cases}" + r" \\ ".join(shown) + r"\end{cases}"

    def emptyPrinter(self, expr: Any) -> str:
        return sympy.latex(expr)

    def _print_Abs(self, e: sympy.Abs) -> str:
        return rf"\left|{self._print(e.args[0])}\right|"

    def _print_Permute(self, e: Permute) -> str:
        a, perm = e.args
        if len(perm) == 2:
            return "{" + self.group(a, _ATOM) + "}" + self.transpose_mark
        return super()._print_Permute(e)

    def index_name(self, s: sympy.Symbol) -> str:
        return s.name.replace("′", "'")

    def bigop(self, op: str, names: Sequence[sympy.Symbol]) -> str:
        sign = {"sum": r"\sum", "max": r"\max", "argmax": r"\operatorname{argmax}"}[op]
        space = r"\, " if op == "argmax" else " "  # an operatorname's limits sit beside it
        return sign + "_{" + ",".join(self.index_name(n) for n in names) + "}" + space

    def mean(self, body: str, divisor: str) -> str:
        return rf"\frac{{1}}{{{divisor}}} {body}"

    def indexed_name(self, name: str, sub: str) -> str:
        if name.startswith("∂E/∂"):
            return rf"\frac{{\partial E}}{{\partial {latex_name(name[4:])}{sub}}}"
        return latex_name(name) + sub


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


def _prec(e: sympy.Expr) -> int:
    """How tightly ``e`` binds when printed (brackets go around weaker sub-expressions)."""
    if isinstance(e, (Broadcast, Reshape)):
        return _prec(e.args[0])
    if e.is_Add or _negative(e):
        return _ADD
    if isinstance(e, (Dot, SumOver, Window)):  # Window: its Σ_{i,p,q} in index notation
        return _PRODUCT
    if e.is_Mul or (e.is_Rational and not e.is_Integer):
        return _MUL
    if e.is_Pow:
        return _MUL if (e.exp.is_Number and e.exp.is_negative) else _POW
    return _ATOM


_STRUCTURAL = (Dot, Permute, SumOver, MaxOver, Softmax, LogSoftmax, Window)


def _structural(e: sympy.Expr) -> bool:
    return e.has(*_STRUCTURAL)


def _indexed(expr: sympy.Expr, shapes: Mapping[sympy.Symbol, tuple]) -> bool:
    """Whether ``expr`` prints in index notation: it convolves or pools, or it sums,
    broadcasts or reshapes images (a silent broadcast of [B, C] to [B, C, H, W] misleads)."""
    if expr.has(Window):
        return True
    sums = expr.atoms(SumOver)
    images = expr.atoms(Broadcast, Reshape)  # (not a flatten: that prints as flatten(s1))
    return any(len(shape_of(e.args[0], shapes)) > 2 for e in sums) or any(
        len(shape_of(e, shapes)) > 2 for e in images
    )


def _index_legend(used: Mapping[str, Any]) -> list[str]:
    """What the index notation of ``used`` means (``TextPrinter.used``), one line each."""
    lines = []
    if "flatten" in used:
        a, shape = used["flatten"]
        pr = TextPrinter()
        idx = pr.index_vars(*(("b", "c", "y", "x") if len(shape) == 4 else "bijkl"[: len(shape)]))
        flat = sympy.Integer(0)
        for i, d in zip(idx[1:], shape[1:]):
            flat = flat * d + i
        name = pr.doprint(a)
        lines.append(
            f"flatten({name})[{idx[0]},{pr.index(flat)}] = {name}{pr.subscript(idx)}: "
            f"each sample's entries in one row"
        )
    if "unflatten" in used:
        a, shape = used["unflatten"]
        pr = TextPrinter()
        idx = pr.index_vars(*_letters(len(shape), ("b", "c", "y", "x")))
        flat = sympy.Integer(0)
        for i, d in zip(idx[1:], shape[1:]):
            flat = flat * d + i
        name = pr.doprint(a)
        lines.append(
            f"unflatten({name}){pr.subscript(idx)} = ({name})[{idx[0]},{pr.index(flat)}]: each "
            f"sample's row back in shape [{','.join(map(str, shape[1:]))}]"
        )
    if "outside" in used or "stride" in used:
        whole = " or is no whole number" if "stride" in used else ""
        lines.append(
            f"Σ_{{p,q}} sums over all values of p and q, leaving out every term whose index "
            f"falls outside its tensor{whole} (zero padding)"
        )
    if "argmax" in used:
        lines.append(
            "argmax_{p,q} the position of the window's first maximum in row-major (p, q) "
            "order, which alone receives the window's gradient (ties as in PyTorch)"
        )
    if "count" in used:
        lines.append("n[y,x] the number of window (y, x)'s entries inside the input")
    return lines


def latex_name(name: str) -> str:
    """LaTeX for symbp's symbol names: W1 -> W_{1}, δ2 -> \\delta_{2}, h1_2 -> h_{1,2}."""
    if name.startswith("∂E/∂"):
        return rf"\frac{{\partial E}}{{\partial {latex_name(name[4:])}}}"
    m = re.fullmatch(r"([^\W\d_]+)(\d*)(?:_(\d+))?(?:\[([\d,]+)\])?(′*)", name)
    if m is None:
        return rf"\mathrm{{{name}}}"
    base, digits, sub2, bracket, primes = m.groups()
    base = _GREEK.get(base, sympy.latex(sympy.Symbol(base)) if len(base) > 1 else base)
    subs = ",".join(s for s in (digits, sub2, bracket) if s)
    return base + (f"_{{{subs}}}" if subs else "") + "'" * len(primes)


def to_text(expr: sympy.Expr, hadamard: bool = True, rank: Callable | None = None) -> str:
    """Print a formula as Unicode text (⊙ for elementwise products unless ``hadamard=False``)."""
    return TextPrinter({"hadamard": hadamard, "rank": rank}).doprint(expr)


def to_latex(expr: sympy.Expr, hadamard: bool = True, rank: Callable | None = None) -> str:
    """Print a formula as LaTeX (\\odot for elementwise products unless ``hadamard=False``)."""
    return LatexPrinter({"hadamard": hadamard, "rank": rank}).doprint(expr)


# ================================================================ naming the model's tensors

# Ranks order the factors of printed products: later layers first, then weights, then data.
_RANK_DATA, _RANK_PARAM, _RANK_LAYER, _RANK_DELTA = 0, 1, 10, 10_000

_AUTO_NAME = re.compile(r"(param|t|in)\d+(#\d+)?")
_SHORT = {"weight": "W", "bias": "b"}


def _symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, real=True)


@dataclass
class _Tensor:
    """A named tensor of the model: a leaf, a layer output, or an error signal."""

    symbol: sympy.Symbol
    node: Node | None
    about: str  # what it is, for the legend: "input", "linear1.weight", "output of linear1"
    rank: int
    param: str | None = None  # the full parameter name, for parameters
    attr: str | None = None  # a module parameter's attribute: weight, bias ...
    registered: str | None = None  # the parameter's name in Parameter._registry


class _Namer:
    """Compact names for the tensors of one loss graph, derived from the model.

    Parameters: ``W1, b1`` for ``linear1.weight, linear1.bias`` (modules numbered in the order
    the data flows through them; no number when there is one); other parameters keep their
    name. Layer outputs: ``z{k}`` for the affine output of layer k, ``h{k}`` (or ``h``) for a
    hidden activation, ``o`` for the model's output. Data: ``x`` inputs, ``t`` targets,
    ``y`` integer labels. The loss is ``E``.
    """

    def __init__(self, loss: Node, wrt: Sequence[tuple[str | None, Node]], given: Mapping):
        self.loss = loss
        self.order = toposort([loss])
        self.tensors: dict[Node, _Tensor] = {}
        self.groups: dict[Node, str] = {}  # parameter -> its layer's number ("" if one layer)
        self._taken: set[str] = {"E"}
        self._name_params(wrt)
        self._name_data(given)
        self.batch = self._batch_size()

    # ------------------------------------------------------------ leaves

    def _take(self, name: str) -> str:
        while name in self._taken:
            name += "′"
        self._taken.add(name)
        return name

    def _name_params(self, wrt: Sequence[tuple[str | None, Node]]) -> None:
        def split(full: str | None) -> tuple[str, str] | None:
            """(module path, attribute) of a module's parameter; a root Linear's are bare."""
            if not full or _AUTO_NAME.fullmatch(full):
                return None
            path, _, attr = full.rpartition(".")
            attr = attr.split("#")[0]  # a second model's parameter of the same name: name#2
            return (path, attr) if path or attr in _SHORT else None

        modules: dict[str, int] = {}
        for full, _ in wrt:
            if (pa := split(full)) is not None:
                modules.setdefault(pa[0], len(modules) + 1)
        # A parameter named like one of another model gets "#2" (names are global); shown
        # without it unless that makes two alike.
        bare = Counter(re.sub(r"#\d+$", "", f) for f, _ in wrt if f)
        loose = 0
        for full, node in wrt:
            pa = split(full)
            if pa is not None:
                k = "" if len(modules) == 1 else str(modules[pa[0]])
                name = _SHORT.get(pa[1], pa[1]) + k
                self.groups[node] = k
            elif full and full.isidentifier() and not _AUTO_NAME.fullmatch(full):
                name = full  # given by the user: params={"w": w}
                self.groups[node] = ""
            else:
                loose += 1
                name = f"p{loose}"
                self.groups[node] = str(loose)
            shown = re.sub(r"#\d+$", "", full) if full else name
            shown = shown if bare[shown] == 1 else full or name
            about = shown if pa is not None else "parameter"
            attr = pa[1] if pa is not None else None
            sym = _symbol(self._take(name))
            self.tensors[node] = _Tensor(sym, node, about, _RANK_PARAM, shown, attr, full)

    def is_layer(self, n: Node) -> bool:
        """A layer output worth a name: what a module returned, or an activation function
        applied outside modules (``symbp.sigmoid(self.fc(x))``)."""
        if n.op == "input" or n is self.loss:
            return False
        if n in LABELS:
            return True
        # an elementwise node (only those carry a Formula) applying a named activation
        return isinstance(n.arg, Formula) and len(n.src) == 1 and n.arg.label in _activations()

    def _name_data(self, given: Mapping[Node, str]) -> None:
        # Inputs feed the model (its labelled layers), the rest feeds only the loss: targets.
        # A model without modules: the first data the loss reads is the input.
        labelled = [n for n in self.order if n in LABELS and n.op != "input" and n is not self.loss]
        model_part = set(toposort(labelled))
        masks = [n for n in self.order if printing(n).mask]
        seeds = {m.src[0] for m in masks}  # a dropout mask's seed is no data of the model
        data = [n for n in self.order if n.op == "input" and n not in self.tensors.keys() | seeds]
        floats = [n for n in data if n.dtype.kind == "f"]
        count: Counter = Counter()
        for n in data:
            name = given.get(n)
            if name and (not name.isidentifier() or _AUTO_NAME.fullmatch(name)):
                name = None
            if n.dtype.kind in "iub":
                about, base = "labels", name or "y"
            elif (n in model_part) if labelled else n is floats[0]:
                about, base = "input", name or "x"
            else:
                about, base = "target", name or "t"
            count[base] += 1
            sym = _symbol(self._take(base if count[base] == 1 else f"{base}{count[base]}"))
            self.tensors[n] = _Tensor(sym, n, about, _RANK_DATA)
        for k, n in enumerate(masks):  # dropout: h ⊙ m/(1 − p), m a tensor of 0s and 1s
            sym = _symbol(self._take("m" if len(masks) == 1 else f"m{k + 1}"))
            about = f"dropout mask: 1 with probability {n.arg[0]:g}, else 0"
            self.tensors[n] = _Tensor(sym, n, about, _RANK_DATA)

    def _batch_size(self) -> Any:
        for n in self.order:
            if n.op == "input" and any(isinstance(d, sympy.Expr) for d in n.shape):
                return B
        xs = [t.node for t in self.tensors.values() if t.about == "input" and t.node is not None]
        return xs[0].shape[0] if xs and xs[0].ndim >= 2 else None

    def sum_kind(self, node: Node) -> int:
        x = node.src[0]
        axes = node.arg[0]
        if len(axes) == x.ndim:
            return _SUM_ALL
        if axes == (0,) and self.batch is not None and x.shape[0] == self.batch:
            return _SUM_BATCH
        return _SUM_AXES

    # ------------------------------------------------------------ layer outputs

    def name_layers(
        self, defs: Mapping[Node, sympy.Expr], temp: Mapping[Node, sympy.Symbol]
    ) -> dict[sympy.Symbol, sympy.Symbol]:
        """Name the labelled nodes from their definitions (written in the placeholder symbols
        ``temp``); returns the renaming placeholder -> name."""
        users = consumers(self.order)
        layers = set(defs)
        roles: dict[Node, tuple[str, str]] = {}
        for n, d in defs.items():
            if _affine(d):  # z_k, k from the parameters it reads
                ks = {
                    self.groups[t.node]
                    for t in self.tensors.values()
                    if t.node in self.groups and t.symbol in d.free_symbols
                }
                roles[n] = ("z", ks.pop() if len(ks) == 1 else "")
            elif not self._reaches_layer(n, layers, users):
                roles[n] = ("o", "")
            elif _pooled(d):  # s_k: layer k's output subsampled
                ks = {roles[m][1] for m in roles if temp[m] in d.free_symbols}
                roles[n] = ("s", ks.pop() if len(ks) == 1 else "")
            else:  # h_k after z_k
                zs = [m for m in roles if roles[m][0] == "z" and temp[m] in d.free_symbols]
                roles[n] = ("h", roles[zs[0]][1] if len(zs) == 1 else "")
        one_hidden = sum(r[0] == "h" for r in roles.values()) == 1
        rename = {}
        for n, (base, k) in roles.items():
            sym = _symbol(self._take(base if base == "h" and one_hidden else base + k))
            about = f"output of {_describe(LABELS[n]) if n in LABELS else n.arg.label}"
            self.tensors[n] = _Tensor(sym, n, about, _RANK_LAYER + len(self.tensors))
            rename[temp[n]] = sym
        return rename

    def _reaches_layer(self, n: Node, layers: set[Node], users: Mapping) -> bool:
        stack, seen = list(users.get(n, [])), set()
        while stack:
            u = stack.pop()
            if u in seen:
                continue
            seen.add(u)
            if u in layers:
                return True
            stack.extend(users.get(u, []))
        return False

    def symbol_of(self, node: Node) -> sympy.Symbol:
        return self.tensors[node].symbol

    def rank(self) -> Callable[[sympy.Expr], int]:
        ranks = {t.symbol: t.rank for t in self.tensors.values()}

        def rank(e: sympy.Expr) -> int:
            return max((ranks.get(s, _RANK_DATA) for s in e.free_symbols), default=-1)

        return rank


def _activations() -> set[str]:
    from symbp.api import _CUSTOM  # custom ops registered with symbp.elementwise

    return {"sigmoid", "tanh", "relu", "gelu", "silu", "softplus", *MATH_ACTIVATIONS, *_CUSTOM}


def _affine(d: sympy.Expr) -> bool:
    """x·Wᵀ + b, x·Wᵀ, or a convolution (plus a bias): a layer's pre-activation."""
    return isinstance(d, (Dot, Conv)) or (
        d.is_Add and any(isinstance(a, (Dot, Conv)) for a in d.args)
    )


def _pooled(d: sympy.Expr) -> bool:
    """A pooling: a max or average pool, or a mean over an image's positions."""
    return d.has(MaxPool, AvgPool) or any(_axes(s.args[1]) == (2, 3) for s in d.atoms(SumOver))


def _describe(path: str) -> str:
    return f"layer {path}" if path.replace(".", "").isdigit() else path


# ================================================================ the formulas


class Equation(NamedTuple):
    """One printed equation: ``lhs = expr`` (SymPy), e.g. δ2 = (o − t)*o*(1 − o)."""

    lhs: sympy.Symbol
    expr: sympy.Expr


class Formulas:
    """The gradient of a loss by every parameter, as formulas (see ``formulas``).

    ``forward`` defines the named layer outputs and the loss, ``backward`` the error signals
    and the gradients in the order backpropagation computes them; ``grads`` maps each
    parameter name to its gradient's equation. All are SymPy (``Equation.expr``).
    """

    def __init__(
        self,
        loss: Node,
        wrt: Sequence[tuple[str | None, Node]],
        values: Mapping[Node, np.ndarray],
        given: Mapping[Node, str],
    ) -> None:
        self.derived: Derived = derive(loss, [n for _, n in wrt])
        self._values = dict(values)
        self._namer = namer = _Namer(loss, wrt, given)
        self._wrt = list(wrt)
        self.forward: list[Equation] = []
        self.backward: list[Equation] = []
        self.grads: dict[str, Equation] = {}
        self._nameback = _NameBack()
        self._build_forward()
        self._build_backward()
        self._rank = namer.rank()
        self._scalar: _ScalarLevel | None = None

    # ------------------------------------------------------------ building

    def _expr(self, node: Node, env: dict[Node, sympy.Expr]) -> sympy.Expr:
        for n in toposort([node], known=env):
            if n not in env:
                if n.op == "input":
                    raise KeyError(f"formulas: leaf '{n.arg}' has no name")
                e = _express(n, [env[s] for s in n.src], self._namer)
                env[n] = self._nameback(tidy(e))
        return env[node]

    def _build_forward(self) -> None:
        namer = self._namer
        env: dict[Node, sympy.Expr] = {n: t.symbol for n, t in namer.tensors.items()}
        # Definitions of the labelled layer outputs, each in terms of the earlier ones (held
        # by placeholders until every definition is known: is this the last layer? ...).
        defs: dict[Node, sympy.Expr] = {}
        temp: dict[Node, sympy.Symbol] = {}
        for n in namer.order:
            if namer.is_layer(n):
                d = self._expr(n, env)
                if d.is_Symbol or (isinstance(d, (Reshape, Broadcast)) and d.args[0].is_Symbol):
                    continue  # Identity, Flatten: an alias, not a new quantity
                defs[n] = d
                temp[n] = env[n] = sympy.Dummy(real=True)
                self._nameback.add(d, temp[n])
        loss = self._expr(namer.loss, env)
        rename = namer.name_layers(defs, temp)
        self._nameback = _NameBack()
        for n, d in defs.items():
            sym = rename[temp[n]]
            self.forward.append(Equation(sym, d.xreplace(rename)))
            self._nameback.add(d.xreplace(rename), sym)
        self.forward.append(Equation(_symbol("E"), loss.xreplace(rename)))

    def _deltas(self) -> dict[Node, str]:
        """Name the error signals: the elementwise (or pooling-gradient) backward nodes that
        feed a matrix product or a convolution's gradient (or several nodes). δk is the one
        the gradient of layer k's weight reads."""
        d = self.derived
        order = toposort(d.outputs)
        forward = set(toposort([d.outputs[0]]))
        users = consumers(order)
        grads = set(d.grads)
        cands = [
            n
            for n in order
            if printing(n).delta
            and n not in forward
            and n not in grads
            and (any(printing(u).reads_delta for u in users[n]) or len(users[n]) > 1)
        ]
        names: dict[Node, str] = {}
        taken: set[str] = set()
        for (_, w), g in zip(self._wrt, d.grads):
            stack = [g]
            while stack:  # down through structural ops to the elementwise δ it reads
                n = stack.pop()
                if n in cands:
                    if n not in names:
                        name = "δ" + self._namer.groups[w]
                        while name in taken:
                            name += "′"
                        names[n] = name
                        taken.add(name)
                elif printing(n).to_delta:
                    stack.extend(n.src)
        fresh = iter(range(1, 10**6))
        for n in cands:
            if n not in names:
                while (name := f"δ{next(fresh)}") in taken:
                    pass
                names[n] = name
                taken.add(name)
        return {n: names[n] for n in order if n in names}

    def _build_backward(self) -> None:
        namer = self._namer
        d = self.derived
        env: dict[Node, sympy.Expr] = {n: t.symbol for n, t in namer.tensors.items()}
        delta_eqs: list[Equation] = []
        for i, (n, name) in enumerate(self._deltas().items()):
            sym = _symbol(name)
            delta_eqs.append(Equation(sym, sympy.factor_terms(self._expr(n, env))))
            env[n] = sym
            z = "z" + name[1:]
            about = f"∂E/∂{z}, error signal" if z in self.symbols else "backward intermediate"
            namer.tensors[n] = _Tensor(sym, n, about, _RANK_DELTA + i)
        grads: list[Equation] = []
        for (_, w), g in zip(self._wrt, d.grads):
            t = namer.tensors[w]
            lhs = _symbol(f"∂E/∂{t.symbol.name}")
            eq = Equation(lhs, sympy.factor_terms(self._expr(g, env)))
            self.grads[t.param or t.symbol.name] = eq
            grads.append(eq)
        # Textbook order: each δ, then the gradients that only need the δ's printed so far.
        delta_syms = {e.lhs for e in delta_eqs}
        shown: set[sympy.Symbol] = set()
        pending = list(grads)
        for eq in delta_eqs:
            self.backward.append(eq)
            shown.add(eq.lhs)
            ready = [g for g in pending if (g.expr.free_symbols & delta_syms) <= shown]
            self.backward.extend(ready)
            pending = [g for g in pending if g not in ready]
        self.backward.extend(pending)
        self._unreached = {namer.symbol_of(w) for w in d.unreached}

    # ------------------------------------------------------------ reading

    @property
    def equations(self) -> list[Equation]:
        """Every equation, forward then backward, in the order they are computed."""
        return self.forward + self.backward

    @property
    def symbols(self) -> dict[str, sympy.Symbol]:
        """The named tensors by name: ``f.symbols["W1"]``."""
        return {t.symbol.name: t.symbol for t in self._namer.tensors.values()}

    def legend(self) -> dict[sympy.Symbol, tuple[str, str]]:
        """What each name stands for, and its type: W1 -> ("linear1.weight", "f64[2,2]")."""
        return {
            t.symbol: (t.about, type_str(t.node) if t.node is not None else "")
            for t in self._namer.tensors.values()
        }

    def grad(self, param: str) -> Equation:
        """The gradient equation of one parameter, by name (``linear1.weight``) or short
        name (``W1``)."""
        return list(self.grads.values())[self._param_index(param)]

    def _param_index(self, param: str) -> int:
        for k, (_, w) in enumerate(self._wrt):
            t = self._namer.tensors[w]
            if param in (t.param, t.registered, t.symbol.name):
                return k
        raise KeyError(f"no parameter {param!r}; the parameters are {', '.join(self.grads)}")

    def evaluate(self, values: Mapping[str, Any] | None = None) -> dict[sympy.Symbol, np.ndarray]:
        """Evaluate every equation with NumPy, in order, from the leaves' values.

        The leaves' values are those of the eager forward pass; ``values`` (by name: ``"x"``,
        ``"W1"`` or ``"linear1.weight"``) adds or overrides some. Returns the value of every
        left-hand side, gradients included (``f.evaluate()[f.grad("W1").lhs]``).
        """
        env: dict[sympy.Symbol, Any] = {}
        leaf_values: dict[Node, np.ndarray] = dict(self._values)
        by_name = {}
        for n, t in self._namer.tensors.items():
            by_name[t.symbol.name] = n
            if t.param:
                by_name[t.param] = n
        for name, v in (values or {}).items():
            if name not in by_name:
                raise KeyError(f"evaluate: no tensor named {name!r}")
            leaf_values[by_name[name]] = np.asarray(v.numpy() if isinstance(v, Tensor) else v)
        leaves = [n for n in toposort([self._namer.loss]) if n.op == "input"]
        named = self._namer.tensors
        missing = [named[n].symbol.name for n in leaves if n not in leaf_values and n in named]
        if missing:
            raise KeyError(f"evaluate: no values for {', '.join(missing)} (pass values=...)")
        dims = bind_dims((n, np.shape(leaf_values[n])) for n in leaves if n in leaf_values)
        for n, t in named.items():
            if n.op == "input" and n in leaf_values:
                env[t.symbol] = np.asarray(leaf_values[n])
            elif printing(n).mask:  # a dropout mask, drawn from its seed as in the forward
                env[t.symbol] = evaluate([n], leaf_values, dims)[0]
        env.update(dims)
        for eq in self.equations:
            args = sorted(eq.expr.free_symbols, key=lambda s: s.name)
            fn = sympy.lambdify(args, eq.expr, modules=_LAMBDIFY_MODULES, dummify=True)
            with np.errstate(all="ignore"):
                env[eq.lhs] = np.asarray(fn(*(env[s] for s in args)))
        env.pop(B, None)
        return env

    # ------------------------------------------------------------ printing

    def _lines(
        self, eqs: list[Equation], latex: bool, used: dict[str, Any] | None = None
    ) -> list[tuple[str, str]]:
        """(lhs, rhs) of each equation, a convolution's or pooling's in index notation;
        ``used`` collects the notations the legend explains."""
        shapes = {t.symbol: t.node.shape for t in self._namer.tensors.values() if t.node}
        out = []
        for e in eqs:
            printer = (LatexPrinter if latex else TextPrinter)(
                {"hadamard": True, "rank": self._rank, "shapes": shapes}
            )
            if _indexed(e.expr, shapes):
                sub, rhs = printer.indexed(e.expr)
                lhs = printer.indexed_name(e.lhs.name, sub)
            else:
                rhs = printer.doprint(e.expr)
                lhs = latex_name(e.lhs.name) if latex else e.lhs.name
            out.append((lhs, rhs))
            if used is not None:
                for k, v in printer.used.items():
                    used.setdefault(k, v)
        return out

    def text(self) -> str:
        """The tensor-level formulas as Unicode text (what ``str()`` gives)."""
        notation: dict[str, Any] = {}
        fw = self._lines(self.forward, False, notation)
        bw = self._lines(self.backward, False, notation)
        width = max(len(lhs) for lhs, _ in fw + bw)
        out = ["forward"]
        out += [f"  {lhs:<{width}} = {rhs}" for lhs, rhs in fw]
        out.append("backward")
        for (lhs, rhs), eq in zip(bw, self.backward):
            note = ""
            if eq.lhs.name[4:] in {s.name for s in self._unreached}:
                note = "    (E does not depend on it)"
            out.append(f"  {lhs:<{width}} = {rhs}{note}")
        out.append("where")
        used = set().union(*(e.expr.free_symbols | {e.lhs} for e in self.equations))
        rows = [(s.name, *row) for s, row in self.legend().items() if s in used]
        if B in used:
            rows.append(("B", "batch size", ""))
        w1, w2 = (max(len(r[i]) for r in rows) for i in (0, 1))
        out += [f"  {name:<{w1}}  {about:<{w2}}  {kind}".rstrip() for name, about, kind in rows]
        out.append("  ⊙ elementwise product, · matrix product, ᵀ transpose, Σ sum")
        out += [f"  {line}" for line in _index_legend(notation)]
        return "\n".join(out)

    def latex(self) -> str:
        """The tensor-level formulas as a LaTeX ``aligned`` block."""
        rows = [r"&\textbf{forward}"]
        rows += [f"{lhs} &= {rhs}" for lhs, rhs in self._lines(self.forward, True)]
        rows.append(r"&\textbf{backward}")
        rows += [f"{lhs} &= {rhs}" for lhs, rhs in self._lines(self.backward, True)]
        return "\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}"

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def __str__(self) -> str:
        return self.text()

    __repr__ = __str__

    # ------------------------------------------------------------ scalar level

    def scalar(
        self,
        param: str | None = None,
        index: int | tuple[int, ...] | None = None,
        *,
        expand: bool = False,
        force: bool = False,
    ) -> ScalarGradient | ScalarGradients:
        """Closed forms of ∂E/∂w, each parameter entry its own symbol (small models only).

        ``param`` is an entry's symbol (``"w5"``), a parameter (``"linear2.weight"`` or
        ``"W2"``) or None for all; ``index`` picks one entry of a parameter. Weights are
        numbered row-major across the parameters in model order (``w1..w4`` linear1.weight,
        ``w5..w8`` linear2.weight), biases likewise (``b1 ..``). With ``expand`` the named
        intermediates (h1, o1 ...) are substituted away, leaving inputs, targets and weights.
        Models with more than 200 parameter entries are refused unless ``force``.
        """
        if self._scalar is None:
            self._scalar = _ScalarLevel(self, force)
        return self._scalar.select(param, index, expand)


# ================================================================ scalar level


@dataclass(frozen=True)
class ScalarGradient:
    """∂E/∂w for one parameter entry: ``expr`` in named intermediates, ``where`` defines them."""

    symbol: sympy.Symbol  # the entry, e.g. w5
    param: str  # its parameter, e.g. linear2.weight
    index: tuple[int, ...]
    expr: sympy.Expr
    where: tuple[Equation, ...] = ()
    value: float | None = None  # at the forward pass's values
    rank: Callable[[sympy.Expr], int] | None = field(default=None, repr=False, compare=False)

    @property
    def lhs(self) -> str:
        return f"∂E/∂{self.symbol.name}"

    def _footer(self) -> list[str]:
        return [f"{self.symbol.name} = {self.param}[{', '.join(map(str, self.index))}]"]

    def text(self) -> str:
        """``∂E/∂w5 = ... = value``, then the definitions it uses."""
        return _scalar_block([self], self.where, self._footer(), latex=False)

    def latex(self) -> str:
        return _scalar_block([self], self.where, [], latex=True)

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def __str__(self) -> str:
        return self.text()


class ScalarGradients(Sequence[ScalarGradient]):
    """Several ``ScalarGradient``s printed together, with one shared ``where`` block."""

    def __init__(
        self, items: list[ScalarGradient], where: tuple[Equation, ...], legend: list[str]
    ) -> None:
        self.items = items
        self.where = where  # the definitions the formulas use, in forward order
        self._legend = legend  # linear1.weight = [[w1, w2], [w3, w4]] ...

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    def by_symbol(self) -> dict[str, ScalarGradient]:
        """The gradients by entry: ``grads.by_symbol()["w5"]``."""
        return {g.symbol.name: g for g in self.items}

    def text(self) -> str:
        return _scalar_block(self.items, self.where, self._legend, latex=False)

    def latex(self) -> str:
        return _scalar_block(self.items, self.where, [], latex=True)

    def _repr_latex_(self) -> str:
        return f"$${self.latex()}$$"

    def __str__(self) -> str:
        return self.text()

    __repr__ = __str__


def _scalar_block(
    items: Sequence[ScalarGradient], where: Sequence[Equation], footer: list[str], latex: bool
) -> str:
    """The gradients (with their values), then ``where``: definitions and ``footer`` lines."""
    rank = items[0].rank if items else None
    fmt = to_latex if latex else to_text

    def row(lhs: str, expr: sympy.Expr, value: float | None = None) -> str:
        shown = f" = {value:.10g}" if value is not None else ""
        if latex:
            return f"{latex_name(lhs)} &= {fmt(expr, False, rank)}{shown}"
        return f"{lhs} = {fmt(expr, False, rank)}{shown}"

    rows = [row(g.lhs, g.expr, g.value) for g in items]
    defs = [row(e.lhs.name, e.expr) for e in where]
    if latex:
        return "\\begin{aligned}\n" + " \\\\\n".join(rows + defs) + "\n\\end{aligned}"
    if defs or footer:
        rows += ["where", *(f"  {line}" for line in defs + footer)]
    return "\n".join(rows)


def _entry_names(base: str, shape: tuple[int, ...]) -> np.ndarray:
    """Names of a tensor's entries: o -> o1, o2; z1 -> z1_1, z1_2; a [3, 2] x -> x[1,2] ...

    Axes of size 1 (a batch of one) are not numbered.
    """
    out = np.empty(shape, dtype=object)
    live = [i for i, d in enumerate(shape) if d != 1]
    for idx in np.ndindex(*shape):
        if not live:
            out[idx] = base
        elif len(live) == 1:
            out[idx] = base + ("_" if base[-1].isdigit() else "") + str(idx[live[0]] + 1)
        else:
            out[idx] = base + "[" + ",".join(str(idx[i] + 1) for i in live) + "]"
    return out


class _ScalarLevel:
    """Runs the derived program on object arrays of SymPy symbols (see the module docstring)."""

    def __init__(self, f: Formulas, force: bool) -> None:
        self.f = f
        namer = f._namer
        order = toposort(f.derived.outputs)
        windows = {n.op for n in order if isinstance(printing(n).scalar, NotApplicable)}
        if windows:
            raise ValueError(
                f"scalar formulas: the model has {', '.join(sorted(windows))}, whose formulas "
                f"are printed entry by entry already, in index notation: print(formulas)"
            )
        n_params = sum(int(np.prod(w.shape)) for _, w in f._wrt)
        data = [n for n in namer.order if n.op == "input" and n not in {w for _, w in f._wrt}]
        self.dims = self._dims(data)
        n_data = sum(int(np.prod([self._dim(d) for d in n.shape])) for n in data)
        if not force and (n_params > SCALAR_LIMIT or n_data > SCALAR_LIMIT):
            raise ValueError(
                f"scalar formulas: the model has {n_params} parameter entries and its inputs "
                f"{n_data} entries; the scalar level is for small models (at most "
                f"{SCALAR_LIMIT} of each). Use the tensor level (print(formulas)), or pass "
                f"force=True"
            )
        self.values: dict[sympy.Symbol, float] = {}  # every scalar symbol at the forward pass
        self.defs: dict[sympy.Symbol, sympy.Expr] = {}  # named intermediates, in forward order
        self.params: set[sympy.Symbol] = set()
        self.legend: list[str] = []
        self.env: dict[Node, np.ndarray] = {}
        self.nameback = _NameBack()
        self._shifts: set[sympy.Symbol] = set()
        self._n_shifts = 0
        self.numeric = self._numeric()
        self._leaves(data)
        self._run()

    # ------------------------------------------------------------ set-up

    def _dims(self, data: list[Node]) -> dict[sympy.Symbol, int]:
        known = [(n, np.shape(self.f._values[n])) for n in data if n in self.f._values]
        dims = bind_dims(known)
        if any(isinstance(d, sympy.Symbol) for n in data for d in n.shape):
            dims.setdefault(B, 1)  # traced without values: show one sample
        return dims

    def _dim(self, d: Any) -> int:
        return int(sympy.sympify(d).xreplace(self.dims)) if isinstance(d, sympy.Expr) else int(d)

    def _shape(self, node: Node) -> tuple[int, ...]:
        return tuple(self._dim(d) for d in node.shape)

    def _numeric(self) -> dict[Node, np.ndarray] | None:
        """Every node's value at the forward pass: picks the max entries, checks shifts."""
        leaves = [n for n in toposort(self.f.derived.outputs) if n.op == "input"]
        leaves += [n for n in self.f._namer.order if n.op == "input"]
        if not all(n in self.f._values for n in leaves):
            return None
        outs = [*self.f.derived.outputs, self.f._namer.loss]
        env = {n: self.f._values[n] for n in leaves}
        with np.errstate(all="ignore"):
            return evaluate_all(outs, env, self.dims)

    def _symbols(self, base: str, node: Node) -> np.ndarray:
        names = _entry_names(base, self._shape(node))
        syms = np.empty(names.shape, dtype=object)
        for idx in np.ndindex(*names.shape):
            syms[idx] = _symbol(str(names[idx]))
            if node in self.f._values:
                self.values[syms[idx]] = float(np.asarray(self.f._values[node])[idx])
        return syms

    def _leaves(self, data: list[Node]) -> None:
        namer = self.f._namer
        counters: Counter = Counter()
        for _, w in self.f._wrt:
            t = namer.tensors[w]
            if t.attr is None:  # a loose parameter keeps its own name: w, b, p1_1 ...
                syms = self._symbols(t.symbol.name, w)
            else:  # w1 w2 ... row-major across the weights, in model order; b1 ... likewise
                base = {"weight": "w", "bias": "b"}.get(t.attr, t.attr)
                syms = np.empty(self._shape(w), dtype=object)
                for idx in np.ndindex(*syms.shape):
                    counters[base] += 1
                    syms[idx] = _symbol(f"{base}{counters[base]}")
                    if w in self.f._values:
                        self.values[syms[idx]] = float(np.asarray(self.f._values[w])[idx])
            self.params.update(syms.flat)
            self.env[w] = syms
            if syms.ndim or str(syms[()]) != t.param:  # not for a scalar w named w
                self.legend.append(f"{t.param} = {_show_array(syms)}")
        for n in data:
            if n.dtype.kind in "iub":  # labels select, they are not variables
                if n not in self.f._values:
                    raise ValueError(
                        "scalar formulas need the label values: call formulas() on a loss "
                        "computed eagerly"
                    )
                self.env[n] = _exact(np.asarray(self.f._values[n]))
            else:
                self.env[n] = self._symbols(namer.symbol_of(n).name, n)

    # ------------------------------------------------------------ running

    def _run(self) -> None:
        f, namer = self.f, self.f._namer
        symbolic = {n for n in self.env if self.env[n].dtype == object and n.dtype.kind == "f"}
        layers = {
            t.node: t.symbol.name
            for t in namer.tensors.values()
            if t.node is not None and t.node.op != "input" and t.rank < _RANK_DELTA
        }
        for n in toposort([namer.loss]):  # forward: name each layer output's entries
            self._node(n, symbolic)
            if n in layers:
                self._name(n, layers[n])
        for n in toposort(f.derived.grads):  # the derived backward program, same executor
            self._node(n, symbolic)
        self.grads = [self.env[g] for g in f.derived.grads]
        self._drop_shifts()
        # common factors out (1/N, 1/Σ exp), which also lets the softmax entries show
        self.grads = [np.vectorize(sympy.factor_terms, otypes=[object])(g) for g in self.grads]
        self._name_softmax()

    def _node(self, n: Node, symbolic: set[Node]) -> None:
        if n in self.env:
            return
        if any(s in symbolic for s in n.src):
            symbolic.add(n)
        rule = printing(n).scalar
        assert not isinstance(rule, NotApplicable)  # refused in __init__
        rule(self, n, symbolic)

    # One rule per op (``Printing.scalar``): the node's entries as SymPy expressions.

    def _evaluated(self, n: Node, symbolic: set[Node]) -> None:
        """The reference executor's own rule; exact numbers where no source is symbolic."""
        if n not in symbolic:
            self.env[n] = _exact(self._value_of(n))
        else:
            out = evaluate([n], self.env, self.dims)[0]
            self.env[n] = _object_array(out, self._shape(n), self.nameback)

    def _exactly(self, n: Node, symbolic: set[Node]) -> None:
        """A 0/1 mask whose derivative is zero (argmax's): exact numbers, symbolic or not."""
        self.env[n] = _exact(self._value_of(n))

    def _filled(self, n: Node, symbolic: set[Node]) -> None:
        value = sympy.sympify(n.arg).xreplace(self.dims)
        self.env[n] = np.full(self._shape(n), value, dtype=object)

    def _elementwise(self, n: Node, symbolic: set[Node]) -> None:
        if n in symbolic and _locally_constant(n):  # max's tie mask: exact numbers
            self._exactly(n, symbolic)
        else:
            self._evaluated(n, symbolic)

    def _maximum(self, n: Node, symbolic: set[Node]) -> None:
        if n in symbolic:
            self._shift(n)
        else:
            self._evaluated(n, symbolic)

    def _value_of(self, n: Node) -> np.ndarray:
        if self.numeric is not None and n in self.numeric:
            return np.asarray(self.numeric[n])
        srcs = [self.env[s] for s in n.src]
        if all(s.dtype != object for s in srcs):
            return evaluate([n], dict(zip(n.src, srcs)), self.dims)[0]
        raise ValueError(
            f"scalar formulas: a {n.op} node needs the forward pass's values (call formulas() "
            f"on a loss computed eagerly)"
        )

    def _name(self, n: Node, base: str) -> None:
        """Give every entry of a layer output its own symbol, recording its definition."""
        syms = self._symbols(base, n)
        vals = self.numeric[n] if self.numeric is not None else None
        for idx in np.ndindex(*syms.shape):
            s = syms[idx]
            self.defs[s] = self.env[n][idx]
            self.nameback.add(self.env[n][idx], s)
            if vals is not None:
                self.values[s] = float(np.asarray(vals)[idx])
        self.env[n] = syms

    def _shift(self, n: Node) -> None:
        """A max node (the overflow shift of softmax): one symbol per entry, m = max(...)."""
        if self.numeric is None:
            raise ValueError("scalar formulas of a max need the forward pass's values")
        axes = n.arg[0]
        self._n_shifts += 1
        out = self._symbols("m" if self._n_shifts == 1 else f"m{self._n_shifts}", n)
        # the reduced axes last, flattened: one row of candidates per output entry
        src = np.moveaxis(self.env[n.src[0]], axes, tuple(range(-len(axes), 0)))
        rows = src.reshape(-1, int(np.prod(src.shape[src.ndim - len(axes) :])))
        vals = np.asarray(self.numeric[n]).reshape(-1)
        for i, idx in enumerate(np.ndindex(*out.shape)):
            s = out[idx]
            self.defs[s] = sympy.Max(*rows[i], evaluate=False)
            self.values[s] = float(vals[i])
            self._shifts.add(s)
        self.env[n] = out

    def _drop_shifts(self) -> None:
        """softmax(u) = exp(u − m)/Σ exp(u − m) for any m: where a formula does not depend on
        the shift (checked numerically at two shifts), print it without one."""
        shifts = [s for s in self.defs if s in self._shifts]
        if not shifts or not self.values:
            return
        zero = dict.fromkeys(shifts, 0)

        def drop(e: sympy.Expr) -> sympy.Expr:
            if not (e.free_symbols & set(shifts)):
                return e
            other = {s: self.values[s] + 1.375 for s in shifts}
            a, b = self._at(e, {}), self._at(e, other)
            if np.isclose(a, b, rtol=1e-9, atol=1e-12):
                return e.xreplace(zero)
            return e

        self.grads = [np.vectorize(drop, otypes=[object])(g) for g in self.grads]
        self.defs = {s: drop(d) for s, d in self.defs.items()}

    def _name_softmax(self) -> None:
        """exp(z2_1)/(exp(z2_1) + exp(z2_2) + exp(z2_3)) -> p2_1, defined once in ``where``."""
        names: dict[sympy.Expr, sympy.Symbol] = {}

        def one(e: sympy.Expr) -> sympy.Expr:
            if not e.is_Mul:
                return e
            for f in e.args:
                den = f.base if f.is_Pow and f.exp == -1 else None
                if (
                    den is None
                    or not den.is_Add
                    or not all(isinstance(a, sympy.exp) for a in den.args)
                ):
                    continue
                for num in e.args:
                    if isinstance(num, sympy.exp) and num in den.args:
                        p = names.get(num / den)
                        if p is None:
                            a = num.args[0]
                            z = a.name if a.is_Symbol and a.name[0] == "z" else f"z{len(names)}"
                            p = names[num / den] = _symbol("p" + z[1:])
                            self.defs[p] = num / den
                            self.values[p] = self._at(num / den, {})
                        rest = list(e.args)
                        rest.remove(f)
                        rest.remove(num)
                        return sympy.Mul(*rest, p)
            return e

        self.grads = [
            np.vectorize(lambda g: _bottom_up(g, one), otypes=[object])(g) for g in self.grads
        ]

    def _at(self, e: sympy.Expr, override: Mapping[sympy.Symbol, float]) -> float:
        """The value of ``e`` at the forward pass (every named entry has its value)."""
        args = sorted(e.free_symbols, key=lambda s: s.name)
        fn = sympy.lambdify(args, e, modules=_LAMBDIFY_MODULES)
        vals = {**self.values, **override}
        with np.errstate(all="ignore"):
            return float(fn(*(vals[s] for s in args)))

    def expand(self, e: sympy.Expr) -> sympy.Expr:
        """Substitute the named intermediates' definitions until only leaves remain."""
        # Max re-checks its arguments pairwise when rebuilt: keep it as it is (that is slow).
        with sympy.evaluate(
            not e.has(sympy.Max) and not any(d.has(sympy.Max) for d in self.defs.values())
        ):
            for s in reversed(list(self.defs)):
                if s in e.free_symbols:
                    e = e.xreplace({s: self.defs[s]})
        return e

    # ------------------------------------------------------------ selecting

    def select(
        self, which: str | None, index: Any, expand: bool
    ) -> ScalarGradient | ScalarGradients:
        f = self.f
        # An entry's name first: "b2" is linear1.bias[1] here, not the tensor b2.
        entries = [
            (k, idx)
            for k, (_, w) in enumerate(f._wrt)
            for idx in np.ndindex(*self._shape(w))
            if which == str(self.env[w][idx])
        ]
        if not entries:
            for k, (_, w) in enumerate(f._wrt):
                t = f._namer.tensors[w]
                if which in (None, t.param, t.registered, t.symbol.name):
                    entries += [(k, idx) for idx in np.ndindex(*self._shape(w))]
        if not entries:
            raise KeyError(
                f"scalar: no parameter or entry {which!r}; parameters: {', '.join(f.grads)}"
            )
        if index is not None:
            idx = (index,) if isinstance(index, int) else tuple(index)
            entries = [(k, i) for k, i in entries if i == idx]
            if not entries:
                raise IndexError(f"scalar: index {idx} out of range for {which}")
        single = index is not None or (which is not None and len(entries) == 1)
        items = [self._gradient(k, idx, expand) for k, idx in entries]
        if single and len(items) == 1:
            return items[0]
        return ScalarGradients(items, self._where(*(g.expr for g in items)), self.legend)

    def _gradient(self, k: int, idx: tuple[int, ...], expand: bool) -> ScalarGradient:
        w = self.f._wrt[k][1]
        expr = self.grads[k][idx]
        if expand:
            expr = self.expand(expr)
        where = self._where(expr)
        value = self._at(expr, {}) if self.numeric is not None else None
        return ScalarGradient(
            symbol=self.env[w][idx],
            param=list(self.f.grads)[k],
            index=tuple(int(i) for i in idx),
            expr=expr,
            where=where,
            value=value,
            rank=self._rank(),
        )

    def _where(self, *exprs: sympy.Expr) -> tuple[Equation, ...]:
        """Definitions of the intermediates ``exprs`` need, transitively, in forward order."""
        need: set[sympy.Symbol] = set()
        stack = [s for e in exprs for s in e.free_symbols if s in self.defs]
        while stack:
            s = stack.pop()
            if s not in need:
                need.add(s)
                stack.extend(t for t in self.defs[s].free_symbols if t in self.defs)
        return tuple(Equation(s, self.defs[s]) for s in self.defs if s in need)

    def _rank(self) -> Callable[[sympy.Expr], int]:
        order = {s: _RANK_LAYER + i for i, s in enumerate(self.defs)}
        order.update(dict.fromkeys(self.params, _RANK_PARAM))

        def rank(e: sympy.Expr) -> int:
            return max((order.get(s, _RANK_DATA) for s in e.free_symbols), default=-1)

        return rank


_INDEXED = NotApplicable("printed entry by entry already, in index notation")


def _window_row(delta: bool = False, reads_delta: bool = False, to_delta: bool = False):
    return Printing(_window_expr, _INDEXED, delta, reads_delta, to_delta)


# -- issue 12 . math (rows of this family go below this line)
# The math family's activations: an ew node applying one names a layer output (is_layer).
MATH_ACTIVATIONS = {
    "softplus_threshold", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu_tanh", "mish",
    "hardtanh", "hardsigmoid", "hardswish", "softsign", "tanhshrink", "threshold", "logsigmoid",
}  # fmt: skip
#
# -- issue 12 . logic (rows of this family go below this line)
#
# -- issue 12 . indexing (rows of this family go below this line)
#
# Indexing prints as Python writes it: x[:, 2:5] for a slice, E[:, labels] for a gather
# (a torch.gather's own positions print as their index letters: x[i, y]); a gradient's
# placement as place(δ at x[:, 2:5]), a scatter-add as scatter_add(δ at labels).


class Key(sympy.Atom):
    """A static argument of an indexing op as a plain Python literal (``evaluate``
    lambdifies it): slices as (start, stop, step) with a batch-relative bound negative, as
    Python writes x[:-1]; a batch dim of a shape as None (the data's own)."""

    is_commutative = True
    value: Any

    def __new__(cls, value: Any) -> Key:
        obj = super().__new__(cls)
        obj.value = value
        return obj

    def _hashable_content(self) -> tuple:
        return (self.value,)

    def _numpycode(self, printer: Any) -> str:
        return repr(self.value)

    _lambdacode = _pythoncode = _numpycode

    def _sympystr(self, printer: Any) -> str:
        return str(self.value)


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
    """The index arrays as printed; a torch.gather's own positions as their letters."""
    names = []
    for i in idx.args:
        if isinstance(i, Broadcast):
            i = i.args[0]
        names.append("ijklmn"[i.args[0].value] if isinstance(i, Iota) else self._print(i))
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

#
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
    from symbp.ops import PAD_MODES  # imported here: this family's lines stay in its section

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
    elif int(axis) == ndim - 1:
        body = ", ".join(shown) if self._which == 0 else " & ".join(shown)
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

# -- issue 12 . reductions (rows of this family go below this line)
#
# The reductions that are ops of their own print as functions of their tensors, named as
# PyTorch names them (cumsum(x), sort indices ...), one TensorOp class per op whose NumPy form
# is the op table's own rule and whose last argument is the op's static arg and output shape.


class _AlongArg(Static):
    """An along-axis op's (arg, output shape): handed to NumPy as the arg alone."""

    def _numpycode(self, printer: Any) -> str:
        return repr(self.value[0])

    _lambdacode = _pythoncode = _numpycode

    def _sympystr(self, printer: Any) -> str:
        return str(self.value[0])


def _along_numpy(op: str) -> Callable[..., np.ndarray]:
    def run(*args: Any) -> np.ndarray:
        *vals, arg = args
        vals = [np.asarray(v) for v in vals]
        node: Any = _Stub(arg, (), np.result_type(*vals))
        return OPS[op].numpy(node, vals, {})

    return run


def _along_class(op: str, cls: str, tensors: int, text: str, latex: str) -> type[TensorOp]:
    new = type(cls, (TensorOp,), {"nargs": tensors + 1, "tensors": tensors, "__doc__": text})
    TENSOR_NUMPY[cls] = _along_numpy(op)
    TENSOR_SHAPES[cls] = lambda e, s: tuple(e.args[-1].value[1])
    FUNCTIONS[cls] = (text, latex)
    return new


_ALONG = {
    op: _along_class(op, cls, tensors, text, latex)
    for op, cls, tensors, text, latex in [
        ("argidx", "ArgIndex", 1, "argmax", r"\operatorname{argmax}"),
        ("argsort", "ArgSort", 1, "argsort", r"\operatorname{argsort}"),
        ("cumarg", "CumArg", 1, "cumargmax", r"\operatorname{cumargmax}"),
        ("take_along", "TakeAlong", 2, "take_along", r"\operatorname{take\_along}"),
        ("put_along", "PutAlong", 2, "put_along", r"\operatorname{put\_along}"),
        ("prod", "ProdOver", 1, "Π", r"\prod"),
        ("cumsum", "CumSum", 1, "cumsum", r"\operatorname{cumsum}"),
        ("cumprod", "CumProd", 1, "cumprod", r"\operatorname{cumprod}"),
        ("cumprod_grad", "CumProdGrad", 2, "cumprod_grad", r"\operatorname{cumprod\_grad}"),
    ]
}


def _along_row(op: str, scalar: Any = None, **flags: bool) -> Printing:
    cls = _ALONG[op]
    return Printing(
        lambda n, a, c: cls(*a, _AlongArg((n.arg, n.shape))),
        scalar or _ScalarLevel._evaluated,
        **flags,
    )


#
# -- issue 12 . linalg (rows of this family go below this line)
#
# A batched product prints as a product, a·b, like the 2-D one (``Dot``: np.matmul evaluates
# both); the triangle and diagonal views are functions of their argument.


class Tril(TensorOp):
    """The lower triangle of the last two axes from diagonal k; args (a, k)."""

    nargs = 2


class Triu(TensorOp):
    """The upper triangle of the last two axes from diagonal k; args (a, k)."""

    nargs = 2


class Diagonal(TensorOp):
    """The diagonal of two axes as the last one; args (a, offset, d1, d2)."""

    nargs = 4


class DiagEmbed(TensorOp):
    """The last axis on the diagonal of two new ones; args (a, offset, d1, d2, n1, n2)."""

    nargs = 6


def _np_diag_embed(a: Any, k: Any, d1: Any, d2: Any, n1: Any, n2: Any) -> np.ndarray:
    a = np.asarray(a)
    k, d1, d2 = int(k), int(d1), int(d2)
    shape = list(a.shape[:-1])
    for d, size in sorted([(d1, int(n1)), (d2, int(n2))]):
        shape.insert(d, size)
    out = np.zeros(shape, dtype=a.dtype)
    t = np.arange(a.shape[-1])
    np.moveaxis(out, (d1, d2), (-2, -1))[..., t + max(-k, 0), t + max(k, 0)] = a
    return out


def _diag_shape(e: Any, s: Callable) -> tuple:
    a, k, d1, d2 = s(e.args[0]), int(e.args[1]), int(e.args[2]), int(e.args[3])
    rest = tuple(d for i, d in enumerate(a) if i not in (d1, d2))
    return (*rest, max(0, min(a[d1] + min(k, 0), a[d2] - max(k, 0))))


def _embed_shape(e: Any, s: Callable) -> tuple:
    a = list(s(e.args[0])[:-1])
    for d, size in sorted([(int(e.args[2]), e.args[4]), (int(e.args[3]), e.args[5])]):
        a.insert(d, size)
    return tuple(a)


TENSOR_NUMPY.update(
    {
        "Tril": lambda a, k: np.tril(a, int(k)),
        "Triu": lambda a, k: np.triu(a, int(k)),
        "Diagonal": lambda a, k, d1, d2: np.diagonal(a, int(k), int(d1), int(d2)),
        "DiagEmbed": _np_diag_embed,
    }
)
TENSOR_SHAPES.update(
    {
        "Tril": lambda e, s: s(e.args[0]),
        "Triu": lambda e, s: s(e.args[0]),
        "Diagonal": _diag_shape,
        "DiagEmbed": _embed_shape,
    }
)
FUNCTIONS.update(
    {
        "Tril": ("tril", r"\operatorname{tril}"),
        "Triu": ("triu", r"\operatorname{triu}"),
        "Diagonal": ("diag", r"\operatorname{diag}"),
        "DiagEmbed": ("diag_embed", r"\operatorname{diag\_embed}"),
    }
)


def _tril_expr(n: Node, a: list, c: Any) -> sympy.Expr:
    k, upper = n.arg
    return (Triu if upper else Tril)(a[0], sympy.Integer(k))


def _diag_embed_expr(n: Node, a: list, c: Any) -> sympy.Expr:
    k, d1, d2, (n1, n2) = n.arg
    return DiagEmbed(a[0], *(sympy.Integer(v) for v in (k, d1, d2, n1, n2)))


# One row per op of ops.OPS (tests/test_ops.py checks that none is missing).
PRINTING: dict[str, Printing] = {
    "input": Printing(NotApplicable("a leaf, named by _Namer"), _ScalarLevel._evaluated),
    "const": Printing(
        lambda n, a, c: n.arg if not n.shape else Fill(n.arg, _tuple(n.shape)),
        _ScalarLevel._filled,
    ),
    "ew": Printing(
        lambda n, a, c: n.arg.expr.xreplace({xsym(i): e for i, e in enumerate(a)}),
        _ScalarLevel._elementwise,
        delta=True,
    ),
    # values, not storage: a cast is invisible in a formula
    "cast": Printing(lambda n, a, c: a[0], _ScalarLevel._evaluated, to_delta=True),
    "expand": Printing(
        lambda n, a, c: Broadcast(a[0], _tuple(n.shape)), _ScalarLevel._evaluated, to_delta=True
    ),
    "reshape": Printing(
        lambda n, a, c: Reshape(a[0], _tuple(n.shape)), _ScalarLevel._evaluated, to_delta=True
    ),
    "transpose": Printing(
        lambda n, a, c: Permute(a[0], _tuple(n.arg)),
        _ScalarLevel._evaluated,
        reads_delta=True,
        to_delta=True,
    ),
    # the value is the same; only the gradient differs
    "detach": Printing(lambda n, a, c: a[0], _ScalarLevel._evaluated),
    "onehot": Printing(lambda n, a, c: OneHot(a[0], n.arg[0]), _ScalarLevel._evaluated),
    "sum": Printing(
        lambda n, a, c: SumOver(a[0], _tuple(n.arg[0]), sympy.sympify(n.arg[1]), c.sum_kind(n)),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "max": Printing(_max_expr, _ScalarLevel._maximum),  # softmax's shift: m = max(...)
    "matmul": Printing(
        lambda n, a, c: Dot(a[0], a[1]), _ScalarLevel._evaluated, reads_delta=True, to_delta=True
    ),
    "bernoulli": Printing(
        NotApplicable("a dropout mask, named m by _Namer"), _ScalarLevel._evaluated, mask=True
    ),
    "conv2d": _window_row(),
    "conv2d_input_grad": _window_row(reads_delta=True),
    "conv2d_weight_grad": _window_row(reads_delta=True, to_delta=True),
    "maxpool2d": _window_row(),
    "maxpool2d_grad": _window_row(delta=True),
    "avgpool2d": _window_row(),
    "avgpool2d_grad": _window_row(delta=True),
    # -- issue 12 . math (rows of this family go below this line)
    #
    # -- issue 12 . logic (rows of this family go below this line)
    #
    # -- issue 12 . indexing (rows of this family go below this line)
    "slice": Printing(
        lambda n, a, c: Sliced(a[0], _key_of(n.arg)), _ScalarLevel._evaluated, to_delta=True
    ),
    "slice_grad": Printing(
        lambda n, a, c: Placed(a[0], Key((_key_of(n.arg[0]).value, _shape_key(n.shape)))),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "take": Printing(
        lambda n, a, c: Gathered(a[0], sympy.Tuple(*a[1:]), Key(n.arg.axis)),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "put_add": Printing(
        lambda n, a, c: Scattered(
            a[0], sympy.Tuple(*a[1:]), Key((n.arg.axis, _shape_key(n.shape)))
        ),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "iota": Printing(lambda n, a, c: Iota(Key(n.arg[1])), _ScalarLevel._exactly),
    # -- issue 12 . shaping (rows of this family go below this line)
    "cat": Printing(
        lambda n, a, c: Cat(*a, sympy.Integer(n.arg)), _ScalarLevel._evaluated, to_delta=True
    ),
    "flip": Printing(
        lambda n, a, c: Flip(a[0], _tuple(n.arg)), _ScalarLevel._evaluated, to_delta=True
    ),
    "roll": Printing(
        lambda n, a, c: Roll(a[0], sympy.Tuple(*(_tuple(p) for p in n.arg))),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "pad": Printing(
        lambda n, a, c: Pad(
            a[0],
            sympy.Tuple(*(_tuple(w) for w in n.arg[0])),
            sympy.Integer(_pad_modes().index(n.arg[1])),
            to_expr(n.arg[2]),
        ),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "pad_grad": Printing(
        lambda n, a, c: PadGrad(
            a[0],
            sympy.Tuple(*(_tuple(w) for w in n.arg[0])),
            sympy.Integer(_pad_modes().index(n.arg[1])),
        ),
        _ScalarLevel._evaluated,
        delta=True,
    ),
    # -- issue 12 . reductions (rows of this family go below this line)
    "argidx": _along_row("argidx", _ScalarLevel._exactly),  # indices: numbers, not symbols
    "argsort": _along_row("argsort", _ScalarLevel._exactly),
    "cumarg": _along_row("cumarg", _ScalarLevel._exactly),
    "take_along": _along_row("take_along", to_delta=True),
    "put_along": _along_row("put_along", delta=True),
    "prod": _along_row("prod"),
    "cumsum": _along_row("cumsum", delta=True, to_delta=True),
    "cumprod": _along_row("cumprod"),
    "cumprod_grad": _along_row("cumprod_grad", delta=True),
    #
    # -- issue 12 . linalg (rows of this family go below this line)
    #
    "bmm": Printing(
        lambda n, a, c: Dot(a[0], a[1]), _ScalarLevel._evaluated, reads_delta=True, to_delta=True
    ),
    "tril": Printing(_tril_expr, _ScalarLevel._evaluated, to_delta=True),
    "diagonal": Printing(
        lambda n, a, c: Diagonal(a[0], *(sympy.Integer(v) for v in n.arg)),
        _ScalarLevel._evaluated,
        to_delta=True,
    ),
    "diag_embed": Printing(_diag_embed_expr, _ScalarLevel._evaluated, to_delta=True),
}


def _locally_constant(n: Node) -> bool:
    """An elementwise 0/1 mask (max's tie mask): its derivative is zero wherever defined."""
    expr = n.arg.expr
    return bool(expr.has(sympy.Piecewise)) and all(
        sympy.diff(expr, xsym(i)) == 0 for i in range(len(n.src))
    )


def _object_array(value: Any, shape: tuple[int, ...], fn: Callable) -> np.ndarray:
    """``fn`` of every entry, as an object array of ``shape`` (a full sum returns a scalar)."""
    out = np.empty(shape, dtype=object)
    value = np.asarray(value, dtype=object).reshape(shape)
    for idx in np.ndindex(*shape):
        out[idx] = fn(value[idx])
    return out


def _exact(values: np.ndarray) -> np.ndarray:
    """Numbers as exact SymPy numbers (1.0 -> 1), so labels and masks print cleanly."""
    out = np.empty(values.shape, dtype=object)
    for idx in np.ndindex(*values.shape):
        out[idx] = to_expr(values[idx])
    return out


def _show_array(syms: np.ndarray) -> str:
    if syms.ndim == 0:
        return str(syms[()])
    if syms.ndim == 1:
        return "[" + ", ".join(map(str, syms)) + "]"
    return "[" + ", ".join(_show_array(r) for r in syms) + "]"


# ================================================================ entry point


def formulas(
    loss: Tensor | Traced,
    *,
    params: Any = None,
) -> Formulas:
    """Print the gradient of ``loss`` by every parameter, as the textbook writes it.

    ``loss`` is a scalar Tensor after an eager forward pass (or a ``symbp.trace`` result whose
    first output is the loss). ``params`` chooses the parameters: a Module, a dict of name to
    tensor, or a list of tensors or parameter names; by default every leaf that requires grad.

    >>> import symbp
    >>> from symbp import nn
    >>> lin = nn.Linear(2, 1)
    >>> x, t = symbp.tensor([[1.0, 2.0]]), symbp.tensor([[0.5]])
    >>> f = symbp.formulas(((symbp.sigmoid(lin(x)) - t) ** 2).sum() / 2)
    >>> print(str(f).splitlines()[5])
      δ     = (o − t) ⊙ o ⊙ (1 − o)
    >>> f.grad("W").expr  # SymPy: ∂E/∂W = δᵀ·x
    Dot(Permute(δ, (1, 0)), x)
    >>> print(f.scalar("w1").text().splitlines()[0])  # doctest: +ELLIPSIS
    ∂E/∂w1 = (o − t)·o·(1 − o)·x1 = ...
    """
    loss_node, values, candidates, given = _source(loss)
    wrt = _choose_params(params, candidates, values, loss_node)
    if not wrt:
        raise ValueError(
            "formulas: the loss does not depend on any tensor that requires grad (pass params=)"
        )
    return Formulas(loss_node, wrt, values, given)


def _source(
    loss: Tensor | Traced,
) -> tuple[Node, dict[Node, np.ndarray], list[tuple[str | None, Node]], dict[Node, str]]:
    """The loss node, the leaves' values, the leaves that require grad, given input names."""
    if isinstance(loss, Traced):
        if not loss.outputs:
            raise ValueError("formulas: the traced function returned nothing")
        node = loss.outputs[0]
        values: dict[Node, np.ndarray] = {p.node: p._data for p in loss.params.values()}
        values.update(getattr(loss, "constants", {}))  # tensors built inside the function
        leaves = {n for n in toposort([node]) if n.op == "input"}
        cands: list[tuple[str | None, Node]] = [
            (name, p.node) for name, p in loss.params.items() if p.node in leaves
        ]
        order = {n: i for i, n in enumerate(toposort([node]))}
        cands.sort(key=lambda c: order[c[1]])
        given = {n: name for name, n in loss.inputs.items()}
        return node, values, cands, given
    if not isinstance(loss, Tensor):
        raise TypeError(f"formulas: expects a scalar Tensor or a trace, got {type(loss).__name__}")
    from symbp.api import graph_tensors

    tensors = graph_tensors([loss])
    leaf_tensors = {t.node: t for t in tensors if t.node.op == "input" and not t._parents}
    values = {n: t.value for n, t in leaf_tensors.items() if t.value is not None}
    cands = []  # in the order the data flows: the model's order
    for n in toposort([loss.node]):
        t = leaf_tensors.get(n)
        if t is not None and t.requires_grad:
            cands.append((t.name if isinstance(t, Parameter) else None, n))
    return loss.node, values, cands, {}


def _choose_params(
    params: Any,
    cands: list[tuple[str | None, Node]],
    values: dict[Node, np.ndarray],
    loss: Node,
) -> list[tuple[str | None, Node]]:
    if params is None:
        return cands
    from symbp.nn.module import Module

    chosen: list[tuple[str | None, Node]] = []
    if isinstance(params, Module):
        items: Iterable[tuple[str | None, Any]] = [(p.name, p) for p in params.parameters()]
    elif isinstance(params, Mapping):
        items = list(params.items())
    else:
        items = [(None, p) for p in params]
    by_name = {name: n for name, n in cands if name}
    for name, p in items:
        if isinstance(p, str):
            if p in by_name:
                chosen.append((p, by_name[p]))
                continue
            raise KeyError(f"formulas: no parameter named {p!r} in the loss's graph")
        if not isinstance(p, Tensor):
            raise TypeError(f"formulas: params must be tensors or names, got {type(p).__name__}")
        if name is None and isinstance(p, Parameter):
            name = p.name
        node = p.node
        if p.value is not None:  # one the loss never reads: derive lists it as unreached
            values.setdefault(node, p.value)
        chosen.append((name, node))
    return chosen
