"""Optimizers as update formulas.

An optimizer states its update rule once, as SymPy expressions of one parameter entry ``p``,
its gradient ``g``, its state entries and the hyperparameters (``rule``). ``step()`` evaluates
that rule with NumPy; the compiler lowers the very same formulas into the fused training step.
Hyperparameters stay symbols, so changing ``lr`` (a scheduler) needs no new derivation; only
choices that change the formula's shape (momentum on or off, nesterov) select another rule.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import numpy as np
import sympy

from symbp.tensor import Parameter

P, G, T = sympy.symbols("p g t", real=True)  # parameter entry, gradient entry, step count


class Optimizer:
    defaults: dict[str, Any] = {}

    def __init__(self, params: Iterable[Parameter] | Iterable[dict], **hyper: Any):
        for k in hyper:
            if k not in self.defaults:
                raise TypeError(f"{type(self).__name__}: unknown option {k!r}")
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
                p.grad = None if set_to_none or p.grad is None else np.zeros_like(p.grad)

    def step(self) -> None:
        for group in self.param_groups:
            hyper, _, new_s = self.formulas(group)
            fn = _compiled(type(self), self.structure(group))  # type: ignore[arg-type]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state.setdefault(id(p), {"step": 0})
                st["step"] += 1
                for name in new_s:
                    if name not in st:
                        st[name] = np.full_like(p.data, self.initial_state(group, name))
                dtype = p.data.dtype
                args = [p.data, p.grad, *(st[n] for n in new_s), *(group[k] for k in hyper)]
                with np.errstate(all="ignore"):
                    outs = fn(*args, st["step"])
                p.data = np.asarray(outs[0], dtype=dtype).reshape(p.data.shape)
                for name, v in zip(new_s, outs[1:]):
                    st[name] = np.asarray(v, dtype=dtype).reshape(p.data.shape)

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

    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = self._params()
        groups = state["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("load_state_dict: the number of parameter groups differs")
        for mine, theirs in zip(self.param_groups, groups):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError("load_state_dict: a parameter group has a different size")
            mine.update({k: v for k, v in theirs.items() if k != "params"})
        self.state = {
            id(params[int(i)]): {
                n: (np.copy(v) if isinstance(v, np.ndarray) else v) for n, v in st.items()
            }
            for i, st in state["state"].items()
        }

    def _params(self) -> list[Parameter]:
        return [p for g in self.param_groups for p in g["params"]]

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.param_groups[0].items() if k != "params")
        return f"{type(self).__name__}({opts})"


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
