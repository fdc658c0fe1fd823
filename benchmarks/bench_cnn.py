#!/usr/bin/env python
"""W4 (issue 4): the tutorial CIFAR CNN, batch 32 of 3x32x32 random inputs, cross-entropy, SGD
lr 0.001: time per training step, symbp compiled vs PyTorch eager, in the same run.

    python benchmarks/bench_cnn.py [--steps N] [--repeats R]

symbp is timed first, before torch is imported: in one process PyTorch's OpenMP pool and
Numba's threads fight over the cores (see bench.py). Prints the median ms per step of each and
their ratio (PyTorch time / symbp time: above 1 means symbp is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import symbp
from symbp import nn
from symbp.models import tutorial_cnn


def timed(step, steps: int, repeats: int) -> float:
    """Median milliseconds per call of ``step`` over ``repeats`` rounds of ``steps`` calls."""
    step()  # warm-up (JIT compile, thread pools)
    rounds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rounds.append((time.perf_counter() - t0) / steps * 1e3)
    return statistics.median(rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 32)

    symbp.manual_seed(0)
    net = tutorial_cnn(nn)
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.001))
    t0 = time.perf_counter()
    model.build(x, y)
    print(f"symbp compile (trace, lower, Numba or cache): {time.perf_counter() - t0:.1f} s")
    ours = timed(lambda: model.step(x, y), args.steps, args.repeats)
    print(f"symbp compiled step: {ours:8.2f} ms")

    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: no ratio")
        return
    tnet = tutorial_cnn(torch.nn)
    opt = torch.optim.SGD(tnet.parameters(), lr=0.001)
    tx, ty = torch.tensor(x), torch.tensor(y)
    loss_fn = torch.nn.CrossEntropyLoss()

    def torch_step() -> None:
        opt.zero_grad()
        loss_fn(tnet(tx), ty).backward()
        opt.step()

    theirs = timed(torch_step, args.steps, args.repeats)
    print(f"PyTorch eager step:  {theirs:8.2f} ms")
    print(f"ratio (PyTorch / symbp): {theirs / ours:.2f}x (target >= 1)")


if __name__ == "__main__":
    main()
