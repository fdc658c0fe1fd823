"""Logistic regression from raw tensors, then refactored, as "What is torch.nn really?"
walks it: weights with requires_grad_(), a hand-written log_softmax and negative
log-likelihood, then F.cross_entropy and F.linear, updates under no_grad with zero_()."""

import math

import numpy as np
import torch
import torch.nn.functional as F

rng = np.random.default_rng(6)
n, d, k = 120, 10, 4
x_train = torch.tensor(rng.normal(size=(n, d)), dtype=torch.float32)
y_train = torch.tensor(rng.integers(0, k, size=n))

weights = torch.tensor(rng.normal(size=(d, k)) / math.sqrt(d), dtype=torch.float32)
weights.requires_grad_()
bias = torch.zeros(k, requires_grad=True)


def log_softmax(z):
    return z - z.exp().sum(-1).log().unsqueeze(-1)


def model(xb):
    return log_softmax(xb @ weights + bias)


def nll(logp, target):
    return -logp[range(target.shape[0]), target].mean()


bs, lr = 30, 0.5
print(nll(model(x_train[:bs]), y_train[:bs]).item())
for epoch in range(3):
    for i in range((n - 1) // bs + 1):
        xb = x_train[i * bs : i * bs + bs]
        yb = y_train[i * bs : i * bs + bs]
        loss = nll(model(xb), yb)
        loss.backward()
        with torch.no_grad():
            weights -= weights.grad * lr
            bias -= bias.grad * lr
            weights.grad.zero_()
            bias.grad.zero_()
    print(epoch, loss.item())

# the same loss from torch.nn.functional, on the transposed weights as F.linear takes them
logits = F.linear(x_train, weights.detach().t(), bias.detach())
print(F.cross_entropy(logits, y_train).item(), nll(model(x_train), y_train).item())
print(F.nll_loss(F.log_softmax(logits, dim=1), y_train).item())
print((torch.argmax(logits, dim=1) == y_train).float().mean().item())
