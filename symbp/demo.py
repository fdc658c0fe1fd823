"""``symbp demo``: symbp's main job on built-in defaults, with nothing to download.

1. The backpropagation tutorial's 2-2-2 sigmoid network: its derived gradient formulas, tensor
   level and scalar level (∂E/∂w5), and one SGD step.
2. A gradient check of that network against central finite differences.
3. An MLP 64-128-10 trained on the bundled digits, compiled to Numba, with accuracy and timings:
   the compile (each program: found in the cache or built, and Numba's machine code loaded or
   compiled) before the training clock starts, so "training" is training alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

import symbp
from symbp import nn


class TutorialNet(nn.Module):
    """The 2-2-2 sigmoid network of the classic worked backpropagation example."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.sigmoid = nn.Sigmoid()
        self.linear2 = nn.Linear(2, 2)
        self.load_state_dict(
            {
                "linear1.weight": np.array([[0.15, 0.20], [0.25, 0.30]]),
                "linear1.bias": np.array([0.35, 0.35]),
                "linear2.weight": np.array([[0.40, 0.45], [0.50, 0.55]]),
                "linear2.bias": np.array([0.60, 0.60]),
            }
        )

    def forward(self, x):
        return self.sigmoid(self.linear2(self.sigmoid(self.linear1(x))))


def half_sse(out, target):
    return ((out - target) ** 2).sum() / 2


def _title(text: str) -> None:
    print(f"\n== {text} " + "=" * max(0, 74 - len(text)))


def main(epochs: int = 20, quiet: bool = False) -> int:
    _title("1. The tutorial 2-2-2 network: derived gradient formulas")
    net = TutorialNet()
    x = symbp.tensor([[0.05, 0.10]])
    t = symbp.tensor([[0.01, 0.99]])
    loss = half_sse(net(x), t)
    print(f"E = {loss.item():.9f}")
    f = symbp.formulas(loss)
    print(f)
    print()
    print(f.scalar("w5"))
    loss.backward()
    symbp.optim.SGD(net.parameters(), lr=0.5).step()
    print(f"\nafter one SGD step (lr 0.5): w5 = {net.linear2.weight._data[0, 0]:.8f}")

    _title("2. Gradient check: symbolic against central differences (float64)")
    report = symbp.gradcheck(TutorialNet(), half_sse, [[0.05, 0.10]], [[0.01, 0.99]])
    print(report)

    _title("3. Training an MLP 64-128-10 on digits, compiled to Numba")
    train_digits(epochs, quiet)
    return 0 if report.ok else 1


def _machine_code(dispatcher: Any, first_call: Callable[[], Any]) -> tuple[str, float]:
    """Make Numba's code for a program ready by calling it once: what happened, and how long.

    Numba compiles on a function's first call, or loads the code it cached on disk then."""
    in_memory = bool(dispatcher.overloads)  # compiled or loaded earlier in this process
    start = time.perf_counter()
    first_call()
    took = time.perf_counter() - start
    if in_memory:
        return "already loaded in this process", took
    loaded = sum(dispatcher.stats.cache_hits.values()) > 0
    return ("loaded from Numba's cache" if loaded else "compiled by Numba"), took


def _program_line(name: str, found: bool, build_s: float, machine: str, machine_s: float) -> str:
    """``  training program: traced, found in the cache 0.05 s; machine code compiled by Numba
    3.20 s`` (one line)."""
    source = "traced, found in the cache" if found else "traced, derived and generated"
    return f"  {name}: {source} {build_s:.2f} s; machine code {machine} {machine_s:.2f} s"


def train_digits(epochs: int = 20, quiet: bool = False) -> dict[str, Any]:
    """Section 3: compile (timed and reported per program), then train on the clock.

    Returns what it printed: ``compile_s``, ``train_s``, ``programs`` (name, found in the
    cache, what Numba did), ``accuracy``, ``history``.
    """
    from symbp.datasets import load_digits, standardize, train_test_split

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    X_train, mean, std = standardize(X_train)
    X_test, _, _ = standardize(X_test, mean, std)
    X_train, X_test = X_train.astype(np.float32), X_test.astype(np.float32)
    symbp.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    model = symbp.compile(mlp, nn.CrossEntropyLoss(), symbp.optim.Adam(mlp.parameters(), lr=1e-3))

    # Compile everything training uses before the clock starts: the training program (step,
    # loss, the validation loss) and the inference program (predict, the validation accuracy
    # that fit computes after each epoch, which would otherwise compile inside epoch 1).
    print("compiling (before the training clock):")
    programs = []
    compile_start = start = time.perf_counter()
    model.build(X_train[:32], y_train[:32])
    build_s = time.perf_counter() - start
    found = bool(model.timings["cache_hit"])
    machine, machine_s = _machine_code(
        model._train.mod.train,  # type: ignore[union-attr]
        lambda: model.evaluate(X_test[:32], y_test[:32], metrics=()),  # no update
    )
    print(_program_line("training program", found, build_s, machine, machine_s))
    programs.append(("training program", found, machine))
    entries = symbp.cache_info()["entries"]
    start = time.perf_counter()
    predict_mod = model._predict_program(X_test[:1]).module
    build_s = time.perf_counter() - start
    found = symbp.cache_info()["entries"] == entries  # nothing new written: it was there
    machine, machine_s = _machine_code(predict_mod.predict, lambda: model.predict(X_test[:1]))
    print(_program_line("inference program", found, build_s, machine, machine_s))
    programs.append(("inference program", found, machine))
    compile_s = time.perf_counter() - compile_start
    n_found = sum(f for _, f, _ in programs)
    print(
        f"compile {compile_s:.2f} s: {n_found} of {len(programs)} programs found in the cache, "
        f"{len(programs) - n_found} derived and generated"
    )

    start = time.perf_counter()
    history = model.fit(
        X_train,
        y_train,
        epochs=epochs,
        batch_size=32,
        seed=0,
        validation_data=(X_test, y_test),
        verbose=not quiet,
    )
    train_s = time.perf_counter() - start
    acc = model.evaluate(X_test, y_test)["accuracy"]
    print(
        f"test accuracy {acc:.2%} after {epochs} epochs; final training loss "
        f"{history['loss'][-1]:.4f}"
    )
    print(
        f"training {train_s:.2f} s ({train_s / max(epochs, 1) * 1e3:.2f} ms per epoch of "
        f"{len(X_train)} samples, validation on {len(X_test)} after each; no compiling)"
    )
    return {
        "compile_s": compile_s,
        "train_s": train_s,
        "programs": programs,
        "accuracy": acc,
        "history": history,
    }
