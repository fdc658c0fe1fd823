"""A custom nn.Module: layers as attributes, forward with F.relu and torch.sigmoid, a
Python loop reusing one layer (weight sharing), parameters() counted with numel(),
state_dict() keys, named_modules(), and training with SGD momentum and BCELoss."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.hidden = nn.Linear(6, 6)
        self.out = nn.Linear(6, 1)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        for _ in range(2):  # the same layer applied twice
            h = torch.tanh(self.hidden(h))
        return torch.sigmoid(self.out(h))


net = Net()
rng = np.random.default_rng(4)
with torch.no_grad():
    for p in net.parameters():
        p.copy_(torch.tensor(rng.normal(0, 0.5, size=tuple(p.shape)), dtype=torch.float32))

print(net)
print(sum(p.numel() for p in net.parameters()))
print(list(net.state_dict().keys()))
print([name for name, _ in net.named_modules()])

x = torch.tensor(rng.normal(size=(32, 4)), dtype=torch.float32)
target = torch.tensor((rng.normal(size=(32, 1)) > 0).astype(np.float32))
optimizer = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
criterion = nn.BCELoss()
for step in range(40):
    optimizer.zero_grad()
    loss = criterion(net(x), target)
    loss.backward()
    optimizer.step()
    if step % 10 == 9:
        print(step, loss.item())
print(net.fc1.weight.grad.abs().sum().item(), net.out.bias.grad)
