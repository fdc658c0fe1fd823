"""Classification on a TensorDataset through a DataLoader: nn.CrossEntropyLoss, SGD,
model.train()/model.eval(), evaluation under torch.no_grad() with accuracy from
argmax(1) == y, as the Quickstart's train and test loops do."""

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(5)
centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
labels = rng.integers(0, 3, size=300)
points = centers[labels] + rng.normal(size=(300, 2))
x = torch.tensor(points, dtype=torch.float32)
y = torch.tensor(labels)
train_ds = TensorDataset(x[:240], y[:240])
test_ds = TensorDataset(x[240:], y[240:])
# shuffle=False: PyTorch's and symbp's random streams differ, the batches must not
train_dl = DataLoader(train_ds, batch_size=32, shuffle=False)
test_dl = DataLoader(test_ds, batch_size=20)
print(len(train_ds), len(train_dl), len(test_dl))

model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 3))
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(p.shape)), dtype=torch.float32))
loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)


def train(dataloader):
    model.train()
    for xb, yb in dataloader:
        pred = model(xb)
        loss = loss_fn(pred, yb)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return loss.item()


def test(dataloader):
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for xb, yb in dataloader:
            pred = model(xb)
            test_loss += loss_fn(pred, yb).item()
            correct += (pred.argmax(1) == yb).type(torch.float).sum().item()
    return test_loss / len(dataloader), correct / len(dataloader.dataset)


for epoch in range(5):
    last = train(train_dl)
    test_loss, accuracy = test(test_dl)
    print(f"epoch {epoch}: train loss {last:.6f} test loss {test_loss:.6f} accuracy {accuracy}")
