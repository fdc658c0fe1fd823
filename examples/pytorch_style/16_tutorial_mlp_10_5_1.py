"""The tutorial's 10-5-1 MLP: nn.Sequential(Linear(10, 5), ReLU(), Linear(5, 1)) in float64,
initial weights from a seeded NumPy generator, MSE and SGD at lr 0.01 for 20 steps."""

import numpy as np
import torch
from torch import nn

rng = np.random.default_rng(0)
xs = torch.tensor(rng.normal(size=(16, 10)))
ys = torch.tensor(rng.normal(size=(16, 1)))
model = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1)).double()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.normal(0, 0.4, size=tuple(p.shape))))

criterion = nn.MSELoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(20):
    optimizer.zero_grad()
    loss = criterion(model(xs), ys)
    loss.backward()
    optimizer.step()
    print(step, loss.item())
print(model[0].weight.dtype, model[2].bias.item())
