"""A small CIFAR-style CNN as the blitz's classifier: Conv2d, MaxPool2d, F.relu,
torch.flatten(x, 1), Linear; CrossEntropyLoss and SGD with momentum in the
optimizer.zero_grad(); loss.backward(); optimizer.step() loop over mini-batches."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(4, 6, 3)
        self.fc1 = nn.Linear(6 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))  # 3x14x14 -> 4x12x12 -> 4x6x6
        x = self.pool(F.relu(self.conv2(x)))  # -> 6x4x4 -> 6x2x2
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


net = Net()
rng = np.random.default_rng(7)
with torch.no_grad():
    for p in net.parameters():
        p.copy_(torch.tensor(rng.uniform(-0.3, 0.3, size=tuple(p.shape)), dtype=torch.float32))

images = torch.tensor(rng.normal(size=(40, 3, 14, 14)), dtype=torch.float32)
labels = torch.tensor(rng.integers(0, 5, size=40))
criterion = nn.CrossEntropyLoss()
optimizer = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

for epoch in range(2):
    running_loss = 0.0
    for i in range(0, 40, 8):
        inputs, targets = images[i : i + 8], labels[i : i + 8]
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        running_loss += loss.item()
    print(f"[{epoch + 1}] loss: {running_loss / 5:.6f}")

with torch.no_grad():
    out = net(images)
print(out.shape, out.sum().item())
print(net.conv1.weight.shape, net.conv1.weight.grad.abs().sum().item())
