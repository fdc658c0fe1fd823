#!/usr/bin/env python
"""Sequence workloads of issue 17, symbp compiled against PyTorch eager in the same run.

    W8  makemore MLP (examples/makemore_mlp.py: Embedding(27, 10) -> Flatten -> Linear(30,
        200) -> tanh -> Linear(200, 27)), SGD, batch 32: time per epoch over the generated
        word list (symbp: one compiled ``fit`` call an epoch; PyTorch: its training loop).
        Issue target: >= 10x PyTorch eager.
    W7  small GPT (examples/small_gpt.py), AdamW, batch 16, context 64, 4 layers, 4 heads,
        width 128: time per training step (``--small``: 2 layers, width 64, context 32).
        Issue target: >= 1.2x PyTorch eager.

    python benchmarks/bench_sequence.py [--small] [--quick] [--rounds 5] [--only w8|w7]

float32, 2 threads (OMP/MKL/NUMBA_NUM_THREADS and torch.set_num_threads) as the other
benchmarks. The first call of each symbp program compiles it: that is timed separately
(the compile) and left out of the medians. The CPU model and the load average are printed:
this host is shared and loaded by other engineers, so the numbers are 'under load'.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

THREADS = "2"
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, THREADS)

import numpy as np  # noqa: E402
from machine import cpu_model  # noqa: E402 (benchmarks/machine.py, beside this script)

ROOT = Path(__file__).resolve().parents[1]


def example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def copy_weights(t_net: Any, s_net: Any) -> None:
    s_params = dict(s_net.named_parameters())
    for name, p in t_net.named_parameters():
        s_params[name].data = p.detach().numpy().copy()


def median_time(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def w8(rounds: int, quick: bool) -> tuple[float, float, float]:
    import torch

    import symbp
    from symbp import nn

    ex = example("makemore_mlp")
    x, y = ex.dataset(ex.make_words(200 if quick else 2000))
    torch.manual_seed(0)
    t_net = ex.build(torch.nn)
    s_net = ex.build(nn)
    copy_weights(t_net, s_net)
    model = symbp.compile(s_net, nn.CrossEntropyLoss(), symbp.optim.SGD(s_net.parameters(), 0.1))
    t = time.perf_counter()
    model.fit(x, y, epochs=1, batch_size=32, seed=0, verbose=0)  # compiles
    compile_s = time.perf_counter() - t
    s_epoch = median_time(
        lambda: model.fit(x, y, epochs=1, batch_size=32, seed=0, verbose=0), rounds
    )
    t_opt = torch.optim.SGD(t_net.parameters(), lr=0.1)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(0)

    def torch_epoch() -> None:
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), 32):
            b = order[i : i + 32]
            t_opt.zero_grad()
            torch.nn.functional.cross_entropy(t_net(xt[b]), yt[b]).backward()
            t_opt.step()

    torch_epoch()
    t_epoch = median_time(torch_epoch, rounds)
    return s_epoch, t_epoch, compile_s


def w7(rounds: int, small: bool, quick: bool) -> tuple[float, float, float, str]:
    import torch

    import symbp
    import symbp.nn.functional as F
    from symbp import nn

    ex = example("small_gpt")
    chars = ex.vocabulary(ex.make_text(400))
    data = ex.encode(ex.make_text(400), chars)
    if quick:
        block, n_layer, n_head, n_embd, batch = 8, 1, 2, 16, 4
    elif small:
        block, n_layer, n_head, n_embd, batch = 32, 2, 4, 64, 16
    else:
        block, n_layer, n_head, n_embd, batch = 64, 4, 4, 128, 16
    desc = f"batch {batch}, context {block}, {n_layer} layers, {n_head} heads, width {n_embd}"
    torch.manual_seed(0)
    t_net = ex.build(
        torch, torch.nn, torch.nn.functional, len(chars), block, n_layer, n_head, n_embd
    )
    s_net = ex.build(symbp, nn, F, len(chars), block, n_layer, n_head, n_embd)
    copy_weights(t_net, s_net)
    x, y = next(iter(ex.batches(data, block, batch, 1)))
    model = symbp.compile(s_net, ex.lm_loss(symbp, F), symbp.optim.AdamW(s_net.parameters()))
    t = time.perf_counter()
    model.step(x, y)
    compile_s = time.perf_counter() - t
    s_step = median_time(lambda: model.step(x, y), rounds)
    t_opt = torch.optim.AdamW(t_net.parameters())
    t_loss = ex.lm_loss(torch, torch.nn.functional)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def torch_step() -> None:
        t_opt.zero_grad()
        t_loss(t_net(xt), yt).backward()
        t_opt.step()

    torch_step()
    t_step = median_time(torch_step, rounds)
    return s_step, t_step, compile_s, desc


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--small", action="store_true", help="W7 at 2 layers, width 64, context 32")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    p.add_argument("--only", choices=["w8", "w7"], default=None)
    args = p.parse_args()
    import torch

    torch.set_num_threads(int(THREADS))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; threads {THREADS}; load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"
    )
    print("NOTE: this host is shared with other engineers' jobs: these numbers are under load")
    if args.only in (None, "w8"):
        s, t, c = w8(args.rounds, args.quick)
        print(
            f"W8 makemore MLP, per epoch: symbp {s * 1e3:.1f} ms, PyTorch eager "
            f"{t * 1e3:.1f} ms, ratio {t / s:.2f}x (target >= 10x); compile {c:.1f} s"
        )
    if args.only in (None, "w7"):
        s, t, c, desc = w7(args.rounds, args.small, args.quick)
        print(
            f"W7 small GPT step ({desc}): symbp {s * 1e3:.1f} ms, PyTorch eager "
            f"{t * 1e3:.1f} ms, ratio {t / s:.2f}x (target >= 1.2x); compile {c:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
