"""Naming the model's tensors: ``W1, b1`` for parameters, ``x, t, y`` for data, ``z1, h, o``
for layer outputs (from the modules that made them: the program's ``ir.Labels``), ``m`` for
dropout masks.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sympy

from symbp.compiler.ir import (
    AUTO_NAME,
    B,
    Labels,
    Node,
    StepNames,
    consumers,
    layer_numbers,
    module_parameter,
    toposort,
)
from symbp.compiler.ops import Formula
from symbp.formulas.elementwise import MATH_ACTIVATIONS
from symbp.formulas.layout import _RANK_DATA, _RANK_LAYER, _RANK_PARAM
from symbp.formulas.rules import printing
from symbp.formulas.vocabulary import (
    _SUM_ALL,
    _SUM_AXES,
    _SUM_BATCH,
    AvgPool,
    Conv,
    Dot,
    MaxPool,
    SumOver,
    _axes,
)

_AUTO_NAME = AUTO_NAME
_SHORT = {"weight": "W", "bias": "b"}
# a recurrent layer's: weight_hh_l0 -> W_hh, bias_ih_l1_reverse -> b_ih_l1r
_RECURRENT = re.compile(r"(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?")


def _short(attr: str, k: str) -> str:
    """A parameter's short name, ``k`` its layer's number: W1, b2, W_hh1."""
    m = _RECURRENT.fullmatch(attr)
    if m is None:
        return _SHORT.get(attr, attr) + k
    kind, which, layer, reverse = m.groups()
    more = ("" if layer == "0" else f"_l{layer}") + ("r" if reverse else "")
    return f"{_SHORT[kind]}_{which}{k}{more}"


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
    registered: str | None = None  # its leaf's name as shown (maybe "0.weight#2": a second)


class _Namer:
    """Compact names for the tensors of one loss graph, derived from the model.

    Parameters: ``W1, b1`` for ``linear1.weight, linear1.bias`` (modules numbered in the order
    the data flows through them; no number when there is one); other parameters keep their
    name. Layer outputs: ``z{k}`` for the affine output of layer k, ``h{k}`` (or ``h``) for a
    hidden activation, ``o`` for the model's output. Data: ``x`` inputs, ``t`` targets,
    ``y`` integer labels. The loss is ``E``.
    """

    def __init__(
        self,
        loss: Node,
        wrt: Sequence[tuple[str | None, Node]],
        given: Mapping,
        labels: Labels | None = None,
        steps: StepNames | None = None,
    ):
        self.loss = loss
        self.labels = labels or {}  # the layer that made each node (tensor.graph_labels)
        self.steps = steps or {}  # what the layers call their loops' steps (graph_steps)
        self.order = toposort([loss])
        self.tensors: dict[Node, _Tensor] = {}
        self.groups: dict[Node, str] = {}  # parameter -> its layer's number ("" if one layer)
        self._taken: set[str] = {"E"}
        self.extra_ranks: dict[sympy.Symbol, int] = {}  # names of no tensor: a loop's h_{t+1}
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
        split = module_parameter
        layers = layer_numbers(full for full, _ in wrt)  # the generated code's numbers too
        # The second of two parameters of one name in this graph is shown "0.weight#2"
        # (ir.shown_names); the legend drops the tag unless that makes two alike.
        bare = Counter(re.sub(r"#\d+$", "", f) for f, _ in wrt if f)
        loose = 0
        for full, node in wrt:
            pa = split(full)
            if pa is not None:
                k = layers[pa[0]]
                name = _short(pa[1], k)
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
        if n in self.labels:
            return True
        # an elementwise node (only those carry a Formula) applying a named activation
        return isinstance(n.arg, Formula) and len(n.src) == 1 and n.arg.label in _activations()

    def _name_data(self, given: Mapping[Node, str]) -> None:
        # Inputs feed the model (its labelled layers), the rest feeds only the loss: targets.
        # A model without modules: the first data the loss reads is the input.
        labelled = [
            n for n in self.order if n in self.labels and n.op != "input" and n is not self.loss
        ]
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
        self,
        defs: Mapping[Node, sympy.Expr],
        temp: Mapping[Node, sympy.Symbol],
        through: Mapping[sympy.Symbol, sympy.Expr] | None = None,
    ) -> dict[sympy.Symbol, sympy.Symbol]:
        """Name the labelled nodes from their definitions (written in the placeholder symbols
        ``temp``, and in names defined by ``through``: a LayerNorm's x̂ = (z1 − μ)/σ);
        returns the renaming placeholder -> name."""
        users = consumers(self.order)
        layers = set(defs)
        roles: dict[Node, tuple[str, str]] = {}
        for n, d in defs.items():
            for _ in range(len(through or ())):  # what the names read, as placeholders
                d = d.xreplace(through or {})
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
            about = f"output of {_describe(self.labels[n]) if n in self.labels else n.arg.label}"
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
        ranks = {t.symbol: t.rank for t in self.tensors.values()} | self.extra_ranks

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
