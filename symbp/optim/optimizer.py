"""Optimizers as update formulas.

An optimizer states its update rule once, as SymPy expressions of one parameter entry ``p``,
its gradient ``g``, its state entries and the hyperparameters (``rule``). ``step()`` evaluates
that rule with NumPy; the compiler lowers the very same formulas into the fused training step.
Hyperparameters stay symbols, so changing ``lr`` (a scheduler) needs no new derivation; only
choices that change the formula's shape (momentum on or off, nesterov) select another rule.
Which options those are is read off the rule itself: ``structure`` runs it and records the
options it branches on (``_branches``), so a new optimizer needs no separate list.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ir import G, P, T, shape_str
from symbp.tensor import Parameter, Tensor

# PyTorch's choices of implementation, not of mathematics: accepted by every optimizer and
# kept in its param groups (so a PyTorch state dict loads), with no effect on the update.
# ``differentiable=True`` (a gradient through the step itself) is refused: symbp's update
# is not part of the traced graph.
IMPLEMENTATION = {"foreach": None, "fused": None, "capturable": False, "differentiable": False}


class Optimizer:
    defaults: dict[str, Any] = {}
    # an option holding several hyperparameters, as PyTorch's Adam betas: its symbols' names
    components: dict[str, tuple[str, ...]] = {}
    # the step count t restarts when a state entry is created (SGD: PyTorch's momentum buffer
    # starts at the first gradient taken with momentum, whenever momentum is switched on)
    restart_count = False

    def __init__(self, params: Iterable[Parameter] | Iterable[dict], **hyper: Any):
        for k in hyper:
            if k not in self.defaults and k not in IMPLEMENTATION:
                raise TypeError(f"{type(self).__name__}: unknown option {k!r}")
        if isinstance(params, Tensor):  # as PyTorch: not iterated over its rows
            raise TypeError(
                f"{type(self).__name__}: params should be an iterable of Parameters or dicts, "
                f"got a single {type(params).__name__}; pass [p] or model.parameters()"
            )
        given: list[Any] = list(params)
        if not given:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        self._given = hyper  # add_param_group's defaults, as PyTorch's optimizer.defaults
        self.param_groups: list[dict[str, Any]] = []
        self.state: dict[int, dict[str, Any]] = {}
        for g in given if isinstance(given[0], dict) else [{"params": given}]:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters with its own options (the others: the constructor's)."""
        params = param_group["params"]
        params = [params] if isinstance(params, Parameter) else list(params)
        group = {**self.defaults, **IMPLEMENTATION, **self._given, **param_group, "params": params}
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params) or len({id(p) for p in params}) < len(params):
            raise ValueError(
                f"{type(self).__name__}: some parameters appear in more than one parameter group"
            )
        self.check(group)
        self.param_groups.append(group)

    def upgrade(self, group: dict[str, Any]) -> None:
        """Bring a group's options to today's form (a list from a JSON checkpoint: a tuple)."""
        for k in self.components:
            if isinstance(group.get(k), list):
                group[k] = tuple(group[k])

    def check(self, group: dict[str, Any]) -> None:
        self.upgrade(group)
        if group.get("differentiable"):
            raise ValueError(
                f"{type(self).__name__}: differentiable=True is not supported: symbp's update "
                f"step is not traced, so no gradient can flow through it"
            )
        for k, v in group.items():
            if k != "params" and isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"{type(self).__name__}: invalid {k}={v} (must be >= 0)")
        for k, names in self.components.items():
            v = group[k]
            if not (isinstance(v, (tuple, list)) and len(v) == len(names)):
                raise ValueError(
                    f"{type(self).__name__}: {k} must be {len(names)} numbers, got {v!r}"
                )
            if any(not isinstance(c, (int, float)) or c < 0 for c in v):
                raise ValueError(f"{type(self).__name__}: invalid {k}={v!r} (must be >= 0)")

    def hyper_values(self, group: dict[str, Any]) -> list[Any]:
        """The group's hyperparameters in the order of ``formulas(group)[0]``
        (an option with ``components``, Adam's betas, gives one value per component)."""
        out: list[Any] = []
        for k in _hyper_options(type(self)):  # type: ignore[arg-type]
            if k in self.components:
                v = group[k]
                if not (isinstance(v, (tuple, list)) and len(v) == len(self.components[k])):
                    raise ValueError(
                        f"{type(self).__name__}: param group option {k} must be "
                        f"{len(self.components[k])} numbers, got {v!r}"
                    )
                out.extend(v)
            else:
                out.append(group[k])
        return out

    # ------------------------------------------------------------ the rule

    def rule(
        self, h: dict[str, sympy.Symbol], s: dict[str, sympy.Symbol], opts: dict[str, Any]
    ) -> tuple[sympy.Expr, dict[str, sympy.Expr]]:
        """The new parameter entry and the new state entries, as formulas."""
        raise NotImplementedError

    def initial_state(self, group: dict[str, Any], name: str) -> float:
        """The value a state entry starts at (zero, unless the rule says otherwise)."""
        return 0.0

    def structure(self, group: dict[str, Any]) -> tuple:
        """The choices in ``group`` that change the formula: the options ``rule`` branches on,
        as truth values (a zero momentum drops a term), e.g. ``(("maximize", False),
        ("momentum", True), ("nesterov", False), ("weight_decay", False))`` for SGD with
        momentum. Every other option (lr, dampening, betas...) is a runtime value."""
        truths = tuple(
            (k, bool(group[k]))
            for k, v in sorted(self.defaults.items())
            if isinstance(v, (bool, int, float))
        )
        return _branches(type(self), truths)  # type: ignore[arg-type]

    def formulas(
        self, group: dict[str, Any]
    ) -> tuple[list[str], sympy.Expr, dict[str, sympy.Expr]]:
        """(hyperparameter names, new p, {state: new value}) for a group."""
        return _formulas(type(self), self.structure(group))  # type: ignore[arg-type]

    def late_start(self, group: dict[str, Any], t: int) -> str | None:
        """For an optimizer whose count restarts with new state (``restart_count``): the first
        state entry that, created now but counted from step ``t + 1`` rather than 1, would get
        another first value (SGD with dampening: (1 - dampening)·g, not PyTorch's g); None
        if the two agree for the group's values."""
        hyper, _, new_s = self.formulas(group)
        values = {sympy.Symbol(k, real=True): v for k, v in zip(hyper, self.hyper_values(group))}
        for n in new_s:
            values[sympy.Symbol(n, real=True)] = self.initial_state(group, n)
        for n, expr in new_s.items():
            e = expr.subs(values)
            if sympy.simplify(e.subs(T, 1) - e.subs(T, t + 1)) != 0:
                return n
        return None

    # ------------------------------------------------------------ PyTorch's protocol

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p._grad is not None:
                    p._grad[...] = 0  # in place, as PyTorch: a held p.grad sees the zeros

    def step(self) -> None:
        for group in self.param_groups:
            _, _, new_s = self.formulas(group)
            fn = _compiled(type(self), self.structure(group))  # type: ignore[arg-type]
            values = self.hyper_values(group)
            for p in group["params"]:
                if p._grad is None:
                    continue
                st = self.state.setdefault(id(p), {"step": 0})
                for name in new_s:
                    if name not in st:
                        st[name] = np.full_like(p._data, self.initial_state(group, name))
                        if self.restart_count:
                            st["step"] = 0
                st["step"] += 1
                args = [p._data, p._grad, *(st[n] for n in new_s), *values]
                with np.errstate(all="ignore"):
                    outs = fn(*args, st["step"])
                p.data = _entries(outs[0], p._data)
                p._version += 1  # an update in place, as PyTorch's: older graphs are stale
                for name, v in zip(new_s, outs[1:]):
                    st[name] = _entries(v, p._data)

    def state_dict(self) -> dict[str, Any]:
        index = {id(p): i for i, p in enumerate(self._params())}
        return {
            "state": {
                index[k]: {n: np.copy(v) for n, v in st.items()}
                for k, st in self.state.items()
                if k in index
            },
            "param_groups": [
                {
                    **{k: v for k, v in g.items() if k != "params"},
                    "params": [index[id(p)] for p in g["params"]],
                }
                for g in self.param_groups
            ],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s hyperparameters and state, slot by slot as PyTorch does.

        Everything is checked before anything changes (group sizes, hyperparameters, each
        state entry's name and shape), so a failed load leaves the optimizer as it was.
        """
        what = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping) or not {"state", "param_groups"} <= set(state):
            raise ValueError(f"{what}: expects a dict with 'state' and 'param_groups' entries")
        params, groups = self._params(), state["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{what}: loaded state dict has a different number of parameter groups "
                f"({len(groups)} in the state dict, {len(self.param_groups)} here)"
            )
        sizes = [len(g["params"]) for g in groups]
        mine_sizes = [len(g["params"]) for g in self.param_groups]
        if sizes != mine_sizes:
            raise ValueError(
                f"{what}: loaded state dict contains a parameter group that doesn't match the "
                f"size of optimizer's group (sizes {sizes} in the state dict, {mine_sizes} here)"
            )
        new_groups = []
        for mine, theirs in zip(self.param_groups, groups):
            group = {**mine, **{k: v for k, v in theirs.items() if k != "params"}}
            # each value is checked, not their combination: PyTorch checks that only at
            # construction, and a nesterov SGD whose momentum was later set to 0 must load
            Optimizer.check(self, group)
            new_groups.append(group)
        new_state: dict[int, dict[str, Any]] = {}
        for key, entries in state["state"].items():
            i = _slot(what, key, len(params))
            p, known = params[i], {"step", *_state_names(type(self))}  # type: ignore[arg-type]
            loaded: dict[str, Any] = {}
            for name, v in entries.items():
                if name not in known:
                    raise ValueError(
                        f"{what}: state of parameter {i} ('{p.name}') has an entry {name!r} that "
                        f"{type(self).__name__} never keeps "
                        f"(it keeps {sorted(known)}): state from another optimizer?"
                    )
                if name == "step":
                    loaded[name] = _step_count(what, i, v)
                    continue
                arr = np.asarray(v)
                if arr.shape != p._data.shape or arr.dtype.kind not in "biuf":
                    raise ValueError(
                        f"{what}: state '{name}' of parameter {i} ('{p.name}') is "
                        f"{arr.dtype}{shape_str(arr.shape)}, the parameter is "
                        f"{p._data.dtype}{shape_str(p._data.shape)}"
                    )
                loaded[name] = arr.astype(p._data.dtype)  # a copy in the parameter's dtype
            new_state[id(p)] = loaded
        for mine, group in zip(self.param_groups, new_groups):
            mine.update(group)
        self.state = new_state

    def _params(self) -> list[Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.param_groups[0].items() if k != "params")
        return f"{type(self).__name__}({opts})"


def _entries(value: Any, p: np.ndarray) -> np.ndarray:
    """A new value of ``p`` or of its state, entry by entry, as a fresh array like ``p``: a
    formula free of ``p``, ``g`` and the state (ASGD's next eta) evaluates to one number."""
    return np.array(np.broadcast_to(np.asarray(value, dtype=p.dtype), p.shape))


def _slot(what: str, key: Any, count: int) -> int:
    try:
        i = int(key)
    except (TypeError, ValueError):
        i = -1
    if not 0 <= i < count or (isinstance(key, float) and key != i):
        raise ValueError(
            f"{what}: the state dict holds state for parameter {key!r}, "
            f"but the optimizer has parameters 0..{count - 1}"
        )
    return i


def _step_count(what: str, i: int, v: Any) -> int:
    step = np.asarray(v)
    if step.shape != () or step.dtype.kind not in "iuf" or step != int(step) or step < 0:
        raise ValueError(f"{what}: parameter {i} has step {v!r}, not a count of steps")
    return int(step)


@functools.cache
def _hyper_options(cls: Any) -> list[str]:
    """The options that are hyperparameters: numbers, and ``components`` (Adam's betas)."""
    return [
        k
        for k, v in cls.defaults.items()
        if (isinstance(v, (int, float)) and not isinstance(v, bool)) or k in cls.components
    ]


@functools.cache
def _hyper_names(cls: Any) -> list[str]:
    """The hyperparameters' symbol names, as ``hyper_values`` orders their values."""
    return [n for k in _hyper_options(cls) for n in cls.components.get(k, (k,))]


class _Reads(dict):
    """Options that remember which of them were read: what a rule branches on."""

    def __init__(self, items: Iterable[tuple[str, bool]]):
        super().__init__(items)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


@functools.lru_cache(maxsize=256)
def _branches(cls: Any, truths: tuple) -> tuple:
    """The (option, truth) pairs of ``truths`` that the rule reads: its structure."""
    opts = _Reads(truths)
    h = {k: sympy.Symbol(k, real=True) for k in _hyper_names(cls)}
    cls.rule(cls.__new__(cls), h, _StateSymbols(), opts)
    return tuple((k, v) for k, v in truths if k in opts.read)


@functools.lru_cache(maxsize=256)
def _formulas(cls: Any, structure: tuple):
    opts = dict(structure)
    hyper = list(_hyper_names(cls))
    h = {k: sympy.Symbol(k, real=True) for k in hyper}
    s = _StateSymbols()
    new_p, new_s = cls.rule(cls.__new__(cls), h, s, opts)  # type: ignore[arg-type]
    return hyper, new_p, new_s


class _StateSymbols(dict):
    """State entries as symbols, made on first mention: ``s['exp_avg']``."""

    def __missing__(self, key: str) -> sympy.Symbol:
        self[key] = sympy.Symbol(key, real=True)
        return self[key]


@functools.lru_cache(maxsize=256)
def _compiled(cls: Any, structure: tuple):
    hyper, new_p, new_s = _formulas(cls, structure)
    args = [
        P,
        G,
        *(sympy.Symbol(n, real=True) for n in new_s),
        *(sympy.Symbol(k, real=True) for k in hyper),
        T,
    ]
    return sympy.lambdify(args, [new_p, *new_s.values()], modules="numpy")


@functools.cache
def _state_names(cls: Any) -> frozenset[str]:
    """Every state entry the optimizer keeps under some setting of its options: a loaded state
    may hold a buffer its options leave unused now (momentum switched off keeps its buffer)."""
    flags = sorted(k for k, v in cls.defaults.items() if isinstance(v, (bool, int, float)))
    names: set[str] = set()
    for bits in range(2 ** len(flags)):
        names |= set(
            _formulas(cls, tuple((k, bool(bits >> j & 1)) for j, k in enumerate(flags)))[2]
        )
    return frozenset(names)
