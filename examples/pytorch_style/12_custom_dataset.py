"""A custom Dataset (__init__, __len__, __getitem__) served by a DataLoader with
drop_last, a binary classifier with nn.BCEWithLogitsLoss, torch.sigmoid, thresholded
predictions (> 0.5) and accuracy; Subset and random_split lengths."""

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, random_split


class Blobs(Dataset):
    def __init__(self, n, seed):
        rng = np.random.default_rng(seed)
        self.labels = rng.integers(0, 2, size=n).astype(np.float32)
        self.points = (rng.normal(size=(n, 2)) + 1.5 * self.labels[:, None]).astype(np.float32)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return torch.tensor(self.points[idx]), torch.tensor(self.labels[idx])


data = Blobs(100, 10)
loader = DataLoader(data, batch_size=16, shuffle=False, drop_last=True)
print(len(data), len(loader))
xb, yb = next(iter(loader))
print(xb.shape, yb.shape, xb.dtype)

model = nn.Linear(2, 1)
with torch.no_grad():
    model.weight.copy_(torch.tensor([[0.1, -0.1]]))
    model.bias.zero_()
loss_fn = nn.BCEWithLogitsLoss()
optimizer = torch.optim.Adagrad(model.parameters(), lr=0.3)
for epoch in range(4):
    total = 0.0
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = loss_fn(model(xb).squeeze(1), yb)
        loss.backward()
        optimizer.step()
        total += loss.item()
    print(epoch, total / len(loader))

with torch.no_grad():
    xs = torch.tensor(data.points)
    probs = torch.sigmoid(model(xs)).squeeze(1)
    predicted = (probs > 0.5).float()
    print((predicted == torch.tensor(data.labels)).float().mean().item())

print(len(Subset(data, range(10))), [len(s) for s in random_split(data, [80, 20])])
