"""Tensors as the 60-minute blitz introduces them: factories, dtypes, shapes, arithmetic,
matrix products, reductions, reshaping, NumPy round trips and one-element conversions."""

import numpy as np
import torch

data = [[1.0, 2.0], [3.0, 4.0]]
x_data = torch.tensor(data)
x_np = torch.from_numpy(np.array(data))
print(x_data)
print(x_data.dtype, x_np.dtype)
print(x_data.shape, x_data.size(), x_data.dim(), x_data.numel())

x_ones = torch.ones_like(x_data)
x_zeros = torch.zeros_like(x_data)
print(x_ones, x_zeros)
print(torch.zeros(2, 3), torch.ones(3))
print(torch.full((2, 2), 7.0))
print(torch.arange(5), torch.arange(1.0, 2.0, 0.25))
print(torch.linspace(0, 1, steps=5))
print(torch.eye(3))

a = torch.tensor(np.arange(6.0).reshape(2, 3), dtype=torch.float32)
b = torch.tensor(np.arange(6.0).reshape(3, 2) - 2.5, dtype=torch.float32)
print(a + 1, a * 2, a - a / 2)
print(a @ b)
print(a.matmul(b), torch.matmul(a, b))
print(a.T, a.t().shape)
print(a.sum(), a.mean(), a.sum(dim=0), a.mean(1))
print(a.max())
print(a.view(3, 2), a.reshape(-1), a.flatten())
print(a.unsqueeze(0).shape, a.unsqueeze(0).squeeze(0).shape)
print(torch.cat([a, a], dim=0).shape, torch.cat([a, a], dim=1))
print(torch.stack([a, a]).shape)
print(a.exp().sum().item(), a.sqrt().sum().item())

n = a.numpy()
print(type(n).__name__, n.sum())
a.add_(1)
print(a)
a.mul_(0.5).sub_(0.25)
print(a)
print(a.tolist())
one = torch.tensor(3.5)
print(one.item(), float(one), int(torch.tensor(4)))
print(a.double().dtype, a.long().dtype, a.to(torch.float64).dtype)
