"""The backpropagation tutorial's 2-2-2 sigmoid network as a PyTorch program: weights set
through .data, the loss sum((o - t)^2) / 2, backward(), the gradients printed as
net.linear1.weight.grad.data, one SGD step at lr 0.5, and net.state_dict()."""

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.linear2 = nn.Linear(2, 2)

    def forward(self, x):
        return torch.sigmoid(self.linear2(torch.sigmoid(self.linear1(x))))


net = Net()
net.linear1.weight.data = torch.tensor([[0.15, 0.20], [0.25, 0.30]])
net.linear1.bias.data = torch.tensor([0.35, 0.35])
net.linear2.weight.data = torch.tensor([[0.40, 0.45], [0.50, 0.55]])
net.linear2.bias.data = torch.tensor([0.60, 0.60])

x = torch.tensor([[0.05, 0.10]])
t = torch.tensor([[0.01, 0.99]])
out = net(x)
loss = ((out - t) ** 2).sum() / 2
print(out)
print(loss)
loss.backward()
print(net.linear1.weight.grad.data)
print(net.linear1.bias.grad.data)
print(net.linear2.weight.grad.data)
print(net.linear2.bias.grad)

optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
optimizer.step()
print(net.state_dict())
print(net.linear1.weight)
