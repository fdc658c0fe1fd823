"""The scalar level: the derived program run on object arrays of SymPy symbols.

Every parameter entry is a symbol (``w1 .. w8`` row-major in model order, ``b1 ..``), so
is every data entry and every layer output's entry (``h1``, ``o1``); the reference
executor's own rules compute each node (``Printing.scalar``, methods of ``_ScalarLevel``).
Small models only: more than ``SCALAR_LIMIT`` entries are refused unless forced.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
import sympy

from symbp.api import Derived
from symbp.compiler.ir import B, Node, bind_dims, toposort
from symbp.compiler.ops import NotApplicable, to_expr, xsym
from symbp.compiler.reference import evaluate, evaluate_all
from symbp.formulas.closed_forms import ScalarGradient, ScalarGradients
from symbp.formulas.layout import _RANK_DATA, _RANK_DELTA, _RANK_LAYER, _RANK_PARAM
from symbp.formulas.naming import _Namer, _symbol
from symbp.formulas.rules import printing
from symbp.formulas.tidy import _bottom_up, _NameBack
from symbp.formulas.vocabulary import _LAMBDIFY_MODULES, Equation

# Above this many parameter (or data) entries the scalar level refuses unless forced: one
# SymPy expression per entry, each a sum over the batch, grows past what anyone reads.
SCALAR_LIMIT = 200


class _Program(Protocol):
    """What the scalar level reads of the tensor level's ``Formulas``: the derived program,
    the forward pass's values, the names and the parameters."""

    derived: Derived
    grads: dict[str, Equation]
    _values: dict[Node, np.ndarray]
    _namer: _Namer
    _wrt: list[tuple[str | None, Node]]


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

    def __init__(self, f: _Program, force: bool) -> None:
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
