"""Saving and loading as the tutorials do: torch.save(model.state_dict(), path), a fresh
model's load_state_dict(torch.load(path)), an optimizer's state_dict round trip, saving a
dict checkpoint, and the reloaded model in eval() giving the same outputs."""

import numpy as np
import torch
from torch import nn


def make_model():
    return nn.Sequential(nn.Linear(3, 5), nn.Sigmoid(), nn.Linear(5, 2))


rng = np.random.default_rng(8)
model = make_model()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.tensor(rng.normal(size=tuple(p.shape)), dtype=torch.float32))
x = torch.tensor(rng.normal(size=(6, 3)), dtype=torch.float32)
target = torch.tensor(rng.normal(size=(6, 2)), dtype=torch.float32)
optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
for _ in range(5):
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), target)
    loss.backward()
    optimizer.step()
print(loss.item())

torch.save(model.state_dict(), "model_weights.pth")
restored = make_model()
restored.load_state_dict(torch.load("model_weights.pth"))
restored.eval()
with torch.no_grad():
    print((restored(x) - model(x)).abs().max().item())
    print(restored(x).sum().item())

torch.save(
    {
        "epoch": 5,
        "model_state_dict": model.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "loss": loss.item(),
    },
    "checkpoint.pt",
)
checkpoint = torch.load("checkpoint.pt")
model2 = make_model()
optimizer2 = torch.optim.Adam(model2.parameters(), lr=0.01)
model2.load_state_dict(checkpoint["model_state_dict"])
optimizer2.load_state_dict(checkpoint["optimizer_state_dict"])
print(checkpoint["epoch"], checkpoint["loss"])
for opt, m in [(optimizer, model), (optimizer2, model2)]:
    opt.zero_grad()
    nn.functional.mse_loss(m(x), target).backward()
    opt.step()
print([(a - b).abs().max().item() for a, b in zip(model.parameters(), model2.parameters())])
print(sorted(model.state_dict().keys()))
