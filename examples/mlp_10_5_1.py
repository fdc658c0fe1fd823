"""A 10-5-1 ReLU MLP trained with MSE and SGD (lr 0.01), step for step against NumPy.

The reference is the same network written out by hand in NumPy: forward, backward, update.
In float64 the two agree to 1e-10 relative after every step.

    python examples/mlp_10_5_1.py
"""

import numpy as np

import symbp
from symbp import nn

STEPS, LR = 20, 0.01


def numpy_training(state, xs, ys):
    """Linear(10, 5) - ReLU - Linear(5, 1), MSE, SGD: by hand."""
    W1, b1, W2, b2 = (state[k].copy() for k in ("0.weight", "0.bias", "2.weight", "2.bias"))
    losses = []
    for _ in range(STEPS):
        z = xs @ W1.T + b1
        h = np.maximum(z, 0)
        o = h @ W2.T + b2
        losses.append(np.mean((o - ys) ** 2))
        do = 2 * (o - ys) / o.size
        dz = (do @ W2) * (z > 0)
        W1, b1 = W1 - LR * dz.T @ xs, b1 - LR * dz.sum(0)
        W2, b2 = W2 - LR * do.T @ h, b2 - LR * do.sum(0)
    return losses, {"0.weight": W1, "0.bias": b1, "2.weight": W2, "2.bias": b2}


def main():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(32, 10))
    ys = np.sin(xs[:, :1]) + 0.1 * rng.normal(size=(32, 1))
    symbp.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1)).double()
    start = {k: np.array(v) for k, v in model.state_dict().items()}  # a snapshot
    opt = symbp.optim.SGD(model.parameters(), lr=LR)
    loss_fn = nn.MSELoss()
    x, y = symbp.tensor(xs), symbp.tensor(ys)

    ref_losses, ref_params = numpy_training(start, xs, ys)
    for step in range(STEPS):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if step % 5 == 0 or step == STEPS - 1:
            print(f"step {step:2d}: loss {loss.item():.10f}   NumPy {ref_losses[step]:.10f}")
        assert abs(loss.item() - ref_losses[step]) <= 1e-10 * abs(ref_losses[step])
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.data, ref_params[name], rtol=1e-10, err_msg=name)
    assert ref_losses[-1] < ref_losses[0]
    print("parameters after", STEPS, "steps match NumPy to 1e-10; all checks passed")


if __name__ == "__main__":
    main()
