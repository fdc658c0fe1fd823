"""Closed forms: the scalar level's results, ``∂E/∂w5 = (o1 − t1)·o1·(1 − o1)·h1``, one
parameter entry each (``ScalarGradient``) or several with a shared ``where`` block
(``ScalarGradients``), printed as text or LaTeX.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import sympy

from symbp.formulas.latex import latex_name, to_latex
from symbp.formulas.text import to_text
from symbp.formulas.vocabulary import Equation


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
