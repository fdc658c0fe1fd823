"""The tutorial 2-2-2 sigmoid network as a symbp MODEL file, for the command line:

    symbp formulas examples/model_222.py
    symbp formulas examples/model_222.py --scalar --param w5
    symbp check examples/model_222.py
    symbp show examples/model_222.py --stage backward

A MODEL file defines ``model``, ``loss_fn`` and ``sample = (x, target)`` (and optionally
``optimizer`` and ``data``).
"""

import numpy as np

import symbp
from symbp.demo import TutorialNet, half_sse

model = TutorialNet()
loss_fn = half_sse
sample = (np.array([[0.05, 0.10]], dtype=np.float32), np.array([[0.01, 0.99]], dtype=np.float32))
optimizer = symbp.optim.SGD(model.parameters(), lr=0.5)

if __name__ == "__main__":
    print(symbp.formulas(loss_fn(model(symbp.tensor(sample[0])), symbp.tensor(sample[1]))))
