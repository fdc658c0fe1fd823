"""Tutorial CNN habits: nn.ReLU(inplace=True) and F.relu(x, inplace=True) in a model's
forward, 1-D convolution and pooling, nn.Upsample, PReLU and Bilinear layers, a few Adam steps
with gradient clipping, and the model's buffers and state_dict() as PyTorch prints them."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

rng = np.random.default_rng(21)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, kernel_size=3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool1d(2)
        self.up = nn.Upsample(scale_factor=2)
        self.prelu = nn.PReLU(4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Bilinear(4, 3, 2)

    def forward(self, x, z):
        h = self.pool(self.act(self.conv(x)))  # [N, 4, 4]
        h = self.bn(self.prelu(self.up(h)))  # [N, 4, 8]
        h = F.relu(h, inplace=True).mean(dim=2)
        return self.head(h, z)


net = Net()
with torch.no_grad():
    for p in net.parameters():
        p.copy_(torch.tensor(rng.uniform(-0.5, 0.5, size=tuple(p.shape))))
print(net)
x = torch.tensor(rng.normal(size=(6, 2, 8)), dtype=torch.float32)
z = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32)
y = torch.tensor(rng.normal(size=(6, 2)), dtype=torch.float32)
optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
for step in range(5):
    optimizer.zero_grad()
    loss = F.mse_loss(net(x, z), y)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=1.0)
    optimizer.step()
    print(step, round(loss.item(), 5), round(norm.item(), 4))
print(net.bn.running_mean)
print(net.bn.num_batches_tracked)
print(net.prelu.weight.shape, net.head.weight.shape, net.conv.weight.size())
print(list(net.state_dict().keys()))
print(net.state_dict()["prelu.weight"])
net.eval()
with torch.no_grad():
    print(net(x, z)[:2])
