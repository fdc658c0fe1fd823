"""A cubic fitted to sin(x) with four scalar tensors: forward with ** and arithmetic, a
squared-error loss, backward(), and the update by hand inside torch.no_grad() with
`a -= lr * a.grad` and `a.grad = None`, as "Learning PyTorch with Examples" does."""

import math

import numpy as np
import torch

dtype = torch.float64
x = torch.linspace(-math.pi, math.pi, 200, dtype=dtype)
y = torch.tensor(np.sin(np.linspace(-math.pi, math.pi, 200)), dtype=dtype)

start = np.random.default_rng(0).normal(size=4)
a = torch.tensor(start[0], dtype=dtype, requires_grad=True)
b = torch.tensor(start[1], dtype=dtype, requires_grad=True)
c = torch.tensor(start[2], dtype=dtype, requires_grad=True)
d = torch.tensor(start[3], dtype=dtype, requires_grad=True)

learning_rate = 1e-5  # below 2 / (largest Hessian eigenvalue, about 5.5e4 here)
for t in range(300):
    y_pred = a + b * x + c * x**2 + d * x**3
    loss = (y_pred - y).pow(2).sum()
    if t % 50 == 49:
        print(t, loss.item())
    loss.backward()
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        c -= learning_rate * c.grad
        d -= learning_rate * d.grad
        a.grad = None
        b.grad = None
        c.grad = None
        d.grad = None

print(f"Result: y = {a.item()} + {b.item()} x + {c.item()} x^2 + {d.item()} x^3")
print(a.is_leaf, a.requires_grad)
