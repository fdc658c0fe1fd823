"""Scalar helpers every generated module imports: stable forms and the epoch shuffle.

They are small ``@njit`` functions; LLVM inlines them into the kernels that call them. Each
works for float32 and float64 alike and stays in the argument's precision.
"""

from __future__ import annotations

import glob
import math
import os
import platform
import sys

import numpy as np
from llvmlite import ir as ll
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from symbp.compiler.ops import GOLDEN, MIX_MULTIPLIERS, MIX_SHIFTS


def _find_mkl() -> str | None:
    """libmkl_rt from the ``mkl`` wheel, if installed (``SYMBP_BLAS=openblas`` ignores it)."""
    if os.environ.get("SYMBP_BLAS", "").lower() == "openblas":
        return None
    for d in (os.path.join(sys.prefix, "lib"), os.path.join(sys.base_prefix, "lib")):
        for path in sorted(glob.glob(os.path.join(d, "libmkl_rt.so*")), reverse=True):
            try:
                import llvmlite.binding as llvm

                from symbp.compiler import runtime

                # one OpenMP runtime, not two: MKL would otherwise bring Intel's, whose threads
                # spin for 200 ms after each product (set before MKL loads; symbp loads it)
                if runtime.openmp_available():
                    os.environ.setdefault("MKL_THREADING_LAYER", "GNU")
                llvm.load_library_permanently(path)  # its symbols resolve in compiled code
                return path
            except (OSError, RuntimeError):
                continue
    return None


# Matrix products go to MKL's cblas_?gemm when the mkl wheel is there (faster than OpenBLAS for
# the small products of MLP training, and steadier under load); numpy.dot (OpenBLAS) otherwise.
# The functions are resolved by symbol name when code is loaded, so Numba can cache callers.
MKL = _find_mkl()
_i, _u = types.int32, types.uintp
_sgemm = types.ExternalFunction(
    "cblas_sgemm",
    types.void(_i, _i, _i, _i, _i, _i, types.float32, _u, _i, _u, _i, types.float32, _u, _i),
)
_dgemm = types.ExternalFunction(
    "cblas_dgemm",
    types.void(_i, _i, _i, _i, _i, _i, types.float64, _u, _i, _u, _i, types.float64, _u, _i),
)
_threads_local = types.ExternalFunction("MKL_Set_Num_Threads_Local", types.int32(types.int32))
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# Below this many multiply-adds one thread is faster: waking MKL's OpenMP team costs more.
THREADED_GEMM = 1 << 21


@njit(cache=True)
def gemm_f32(a, ta, b, tb, out):  # type: ignore[no-untyped-def]
    """out = op(a) @ op(b) with MKL, op = transpose when ``ta``/``tb``; C-contiguous arrays."""
    m, n = out.shape
    k = a.shape[0] if ta else a.shape[1]
    _threads_local(1 if m * n * k < THREADED_GEMM else 0)  # 0: MKL's own setting
    _sgemm(
        _ROW_MAJOR, _TRANS if ta else _NO_TRANS, _TRANS if tb else _NO_TRANS, m, n, k,
        np.float32(1.0), a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1],
        np.float32(0.0), out.ctypes.data, n,
    )  # fmt: skip


@njit(cache=True)
def gemm_f64(a, ta, b, tb, out):  # type: ignore[no-untyped-def]
    m, n = out.shape
    k = a.shape[0] if ta else a.shape[1]
    _threads_local(1 if m * n * k < THREADED_GEMM else 0)
    _dgemm(
        _ROW_MAJOR, _TRANS if ta else _NO_TRANS, _TRANS if tb else _NO_TRANS, m, n, k,
        1.0, a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], 0.0, out.ctypes.data, n,
    )  # fmt: skip


_ONE = {"f32": np.float32(1), "f64": np.float64(1)}
_ZERO = {"f32": np.float32(0), "f64": np.float64(0)}
_M100 = {"f32": np.float32(-100), "f64": np.float64(-100)}
ONE32, ZERO32, M100_32 = _ONE["f32"], _ZERO["f32"], _M100["f32"]
ONE64, ZERO64, M100_64 = _ONE["f64"], _ZERO["f64"], _M100["f64"]
NAN32, NAN64 = np.float32(np.nan), np.float64(np.nan)


@intrinsic
def carve(typingctx, buf, start, shape):  # type: ignore[no-untyped-def]
    """``buf[start:start + prod(shape)]`` as a C-contiguous array of ``shape``: a view that
    keeps ``buf`` alive, made inline (``.reshape`` calls into C: ~20 ns a view, a fifth of a
    W1 step called from Python)."""
    if not (isinstance(buf, types.Array) and isinstance(shape, types.UniTuple)):
        return None
    ret = types.Array(buf.dtype, shape.count, "C")

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        intp = context.get_value_type(types.intp)

        def wide(v):  # type: ignore[no-untyped-def]
            return builder.sext(v, intp) if v.type.width < intp.width else v

        src = make_array(sig.args[0])(context, builder, args[0])
        out = make_array(ret)(context, builder)
        dims = [wide(builder.extract_value(args[2], i)) for i in range(shape.count)]
        size = context.get_abi_sizeof(context.get_data_type(buf.dtype))
        itemsize = context.get_constant(types.intp, size)
        strides, acc = [], itemsize
        for d in reversed(dims):
            strides.insert(0, acc)
            acc = builder.mul(acc, d)
        data = builder.gep(src.data, [wide(args[1])])
        populate_array(
            out, data=data, shape=dims, strides=strides, itemsize=itemsize, meminfo=src.meminfo
        )
        return impl_ret_borrowed(context, builder, ret, out._getvalue())

    return ret(buf, start, shape), codegen


# One function per precision: a bare literal 1 would promote float32 arithmetic to float64.


def _f32s(*coefficients: float) -> tuple[np.float32, ...]:
    """A polynomial's coefficients as float32 constants, in the order its function unpacks them."""
    return tuple(np.float32(c) for c in coefficients)


@intrinsic
def _f32_from_bits(typingctx, bits):  # type: ignore[no-untyped-def]
    """The float32 whose bit pattern is the int32 ``bits`` (a bitcast: LLVM vectorizes it)."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], ll.FloatType())

    return types.float32(types.int32), codegen


# exp in float32 from arithmetic alone: LLVM calls libm's expf once per entry (2.4-4.3 ns an
# entry on a Xeon with AVX-512), and cannot vectorize a loop that calls it; this loop runs on
# vectors (0.5-0.6 ns), within 1 ulp of e^x (tests/test_lower.py checks it against e^x in
# extended precision, with the tails and the special values). x = n ln2 + r, |r| <= ln2/2:
# n rounded by adding and taking away 1.5 * 2^23; ln2 in two parts (Cody and Waite), so that
# r is exact; e^r by a degree-7 polynomial; 2^n built from its exponent bits in two halves,
# so that a result below the smallest normal number rounds once, to the subnormal it is.
EXP_LO32, EXP_HI32 = np.float32(-104.0), np.float32(88.8)  # e^x rounds to 0 below, inf above
LOG2E32, ROUND32 = np.float32(1.4426950408889634), np.float32(12582912.0)
LN2_HI32, LN2_LO32 = np.float32(0.693359375), np.float32(-2.12194440e-4)
EXP_POLY32 = _f32s(
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)
BIAS32, MANTISSA32 = np.int32(127), np.int32(23)


@njit(cache=True, inline="always")
def exp_f32(x):  # type: ignore[no-untyped-def]
    """e^x for a float32 x: ±0 give 1, -inf 0, +inf inf, NaN NaN; branch-free."""
    c = min(max(x, EXP_LO32), EXP_HI32)
    n = (c * LOG2E32 + ROUND32) - ROUND32
    r = (c - n * LN2_HI32) - n * LN2_LO32
    c5, c4, c3, c2, c1, c0 = EXP_POLY32
    p = ((((c5 * r + c4) * r + c3) * r + c2) * r + c1) * r + c0
    y = p * r * r + r + ONE32
    k = np.int32(n)
    half = k >> np.int32(1)
    y = y * _f32_from_bits((half + BIAS32) << MANTISSA32)
    y = y * _f32_from_bits((k - half + BIAS32) << MANTISSA32)
    return y if x == x else x


@njit(cache=True, inline="always")
def exp_f64(x):  # type: ignore[no-untyped-def]
    """float64, the precision symbp checks gradients in, keeps libm's correctly rounded exp."""
    return math.exp(x)


@njit(cache=True, inline="always")
def sigmoid_f32(x):  # type: ignore[no-untyped-def]
    """1 / (1 + exp(-x)): branch-free (it vectorizes), and exact in both tails in IEEE
    arithmetic, exp(-x) = inf giving 0 rather than an overflow error."""
    return ONE32 / (ONE32 + exp_f32(-x))


@njit(cache=True, inline="always")
def sigmoid_f64(x):  # type: ignore[no-untyped-def]
    return ONE64 / (ONE64 + math.exp(-x))


# tanh from exp: libm's tanhf is a call per entry (24 ns on an AMD EPYC, 12-14 ns on a Xeon),
# most of an LSTM step's elementwise work. float32: 1 - 2 / (e^2|x| + 1) with x's sign, and
# near 0, where that cancels, x + x^3 P(x^2) (Cephes' tanhf polynomial): both computed and one
# chosen, so the loop vectorizes (0.9 ns an entry, against 6.6 for the expm1 form it replaces).
# float64: expm1 near 0, exp elsewhere. Both within 3 ulps of the exact value
# (tests/test_lower.py checks both precisions against np.tanh).
TANH_NEAR32, TWO32 = np.float32(0.625), np.float32(2.0)
TANH_POLY32 = _f32s(
    -5.70498872745e-3,
    2.06390887954e-2,
    -5.37397155531e-2,
    1.33314422036e-1,
    -3.33332819422e-1,
)
TANH_NEAR64, TWO64 = np.float64(0.55), np.float64(2.0)


@njit(cache=True, inline="always")
def tanh_f32(x):  # type: ignore[no-untyped-def]
    """tanh of a float32: ±inf give ±1, NaN stays NaN, -0 stays -0; branch-free."""
    a = abs(x)
    z = x * x
    c4, c3, c2, c1, c0 = TANH_POLY32
    near = ((((c4 * z + c3) * z + c2) * z + c1) * z + c0) * z * a + a
    far = ONE32 - TWO32 / (exp_f32(TWO32 * a) + ONE32)
    return math.copysign(near if a < TANH_NEAR32 else far, x)


@njit(cache=True, inline="always")
def tanh_f64(x):  # type: ignore[no-untyped-def]
    """-m / (m + 2), m = expm1(-2|x|), near 0; (1 - e) / (1 + e), e = exp(-2|x|), elsewhere;
    with x's sign."""
    a = abs(x)
    if a < TANH_NEAR64:
        m = math.expm1(-TWO64 * a)
        return math.copysign(-m / (m + TWO64), x)
    e = math.exp(-TWO64 * a)
    return math.copysign((ONE64 - e) / (ONE64 + e), x)


# erf in float32 from arithmetic alone (libm's erff is a call per entry: 10-12 ns on a Xeon,
# most of a GELU's cost; this loop runs on vectors, 2.7 ns under load), within 2 ulps
# (tests/test_lower.py). Below 1: erf(x) = x + x (c0 - 1 + x^2 P(x^2)); from 1: 1 - e^Q(|x|),
# Q a polynomial for log erfc on [1, 4] (erf rounds to 1 from 3.92). Both computed, one chosen.
# The coefficients are least-squares fits of erf(x)/x and log erfc(x) at Chebyshev points.
ERF_C0M1 = np.float32(1.1283791665100467 - 1.0)  # 2/sqrt(pi) - 1, rounded once
ERF_NEAR32 = _f32s(
    -0.37612628843314194,
    0.11283612428168294,
    -0.02685480853483263,
    0.005190053574124828,
    -0.0008024354100591615,
    7.898210124450425e-05,
)
ERF_FAR32 = _f32s(
    0.0002151506092562596,
    -1.1296741201346616,
    -0.6331322287264212,
    -0.10832062623017256,
    0.024907950932250206,
    -0.003891493339787993,
    0.0002602691458819665,
    4.1048800625825454e-05,
    -1.2782323417028197e-05,
    1.3800269702518412e-06,
    -5.805675560780594e-08,
)
ERF_END32 = np.float32(4.0)


@njit(cache=True, inline="always")
def erf_f32(x):  # type: ignore[no-untyped-def]
    """erf of a float32: ±0 keep their sign, ±inf give ±1, NaN stays NaN; branch-free."""
    a = abs(x)
    z = x * x
    n1, n2, n3, n4, n5, n6 = ERF_NEAR32
    near = a + a * ((((((n6 * z + n5) * z + n4) * z + n3) * z + n2) * z + n1) * z + ERF_C0M1)
    f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10 = ERF_FAR32
    t = min(a, ERF_END32)
    q = (((((((((f10 * t + f9) * t + f8) * t + f7) * t + f6) * t + f5) * t + f4) * t + f3) * t
          + f2) * t + f1) * t + f0  # fmt: skip
    far = ONE32 - exp_f32(q)
    return math.copysign(near if a < ONE32 else far, x)


@njit(cache=True, inline="always")
def erf_f64(x):  # type: ignore[no-untyped-def]
    return math.erf(x)


@njit(cache=True, inline="always")
def softplus_f32(x):  # type: ignore[no-untyped-def]
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))."""
    return max(x, ZERO32) + math.log1p(exp_f32(-abs(x)))


@njit(cache=True, inline="always")
def softplus_f64(x):  # type: ignore[no-untyped-def]
    return max(x, ZERO64) + math.log1p(math.exp(-abs(x)))


@njit(cache=True, fastmath={"reassoc"})
def run_sum_f32(a, start, n):  # type: ignore[no-untyped-def]
    """The sum of a's flat elements [start, start + n), which LLVM may reassociate (the
    'reassoc' fast-math flag alone: NaN and infinities propagate as usual), so that the loop
    runs on vectors. Added one by one, a conv bias gradient's sum over H and W is a chain of
    dependent adds: ~1 ms of the tutorial CNN's step (1M entries)."""
    run = carve(a, start, (n,))
    acc = ZERO32
    for i in range(n):
        acc += run[i]
    return acc


@njit(cache=True, fastmath={"reassoc"})
def run_sum_f64(a, start, n):  # type: ignore[no-untyped-def]
    run = carve(a, start, (n,))
    acc = ZERO64
    for i in range(n):
        acc += run[i]
    return acc


@njit(cache=True)
def all_finite(a, start, n):  # type: ignore[no-untyped-def]
    """Whether a's flat elements [start, start + n) are all finite: the guard a training step
    runs on its gradients before the update. An and of comparisons, which LLVM runs on vectors
    (|v| <= max is False for NaN and both infinities): ~0.25 ns an element, a copy's speed; a
    sum of v * 0 would be one dependent add per element, 4-6x slower."""
    run = carve(a, start, (n,))
    big = np.finfo(a.dtype).max
    ok = True
    for i in range(n):
        ok &= abs(run[i]) <= big
    return ok


@njit(cache=True, inline="always")
def clog_f32(x):  # type: ignore[no-untyped-def]
    """log(x) clamped below at -100, as PyTorch's BCELoss."""
    if x <= ZERO32:
        return M100_32
    return max(math.log(x), M100_32)


@njit(cache=True, inline="always")
def clog_f64(x):  # type: ignore[no-untyped-def]
    if x <= ZERO64:
        return M100_64
    return max(math.log(x), M100_64)


@njit(cache=True, inline="always")
def bce_f32(p, t):  # type: ignore[no-untyped-def]
    """BCELoss's term (symbp.compiler.scalar.bce): NaN for p outside [0, 1], which stops a checked
    step on its non-finite loss before anything is updated."""
    if not (ZERO32 <= p <= ONE32):
        return NAN32
    return -(t * clog_f32(p) + (ONE32 - t) * clog_f32(ONE32 - p))


@njit(cache=True, inline="always")
def bce_f64(p, t):  # type: ignore[no-untyped-def]
    if not (ZERO64 <= p <= ONE64):
        return NAN64
    return -(t * clog_f64(p) + (ONE64 - t) * clog_f64(ONE64 - p))


# ---------------------------------------------------------------- the math family (issue 12)
# Stable scalar forms of the math ops that Python's math module lacks; each as sigmoid above,
# one function per precision.


@njit(cache=True, inline="always")
def logaddexp_f32(x, y):  # type: ignore[no-untyped-def]
    """log(exp(x) + exp(y)) = max + log1p(exp(-|x - y|)); an infinite max is the answer
    (inf - inf would be NaN), NaN propagates."""
    m = max(x, y)
    if m == -math.inf or m == math.inf:
        return m
    return m + math.log1p(exp_f32(-abs(x - y)))


@njit(cache=True, inline="always")
def logaddexp_f64(x, y):  # type: ignore[no-untyped-def]
    m = max(x, y)
    if m == -math.inf or m == math.inf:
        return m
    return m + math.log1p(math.exp(-abs(x - y)))


@njit(cache=True, inline="always")
def xlogy_f32(x, y):  # type: ignore[no-untyped-def]
    """x log(y), 0 where x = 0 unless y is NaN (torch.xlogy)."""
    if x == ZERO32 and y == y:
        return ZERO32
    return x * math.log(y)


@njit(cache=True, inline="always")
def xlogy_f64(x, y):  # type: ignore[no-untyped-def]
    if x == ZERO64 and y == y:
        return ZERO64
    return x * math.log(y)


@njit(cache=True)
def _erfinv(y):  # type: ignore[no-untyped-def]
    """The inverse error function in float64: Winitzki's closed-form guess (relative error
    ~2e-3), then Newton steps, which converge quadratically; above |y| = 0.5 on erfc(x) =
    1 - |y|, whose right side is exact there, so the tails keep full relative precision."""
    if not abs(y) <= 1.0:
        return math.nan
    a = abs(y)
    if a == 1.0:
        return math.copysign(math.inf, y)
    ln = math.log((1.0 - a) * (1.0 + a))
    t = 2.0 / (math.pi * 0.147) + ln / 2.0
    x = math.sqrt(math.sqrt(t * t - ln / 0.147) - t)
    c = 2.0 / math.sqrt(math.pi)
    for _ in range(5):
        slope = c * math.exp(-x * x)
        if slope == 0.0:
            break
        if a <= 0.5:
            x -= (math.erf(x) - a) / slope
        else:
            x += (math.erfc(x) - (1.0 - a)) / slope
    return math.copysign(x, y)


@njit(cache=True, inline="always")
def erfinv_f32(y):  # type: ignore[no-untyped-def]
    return np.float32(_erfinv(np.float64(y)))


@njit(cache=True, inline="always")
def erfinv_f64(y):  # type: ignore[no-untyped-def]
    return _erfinv(y)


# splitmix64, for the epoch shuffle and the dropout masks (the bits of
# ``ops.bernoulli_mask``, their NumPy reference), in uint64 arithmetic throughout (Numba
# would turn uint64 + int64 into a float). The constants are ops' (one definition for both
# sides); mix64 is ops.mix64 as a scalar Numba function, since that one is NumPy code, run on
# whole arrays. Numba reads the constants when it compiles and its cache of this file does not
# see an edit to ops.py: they are splitmix64's own, not to be tuned.
_GOLDEN = np.uint64(GOLDEN)
_M1, _M2 = map(np.uint64, MIX_MULTIPLIERS)
_S1, _S2, _S3 = map(np.uint64, MIX_SHIFTS)


@njit(cache=True, inline="always")
def mix64(z):  # type: ignore[no-untyped-def]
    """splitmix64's finalizer (``symbp.compiler.ops.mix64``)."""
    z = (z ^ (z >> _S1)) * _M1
    z = (z ^ (z >> _S2)) * _M2
    return z ^ (z >> _S3)


@njit(cache=True)
def shuffle(order, seed, epoch):  # type: ignore[no-untyped-def]
    """Fill ``order`` with a permutation of its indices, a pure function of (seed, epoch).

    Fisher-Yates driven by splitmix64, so Python (calling this same function) and a compiled
    epoch loop see the very same order.
    """
    n = order.shape[0]
    for i in range(n):
        order[i] = i
    state = np.uint64(seed) * _GOLDEN + np.uint64(epoch + 1)
    for i in range(n - 1, 0, -1):
        state += _GOLDEN
        z = mix64(state)
        j = np.int64(z % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The sample order ``fit(shuffle=True, seed=seed)`` uses in epoch ``epoch`` (0-based)."""
    order = np.empty(n, np.int64)
    shuffle(order, np.int64(seed), np.int64(epoch))
    return order


@njit(cache=True, inline="always")
def bernoulli_key(seed):  # type: ignore[no-untyped-def]
    """A mask's key: the mixed bits of its int64 seed."""
    return mix64(np.uint64(seed))


@njit(cache=True, inline="always")
def bernoulli_bits(key, i):  # type: ignore[no-untyped-def]
    """The hash of flat entry ``i``: the entry is 1 iff it is below floor(prob·2⁶⁴)."""
    return mix64(key + np.uint64(i + 1) * _GOLDEN)


@njit(cache=True)
def dropout_seed(base, t, k):  # type: ignore[no-untyped-def]
    """The seed of the ``k``-th dropout mask (in program order) of training step ``t``.

    A compiled program draws its masks from ``base`` (``fit``'s ``seed``; for ``step``, a
    draw from symbp's generator when the program is built) and the optimizer's step count
    ``t``, so a run is reproducible from its seed and resumable from a checkpoint.
    """
    z = mix64(np.uint64(base) + np.uint64(t + 1) * _GOLDEN)
    return np.int64(mix64(z + np.uint64(k + 1) * _GOLDEN))


def bernoulli_numba(seed: int, prob: float, n: int) -> np.ndarray:
    """The first ``n`` entries of the mask the generated kernels draw (for tests)."""
    return _bernoulli_numba(np.int64(seed), prob, np.int64(n))


@njit(cache=True)
def _bernoulli_numba(seed, prob, n):  # type: ignore[no-untyped-def]
    out = np.zeros(n, np.bool_)
    key = bernoulli_key(seed)
    thr = np.uint64(prob * 2.0**64) if prob < 1.0 else np.uint64(0)
    for i in range(n):
        out[i] = prob >= 1.0 or bernoulli_bits(key, i) < thr
    return out


# ---------------------------------------------------------------- pacing threads (issue 14)
# How many threads a training step runs on is measured, step by step, on the machine as it is
# now, not decided ahead: two threads are faster on two free cores, but where another process
# holds one core, a parallel region waits for the thread that is not running, and one thread
# on the free core is faster (measured on W3: 7.9 ms a step on two threads with a busy
# neighbour, 2.9 ms on one). ``pace`` compares the two, a window of steps each, and keeps the
# faster; it tries the other again after a while (at once when the steps slow by half: a new
# neighbour), less often each time it loses. Every step computes the same numbers on any
# count: the kernels split their work into a fixed number of parts, not one per thread.
PACE_SLOTS = 10  # the state of ``pace``: int64 slots at the end of a program's ``ints``
USING, KEPT, TRIAL, TIMED, SUM, REF, WAIT, BACKOFF, SKIP, ALL = range(PACE_SLOTS)
PACE_WINDOW = 4  # steps timed for one comparison
PACE_FIRST, PACE_BACKOFF, PACE_CAP = 2, 8, 256  # windows to the first trial, then between
_ARM64 = platform.machine().lower() in ("aarch64", "arm64")


@intrinsic
def cycles(typingctx):  # type: ignore[no-untyped-def]
    """The CPU's time-stamp counter (x86's rdtsc, ARM's virtual counter): a step's duration at
    ~10 ns a read, in a unit that only needs to be the same for both thread counts."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i64 = ll.IntType(64)
        if _ARM64:  # LLVM's readcyclecounter reads PMCCNTR there, which user code may not
            asm = ll.InlineAsm(ll.FunctionType(i64, []), "mrs $0, cntvct_el0", "=r", True)
            return builder.call(asm, [])
        fn = builder.module.declare_intrinsic(
            "llvm.readcyclecounter", fnty=ll.FunctionType(i64, [])
        )
        return builder.call(fn, [])

    return types.int64(), codegen


@intrinsic
def threads_now(typingctx):  # type: ignore[no-untyped-def]
    """numba.get_num_threads() by the threading layer's symbol, which Numba registers when it
    starts its threads (the module's ``THREADS`` line): Numba's own calls it through a ctypes
    pointer, which keeps the function that calls it from being cached."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        fnty = ll.FunctionType(cgutils.intp_t, [])  # as Numba's parallel regions declare it
        fn = cgutils.get_or_insert_function(builder.module, fnty, "get_num_threads")
        return builder.call(fn, [])

    return types.intp(), codegen


@intrinsic
def use_threads(typingctx, n):  # type: ignore[no-untyped-def]
    """numba.set_num_threads(n), as ``threads_now``: for this thread's parallel regions; n is
    one of 1 and the caller's own count."""

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        fnty = ll.FunctionType(ll.VoidType(), [ll.IntType(32)])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "set_num_threads")
        builder.call(fn, [builder.trunc(args[0], ll.IntType(32))])
        return context.get_dummy_value()

    return types.none(types.int64), codegen


@njit(cache=True, nogil=True)
def pace_start(state, threads):  # type: ignore[no-untyped-def]
    """The thread count of a call's first step: the caller's ``threads`` (Numba's count for
    this thread), or one if ``pace`` found that faster. A new count from the caller starts
    the measurements again."""
    if state[ALL] != threads:
        state[:] = 0
        state[ALL] = threads
        state[WAIT] = PACE_FIRST
        state[BACKOFF] = PACE_BACKOFF
        state[SKIP] = 1  # the first step runs colder than the rest: not timed
    return _count(state)


@njit(cache=True, nogil=True, inline="always")
def _count(state):  # type: ignore[no-untyped-def]
    """The thread count ``state`` runs steps on: all the caller's (``USING`` 0), or one."""
    return state[ALL] if state[USING] == 0 else 1


@njit(cache=True, nogil=True)
def pace(state, elapsed, rows):  # type: ignore[no-untyped-def]
    """The thread count of the next step, after a step of ``rows`` rows took ``elapsed``
    cycles on the current one (``state[USING]``: 0 all threads, 1 one thread)."""
    if state[ALL] < 2:
        return state[ALL]
    if state[SKIP] > 0:  # the step after a switch wakes or parks threads: not timed
        state[SKIP] -= 1
        return _count(state)
    state[SUM] += elapsed // max(rows, 1)
    state[TIMED] += 1
    if state[TIMED] == PACE_WINDOW:
        mean = state[SUM] // PACE_WINDOW
        state[SUM] = 0
        state[TIMED] = 0
        if state[TRIAL]:  # the challenger's window is done: keep it if 5% faster
            if 20 * mean < 19 * state[REF]:
                state[KEPT] = state[USING]
                state[BACKOFF] = PACE_BACKOFF
                state[REF] = mean
            else:
                state[USING] = state[KEPT]
                state[BACKOFF] = min(2 * state[BACKOFF], PACE_CAP)
                state[SKIP] = 1
            state[TRIAL] = 0
            state[WAIT] = state[BACKOFF]
        else:
            if state[REF] > 0 and 2 * mean > 3 * state[REF]:  # 50% slower: try the other now
                state[WAIT] = 0
            state[REF] = mean
            state[WAIT] -= 1
            if state[WAIT] <= 0:
                state[TRIAL] = 1
                state[USING] = 1 - state[USING]
                state[SKIP] = 1
    return _count(state)


__all__ = [
    "MKL",
    "all_finite",
    "bce_f32",
    "bce_f64",
    "bernoulli_bits",
    "bernoulli_key",
    "bernoulli_numba",
    "carve",
    "clog_f32",
    "clog_f64",
    "dropout_seed",
    "epoch_order",
    "gemm_f32",
    "gemm_f64",
    "shuffle",
    "sigmoid_f32",
    "sigmoid_f64",
    "softplus_f32",
    "softplus_f64",
]
