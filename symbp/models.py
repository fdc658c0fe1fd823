"""Networks of the tutorials that more than one place builds: defined once, here.

>>> from symbp.models import tutorial_cnn
>>> net = tutorial_cnn()  # the CIFAR-10-shaped CNN in symbp
>>> sum(p.numel() for p in net.parameters())
145578

Each builder takes the layer namespace, ``symbp.nn`` by default or ``torch.nn``, so that a test,
an example or a benchmark builds the very same architecture in both libraries (the parameter
names match too: ``0.weight``, ``0.bias``, ...).
"""

from __future__ import annotations

from typing import Any

__all__ = ["digits_cnn", "tutorial_cnn"]


def tutorial_cnn(m: Any = None) -> Any:
    """The tutorials' CIFAR-10-shaped CNN for 3×32×32 inputs and 10 classes.

    Conv2d(3, 32, 5, padding=2) - MaxPool2d(2) - Conv2d(32, 32, 5, padding=2) - MaxPool2d(2)
    - Conv2d(32, 64, 5, padding=2) - MaxPool2d(2) - Flatten - Linear(1024, 64) - Linear(64, 10),
    without activations, as the tutorial has it. ``m`` is ``symbp.nn`` (None) or ``torch.nn``.
    """
    if m is None:
        from symbp import nn as m
    return m.Sequential(
        m.Conv2d(3, 32, 5, padding=2),
        m.MaxPool2d(2),
        m.Conv2d(32, 32, 5, padding=2),
        m.MaxPool2d(2),
        m.Conv2d(32, 64, 5, padding=2),
        m.MaxPool2d(2),
        m.Flatten(),
        m.Linear(1024, 64),
        m.Linear(64, 10),
    )


def digits_cnn(m: Any = None) -> Any:
    """The digits CNN for scikit-learn's 1×8×8 images and 10 classes.

    Conv2d(1, 16, 3, padding=1) - ReLU - MaxPool2d(2) - Conv2d(16, 32, 3, padding=1) - ReLU -
    MaxPool2d(2) - Flatten - Dropout(0.25) - Linear(128, 10). ``m``: ``symbp.nn`` or ``torch.nn``.
    """
    if m is None:
        from symbp import nn as m
    return m.Sequential(
        m.Conv2d(1, 16, 3, padding=1),
        m.ReLU(),
        m.MaxPool2d(2),
        m.Conv2d(16, 32, 3, padding=1),
        m.ReLU(),
        m.MaxPool2d(2),
        m.Flatten(),
        m.Dropout(0.25),
        m.Linear(128, 10),
    )
