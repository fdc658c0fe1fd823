"""Linear regression y = w x + b with mean squared error, by hand and by symbp.

x = [1, 2, 3], w = 2, b = 1, y = [6, 9, 12]. Worked by hand:
    pred = [3, 5, 7], err = pred - y = [-3, -4, -5], L = mean(err²) = 50/3
    dL/dw = 2/3 Σ err·x = -52/3,  dL/db = 2/3 Σ err = -8,  dL/dx = 2/3 err·w = [-4, -16/3, -20/3]
Then a few hundred SGD steps fit the line exactly (y = 3x + 3), as least squares says.

    python examples/linear_regression.py
"""

import numpy as np

import symbp
from symbp import nn


def main():
    x = symbp.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = symbp.tensor([6.0, 9.0, 12.0])
    w = nn.Parameter(2.0)
    b = nn.Parameter(1.0)
    loss = nn.MSELoss()(w * x + b, y)
    loss.backward()
    print(f"loss  = {loss.item():.6f}   (by hand: 50/3 = {50 / 3:.6f})")
    print(f"dL/dw = {float(w.grad):.6f}  (by hand: -52/3 = {-52 / 3:.6f})")
    print(f"dL/db = {float(b.grad):.6f}   (by hand: -8)")
    print(f"dL/dx = {x.grad}  (by hand: [-4, -16/3, -20/3])")
    assert abs(loss.item() - 50 / 3) < 1e-5
    assert abs(float(w.grad) + 52 / 3) < 1e-5 and abs(float(b.grad) + 8) < 1e-5
    np.testing.assert_allclose(x.grad, [-4, -16 / 3, -20 / 3], rtol=1e-6)

    opt = symbp.optim.SGD([w, b], lr=0.05)
    data = symbp.tensor([1.0, 2.0, 3.0])
    for step in range(1, 801):
        opt.zero_grad()
        loss = nn.MSELoss()(w * data + b, y)
        loss.backward()
        opt.step()
        if step in (1, 10, 100, 800):
            w_, b_ = float(w.data), float(b.data)
            print(f"step {step:3d}: loss {loss.item():.3e}, w {w_:.5f}, b {b_:.5f}")
    w_ls, b_ls = np.polyfit([1.0, 2.0, 3.0], [6.0, 9.0, 12.0], 1)  # least squares
    print(f"least squares: w {w_ls:.5f}, b {b_ls:.5f}")
    assert abs(float(w.data) - w_ls) < 1e-3 and abs(float(b.data) - b_ls) < 2e-3
    print("all checks passed")


if __name__ == "__main__":
    main()
