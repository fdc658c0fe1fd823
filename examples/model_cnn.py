"""A small convolutional network as a symbp MODEL file, for the command line:

    symbp formulas examples/model_cnn.py            # conv and pooling in index notation
    symbp formulas examples/model_cnn.py --latex
    symbp check examples/model_cnn.py

Conv2d(1, 2, 3, padding=1) - ReLU - MaxPool2d(2) - Flatten - Linear(8, 3) on two 1×4×4
images, cross-entropy. A MODEL file defines ``model``, ``loss_fn`` and ``sample = (x, target)``.
"""

import numpy as np

import symbp
from symbp import nn

symbp.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3)
)
loss_fn = nn.CrossEntropyLoss()
sample = (
    np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32),
    np.array([0, 2]),
)

if __name__ == "__main__":
    print(symbp.formulas(loss_fn(model(symbp.tensor(sample[0])), symbp.tensor(sample[1]))))
    print(symbp.gradcheck(model, loss_fn, *sample).raise_if_failed())
