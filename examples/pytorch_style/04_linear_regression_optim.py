"""Linear regression with nn.Linear, nn.MSELoss and optim.SGD: initial weights copied in
under torch.no_grad(), the zero_grad / backward / step loop, and the learned parameters read
back with .item() and named_parameters()."""

import numpy as np
import torch
from torch import nn, optim

rng = np.random.default_rng(1)
x_np = rng.uniform(-1, 1, size=(64, 3)).astype(np.float32)
true_w = np.array([[2.0, -3.0, 0.5]], dtype=np.float32)
y_np = x_np @ true_w.T + 0.7 + 0.05 * rng.normal(size=(64, 1)).astype(np.float32)
x = torch.tensor(x_np)
y = torch.tensor(y_np)

model = nn.Linear(3, 1)
with torch.no_grad():
    model.weight.copy_(torch.tensor([[0.1, 0.2, -0.1]]))
    model.bias.fill_(0.0)

criterion = nn.MSELoss()
optimizer = optim.SGD(model.parameters(), lr=0.1)
for epoch in range(60):
    optimizer.zero_grad()
    loss = criterion(model(x), y)
    loss.backward()
    optimizer.step()
    if epoch % 10 == 0:
        print(epoch, loss.item())

for name, p in model.named_parameters():
    print(name, p.shape, p.detach().numpy().round(4).tolist())
print(model)
