"""A MODEL file with a bug: the second layer expects 3 features but the first produces 4.
``symbp check examples/model_shape_error.py`` reports it in one line, naming the layer."""

import numpy as np

from symbp import nn

model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(3, 1))
loss_fn = nn.MSELoss()
sample = (np.ones((5, 2), dtype=np.float32), np.zeros((5, 1), dtype=np.float32))
