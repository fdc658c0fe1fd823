"""Learning-rate schedulers: StepLR, ExponentialLR, MultiStepLR and CosineAnnealingLR over
an SGD optimizer, get_last_lr(), param_groups[0]["lr"], and scheduler.step() after
optimizer.step() in a training loop."""

import numpy as np
import torch
from torch import nn
from torch.optim import lr_scheduler

rng = np.random.default_rng(9)
x = torch.tensor(rng.normal(size=(20, 2)), dtype=torch.float32)
y = torch.tensor(rng.normal(size=(20, 1)), dtype=torch.float32)

for kind in ["step", "exp", "multistep", "cosine"]:
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.3, -0.2]]))
        model.bias.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    if kind == "step":
        scheduler = lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    elif kind == "exp":
        scheduler = lr_scheduler.ExponentialLR(optimizer, gamma=0.8)
    elif kind == "multistep":
        scheduler = lr_scheduler.MultiStepLR(optimizer, milestones=[2, 5], gamma=0.1)
    else:
        scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=8)
    lrs = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = nn.MSELoss()(model(x), y)
        loss.backward()
        optimizer.step()
        scheduler.step()
        lrs.append(round(scheduler.get_last_lr()[0], 8))
    print(kind, lrs)
    print(kind, optimizer.param_groups[0]["lr"], loss.item(), model.weight.sum().item())
