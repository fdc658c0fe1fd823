"""Gradients of activations: ReLU at [-1, 0, 2], sigmoid at 0, and the softmax Jacobian.

ReLU's gradient at 0 is 0, as PyTorch's; σ'(0) = σ(0)(1 - σ(0)) = 1/4; the softmax Jacobian,
built row by row with one backward() per output component, equals diag(s) - s sᵀ.

    python examples/activation_gradients.py
"""

import numpy as np

import symbp


def main():
    x = symbp.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    symbp.relu(x).sum().backward()
    print("relu'([-1, 0, 2]) =", x.grad)
    assert x.grad.tolist() == [0.0, 0.0, 1.0]

    z = symbp.tensor(0.0, requires_grad=True)
    symbp.sigmoid(z).backward()
    print("sigmoid'(0)       =", float(z.grad))
    assert float(z.grad) == 0.25

    xs = np.array([1.0, 2.0, 0.5, -1.0])
    v = symbp.tensor(xs, dtype=symbp.float64, requires_grad=True)
    rows = []
    for i in range(len(xs)):
        v.grad = None
        s = symbp.softmax(v, 0)
        (s * symbp.tensor(np.eye(len(xs))[i])).sum().backward()  # ds_i / dx
        rows.append(v.grad.numpy().copy())
    jac = np.array(rows)
    e = np.exp(xs - xs.max())
    s = e / e.sum()
    ref = np.diag(s) - np.outer(s, s)
    print("softmax Jacobian (row i = ds_i/dx):")
    print(np.array2string(jac, precision=6))
    print("max |J - (diag(s) - s sᵀ)| =", np.abs(jac - ref).max())
    np.testing.assert_allclose(jac, ref, rtol=1e-12, atol=1e-15)
    print("all checks passed")


if __name__ == "__main__":
    main()
