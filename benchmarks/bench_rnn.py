#!/usr/bin/env python
"""W6 of issue 17: a character-LSTM training step, symbp compiled against PyTorch eager.

    W6      2-layer LSTM (hidden 128) over one-hot characters (vocabulary 65), batch 32,
            sequence 64, a linear head, cross-entropy over every position, SGD with momentum:
            time per training step (the same batch), float32

    python benchmarks/bench_rnn.py [--small] [--rounds 5] [--threads 2]

``--small`` (batch 8, sequence 8, hidden 16, 1 layer) is for a quick look. Each layer is one
``scan`` loop in symbp's program, so its first step (trace, derive, compile: about 40 s on a
2-core machine) does not grow with the sequence length (docs/guides/recurrent.md).

Method: one run, a worker process per contender (``--worker``), so PyTorch's OpenMP pool and
Numba's threads never share a process. Each worker builds the model from the same NumPy
weights, times its first step (symbp: build + compile), warms up, then times ``--rounds``
rounds of steps and prints their median. The table shows both, the ratio PyTorch / symbp
(above 1: symbp is faster), the CPU model and the load average, since a shared machine's
numbers are only "under load".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
from machine import cpu_model  # benchmarks/machine.py, beside this script

SIZES = {
    "full": {"batch": 32, "seq": 64, "hidden": 128, "layers": 2, "vocab": 65},
    "small": {"batch": 8, "seq": 8, "hidden": 16, "layers": 1, "vocab": 65},
}
LR, MOMENTUM = 0.1, 0.9


def weights(size: dict) -> dict[str, np.ndarray]:
    """PyTorch's parameter names and shapes, drawn once from NumPy for both contenders."""
    import torch

    net = build(torch.nn, size)
    rng = np.random.default_rng(0)
    bound = 1 / np.sqrt(size["hidden"])
    return {
        k: rng.uniform(-bound, bound, tuple(v.shape)).astype(np.float32)
        for k, v in net.state_dict().items()
    }


def build(nn: Any, size: dict) -> Any:
    vocab, hidden = size["vocab"], size["hidden"]

    class CharLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(vocab, hidden, num_layers=size["layers"], batch_first=True)
            self.head = nn.Linear(hidden, vocab)

        def forward(self, x: Any) -> Any:
            out, _ = self.lstm(x)
            return self.head(out).reshape(-1, vocab)

    return CharLSTM()


def data(size: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    ids = rng.integers(0, size["vocab"], (size["batch"], size["seq"] + 1))
    x = np.eye(size["vocab"], dtype=np.float32)[ids[:, :-1]]
    return x, ids[:, 1:].astype(np.int64)


def symbp_step(size: dict) -> Any:
    import symbp
    from symbp import nn

    net = build(nn, size)
    net.load_state_dict(weights(size))
    ce = nn.CrossEntropyLoss()
    opt = symbp.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    model = symbp.compile(net, lambda out, y: ce(out, y.reshape(-1)), opt)
    x, y = data(size)
    return lambda: model.step(x, y)


def torch_step(size: dict) -> Any:
    import torch

    net = build(torch.nn, size)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights(size).items()})
    ce = torch.nn.CrossEntropyLoss()
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=MOMENTUM)
    x, y = (torch.from_numpy(a) for a in data(size))

    def step() -> float:
        opt.zero_grad()
        loss = ce(net(x), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    return step


def worker(name: str, size: dict, rounds: int) -> None:
    step = symbp_step(size) if name == "symbp" else torch_step(size)
    t0 = time.perf_counter()
    first_loss = step()
    first_s = time.perf_counter() - t0
    for _ in range(2):
        step()
    per_round = 5
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(per_round):
            step()
        times.append((time.perf_counter() - t0) / per_round)
    result = {"first_s": first_s, "step_s": statistics.median(times), "loss": first_loss}
    print(json.dumps(result))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="batch 8, seq 8, hidden 16, 1 layer")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--worker", choices=["symbp", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = SIZES["small" if args.small else "full"]
    if args.worker:
        worker(args.worker, size, args.rounds)
        return
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = args.threads
    results = {}
    for name in ("torch", "symbp"):
        cmd = [sys.executable, __file__, "--worker", name, "--rounds", str(args.rounds)]
        if args.small:
            cmd.append("--small")
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"{name} worker failed:\n{out.stderr}")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"W6 char-LSTM training step, {size} (float32, {args.threads} threads)")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; load average {load:.1f}", end="")
    print(" (a shared, loaded machine: numbers under load)" if load > 1.5 else "")
    print(f"{'':10}{'first step':>14}{'per step':>14}{'loss':>12}")
    for name, r in results.items():
        print(f"{name:10}{r['first_s']:13.2f}s{1e3 * r['step_s']:12.2f}ms{r['loss']:12.5f}")
    ratio = results["torch"]["step_s"] / results["symbp"]["step_s"]
    print(f"PyTorch eager / symbp per step: {ratio:.2f}x (above 1: symbp faster; target 1.5x)")


if __name__ == "__main__":
    main()
