"""``symbp demo``: symbp's main job on built-in defaults, with nothing to download.

1. The backpropagation tutorial's 2-2-2 sigmoid network: its derived gradient formulas, tensor
   level and scalar level (∂E/∂w5), and one SGD step.
2. A gradient check of that network against central finite differences.
3. An MLP 64-128-10 trained on the bundled digits, compiled to Numba, with accuracy and timings.
"""

from __future__ import annotations

import time

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
    from symbp.datasets import load_digits, standardize, train_test_split

    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    X_train, mean, std = standardize(X_train)
    X_test, _, _ = standardize(X_test, mean, std)
    X_train, X_test = X_train.astype(np.float32), X_test.astype(np.float32)
    symbp.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    start = time.perf_counter()
    model = symbp.compile(mlp, nn.CrossEntropyLoss(), symbp.optim.Adam(mlp.parameters(), lr=1e-3))
    model.step(X_train[:32], y_train[:32])  # first step: derivation and Numba compilation
    compile_s = time.perf_counter() - start
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
        f"build + first step {compile_s:.2f} s; training {train_s:.2f} s "
        f"({train_s / epochs * 1e3:.2f} ms per epoch of {len(X_train)} samples)"
    )
    return 0 if report.ok else 1
