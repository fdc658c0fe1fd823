"""The tutorial's linear regression by hand: y = w * x with w a scalar leaf, loss
mean((w x - y)^2), `with torch.no_grad(): w -= w.grad * learning_rate`, then
w.grad.zero_(), printing the prediction before and after training."""

import torch

X = torch.tensor([1, 2, 3, 4], dtype=torch.float32)
Y = torch.tensor([2, 4, 6, 8], dtype=torch.float32)
w = torch.tensor(0.0, dtype=torch.float32, requires_grad=True)


def forward(x):
    return w * x


def loss(y, y_pred):
    return ((y_pred - y) ** 2).mean()


print(f"Prediction before training: f(5) = {forward(5).item():.3f}")
learning_rate = 0.01
for epoch in range(20):
    y_pred = forward(X)
    l = loss(Y, y_pred)  # noqa: E741
    l.backward()
    with torch.no_grad():
        w -= w.grad * learning_rate
    w.grad.zero_()
    if epoch % 2 == 0:
        print(f"epoch {epoch + 1}: w = {w.item():.8f}, loss = {l.item():.8f}")
print(f"Prediction after training: f(5) = {forward(5).item():.3f}")
print(w)
