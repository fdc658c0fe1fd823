"""train() and eval() modes: a model with BatchNorm1d and Dropout trained a few steps (the
dropout draws differ between libraries, so training uses p=0 and the Dropout module is
checked by what is seed-independent), running statistics after training, eval() outputs
under torch.inference_mode(), and model.training flags."""

import numpy as np
import torch
from torch import nn

rng = np.random.default_rng(14)
x = torch.tensor(rng.normal(2.0, 3.0, size=(32, 5)), dtype=torch.float32)
y = torch.tensor(rng.normal(size=(32, 2)), dtype=torch.float32)

model = nn.Sequential(
    nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(p=0.0), nn.Linear(8, 2)
)
with torch.no_grad():  # the linear layers from NumPy; batch norm starts at weight 1, bias 0
    for p in [*model[0].parameters(), *model[4].parameters()]:
        p.copy_(torch.tensor(rng.uniform(-0.4, 0.4, size=tuple(p.shape))))
print(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5, nesterov=True)
model.train()
print(model.training, model[1].training)
for _ in range(10):
    optimizer.zero_grad()
    loss = nn.MSELoss()(model(x), y)
    loss.backward()
    optimizer.step()
print(loss.item())
print(model[1].running_mean.numpy().round(5).tolist())
print(model[1].running_var.numpy().round(5).tolist())
print(model[1].num_batches_tracked.item())

model.eval()
print(model.training, model[3].training)
with torch.inference_mode():
    out = model(x)
print(out.sum().item(), out.requires_grad)

drop = nn.Dropout(p=0.5)
drop.train()
z = drop(torch.ones(4, 1000))
print(z.shape, sorted(set(np.unique(z.numpy()).tolist())))
drop.eval()
print(drop(torch.ones(3)).tolist())
