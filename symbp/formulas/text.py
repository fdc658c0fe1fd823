"""The Unicode printer: one ``_print_<Class>`` method per node type, SymPy's design.

``TextPrinter`` prints ``(δ2·W2) ⊙ h ⊙ (1 − h)``, ``Σ_batch δ2``, ``[z1 > 0]``;
``FUNCTIONS`` names the known functions in text and LaTeX; ``_index_legend`` explains the
index notation a set of equations used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sympy
from sympy.core.sorting import default_sort_key

from symbp.formulas.index import IndexNotation, _letters
from symbp.formulas.layout import (
    _ADD,
    _ATOM,
    _MUL,
    _POW,
    _PRODUCT,
    _RANK_PARAM,
    _is_one_minus,
    _negative,
    _structural,
)
from symbp.formulas.vocabulary import (
    WINDOWS,
    Broadcast,
    Dot,
    Fill,
    MaxOver,
    Permute,
    Reshape,
    SumOver,
    TensorOp,
    Window,
    _axes,
)

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


class TextPrinter(IndexNotation):
    """Unicode formulas: ``(δ2·W2) ⊙ h ⊙ (1 − h)``, ``Σ_batch δ2``, ``[z1 > 0]``.

    ``hadamard``: products print as ⊙ (tensor level) or · (scalar level). ``rank`` orders the
    factors of a product as the chain rule produces them: later layers first. ``shapes`` maps
    the tensors' symbols to their shapes, which index notation needs (``indexed``).
    """

    printmethod = "_symbp_text"

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
        sums = [
            f
            for f in ordered
            if f.has(Window, SumOver) or any(map(self.sum_like, f.atoms(TensorOp)))
        ]
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
        name = ("permute", r"\operatorname{permute}")[self._which]
        return self.call(name, f"{self._print(a)}, {tuple(_axes(perm))}")

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

    def _print_Broadcast(self, e: Broadcast) -> str:
        return self._print(e.args[0])

    def _print_Reshape(self, e: Reshape) -> str:
        a, shape = e.args
        inner = self.shape_of(a)
        if len(inner) > 2 and len(shape) == 2 and inner[0] == shape[0]:  # Flatten
            self.used.setdefault("flatten", (a, inner))
            return self.call(("flatten", r"\operatorname{flatten}")[self._which], self._print(a))
        return self._print(a)  # [1, n] -> [n] and the like

    def _print_Fill(self, e: Fill) -> str:
        value = e.args[0]
        if value == 0:
            return "0"
        if value == 1:
            return self.ones
        return self.group(value, _MUL) + self.times_scalar + self.ones


def _index_legend(used: Mapping[str, Any], settings: dict[str, Any] | None = None) -> list[str]:
    """What the index notation of ``used`` means (``TextPrinter.used``), one line each;
    ``settings`` those of the equations' printer (the tensors' shapes: a flattened
    ``(δ2·W2)[:, 1:2]`` prints its slice)."""
    lines = []
    if "flatten" in used:
        a, shape = used["flatten"]
        pr = TextPrinter(settings)
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
        pr = TextPrinter(settings)
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


def to_text(expr: sympy.Expr, hadamard: bool = True, rank: Callable | None = None) -> str:
    """Print a formula as Unicode text (⊙ for elementwise products unless ``hadamard=False``)."""
    return TextPrinter({"hadamard": hadamard, "rank": rank}).doprint(expr)
