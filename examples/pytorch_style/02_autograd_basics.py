"""Autograd as the blitz shows it: requires_grad leaves, backward on a scalar, .grad,
accumulation across two backward passes, zero_(), detach(), no_grad and leaf flags."""

import torch

x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
w = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
b = torch.tensor(0.25, requires_grad=True)
print(x.requires_grad, x.is_leaf)

z = (w * x).sum() + b
y = torch.sigmoid(z)
loss = (y - 1.0) ** 2
print(z.requires_grad, z.is_leaf)
loss.backward()
print(w.grad)
print(x.grad)
print(b.grad)

# a second backward through a new graph adds to .grad
loss2 = (w * w).sum()
loss2.backward()
print(w.grad)
w.grad.zero_()
print(w.grad)

with torch.no_grad():
    q = w * 2
print(q.requires_grad)
d = (w * 3).detach()
print(d.requires_grad, d)

u = torch.tensor([2.0, 3.0], requires_grad=True)
v = (u**3).mean() + torch.tanh(u).sum() + torch.relu(u - 2.5).sum()
v.backward()
print(u.grad)
print(torch.is_grad_enabled())
