"""Optimizers as update formulas.

An optimizer states its update rule once, as SymPy expressions of one parameter entry ``p``,
its gradient ``g``, its state entries and the hyperparameters (``rule``). ``step()`` evaluates
that rule with NumPy; the compiler lowers the very same formulas into the fused training step.
Hyperparameters stay symbols, so changing ``lr`` (a scheduler) needs no new derivation; only
choices that change the formula's shape (momentum on or off, nesterov) select another rule.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import sympy

from symbp.ir import shape_str
from symbp.tensor import Parameter, Tensor

P, G, T = sympy.symbols("p g t", real=True)  # parameter entry, gradient entry, step count


class Optimizer:
    defaults: dict[str, Any] = {}

    def __init__(self, params: Iterable[Parameter] | Iterable[dict], **hyper: Any):
        for k in hyper:
            if k not in self.defaults:
                raise TypeError(f"{type(self).__name__}: unknown option {k!r}")
        if isinstance(params, Tensor):  # as PyTorch: not iterated over its rows
            raise TypeError(
                f"{type(self).__name__}: params should be an iterable of Parameters or dicts, "
                f"got a single {type(params).__name__}; pass [p] or model.parameters()"
            )
        given: list[Any] = list(params)
        if not given:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        groups = given if isinstance(given[0], dict) else [{"params": given}]
        self.param_groups: list[dict[str, Any]] = []
        for g in groups:
            group = {**self.defaults, **hyper, **g, "params": list(g["params"])}
            self.check(group)
            self.param_groups.append(group)
        self.state: dict[int, dict[str, Any]] = {}

    def check(self, group: dict[str, Any]) -> None:
        for k, v in group.items():
            if k != "params" and isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
                raise ValueError(f"{type(self).__name__}: invalid {k}={v} (must be >= 0)")

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
        """The choices in ``group`` that change the formula (a zero momentum drops a term)."""
        return tuple(
            (k, v if isinstance(v, bool) else bool(v))
            for k, v in sorted(group.items())
            if k != "params" and isinstance(v, (bool, int, float))
        )

    def formulas(
        self, group: dict[str, Any]
    ) -> tuple[list[str], sympy.Expr, dict[str, sympy.Expr]]:
        """(hyperparameter names, new p, {state: new value}) for a group."""
        return _formulas(type(self), self.structure(group))  # type: ignore[arg-type]

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
            hyper, _, new_s = self.formulas(group)
            fn = _compiled(type(self), self.structure(group))  # type: ignore[arg-type]
            for p in group["params"]:
                if p._grad is None:
                    continue
                st = self.state.setdefault(id(p), {"step": 0})
                st["step"] += 1
                for name in new_s:
                    if name not in st:
                        st[name] = np.full_like(p._data, self.initial_state(group, name))
                dtype = p._data.dtype
                args = [p._data, p._grad, *(st[n] for n in new_s), *(group[k] for k in hyper)]
                with np.errstate(all="ignore"):
                    outs = fn(*args, st["step"])
                p.data = np.asarray(outs[0], dtype=dtype).reshape(p._data.shape)
                p._version += 1  # an update in place, as PyTorch's: older graphs are stale
                for name, v in zip(new_s, outs[1:]):
                    st[name] = np.asarray(v, dtype=dtype).reshape(p._data.shape)

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
            self.check(group)
            new_groups.append(group)
        slot_group = [g for g in new_groups for _ in g["params"]]
        new_state: dict[int, dict[str, Any]] = {}
        for key, entries in state["state"].items():
            i = _slot(what, key, len(params))
            p, known = params[i], {"step", *self.formulas(slot_group[i])[2]}
            loaded: dict[str, Any] = {}
            for name, v in entries.items():
                if name not in known:
                    raise ValueError(
                        f"{what}: state of parameter {i} ('{p.name}') has an entry {name!r} that "
                        f"{type(self).__name__} with these options does not keep "
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


@functools.lru_cache(maxsize=256)
def _formulas(cls: Any, structure: tuple):
    opts = dict(structure)
    hyper = [
        k
        for k, v in cls.defaults.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
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
