"""Explicit SIMD vectors for the generated convolution kernels: one register of lanes.

Numba's auto-vectoriser does not keep a tile of accumulators in registers across a reduction
loop; these intrinsics let a kernel say it: ``a = vfma(vbload(x, i), vload(w, j), a)`` is one
broadcast, one load and one fused multiply-add on a register of float32 (or float64) lanes.

A vector is as wide as the registers of the code Numba generates here (``VECTOR_BYTES``): 64
bytes where that code has AVX-512, else 32 (AVX2; on a CPU with narrower registers, LLVM
splits each vector in two). The kernels' tiles follow (``MR``): 8 rows x 2 vectors of 32
registers, or 6 x 2 of 16. It is asked of the code generator itself, not of the CPU's name:
``NUMBA_CPU_NAME=haswell`` alone keeps the host's features (AVX-512 included), and some
targets split 512-bit vectors in two where the CPU has them.

    vload(arr, i)        arr's flat elements [i, i + lanes) (C order, from its data pointer)
    vbload(arr, i)       arr's flat element i in every lane
    vstore(arr, i, v)    store v at arr's flat elements [i, i + lanes)
    vfma(a, b, c)        a * b + c, fused
    vadd(a, b)           a + b
    vzero(arr)           zeros, of arr's element type

No bounds checks: the kernels index padded scratch arrays whose sizes they compute.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

_PROBE = """define void @f(ptr %p) {
  %v = load <16 x float>, ptr %p
  %w = fadd <16 x float> %v, %v
  store <16 x float> %w, ptr %p
  ret void
}"""


def _register_bytes() -> int:
    """64 if the code Numba generates in this process keeps 16 float32 in one register (a
    ``zmm`` register of AVX-512), else 32: read off the assembly of a 16-lane add compiled by
    Numba's own target machine (its CPU name and features, NUMBA_CPU_NAME/_FEATURES)."""
    import llvmlite.binding as llvm
    from numba.core.registry import cpu_target

    try:
        machine = cpu_target.target_context.codegen()._tm
        asm = machine.emit_assembly(llvm.parse_assembly(_PROBE))
    except Exception:  # another LLVM's syntax, another codegen: the narrower, always correct
        return 32
    return 64 if "zmm" in asm else 32


VECTOR_BYTES = _register_bytes()
LANES_F32, LANES_F64 = VECTOR_BYTES // 4, VECTOR_BYTES // 8
# rows of a kernel's tile, of 2 vectors each: 16 accumulators of 32 registers (AVX-512), or 12
# of 16 (AVX2), which leaves room for the 2 loads and the broadcast of a step
TILE_ROWS = (8, 6)
MR = TILE_ROWS[0] if VECTOR_BYTES == 64 else TILE_ROWS[1]


def lanes(dtype: Any) -> int:
    """Lanes of a vector of ``dtype`` (a NumPy dtype or its item size in bytes)."""
    size = dtype if isinstance(dtype, int) else dtype.itemsize
    return VECTOR_BYTES // size


class Vector(types.Type):  # type: ignore[misc]
    """A register of ``lanes`` elements of a float type."""

    def __init__(self, dtype: types.Float):
        self.dtype = dtype
        self.count = VECTOR_BYTES * 8 // dtype.bitwidth
        super().__init__(name=f"vec{self.count}x{dtype}")


def _llvm(vt: Vector) -> ir.VectorType:
    return ir.VectorType(ir.FloatType() if vt.dtype.bitwidth == 32 else ir.DoubleType(), vt.count)


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):  # type: ignore[misc]
    def __init__(self, dmm: Any, fe_type: Vector):
        super().__init__(dmm, fe_type, _llvm(fe_type))


def _vector_of(arr: Any) -> Vector | None:
    if isinstance(arr, types.Array) and isinstance(arr.dtype, types.Float):
        return Vector(arr.dtype)
    return None


def _address(context: Any, builder: Any, arrty: Any, arr: Any, idx: Any) -> Any:
    ary = context.make_array(arrty)(context, builder, arr)
    return builder.gep(ary.data, [idx])


def _splat(builder: Any, vt: Vector, scalar: Any) -> Any:
    llt = _llvm(vt)
    one = builder.insert_element(
        ir.Constant(llt, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0)
    )
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vt.count), [0] * vt.count)
    return builder.shuffle_vector(one, ir.Constant(llt, ir.Undefined), mask)


@intrinsic
def vload(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    vt = _vector_of(arr)
    if vt is None:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ptr = _address(context, builder, sig.args[0], args[0], args[1])
        return builder.load(builder.bitcast(ptr, _llvm(vt).as_pointer()), align=4)

    return vt(arr, types.intp), codegen


@intrinsic
def vbload(typingctx, arr, idx):  # type: ignore[no-untyped-def]
    vt = _vector_of(arr)
    if vt is None:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        scalar = builder.load(_address(context, builder, sig.args[0], args[0], args[1]))
        return _splat(builder, vt, scalar)

    return vt(arr, types.intp), codegen


@intrinsic
def vstore(typingctx, arr, idx, v):  # type: ignore[no-untyped-def]
    vt = _vector_of(arr)
    if vt is None or v != vt:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        ptr = _address(context, builder, sig.args[0], args[0], args[1])
        builder.store(args[2], builder.bitcast(ptr, _llvm(vt).as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(arr, types.intp, vt), codegen


@intrinsic
def vfma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
    if not (isinstance(a, Vector) and a == b == c):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        llt = _llvm(a)
        suffix = f"v{a.count}f{a.dtype.bitwidth}"
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(llt, [llt, llt, llt]), f"llvm.fma.{suffix}"
        )
        return builder.call(fn, args)

    return a(a, b, c), codegen


@intrinsic
def vadd(typingctx, a, b):  # type: ignore[no-untyped-def]
    if not (isinstance(a, Vector) and a == b):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.fadd(args[0], args[1])

    return a(a, b), codegen


@intrinsic
def vzero(typingctx, arr):  # type: ignore[no-untyped-def]
    vt = _vector_of(arr)
    if vt is None:
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return ir.Constant(_llvm(vt), [0.0] * vt.count)

    return vt(arr), codegen


__all__ = [
    "LANES_F32", "LANES_F64", "MR", "TILE_ROWS", "VECTOR_BYTES", "Vector", "lanes",
    "vadd", "vbload", "vfma", "vload", "vstore", "vzero",
]  # fmt: skip
