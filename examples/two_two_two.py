"""The backpropagation tutorial's 2-2-2 sigmoid network, step by step.

Forward pass, the loss E = sum((o - t)²) / 2, the derived backward program, the gradients of
both layers, and one SGD step at lr 0.5. Every number is checked against a NumPy backprop
written out by hand below (and against the tutorial's published weights after the step).

    python examples/two_two_two.py
"""

import numpy as np

import symbp
from symbp import nn

X = [[0.05, 0.10]]
T = [[0.01, 0.99]]
W1, B1 = [[0.15, 0.20], [0.25, 0.30]], [0.35, 0.35]
W2, B2 = [[0.40, 0.45], [0.50, 0.55]], [0.60, 0.60]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.linear2 = nn.Linear(2, 2)

    def forward(self, x):
        h = symbp.sigmoid(self.linear1(x))
        return symbp.sigmoid(self.linear2(h))


def numpy_backprop():
    """The textbook's equations in NumPy: forward, δ2, δ1, the four gradients."""
    x, t = np.array(X), np.array(T)
    w1, b1, w2, b2 = map(np.array, (W1, B1, W2, B2))
    h = 1 / (1 + np.exp(-(x @ w1.T + b1)))
    o = 1 / (1 + np.exp(-(h @ w2.T + b2)))
    loss = np.sum((o - t) ** 2) / 2
    d2 = (o - t) * o * (1 - o)
    d1 = (d2 @ w2) * h * (1 - h)
    grads = {
        "linear1.weight": d1.T @ x,
        "linear1.bias": d1.sum(0),
        "linear2.weight": d2.T @ h,
        "linear2.bias": d2.sum(0),
    }
    params = {"linear1.weight": w1, "linear1.bias": b1, "linear2.weight": w2, "linear2.bias": b2}
    return h, o, loss, grads, params


def main():
    net = Net()
    net.linear1.weight.data = np.array(W1)
    net.linear1.bias.data = np.array(B1)
    net.linear2.weight.data = np.array(W2)
    net.linear2.bias.data = np.array(B2)
    x, t = symbp.tensor(X), symbp.tensor(T)  # float32, as torch.tensor
    _, ref_o, ref_loss, ref_grads, ref_params = numpy_backprop()

    out = net(x)
    loss = ((out - t) ** 2).sum() / 2
    print("output o   =", out.numpy())
    print(f"loss E     = {loss.item():.9f}")
    np.testing.assert_allclose(out.numpy(), ref_o, rtol=1e-6)
    assert abs(loss.item() - 0.298371109) < 1e-6 and abs(loss.item() - ref_loss) < 1e-7

    derived = symbp.derive(loss.node, [p.node for p in net.parameters()])
    print("\nthe derived program (forward and backward, simplified):")
    print(derived)

    loss.backward()
    print("\ngradients:")
    for name, p in net.named_parameters():
        print(f"  dE/d{name:15s} =", np.array2string(p.grad.numpy(), precision=9).replace("\n", ""))
        np.testing.assert_allclose(p.grad, ref_grads[name], rtol=1e-5, atol=1e-9)

    opt = symbp.optim.SGD(net.parameters(), lr=0.5)
    opt.step()
    print("\nafter one SGD step, lr 0.5:")
    for name, p in net.named_parameters():
        print(f"  {name:15s} =", np.array2string(p.data.numpy(), precision=9).replace("\n", ""))
        step = ref_params[name] - 0.5 * ref_grads[name]  # the update, by hand
        np.testing.assert_allclose(p.data, step, rtol=1e-6)
    # the tutorial's published w5..w8 and w1..w4 after the step
    np.testing.assert_allclose(
        net.linear2.weight.data, [[0.35891648, 0.408666186], [0.511301270, 0.561370121]], rtol=1e-6
    )
    np.testing.assert_allclose(
        net.linear1.weight.data, [[0.149780716, 0.19956143], [0.24975114, 0.29950229]], rtol=1e-6
    )
    new_loss = ((net(x) - t) ** 2).sum() / 2
    print(f"\nloss after the step = {new_loss.item():.9f} (was {loss.item():.9f})")
    assert new_loss.item() < loss.item()
    print("all checks passed")


if __name__ == "__main__":
    main()
