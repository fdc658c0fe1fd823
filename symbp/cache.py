"""The disk cache of compiled programs: one generated module per entry, Numba's code beside it.

An entry is ``<dir>/m_<key>.py``: the generated source and its ``SPEC`` (buffer layout), with a
first line ``# symbp-cache sha256=<digest of the rest>``. Numba caches the machine code of the
module's functions next to it (``__pycache__``), keyed by the file's stamp, so a file is never
rewritten once valid: a second process loads both and skips tracing-independent work, the
symbolic stages included.

The key hashes the traced forward program (before differentiation), the optimizer's choices,
the dtype and input types, and the versions of symbp (its source), Numba and NumPy. Writes go
to a temporary file first and are linked into place, so concurrent compiles of one model both
succeed and a reader never sees half a file; a truncated or edited entry fails its digest and is
rebuilt.

``SYMBP_CACHE_DIR`` overrides the directory (default: ``$XDG_CACHE_HOME/symbp`` or
``~/.cache/symbp``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

MAGIC = "# symbp-cache sha256="


def cache_dir() -> Path:
    """The per-user cache directory (created on demand)."""
    env = os.environ.get("SYMBP_CACHE_DIR")
    if env:
        path = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        path = Path(base) / "symbp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def kernel_cache_dir() -> Path:
    """Where Numba keeps the machine code of symbp's own kernels (``symbp.lower``): per user,
    ``<XDG cache>/symbp/numba``, whatever ``SYMBP_CACHE_DIR`` says. They belong to the installed
    library, not to a program cache: compiled once per machine (~25 s for a CNN's), and Numba
    keys them by their source files. ``<cache dir>/numba`` if that one is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    path = Path(base) / "symbp" / "numba"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    return cache_dir() / "numba"


@functools.lru_cache(maxsize=1)
def versions() -> str:
    """symbp (version and a digest of its compiler's source), Numba and NumPy versions."""
    import numba
    import numpy

    import symbp

    root = Path(symbp.__file__).parent
    h = hashlib.sha256()
    # The files that turn a traced program into compiled code (the key holds the traced program
    # itself): differentiation, simplification, lowering, the runtime and the update rules.
    stages = [root / f for f in ("ir.py", "ops.py", "scalar.py", "autodiff.py", "simplify.py",
                                 "api.py", "runtime.py", "compiled.py", "cache.py")]  # fmt: skip
    for f in sorted(
        stages + list((root / "lower").glob("*.py")) + list((root / "optim").glob("*.py"))
    ):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    from symbp.lower.support import MKL

    blas = "mkl" if MKL else "openblas"
    return (
        f"symbp={symbp.__version__}+{h.hexdigest()[:12]} numba={numba.__version__} "
        f"numpy={numpy.__version__} blas={blas}"
    )


def make_key(*parts: Any) -> str:
    h = hashlib.sha256(versions().encode())
    for p in parts:
        h.update(b"\x00" + str(p).encode())
    return h.hexdigest()[:32]


def entry_path(key: str) -> Path:
    return cache_dir() / f"m_{key}.py"


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def read_entry(key: str) -> str | None:
    """The module text of a valid entry, or None (missing, truncated or corrupted)."""
    path = entry_path(key)
    try:
        text = path.read_text()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    head, _, body = text.partition("\n")
    if not head.startswith(MAGIC) or head[len(MAGIC) :] != _digest(body):
        return None
    return text


def write_entry(key: str, body: str) -> Path:
    """Write an entry atomically; keep an existing valid one (its Numba code stays fresh)."""
    path = entry_path(key)
    text = f"{MAGIC}{_digest(body)}\n{body}"
    if read_entry(key) == text:
        return path
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, path)  # fails if another process got there first: keep theirs
        except FileExistsError:
            if read_entry(key) is None:  # theirs is corrupt: replace it (Numba sees a new stamp)
                os.replace(tmp, path)
                _drop_numba_cache(key)
                tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return path


def use_for_numba() -> None:
    """Keep Numba's machine code of symbp's own ``@njit(cache=True)`` helpers in
    ``kernel_cache_dir()`` rather than in ``__pycache__`` beside the installed package, where it
    would need a writable install, go stale across reinstalls and outlive an uninstall.
    ``NUMBA_CACHE_DIR``, when set, still wins. Call before the helpers are decorated."""
    from numba.core import caching

    classes = getattr(getattr(caching, "CacheImpl", None), "_locator_classes", None)
    if _PackageLocator is not None and classes is not None and _PackageLocator not in classes:
        classes.insert(1, _PackageLocator)  # after NUMBA_CACHE_DIR's, before the in-tree one


def _package_locator() -> type | None:
    """Numba's private locator API, when this Numba has it (else its default placement)."""
    try:
        from numba.core.caching import _CacheLocator, _SourceFileBackedLocatorMixin
    except ImportError:
        return None

    package = os.path.dirname(os.path.abspath(__file__)) + os.sep

    class PackageLocator(_SourceFileBackedLocatorMixin, _CacheLocator):  # type: ignore[misc]
        """Numba's cache of functions defined in symbp's own source files."""

        def __init__(self, py_func: Any, py_file: str):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            rel = os.path.relpath(os.path.dirname(os.path.abspath(py_file)), package)
            # per installed copy: two installs must not overwrite each other's entries
            where = hashlib.sha256(package.encode()).hexdigest()[:12]
            self._cache_path = str(kernel_cache_dir() / where / rel)

        def get_cache_path(self) -> str:
            return self._cache_path

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if not os.path.abspath(py_file).startswith(package):
                return None
            return super().from_function(py_func, py_file)

    return PackageLocator


_PackageLocator = _package_locator()


def _drop_numba_cache(key: str) -> None:
    for f in (cache_dir() / "__pycache__").glob(f"m_{key}.*"):
        with contextlib.suppress(OSError):
            f.unlink()


def drop_entry(key: str) -> None:
    """Forget an entry and Numba's code for it (used when loading it failed)."""
    with contextlib.suppress(FileNotFoundError):
        entry_path(key).unlink()
    _drop_numba_cache(key)


def cache_info() -> dict[str, Any]:
    """Where the cache is, how many programs it holds and how many bytes it takes.

    >>> info = cache_info()
    >>> sorted(info)
    ['bytes', 'dir', 'entries', 'versions']
    """
    d = cache_dir()
    files = [f for f in d.rglob("*") if f.is_file()]
    return {
        "dir": str(d),
        "entries": len(list(d.glob("m_*.py"))),
        "bytes": sum(f.stat().st_size for f in files),
        "versions": versions(),
    }


def clear_cache() -> int:
    """Delete every cached program (and Numba's code for it); return how many there were.
    symbp's library kernels (``kernel_cache_dir``) stay: they are compiled once per machine."""
    d = cache_dir()
    n = len(list(d.glob("m_*.py")))
    for f in d.glob("m_*.py"):
        with contextlib.suppress(OSError):
            f.unlink()
    shutil.rmtree(d / "__pycache__", ignore_errors=True)
    shutil.rmtree(d / "numba", ignore_errors=True)  # symbp's helpers: rebuilt on next use
    return n


__all__ = ["cache_dir", "cache_info", "clear_cache", "make_key", "read_entry", "write_entry"]
