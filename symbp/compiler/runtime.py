"""Stage 5, run: load a generated module (through the disk cache) and hold its buffers.

``load`` turns module text into live ``@njit`` functions: the text is an entry of
``cache`` (a real file, so Numba caches its machine code beside it and tracebacks show
the generated lines). ``Arenas`` are the flat arrays the generated code carves its views from.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import linecache
import os
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np

from symbp.compiler import cache

_LOADED: dict[str, types.ModuleType] = {}
_SOURCES: dict[str, str] = {}  # key -> the source of the module loaded for it


_PREFERRED = False  # prefer_openmp has run


def openmp_available() -> bool:
    """Whether Numba's OpenMP layer can load here, and no environment variable chose a layer."""
    if {"NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"} & set(os.environ):
        return False
    try:
        from numba.np.ufunc import omppool  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


def prefer_openmp() -> None:
    """Run Numba's parallel regions on its OpenMP layer (GNU libgomp), unless
    ``NUMBA_THREADING_LAYER`` or ``NUMBA_THREADING_LAYER_PRIORITY`` says otherwise. Numba's
    default, TBB, starts and joins a region more slowly: measured with
    ``benchmarks/bench_cnn.py`` (3 processes each, same run), the digits CNN 17.8 -> 14.0 ms an
    epoch and the tutorial CNN 15.0 -> 12.6 ms a step, whose convolution kernels each open one
    region a call. Where libgomp is missing, Numba's own order of layers stays.

    This sets Numba's order of layers for the whole process, so symbp does it when it first
    loads a program or a library kernel (``load``, ``conv_kernels.need``), not on import: a
    host that only imports symbp, or starts Numba's threads itself first, keeps its own
    choice (Numba fixes the layer when its threads start)."""
    global _PREFERRED
    if _PREFERRED:
        return
    _PREFERRED = True
    if openmp_available():
        import numba

        numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]  # type: ignore[attr-defined]


def one_blas_thread(fn: Any) -> Any:
    """``fn`` (a compiled program's entry point) calling OpenBLAS on one thread, its caller's.

    A program calls BLAS (``np.dot``) only for mid-sized products its own kernels do not take,
    between parallel regions of its own. After each call OpenBLAS's pool threads spin, waiting
    for more work, on the cores Numba's threads need next: measured on a 2-core Xeon (model
    167), W3's step (``benchmarks/bench.py``) took 26-33 ms with 2 Numba threads against 4.0 ms
    with one, and 3.3 ms with OpenBLAS held to one thread. So the calling thread's OpenBLAS
    thread count is 1 for the call (``openblas_set_num_threads_local``, OpenBLAS >= 0.3.27, in
    every OpenBLAS the process has loaded: NumPy's and SciPy's, which Numba calls) and restored
    after it, so the host's own BLAS calls keep their threads; 4 calls of ~0.2 us a step. Where
    no such OpenBLAS is loaded (MKL, Accelerate, an older OpenBLAS), ``fn`` itself."""
    setters = _openblas_thread_setters()
    if not setters:
        return fn

    def call(*args: Any) -> Any:
        before = [set_threads(1) for set_threads in setters]
        try:
            return fn(*args)
        finally:
            for set_threads, n in zip(setters, before):
                set_threads(n)

    return call


@functools.cache
def _openblas_thread_setters() -> tuple[Any, ...]:
    """``openblas_set_num_threads_local`` of each OpenBLAS library loaded in this process,
    found once. SciPy's BLAS, the one Numba's ``np.dot`` calls, is loaded first: Numba itself
    loads it only at a program's first product, which may come after this runs."""
    import ctypes

    import scipy.linalg.cython_blas  # noqa: F401

    try:
        with open("/proc/self/maps") as maps:  # Linux; elsewhere, the wheels' own copies
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        import glob

        paths = set()
        for pkg in ("numpy", "scipy"):
            mod = sys.modules.get(pkg)
            if mod is not None and mod.__file__:
                site = os.path.dirname(os.path.dirname(mod.__file__))
                for sub in (f"{pkg}.libs", os.path.join(pkg, ".dylibs")):
                    paths.update(glob.glob(os.path.join(site, sub, "*openblas*")))
    setters = []
    for path in sorted(p for p in paths if os.path.isabs(p)):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        setters.append(fn)
    return tuple(setters)


def module_text(source: str, spec: dict[str, Any]) -> str:
    """A generated module's text: its source, then its spec as the literal ``SPEC``."""
    return source + _spec_statement(spec)


def _spec_statement(spec: dict[str, Any]) -> str:
    return f"\n\nSPEC = {spec!r}\n"


def source(key: str) -> str:
    """The generated source of the module ``load`` loaded for ``key``, without its ``SPEC``:
    the text ``load`` checked and ran, less the statement ``module_text`` made of the spec
    it defined (what ``export`` copies, what ``CompiledModel.source`` shows)."""
    return _SOURCES[key]


def _source_of(text: str, spec: dict[str, Any]) -> str:
    body = text.partition("\n")[2] if text.startswith(cache.MAGIC) else text
    tail = _spec_statement(spec)
    if not body.endswith(tail):  # not module_text's: symbp did not write this entry
        raise RuntimeError("a cached program does not end in its own SPEC: compile it again")
    return body[: -len(tail)]


def load(key: str, text: str | None = None) -> types.ModuleType:
    """Import the cached module ``key`` (writing ``text`` there first when given).

    What runs is the text symbp checked (``cache.read_entry``) or wrote itself, compiled under
    the entry's file name, not what a loader would read from the file a moment later; Numba's
    files for it are vetted first (``cache.vet_numba_files``) and recorded whenever Numba
    writes them (``cache.watch``)."""
    mod = _LOADED.get(key)
    if mod is not None and text is None:
        return mod
    prefer_openmp()  # before the module's kernels start Numba's threads
    if text is not None:
        body = text.partition("\n")[2] if text.startswith(cache.MAGIC) else text
        path = cache.write_entry(key, body)
        # the file's text: a concurrent compile's, if it got there first (Numba keys its code
        # by that file)
        text = cache.read_entry(key, path.parent) or cache.entry_text(body)
    else:
        path = cache.entry_path(key)
        text = cache.read_entry(key)
        if text is None:
            raise RuntimeError(
                f"the cached program {path} changed or vanished while it was being loaded; "
                f"compile the model again"
            )
    cache.vet_numba_files(path.parent, key)
    name = f"symbp_generated_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    linecache.checkcache(str(path))
    exec(compile(text, str(path), "exec"), mod.__dict__)
    _SOURCES[key] = _source_of(text, mod.SPEC)
    cache.watch(mod, key, path)
    _LOADED[key] = mod
    return mod


@contextlib.contextmanager
def deep_recursion(limit: int = 20000) -> Iterator[None]:
    """Numba's SSA pass recurses once per basic block: a first call (a compile) of a big
    generated function needs a deeper Python stack than the default 1000 frames."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, limit))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def forget(key: str) -> None:
    """Drop a module whose cached code failed to load; the next ``load`` rebuilds it."""
    _LOADED.pop(key, None)
    _SOURCES.pop(key, None)
    sys.modules.pop(f"symbp_generated_{key}", None)
    cache.drop_entry(key)


def size(expr: str, batch: int) -> int:
    """An arena size from its formula in the batch size B (``'16*B+2'``)."""
    return int(eval(expr, {"__builtins__": {}}, {"B": batch}))


class Arenas:
    """The work arrays of one program for batches of up to ``capacity`` rows."""

    def __init__(self, spec: dict[str, Any], dtype: np.dtype, capacity: int):
        self.spec = spec
        self.dtype = dtype
        self.capacity = 0
        self.work = np.empty(0, dtype)
        self.iwork = np.empty(0, np.int64)
        self.ensure(capacity)

    def ensure(self, batch: int) -> None:
        if batch <= self.capacity:
            return
        self.capacity = max(batch, 1)
        self.work = np.zeros(max(size(self.spec["work"], self.capacity), 1), self.dtype)
        self.iwork = np.zeros(max(size(self.spec["iwork"], self.capacity), 1), np.int64)


__all__ = ["Arenas", "forget", "load", "module_text", "size", "source"]
