"""Shared fixtures and oracles: float64 central differences and the tutorials' 2-2-2 network;
the session's one program cache; and, under ``SYMBP_REQUIRE_TORCH=1`` (``.ci/run``), no PyTorch
comparison may be skipped."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

import numpy as np
import pytest

import symbp
from symbp import nn

# ---------------------------------------------------------------- session: cache and PyTorch

# Set by .ci/run, which installs torch: there a skipped comparison with PyTorch is a failure
# (without it, every `importorskip("torch")` test would pass CI by not running).
REQUIRE_TORCH = os.environ.get("SYMBP_REQUIRE_TORCH") == "1"
_TORCH_REASON = re.compile(r"\b(torch|pytorch)\b", re.IGNORECASE)
_torch_skips: list[str] = []  # node ids of the comparisons that were skipped (and so failed)


def pytest_configure(config):
    if REQUIRE_TORCH:
        # some tests compare with torch only when it imports (`torch = None` otherwise): they
        # skip nothing, so check the import itself first
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise pytest.UsageError(
                f"SYMBP_REQUIRE_TORCH=1: every PyTorch comparison must run, but torch does not "
                f"import ({e}); install it with `pip install torch==2.13.0` (the CPU build)"
            ) from e


def _torch_skip(report) -> str | None:
    """Under SYMBP_REQUIRE_TORCH=1, the reason of a skip that names torch (recorded)."""
    if not (REQUIRE_TORCH and report.skipped) or hasattr(report, "wasxfail"):
        return None
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not _TORCH_REASON.search(reason):
        return None
    _torch_skips.append(f"{report.nodeid}: {reason}")
    return reason


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    reason = _torch_skip(report)
    if reason is not None:  # the test fails, where it is
        report.outcome = "failed"
        report.longrepr = f"SYMBP_REQUIRE_TORCH=1, but a PyTorch comparison was skipped: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield  # a module-level importorskip("torch") skips the whole module here;
    _torch_skip(outcome.get_result())  # failing it would stop the collection: fail at the end


def pytest_sessionfinish(session, exitstatus):
    if _torch_skips and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if REQUIRE_TORCH:  # the line .ci/run's log shows
        for skip in _torch_skips:
            terminalreporter.write_line(f"SKIPPED PyTorch comparison (a failure here): {skip}")
        terminalreporter.write_line(
            f"SYMBP_REQUIRE_TORCH=1: PyTorch comparisons skipped: {len(_torch_skips)}"
        )


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per core this process may run on, at most 8 (each worker holds
    Numba, SymPy and PyTorch, ~1 GB, and compiles its own programs)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory):
    """Every test compiles into one program cache of this session, so that a program built by
    one test is loaded, not rebuilt, by the next (in one process, not even loaded again).
    Subprocesses (the CLI, the examples) inherit it. By default a session starts with an empty
    one (hermetic: what CI and a new machine see); ``SYMBP_TEST_CACHE_DIR=DIR`` keeps it in DIR
    across runs, for everyday work (entries are keyed by symbp's compiler source, so a change
    there rebuilds). A test about the cache itself points SYMBP_CACHE_DIR elsewhere."""
    path = os.environ.get("SYMBP_TEST_CACHE_DIR") or tmp_path_factory.getbasetemp() / "symbp-cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("SYMBP_CACHE_DIR", str(path))
    yield
    mp.undo()


# ---------------------------------------------------------------- test time: what to share
#
# The suite's time is Numba compiling (measured: a small MLP's training program ~5 s of CPU, a
# single layer's ~3 s, predict ~1 s more; a conv kernel family ~10 s, cold) and new
# interpreters (~2-2.5 s each to import symbp, Numba and SymPy). So:
#
# - Identical programs compile once per session: every test compiles into the session's cache
#   (``_session_cache``), in one process a second ``symbp.compile`` of the same model, loss,
#   optimizer, shapes and dtype is neither compiled nor loaded again. Build shared models with
#   a fixed seed and the same sizes (a module-level helper, as test_silent's ``_mlp``) rather
#   than slightly different ones per test; put several cases in one program where a test
#   compares many ops (``kernel_results`` below, used by tests/test_lower.py).
# - Everything that compiles is ``@pytest.mark.slow`` unless it is the one light program a
#   module needs for everyday coverage; ``everyday(rows, keep)`` marks all but a few rows of
#   a parametrize slow. ``python -m pytest -m "not slow"`` is the everyday set (under 3
#   minutes of CPU); the README's ``python -m pytest`` runs everything.
# - All cores: the README's ``python -m pytest -n auto --dist loadfile`` (pytest-xdist, in the
#   test extra; ``-n auto`` is this machine's cores, at most 8: pytest_xdist_auto_num_workers
#   below). Each worker has its own session cache (pytest gives each its own base temp), so
#   workers never write one entry at once; ``loadfile`` keeps a module's tests, which share
#   programs, in one worker. Measured on a quiet 2-core Xeon (model 167), the full suite:
#   about 50 min in one process, 17 min with ``-n auto`` (2 workers; CI, 2 December 2026).
#   ``benchmarks/bench_compile.py`` shows where a compile goes.
# - Subprocesses: run several checks per interpreter (tests/test_cli.py's ``run_many`` calls
#   ``symbp.cli.main`` once per command line in one subprocess). A subprocess inherits the
#   session's program cache (SYMBP_CACHE_DIR) and symbp's kernel cache (per user).


def everyday(rows: Sequence, keep: Sequence[int] = (0,), ids=None) -> list:
    """``pytest.param`` rows for ``parametrize``: the rows at the indexes ``keep`` run in the
    everyday set, the others are marked slow (a compile each). A row that is a tuple gives
    several arguments."""
    out = []
    for i, row in enumerate(rows):
        values = row if isinstance(row, tuple) else (row,)
        marks = () if i in keep else (pytest.mark.slow,)
        out.append(pytest.param(*values, marks=marks, id=None if ids is None else ids(row)))
    return out


# The tutorials' 2-2-2 sigmoid network (Mazur's "step by step" example).
X222 = np.array([[0.05, 0.10]])
T222 = np.array([[0.01, 0.99]])
W1_222 = np.array([[0.15, 0.20], [0.25, 0.30]])
B1_222 = np.array([0.35, 0.35])
W2_222 = np.array([[0.40, 0.45], [0.50, 0.55]])
B2_222 = np.array([0.60, 0.60])


@pytest.fixture(autouse=True)
def _restore_defaults():
    """Tests may switch the default dtype or reseed; leave the next test a clean slate."""
    dtype = symbp.get_default_dtype()
    yield
    symbp.set_default_dtype(dtype)


@pytest.fixture
def float64():
    """Make float64 the default dtype for this test (as torch.set_default_dtype)."""
    symbp.set_default_dtype(symbp.float64)
    yield symbp.float64


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar function of one array, in float64, entry by entry."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = float(f(x.copy()))
        x[i] = old - eps
        down = float(f(x.copy()))
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def numeric_grads(
    f: Callable[..., float], arrays: Sequence[np.ndarray], eps: float = 1e-6
) -> list[np.ndarray]:
    """Central differences of a scalar function of several arrays, one gradient per array."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    out = []
    for k in range(len(arrays)):

        def fk(a, k=k):
            return f(*arrays[:k], a, *arrays[k + 1 :])

        out.append(numeric_grad(fk, arrays[k], eps))
    return out


class Net222(nn.Module):
    """Two sigmoid layers, as in the tutorial: out = σ(σ(x W1ᵀ + b1) W2ᵀ + b2)."""

    def __init__(self, dtype=None):
        super().__init__()
        self.linear1 = nn.Linear(2, 2, dtype=dtype)
        self.linear2 = nn.Linear(2, 2, dtype=dtype)
        self.linear1.weight.data = W1_222
        self.linear1.bias.data = B1_222
        self.linear2.weight.data = W2_222
        self.linear2.bias.data = B2_222

    def forward(self, x):
        h = symbp.sigmoid(self.linear1(x))
        return symbp.sigmoid(self.linear2(h))


def backprop_222(x=X222, t=T222, W1=W1_222, b1=B1_222, W2=W2_222, b2=B2_222):
    """Hand-written NumPy backprop of the 2-2-2 net under E = sum((o - t)^2) / 2.

    Returns (loss, {name: gradient}) with the names of Net222's parameters.
    """

    def sig(z):
        return 1 / (1 + np.exp(-z))

    h = sig(x @ W1.T + b1)
    o = sig(h @ W2.T + b2)
    loss = 0.5 * np.sum((o - t) ** 2)
    d2 = (o - t) * o * (1 - o)  # δ of the output layer
    d1 = (d2 @ W2) * h * (1 - h)  # δ of the hidden layer
    grads = {
        "linear1.weight": d1.T @ x,
        "linear1.bias": d1.sum(0),
        "linear2.weight": d2.T @ h,
        "linear2.bias": d2.sum(0),
    }
    return loss, grads


@pytest.fixture
def net222():
    """A builder: ``net222(dtype=None)`` -> (net, x, t) for the tutorial's 2-2-2 network."""

    def build(dtype=None):
        dtype = np.dtype(dtype or symbp.get_default_dtype())
        net = Net222(dtype)
        x = symbp.tensor(X222, dtype=dtype)
        t = symbp.tensor(T222, dtype=dtype)
        return net, x, t

    return build


def half_sse(out, t):
    """The tutorials' loss: sum((out - t)^2) / 2."""
    return ((out - t) ** 2).sum() / 2


# ---------------------------------------------------------------- compiled kernels vs eager


class KernelCases(nn.Module):
    """Several op cases side by side in one program, for comparing generated kernels with
    the reference executor. ``cases[name] = (fn, x_shape, w_shape, extra)``; each case's
    output is weighted by a random R, so grad R is the op's forward value and grad X, grad W
    its backward. ``make_xw(rng, x_shape, w_shape, extra)`` draws the case's X and W."""

    def __init__(self, cases, names, dtype, make_xw):
        super().__init__()
        self.cases, self.names = cases, names
        for name in names:
            fn, xs, ws, extra = cases[name]
            rng = np.random.default_rng(sorted(cases).index(name))
            x, w = make_xw(rng, xs, ws, extra)
            setattr(self, f"{name}_X", nn.Parameter(x.astype(dtype)))
            setattr(self, f"{name}_W", nn.Parameter(w.astype(dtype)))
            out = fn(getattr(self, f"{name}_X"), getattr(self, f"{name}_W"))  # eager, for shape
            r = np.random.default_rng(100 + rng.integers(100)).uniform(0.5, 1.5, out.shape)
            setattr(self, f"{name}_R", nn.Parameter(r.astype(dtype)))

    def forward(self, x):
        total = 0 * x.sum()
        for name in self.names:
            out = self.cases[name][0](getattr(self, f"{name}_X"), getattr(self, f"{name}_W"))
            total = total + (out * getattr(self, f"{name}_R")).sum()
        return total


def _kernel_loss(out, y):
    return out + 0 * y.sum()


def kernel_results(cases, chunk, make_xw) -> dict:
    """{(name, dtype): (eager grads, compiled grads, eager loss, compiled loss)}, compiling
    ``chunk`` cases per program (fewer Numba compiles, still small functions)."""
    out = {}
    names = sorted(cases)
    for dtype in (np.float64, np.float32):
        for i in range(0, len(names), chunk):
            net = KernelCases(cases, names[i : i + chunk], dtype, make_xw)
            x = np.zeros((2, 1), dtype)
            loss = _kernel_loss(net(symbp.tensor(x)), symbp.tensor(x))
            loss.backward()
            want = {n: p.grad.numpy().copy() for n, p in net.named_parameters()}  # as compiled's
            for p in net.parameters():
                p.grad = None
            # NaN and inf cases too: compiled must give what eager gives, not refuse the data
            got_loss, got = symbp.compile(net, _kernel_loss, check_finite=False).loss_and_grads(
                x, x
            )
            for name in net.names:
                out[name, dtype] = (want, got, float(loss), got_loss)
    return out


KERNEL_TOL = {np.float64: 1e-12, np.float32: 1e-5}


def assert_kernel_matches(results: dict, name: str, dtype) -> None:
    """Case ``name`` of ``kernel_results``: compiled loss and grads equal eager's (grad R is
    the op's forward value, grads X and W its backward), in the case's dtype."""
    want, got, want_loss, got_loss = results[name, dtype]
    tol = KERNEL_TOL[dtype]
    np.testing.assert_allclose(got_loss, want_loss, rtol=tol)
    for part in ("R", "X", "W"):
        k = f"{name}_{part}"
        np.testing.assert_allclose(got[k], want[k], rtol=tol, atol=tol, err_msg=f"grad {k}")
        assert got[k].dtype == dtype


@pytest.fixture(scope="module")
def tmp_cache(_session_cache):
    """The session's program cache (every test has it now, ``_session_cache``); kept for the
    modules and fixtures that name it."""
