"""Checkpoints: model, optimizer and scheduler state, epoch and history in one ``.npz`` file.

>>> import tempfile, os, numpy as np, symbp
>>> net = symbp.nn.Linear(3, 2)
>>> opt = symbp.optim.Adam(net.parameters(), lr=0.01)
>>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
>>> _ = symbp.save_checkpoint(path, net, opt, epoch=5, history={"loss": [0.9, 0.5]})
>>> ckpt = symbp.load_checkpoint(path, net, opt)
>>> ckpt.epoch, ckpt.history["loss"]
(5, [0.9, 0.5])

The file is a plain NumPy archive, readable without symbp (``np.load(path)``):

- ``model/<name>``: every parameter and buffer by its dotted name (``linear1.weight``);
- ``optimizer/...``, ``scheduler/...``, ``early_stopping/...``: the arrays of their state
  dicts (``exp_avg`` ..., early stopping's best parameters);
- ``__symbp__``: one JSON string with everything else: the format version, the epoch, the
  history, the optimizer's hyperparameters, which model parameter each optimizer slot holds,
  and the class names, so a load can check it restores into matching objects.

**Atomic writes.** The archive is written to a temporary file in the destination directory,
flushed and fsynced, then moved over the destination with ``os.replace`` (atomic on POSIX and
Windows), and the directory is fsynced. A crash or an error mid-write leaves the previous
checkpoint intact and only a stray ``.<name>.*.tmp`` file behind; a reader never sees half a
file.

**Checked loads.** Everything is validated before anything is changed: a checkpoint that does
not fit (a missing or renamed parameter, a different shape, another optimizer) raises
``CheckpointError`` naming the parameter, and the model and optimizer keep their state.
A truncated or corrupt file fails its zip CRC and raises ``CheckpointError`` too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "atomic_write",
    "load_checkpoint",
    "read_npz",
    "save_checkpoint",
]

FORMAT = "symbp.checkpoint"
VERSION = 1
META = "__symbp__"  # the archive entry holding the JSON metadata


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the objects it is loaded into."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds, as read back by ``load_checkpoint``.

    ``model`` maps dotted names to arrays; ``optimizer``, ``scheduler`` and ``early_stopping``
    are state dicts (as their ``state_dict()`` returned them) or None; ``epoch``, ``history``
    and ``extra`` are as saved.
    """

    path: Path
    model: dict[str, np.ndarray]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    early_stopping: dict[str, Any] | None = None
    epoch: int | None = None
    history: dict[str, list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)


# ---------------------------------------------------------------- atomic files


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a binary file that replaces ``path`` only once it is completely written.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "data.bin")
    >>> with atomic_write(p) as f:
    ...     _ = f.write(b"all or nothing")
    >>> open(p, "rb").read()
    b'all or nothing'
    """
    directory = check_writable(path)
    path = Path(path)
    # Same directory, so that os.replace is a rename within one file system.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)  # make the rename itself durable


def check_writable(path: str | os.PathLike[str], what: str = "") -> Path:
    """The directory ``path`` would be written in, or a clear error now: a missing directory,
    or ``path`` itself a directory (``fit`` checks its checkpoint before training)."""
    path = Path(path)
    lead = f"{what}: " if what else ""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"{lead}cannot write {path}: no directory {directory}")
    if path.is_dir():
        raise IsADirectoryError(f"{lead}cannot write {path}: it is a directory; give a file name")
    if not os.access(directory, os.W_OK):
        raise PermissionError(f"{lead}cannot write {path}: directory {directory} is read-only")
    return directory


@functools.cache
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read eagerly (so CRC errors surface here), no pickles."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    name = None  # the array being read, once the file opened as an archive
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {}
            for name in archive.files:
                arrays[name] = archive[name]
            return arrays
    except ValueError as e:
        if name is None or "allow_pickle" not in str(e):  # not a zip: NumPy took it for a pickle
            raise CheckpointError(f"cannot read {path}: the file is truncated or corrupt "
                                  f"(ValueError: {e})") from e  # fmt: skip
        # An object array is a pickle, and unpickling runs whatever code the file names.
        raise CheckpointError(
            f"{path}: array {name!r} holds pickled Python objects; symbp never unpickles a "
            f"file (a pickle can run any code). Save numeric arrays only (np.savez)"
        ) from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError) as e:
        raise CheckpointError(
            f"cannot read {path}: the file is truncated or corrupt ({type(e).__name__}: {e})"
        ) from e


# ---------------------------------------------------------------- nested state <-> JSON + arrays


def _pack(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    """``value`` as JSON, with its arrays moved to ``arrays`` and referenced by key."""
    if isinstance(value, np.ndarray):
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _pack(v, f"{key}/{k}", arrays) for k, v in value.items()}
        # Optimizer state is keyed by parameter index: keep the keys' types.
        return {
            "__items__": [
                [_pack(k, key, {}), _pack(v, f"{key}/{k}", arrays)] for k, v in value.items()
            ]
        }
    if isinstance(value, (list, tuple)):
        return [_pack(v, f"{key}/{i}", arrays) for i, v in enumerate(value)]
    raise CheckpointError(
        f"cannot store {key} in a checkpoint: {type(value).__name__} is not a number, string, "
        f"array, list or dict"
    )


def _unpack(value: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__items__" in value:
            return {_unpack(k, arrays): _unpack(v, arrays) for k, v in value["__items__"]}
        return {k: _unpack(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v, arrays) for v in value]
    return value


# ---------------------------------------------------------------- saving


def _unwrap(model: Any, optimizer: Any) -> tuple[Any, Any]:
    """A ``CompiledModel`` stands for its network and optimizer."""
    if model is not None and not hasattr(model, "state_dict") and hasattr(model, "net"):
        return model.net, optimizer if optimizer is not None else model.optimizer
    return model, optimizer


def _optimizer_params(optimizer: Any) -> list[Any]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Any,
    optimizer: Any = None,
    *,
    scheduler: Any = None,
    early_stopping: Any = None,
    epoch: int | None = None,
    history: Mapping[str, list[float]] | None = None,
    extra: Mapping[str, Any] | None = None,
    compress: bool = False,
    allow_nonfinite: bool = False,
) -> Path:
    """Write model (and optimizer, scheduler) state to ``path`` atomically; return the path.

    ``model`` is an ``nn.Module`` or a compiled model (its network and optimizer are saved);
    ``epoch`` is conventionally the number of epochs completed, so training resumes at
    ``range(ckpt.epoch, epochs)``. ``early_stopping`` is an ``EarlyStopping`` (its counters and
    best parameters). ``extra`` holds any other JSON-able values or arrays.

    A NaN or Inf in the model's parameters or buffers is an error (a checkpoint is what a run
    goes back to), unless ``allow_nonfinite``.
    """
    model, optimizer = _unwrap(model, optimizer)
    arrays: dict[str, np.ndarray] = {}
    for name, value in model.state_dict().items():
        arrays[f"model/{name}"] = np.asarray(value)
        a = arrays[f"model/{name}"]
        if not allow_nonfinite and a.dtype.kind in "fc" and not np.isfinite(a).all():
            raise FloatingPointError(
                f"save_checkpoint: '{name}' holds {int((~np.isfinite(a)).sum())} non-finite "
                f"values of {a.size}; not written to {path} (allow_nonfinite=True writes it)"
            )
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "model_class": type(model).__name__,
        "epoch": None if epoch is None else int(epoch),
        "history": _pack(dict(history), "history", arrays) if history is not None else None,
        "extra": _pack(dict(extra or {}), "extra", arrays),
    }
    if optimizer is not None:
        names = {id(p): n for n, p in model.named_parameters()}
        meta["optimizer_class"] = type(optimizer).__name__
        # Which model parameter each optimizer slot holds: the state is keyed by slot.
        meta["optimizer_params"] = [names.get(id(p)) for p in _optimizer_params(optimizer)]
        meta["optimizer"] = _pack(optimizer.state_dict(), "optimizer", arrays)
    if scheduler is not None:
        meta["scheduler_class"] = type(scheduler).__name__
        meta["scheduler"] = _pack(scheduler.state_dict(), "scheduler", arrays)
    if early_stopping is not None:
        meta["early_stopping"] = _pack(early_stopping.state_dict(), "early_stopping", arrays)
    arrays[META] = np.array(json.dumps(meta))
    path = Path(path)
    write: Any = np.savez_compressed if compress else np.savez
    with atomic_write(path) as f:
        write(f, **arrays)
    return path


# ---------------------------------------------------------------- loading


def load_checkpoint(
    path: str | os.PathLike[str],
    model: Any = None,
    optimizer: Any = None,
    *,
    scheduler: Any = None,
    early_stopping: Any = None,
    strict: bool = True,
) -> Checkpoint:
    """Read a checkpoint and restore it into ``model``, ``optimizer``, ``scheduler`` and
    ``early_stopping`` (each optional); return what the file holds.

    Everything is checked before anything changes. With ``strict`` the model's parameter and
    buffer names must match the file's exactly; without, only the common names load. As in
    PyTorch, build the scheduler before loading (its constructor writes ``lr``; the loaded
    optimizer state then restores the scheduled value).
    """
    path = Path(path)
    model, optimizer = _unwrap(model, optimizer)
    arrays = read_npz(path)
    if META not in arrays:
        raise CheckpointError(
            f"{path} is an .npz archive but not a symbp checkpoint (no {META!r} entry); "
            f"plain weights load with symbp.load_weights"
        )
    try:
        meta = json.loads(str(arrays.pop(META)))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: the checkpoint's metadata is corrupt ({e})") from e
    if meta.get("format") != FORMAT or int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path}: format {meta.get('format')!r} version {meta.get('version')} is not one this "
            f"symbp reads ({FORMAT} up to version {VERSION})"
        )
    try:
        ckpt = Checkpoint(
            path=path,
            model={k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")},
            optimizer=_unpack(meta.get("optimizer"), arrays),
            scheduler=_unpack(meta.get("scheduler"), arrays),
            early_stopping=_unpack(meta.get("early_stopping"), arrays),
            epoch=meta.get("epoch"),
            history=_unpack(meta.get("history"), arrays),
            extra=_unpack(meta.get("extra") or {}, arrays),
            meta=meta,
        )
    except KeyError as e:
        raise CheckpointError(f"{path}: the checkpoint lacks the array {e}") from e

    # Check all, then change all: a failed load leaves every object as it was.
    if model is not None:
        _check_model(ckpt, model, strict)
    if optimizer is not None:
        _check_optimizer(ckpt, optimizer, model)
    if scheduler is not None:
        _check_scheduler(ckpt, scheduler)
    if early_stopping is not None:
        _check_early_stopping(ckpt, early_stopping)
    if model is not None:
        known = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
        model.load_state_dict({k: v for k, v in ckpt.model.items() if k in known}, strict=False)
    if optimizer is not None:
        optimizer.load_state_dict(ckpt.optimizer)
    if scheduler is not None:
        scheduler.load_state_dict(ckpt.scheduler)
    if early_stopping is not None:
        early_stopping.load_state_dict(ckpt.early_stopping)
    return ckpt


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _check_model(ckpt: Checkpoint, model: Any, strict: bool) -> None:
    mine = {n: p._data for n, p in model.named_parameters()}
    mine.update(dict(model.named_buffers()))
    if strict:
        missing = [n for n in mine if n not in ckpt.model]
        unexpected = [n for n in ckpt.model if n not in mine]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing from the file: {', '.join(missing)}")
            if unexpected:
                parts.append(f"not in the model: {', '.join(unexpected)}")
            raise CheckpointError(
                f"checkpoint {ckpt.path} does not fit {type(model).__name__} "
                f"({'; '.join(parts)}); load_checkpoint(..., strict=False) loads the common names"
            )
    for name, value in mine.items():
        saved = ckpt.model.get(name)
        if saved is not None and saved.shape != np.shape(value):
            raise CheckpointError(
                f"checkpoint {ckpt.path}: '{name}' has shape {_shape(saved.shape)} in the file "
                f"but {_shape(np.shape(value))} in the model"
            )


def _check_optimizer(ckpt: Checkpoint, optimizer: Any, model: Any) -> None:
    saved, meta = ckpt.optimizer, ckpt.meta
    what = type(optimizer).__name__
    if saved is None:
        raise CheckpointError(
            f"checkpoint {ckpt.path} holds no optimizer state to load into {what}"
        )
    if meta.get("optimizer_class") != what:
        raise CheckpointError(
            f"checkpoint {ckpt.path} holds {meta.get('optimizer_class')} state, "
            f"the optimizer is {what}"
        )
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups) or any(
        len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, optimizer.param_groups)
    ):
        sizes = [len(g["params"]) for g in groups]
        mine_sizes = [len(g["params"]) for g in optimizer.param_groups]
        raise CheckpointError(
            f"checkpoint {ckpt.path}: the optimizer's parameter groups have sizes {sizes} in the "
            f"file but {mine_sizes} here"
        )
    params = _optimizer_params(optimizer)
    saved_names = meta.get("optimizer_params") or [None] * len(params)
    names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    for i, p in enumerate(params):
        name = names.get(id(p)) or getattr(p, "name", f"parameter {i}")
        if model is not None and saved_names[i] is not None and names.get(id(p)) != saved_names[i]:
            raise CheckpointError(
                f"checkpoint {ckpt.path}: optimizer slot {i} holds '{saved_names[i]}' in the "
                f"file but '{name}' here (parameters passed in another order?)"
            )
        for key, value in saved["state"].get(i, {}).items():
            if isinstance(value, np.ndarray) and value.ndim and value.shape != p._data.shape:
                raise CheckpointError(
                    f"checkpoint {ckpt.path}: optimizer state '{key}' of '{name}' has shape "
                    f"{_shape(value.shape)} in the file but the parameter is "
                    f"{_shape(p._data.shape)}"
                )


def _check_scheduler(ckpt: Checkpoint, scheduler: Any) -> None:
    what = type(scheduler).__name__
    if ckpt.scheduler is None:
        raise CheckpointError(
            f"checkpoint {ckpt.path} holds no scheduler state to load into {what}"
        )
    if ckpt.meta.get("scheduler_class") != what:
        raise CheckpointError(
            f"checkpoint {ckpt.path} holds {ckpt.meta.get('scheduler_class')} state, "
            f"the scheduler is {what}"
        )


def _check_early_stopping(ckpt: Checkpoint, stopper: Any) -> None:
    saved = ckpt.early_stopping
    if saved is None:
        raise CheckpointError(
            f"checkpoint {ckpt.path} holds no early-stopping state (it was saved without early "
            f"stopping)"
        )
    for key in ("monitor", "mode"):
        if saved.get(key) != getattr(stopper, key):
            raise CheckpointError(
                f"checkpoint {ckpt.path}: early stopping has {key}={saved.get(key)!r} in the "
                f"file but {key}={getattr(stopper, key)!r} here"
            )
