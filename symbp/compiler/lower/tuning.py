"""Choices measured on the machine that runs the code, kept per CPU (issue 14).

Matrix products: symbp's own kernels (``conv_kernels.py``: register tiles) or the BLAS
Numba calls (``np.dot``: OpenBLAS, or MKL's ``gemm`` where the ``mkl`` wheel is installed).
Neither wins everywhere. On a 2-core Intel Xeon with AVX-512 (model 167)
symbp's ran the MLP products of W3 faster than MKL's non-Intel-tuned path or OpenBLAS; on a
2-core AMD EPYC with AVX2 only, its tiles of 512-bit vectors spilled (16 vector registers, not
32) and ran at 28-34 GFLOP/s on one core where OpenBLAS ran 78-88 (``bench_rnn.py``'s
products; the tiles now fit 256-bit registers there, ``simd.MR``). So
the first program that has a product of a kind to place times one of that kind, both ways,
and every program after it on this CPU uses the faster (generated code names the kernel it
calls; a pinned choice is part of each program's cache key, see ``token``).

The measurement is kept in the cache directory (``tuning.json``), one entry per CPU, BLAS
and library versions. ``SYMBP_MATMUL=own`` or ``=blas`` pins the choice; deleting the file
(or ``SYMBP_MATMUL=measure``) measures again. Products inside a loop body run by blocks of
rows (``emit._as_function``) always use symbp's one-core kernel: there each thread runs its
own, and a BLAS call there would start the BLAS's own threads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import statistics
import time
from typing import Any, NamedTuple

import numpy as np

ENV = "SYMBP_MATMUL"


class Products(NamedTuple):
    """Whether the BLAS computes each kind of product faster than symbp's kernel: ``small``
    (one core: a batch of 32 against a layer of 512) and ``large`` (all cores)."""

    small: bool
    large: bool

    def __str__(self) -> str:
        return f"small={'blas' if self.small else 'own'},large={'blas' if self.large else 'own'}"


def _cpu() -> str:
    """The CPU's name, family, model and vector extensions: what a measurement holds for."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model", "flags") and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    isa = ",".join(f for f in ("avx512f", "avx2", "fma", "neon", "asimd") if f in flags)
    return f"{fields.get('model name', '?')} family {fields.get('cpu family', '?')} model " \
        f"{fields.get('model', '?')} [{isa}]"  # fmt: skip


def _blas() -> str:
    """The BLAS the generated products call: MKL where symbp loaded it, else OpenBLAS."""
    from symbp.compiler.lower.support import MKL

    return "mkl" if MKL else "openblas"


def _key() -> str:
    import numba

    from symbp.compiler.lower import simd

    # the vector width Numba generates for: NUMBA_CPU_NAME/_FEATURES may narrow the CPU's own
    parts = [_cpu(), _blas(), f"numba={numba.__version__}", f"numpy={np.__version__}",
             f"threads={numba.config.NUMBA_NUM_THREADS}",  # type: ignore[attr-defined]
             f"vector={simd.VECTOR_BYTES}"]  # fmt: skip
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] + " " + parts[0]


def pinned() -> Products | None:
    """The choice ``SYMBP_MATMUL`` pins (``own``, ``blas``), if it does."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("own", "blas"):
        return Products(value == "blas", value == "blas")
    if value not in ("", "measure"):
        raise ValueError(f"{ENV}={value!r}: expected 'own', 'blas' or 'measure'")
    return None


def token() -> str:
    """What the program cache's keys say of the choice: the pin, or ``measured``. Not the
    measured choice itself: the first program on a machine is generated (and cached) while
    the measurement happens, and its key, made before, must find it again in the next
    process. So a cached program keeps the choice it was generated with; after measuring
    again, ``symbp cache clear`` lets programs be generated with the new one."""
    fixed = pinned()
    return "measured" if fixed is None else f"pinned:{fixed}"


def cache_token() -> str:
    """What a program cache key says of the lowering's choices on this machine: the BLAS the
    products call, the products' choice (``token``) and the vector width (it picks the
    kernels' variants: a layer "narrow" enough for one vector). The pipeline hands it to the
    key (``symbp.pipeline``), which ``cache.versions`` does not name."""
    from symbp.compiler.lower import simd

    return f"blas={_blas()} products={token()} vector={simd.VECTOR_BYTES} threads={threads()}"


THREADS_ENV = "SYMBP_THREADS"


def threads() -> str:
    """How a training program's steps choose their thread count (``support.pace``):
    ``pace`` (the default) measures all of Numba's threads against one, step by step, and
    keeps the faster; ``all`` (``SYMBP_THREADS=all``) always runs on all of them, as a
    benchmark that wants one fixed configuration may."""
    value = os.environ.get(THREADS_ENV, "").strip().lower() or "pace"
    if value not in ("pace", "all"):
        raise ValueError(f"{THREADS_ENV}={value!r}: expected 'pace' or 'all'")
    return value


NOTE = "tuning.json"


def _stored() -> dict[str, Any]:
    from symbp.compiler import cache

    try:
        data = json.loads(cache.read_note(NOTE) or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# Each kind: the product timed (m, k, n: a @ b.T), products a timed round, symbp's kernel
KINDS = {"small": ((32, 128, 512), 40, "matmul_small_f32"),
         "large": ((256, 512, 512), 4, "matmul_f32")}  # fmt: skip


def blas_faster(kind: str) -> bool:
    """Whether the BLAS computes products of ``kind`` (``KINDS``) faster than symbp's kernel
    on this CPU: pinned, stored, or measured now. A kind is measured when a program first has
    a product of that kind to place, so a small model never compiles the large kernel."""
    fixed = pinned()
    return getattr(fixed, kind) if fixed is not None else _found_or_measured(kind)


@functools.cache
def _found_or_measured(kind: str) -> bool:
    key = _key()
    if os.environ.get(ENV, "").strip().lower() != "measure":
        found = _stored().get(key)
        if isinstance(found, dict) and isinstance(found.get(kind), bool):
            return bool(found[kind])
    faster = measure(kind)
    from symbp.compiler import cache

    data = _stored()
    entry = data.get(key)
    data[key] = {**(entry if isinstance(entry, dict) else {}), kind: faster}
    with contextlib.suppress(OSError):  # a cache it cannot write: measured again next time
        cache.write_note(NOTE, json.dumps(data, indent=1))
    return faster


# The BLAS must win by this much: two kernels within noise of each other keep symbp's.
MARGIN = 1.15


def measure(kind: str, rounds: int = 5) -> bool:
    """Time products of ``kind`` both ways, in alternating rounds; the best round of each
    (the least disturbed by other processes) decides whether the BLAS is faster."""
    from symbp.compiler import runtime
    from symbp.compiler.lower import conv_kernels as ck

    (m, k, n), reps, kernel = KINDS[kind]
    ck.need(kernel)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32)
    c = np.empty((m, n), np.float32)
    own, blas_fn = _harness(kind)
    blas = runtime.one_blas_thread(blas_fn)
    times: dict[str, list[float]] = {"own": [], "blas": []}
    for _ in range(rounds):
        for name, fn in (("own", own), ("blas", blas)):
            fn(a, b, c, 1)  # compiled (cached by Numba) and warm
            t = time.perf_counter()
            fn(a, b, c, reps)
            times[name].append(time.perf_counter() - t)
    _LAST[kind] = {name: statistics.median(ts) / reps for name, ts in times.items()}
    return min(times["blas"]) * MARGIN < min(times["own"])


_LAST: dict[str, dict[str, float]] = {}  # the last measurement's median seconds a product


@functools.cache
def _harness(kind: str) -> tuple[Any, Any]:
    """Numba functions running ``reps`` products of ``kind`` with symbp's kernel and with the
    BLAS (compiled at the measurement, for that kind only)."""
    from numba import njit

    from symbp.compiler.lower import conv_kernels as ck

    if kind == "small":

        @njit(nogil=True)
        def own(a, b, c, reps):  # type: ignore[no-untyped-def]
            for _ in range(reps):
                ck.call_matmul_small_f32(a, False, b, True, c)

    else:

        @njit(nogil=True)
        def own(a, b, c, reps):  # type: ignore[no-untyped-def]
            for _ in range(reps):
                ck.call_matmul_f32(a, False, b, True, c)

    @njit(nogil=True)
    def blas(a, b, c, reps):  # type: ignore[no-untyped-def]
        for _ in range(reps):
            np.dot(a, b.T, c)

    return own, blas


__all__ = ["ENV", "KINDS", "Products", "blas_faster", "measure", "pinned", "token"]
