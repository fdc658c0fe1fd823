"""Check symbp's symbolic gradients against finite differences, as a user would.

    python examples/gradcheck.py

Two models from the tutorials: the 2-2-2 sigmoid network of the classic worked example
(loss 0.298371), and a 10-5-1 ReLU MLP under mean squared error. ``gradcheck`` runs each in
float64 on copies, compares every parameter's gradient entry by entry with central
differences, and prints one table row per parameter. The ReLU network is also checked at a
point where one hidden unit is within a step of its kink: the differences that would cross
it are skipped and listed rather than failed.
"""

import numpy as np

import symbp
from symbp import nn


class TutorialNet(nn.Module):
    """2-2-2 with sigmoid activations and the worked example's weights."""

    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.linear2 = nn.Linear(2, 2)
        self.linear1.weight.data = np.array([[0.15, 0.20], [0.25, 0.30]])
        self.linear1.bias.data = np.array([0.35, 0.35])
        self.linear2.weight.data = np.array([[0.40, 0.45], [0.50, 0.55]])
        self.linear2.bias.data = np.array([0.60, 0.60])

    def forward(self, x):
        return symbp.sigmoid(self.linear2(symbp.sigmoid(self.linear1(x))))


def half_sse(out, target):
    return ((out - target) ** 2).sum() / 2


def main() -> None:
    print("== the 2-2-2 sigmoid network, E = sum((o - t)^2) / 2")
    x, t = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    report = symbp.gradcheck(TutorialNet(), half_sse, x, t)
    print(report)
    report.raise_if_failed()

    print("\n== a 10-5-1 ReLU MLP, mean squared error")
    symbp.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1))
    rng = np.random.default_rng(0)
    xs, ys = rng.normal(size=(16, 10)), rng.normal(size=(16, 1))
    report = symbp.gradcheck(mlp, nn.MSELoss(), xs, ys)
    print(report)
    report.raise_if_failed()

    print("\n== the same MLP with hidden unit 2 within eps of its kink for the first sample")
    w = mlp[0].weight.data.numpy()[2].astype(np.float64)
    bias = mlp[0].bias.data.numpy().copy()
    bias[2] = 3e-7 - xs[0] @ w  # its pre-activation is now about 3e-7: a ±1e-6 step crosses 0
    mlp[0].bias.data = bias
    report = symbp.gradcheck(mlp, nn.MSELoss(), xs, ys)
    print(report)  # the crossing entries are skipped and listed, not failed
    report.raise_if_failed()


if __name__ == "__main__":
    main()
