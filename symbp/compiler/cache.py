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

**Only its owner can write it.** The cache runs what it finds: an entry is Python that
``symbp.compile`` executes, and Numba's files beside it are pickles. So, as ssh does with
``~/.ssh``: the directories symbp creates are 0700 and its files 0600, and before anything is
read from a directory, it and each of its parents must belong to the current user (or root) and
be writable by nobody else (a parent may be a sticky directory such as ``/tmp``). A directory
that fails is not used at all: this process compiles into a private temporary directory, with
one ``CacheWarning`` that names the path, its owner and mode and the fix, and ``cache_info``
says why. Each file is checked as well: one written by another user, writable by others, or a
symlink leading out of the directory is not loaded, and neither is an entry or Numba file that
changed since symbp recorded its size, mtime and digest (``m_<key>.seal``). Setting
``SYMBP_CACHE_TRUST_SHARED=1`` skips the owner and mode checks, for a shared cache that an
administrator controls (read-only is fine: new programs then go to a private directory).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from symbp.version import __version__

MAGIC = "# symbp-cache sha256="
TRUST_SHARED = "SYMBP_CACHE_TRUST_SHARED"
_WRITABLE_BY_OTHERS = stat.S_IWGRP | stat.S_IWOTH
_PROGRAM = re.compile(r"m_\w+\.py")  # an entry's file name (the key is hex; tests use words)


class CacheWarning(UserWarning):
    """A cache directory or file that symbp will not use (it compiles without it)."""


class Refusal(NamedTuple):
    """Why a directory cannot hold code symbp runs, and what the user can do about it."""

    path: Path  # the directory that failed: the cache itself or one of its parents
    problem: str
    fix: str
    others: bool = False  # others could write it (rather than: it is no usable directory)


# ---------------------------------------------------------------- the ownership checks


def _trust_shared() -> bool:
    return os.environ.get(TRUST_SHARED, "") not in ("", "0")


def _checks_apply() -> bool:
    """Owner and mode checks: POSIX only (Windows guards its folders with ACLs, not modes),
    and not for a shared cache the administrator vouches for."""
    return hasattr(os, "geteuid") and not _trust_shared()


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _describe(path: Path | str, st: os.stat_result) -> str:
    return f"{path} (owner {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o})"


def _trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def dir_problem(path: Path | str) -> Refusal | None:
    """Why the directory ``path`` cannot be trusted with code that symbp runs, or None.

    It must be a directory; unless ``SYMBP_CACHE_TRUST_SHARED`` is set, it and each of its
    parents (after resolving symlinks) must belong to the current user or root and be writable
    by no one else, except a parent with the sticky bit (``/tmp``), where others cannot rename
    or delete what is ours.
    """
    real = Path(os.path.realpath(path))
    for i, p in enumerate([real, *real.parents]):
        try:
            st = os.stat(p)
        except OSError as e:
            return Refusal(p, f"{p} cannot be read ({e.strerror})", f"check that {p} exists")
        if i == 0 and not stat.S_ISDIR(st.st_mode):
            return Refusal(p, f"{p} is a file, not a directory", "point {var} at a directory")
        if not _checks_apply():
            return None
        if not _trusted_owner(st.st_uid):
            return Refusal(
                p,
                f"{_describe(p, st)} belongs to another user, who could plant code there "
                f"that symbp would run",
                f"use a directory of your own, or chown {_user(os.geteuid()).split()[0]} {p}",
                others=True,
            )
        if st.st_mode & _WRITABLE_BY_OTHERS and not (i > 0 and st.st_mode & stat.S_ISVTX):
            return Refusal(
                p,
                f"{_describe(p, st)} is writable by other users, who could plant code there "
                f"that symbp would run",
                f"chmod 700 {p}" if i == 0 else f"chmod go-w {p}",
                others=True,
            )
    return None


def file_problem(path: Path, root: Path) -> str | None:
    """Why the file ``path`` inside the checked directory ``root`` (a real path) must not be
    loaded, or None: a symlink leading out of ``root``, not a regular file, written by
    another user, or writable by others."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(path)
            if os.path.commonpath([real, str(root)]) != str(root):
                return f"{path} is a symlink leading out of the cache directory (to {real})"
            st = os.stat(real)
    except OSError as e:
        return f"{path} cannot be read ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return f"{path} is not a regular file"
    if not _checks_apply():
        return None
    if not _trusted_owner(st.st_uid):
        return f"{_describe(path, st)} was written by another user"
    if st.st_mode & _WRITABLE_BY_OTHERS:
        return f"{_describe(path, st)} is writable by other users"
    return None


def _make_private(path: Path) -> None:
    """Create ``path`` and its missing parents, each new one with mode 0700 (the umask may take
    bits from mkdir's mode, hence the chmod; an existing directory is left as it is)."""
    missing = []
    p = path
    while not os.path.lexists(p) and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent process made it first
            os.mkdir(p, 0o700)
            os.chmod(p, 0o700)


def _checked(path: Path, subdirs: tuple[str, ...] = ()) -> Refusal | None:
    """Create ``path`` (0700) when missing, then check it and the ``subdirs`` it has."""
    try:
        _make_private(path)
    except OSError as e:
        why = f"{path} cannot be created ({e.strerror})"
        return Refusal(path, why, "point {var} at a directory you can write")
    for p in [path, *(path / s for s in subdirs if os.path.lexists(path / s))]:
        refusal = dir_problem(p)
        if refusal is not None:
            return refusal
    return None


_WARNED: set[str] = set()
_INSTEAD = "This process compiles without the disk cache (into a private temporary directory)."


def _warn_once(message: str) -> None:
    if message in _WARNED:
        return
    _WARNED.add(message)
    # point at the caller's line (model.step(...)), not at symbp's internals
    level, frame = 2, sys._getframe(1)  # stacklevel 2 is the frame that called us
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    warnings.warn(message, CacheWarning, stacklevel=level)


def _refused(who: str, configured: Path, refusal: Refusal, instead: str = "") -> str:
    trust = f"; {TRUST_SHARED}=1 trusts a shared cache that an administrator controls"
    trust = trust if refusal.others else ""
    var = who.split()[0] if who.endswith("=") else "SYMBP_CACHE_DIR"  # the one to change
    return (
        f"symbp: not using {who} {configured}: {refusal.problem}. "
        f"{instead or _INSTEAD} Fix: {refusal.fix.replace('{var}', var)}{trust}."
    )


# ---------------------------------------------------------------- the directories


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"))


def _configured() -> tuple[Path, str]:
    """The program cache asked for, and who asked for it (as warnings name it)."""
    env = os.environ.get("SYMBP_CACHE_DIR")
    if env:
        return Path(env), "SYMBP_CACHE_DIR ="
    return _xdg_cache() / "symbp", "the cache directory"


_PROGRAM_DIRS: set[str] = set()  # checked (or private) directories programs are loaded from
_PRIVATE: list[Path] = []


def _private_dir() -> Path:
    """This process's own cache when the configured one is refused: mkdtemp makes it 0700."""
    if not _PRIVATE:
        path = os.path.realpath(tempfile.mkdtemp(prefix="symbp-private-"))
        atexit.register(shutil.rmtree, path, True)
        _PRIVATE.append(Path(path))
        _PROGRAM_DIRS.add(path)
    return _PRIVATE[0]


def refusal() -> str | None:
    """Why the configured program cache is not used, as the warning says it, or None."""
    path, who = _configured()
    why = _checked(path, ("__pycache__",))
    return None if why is None else _refused(who, path, why)


def cache_dir() -> Path:
    """The program cache: the configured directory (created 0700 on demand) once it passed the
    checks above, else this process's private temporary one (with one ``CacheWarning``)."""
    path, who = _configured()
    why = _checked(path, ("__pycache__",))
    if why is not None:
        _warn_once(_refused(who, path, why))
        return _private_dir()
    real = os.path.realpath(path)
    _PROGRAM_DIRS.add(real)
    return Path(real)


def _write_dir() -> Path:
    """Where new entries go: the cache, or a private directory when it is read-only (a shared
    cache an administrator filled)."""
    d = cache_dir()
    if os.access(d, os.W_OK | os.X_OK):
        return d
    _warn_once(f"symbp: the cache {d} is read-only: programs not in it compile into a private "
               f"temporary directory in this process")  # fmt: skip
    return _private_dir()


def kernel_cache_dir() -> Path:
    """Where Numba keeps the machine code of symbp's own kernels (``lower``): per user,
    ``<XDG cache>/symbp/numba``, whatever ``SYMBP_CACHE_DIR`` says. They belong to the installed
    library, not to a program cache: compiled once per machine (~25 s for a CNN's), and Numba
    keys them by their source files. ``<cache dir>/numba`` if that one is not writable or fails
    the ownership checks (then with a warning)."""
    base = _xdg_cache() / "symbp" / "numba"
    why = _checked(base)
    if why is None and os.access(base, os.W_OK | os.X_OK):
        return Path(os.path.realpath(base))
    if why is not None:
        instead = "symbp's kernels go to the program cache's numba folder instead."
        _warn_once(_refused("the kernel cache", base, why, instead))
    fallback = cache_dir() / "numba"
    if _checked(fallback) is None:
        return fallback
    return _private_dir() / "numba"


@functools.lru_cache(maxsize=1)
def versions() -> str:
    """symbp (version and a digest of its compiler's source), Numba and NumPy versions. What
    the lowering chooses on this machine (BLAS, products, vector width) its callers add to the key
    (``lower.tuning.cache_token``): the cache imports nothing above it."""
    import numba
    import numpy

    root = Path(__file__).parents[1]  # the package's folder: this is symbp/compiler/cache.py
    h = hashlib.sha256()
    # The files that turn a traced program into compiled code (the key holds the traced program
    # itself): the compiler, the pipeline that runs it, the update rules, and the formulas'
    # text printer, which writes the kernels' comments.
    stages = [root / "api.py", root / "compiled.py", root / "pipeline.py"]
    stages += [root / "formulas" / f for f in ("text.py", "layout.py", "index.py", "vocabulary.py")]
    for f in sorted(
        stages + list((root / "compiler").rglob("*.py")) + list((root / "optim").glob("*.py"))
    ):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return (
        f"symbp={__version__}+{h.hexdigest()[:12]} numba={numba.__version__} "
        f"numpy={numpy.__version__}"
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


# ---------------------------------------------------------------- entries and their seals


def _stamp(path: Path) -> list[Any]:
    """What symbp records of a file it wrote: size, mtime and digest."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest()]


def _seal_path(d: Path, key: str) -> Path:
    return d / f"m_{key}.seal"


def _read_seal(d: Path, key: str) -> dict[str, Any] | None:
    path = _seal_path(d, key)
    if not os.path.lexists(path) or file_problem(path, d) is not None:
        return None
    try:
        seal = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return seal if isinstance(seal, dict) else None


def _write_seal(d: Path, key: str, seal: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f"m_{key}.seal.", suffix=".tmp", dir=d)  # 0600
    with os.fdopen(fd, "w") as f:
        json.dump(seal, f)
    os.replace(tmp, _seal_path(d, key))


def _read(d: Path, key: str) -> str | None:
    """The text of the valid entry ``key`` in the checked directory ``d``, or None."""
    path = d / f"m_{key}.py"
    if not os.path.lexists(path):
        return None
    problem = file_problem(path, d)
    if problem is not None:
        _warn_once(f"symbp: not loading the cached program {path}: {problem}; it is rebuilt")
        return None
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    head, _, body = text.partition("\n")
    if not head.startswith(MAGIC) or head[len(MAGIC) :] != _digest(body):
        return None
    seal = _read_seal(d, key)
    if seal is not None and seal.get("entry") != _stamp(path):  # changed since written
        return None
    return text


def read_entry(key: str, directory: Path | None = None) -> str | None:
    """The module text of a valid entry (in the cache, or in ``directory`` that ``write_entry``
    returned), or None: missing, truncated, corrupted, changed since symbp wrote it, or not to
    be trusted."""
    return _read(cache_dir() if directory is None else directory, key)


def entry_text(body: str) -> str:
    """An entry's text: the digest line, then the module."""
    return f"{MAGIC}{_digest(body)}\n{body}"


def write_entry(key: str, body: str) -> Path:
    """Write an entry atomically (0600); keep an existing valid one (its Numba code stays
    fresh). Return its path: in the cache, or in a private directory if that is read-only."""
    d = _write_dir()
    path = d / f"m_{key}.py"
    text = entry_text(body)
    if _read(d, key) == text:
        return path
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=d)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            os.link(tmp, path)  # fails if another process got there first: keep theirs
        except FileExistsError:
            if _read(d, key) is not None:
                return path
            # theirs is corrupt, changed or not ours: replace it (Numba sees a new stamp)
            os.replace(tmp, path)
            _drop_numba_cache(d, key)
            tmp = ""
        _write_seal(d, key, {"entry": _stamp(path)})
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return path


def write_note(name: str, text: str) -> None:
    """Write ``name``, a small file of symbp's own (the product kernels measured faster:
    ``lower.tuning``), into the cache directory, atomically and 0600 like an entry."""
    d = _write_dir()
    fd, tmp = tempfile.mkstemp(prefix=name + ".", suffix=".tmp", dir=d)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, d / name)
        tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def read_note(name: str) -> str | None:
    """The text of ``write_note``'s file, if it is there and passes the checks entries pass
    (ours, not writable by others, no symlink out)."""
    d = _write_dir()
    path = d / name
    if not path.exists() or file_problem(path, Path(os.path.realpath(d))) is not None:
        return None
    try:
        return path.read_text()
    except OSError:
        return None


def _numba_files(d: Path, key: str) -> list[Path]:
    """Numba's index and code files for the entry ``key`` (not its in-flight temporaries)."""
    return [f for f in (d / "__pycache__").glob(f"m_{key}.*") if ".tmp." not in f.name]


def vet_numba_files(d: Path, key: str) -> None:
    """Before the entry ``key`` in ``d`` runs: delete its Numba files that must not be loaded
    (Numba then compiles afresh), those failing ``file_problem`` and, once symbp has recorded
    what Numba wrote, those that differ from the record."""
    recorded = (_read_seal(d, key) or {}).get("numba")
    for f in _numba_files(d, key):
        problem = file_problem(f, d)
        if problem is not None:
            _warn_once(f"symbp: not loading Numba's cached code {f}: {problem}; it is rebuilt")
        elif recorded is None or recorded.get(f.name) == _stamp(f):
            continue
        with contextlib.suppress(OSError):
            f.unlink()


def seal_numba_files(d: Path, key: str) -> None:
    """Record Numba's files for ``key`` as they are now (Numba just wrote them), mode 0600."""
    seal = _read_seal(d, key)
    if seal is None:
        return  # the entry itself was replaced or dropped meanwhile: nothing to vouch for
    files = {}
    for f in _numba_files(d, key):
        with contextlib.suppress(OSError):
            os.chmod(f, 0o600)
            files[f.name] = _stamp(f)
    _write_seal(d, key, {**seal, "numba": files})


def watch(mod: Any, key: str, path: Path) -> None:
    """Have each of the loaded entry's dispatchers record Numba's files whenever Numba saves
    them (through the dispatcher's own cache object: nothing outside this module changes)."""
    d = path.parent
    pycache = os.path.realpath(d / "__pycache__")
    for fn in vars(mod).values():
        impl = getattr(fn, "_cache", None)
        save = getattr(impl, "save_overload", None)
        where = getattr(impl, "_cache_path", None)
        if save is None or where is None or os.path.realpath(where) != pycache:
            continue

        def sealed(sig: Any, data: Any, save: Any = save) -> None:
            save(sig, data)
            seal_numba_files(d, key)

        setattr(impl, "save_overload", sealed)  # noqa: B010  (this object only)


# ---------------------------------------------------------------- where Numba keeps its code


def use_for_numba() -> None:
    """Tell Numba where the machine code of symbp's ``@njit(cache=True)`` functions goes:

    - a program's beside its entry (``<cache dir>/__pycache__``), whatever ``NUMBA_CACHE_DIR``
      says, so that its checks, its seal and ``clear_cache`` cover it;
    - symbp's own helpers and kernels in ``kernel_cache_dir()`` rather than in ``__pycache__``
      beside the installed package, where they would need a writable install, go stale across
      reinstalls and outlive an uninstall. ``NUMBA_CACHE_DIR``, when set, still wins for them,
      once it passed ``dir_problem``.

    Other libraries' functions keep Numba's own placement. Call before the helpers are
    decorated."""
    from numba.core import caching

    classes = getattr(getattr(caching, "CacheImpl", None), "_locator_classes", None)
    if _Locator is not None and classes is not None and _Locator not in classes:
        classes.insert(0, _Locator)


def _numba_dir(py_file: str) -> str | None:
    """Where Numba's code of a function defined in ``py_file`` goes, if it is symbp's."""
    path = os.path.abspath(py_file)
    if path.startswith(_PACKAGE):
        from numba.core import config

        user = getattr(config, "CACHE_DIR", "")
        if user:
            why = _checked(Path(user))
            if why is None:
                return None  # Numba's own locator puts it there
            instead = "symbp's kernels go to its kernel cache instead."
            _warn_once(_refused("NUMBA_CACHE_DIR =", Path(user), why, instead))
        rel = os.path.relpath(os.path.dirname(path), _PACKAGE)
        # per installed copy: two installs must not overwrite each other's entries
        where = hashlib.sha256(_PACKAGE.encode()).hexdigest()[:12]
        return str(kernel_cache_dir() / where / rel)
    d = os.path.dirname(os.path.realpath(path))
    if d in _PROGRAM_DIRS and _PROGRAM.fullmatch(os.path.basename(path)):
        return os.path.join(d, "__pycache__")
    return None


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # symbp/
_VETTED: set[str] = set()  # kernel directories whose files were checked in this process


def _locator() -> type | None:
    """Numba's private locator API, when this Numba has it (else its default placement)."""
    try:
        from numba.core.caching import _CacheLocator, _SourceFileBackedLocatorMixin
    except ImportError:
        return None

    class Locator(_SourceFileBackedLocatorMixin, _CacheLocator):  # type: ignore[misc]
        """Numba's cache of functions defined in symbp's source files and its programs."""

        def __init__(self, py_func: Any, py_file: str):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            self._cache_path = _numba_dir(py_file)

        def get_cache_path(self) -> str:
            return str(self._cache_path)

        def ensure_cache_path(self) -> None:
            path = Path(self.get_cache_path())
            why = _checked(path)
            if why is not None:
                raise OSError(why.problem)
            tempfile.TemporaryFile(dir=path).close()  # writable, as Numba's own check
            if str(path) not in _VETTED:  # (a program's are also checked against its seal)
                _VETTED.add(str(path))
                for f in path.glob("*.nb[ic]"):
                    problem = file_problem(f, path)
                    if problem is not None:
                        _warn_once(f"symbp: not loading Numba's cached code {f}: {problem}")
                        with contextlib.suppress(OSError):
                            f.unlink()

        @classmethod
        def from_function(cls, py_func: Any, py_file: str) -> Any:
            if _numba_dir(py_file) is None:
                return None
            return super().from_function(py_func, py_file)

    return Locator


_Locator = _locator()


def _drop_numba_cache(d: Path, key: str) -> None:
    for f in (d / "__pycache__").glob(f"m_{key}.*"):
        with contextlib.suppress(OSError):
            f.unlink()


def drop_entry(key: str) -> None:
    """Forget an entry, its seal and Numba's code for it (used when loading it failed)."""
    for d in {cache_dir(), _write_dir()}:
        for f in (d / f"m_{key}.py", _seal_path(d, key)):
            with contextlib.suppress(OSError):
                f.unlink()
        _drop_numba_cache(d, key)


def cache_info() -> dict[str, Any]:
    """Where the cache is, how many programs it holds, how many bytes it takes, and why the
    configured directory is not used (None when it is).

    >>> info = cache_info()
    >>> sorted(info)
    ['bytes', 'dir', 'entries', 'refused', 'versions']
    """
    d = cache_dir()
    files = [f for f in d.rglob("*") if f.is_file()]
    return {
        "dir": str(d),
        "entries": len(list(d.glob("m_*.py"))),
        "bytes": sum(f.stat().st_size for f in files),
        "versions": versions(),
        "refused": refusal(),
    }


def clear_cache() -> int:
    """Delete every cached program (and Numba's code for it); return how many there were.
    symbp's library kernels (``kernel_cache_dir``) stay: they are compiled once per machine."""
    d = cache_dir()
    n = len(list(d.glob("m_*.py")))
    for f in [*d.glob("m_*.py"), *d.glob("m_*.seal")]:
        with contextlib.suppress(OSError):
            f.unlink()
    shutil.rmtree(d / "__pycache__", ignore_errors=True)
    shutil.rmtree(d / "numba", ignore_errors=True)  # symbp's helpers: rebuilt on next use
    return n


__all__ = [
    "CacheWarning",
    "cache_dir",
    "cache_info",
    "clear_cache",
    "dir_problem",
    "kernel_cache_dir",
    "make_key",
    "read_entry",
    "write_entry",
]
