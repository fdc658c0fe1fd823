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
    """Delete every cached program (and Numba's code for it); return how many there were."""
    d = cache_dir()
    n = len(list(d.glob("m_*.py")))
    for f in d.glob("m_*.py"):
        with contextlib.suppress(OSError):
            f.unlink()
    shutil.rmtree(d / "__pycache__", ignore_errors=True)
    return n


__all__ = ["cache_dir", "cache_info", "clear_cache", "make_key", "read_entry", "write_entry"]
