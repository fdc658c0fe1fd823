"""``MPI_Allreduce`` called from compiled code, the handles passed in at run time.

A generated distributed training program sums its gradients across ranks inside the compiled
epoch, once per step, with no return to Python. Its code calls the MPI library's
``MPI_Allreduce`` through a function pointer; the pointer and the communicator, datatype and
operation handles are process-local values, so they are never baked into the code: the program
reads them from its ``ints`` array (slots ``SLOTS``), which ``symbp.distributed`` fills when a
program is bound. The generated code is then the same in every process and Numba's disk cache
keeps working (a module-level ctypes function would make Numba refuse to cache it).

The one thing fixed at compile time is the width of an MPI handle, which is part of the MPI
library's ABI: 32-bit integers in MPICH and its derivatives, pointers in Open MPI. There is one
intrinsic per width; the program's cache key holds the ABI (``symbp.distributed.abi``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# ints[FN:FN + 5]: MPI_Allreduce's address, the datatype, op and communicator handles, and
# MPI_IN_PLACE; then this process's rank and the number of ranks
FN, DTYPE, OP, COMM, IN_PLACE, RANK, SIZE = range(4, 11)
N_INTS = 11


def _allreduce_intrinsic(bits: int):  # type: ignore[no-untyped-def]
    """An intrinsic ``f(fn, send, recv, count, dtype, op, comm) -> int32`` calling the C
    function at address ``fn`` with handles ``bits`` wide (all arguments int64)."""

    @intrinsic
    def allreduce(typingctx, fn, send, recv, count, dtype, op, comm):  # type: ignore[no-untyped-def]
        sig = types.int32(fn, send, recv, count, dtype, op, comm)

        def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
            f, s, r, n, dt, o, c = args
            i32, ptr = ir.IntType(32), ir.IntType(8).as_pointer()
            hty = ir.IntType(bits) if bits < 64 else ptr

            def handle(v):  # type: ignore[no-untyped-def]
                return builder.trunc(v, hty) if bits < 64 else builder.inttoptr(v, ptr)

            fnty = ir.FunctionType(i32, [ptr, ptr, i32, hty, hty, hty])
            call = builder.inttoptr(f, fnty.as_pointer())
            args_ = [builder.inttoptr(s, ptr), builder.inttoptr(r, ptr),
                     builder.trunc(n, i32), handle(dt), handle(o), handle(c)]  # fmt: skip
            return builder.call(call, args_)

        return sig, codegen

    return allreduce


_allreduce32 = _allreduce_intrinsic(32)
_allreduce64 = _allreduce_intrinsic(64)


@njit(cache=True)
def allreduce_h32(buf, start, n, ints):  # type: ignore[no-untyped-def]
    """Sum ``buf[start:start + n]`` over all ranks, in place (MPICH-style 32-bit handles).
    Returns MPI's error code (0: success)."""
    p = buf[start:].ctypes.data
    return _allreduce32(ints[FN], ints[IN_PLACE], p, n, ints[DTYPE], ints[OP], ints[COMM])


@njit(cache=True)
def allreduce_h64(buf, start, n, ints):  # type: ignore[no-untyped-def]
    """As ``allreduce_h32``, for MPI libraries whose handles are pointers (Open MPI)."""
    p = buf[start:].ctypes.data
    return _allreduce64(ints[FN], ints[IN_PLACE], p, n, ints[DTYPE], ints[OP], ints[COMM])
