"""Loops in the formulas: the notation and the blocks. A loop (``scan``) prints as a block
of equations indexed by its step t (``StepBlock``), in names like ``h_t``, ``h_{t−1}``,
``δc_{t+1}`` (``_Names``); a weight every step reads has the gradient ``Σ_t …``
(``StepSum``). A block evaluates with NumPy step by step (``StepBlock.run``), so the tests
check the printed recurrence as they check every other equation.

``step_bodies`` writes a loop's bodies in these names, ``recurrence`` builds the blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ir import concrete
from symbp.formulas.latex import latex_name
from symbp.formulas.layout import _PRODUCT
from symbp.formulas.naming import _symbol
from symbp.formulas.text import TextPrinter
from symbp.formulas.vocabulary import TENSOR_SHAPES, Equation, TensorOp

# -- the notation


class StepSum(TensorOp):
    """Σ_t: a sum over the steps of a loop of a formula in its step's names."""

    nargs = 1


def _print_step_sum(self: TextPrinter, e: StepSum) -> str:
    sign = ("Σ_t", r"\sum_{t}")[self._which]
    return f"{sign} {self.group(e.args[0], _PRODUCT)}"


TextPrinter._print_StepSum = _print_step_sum  # type: ignore[attr-defined]
TENSOR_SHAPES["StepSum"] = lambda e, s: s(e.args[0])


def _step_name(base: str, shift: int | str) -> str:
    """h_t, h_{t−1}, δc_{t+1}; a number for a fixed step: h_0."""
    if isinstance(shift, str):
        return f"{base}_{shift}"
    if shift == 0:
        return f"{base}_t"
    return f"{base}_{{t{'+' if shift > 0 else '−'}{abs(shift)}}}"


class _Names:
    """The step-indexed symbols of one loop: ``at(base, 0)`` is h_t, ``at(base, -1)`` h_{t−1};
    ``shift`` moves a formula one step later (h_{t−1} -> h_t, δc_t -> δc_{t+1})."""

    def __init__(self) -> None:
        self._syms: dict[tuple[str, int], sympy.Symbol] = {}
        self._of: dict[sympy.Symbol, tuple[str, int]] = {}

    def at(self, base: str, shift: int) -> sympy.Symbol:
        key = (base, shift)
        if key not in self._syms:
            sym = _symbol(_step_name(base, shift))
            self._syms[key] = sym
            self._of[sym] = key
        return self._syms[key]

    def of(self, sym: sympy.Basic) -> tuple[str, int] | None:
        return self._of.get(sym)  # type: ignore[arg-type]

    def fixed(self, expr: sympy.Expr, t: int) -> sympy.Expr:
        """``expr`` at one step: δa_t -> δa_1."""
        subs = {}
        for s in expr.free_symbols:
            key = self._of.get(s)  # type: ignore[arg-type]
            if key is not None:
                subs[s] = _symbol(_step_name(key[0], str(t + key[1])))
        return expr.xreplace(subs)

    def shift(self, expr: sympy.Expr, by: int = 1) -> sympy.Expr:
        subs = {}
        for s in expr.free_symbols:
            key = self._of.get(s)  # type: ignore[arg-type]
            if key is not None:
                subs[s] = self.at(key[0], key[1] + by)
        return expr.xreplace(subs)


# -- the blocks


@dataclass
class StepBlock:
    """A loop of the printed formulas: ``equations`` for each t = 1 … T (backwards for the
    adjoint), in the names of its step (``h_t``, ``δc_{t+1}`` …).

    ``init`` are the lines printed before the loop (``h_0 = 0``); what a step reads from
    outside (``carry_in``, ``rows``, ``later``) and what the loop leaves behind (``outputs``,
    ``sums``) say how ``run`` evaluates it with NumPy.
    """

    kind: str  # "forward" or "backward"
    steps: int
    equations: list[Equation]
    init: list[Equation] = field(default_factory=list)
    # forward: (h_{t−1}, h_t, the initial value's outer expression); backward: unused
    carry_in: list[tuple[sympy.Symbol, sympy.Symbol, sympy.Expr]] = field(default_factory=list)
    # what a step reads of outer tensors: (u_t, u): u_t is row t of u
    rows: list[tuple[sympy.Symbol, sympy.Symbol]] = field(default_factory=list)
    # a block's column slices: (a^i_t, a_t, start, stop)
    splits: list[tuple[sympy.Symbol, sympy.Symbol, int, int]] = field(default_factory=list)
    # backward: (s_{t+1}, s_t): read at step t from step t+1, zero after the last step
    later: list[tuple[sympy.Symbol, sympy.Symbol]] = field(default_factory=list)
    # the sequences the loop leaves: (outer symbol, its step formula), stacked along dim 0
    outputs: list[tuple[sympy.Symbol, sympy.Expr]] = field(default_factory=list)
    # Σ_t sums: the StepSum expression the outer equations hold, and its value's symbol
    sums: dict[StepSum, sympy.Symbol] = field(default_factory=dict)
    # after a backward loop: (outer symbol, formula at the first step), e.g. δh_0
    final: list[tuple[sympy.Symbol, sympy.Expr]] = field(default_factory=list)
    after: list[Equation] = field(default_factory=list)  # ... as printed: δh_0 = δa_1·W_hh
    forward: StepBlock | None = None  # the forward loop a backward one runs against
    shapes: dict[sympy.Symbol, tuple] = field(default_factory=dict)
    # evaluated steps: symbol -> value at each t, for the backward loop (set by run)
    values: list[dict[sympy.Symbol, Any]] = field(default_factory=list, repr=False)

    def header(self) -> str:
        span = f"1 … {self.steps}" if self.kind == "forward" else f"{self.steps} … 1"
        return f"for t = {span}"

    def header_line(self, latex: bool) -> str:
        """for t = 1 … 3: (backwards: for t = 3 … 1, with the δs after the last step zero)."""
        T = self.steps
        last = [s.name.removesuffix("_{t+1}") + f"_{T + 1}" for s in self.boundary()]
        if latex:
            span = f"1, \\dots, {T}" if self.kind == "forward" else f"{T}, \\dots, 1"
            zero = ""
            if last:
                zero = r" \quad (" + " = ".join(latex_name(n) for n in last) + " = 0)"
            return r"\textbf{for } t = " + span + zero
        return self.header() + ":" + (f"   ({' = '.join(last)} = 0)" if last else "")

    def boundary(self) -> list[sympy.Symbol]:
        """The δs at t = T+1 the last step reads: zero."""
        if self.kind != "backward":
            return []
        return [nxt for nxt, _ in self.later if _is_delta(nxt)]

    def symbols(self) -> set[sympy.Symbol]:
        out: set[sympy.Symbol] = set()
        for e in [*self.init, *self.equations]:
            out |= e.expr.free_symbols | {e.lhs}
        for s, _, _ in self.carry_in:
            out.add(s)
        for sym, _ in self.outputs + self.final:
            out.add(sym)
        return out

    def xreplace(self, rename: Mapping[sympy.Basic, sympy.Basic]) -> None:
        """Rename outer symbols (the placeholders of layers not named yet)."""
        self.equations = [Equation(e.lhs, e.expr.xreplace(rename)) for e in self.equations]
        self.init = [Equation(e.lhs, e.expr.xreplace(rename)) for e in self.init]
        self.carry_in = [(a, b, c.xreplace(rename)) for a, b, c in self.carry_in]

    # ------------------------------------------------------------ evaluating

    def run(self, env: dict[sympy.Symbol, Any], dims: dict, fn: Callable) -> None:
        """Evaluate the loop with NumPy, step by step: ``fn(expr, env)`` evaluates one
        formula; the outer sequences and sums it defines are added to ``env``."""
        T = self.steps
        self.values = []
        if self.kind == "forward":
            prev = {now: self._full(fn(init, env), now, dims) for _, now, init in self.carry_in}
            for t in range(T):
                step = dict(env)
                for before, now, _ in self.carry_in:
                    step[before] = prev[now]
                self._step(step, t, fn)
                prev = {now: step[now] for _, now, _ in self.carry_in}
                self.values.append(step)
        else:
            assert self.forward is not None
            fw = self.forward.values
            steps: list[dict] = [{}] * T
            sums = dict.fromkeys(self.sums.values(), 0.0)
            for t in reversed(range(T)):
                step = {**env, **fw[t]}
                for nxt, now in self.later:
                    if t + 1 < T:
                        step[nxt] = steps[t + 1].get(now, fw[t + 1].get(now))
                    else:  # after the last step: nothing comes back
                        step[nxt] = np.zeros(concrete(self.shapes[now], dims))
                self._step(step, t, fn)
                for expr, sym in self.sums.items():
                    sums[sym] = sums[sym] + fn(expr.args[0], step)
                steps[t] = step
            self.values = steps
            env.update(sums)
            for sym, expr in self.final:
                env[sym] = fn(expr, steps[0])
        for sym, expr in self.outputs:
            env[sym] = np.stack([np.asarray(fn(expr, v)) for v in self.values])

    def _full(self, value: Any, sym: sympy.Symbol, dims: dict) -> np.ndarray:
        """An initial carry given as a number (h_0 = 0): the tensor of its shape."""
        value = np.asarray(value)
        if value.ndim == 0 and sym in self.shapes:
            return np.full(concrete(self.shapes[sym], dims), float(value))
        return value

    def _step(self, step: dict, t: int, fn: Callable) -> None:
        for now, seq in self.rows:
            step[now] = np.asarray(step[seq])[t]
        self._cut(step)
        for e in self.equations:
            step[e.lhs] = np.asarray(fn(e.expr, step))
            self._cut(step)

    def _cut(self, step: dict) -> None:
        """The column blocks (a^i_t of a_t) of the wholes known so far."""
        for part, whole, lo, hi in self.splits:
            if part not in step and whole in step:
                step[part] = np.asarray(step[whole])[..., lo:hi]


def _is_delta(sym: sympy.Symbol) -> bool:
    return sym.name.startswith("δ")


def _defines(item: Equation | StepBlock) -> set[sympy.Symbol]:
    """The names an equation or a loop defines."""
    if isinstance(item, StepBlock):
        return item.symbols()
    return {item.lhs}


def _reads(expr: sympy.Expr) -> set[sympy.Symbol]:
    return expr.free_symbols  # type: ignore[return-value]
