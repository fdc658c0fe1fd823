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
from symbp.formulas.closed_forms import ScalarGradient, ScalarGradients
from symbp.formulas.index import _indexed
from symbp.formulas.latex import LatexPrinter, latex_name
from symbp.formulas.layout import _RANK_DELTA
from symbp.formulas.naming import _Namer, _symbol, _Tensor
from symbp.formulas.rules import _express, printing
from symbp.formulas.scalar_level import _ScalarLevel
from symbp.formulas.text import TextPrinter, _index_legend
from symbp.formulas.tidy import _NameBack, tidy
from symbp.formulas.vocabulary import _LAMBDIFY_MODULES, Broadcast, Equation, Reshape
from symbp.ir import B, Node, bind_dims, consumers, toposort, type_str
from symbp.reference import evaluate
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
