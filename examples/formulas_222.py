"""The 2-2-2 tutorial network's gradient formulas, as symbp derives them.

The classic worked example of backpropagation: two inputs, two sigmoid hidden units, two
sigmoid outputs, half squared error. symbp prints the gradient of every parameter in the
textbook's δ notation (tensor level), as LaTeX, and as a closed form for one weight (scalar
level): ∂E/∂w5 = (o1 − t1)·o1·(1 − o1)·h1 = 0.082167041, the tutorial's number.

    python examples/formulas_222.py
"""

import numpy as np

import symbp
from symbp import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.sigmoid = nn.Sigmoid()
        self.linear2 = nn.Linear(2, 2)

    def forward(self, x):
        return self.sigmoid(self.linear2(self.sigmoid(self.linear1(x))))


def main() -> None:
    net = Net().double()  # float64: the tutorial's digits, exactly
    net.load_state_dict(
        {
            "linear1.weight": np.array([[0.15, 0.20], [0.25, 0.30]]),
            "linear1.bias": np.array([0.35, 0.35]),
            "linear2.weight": np.array([[0.40, 0.45], [0.50, 0.55]]),
            "linear2.bias": np.array([0.60, 0.60]),
        }
    )
    x = symbp.tensor([[0.05, 0.10]], dtype=symbp.float64)
    t = symbp.tensor([[0.01, 0.99]], dtype=symbp.float64)
    loss = ((net(x) - t) ** 2).sum() / 2
    print(f"E = {loss.item():.9f}\n")

    f = symbp.formulas(loss)
    print(f)  # tensor level, in δ notation
    print("\nLaTeX:")
    print(f.latex())

    print("\nscalar level, w5 = linear2.weight[0, 0] (h1 -> o1):")
    w5 = f.scalar("w5")
    print(w5)
    print("\nfully expanded in inputs, targets and weights:")
    print(f.scalar("w5", expand=True).text().splitlines()[0])

    loss.backward()
    assert abs(w5.value - net.linear2.weight.grad.numpy()[0, 0]) < 1e-12
    assert abs(w5.value - 0.082167041) < 1e-9
    print(f"\nloss.backward() agrees: ∂E/∂w5 = {net.linear2.weight.grad.numpy()[0, 0]:.9f}")


if __name__ == "__main__":
    main()
