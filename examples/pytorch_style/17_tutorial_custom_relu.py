"""The tutorial's custom ReLU as a torch.autograd.Function: forward saves its input x with
ctx.save_for_backward, backward reads ctx.saved_tensors and zeroes the gradient where the
input was negative; used through MyReLU.apply in a two-layer net fitted by hand."""

import numpy as np
import torch


class MyReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad_output):
        (x,) = ctx.saved_tensors
        grad_input = grad_output.clone()
        grad_input[x < 0] = 0
        return grad_input


rng = np.random.default_rng(11)
x = torch.tensor(rng.normal(size=(8, 4)))
y = torch.tensor(rng.normal(size=(8, 2)))
w1 = torch.tensor(rng.normal(size=(4, 6)), requires_grad=True)
w2 = torch.tensor(rng.normal(size=(6, 2)), requires_grad=True)
learning_rate = 1e-3
for t in range(30):
    y_pred = MyReLU.apply(x.mm(w1)).mm(w2)
    loss = (y_pred - y).pow(2).sum()
    if t % 10 == 9:
        print(t, loss.item())
    loss.backward()
    with torch.no_grad():
        w1 -= learning_rate * w1.grad
        w2 -= learning_rate * w2.grad
        w1.grad.zero_()
        w2.grad.zero_()
print(w1.sum().item(), w2.sum().item())
