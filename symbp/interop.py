"""Weights in and out: PyTorch ``state_dict`` files (``.pt``), safetensors files
(``.safetensors``, as Hugging Face and ``safetensors.torch.save_file`` write them), NumPy
archives (``.npz``).

symbp's layers store their parameters as PyTorch's do (``Linear.weight`` is
``[out_features, in_features]``, ``Conv2d.weight`` is ``[out, in/groups, kh, kw]``,
``BatchNorm`` keeps ``running_mean``, ``running_var`` and ``num_batches_tracked``), and
``Module`` names them the same way (``features.0.weight``). So a model written the same way
in both libraries maps its state dict name for name, with nothing transposed::

    torch.save(torch_model.state_dict(), "weights.pt")  # in PyTorch
    symbp.load_weights(symbp_model, "weights.pt")       # in symbp: same forward

Names must match one to one; a difference is an error that lists the names on each side, and
a shape difference names the parameter. ``rename`` maps the file's names first (a function or a
dict), for example ``rename=lambda k: k.removeprefix("module.")`` for a model saved from
``DataParallel``.

Reading ``.pt`` needs PyTorch; it is loaded with ``weights_only=True`` (tensors and plain
containers, never arbitrary pickled objects). ``.safetensors`` needs the ``safetensors``
package (``pip install "symbp[safetensors]"``; its NumPy API, no torch): a header of names,
dtypes and shapes, then raw bytes, so nothing in it can run code. ``.npz`` needs nothing but
NumPy, and a symbp checkpoint (``symbp.save_checkpoint``) is an ``.npz`` whose model weights
load here too.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from symbp.checkpoint import META, atomic_write, read_npz
from symbp.nn.module import IncompatibleKeys  # one type for both loaders

__all__ = ["IncompatibleKeys", "WeightsError", "load_weights", "read_state_dict", "save_weights"]

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
SAFETENSORS = ".safetensors"
# Where training scripts commonly nest the model's state dict inside a bigger checkpoint.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")


class WeightsError(ValueError):
    """Weights that do not fit the model, or a file that holds none."""


# ---------------------------------------------------------------- reading


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            "reading or writing a PyTorch .pt file needs PyTorch (pip install torch); "
            "without it, save the weights as .npz on the PyTorch side: "
            "np.savez('weights.npz', **{k: v.numpy() for k, v in model.state_dict().items()})"
        ) from e
    return torch


def _safetensors() -> Any:
    try:
        import safetensors.numpy
    except ImportError as e:
        raise ImportError(
            "reading or writing a .safetensors file needs the safetensors package: "
            'pip install "symbp[safetensors]" (or pip install safetensors)'
        ) from e
    return safetensors.numpy


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    st = _safetensors()
    try:
        return dict(st.load_file(str(path)))
    except Exception as e:  # a truncated header, a dtype NumPy lacks (bfloat16) ...
        hint = (
            " (NumPy has no bfloat16: convert it on the PyTorch side with .float())"
            if "bf16" in str(e).lower() or "bfloat16" in str(e).lower()
            else ""
        )
        raise WeightsError(f"cannot read {path} as safetensors: {e}{hint}") from e


def _to_numpy(name: str, value: Any, source: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
        t = value.detach().cpu()
        if t.dtype in _torch_low_precision():  # NumPy has no bfloat16: widen
            t = t.float()
        return t.numpy()
    if isinstance(value, (int, float, bool, np.generic)):
        return np.asarray(value)
    raise WeightsError(
        f"{source}: entry '{name}' is a {type(value).__name__}, not a tensor or array"
    )


def _torch_low_precision() -> tuple[Any, ...]:
    torch = _torch()
    return (torch.bfloat16, torch.float16)


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) for k in obj)
        and all(hasattr(v, "shape") for v in obj.values())
    )


def read_state_dict(source: str | os.PathLike[str] | Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A state dict as NumPy arrays, from a ``.pt``/``.pth`` file (PyTorch), an ``.npz`` file
    (plain, or a symbp checkpoint's model part), or a mapping of tensors or arrays."""
    if isinstance(source, Mapping):
        return {k: _to_numpy(k, v, "state dict") for k, v in source.items()}
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    if path.suffix == ".npz":
        arrays = read_npz(path)
        if META in arrays:  # a symbp checkpoint: its model part
            return {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
        return arrays
    if path.suffix == SAFETENSORS:
        return _read_safetensors(path)
    if path.suffix not in TORCH_SUFFIXES:
        raise WeightsError(
            f"{path}: unknown weights format {path.suffix!r} (expected .npz, {SAFETENSORS}, "
            f"or {', '.join(TORCH_SUFFIXES)} for PyTorch)"
        )
    torch = _torch()
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # an object weights_only refused: never retry without
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise WeightsError(
            f"{path} holds pickled Python objects besides tensors"
            + (f" ({found.group(1)})" if found else "")
            + "; symbp reads .pt files with torch.load(weights_only=True) and never unpickles "
            "anything else (a pickle can run any code): save the tensors alone, "
            "torch.save(model.state_dict(), path)"
        ) from None
    except Exception as e:  # torch raises many kinds (pickle, zip, runtime) for a bad file
        raise WeightsError(f"cannot read {path} with torch.load: {e}") from e
    if hasattr(obj, "state_dict") and not isinstance(obj, Mapping):
        obj = obj.state_dict()
    if not _is_state_dict(obj) and isinstance(obj, Mapping):
        nested = [k for k in NESTED_KEYS if _is_state_dict(obj.get(k))]
        if nested:  # a training checkpoint {"model_state_dict": ..., "epoch": ...}
            obj = obj[nested[0]]
    if not _is_state_dict(obj):
        keys = list(obj)[:8] if isinstance(obj, Mapping) else []
        raise WeightsError(
            f"{path} holds no state dict (a {type(obj).__name__}"
            + (f" with keys {keys}" if keys else "")
            + "); save one with torch.save(model.state_dict(), path)"
        )
    return {k: _to_numpy(k, v, str(path)) for k, v in obj.items()}


# ---------------------------------------------------------------- loading into a model


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _prefix_hint(missing: list[str], unexpected: list[str]) -> str:
    """A rename that would make the names match, when one prefix explains the difference."""
    for prefix in ("module.", "model.", "net."):
        stripped = {k[len(prefix) :] for k in unexpected if k.startswith(prefix)}
        if unexpected and len(stripped) == len(unexpected) and stripped >= set(missing):
            return (
                f"; the file's names start with {prefix!r}: pass "
                f"rename=lambda k: k.removeprefix({prefix!r})"
            )
    return ""


def load_weights(
    model: Any,
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    strict: bool = True,
    rename: Callable[[str], str] | Mapping[str, str] | None = None,
) -> IncompatibleKeys:
    """Load parameters and buffers into ``model`` by name from a file or a state dict.

    ``source`` is a ``.pt``/``.pth`` path (PyTorch), an ``.npz`` path, or a mapping (for
    example ``torch_model.state_dict()``). All names and shapes are checked before any weight
    changes. With ``strict`` (the default) the names must match exactly; otherwise the common
    names load and the others are returned, as PyTorch does. Values are cast to the model's
    dtypes.
    """
    if not hasattr(model, "state_dict") and hasattr(model, "net"):  # a CompiledModel
        model = model.net
    where = "the state dict" if isinstance(source, Mapping) else str(source)
    state = read_state_dict(source)
    if rename is not None:
        new = [rename.get(k, k) if isinstance(rename, Mapping) else rename(k) for k in state]
        clashes = sorted({n for n in new if new.count(n) > 1})
        if clashes:
            raise WeightsError(f"rename maps several names of {where} to {', '.join(clashes)}")
        state = dict(zip(new, state.values()))

    mine: dict[str, tuple[int, ...]] = {n: p._data.shape for n, p in model.named_parameters()}
    mine.update({n: np.shape(b) for n, b in model.named_buffers()})
    missing = [n for n in mine if n not in state]
    unexpected = [n for n in state if n not in mine]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing from {where}: {', '.join(missing)}")
        if unexpected:
            parts.append(
                f"in {where} but not in the model: "
                + ", ".join(f"{k} {_shape(state[k].shape)}" for k in unexpected)
            )
        raise WeightsError(
            f"{type(model).__name__} and {where} do not match: "
            + "; ".join(parts)
            + _prefix_hint(missing, unexpected)
        )
    for name, shape in mine.items():
        if name in state and state[name].shape != tuple(shape):
            hint = " (transposed?)" if state[name].shape == tuple(shape)[::-1] else ""
            raise WeightsError(
                f"'{name}' is {_shape(tuple(shape))} in {type(model).__name__} but "
                f"{_shape(state[name].shape)} in {where}{hint}"
            )
    model.load_state_dict({k: v for k, v in state.items() if k in mine}, strict=False)
    return IncompatibleKeys(missing, unexpected)


# ---------------------------------------------------------------- saving


def save_weights(model: Any, path: str | os.PathLike[str]) -> Path:
    """Write the model's state dict atomically: ``.npz`` with NumPy, ``.safetensors`` for
    PyTorch and Hugging Face users (``safetensors.torch.load_file(path)``), ``.pt``/``.pth`` as
    a PyTorch state dict of tensors (``torch_model.load_state_dict(torch.load(path))``)."""
    if not hasattr(model, "state_dict") and hasattr(model, "net"):
        model = model.net
    path = Path(path)
    state: dict[str, Any] = {k: np.array(v, order="C") for k, v in model.state_dict().items()}
    if path.suffix == ".npz":
        with atomic_write(path) as f:
            np.savez(f, **state)
    elif path.suffix == SAFETENSORS:
        st = _safetensors()
        # BatchNorm's num_batches_tracked is a 0-d int64, as PyTorch's: safetensors keeps both
        with atomic_write(path) as f:
            f.write(st.save({k: np.ascontiguousarray(v) for k, v in state.items()}))
    elif path.suffix in TORCH_SUFFIXES:
        torch = _torch()
        tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
        with atomic_write(path) as f:
            torch.save(tensors, f)
    else:
        raise WeightsError(
            f"{path}: unknown weights format {path.suffix!r} (use .npz, {SAFETENSORS}, or .pt "
            f"for PyTorch)"
        )
    return path
