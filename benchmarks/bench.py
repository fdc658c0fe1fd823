#!/usr/bin/env python
"""Time symbp against its peers on the workloads of issue 3, in one run, and check they agree.

Usage::

    python benchmarks/bench.py                      # everything: a few minutes on 2 cores
    python benchmarks/bench.py --workloads W1,W5 --peers symbp,torch,jax_fori --repeats 21
    python benchmarks/bench.py --quick              # seconds per workload: the smoke test's mode

Contenders (``--peers``; ``symbp`` selects both symbp rows)::

    symbp_fit   symbp's compiled loop: ``CompiledModel.fit`` runs all the steps (or epochs) of
                one timed call inside one compiled function
    symbp_step  ``CompiledModel.step(x, y)`` called from a Python loop, one call per batch
    torch, jax_jit, jax_fori, numba_hand        see ``peers.py``

Method:

* Isolation: every contender lives in its own worker process (this script with ``--worker``),
  driven over a pipe, so one framework's thread pools (PyTorch's GNU OpenMP, MKL's Intel
  OpenMP, Numba's TBB, XLA's) never share a process with another's. On a quiet machine the
  effect is modest (torch imported and used beside symbp: symbp's W3 step 2.7 -> 3.6 ms), but
  while another process kept one core busy, several busy-waiting pools in one process made
  W2/W3 steps 10-100x slower. The parent only orchestrates.
* Same start: every contender starts from ``peers.init_params`` and trains on the
  ``peers.make_data`` batches in the same order (symbp's ``nn.Linear`` layers get the parameters
  through ``.data``).
* Agreement: every contender first trains the same number of steps/epochs; its parameters must
  match the reference (PyTorch when selected) within float32 tolerance (``peers.max_rel_diff``,
  scale-relative). W2 then trains on to a fixed epoch count (20) and every contender's training
  accuracy is reported. This run doubles as the warm-up (JIT compilation, thread pools).
* Timing: each contender's ``run(n)`` is calibrated so one call takes about ``--call-ms``; then
  ``--repeats`` rounds time one call of every contender, in an order rotated each round, so
  slow drifts of a noisy host hit every contender alike. Before each call the parent sleeps
  ``--gap-ms`` so that the previous worker's threads, which spin after a parallel region (200
  ms for Intel's OpenMP), have gone to sleep (without it, on a quiet machine: symbp's W3 step
  2.5 -> 5.1 ms, PyTorch's 2.9 -> 4.2 ms). A round during which other processes took more than
  5% of the CPUs (``/proc/stat`` minus this run's own CPU time) is not used and is run again,
  up to twice the rounds in all. The table shows the median time per step (or epoch), the
  interquartile range, the minimum, and speed-ups vs PyTorch eager and JAX ``fori_loop``
  (``t_peer / t_row``: above 1 means the row is faster). Garbage collection is paused during
  a timed call (as ``timeit`` does).
* W3 also reports GFLOP/s (the matmul work actually done, ``peers.step_flops(input_grad=False)``)
  as a fraction of the machine's float32 matmul peak: the best 2048^3 rate of numpy/scipy
  (OpenBLAS: the specified peak), and of every backend (torch, jax, MKL as symbp calls it),
  each measured in its own process before and after the workloads (best of both: the host is
  noisy).
* Compile: a fresh child process builds the W2 model and takes its first step with an empty
  ``SYMBP_CACHE_DIR`` (cold), then more children with that now-filled cache (warm). The child
  times "build + first step" from after its imports and after loading the data set to when the
  first step returns; imports are reported separately. "fully_cold" also empties Numba's cache
  (``NUMBA_CACHE_DIR``) so symbp's fixed helpers compile too, as after a fresh install.

Threads: ``peers`` pins OpenMP/MKL/OpenBLAS to 2 threads through environment variables that
every worker inherits; this script pins Numba too (``NUMBA_NUM_THREADS``). The host's load
average is printed, with a warning above ``LOAD_WARN``: any other busy process distorts 2-thread
timings on 2 cores.

Output: a table on stdout, progress on stderr, JSON in ``--json`` (default
``benchmarks/results/latest.json``). The exit status is 1 when a contender disagrees with the
reference or fails, 0 otherwise (missed performance targets do not fail the run).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()  # the compile child times its imports from here

import argparse  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import traceback  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import IO, Any  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPT = str(Path(__file__).resolve())
sys.path.insert(0, str(HERE))
# peers pins the BLAS/OpenMP thread pools through environment variables: import it before numpy
# (and before numba, which reads NUMBA_NUM_THREADS when it loads).
import peers  # noqa: E402

os.environ.setdefault("NUMBA_NUM_THREADS", str(peers.N_THREADS))

import numpy as np  # noqa: E402

DEFAULT_JSON = HERE / "results" / "latest.json"
LOAD_WARN = 0.5  # 1-minute load average above which timings are flagged as unreliable
OTHER_CPU_WARN = 0.05  # likewise for the CPU share others took during the compile runs
ROUND_OTHER_MAX = 0.05  # a timing round in which others took more of the CPUs is run again
SYMBP_ROWS = ("symbp_fit", "symbp_step")
ALL_CONTENDERS = (*SYMBP_ROWS, *peers.PEERS)  # also the table order
WORKLOAD_NAMES = ("W1", "W2", "W3", "W5")
# A step workload run through fit() tiles its data so that one epoch is about this many steps
# (fit's per-call and per-epoch bookkeeping is then amortised, as in a real training run)...
FIT_EPOCH_STEPS = 1024
# ...without tiling more than this many input values (W3's 512 x 784 inputs are tiled twice).
FIT_TILE_VALUES = 1 << 20
# Backends whose float32 matmul rate is measured (each in its own process); "mkl" is the
# cblas_sgemm symbp calls when the mkl wheel is installed.
MATMUL_BACKENDS = ("numpy", "scipy", "torch", "jax", "mkl")
BLAS_PEAK_BACKENDS = ("numpy", "scipy")  # peers.matmul_peak_gflops: the specified "peak"


@dataclass(frozen=True)
class Settings:
    """What one run measures and how hard it tries (``--quick`` shrinks everything)."""

    quick: bool
    repeats: int
    call_s: float  # target duration of one timed call
    gap_s: float  # pause before each timed call: the previous worker's threads fall asleep
    check: dict[str, tuple[int, float]]  # see CHECK
    accuracy_epochs: int  # W2: epochs trained (in all) before the training accuracy
    matmul_n: int
    matmul_repeats: int
    cold_runs: int
    warm_runs: int
    fully_cold: bool


# workload -> (units every contender trains before the agreement check, max_rel_diff tolerance).
# Step counts are multiples of symbp_fit's epoch (1024 steps; 8 for W3) so that every contender
# trains exactly the same steps. Observed diffs: 1e-7 to 1e-5 (W5, after 1024 SGD steps); Adam's
# m/sqrt(v) amplifies float32 rounding of tiny gradients (~6e-7 after one W2 epoch).
CHECK = {"W1": (1024, 1e-4), "W2": (1, 1e-4), "W3": (8, 1e-4), "W5": (1024, 1e-4)}


def make_settings(
    quick: bool, repeats: int | None, call_ms: float | None, gap_ms: float | None
) -> Settings:
    def pick(value: float | None, full: float, fast: float) -> float:
        return value if value is not None else (fast if quick else full)

    return Settings(
        quick=quick,
        repeats=int(pick(repeats, 15, 3)),
        call_s=pick(call_ms, 50, 5) / 1e3,
        gap_s=(250 if gap_ms is None else gap_ms) / 1e3,  # > Intel OpenMP's 200 ms spin
        check=CHECK,
        accuracy_epochs=2 if quick else 20,
        matmul_n=512 if quick else 2048,
        matmul_repeats=3 if quick else 10,
        cold_runs=1 if quick else 2,
        warm_runs=1 if quick else 3,
        fully_cold=not quick,
    )


# --------------------------------------------------------------------------------------------
# symbp as a contender, with the same run(n) / params() interface as the peers
# --------------------------------------------------------------------------------------------


def half_sse(out: Any, target: Any) -> Any:
    """The tutorials' loss, sum((o - t)^2) / 2 (W1)."""
    return ((out - target) ** 2).sum() / 2


def symbp_model(workload: str, params: peers.Params) -> tuple[Any, list[Any]]:
    """A compiled symbp model of ``workload`` holding ``params``, and its Linear layers."""
    import symbp
    from symbp import nn

    spec = peers.WORKLOADS[workload]
    layers: list[Any] = []
    linears: list[Any] = []
    for i in range(spec.n_layers):
        lin = nn.Linear(spec.sizes[i], spec.sizes[i + 1])
        lin.weight.data = params[f"w{i + 1}"]  # copied in; [out, in], the layout of torch
        lin.bias.data = params[f"b{i + 1}"]
        linears.append(lin)
        layers.append(lin)
        if i < spec.n_layers - 1:
            layers.append(nn.Sigmoid() if spec.hidden == "sigmoid" else nn.ReLU())
    loss_fn: Callable[[Any, Any], Any]
    if spec.loss == "half_sse_sigmoid":
        layers.append(nn.Sigmoid())
        loss_fn = half_sse
    elif spec.loss == "ce":
        loss_fn = nn.CrossEntropyLoss()
    else:
        loss_fn = nn.MSELoss()
    net = nn.Sequential(*layers)
    if spec.optimizer == "adam":
        opt = symbp.optim.Adam(
            net.parameters(), lr=spec.lr, betas=peers.ADAM_BETAS, eps=peers.ADAM_EPS
        )
    else:
        opt = symbp.optim.SGD(net.parameters(), lr=spec.lr, momentum=spec.momentum)
    return symbp.compile(net, loss_fn, opt), linears


@dataclass
class Contender:
    """A ready-to-time contender inside a worker: ``peer.run(n)`` trains n units."""

    name: str
    peer: peers.PeerRun
    multiple: int = 1  # run(n) takes multiples of this many units
    model: Any = None  # symbp's CompiledModel (for its build timings)


def symbp_contender(row: str, workload: str, params: peers.Params, data: peers.Data) -> Contender:
    """symbp through ``fit`` (``symbp_fit``) or through ``step`` from Python (``symbp_step``)."""
    spec = peers.WORKLOADS[workload]
    model, linears = symbp_model(workload, params)
    multiple = 1

    if row == "symbp_step":
        batches = data.batches()  # C-contiguous views: step()'s fast path takes them as they are

        def step(k: int) -> float:
            return model.step(*batches[k])

        # The same Python driver as the torch and jax_jit peers: the same loop overhead.
        run = peers._python_driver(spec, data, step)

    elif spec.unit == "epoch":

        def run(n: int) -> float:
            # shuffle=False: the batches in peers' order (make_data shuffled the data once)
            history = model.fit(data.x, data.y, epochs=n, batch_size=data.batch_size,
                                shuffle=False)  # fmt: skip
            return history["loss"][-1]

    else:
        # Step i uses batch i % n_batches, as for the peers. One epoch of fit() over the data
        # tiled `tile` times is tile * n_batches consecutive steps, so run(n) is n / that
        # epochs, all in one compiled call.
        if len(data.x) % data.batch_size:
            raise ValueError(f"{workload}: step workloads need full batches")
        tile = max(1, min(FIT_EPOCH_STEPS // data.n_batches, FIT_TILE_VALUES // data.x.size))
        xs = np.ascontiguousarray(np.tile(data.x, (tile, 1)))
        ys = np.ascontiguousarray(np.tile(data.y, (tile,) + (1,) * (data.y.ndim - 1)))
        multiple = tile * data.n_batches

        def run(n: int) -> float:
            if n % multiple:
                raise ValueError(f"symbp_fit on {workload} runs multiples of {multiple} steps")
            history = model.fit(xs, ys, epochs=n // multiple, batch_size=data.batch_size,
                                shuffle=False)  # fmt: skip
            return history["loss"][-1]

    def get_params() -> peers.Params:
        out: peers.Params = {}
        for i, lin in enumerate(linears, start=1):
            out[f"w{i}"] = np.array(lin.weight.data, dtype=np.float32)
            out[f"b{i}"] = np.array(lin.bias.data, dtype=np.float32)
        return out

    return Contender(row, peers.PeerRun(row, workload, run, get_params), multiple, model)


def build_contender(name: str, workload: str) -> Contender:
    params, data = peers.init_params(workload), peers.make_data(workload)
    if name in SYMBP_ROWS:
        return symbp_contender(name, workload, params, data)
    return Contender(name, peers.build_peer(name, workload, params, data))


# --------------------------------------------------------------------------------------------
# Worker process: one contender, driven by JSON lines on stdin/stdout
# --------------------------------------------------------------------------------------------


def timed_call(c: Contender, n: int) -> float:
    """Wall time of ``run(n)`` with the garbage collector paused (as ``timeit`` does)."""
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        loss = c.peer.run(n)
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
    if not math.isfinite(loss):
        raise FloatingPointError(f"{c.name}: the loss became {loss}")
    return elapsed


def calibrate(c: Contender, target_s: float) -> int:
    """Units per call such that one call takes about ``target_s`` (a multiple of c.multiple)."""
    n = c.multiple
    while True:
        elapsed = timed_call(c, n)
        if elapsed >= target_s / 4 or n >= 1 << 26:
            break
        n *= 8 if elapsed < target_s / 64 else 2
    want = n * target_s / max(elapsed, 1e-9)
    return max(c.multiple, c.multiple * round(want / c.multiple))


def worker_main(workload: str, name: str) -> None:
    """Serve one contender: build it, then answer requests until "quit" or end of input.

    Requests and replies are JSON lines. The protocol has a private copy of stdout; file
    descriptor 1 is pointed at stderr so that stray prints (of any library) cannot corrupt it.
    """
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(**msg: Any) -> None:
        proto.write(json.dumps(msg) + "\n")

    t0 = time.perf_counter()
    try:
        c = build_contender(name, workload)
    except peers.PeerUnavailable as exc:
        reply(unavailable=str(exc))
        return
    except Exception:
        reply(error=traceback.format_exc())
        return
    reply(ready=True, build_s=time.perf_counter() - t0, multiple=c.multiple)
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "quit":
                break
            if cmd == "train":  # untimed training (agreement run, accuracy epochs)
                t0 = time.perf_counter()
                loss = c.peer.run(req["n"])
                reply(loss=loss, seconds=time.perf_counter() - t0)
            elif cmd == "time":
                reply(seconds=timed_call(c, req["n"]))
            elif cmd == "calibrate":
                reply(n=calibrate(c, req["target_s"]))
            elif cmd == "params":
                np.savez(req["path"], **c.peer.params())
                reply(path=req["path"])
            elif cmd == "info":
                timings = dict(c.model.timings) if c.model is not None else None
                reply(symbp_timings=timings)
            else:
                reply(error=f"unknown request {cmd!r}")
        except Exception:
            reply(error=traceback.format_exc())


class Worker:
    """The parent's handle on a worker process."""

    def __init__(self, workload: str, name: str):
        self.name = name
        # The worker's stderr, for error reports; it lives as long as the worker (closed there).
        self.stderr: IO[str] = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, "--worker", workload, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self.hello = self._recv()

    def _recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.stderr.seek(0)
            tail = self.stderr.read()[-3000:]
            raise RuntimeError(f"{self.name} worker exited ({self.proc.returncode}):\n{tail}")
        msg: dict[str, Any] = json.loads(line)
        if "error" in msg:
            raise RuntimeError(f"{self.name} worker: {msg['error']}")
        return msg

    def ask(self, cmd: str, gap_s: float = 0.0, **args: Any) -> dict[str, Any]:
        """Send a request and wait for the reply, after ``gap_s`` for the CPUs to settle."""
        assert self.proc.stdin is not None
        time.sleep(gap_s)
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self._recv()

    def params(self, tmp: str) -> peers.Params:
        path = os.path.join(tmp, f"{self.name}.npz")
        self.ask("params", path=path)
        with np.load(path) as f:
            return {k: f[k] for k in f.files}

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, OSError):  # it may have died already
                self.ask("quit")
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its handle
                self.proc.wait()
        self.stderr.close()


# --------------------------------------------------------------------------------------------
# One workload
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One row of the table, as the parent collects it."""

    name: str
    worker: Worker
    build_s: float = 0.0
    check_s: float = 0.0
    check_loss: float = math.nan
    n_call: int = 0
    times: list[float] = field(default_factory=list)  # seconds per unit, one per round


def process_cpu_s(pid: int) -> float:
    """CPU seconds a live process (all its threads) has used, from ``/proc``; NaN elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after "pid (comm)": state is field 3
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    except (OSError, ValueError, IndexError):
        return math.nan


def tree_cpu_s() -> float:
    """CPU seconds of this process and of its children that were reaped."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class OtherCpu:
    """The share of the machine's CPU time that processes outside this run used since creation.

    All CPUs' busy time (``/proc/stat``, steal included) minus ``own()``, the CPU time of this
    run, over wall time x CPUs. By default ``own`` counts children once reaped (read ``share()``
    after closing the workers); during the timing rounds it adds the live workers' CPU time.
    About 1% is normal (the kernel, the tools); more means the timings were disturbed. NaN
    where ``/proc/stat`` is missing.
    """

    def __init__(self, own: Callable[[], float] = tree_cpu_s) -> None:
        self.own = own
        self.t0, self.busy0, self.own0 = time.perf_counter(), self.busy(), own()

    @staticmethod
    def busy() -> float:
        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:9]]  # user .. steal
        except (OSError, ValueError):
            return math.nan
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # - idle, iowait

    def share(self) -> float:
        wall = time.perf_counter() - self.t0
        other = (self.busy() - self.busy0) - (self.own() - self.own0)
        return max(other, 0.0) / (wall * (os.cpu_count() or 1))


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def time_rounds(rows: list[Row], settings: Settings, log: Callable[[str], None]) -> dict:
    """Rounds of one timed call per contender, the order rotated each round.

    A round during which other processes took more than ``ROUND_OTHER_MAX`` of the CPUs is
    kept in the JSON but not used, and another round is run instead, up to twice the requested
    number of rounds in all (if fewer than 3 rounds were clean then, all of them are used).
    """

    def own() -> float:  # this process and the live workers
        t = os.times()
        return t.user + t.system + sum(process_cpu_s(r.worker.proc.pid) for r in rows)

    k = len(rows)
    shares: list[float] = []
    clean = 0
    while clean < settings.repeats and len(shares) < 2 * settings.repeats:
        i = len(shares)
        meter = OtherCpu(own)
        for r in rows[i % k :] + rows[: i % k]:
            seconds = r.worker.ask("time", settings.gap_s, n=r.n_call)["seconds"]
            r.times.append(seconds / r.n_call)
        shares.append(meter.share())
        clean += not shares[-1] > ROUND_OTHER_MAX  # NaN (no /proc): clean
    used = [not s > ROUND_OTHER_MAX for s in shares]
    if clean < 3:
        used = [True] * len(shares)
    if len(shares) > clean:
        log(f"  {len(shares) - clean} of {len(shares)} rounds disturbed by other processes")
    return {"other_cpu_share": shares, "used": used, "max_other_cpu_share": ROUND_OTHER_MAX}


def bench_workload(
    workload: str, names: list[str], settings: Settings, log: Callable[[str], None]
) -> dict[str, Any]:
    spec = peers.WORKLOADS[workload]
    data = peers.make_data(workload)
    n_check, tol = settings.check[workload]
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    out: dict[str, Any] = {"rows": {}, "skipped": skipped, "failed": failed}
    other_cpu = OtherCpu()
    with tempfile.TemporaryDirectory(prefix="symbp-bench-") as tmp:
        try:
            # Build and check one contender at a time: compilations never compete for the CPUs.
            for name in names:
                try:
                    worker = Worker(workload, name)
                except RuntimeError as exc:
                    failed[name] = str(exc)
                    log(f"  {name} FAILED to build:\n{exc}")
                    continue
                if "unavailable" in worker.hello:
                    skipped[name] = worker.hello["unavailable"]
                    worker.close()
                    continue
                row = Row(name, worker, build_s=worker.hello["build_s"])
                rows.append(row)
                try:
                    check = worker.ask("train", settings.gap_s, n=n_check)
                except RuntimeError as exc:
                    failed[name] = str(exc)
                    log(f"  {name} FAILED:\n{exc}")
                    rows.remove(row)
                    worker.close()
                    continue
                row.check_s, row.check_loss = check["seconds"], check["loss"]
            if not rows:
                return out

            # Agreement with the reference: PyTorch when present (symbp mirrors its updates).
            ref = next((r for r in rows if r.name == "torch"), rows[0])
            ref_params = ref.worker.params(tmp)
            diffs = {r.name: peers.max_rel_diff(r.worker.params(tmp), ref_params) for r in rows}

            accuracy: dict[str, float] = {}
            diffs_acc: dict[str, float] = {}
            if spec.loss == "ce" and spec.unit == "epoch":  # W2: accuracy after equal epochs
                more = settings.accuracy_epochs - n_check
                for r in rows:
                    if more > 0:
                        r.worker.ask("train", n=more)
                ref_params = ref.worker.params(tmp)
                for r in rows:
                    final = r.worker.params(tmp)
                    accuracy[r.name] = peers.train_accuracy(workload, final, data)
                    diffs_acc[r.name] = peers.max_rel_diff(final, ref_params)

            for r in rows:
                r.n_call = r.worker.ask("calibrate", settings.gap_s, target_s=settings.call_s)["n"]
            log(f"  timing {', '.join(f'{r.name} x{r.n_call}' for r in rows)} ...")
            out["rounds"] = time_rounds(rows, settings, log)
            infos = {r.name: r.worker.ask("info")["symbp_timings"] for r in rows}
        finally:
            for r in rows:
                r.worker.close()

    used = out["rounds"]["used"]
    for r in rows:
        q1, med, q3 = quartiles([t for t, ok in zip(r.times, used) if ok])
        res: dict[str, Any] = {
            "median_s": med,
            "q1_s": q1,
            "q3_s": q3,
            "min_s": min(r.times),
            "max_s": max(r.times),
            "times_s": r.times,  # every round; the statistics use out["rounds"]["used"] ones
            "units_per_call": r.n_call,
            "build_s": r.build_s,
            "check_s": r.check_s,
            "check_loss": r.check_loss,
            "agree": {
                "reference": ref.name,
                "units": n_check,
                "max_rel_diff": diffs[r.name],
                "tol": tol,
                "ok": diffs[r.name] <= tol,
            },
        }
        if r.name in accuracy:
            res["train_accuracy"] = accuracy[r.name]
            res["accuracy_epochs"] = settings.accuracy_epochs
            res["max_rel_diff_at_accuracy"] = diffs_acc[r.name]
        if infos[r.name] is not None:
            res["symbp_timings"] = infos[r.name]
        out["rows"][r.name] = res
    for base in ("torch", "jax_fori"):
        if base in out["rows"]:
            t_base = out["rows"][base]["median_s"]
            for res in out["rows"].values():
                res[f"speedup_vs_{base}"] = t_base / res["median_s"]
    out["spec"] = {
        "sizes": list(spec.sizes),
        "hidden": spec.hidden,
        "loss": spec.loss,
        "optimizer": spec.optimizer,
        "lr": spec.lr,
        "momentum": spec.momentum,
        "batch_size": spec.batch_size,
        "n_samples": len(data.x),
        "unit": spec.unit,
    }
    out["flops_per_unit"] = peers.step_flops(workload, input_grad=False)
    out["other_cpu_share"] = other_cpu.share()
    return out


# --------------------------------------------------------------------------------------------
# Compile times in a fresh process
# --------------------------------------------------------------------------------------------


def compile_child(workload: str) -> None:
    """Child process: imports, then build + first step of ``workload``; prints one JSON line."""
    import sklearn.datasets  # noqa: F401 -- make_data's import, kept out of the build time

    import symbp

    t_imports = time.perf_counter()
    params, data = peers.init_params(workload), peers.make_data(workload)
    x, y = data.batch(0)
    t_build = time.perf_counter()
    model, _ = symbp_model(workload, params)
    loss = model.step(x, y)
    t_first = time.perf_counter()
    result = {
        "imports_s": t_imports - _T_START,
        "data_s": t_build - t_imports,
        "first_step_s": t_first - t_build,
        "loss": loss,
        "symbp_timings": model.timings,
        "cache_entries": symbp.cache_info()["entries"],
    }
    print(json.dumps(result))


def run_child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run this script with ``args`` in a fresh process; its last stdout line is JSON."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, SCRIPT, *args], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    return result


def bench_compile(workload: str, settings: Settings, log: Callable[[str], None]) -> dict:
    """Cold (empty symbp cache) and warm (that cache filled) builds in fresh processes."""
    runs: dict[str, list[dict[str, Any]]] = {"cold": [], "warm": [], "fully_cold": []}
    child = ["--compile-child", workload]
    other_cpu = OtherCpu()
    with tempfile.TemporaryDirectory(prefix="symbp-bench-") as tmp:
        env = dict(os.environ)
        for i in range(settings.cold_runs):
            env = {**os.environ, "SYMBP_CACHE_DIR": os.path.join(tmp, f"cache{i}")}
            runs["cold"].append(run_child(child, env))
        for _ in range(settings.warm_runs):  # warm: the last cold run's cache
            runs["warm"].append(run_child(child, env))
        if settings.fully_cold:  # Numba's cache of symbp's own helpers emptied as well
            env = {
                **os.environ,
                "SYMBP_CACHE_DIR": os.path.join(tmp, "full"),
                "NUMBA_CACHE_DIR": os.path.join(tmp, "numba"),
            }
            runs["fully_cold"].append(run_child(child, env))
    out: dict[str, Any] = {"workload": workload, "other_cpu_share": other_cpu.share()}
    for kind, results in runs.items():
        if results:
            out[kind] = {
                "first_step_s": statistics.median(r["first_step_s"] for r in results),
                "imports_s": statistics.median(r["imports_s"] for r in results),
                "process_wall_s": statistics.median(r["process_wall_s"] for r in results),
                "runs": results,
            }
            log(f"  {kind}: {out[kind]['first_step_s']:.2f} s to the first step")
    return out


# --------------------------------------------------------------------------------------------
# Matmul peak
# --------------------------------------------------------------------------------------------


def matmul_child(backend: str, n: int, repeats: int) -> None:
    """Child process: best float32 n^3 matmul rate of one backend; prints one JSON line."""
    if backend == "mkl":
        rate = mkl_matmul_rate(n, repeats)
        rates = {} if rate is None else {"mkl": rate}
    else:
        rates = peers.matmul_rates(n, repeats, backends=(backend,))
    print(json.dumps(rates))


def mkl_matmul_rate(n: int, repeats: int) -> float | None:
    """GFLOP/s of the gemm symbp calls, when symbp found the mkl wheel (else None)."""
    try:
        from symbp.compiler.lower import support
    except ImportError:
        return None
    if not getattr(support, "MKL", None) or not hasattr(support, "gemm_f32"):
        return None
    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    support.gemm_f32(a, False, b, False, out)  # compile or load; start MKL's threads
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        support.gemm_f32(a, False, b, False, out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def matmul_rates(settings: Settings, log: Callable[[str], None]) -> dict[str, float]:
    rates: dict[str, float] = {}
    for backend in MATMUL_BACKENDS:
        args = ["--matmul-child", backend, str(settings.matmul_n), str(settings.matmul_repeats)]
        try:
            rates.update(run_child(args))
        except RuntimeError as exc:
            log(f"  matmul {backend}: {exc}")
    rates.pop("process_wall_s", None)
    return rates


# --------------------------------------------------------------------------------------------
# The targets of issue 3
# --------------------------------------------------------------------------------------------


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of issue 3: what was measured and whether it is met (None: not measured)."""
    wl = results["workloads"]
    targets: list[dict[str, Any]] = []

    def rows(w: str) -> dict[str, Any]:
        return wl.get(w, {}).get("rows", {})

    def add(label: str, goal: str, measured: str | None, met: bool | None) -> None:
        targets.append({"target": label, "goal": goal, "measured": measured, "met": met})

    def speedup(w: str, row: str, base: str, goal: float, label: str) -> None:
        if row in rows(w) and base in rows(w):
            ratio = rows(w)[base]["median_s"] / rows(w)[row]["median_s"]
            add(label, f">= {goal:g}x", f"{fmt_ratio(ratio)}", ratio >= goal)
        else:
            add(label, f">= {goal:g}x", None, None)

    speedup("W1", "symbp_fit", "jax_fori", 1.0, "W1 compiled loop faster than JAX fori_loop")
    speedup("W1", "symbp_fit", "torch", 1500, "W1 compiled loop vs PyTorch eager")
    speedup("W1", "symbp_step", "torch", 50, "W1 step() from Python vs PyTorch eager")
    speedup("W5", "symbp_fit", "jax_fori", 1.0, "W5 compiled loop faster than JAX fori_loop")
    speedup("W5", "symbp_step", "torch", 50, "W5 step() from Python vs PyTorch eager")
    speedup("W2", "symbp_fit", "torch", 10, "W2 epoch vs PyTorch eager")
    speedup("W2", "symbp_fit", "jax_fori", 1.0, "W2 epoch faster than JAX fori_loop")
    speedup("W2", "symbp_fit", "jax_jit", 1.0, "W2 epoch faster than JAX jit")
    w2 = rows("W2")
    if "symbp_fit" in w2 and "torch" in w2:
        acc, acc_t = w2["symbp_fit"]["train_accuracy"], w2["torch"]["train_accuracy"]
        # "The same final accuracy": float32 trajectories may differ on a borderline sample,
        # so allow 3 of the 1797 samples.
        add(
            f"W2 training accuracy equals PyTorch's after {w2['torch']['accuracy_epochs']} epochs",
            f"{acc_t:.4f} +- 0.002",
            f"{acc:.4f}",
            abs(acc - acc_t) <= 0.002,
        )
    speedup("W3", "symbp_step", "torch", 1.1, "W3 step() vs PyTorch eager")
    speedup("W3", "symbp_fit", "torch", 1.1, "W3 compiled loop vs PyTorch eager")
    for w in WORKLOAD_NAMES:  # "symbp must be ahead of every peer"
        others = {k: v["median_s"] for k, v in rows(w).items() if k not in SYMBP_ROWS}
        if "symbp_fit" in rows(w) and others:
            t = rows(w)["symbp_fit"]["median_s"]
            best = min(others, key=lambda k: others[k])
            add(
                f"{w} compiled loop ahead of every peer",
                f"< fastest peer, {best} {fmt_time(others[best])}",
                f"{fmt_time(t)} ({fmt_ratio(others[best] / t)})",
                t < others[best],
            )
    comp = results.get("compile", {})
    for kind, limit in (("warm", 0.3), ("cold", 3.0)):
        if kind in comp:
            t = comp[kind]["first_step_s"]
            add(
                f"{comp['workload']} build + first step in a fresh process, {kind} cache",
                f"< {limit:g} s",
                f"{t:.3f} s",
                t < limit,
            )
    return targets


# --------------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------------


def fmt_time(s: float) -> str:
    """Three significant digits in a readable unit."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if s >= scale or unit == "ns":
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    raise AssertionError("unreachable")


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.3g}x" if r < 1000 else f"{r:.0f}x"


def describe(w: str) -> str:
    s = peers.WORKLOADS[w]
    opt = {"sgd": "SGD", "momentum": f"SGD momentum {s.momentum:g}", "adam": "Adam"}[s.optimizer]
    loss = {"half_sse_sigmoid": "half-SSE", "ce": "cross-entropy", "mse": "MSE"}[s.loss]
    sizes = "-".join(map(str, s.sizes))
    return f"{w}  {sizes} {s.hidden}, {loss}, {opt} lr {s.lr:g}, batch {s.batch_size}"


def print_report(results: dict[str, Any]) -> None:
    meta = results["meta"]
    load = meta["load_start"]
    print(
        f"symbp benchmark  {meta['date']}  {meta['cpus']} CPUs, {meta['threads']} threads per "
        f"peer, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start"
        f"{'  (quick mode)' if meta['quick'] else ''}"
    )
    print(f"  {meta['versions']}")
    print(
        f"  {meta['repeats']} rounds of one ~{meta['call_s'] * 1e3:.0f} ms call per peer, "
        f"{meta['gap_s'] * 1e3:.0f} ms apart; each peer in its own process"
    )
    rates = results.get("matmul_gflops")
    if rates:
        shown = ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
        print(
            f"  float32 {meta['matmul_n']}^3 matmul GFLOP/s: {shown} "
            f"(OPENBLAS_CORETYPE={meta['openblas_coretype']})"
        )

    head = (
        f"  {'peer':<11} {'median':>9} {'IQR (q1 - q3)':>21} {'min':>9} {'units/call':>10} "
        f"{'vs torch':>8} {'vs fori':>8}  agreement"
    )
    for w, res in results["workloads"].items():
        spec = peers.WORKLOADS[w]
        other = res.get("other_cpu_share", math.nan)
        busy = "" if math.isnan(other) else f"; other processes: {other:.0%} of the CPUs"
        print(f"\n{describe(w)}  -- time per {spec.unit}{busy}")
        print(head)
        for name, r in res["rows"].items():
            agree = r["agree"]
            extra = f"{'ok' if agree['ok'] else 'MISMATCH'} {agree['max_rel_diff']:.1e}"
            if agree["reference"] == name:
                extra = "reference"
            if "train_accuracy" in r:
                extra += f", acc {r['train_accuracy']:.4f}"
            if "peak_fraction" in r:
                extra += (
                    f", {r['gflops']:.0f} GFLOP/s = {r['peak_fraction']:.0%} of BLAS peak,"
                    f" {r['best_peak_fraction']:.0%} of best"
                )
            iqr = f"{fmt_time(r['q1_s'])} - {fmt_time(r['q3_s'])}"
            print(
                f"  {name:<11} {fmt_time(r['median_s']):>9} {iqr:>21} "
                f"{fmt_time(r['min_s']):>9} {r['units_per_call']:>10} "
                f"{fmt_ratio(r.get('speedup_vs_torch')):>8} "
                f"{fmt_ratio(r.get('speedup_vs_jax_fori')):>8}  {extra}"
            )
        for name, why in res["skipped"].items():
            print(f"  {name:<11} skipped: {why}")
        for name, why in res["failed"].items():
            print(f"  {name:<11} FAILED: {why.strip().splitlines()[-1]}")
        rows = list(res["rows"].values())
        if "rounds" in res:
            shares, used = res["rounds"]["other_cpu_share"], res["rounds"]["used"]
            print(
                f"  rounds: {sum(used)} used of {len(used)}; other processes took up to "
                f"{max(s for s, u in zip(shares, used) if u):.0%} of the CPUs in a used round"
            )
        if rows:
            n_check = rows[0]["agree"]["units"]
            note = f"  agreement: max rel. diff of the parameters after {n_check} {spec.unit}s"
            if "accuracy_epochs" in rows[0]:
                note += f"; acc: training accuracy after {rows[0]['accuracy_epochs']} epochs"
            print(note)

    comp = results.get("compile")
    if comp:
        other = comp.get("other_cpu_share", math.nan)
        busy = "" if math.isnan(other) else f"; other processes: {other:.0%} of the CPUs"
        print(f"\ncompile  {comp['workload']}: build + first step in a fresh process{busy}")
        for kind in ("cold", "warm", "fully_cold"):
            if kind in comp:
                c = comp[kind]
                print(
                    f"  {kind:<11} {c['first_step_s']:7.3f} s   (imports {c['imports_s']:.2f} s, "
                    f"whole process {c['process_wall_s']:.2f} s; median of {len(c['runs'])})"
                )
        print(
            "  cold: empty SYMBP_CACHE_DIR; warm: that cache filled; fully_cold: Numba's cache"
            " (NUMBA_CACHE_DIR) emptied too"
        )

    print("\ntargets (issue 3)")
    for t in results["targets"]:
        met = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        print(f"  {met} {t['target']}: {t['measured'] or '-'}  (goal {t['goal']})")
    load = meta["load_end"]
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    for warning in meta["warnings"]:
        print(f"warning: {warning}")


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_list(text: str, known: tuple[str, ...], what: str) -> list[str]:
    names: list[str] = []
    for name in (s.strip() for s in text.split(",") if s.strip()):
        for n in list(SYMBP_ROWS) if name == "symbp" and what == "peer" else [name]:
            if n not in known:
                raise SystemExit(f"unknown {what} {n!r}; known: {', '.join(known)}")
            if n not in names:
                names.append(n)
    return names


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"python {platform.python_version()}"]
    for pkg in ("symbp", "numpy", "numba", "torch", "jax"):
        with contextlib.suppress(PackageNotFoundError):
            parts.append(f"{pkg} {version(pkg)}")
    try:  # which BLAS symbp calls: "blas=mkl" or "blas=openblas" (imports symbp: ~1 s)
        out = subprocess.run(
            [sys.executable, "-c", "from symbp import cache; print(cache.versions())"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        parts.append("symbp " + out.stdout.split()[-1])
    except (subprocess.CalledProcessError, IndexError):
        pass
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Time symbp and its peers on the workloads of issue 3 (see the docstring)."
    )
    ap.add_argument("--quick", action="store_true", help="few short repeats (the smoke test)")
    ap.add_argument("--workloads", default="W1,W2,W3,W5,compile",
                    help="comma list of W1,W2,W3,W5,compile (default: all)")  # fmt: skip
    ap.add_argument("--peers", default="symbp,torch,jax_jit,jax_fori,numba_hand",
                    help="comma list; symbp = symbp_fit,symbp_step (default: all)")  # fmt: skip
    ap.add_argument("--repeats", type=int, help="timed rounds (default 15; quick 3)")
    ap.add_argument("--call-ms", type=float, help="target ms per timed call (default 50; quick 5)")
    ap.add_argument("--gap-ms", type=float, help="pause before each timed call (default 250)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the JSON")
    ap.add_argument("--worker", nargs=2, metavar=("W", "PEER"), help=argparse.SUPPRESS)
    ap.add_argument("--compile-child", metavar="W", help=argparse.SUPPRESS)
    ap.add_argument("--matmul-child", nargs=3, metavar=("B", "N", "R"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    # The child processes of a run.
    if args.worker:
        worker_main(*args.worker)
        return 0
    if args.compile_child:
        compile_child(args.compile_child)
        return 0
    if args.matmul_child:
        backend, n, repeats = args.matmul_child
        matmul_child(backend, int(n), int(repeats))
        return 0

    settings = make_settings(args.quick, args.repeats, args.call_ms, args.gap_ms)
    workloads = parse_list(args.workloads, (*WORKLOAD_NAMES, "compile"), "workload")
    names = parse_list(args.peers, ALL_CONTENDERS, "peer")
    names = [n for n in ALL_CONTENDERS if n in names]  # table order

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    warnings: list[str] = []
    load_start = os.getloadavg()
    if load_start[0] > LOAD_WARN:
        warnings.append(
            f"the 1-minute load average was {load_start[0]:.2f} at the start (> {LOAD_WARN}): "
            "other processes are using the CPUs, timings are unreliable"
        )
        log(f"warning: {warnings[-1]}")
    t_run = time.perf_counter()
    results: dict[str, Any] = {"workloads": {}}
    rates: dict[str, float] = {}
    if "W3" in workloads:
        log("matmul peak ...")
        rates = matmul_rates(settings, log)
    loads = {}
    for w in (w for w in WORKLOAD_NAMES if w in workloads):
        log(f"{w}: building and checking {', '.join(names)} ...")
        res = results["workloads"][w] = bench_workload(w, names, settings, log)
        loads[w] = os.getloadavg()[0]
        rounds = res.get("rounds")
        if rounds:
            shares, used = rounds["other_cpu_share"], rounds["used"]
            clean = sum(not s > ROUND_OTHER_MAX for s in shares)
            if clean < settings.repeats:
                warnings.append(
                    f"{w}: only {clean} of {len(shares)} timing rounds were free of other "
                    f"processes; the statistics use {sum(used)} rounds"
                )
                log(f"warning: {warnings[-1]}")

    if rates:
        if not settings.quick:  # best of before and after the workloads: the host is noisy
            log("matmul peak again ...")
            for k, v in matmul_rates(settings, log).items():
                rates[k] = max(v, rates.get(k, 0.0))
        blas = [v for k, v in rates.items() if k in BLAS_PEAK_BACKENDS]
        blas_peak, best_peak = (max(blas) if blas else math.nan), max(rates.values())
        results["peak_gflops"] = {"blas": blas_peak, "best": best_peak}
        w3 = results["workloads"].get("W3", {})
        for r in w3.get("rows", {}).values():
            r["gflops"] = w3["flops_per_unit"] / r["median_s"] / 1e9
            r["peak_fraction"] = r["gflops"] / blas_peak
            r["best_peak_fraction"] = r["gflops"] / best_peak
    results["matmul_gflops"] = rates

    if "compile" in workloads:
        log("compile: W2 in fresh processes, cold and warm cache ...")
        comp = results["compile"] = bench_compile("W2", settings, log)
        if comp["other_cpu_share"] > OTHER_CPU_WARN:
            warnings.append(
                f"other processes used {comp['other_cpu_share']:.0%} of the CPUs during the "
                "compile measurement: its timings are disturbed"
            )

    load_end = os.getloadavg()
    problems = [
        f"{w} {name} disagrees with the reference"
        for w, res in results["workloads"].items()
        for name, r in res["rows"].items()
        if not r["agree"]["ok"]
    ] + [f"{w} {name} failed" for w, res in results["workloads"].items() for name in res["failed"]]
    warnings += problems
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "argv": sys.argv[1:] if argv is None else argv,
        "quick": settings.quick,
        "repeats": settings.repeats,
        "call_s": settings.call_s,
        "gap_s": settings.gap_s,
        "cpus": os.cpu_count(),
        "threads": peers.N_THREADS,
        "load_start": load_start,
        "load_after_workload": loads,
        "load_end": load_end,
        "run_s": time.perf_counter() - t_run,
        "matmul_n": settings.matmul_n,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", "<unset>"),
        "versions": versions(),
        "warnings": warnings,
    }
    results["targets"] = evaluate_targets(results)

    print_report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"JSON: {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
