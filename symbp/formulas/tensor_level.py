"""The tensor level: ``Formulas``, the derived program as equations over named tensors.

``forward`` defines the named layer outputs and the loss, ``backward`` the error signals δ
and the gradients in the order backpropagation computes them; each equation prints (text,
LaTeX, index notation where a convolution or an image sum needs it) and evaluates with NumPy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sympy

from symbp.api import Derived, derive
from symbp.compiler.ir import B, Labels, Node, StepNames, bind_dims, consumers, toposort, type_str
from symbp.compiler.reference import evaluate
from symbp.formulas import softmaxes
from symbp.formulas.closed_forms import ScalarGradient, ScalarGradients
from symbp.formulas.index import _indexed
from symbp.formulas.latex import LatexPrinter, latex_name
from symbp.formulas.layout import _RANK_DELTA, _RANK_LAYER, columns
from symbp.formulas.naming import _Namer, _symbol, _Tensor
from symbp.formulas.norms import (
    Closed,
    Mean,
    closed_forms,
    name_output_delta,
    output_delta,
    statistics,
)
from symbp.formulas.norms import find as find_norms
from symbp.formulas.recurrence import Loops
from symbp.formulas.rules import _express, printing
from symbp.formulas.scalar_level import _ScalarLevel
from symbp.formulas.steps import StepBlock, _defines, _reads
from symbp.formulas.text import TextPrinter, _index_legend
from symbp.formulas.tidy import _NameBack, tidy
from symbp.formulas.vocabulary import _LAMBDIFY_MODULES, Broadcast, Equation, Reshape
from symbp.tensor import Tensor


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
        labels: Labels | None = None,
        steps: StepNames | None = None,
    ) -> None:
        self.derived: Derived = derive(loss, [n for _, n in wrt])
        self._values = dict(values)
        self._namer = namer = _Namer(loss, wrt, given, labels, steps)
        self._wrt = list(wrt)
        self.forward: list[Equation | StepBlock] = []
        self.backward: list[Equation | StepBlock] = []
        self.grads: dict[str, Equation] = {}
        self._nameback = _NameBack()
        # loops: their blocks, and what expressing a node found of them, not yet listed
        self._loops = Loops(namer)
        self._pending: list[Equation | StepBlock] = []
        self._in_backward = False  # a scan met there is one printed already
        self._users = consumers([*namer.order, *toposort(self.derived.outputs)])
        self._norms = find_norms(namer.order)  # LayerNorms: their μ, σ, x̂ get names
        self._softmaxes = softmaxes.find(namer.order)  # attention's: S, P and δP, δS
        self._stats = statistics(self._norms, self._users, namer.groups)
        self._stats |= softmaxes.names(self._softmaxes, namer.labels)
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
                if printing(n).loop:
                    self._loop(n, env)
                    continue
                e = _express(n, [env[s] for s in n.src], self._namer)
                env[n] = self._nameback(tidy(e))
        return env[node]

    def _loop(self, n: Node, env: dict[Node, sympy.Expr]) -> None:
        """A loop node: its block (and the equations before it) go to ``_pending``; it and
        the slices the program reads of it are bound in ``env``."""

        def express(m: Node) -> sympy.Expr:
            return self._expr(m, env)

        users = self._users.get
        if n.op == "scan_vjp":
            outer, block = self._loops.backward(n, env, express, lambda m: users(m, []))
            env[n] = sympy.Dummy("adjoint")  # read only by slices, bound to the pieces
        elif not self._loops.bind(n, users(n, []), env, match=self._in_backward):
            outer, block = self._loops.forward(n, env, express)
            self._loops.bind(n, users(n, []), env, match=False)
        else:
            return
        self._pending += [*outer, block]

    def _drain(self) -> list[Equation | StepBlock]:
        out, self._pending = self._pending, []
        return out

    def _build_forward(self) -> None:
        namer = self._namer
        env: dict[Node, sympy.Expr] = {n: t.symbol for n, t in namer.tensors.items()}
        # Definitions of the labelled layer outputs, each in terms of the earlier ones (held
        # by placeholders until every definition is known: is this the last layer? ...).
        defs: dict[Node, sympy.Expr] = {}
        temp: dict[Node, sympy.Symbol] = {}
        items: list[Node | Equation | StepBlock] = []  # layers and loops, in forward order
        through: dict[sympy.Symbol, sympy.Expr] = {}  # a normalisation's names' definitions
        for n in namer.order:
            if printing(n).loop:
                self._expr(n, env)
            elif n in self._stats:  # a normalisation's μ, σ, x̂
                d = self._expr(n, env)
                name, about = self._stats[n]
                sym = _symbol(namer._take(name))
                items.append(Equation(sym, d))
                through[sym] = d
                env[n] = sym
                self._nameback.add(d, sym)
                namer.tensors[n] = _Tensor(sym, n, about, _RANK_LAYER + len(namer.tensors))
            elif namer.is_layer(n):
                d = self._expr(n, env)
                items += self._drain()
                if d.is_Symbol or (isinstance(d, (Reshape, Broadcast)) and d.args[0].is_Symbol):
                    continue  # Identity, Flatten: an alias, not a new quantity
                defs[n] = d
                temp[n] = env[n] = sympy.Dummy(real=True)
                self._nameback.add(d, temp[n])
                items.append(n)
            items += self._drain()
        loss = self._expr(namer.loss, env)
        items += self._drain()
        rename = namer.name_layers(defs, temp, through)
        self._nameback = _NameBack()
        for item in items:
            if isinstance(item, Node):
                d = defs[item].xreplace(rename)
                sym = rename[temp[item]]
                self.forward.append(Equation(sym, d))
                self._nameback.add(d, sym)
            elif isinstance(item, StepBlock):
                item.xreplace(rename)
                self.forward.append(item)
            else:
                eq = Equation(item.lhs, item.expr.xreplace(rename))
                self.forward.append(eq)
                self._nameback.add(eq.expr, eq.lhs)
        self.forward.append(Equation(_symbol("E"), loss.xreplace(rename)))
        known = [n for m in self._norms for n in (m.centred,)]
        known += [n for sm in self._softmaxes for n in (sm.exp, sm.total, sm.out, sm.scores)]
        self._known = {n: env[n].xreplace(rename) for n in known if n in env}
        self._closed = self._closed_forms({})
        self.forward, _ = closed_forms(self._closed, self.forward, [], forward=True)

    def _closed_forms(self, env: Mapping[Node, sympy.Expr]) -> Closed:
        return softmaxes.closed(
            self._namer, self._norms, self._softmaxes, self._known, env, self._nameback
        )

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
        self._in_backward = True
        namer = self._namer
        d = self.derived
        env: dict[Node, sympy.Expr] = {n: t.symbol for n, t in namer.tensors.items()}
        delta_eqs: list[Equation | StepBlock] = []  # δs and loops, in the order computed
        for i, (n, name) in enumerate(self._deltas().items()):
            sym = _symbol(name)
            e = self._expr(n, env)  # factored once the closed forms are found
            delta_eqs += self._drain()
            delta_eqs.append(Equation(sym, e))
            env[n] = sym
            z = "z" + name[1:]
            about = f"∂E/∂{z}, error signal" if z in self.symbols else "backward intermediate"
            namer.tensors[n] = _Tensor(sym, n, about, _RANK_DELTA + i)
        grads: list[Equation] = []
        for (_, w), g in zip(self._wrt, d.grads):
            t = namer.tensors[w]
            lhs = _symbol(f"∂E/∂{t.symbol.name}")
            eq = Equation(lhs, self._expr(g, env))
            delta_eqs += self._drain()
            self.grads[t.param or t.symbol.name] = eq
            grads.append(eq)
        namers = [
            name_output_delta(output_delta(namer, self._norms, self._stats)),
            softmaxes.name_deltas(self._softmaxes, self._known, namer),
        ]
        delta_eqs, grads = closed_forms(self._closed_forms(env), delta_eqs, grads, namers=namers)
        delta_eqs = [_factored(e) for e in delta_eqs]
        grads = [_factored(g) for g in grads]
        self.grads = dict(zip(self.grads, grads))
        # Textbook order: each δ (or loop), then the gradients that only need what is
        # printed so far.
        defined = [_defines(e) for e in delta_eqs]
        delta_syms = set().union(*defined)
        shown: set[sympy.Symbol] = set()
        pending = list(grads)
        for item, defs in zip(delta_eqs, defined):
            self.backward.append(item)
            shown |= defs
            ready = [g for g in pending if (_reads(g.expr) & delta_syms) <= shown]
            self.backward.extend(ready)
            pending = [g for g in pending if g not in ready]
        self.backward.extend(pending)
        self._unreached = {namer.symbol_of(w) for w in d.unreached}

    # ------------------------------------------------------------ reading

    @property
    def equations(self) -> list[Equation | StepBlock]:
        """Every equation, forward then backward, in the order they are computed (a loop is
        a ``StepBlock`` of equations over its steps)."""
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
        compiled: dict[sympy.Expr, tuple[list, Any]] = {}

        def value(expr: sympy.Expr, at: Mapping[sympy.Symbol, Any]) -> np.ndarray:
            if expr not in compiled:
                args = sorted(expr.free_symbols, key=lambda s: s.name)
                compiled[expr] = (
                    args,
                    sympy.lambdify(args, expr, modules=_LAMBDIFY_MODULES, dummify=True),
                )
            args, fn = compiled[expr]
            with np.errstate(all="ignore"):
                return np.asarray(fn(*(at[s] for s in args)))

        sums: dict[sympy.Basic, sympy.Basic] = {}  # Σ_t of a loop -> the symbol of its value
        for eq in self.equations:
            if isinstance(eq, StepBlock):
                eq.run(env, dims, value)
                sums.update(eq.sums)
            else:
                env[eq.lhs] = value(eq.expr.xreplace(sums), env)
        env.pop(B, None)
        return env

    # ------------------------------------------------------------ printing

    def _settings(self) -> dict[str, Any]:  # the printers': the shapes, for index notation
        shapes = {t.symbol: t.node.shape for t in self._namer.tensors.values() if t.node}
        return {"hadamard": True, "rank": self._rank, "shapes": shapes}

    def _line(self, e: Equation, latex: bool, used: dict[str, Any] | None) -> tuple[str, str]:
        """(lhs, rhs) of an equation, a convolution's or pooling's in index notation; ``used``
        collects the notations the legend explains."""
        printer = (LatexPrinter if latex else TextPrinter)(settings := self._settings())
        if _indexed(e.expr, settings["shapes"]):
            sub, rhs = printer.indexed(e.expr)
            lhs = printer.indexed_name(e.lhs.name, sub)
        else:
            rhs = printer.doprint(e.expr)
            lhs = latex_name(e.lhs.name) if latex else e.lhs.name
        if used is not None:
            for k, v in printer.used.items():
                used.setdefault(k, v)
        return lhs, rhs

    def _lines(
        self, items: Sequence[Equation | StepBlock], latex: bool, used: dict[str, Any] | None
    ) -> list[tuple[int, str, str | None, Equation | None]]:
        """(depth, lhs, rhs, equation) of each line: a loop's header (rhs None), then its
        equations one level deeper."""
        out: list[tuple[int, str, str | None, Equation | None]] = []
        shown = {e.lhs for e in self._flat()}
        for item in items:
            if isinstance(item, Equation):
                out.append((0, *self._line(item, latex, used), item))
                continue
            for e in item.init:
                out.append((0, *self._line(e, latex, used), e))
            out.append((0, item.header_line(latex), None, None))
            for e in item.equations:
                out.append((1, *self._line(e, latex, used), e))
            for e in item.after:
                if e.lhs in shown:  # ∂E/∂h_0, where the program reads it
                    out.append((0, *self._line(e, latex, used), e))
        return out

    def _flat(self) -> list[Equation]:
        """Every equation, a loop's included (but the ones after it only where read)."""
        out: list[Equation] = []
        after: list[Equation] = []
        for item in self.equations:
            if isinstance(item, StepBlock):
                out += [*item.init, *item.equations]
                after += item.after
            else:
                out.append(item)
        reads = set().union(*(_reads(e.expr) for e in out))
        return out + [e for e in after if e.lhs in reads]

    def text(self) -> str:
        """The tensor-level formulas as Unicode text (what ``str()`` gives)."""
        notation: dict[str, Any] = {}
        fw = self._lines(self.forward, False, notation)
        bw = self._lines(self.backward, False, notation)
        width = max(columns(lhs) + 2 * depth for depth, lhs, rhs, _ in fw + bw if rhs is not None)
        unreached = {s.name for s in self._unreached}
        out = []
        for title, lines in (("forward", fw), ("backward", bw)):
            out.append(title)
            for depth, lhs, rhs, eq in lines:
                pad = "  " * (depth + 1)
                if rhs is None:
                    out.append(f"{pad}{lhs}")
                    continue
                note = ""
                if eq is not None and eq.lhs.name[4:] in unreached:
                    note = "    (E does not depend on it)"
                fill = " " * (width - 2 * depth - columns(lhs))
                out.append(f"{pad}{lhs}{fill} = {rhs}{note}")
        out.append("where")
        used = set().union(*(e.expr.free_symbols | {e.lhs} for e in self._flat()))
        rows = [(s.name, *row) for s, row in self.legend().items() if s in used]
        if B in used:
            rows.append(("B", "batch size", ""))
        w1, w2 = (max(columns(r[i]) for r in rows) for i in (0, 1))
        out += [
            f"  {name}{' ' * (w1 - columns(name))}  {about:<{w2}}  {kind}".rstrip()
            for name, about, kind in rows
        ]
        out.append("  ⊙ elementwise product, · matrix product, ᵀ transpose, Σ sum")
        if any(e.expr.has(Mean) for e in self._flat()):
            out.append("  mean(·) the mean along the axes a LayerNorm normalises, kept in its dims")
        if any(isinstance(e, StepBlock) for e in self.equations):
            out.append(
                "  a loop's names at step t: h_t after it, h_{t−1} before it; Σ_t sums "
                "over its steps; a δ at t = T+1 is 0"
            )
        out += [f"  {line}" for line in _index_legend(notation, self._settings())]
        return "\n".join(out)

    def latex(self) -> str:
        """The tensor-level formulas as a LaTeX ``aligned`` block."""
        rows = []
        for title, items in ((r"&\textbf{forward}", self.forward),
                             (r"&\textbf{backward}", self.backward)):  # fmt: skip
            rows.append(title)
            for depth, lhs, rhs, _ in self._lines(items, True, None):
                if rhs is None:
                    rows.append(f"&{lhs}")
                else:
                    rows.append(r"\quad " * depth + f"{lhs} &= {rhs}")
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


def _factored(e: Any) -> Any:
    """Common factors out: (o − t)·o·(1 − o)/2, not a sum of products."""
    return Equation(e.lhs, sympy.factor_terms(e.expr)) if isinstance(e, Equation) else e
