"""The tutorials' CIFAR-10-shaped CNN on random data: shapes, the traced program, one SGD step.

    Conv2d(3, 32, 5, padding=2) - MaxPool2d(2) - Conv2d(32, 32, 5, padding=2) - MaxPool2d(2)
    - Conv2d(32, 64, 5, padding=2) - MaxPool2d(2) - Flatten - Linear(1024, 64) - Linear(64, 10)

The script prints each layer's output shape, the forward program traced with a symbolic batch
B, and one eager SGD step (lr 0.001, cross-entropy) on a random batch; with PyTorch installed,
the same step in PyTorch from the same weights, in float64, must give the same loss and the
same parameters to 1e-10.

    python examples/cifar_cnn_shapes.py
"""

import numpy as np

import symbp
from symbp import nn
from symbp.models import tutorial_cnn as cnn  # the tutorial model, in symbp or torch.nn

BATCH, LR = 4, 0.001


def main():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, 3, 32, 32))
    y = rng.integers(0, 10, size=BATCH)
    symbp.manual_seed(0)
    model = cnn().double()
    print(model)

    # traced, the batch is the symbol B: one trace serves any batch size (and the first call
    # of the model names its layers and parameters: 0.weight, 0.bias, ...)
    traced = symbp.trace(model, x)
    print("\nthe forward program, traced:\n" + str(traced))

    h = symbp.tensor(x)
    print(f"\ninput {list(h.shape)}")
    for name, layer in model.named_children():
        h = layer(h)
        print(f"  {name} {type(layer).__name__:<9} -> {list(h.shape)}")

    start = {k: np.array(v) for k, v in model.state_dict().items()}  # a snapshot
    opt = symbp.optim.SGD(model.parameters(), lr=LR)
    loss = nn.CrossEntropyLoss()(model(symbp.tensor(x)), symbp.tensor(y))
    loss.backward()
    opt.step()
    print(f"\none SGD step: loss {loss.item():.12f}")
    for name, p in model.named_parameters():
        print(f"  {name:<9} {list(p.shape)!s:<16} |grad| {np.linalg.norm(p.grad):.6f}")

    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: nothing to compare with")
        return
    theirs = cnn(torch.nn).double()
    theirs.load_state_dict({k: torch.tensor(v) for k, v in start.items()})
    topt = torch.optim.SGD(theirs.parameters(), lr=LR)
    tloss = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(y))
    tloss.backward()
    topt.step()
    print(f"PyTorch:      loss {tloss.item():.12f}")
    assert abs(loss.item() - tloss.item()) <= 1e-10 * abs(tloss.item())
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(model.state_dict()[name], value.numpy(), rtol=1e-10, atol=1e-13)
    print("loss and parameters after the step match PyTorch to 1e-10")


if __name__ == "__main__":
    main()
