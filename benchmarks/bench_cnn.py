#!/usr/bin/env python
"""CNN workloads of issue 4: symbp compiled against PyTorch eager, each in its own processes.

    W4      the tutorial CIFAR CNN (symbp.models.tutorial_cnn), batch 32 of random 3x32x32
            inputs, cross-entropy, SGD lr 0.001: time per training step (the same batch)
    digits  the digits CNN (symbp.models.digits_cnn, dropout included) on scikit-learn's
            digits (1437 training images of 1x8x8), Adam lr 0.005, batch 32, shuffled: time
            per epoch (symbp: one ``fit`` epoch, all of it in one compiled call)

    python benchmarks/bench_cnn.py [--workloads W4,digits] [--processes 3] [--rounds 7]

Method: a worker process per contender and run (``--worker``), so PyTorch's OpenMP pool and
Numba's threads never share a process (in one process both run several times slower). Workers
of the two contenders alternate, ``--processes`` each: this host switches between a fast and
a slow mode from one process to the next (seen: symbp 7.4 or 13 ms, PyTorch 10.3 or 15.6 ms
per W4 step), so one process each would compare modes, not libraries. Each worker warms up
(compiles), then times ``--rounds`` rounds and prints their median; the table shows the median
over processes and the spread, and the ratio PyTorch / symbp (above 1: symbp is faster).
Both start from the same parameters (drawn here with NumPy); W4's losses after the warm-up
steps must agree (float32), which the script checks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

THREADS = "2"
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, THREADS)

WORKLOADS = {
    "W4": {"unit": "step", "steps": 10, "target": 1.0},
    "digits": {"unit": "epoch", "steps": 1, "target": 3.0},
}


def data(workload: str) -> tuple[np.ndarray, np.ndarray]:
    if workload == "W4":
        rng = np.random.default_rng(0)
        return rng.normal(size=(32, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 32)
    from symbp.datasets import load_digits, train_test_split

    X, y = load_digits()
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.2, random_state=0)
    return X_train, y_train


def init(net: Any) -> None:
    """The same parameters in either library: PyTorch's default init drawn from NumPy."""
    rng = np.random.default_rng(1)
    for _, p in sorted(net.named_parameters(), key=lambda item: item[0]):
        shape = tuple(p.shape)
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        value = rng.uniform(-1, 1, shape).astype(np.float32) / np.sqrt(fan_in)
        if type(p).__module__.startswith("torch"):
            import torch

            with torch.no_grad():
                p.copy_(torch.from_numpy(value))
        else:  # symbp's Parameter has copy_ too (under symbp.no_grad); .data is plainer
            p.data = value


def symbp_runner(workload: str) -> Callable[[], float]:
    import symbp
    from symbp import models, nn

    X, y = data(workload)
    if workload == "W4":
        net = models.tutorial_cnn(nn)
        init(net)
        opt = symbp.optim.SGD(net.parameters(), lr=0.001)
        model = symbp.compile(net, nn.CrossEntropyLoss(), opt)
        return lambda: model.step(X, y)
    net = models.digits_cnn(nn)
    init(net)
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.Adam(net.parameters(), lr=0.005))
    epoch = [0]

    def run() -> float:
        epoch[0] += 1
        return float(model.fit(X, y, epochs=1, batch_size=32, seed=epoch[0])["loss"][-1])

    return run


def torch_runner(workload: str) -> Callable[[], float]:
    import torch

    from symbp import models

    torch.set_num_threads(int(THREADS))
    X, y = data(workload)
    tx, ty = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()
    if workload == "W4":
        net = models.tutorial_cnn(torch.nn)
        init(net)
        opt = torch.optim.SGD(net.parameters(), lr=0.001)

        def step() -> float:
            opt.zero_grad()
            loss = loss_fn(net(tx), ty)
            loss.backward()
            opt.step()
            return float(loss)

        return step
    net = models.digits_cnn(torch.nn)
    init(net)
    opt = torch.optim.Adam(net.parameters(), lr=0.005)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> float:
        total = 0.0
        for idx in torch.randperm(len(tx), generator=gen).split(32):
            opt.zero_grad()
            loss = loss_fn(net(tx[idx]), ty[idx])
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        return total / len(tx)

    return epoch


def worker(contender: str, workload: str, rounds: int) -> None:
    run = (symbp_runner if contender == "symbp" else torch_runner)(workload)
    steps = WORKLOADS[workload]["steps"]
    t0 = time.perf_counter()
    losses = [run() for _ in range(3)]  # warm-up: compile, thread pools; agreement check
    warm = time.perf_counter() - t0
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(steps):
            run()
        times.append((time.perf_counter() - t0) / steps * 1e3)
    print(json.dumps({"median_ms": statistics.median(times), "losses": losses, "warm_s": warm}))


def spawn(contender: str, workload: str, rounds: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", contender, "--workloads", workload]
    proc = subprocess.run([*cmd, "--rounds", str(rounds)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{contender} {workload} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", default="W4,digits")
    ap.add_argument("--processes", type=int, default=3, help="worker processes per contender")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds per worker")
    ap.add_argument("--worker", choices=["symbp", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.workloads, args.rounds)
        return
    try:
        import torch  # noqa: F401

        contenders = ["symbp", "torch"]
    except ImportError:
        contenders = ["symbp"]
        print("PyTorch is not installed: symbp alone, no ratio")
    print(f"load average {os.getloadavg()[0]:.2f} (other busy processes distort 2-core timings)")
    for workload in args.workloads.split(","):
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in contenders}
        for _ in range(args.processes):
            for c in contenders:
                runs[c].append(spawn(c, workload, args.rounds))
        unit = WORKLOADS[workload]["unit"]
        med = {}
        for c, rs in runs.items():
            ms = [r["median_ms"] for r in rs]
            med[c] = statistics.median(ms)
            print(
                f"{workload:7s} {c:6s} {med[c]:9.2f} ms/{unit}  per process: "
                + " ".join(f"{m:.2f}" for m in ms)
                + f"  (first process warm-up {rs[0]['warm_s']:.1f} s)"
            )
        if "torch" in med:
            ratio = med["torch"] / med["symbp"]
            target = WORKLOADS[workload]["target"]
            status = "met" if ratio >= target else "missed"
            print(f"{workload:7s} PyTorch / symbp: {ratio:.2f}x (target >= {target}x: {status})")
            if workload == "W4":
                a, b = runs["symbp"][0]["losses"], runs["torch"][0]["losses"]
                agree = np.allclose(a, b, rtol=1e-4)
                print(f"{workload:7s} losses after 1-3 steps agree: {agree} ({a} vs {b})")


if __name__ == "__main__":
    main()
