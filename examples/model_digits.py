"""A digits MLP (64-64-10) as a symbp MODEL file, with its data, for ``symbp train``:

    symbp train examples/model_digits.py --epochs 20
    symbp train examples/model_digits.py --optimizer sgd --lr 0.05 --plot curves.png
    symbp show examples/model_digits.py --stage kernels

``data`` is scikit-learn's 8x8 digits (bundled with symbp, no download), standardised.
"""

import numpy as np

import symbp
from symbp import nn
from symbp.datasets import load_digits, standardize

_X, _y = load_digits()
_X, _, _ = standardize(_X)

symbp.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
loss_fn = nn.CrossEntropyLoss()
optimizer = symbp.optim.Adam(model.parameters(), lr=1e-3)
data = (_X.astype(np.float32), _y.astype(np.int64))
sample = (data[0][:4], data[1][:4])

if __name__ == "__main__":
    compiled = symbp.compile(model, loss_fn, optimizer)
    history = compiled.fit(*data, epochs=5, batch_size=32, seed=0)
    print(f"training loss after 5 epochs: {history['loss'][-1]:.4f}")
    assert history["loss"][-1] < history["loss"][0]
    print("all checks passed")
