"""What ``CompiledModel.fit`` does between epochs: early stopping, and reading the monitored metric.

>>> stop = EarlyStopping(monitor="val_loss", patience=2)
>>> [stop.update(v) for v in (1.0, 0.8, 0.9, 0.85)]  # no improvement for 2 epochs: stop
[False, False, False, True]
>>> stop.best, stop.best_epoch
(0.8, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["EarlyStopping", "monitored"]


@dataclass
class EarlyStopping:
    """Stop ``fit`` when ``monitor`` has not improved for ``patience`` epochs (as Keras).

    An epoch improves when it beats the best so far by more than ``min_delta`` (lower is better
    in ``mode="min"``; ``"auto"`` is ``"max"`` for accuracies, ``"min"`` otherwise). With
    ``restore_best=True`` the parameters of the best epoch are put back when it stops training
    (as Keras' ``restore_best_weights``: not when the epochs simply run out); the optimizer
    state is left as it is. ``best_epoch`` and ``stopped_epoch`` count epochs from 0, from the
    start of the ``fit`` or of the run it resumes.

    ``state_dict()`` / ``load_state_dict()`` carry the counters and the best epoch's parameters
    (``best_weights``, by name), so that a checkpoint resumes early stopping exactly where it was
    (``fit(checkpoint=..., resume=...)`` does this).
    """

    monitor: str = "val_loss"
    patience: int = 5
    min_delta: float = 0.0
    mode: Literal["auto", "min", "max"] = "auto"
    restore_best: bool = True
    best: float = field(default=math.nan, init=False)
    best_epoch: int = field(default=-1, init=False)
    wait: int = field(default=0, init=False)
    stopped_epoch: int | None = field(default=None, init=False)
    _epoch: int = field(default=0, init=False, repr=False)
    best_weights: dict[str, np.ndarray] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode == "auto":
            self.mode = "max" if "acc" in self.monitor else "min"
        if self.mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', not {self.mode}")
        if self.patience < 0 or self.min_delta < 0:
            raise ValueError("EarlyStopping: need patience >= 0 and min_delta >= 0")

    def reset(self) -> None:
        """Forget the epochs seen (``fit`` calls this when it starts)."""
        self.best, self.best_epoch, self.wait, self.stopped_epoch = math.nan, -1, 0, None
        self._epoch = 0
        self.best_weights = None

    def improved(self, value: float) -> bool:
        if math.isnan(self.best):
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, value: float) -> bool:
        """Record one epoch's value of ``monitor``; True when training should stop."""
        epoch, self._epoch = self._epoch, self._epoch + 1
        if self.improved(value):
            self.best, self.best_epoch, self.wait = float(value), epoch, 0
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        """What ``load_state_dict`` needs to carry on: the options it checks, the counters, and
        the best parameters when kept (plain numbers, strings and arrays)."""
        return {
            "monitor": self.monitor,
            "mode": self.mode,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "epoch": self._epoch,
            "best_weights": self.best_weights,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Carry on from ``state``; ``monitor`` and ``mode`` must match (``patience`` and
        ``min_delta`` are this object's: a resumed run may be given more patience)."""
        for key in ("monitor", "mode"):
            if state[key] != getattr(self, key):
                raise ValueError(
                    f"EarlyStopping: the saved state has {key}={state[key]!r}, this one "
                    f"{key}={getattr(self, key)!r}"
                )
        self.best = float(state["best"])
        self.best_epoch, self.wait = int(state["best_epoch"]), int(state["wait"])
        stopped = state["stopped_epoch"]
        self.stopped_epoch = None if stopped is None else int(stopped)
        self._epoch = int(state["epoch"])
        kept = state.get("best_weights")
        self.best_weights = None if kept is None else {k: np.array(v) for k, v in kept.items()}


def monitored(history: dict[str, list[float]], name: str, who: str) -> float:
    """The latest value of ``name`` in the history, or a clear error naming what exists."""
    if name not in history or not history[name]:
        known = ", ".join(sorted(history)) or "none"
        hint = " (pass validation_data= for val_ metrics)" if name.startswith("val_") else ""
        raise ValueError(f"fit: {who} monitors {name!r}, not in the history ({known}){hint}")
    return float(history[name][-1])


def as_early_stopping(spec: Any) -> EarlyStopping | None:
    """``fit(early_stopping=...)``: None/False, True (defaults), a dict of options, or one."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return EarlyStopping()
    if isinstance(spec, dict):
        return EarlyStopping(**spec)
    if isinstance(spec, EarlyStopping):
        return spec
    raise TypeError(f"fit: early_stopping must be an EarlyStopping, a dict or True, not {spec!r}")
