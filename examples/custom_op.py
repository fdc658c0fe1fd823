"""Custom elementwise ops: swish from its SymPy formula (SymPy derives the derivative), and the
tutorials' custom ReLU with its derivative given explicitly (PyTorch's autograd.Function).

Both are checked against float64 central differences.

    python examples/custom_op.py
"""

import numpy as np
import sympy

import symbp

swish = symbp.elementwise("swish", lambda x: x / (1 + sympy.exp(-x)))
my_relu = symbp.elementwise(
    "my_relu", lambda x: sympy.Max(x, 0), derivative=lambda x: sympy.Heaviside(x, 0)
)


def central_differences(f, xs, eps=1e-6):
    return np.array([(f(v + eps) - f(v - eps)) / (2 * eps) for v in xs])


def main():
    u = sympy.Symbol("u", real=True)
    print("swish(u)   =", swish(u))
    print("swish'(u)  =", sympy.diff(swish(u), u))

    xs = np.array([-3.0, -0.5, 0.0, 0.7, 4.0])
    x = symbp.tensor(xs, dtype=symbp.float64, requires_grad=True)
    y = swish(x)
    y.sum().backward()
    fd = central_differences(lambda v: v / (1 + np.exp(-v)), xs)
    print("swish(x)   =", y.numpy())
    print("swish'(x)  =", x.grad)
    print("differences:", fd)
    np.testing.assert_allclose(y.numpy(), xs / (1 + np.exp(-xs)), rtol=1e-14)
    np.testing.assert_allclose(x.grad, fd, rtol=1e-8, atol=1e-10)

    xs = np.array([-1.0, 0.0, 2.0, -0.3, 0.5])
    x = symbp.tensor(xs, dtype=symbp.float64, requires_grad=True)
    y = my_relu(x)
    y.sum().backward()
    print("\nmy_relu(x)  =", y.numpy())
    print("my_relu'(x) =", x.grad, "(the given derivative: 0 at 0)")
    np.testing.assert_array_equal(y.numpy(), np.maximum(xs, 0))
    np.testing.assert_array_equal(x.grad, (xs > 0).astype(float))
    away = xs != 0
    fd = central_differences(lambda v: max(v, 0.0), xs[away])
    np.testing.assert_allclose(x.grad.numpy()[away], fd, rtol=1e-8)
    print("all checks passed")


if __name__ == "__main__":
    main()
