"""``symbp.save`` and ``symbp.load``: tensors, state dicts (of modules and of optimizers) and
containers of them, in a file that holds numbers and structure only.

The file is a NumPy ``.npz`` archive: every array under a key, and one JSON document
(``__symbp__``) saying how they nest (dicts with any keys, lists, tuples, numbers, strings,
tensors with their ``requires_grad``). Nothing in it is pickled, so loading a file can never
run code, whatever its origin. ``symbp.load`` also reads a file PyTorch's ``torch.save`` wrote,
when torch is installed, with ``torch.load(weights_only=True)``: tensors and plain containers
only, as PyTorch's own safe loading; its tensors come back as symbp tensors.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from symbp.checkpoint import CheckpointError, atomic_write
from symbp.devices import check as check_device
from symbp.tensor import Parameter, Tensor, tensor

FORMAT = "symbp.save/1"
STRUCTURE = "__symbp__"  # the archive member holding the JSON structure

FileLike = str | os.PathLike[str] | IO[bytes]


def _pack(value: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """``value`` as JSON, its arrays moved into ``arrays`` under fresh keys."""
    if isinstance(value, Tensor):
        key = f"a{len(arrays)}"
        arrays[key] = np.array(value.numpy(), copy=True)
        kind = "parameter" if isinstance(value, Parameter) else "tensor"
        return {"__" + kind + "__": key, "requires_grad": bool(value.requires_grad)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(
                f"symbp.save: {where} is a NumPy array of {value.dtype}; symbp saves numeric "
                f"arrays only (an object array would need a pickle)"
            )
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return _pack(value.item(), arrays, where)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):  # JSON has no inf or nan: keep them exactly
        return value if np.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, Mapping):
        items = [
            [_pack(k, arrays, f"a key of {where}"), _pack(v, arrays, f"{where}[{k!r}]")]
            for k, v in value.items()
        ]
        return {"__dict__": items, "ordered": isinstance(value, OrderedDict)}
    if isinstance(value, tuple):
        return {"__tuple__": [_pack(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_pack(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"symbp.save: cannot save {where}, a {type(value).__name__}: symbp saves tensors, "
        f"arrays, numbers, strings, None and dicts, lists and tuples of them (no pickled "
        f"objects); save a module's state_dict(), not the module"
    )


def _unpack(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return [_unpack(v, arrays) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensor(arrays[value["__tensor__"]], requires_grad=value["requires_grad"])
    if "__parameter__" in value:
        return Parameter(np.array(arrays[value["__parameter__"]]), value["requires_grad"])
    if "__array__" in value:
        return np.array(arrays[value["__array__"]])
    if "__float__" in value:
        return float(value["__float__"])
    if "__tuple__" in value:
        return tuple(_unpack(v, arrays) for v in value["__tuple__"])
    if "__dict__" in value:
        items = [(_unpack(k, arrays), _unpack(v, arrays)) for k, v in value["__dict__"]]
        return OrderedDict(items) if value["ordered"] else dict(items)
    raise CheckpointError(f"symbp.load: unknown entry {sorted(value)} in the file's structure")


def save(obj: Any, f: FileLike) -> None:
    """Save ``obj`` (a tensor, a state dict, an optimizer's state dict, or dicts, lists and
    tuples of them) to the path or binary file ``f``, as ``torch.save`` does; written
    atomically to a path (a crash leaves the old file or the new one, never half of one)."""
    arrays: dict[str, np.ndarray] = {}
    structure = {"format": FORMAT, "object": _pack(obj, arrays, "the object")}
    members: dict[str, Any] = {
        **arrays,
        STRUCTURE: np.frombuffer(json.dumps(structure).encode(), dtype=np.uint8),
    }
    if hasattr(f, "write"):
        np.savez(f, **members)
        return
    with atomic_write(f) as out:
        np.savez(out, **members)


def load(
    f: FileLike,
    map_location: Any = None,
    weights_only: bool | None = None,
    mmap: bool | None = None,
    **pickle_load_args: Any,
) -> Any:
    """What ``save`` wrote to ``f`` (a path or a binary file), or what PyTorch's
    ``torch.save`` wrote, read as ``torch.load(weights_only=True)`` does.

    ``map_location`` may name the CPU (symbp's only device). Pickled objects beyond tensors
    and plain containers are refused even with ``weights_only=False``: symbp never unpickles
    code, so a file from an untrusted source is safe to load.
    """
    if (
        map_location is not None
        and not callable(map_location)
        and not isinstance(map_location, Mapping)
    ):
        check_device(map_location, "symbp.load(map_location=...)")
    source = f if hasattr(f, "read") else Path(f)  # type: ignore[arg-type]
    if isinstance(source, Path) and not source.is_file():
        raise FileNotFoundError(f"symbp.load: no such file: {source}")
    data = source.read_bytes() if isinstance(source, Path) else source.read()  # type: ignore[union-attr]
    name = str(source) if isinstance(source, Path) else "the file"
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = z.namelist()
        if f"{STRUCTURE}.npy" in members:
            return _load_symbp(data, name)
    return _load_torch(data, name)


def _load_symbp(data: bytes, name: str) -> Any:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
    except ValueError as e:  # an object array: NumPy would need a pickle
        raise CheckpointError(
            f"symbp.load: {name} holds pickled Python objects; symbp never unpickles a file"
        ) from e
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise CheckpointError(f"symbp.load: {name} is truncated or corrupt ({e})") from e
    structure = json.loads(arrays.pop(STRUCTURE).tobytes().decode())
    if structure.get("format") != FORMAT:
        raise CheckpointError(
            f"symbp.load: {name} was written in format {structure.get('format')!r}; this "
            f"symbp reads {FORMAT!r}"
        )
    return _unpack(structure["object"], arrays)


def _load_torch(data: bytes, name: str) -> Any:
    try:
        import torch
    except ImportError:
        raise CheckpointError(
            f"symbp.load: {name} is not a file symbp.save wrote; if PyTorch's torch.save wrote "
            f"it, reading it needs PyTorch (pip install torch)"
        ) from None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: never retry without
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        raise CheckpointError(
            f"symbp.load: {name} holds pickled Python objects besides tensors"
            + (f" ({found.group(1)})" if found else "")
            + "; symbp reads PyTorch files as torch.load(weights_only=True) does and never "
            "unpickles anything else (a pickle can run any code): save state_dict()s instead"
        ) from None
    except Exception as e:  # torch raises many kinds (zip, runtime) for a file it cannot read
        raise CheckpointError(f"symbp.load: cannot read {name}: {type(e).__name__}: {e}") from e
    return _from_torch(obj, torch)


def _from_torch(value: Any, torch: Any) -> Any:
    """PyTorch's tensors as symbp's, inside the same containers."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        if t.dtype in (torch.bfloat16, torch.float16):  # NumPy has no bfloat16: widen
            t = t.float()
        arr = t.numpy().copy()
        if isinstance(value, torch.nn.Parameter):
            return Parameter(arr, value.requires_grad)
        return tensor(arr, requires_grad=value.requires_grad)
    if isinstance(value, Mapping):
        items = [(k, _from_torch(v, torch)) for k, v in value.items()]
        return OrderedDict(items) if isinstance(value, OrderedDict) else dict(items)
    if isinstance(value, tuple):
        return tuple(_from_torch(v, torch) for v in value)
    if isinstance(value, list):
        return [_from_torch(v, torch) for v in value]
    return value


__all__ = ["load", "save"]
