#!/usr/bin/env python
"""Data-parallel training on MPI (issue 18): what the allreduce costs a W3 training step.

    W3   784-512-512-10 ReLU MLP, mean cross-entropy, SGD momentum 0.9, float32, global
         batch 128: the time of one ``step`` (forward, backward, allreduce, update)

Contenders, each in its own processes, alternating: one process with 2 Numba threads
(``single``), and ``mpiexec -n 2`` with 1 thread per rank (``mpi``: each rank 64 rows, the
gradients summed inside the compiled step). Also timed in the MPI run: the allreduce alone
on a block of W3's gradient size (``MPI_Allreduce`` from Python, in place), and the bytes
each rank sends per step (4 bytes per parameter, plus the loss). The table prints the CPU
model and the load average; on a shared host, other processes distort both.

    python benchmarks/bench_distributed.py [--processes 3] [--steps 30]

``docs/guides/distributed.md`` turns these into a projection for 8-64 nodes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
from machine import cpu_model  # benchmarks/machine.py, beside this script

SIZES = (784, 512, 512, 10)
BATCH = 128


def worker(kind: str, steps: int) -> None:
    import symbp
    from symbp import nn, optim

    distributed = kind == "mpi"
    if distributed:
        import symbp.distributed as dist

        dist.init()
    symbp.manual_seed(0)
    layers: list = []
    for i, (a, b) in enumerate(itertools.pairwise(SIZES)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(SIZES) - 2 else [])
    net = nn.Sequential(*layers)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    model = symbp.compile(net, nn.CrossEntropyLoss(), opt, distributed=distributed)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
    y = rng.integers(0, SIZES[-1], BATCH)
    for _ in range(3):
        model.step(x, y)  # compile, warm the pools
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.step(x, y)
        times.append(time.perf_counter() - t0)
    out = {"step": statistics.median(times)}
    if distributed:
        n = sum(p.numel() for p in net.parameters())
        block = np.zeros(n + 2, np.float32)
        reduce_times = []
        for _ in range(steps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(block)
            reduce_times.append(time.perf_counter() - t0)
        out.update(allreduce=statistics.median(reduce_times), bytes=4 * (n + 2))
        if dist.rank() != 0:
            return
    print(json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--worker", choices=["single", "mpi"])
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.steps)
        return
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("no mpiexec: pip install mpi4py mpich")
    me = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps), "--worker"]
    env1 = dict(os.environ, NUMBA_NUM_THREADS="2", OMP_NUM_THREADS="2")
    env2 = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    res: dict[str, list[dict]] = {"single": [], "mpi": []}
    for _ in range(args.processes):  # alternate the contenders, one process (group) each
        for kind, cmd, env in (
            ("single", [*me, "single"], env1),
            ("mpi", [mpiexec, "-n", "2", *me, "mpi"], env2),
        ):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            res[kind].append(json.loads(done.stdout.strip().splitlines()[-1]))
    single = [r["step"] for r in res["single"]]
    mpi = [r["step"] for r in res["mpi"]]
    red = [r["allreduce"] for r in res["mpi"]]
    ms = 1e3
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    print(f"W3 step, global batch {BATCH}, float32; medians over {args.processes} processes")
    print("| contender | step (ms) | per process |")
    print("|---|---|---|")
    print(f"| 1 rank x 2 threads | {statistics.median(single) * ms:.2f} | "
          f"{', '.join(f'{t * ms:.2f}' for t in single)} |")  # fmt: skip
    print(f"| 2 ranks x 1 thread (mpiexec) | {statistics.median(mpi) * ms:.2f} | "
          f"{', '.join(f'{t * ms:.2f}' for t in mpi)} |")  # fmt: skip
    print(
        f"allreduce of the gradients alone: {statistics.median(red) * ms:.3f} ms, "
        f"{res['mpi'][0]['bytes'] / 1e6:.2f} MB per rank per step"
    )
    print(f"ratio (1x2 time / 2x1 time): {statistics.median(single) / statistics.median(mpi):.2f}")


if __name__ == "__main__":
    main()
