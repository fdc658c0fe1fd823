"""The device idiom and parameter initialization: torch.device("cuda" if
torch.cuda.is_available() else "cpu"), model.to(device), tensors .to(device);
torch.manual_seed for reproducible (per library) initial weights, nn.init's constant_,
zeros_, ones_, xavier_uniform_ and kaiming_normal_ checked by seed-independent statistics,
Module.apply, nn.ModuleList, requires_grad_(False) to freeze a layer, and AdamW."""

import math

import numpy as np
import torch
from torch import nn

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print(device, device.type)
torch.manual_seed(0)

big = nn.Linear(400, 300)
nn.init.xavier_uniform_(big.weight)
bound = math.sqrt(6 / (400 + 300))
print(big.weight.abs().max().item() <= bound, round(big.weight.abs().max().item() / bound, 1))
nn.init.kaiming_normal_(big.weight, nonlinearity="relu")
print(round(big.weight.std().item() / math.sqrt(2 / 400), 1))
nn.init.zeros_(big.bias)
print(big.bias.abs().sum().item())


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(3, 3) for _ in range(3)])
        self.head = nn.Linear(3, 1)

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x)) + x
        return self.head(x)


def init_weights(m):
    if isinstance(m, nn.Linear):
        nn.init.constant_(m.weight, 0.1)
        nn.init.ones_(m.bias)


model = Stack().to(device)
model.apply(init_weights)
with torch.no_grad():
    model.layers[1].weight.copy_(torch.tensor(np.eye(3) * 0.5 - 0.2))
model.layers[0].requires_grad_(False)
print([p.requires_grad for p in model.parameters()])

rng = np.random.default_rng(12)
x = torch.tensor(rng.normal(size=(10, 3)), dtype=torch.float32).to(device)
y = torch.tensor(rng.normal(size=(10, 1)), dtype=torch.float32).to(device)
trainable = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(trainable, lr=0.05, weight_decay=0.1)
for _ in range(15):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
print(loss.item())
print(model.layers[0].weight.sum().item(), model.layers[0].weight.grad)
print(model.head.weight.detach().cpu().numpy().round(5).tolist())
