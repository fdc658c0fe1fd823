"""Gradient checking: symbolic gradients against float64 central differences.

``gradcheck(model, loss_fn, x, t)`` runs ``loss_fn(model(x), t)`` once in float64, derives
the gradient of every parameter symbolically (``derive`` + the NumPy reference executor), and
compares each entry with the central difference (L(θ + h) − L(θ − h)) / 2h of the same
float64 forward graph. The user's model is left as it was: parameters are cast for the check
and restored, ``.grad`` is not touched.

Tolerances, and why these defaults:

- ``eps = 1e-6``: entry i moves by h = eps·max(1, |θᵢ|). In float64 the central difference's
  truncation error (h²·L'''/6 ≈ 1e-13) and round-off (ε·|L|/h ≈ 2e-10·|L|) are then both far
  below the tolerances; the difference is divided by the step actually represented,
  (θᵢ + h) − (θᵢ − h), so large entries lose nothing to rounding of the step itself.
- An entry passes when |symbolic − numeric| ≤ rtol·|numeric| + atol·G + r, where G is the
  gradient's magnitude for that parameter (its largest entry) and r = 256·ε·|L| / 2h is the
  finite difference's own resolution. ``rtol = 1e-5`` and ``atol = 1e-7`` leave two to three
  orders of margin above what float64 differences achieve on real models, while a wrong
  derivative rule is off by O(1) relative: 10⁴ times above them. Scaling atol by G (not 1)
  judges entries near zero against the size of the gradient they belong to, so a loss of
  1e-9 is checked as strictly as a loss of 1.

Kinks. relu, abs, max, Heaviside, Piecewise ... have points where the derivative jumps. A
central difference straddling one measures the average of the two one-sided slopes, which
no correct gradient matches. So every non-smooth node of the forward graph has a *regime*:
the signs of its kink coordinates (relu(u): sign u; Max(a, b): sign(a − b); Piecewise: the
signs of its conditions' lhs − rhs; a ``max`` reduction or a max pooling: which entries of
each reduction or window are its maximum, so exact ties in a pooling window are handled). An
entry whose regime differs between θ − h, θ and θ + h is skipped and reported, not failed.
A point sitting exactly on a kink is warned about: there the symbolic gradient follows
PyTorch's convention (relu'(0) = 0, ties of max shared or routed to the first), which
finite differences cannot confirm.

Large parameters: ``max_entries`` checks a seeded random subset of entries; every parameter
also gets a JAX-style check along one random unit direction v, the central difference of
L(θ + t·v) against ⟨g, v⟩, which covers the entries the subset left out.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import sympy

from symbp.api import derive
from symbp.compiler import scalar
from symbp.compiler.ir import (
    Labels,
    Node,
    ShapeError,
    bind_dims,
    consumers,
    shape_str,
    shown_names,
    toposort,
)
from symbp.compiler.ops import OPS, NotApplicable, xsym
from symbp.compiler.reference import evaluate, evaluate_all
from symbp.tensor import (
    Parameter,
    Tensor,
    get_default_dtype,
    graph_labels,
    graph_tensors,
    set_default_dtype,
    tensor,
)

DEFAULT_EPS = 1e-6
DEFAULT_RTOL = 1e-5
DEFAULT_ATOL = 1e-7
# The finite difference cannot resolve slopes below about this many ulps of the loss per step.
ROUNDOFF_ULPS = 256


class GradcheckWarning(UserWarning):
    """Something the check could not judge: a point on a kink, a parameter the loss ignores."""


class GradcheckError(AssertionError):
    """Raised by ``GradcheckReport.raise_if_failed``; its message is the report's table."""


# ---------------------------------------------------------------- kinks: where regimes change


@dataclass(frozen=True, eq=False)  # compared and hashed by identity
class Kink:
    """A non-smooth node of the forward graph and how to tell which smooth piece it is on.

    ``regime(values of reads)`` is an array that changes exactly when the node crosses a kink;
    ``on_kink(regime)`` counts the elements sitting exactly on one, which ``at_kink`` (a
    template in ``n``) explains.
    """

    node: Node
    reads: tuple[Node, ...]
    regime: Callable[[list[np.ndarray]], np.ndarray]
    on_kink: Callable[[np.ndarray], int]
    what: str
    at_kink: str


def _coordinates(atom: sympy.Basic) -> list[sympy.Expr]:
    """Expressions whose sign says which side of ``atom``'s kink(s) we are on."""
    if isinstance(atom, (sympy.Max, sympy.Min)):  # which argument wins: every pairwise order
        return [a - b for a, b in itertools.combinations(atom.args, 2)]
    if isinstance(atom, sympy.Piecewise):  # which condition holds: each relation's sides
        rels = {r for _, cond in atom.args for r in cond.atoms(sympy.core.relational.Relational)}
        return [r.lhs - r.rhs for r in sorted(rels, key=sympy.default_sort_key)]
    if hasattr(atom, "kinks"):  # a function that says where it jumps (scalar.floor, fmod)
        return atom.kinks()
    return [atom.args[0]]  # relu, Abs, Heaviside, sign: the kink is where the argument is 0


@lru_cache(maxsize=1024)
def kink_coordinates(expr: sympy.Expr, n: int) -> tuple[sympy.Expr, ...]:
    """Kink coordinates of an elementwise formula in x0 .. x{n-1}.

    Atoms are looked for in the formula and in its derivatives: a custom op with its own
    derivative is an opaque function whose kink shows only there (its Heaviside).
    """
    forms = [expr, *(sympy.diff(expr, xsym(i)) for i in range(n))]
    atoms = set().union(*(f.atoms(*scalar.NONSMOOTH) for f in forms))
    coords = {c for a in atoms for c in _coordinates(a) if c.free_symbols}
    return tuple(sorted(coords, key=sympy.default_sort_key))


def _where(node: Node, labels: Labels) -> str:
    return f" in '{labels[node]}'" if node in labels else ""


def _ew_kink(node: Node, dims: dict, labels: Labels) -> Kink | None:
    coords = kink_coordinates(node.arg.expr, len(node.src))
    # a bool source (where's condition) is 0 or 1, not a side of a kink: its comparison node,
    # which finite differences do move, has the kink
    masks = {xsym(i) for i, s in enumerate(node.src) if s.dtype.kind == "b"}
    coords = tuple(c for c in coords if not c.free_symbols <= masks)
    if not coords:
        return None
    fn = sympy.lambdify(
        [xsym(i) for i in range(len(node.src))],
        [c.xreplace(dims) for c in coords],
        modules=[scalar.NUMPY, "numpy"],
    )

    def regime(vals: list[np.ndarray]) -> np.ndarray:
        with np.errstate(all="ignore"):
            cs = fn(*vals)
        shape = np.shape(vals[0])  # a coordinate may be constant in some sources: broadcast
        # (a coordinate may be a bool mask's value, where's condition: its sign as a number)
        return np.stack([np.sign(np.broadcast_to(np.asarray(c, float), shape)) for c in cs])

    return Kink(
        node,
        node.src,
        regime,
        on_kink=lambda r: int(np.count_nonzero((r == 0).any(axis=0))),
        what=f"{node.arg}{_where(node, labels)}",
        at_kink="{n} element(s) exactly at the kink, where the symbolic gradient takes "
        "PyTorch's one-sided convention (relu'(0) = 0, abs'(0) = 0)",
    )


def _max_kink(node: Node, dims: dict, labels: Labels) -> Kink:
    axes = node.arg[0]

    def regime(vals: list[np.ndarray]) -> np.ndarray:
        (x,) = vals  # which entries are the maximum: the routing of the gradient
        return x == np.max(x, axis=axes, keepdims=True)

    return Kink(
        node,
        node.src,
        regime,
        on_kink=lambda r: int(np.count_nonzero(r.sum(axis=axes) > 1)),  # ties
        what=("max" if len(axes) == node.src[0].ndim else f"max over dim {axes[0]}")
        + _where(node, labels),
        at_kink="{n} tie(s) for the maximum, where the symbolic gradient is shared among the "
        "tied entries (max over everything) or sent to the first (max over a dim), as PyTorch",
    )


def _maxpool_kink(node: Node, dims: dict, labels: Labels) -> Kink:
    from symbp.compiler.ops import _pad, _windows

    a = node.arg

    def regime(vals: list[np.ndarray]) -> np.ndarray:
        # which taps of each window are its maximum: the routing of the gradient
        win = _windows(
            _pad(vals[0], a.pads, -np.inf), a.kernel, a.stride, a.dilation, node.shape[2:]
        )
        return win == win.max(axis=(4, 5), keepdims=True)

    return Kink(
        node,
        node.src,
        regime,
        on_kink=lambda r: int(np.count_nonzero(r.sum(axis=(4, 5)) > 1)),  # tied windows
        what="max pooling" + _where(node, labels),
        at_kink="{n} window(s) with tied maxima, where the symbolic gradient goes to the first "
        "maximum in row-major window order, as PyTorch",
    )


def _scan_kink(node: Node, dims: dict, labels: Labels) -> Kink | None:
    """A scan's regime: the regimes of its body's kinks at every step, the loop run on the
    values (the body's own rows say what a kink of each of its nodes is)."""
    loop = node.arg
    inner = [k for n in toposort(loop.outputs) if (k := _kink(n, dims, labels)) is not None]
    if not inner:
        return None
    shapes: list[tuple[Kink, tuple[int, ...]]] = []  # the pieces of one regime, in order

    def regime(vals: list[np.ndarray]) -> np.ndarray:
        h, xs, consts = vals[0], vals[1], vals[2:]
        env = dict(zip(loop.consts, consts))
        parts = []
        shapes.clear()
        for t in range(len(xs)):
            env.update(zip(loop.steps, (h, xs[t])))
            values = evaluate_all(loop.outputs, env, dims)
            for k in inner:
                r = np.asarray(k.regime([values[s] for s in k.reads]))
                shapes.append((k, r.shape))
                parts.append(r.astype(float).reshape(-1))
            h = values[loop.outputs[0]]
        return np.concatenate(parts)

    def on_kink(r: np.ndarray) -> int:
        count, start = 0, 0
        for k, shape in shapes:
            size = int(np.prod(shape))
            count += k.on_kink(r[start : start + size].reshape(shape))
            start += size
        return count

    what = "; ".join(dict.fromkeys(k.what for k in inner)) + " at a step of a scan"
    return Kink(node, node.src, regime, on_kink, what + _where(node, labels), inner[0].at_kink)


_LINEAR = NotApplicable("linear in each source: no kink")
_NO_GRADIENT = NotApplicable("no gradient flows through it")

# -- issue 12 . math (rows of this family go below this line)
#
# -- issue 12 . logic (rows of this family go below this line)
#
# -- issue 12 . indexing (rows of this family go below this line)
#
# -- issue 12 . shaping (rows of this family go below this line)
#
# -- issue 12 . reductions (rows of this family go below this line)
#
# The index ops (argidx, argsort, cumarg) pass no gradient, but which entries they pick is
# where the gradient of the values taken at them jumps: ``take_along``'s regime is its
# indices, and a point is on a kink where a picked entry ties with another entry of its row
# (max(dim), topk, sort, median, cummax at ties).
_PICKS = {
    "argidx": "{m} over dim {axis}",
    "argsort": "sort along dim {axis}",
    "cumarg": "cum{m} along dim {axis}",
}


def _take_along_kink(node: Node, dims: dict, labels: Labels) -> Kink:
    axis = node.arg
    picks = node.src[1]
    largest = (picks.op == "argidx" and picks.arg[2]) or (picks.op == "cumarg" and picks.arg[1])
    what = _PICKS.get(picks.op, "a gather along dim {axis}")
    what = what.format(m="max" if largest else "min", axis=axis)

    def regime(vals: list[np.ndarray]) -> np.ndarray:
        x, idx = vals
        picked = np.take_along_axis(x, idx, axis=axis)  # [.., m, ..]
        # entries of x equal to each picked one, itself included: more than one is a tie
        same = (np.expand_dims(x, axis + 1) == np.expand_dims(picked, axis)).sum(axis=axis)
        return np.stack([idx, same])

    return Kink(
        node,
        node.src,
        regime,
        on_kink=lambda r: int(np.count_nonzero(r[1] > 1)),
        what=what + _where(node, labels),
        at_kink="{n} tie(s) of a picked entry with another, where the symbolic gradient goes "
        "to the picked index (the first maximum, the stable sort's order, cummax's last), "
        "as PyTorch",
    )


#
# -- issue 12 . linalg (rows of this family go below this line)
#

# One row per op of ops.OPS (tests/test_ops.py checks that none is missing): how to read the
# regime of one of its nodes, or why it has none.
KINKS: dict[str, Callable[[Node, dict, Labels], Kink | None] | NotApplicable] = {
    "input": NotApplicable("a leaf: its value is the point being checked"),
    "const": _NO_GRADIENT,
    "ew": _ew_kink,  # the formula's relu, abs, Max, Piecewise ... (``kink_coordinates``)
    "cast": NotApplicable("values pass unchanged (a cast to integers passes no gradient)"),
    "expand": _LINEAR,
    "reshape": _LINEAR,
    "transpose": _LINEAR,
    "detach": _NO_GRADIENT,
    "psum": _LINEAR,
    "onehot": _NO_GRADIENT,
    "sum": _LINEAR,
    "max": _max_kink,
    "matmul": NotApplicable("bilinear: smooth"),
    "bernoulli": NotApplicable("no gradient flows through it: its mask is fixed by its seed"),
    "conv2d": _LINEAR,
    "conv2d_input_grad": _LINEAR,
    "conv2d_weight_grad": _LINEAR,
    "maxpool2d": _maxpool_kink,
    "maxpool2d_grad": NotApplicable("a backward op: no double backward through max pooling"),
    "avgpool2d": _LINEAR,
    "avgpool2d_grad": _LINEAR,
    # -- issue 12 . math (rows of this family go below this line)
    #
    # -- issue 12 . logic (rows of this family go below this line)
    #
    # -- issue 12 . indexing (rows of this family go below this line)
    "slice": _LINEAR,  # entries move; none is changed
    "slice_grad": _LINEAR,
    "take": _LINEAR,  # linear in x; the indices carry no gradient
    "put_add": _LINEAR,
    "iota": _NO_GRADIENT,
    # -- issue 12 . shaping (rows of this family go below this line)
    # they move, copy, join or add entries: linear (a reflected border is a copy)
    "cat": _LINEAR,
    "flip": _LINEAR,
    "roll": _LINEAR,
    "pad": _LINEAR,
    "pad_grad": _LINEAR,
    # -- issue 12 . reductions (rows of this family go below this line)
    "argidx": NotApplicable("no gradient flows through it: the kink is take_along's"),
    "argsort": NotApplicable("no gradient flows through it: the kink is take_along's"),
    "cumarg": NotApplicable("no gradient flows through it: the kink is take_along's"),
    "take_along": _take_along_kink,  # linear in x, but its indices jump at ties
    "put_along": _LINEAR,
    # a polynomial in its entries: smooth, zeros included; the adjoint's cases for zeros
    # (``ops.Prod``) are exact values of one continuous gradient, not regimes
    "prod": NotApplicable("a polynomial: smooth everywhere, zeros included"),
    "cumsum": _LINEAR,
    "cumprod": NotApplicable("running products: polynomials, smooth everywhere"),
    "cumprod_grad": NotApplicable("a backward op: no double backward through cumprod"),
    #
    # -- issue 12 . linalg (rows of this family go below this line)
    #
    "bmm": NotApplicable("bilinear: smooth"),
    "tril": _LINEAR,
    "diagonal": _LINEAR,
    "diag_embed": _LINEAR,
    # -- issue 17 . loops
    "scan": _scan_kink,  # its body's kinks, at every step
    "scan_vjp": NotApplicable("a backward op: no double backward through a scan"),
}


def _kink(node: Node, dims: dict, labels: Labels) -> Kink | None:
    """The regime reader of ``node`` (None: smooth there); an op without a row is an error,
    not silently smooth."""
    rule = KINKS.get(node.op)
    if rule is None:
        raise NotImplementedError(f"gradcheck: no kink rule for op '{node.op}' in check.KINKS")
    return None if isinstance(rule, NotApplicable) else rule(node, dims, labels)


def _downstream(
    users: dict[Node, list[Node]], leaf: Node, differentiable: bool = False
) -> set[Node]:
    """Nodes whose value depends on ``leaf`` (with ``differentiable``: whose gradient does),
    along ``users`` (``ir.consumers`` of the program)."""
    reached, todo = {leaf}, [leaf]
    while todo:
        for n in users.get(todo.pop(), ()):
            if n not in reached and (not differentiable or OPS[n.op].differentiable):
                reached.add(n)
                todo.append(n)
    return reached


# ---------------------------------------------------------------- the report


@dataclass(frozen=True, eq=False)
class GradcheckRow:
    """The check of one parameter (or input): symbolic gradient against finite differences."""

    name: str
    kind: str  # "parameter" or "input"
    shape: tuple[int, ...]
    checked: int  # entries compared with a central difference
    skipped_indices: tuple[tuple[int, ...], ...]  # entries whose ±h straddles a kink
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple[int, ...] | None  # the entry furthest out of (or closest to) tolerance
    direction_error: float | None  # |numeric − ⟨g, v⟩| / |g| along a random unit v
    passed: bool
    reached: bool  # False: the loss does not depend on it, its gradient is zero
    symbolic: np.ndarray = field(repr=False)  # the whole symbolic gradient
    numeric: np.ndarray = field(repr=False)  # central differences; nan where not checked

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def skipped(self) -> int:
        return len(self.skipped_indices)

    @property
    def verdict(self) -> str:
        if not self.reached:
            return "not reached by the loss"
        if not self.passed:
            return "FAIL"
        if self.checked == 0 and self.direction_error is None and self.size:
            return "ok (all near kinks)"
        return "ok"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1e}"


@dataclass(frozen=True, eq=False)
class GradcheckReport:
    """The outcome of ``gradcheck``: one row per parameter, printable as a table."""

    rows: tuple[GradcheckRow, ...]
    loss: float
    eps: float
    rtol: float
    atol: float
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return all(r.passed for r in self.rows)

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.rows), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((r.max_rel_error for r in self.rows), default=0.0)

    @property
    def failed(self) -> list[GradcheckRow]:
        return [r for r in self.rows if not r.passed]

    def __getitem__(self, name: str) -> GradcheckRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"gradcheck report has no row {name!r}; rows: {[r.name for r in self.rows]}")

    def raise_if_failed(self) -> GradcheckReport:
        if not self.ok:
            names = ", ".join(r.name for r in self.failed)
            raise GradcheckError(f"gradient check failed for {names}\n{self}")
        return self

    def __str__(self) -> str:
        head = ["", "shape", "checked", "skipped", "max abs err", "max rel err", "worst at"]
        head += ["direction", "verdict"]
        table = [head]
        for r in self.rows:
            label = r.name if r.kind == "parameter" else f"{r.name} (input)"
            if not r.reached:
                table.append([label, shape_str(r.shape), *["-"] * 6, r.verdict])
                continue
            table.append(
                [
                    label,
                    shape_str(r.shape),
                    f"{r.checked}/{r.size}",
                    str(r.skipped),
                    _fmt(r.max_abs_error),
                    _fmt(r.max_rel_error),
                    "-" if r.worst_index is None else str(r.worst_index),
                    _fmt(r.direction_error),
                    r.verdict,
                ]
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        left = {0, 1, 6, 8}  # text columns; numbers align right
        lines = [
            "  ".join(
                c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
            ).rstrip()
            for row in table
        ]
        title = (
            f"gradcheck {'passed' if self.ok else 'FAILED'}: loss {self.loss:.6g} in float64, "
            f"eps {self.eps:g}, rtol {self.rtol:g}, atol {self.atol:g} (× gradient scale)"
        )
        notes = [f"  - {n}" for n in self.notes]
        return "\n".join([title, *lines, *(["notes:", *notes] if notes else [])])

    def __repr__(self) -> str:
        verdict = "ok" if self.ok else f"FAILED ({', '.join(r.name for r in self.failed)})"
        return (
            f"<GradcheckReport {verdict}: {len(self.rows)} rows, "
            f"max rel error {self.max_rel_error:.1e}>"
        )


# ---------------------------------------------------------------- running the model in float64


def _arg_names(fn: Any, count: int, skip: int = 0) -> list[str | None]:
    """Best-effort names of a callable's positional parameters (``x``, ``t``), for messages."""
    target = fn.forward if hasattr(fn, "forward") else fn
    try:
        params = [
            p.name
            for p in inspect.signature(target).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        params = []
    names: list[str | None] = list(params[skip : skip + count])
    return names + [None] * (count - len(names))


@dataclass
class _Input:
    """One of gradcheck's ``inputs``: array data becomes a tensor, anything else passes as is."""

    name: str  # the argument's name where the signature gives one (``x``), else ``inputs[i]``
    where: str  # how messages point at it: ``x (inputs[0])``
    given: Any
    array: np.ndarray | None
    grad: bool = False

    def arg(self, dtype: Any = None) -> Any:
        if self.array is None:
            return self.given
        dtype = dtype if self.array.dtype.kind == "f" else None
        return tensor(self.array, dtype=dtype, requires_grad=self.grad and dtype is not None)


def _inputs(model: Any, loss_fn: Callable, inputs: Sequence[Any]) -> list[_Input]:
    n = len(inputs)
    if model is None:
        found = _arg_names(loss_fn, n)
    else:  # model(inputs[0]), then loss_fn(output, *inputs[1:])
        found = _arg_names(model, min(n, 1)) + _arg_names(loss_fn, n - 1, skip=1)
    out = []
    for i, (name, x) in enumerate(zip(found, inputs)):
        array = x.numpy() if isinstance(x, Tensor) else None
        if isinstance(x, (np.ndarray, list)):
            array = np.asarray(x)
        where = f"{name} (inputs[{i}])" if name else f"inputs[{i}]"
        out.append(_Input(name or f"inputs[{i}]", where, x, array))
    return out


def _first_bad(what: str, values: np.ndarray) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "nan" if np.isnan(values[idx]) else "inf"
        raise ValueError(
            f"gradcheck: {what} has {kind} at index {idx}; gradients cannot be checked at a "
            f"non-finite point"
        )


@contextlib.contextmanager
def _float64(params: Sequence[Parameter]) -> Iterator[None]:
    """Run with ``params`` and new float tensors in float64; restore them exactly after."""
    saved = [(p, p._data) for p in params]
    default = get_default_dtype()
    try:
        for p in params:
            p.set_dtype(np.float64)  # a copy: the user's array is never written
        set_default_dtype(np.float64)
        yield
    finally:
        for p, data in saved:
            p._data = data  # the very same array object, so references to it stay live
        set_default_dtype(default)


@dataclass
class _Problem:
    """What the check needs from one float64 forward run."""

    loss: Node
    env: dict[Node, np.ndarray]  # every leaf's value
    wrt: list[tuple[str, str, Node]]  # (name, kind, leaf) to check, in report order
    labels: Labels  # which layer made each node (tensor.graph_labels): errors say where


def _trace64(
    model: Any, loss_fn: Callable, inputs: Sequence[Any], wrt_inputs: bool | None
) -> _Problem:
    def run(args: Sequence[Any]) -> Any:
        out = loss_fn(*args) if model is None else loss_fn(model(*args[:1]), *args[1:])
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: loss_fn must return a scalar Tensor, got {type(out)}")
        if out.value is None:
            raise TypeError("gradcheck: the loss has no value (it was traced without values)")
        if any(d != 1 for d in out.shape):
            raise ShapeError(
                f"gradcheck: the loss must be a scalar, got shape {shape_str(out.shape)}; "
                f"reduce it with .sum() or .mean()"
            )
        if out.dtype.kind != "f":
            raise ShapeError(f"gradcheck: the loss must be a float tensor, got {out.dtype}")
        return out

    args = _inputs(model, loss_fn, inputs)
    for a in args:
        if a.array is not None and a.array.dtype.kind == "f":
            _first_bad(f"input '{a.where}'", a.array)
            if wrt_inputs is None:  # by default every float input of a plain function, and
                # with a model only the Tensors that require grad, as torch.autograd.gradcheck
                a.grad = model is None or (isinstance(a.given, Tensor) and a.given.requires_grad)
            else:
                a.grad = wrt_inputs

    if hasattr(model, "named_parameters"):
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    else:  # a function: its parameters are the ones a first run reaches
        try:
            first = run([a.arg() for a in args])
        except ShapeError:  # float64 arrays meeting float32 parameters: this run only finds
            first = run([a.arg(get_default_dtype()) for a in args])  # them, so cast the inputs
        found = {t.node: t for t in graph_tensors([first]) if isinstance(t, Parameter)}
        ordered = [found[n] for n in toposort([first.node]) if n in found]  # as they appear
        shown = shown_names([p.node.arg for p in ordered])  # the model's names, unique here
        named = [(s, p) for s, p in zip(shown, ordered) if p.requires_grad]
    for n, p in named:
        _first_bad(f"parameter '{n}'", p._data)

    # a training forward moves buffers (batch norm's running statistics): put them back
    modules = list(model.modules()) if hasattr(model, "modules") else []
    saved = [(b.numpy(), b.numpy().copy()) for m in modules for b in m.buffers(recurse=False)]
    with _float64([p for _, p in named]):
        values = [a.arg(np.float64) for a in args]
        try:
            loss = run(values)
        finally:
            for b, copy in saved:
                b[...] = copy
        env = {t.node: t.numpy() for t in graph_tensors([loss]) if t.node.op == "input"}
        wrt = [(n, "parameter", p.node) for n, p in named]
        wrt += [(a.name, "input", v.node) for a, v in zip(args, values) if a.grad]
    if not wrt:
        raise ValueError(
            "gradcheck: nothing to check: no trainable parameters, and no input to check "
            "(pass wrt_inputs=True to check the float inputs)"
        )
    return _Problem(loss.node, env, wrt, graph_labels([loss]))


# ---------------------------------------------------------------- the check


def gradcheck(
    model: Callable[..., Any] | None,
    loss_fn: Callable[..., Any],
    *inputs: Any,
    eps: float | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    max_entries: int | None = None,
    seed: int = 0,
    wrt_inputs: bool | None = None,
) -> GradcheckReport:
    """Compare symbp's symbolic gradients with float64 central differences.

    The loss is ``loss_fn(model(inputs[0]), *inputs[1:])``, as in a training loop; with
    ``model=None`` it is ``loss_fn(*inputs)`` (JAX's ``check_grads`` form). ``model`` may be
    an ``nn.Module`` (its trainable ``named_parameters`` are checked, and the ones the loss
    does not reach are reported so) or any function (the Parameters it reads are checked).
    Float inputs are checked too when ``wrt_inputs`` is True; by default those of a plain
    function are, and with a model only input Tensors that require grad.

    Everything runs in float64 on copies; the model is unchanged afterwards. ``eps``, ``rtol``
    and ``atol`` are explained in ``symbp.check``'s docstring. ``max_entries`` checks at most
    that many random entries of each parameter (seeded by ``seed``); a random-direction check
    covers each parameter whole either way.

    >>> import numpy as np, symbp
    >>> from symbp import nn
    >>> _ = symbp.manual_seed(0)
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> x, t = np.ones((2, 3)), np.zeros((2, 1))
    >>> report = symbp.gradcheck(net, nn.MSELoss(), x, t)
    >>> report.ok, [r.name for r in report.rows]
    (True, ['0.weight', '0.bias', '2.weight', '2.bias'])
    >>> report.max_rel_error < 1e-6
    True
    """
    eps = DEFAULT_EPS if eps is None else float(eps)
    if not (eps > 0 and rtol >= 0 and atol >= 0):
        raise ValueError(
            f"gradcheck: need eps > 0, rtol >= 0, atol >= 0; got {eps}, {rtol}, {atol}"
        )
    if max_entries is not None and max_entries < 0:
        raise ValueError(f"gradcheck: max_entries must be >= 0, got {max_entries}")
    if model is not None and not callable(model):
        raise TypeError(f"gradcheck: model must be callable or None, got {type(model).__name__}")

    problem = _trace64(model, loss_fn, inputs, wrt_inputs)
    loss, env = problem.loss, problem.env
    dims = bind_dims((n, np.shape(v)) for n, v in env.items())
    base = evaluate_all([loss], env, dims)
    loss_value = float(base[loss])
    if not np.isfinite(loss_value):
        raise ValueError(f"gradcheck: the loss is {loss_value} at this point; nothing to check")

    leaves = [node for _, _, node in problem.wrt]
    derived = derive(loss, leaves)
    grads = evaluate(derived.grads, env, dims)

    order = toposort([loss])
    kinks = [k for n in order if (k := _kink(n, dims, problem.labels)) is not None]
    regimes = {k: k.regime([base[r] for r in k.reads]) for k in kinks}

    rng = np.random.default_rng(seed)
    checker = _Checker(loss, order, base, dims, regimes, eps, rtol, atol)
    rows, notes, on_kink = [], [], set()
    for (name, kind, leaf), g in zip(problem.wrt, grads):
        shape = tuple(int(d) for d in leaf.shape)
        g = np.asarray(g, dtype=np.float64).reshape(shape)
        if leaf in derived.unreached:
            msg = f"{kind} '{name}' is not reached by the loss: its gradient is zero"
            warnings.warn(f"gradcheck: {msg}", GradcheckWarning, stacklevel=2)
            notes.append(msg)
            rows.append(_unreached_row(name, kind, shape, g))
            continue
        row, kinks_hit = checker.check(name, kind, leaf, g, rng, max_entries)
        rows.append(row)
        on_kink |= kinks_hit
        if row.skipped:
            shown = ", ".join(map(str, row.skipped_indices[:5]))
            more = f" and {row.skipped - 5} more" if row.skipped > 5 else ""
            notes.append(f"'{name}': skipped {shown}{more}: the ±h differences cross a kink")

    at_kink = []
    for k in sorted(on_kink, key=lambda k: order.index(k.node)):
        count = k.on_kink(regimes[k])
        msg = (
            f"the point sits exactly on a kink of {k.what}: {k.at_kink.format(n=count)}; "
            f"finite differences cannot confirm a gradient there"
        )
        warnings.warn(f"gradcheck: {msg}", GradcheckWarning, stacklevel=2)
        at_kink.append(msg)
    return GradcheckReport(tuple(rows), loss_value, eps, rtol, atol, (*at_kink, *notes))


def check_grads(fn: Callable[..., Any], *args: Any, **options: Any) -> GradcheckReport:
    """JAX-style: check ``fn(*args)``'s gradients w.r.t. its float args; raise if wrong.

    >>> import numpy as np, symbp
    >>> _ = symbp.check_grads(lambda x: (symbp.tanh(x) ** 2).sum(), np.array([0.5, -1.0]))
    """
    options.setdefault("wrt_inputs", True)
    return gradcheck(None, fn, *args, **options).raise_if_failed()


def _unreached_row(name: str, kind: str, shape: tuple[int, ...], g: np.ndarray) -> GradcheckRow:
    return GradcheckRow(
        name, kind, shape, 0, (), 0.0, 0.0, None, None, True, False, g, np.full(shape, np.nan)
    )


class _Checker:
    """Central differences of the loss, one leaf at a time, watching the kinks on the way."""

    def __init__(
        self,
        loss: Node,
        order: list[Node],
        base: dict[Node, np.ndarray],
        dims: dict,
        regimes: dict[Kink, np.ndarray],
        eps: float,
        rtol: float,
        atol: float,
    ):
        self.loss, self.base, self.dims = loss, base, dims
        self.users = consumers(order)
        self.regimes = regimes
        self.eps, self.rtol, self.atol = eps, rtol, atol
        self.loss0 = abs(float(base[loss]))

    def resolution(self, up: float, down: float, step: float) -> float:
        """The smallest slope a difference over ``step`` can resolve, given round-off in L."""
        ulp = np.finfo(np.float64).eps
        return ROUNDOFF_ULPS * ulp * max(self.loss0, abs(up), abs(down)) / step

    def check(
        self,
        name: str,
        kind: str,
        leaf: Node,
        g: np.ndarray,
        rng: np.random.Generator,
        max_entries: int | None,
    ) -> tuple[GradcheckRow, set[Kink]]:
        # Only what depends on the leaf is recomputed; the rest is read from the base run.
        moved = _downstream(self.users, leaf)
        env = {n: v for n, v in self.base.items() if n not in moved}
        graded = _downstream(self.users, leaf, differentiable=True)
        kinks = [k for k in self.regimes if k.node in graded]  # a detached max is no kink
        probes = [self.loss, *dict.fromkeys(r for k in kinks for r in k.reads)]
        x0 = np.array(self.base[leaf], dtype=np.float64)
        work = x0.copy()  # perturbed in place: every probe reads it through env
        env[leaf] = work

        def loss_at() -> tuple[float, bool]:
            """The loss at ``work``, and whether every kink stayed in its base regime."""
            vals = dict(zip(probes, evaluate(probes, env, self.dims)))
            same = all(
                np.array_equal(k.regime([vals[r] for r in k.reads]), self.regimes[k], True)
                for k in kinks
            )
            return float(vals[self.loss]), same

        size = x0.size
        if max_entries is None or max_entries >= size:
            entries = np.arange(size)
        else:
            entries = np.sort(rng.choice(size, max_entries, replace=False))
        flat, origin = work.reshape(-1), x0.reshape(-1)
        numeric = np.full(size, np.nan)
        done, skipped, res = [], [], []
        for i in entries:
            h = self.eps * max(1.0, abs(origin[i]))
            flat[i] = origin[i] + h
            up, same_up = loss_at()
            step = flat[i]
            flat[i] = origin[i] - h
            down, same_down = loss_at()
            step -= flat[i]  # the step as represented, not as intended
            flat[i] = origin[i]
            if same_up and same_down:
                numeric[i] = (up - down) / step
                done.append(i)
                res.append(self.resolution(up, down, step))
            else:
                skipped.append(_index(i, x0.shape))

        sym, fd = g.reshape(-1)[done], numeric[done]
        err = np.abs(sym - fd)
        err[np.isnan(err)] = np.inf  # a nan gradient is as wrong as can be
        scale = float(np.max(np.abs(np.concatenate([g.reshape(-1), fd])), initial=0.0))
        allowed = self.rtol * np.abs(fd) + self.atol * scale + np.array(res)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(err == 0, 0.0, err / np.maximum.reduce([np.abs(sym), np.abs(fd), res]))
            ratio = np.where(err == 0, 0.0, err / allowed)
        worst = _index(done[int(np.argmax(ratio))], x0.shape) if done else None
        dir_error, dir_ok = self.direction(work, x0, g, rng, loss_at)
        row = GradcheckRow(
            name=name,
            kind=kind,
            shape=x0.shape,
            checked=len(done),
            skipped_indices=tuple(skipped),
            max_abs_error=float(np.max(err, initial=0.0)),
            max_rel_error=float(np.max(rel, initial=0.0)),
            worst_index=worst,
            direction_error=dir_error,
            passed=bool(np.all(err <= allowed)) and dir_ok,
            reached=True,
            symbolic=g,
            numeric=numeric.reshape(x0.shape),
        )
        return row, {k for k in kinks if k.on_kink(self.regimes[k])}

    def direction(
        self,
        work: np.ndarray,
        x0: np.ndarray,
        g: np.ndarray,
        rng: np.random.Generator,
        loss_at: Callable[[], tuple[float, bool]],
    ) -> tuple[float | None, bool]:
        """JAX's check: the difference along one random unit v against <g, v>; every entry
        takes part, so it also covers what ``max_entries`` left out. None across a kink."""
        if not x0.size:
            return None, True
        v = rng.standard_normal(x0.shape)
        v /= np.linalg.norm(v)
        t = self.eps * max(1.0, float(np.max(np.abs(x0))))
        work[...] = x0 + t * v
        up, same_up = loss_at()
        work[...] = x0 - t * v
        down, same_down = loss_at()
        work[...] = x0
        if not (same_up and same_down):
            return None, True
        fd = (up - down) / (2 * t)
        scale, res = float(np.linalg.norm(g)), self.resolution(up, down, 2 * t)
        err = abs(fd - float(np.sum(g * v)))  # |<g, v>| <= |g|: judged against |g|
        if np.isnan(err):
            return np.inf, False
        ok = err <= self.rtol * abs(fd) + self.atol * scale + res
        return (err / max(scale, res) if err else 0.0), bool(ok)


def _index(flat: int | np.integer, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(j) for j in np.unravel_index(flat, shape))


__all__ = [
    "GradcheckError",
    "GradcheckReport",
    "GradcheckRow",
    "GradcheckWarning",
    "check_grads",
    "gradcheck",
]
