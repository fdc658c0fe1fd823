"""nn.Sequential with Linear, Tanh, ReLU and Flatten(0, 1), trained with optim.Adam then
optim.RMSprop on a regression target; parameters set from NumPy through parameters()."""

import numpy as np
import torch
from torch import nn


def set_from_numpy(model, seed):
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(p.shape)), dtype=p.dtype))


rng = np.random.default_rng(2)
x = torch.tensor(rng.uniform(-2, 2, size=(100, 1)), dtype=torch.float32)
y = torch.tensor(np.tanh(2 * x.numpy()[:, 0]) + 0.1 * x.numpy()[:, 0] ** 2, dtype=torch.float32)

for opt_name in ["Adam", "RMSprop"]:
    model = nn.Sequential(
        nn.Linear(1, 8),
        nn.Tanh(),
        nn.Linear(8, 8),
        nn.ReLU(),
        nn.Linear(8, 1),
        nn.Flatten(0, 1),
    )
    set_from_numpy(model, 3)
    loss_fn = nn.MSELoss(reduction="sum")
    if opt_name == "Adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    else:
        optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3)
    for t in range(100):
        y_pred = model(x)
        loss = loss_fn(y_pred, y)
        if t % 25 == 0:
            print(opt_name, t, loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(opt_name, "final", loss.item(), model[0].weight.sum().item())
print(model)
print(len(model), model[-2])
