"""Gradients of activations as the tutorial computes them: ReLU at [-1, 0, 2] (0 at the
kink, as PyTorch), sigmoid at 0, and the softmax Jacobian row by row with
backward(gradient) on a one-hot vector and x.grad.zero_() between rows."""

import torch

x = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
torch.relu(x).sum().backward()
print(x.grad)

z = torch.tensor(0.0, requires_grad=True)
torch.sigmoid(z).backward()
print(z.grad)

v = torch.tensor([1.0, 2.0, 0.5], requires_grad=True)
s = torch.softmax(v, dim=0)
print(s)
for i in range(3):
    onehot = torch.zeros(3)
    onehot[i] = 1.0
    s.backward(onehot, retain_graph=True)
    print(v.grad)
    v.grad.zero_()
