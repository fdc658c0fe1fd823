"""Whether ops record a graph: ``no_grad``, ``enable_grad``, ``set_grad_enabled``,
``inference_mode``, as PyTorch's context managers and decorators.

One flag per thread (PyTorch's grad mode is thread-local too), read in one place: the tensor
front end's ``_result``, which makes every result under ``no_grad`` a constant leaf.

>>> import symbp
>>> w = symbp.tensor([1.0, 2.0], requires_grad=True)
>>> with symbp.no_grad():
...     y = w * 2
>>> y.requires_grad, symbp.is_grad_enabled()
(False, True)
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

_state = threading.local()


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()`` / ``set_grad_enabled(False)`` (in this thread)."""
    return getattr(_state, "enabled", True)


def _set(mode: bool) -> None:
    _state.enabled = bool(mode)


class _GradMode:
    """A context manager that sets the grad mode and restores the previous one on exit; used
    as a decorator, each call of the function runs inside a fresh one (so nesting and
    recursion restore correctly). ``@no_grad`` without parentheses works too, as in PyTorch."""

    mode = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls._bare_decorator and len(args) == 1 and callable(args[0]) and not kwargs:
            return cls()(args[0])  # @symbp.no_grad
        return super().__new__(cls)

    _bare_decorator = True

    def __init__(self) -> None:
        self._prev: list[bool] = []

    def __enter__(self) -> None:
        self._prev.append(is_grad_enabled())
        _set(self.mode)

    def __exit__(self, *exc: Any) -> None:
        _set(self._prev.pop())

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.clone():
                return fn(*args, **kwargs)

        return wrapped

    def clone(self) -> _GradMode:
        return type(self)()


class no_grad(_GradMode):  # noqa: N801 (PyTorch's name)
    """Ops inside record no graph: their results have ``requires_grad=False`` and are
    constants to any later graph. ``w -= lr * w.grad`` here updates a leaf in place."""

    mode = False


class enable_grad(_GradMode):  # noqa: N801
    """Record graphs again inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled(_GradMode):  # noqa: N801
    """``set_grad_enabled(False)`` switches grad mode off at once (as a function call) and, as a
    context manager or decorator, restores the previous mode on exit."""

    _bare_decorator = False

    def __init__(self, mode: bool) -> None:
        super().__init__()
        self.mode = bool(mode)
        self._outer = is_grad_enabled()
        _set(self.mode)  # PyTorch sets it on construction: a plain call takes effect

    def __enter__(self) -> None:
        self._prev.append(self._outer)
        _set(self.mode)

    def clone(self) -> _GradMode:
        prev = is_grad_enabled()
        out = set_grad_enabled(self.mode)
        _set(prev)  # constructing one switched the mode: the call's __enter__ does that
        return out


class inference_mode(_GradMode):  # noqa: N801
    """``inference_mode(True)`` is ``no_grad`` in symbp; ``inference_mode(False)`` turns grad
    mode on, as PyTorch's does. (PyTorch also marks the results as inference tensors that
    autograd later refuses; symbp's results under it are ordinary constants.)"""

    def __new__(cls, mode: Any = True) -> Any:
        if callable(mode) and not isinstance(mode, bool):
            return cls()(mode)  # @symbp.inference_mode
        return object.__new__(cls)

    def __init__(self, mode: bool = True) -> None:
        super().__init__()
        self.inference = bool(mode)

    def __enter__(self) -> None:
        self._prev.append(is_grad_enabled())
        _set(not self.inference)

    def clone(self) -> _GradMode:
        return inference_mode(self.inference)


__all__ = [
    "enable_grad",
    "inference_mode",
    "is_grad_enabled",
    "no_grad",
    "set_grad_enabled",
]
