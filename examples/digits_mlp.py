"""The digits MLP (64-128-10, ReLU) trained with ``symbp.compile``: forward, backward and the
Adam update in one Numba program, one compiled call per epoch.

Scikit-learn's 8x8 digits (bundled with symbp), standardised on a seeded 80/20 split; Adam
(lr 1e-3), batch 32, cross-entropy: about 97% test accuracy after 8 epochs. The held-out
split is shown per epoch (``validation_data``) but never used to choose anything.

    python examples/digits_mlp.py              # 20 epochs
    SYMBP_EXAMPLE_QUICK=1 python examples/digits_mlp.py   # 8 epochs, as CI runs it
"""

import os
import time

import numpy as np

import symbp
from symbp import nn
from symbp.datasets import load_digits, standardize, train_test_split

QUICK = os.environ.get("SYMBP_EXAMPLE_QUICK") == "1"
EPOCHS = 8 if QUICK else 20


def digits():
    """Standardised float32 features and int64 labels, split 80/20 with seed 0."""
    X, y = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    X_train, mean, std = standardize(X_train)
    X_test, _, _ = standardize(X_test, mean, std)
    return X_train.astype(np.float32), X_test.astype(np.float32), y_train, y_test


def main() -> None:
    X_train, X_test, y_train, y_test = digits()
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.Adam(net.parameters(), lr=1e-3))
    start = time.perf_counter()
    history = model.fit(
        X_train,
        y_train,
        epochs=EPOCHS,
        batch_size=32,
        seed=0,
        validation_data=(X_test, y_test),
        verbose=2,
    )
    seconds = time.perf_counter() - start
    result = model.evaluate(X_test, y_test)
    print(f"test accuracy {result['accuracy']:.2%}, loss {result['loss']:.4f} ({seconds:.2f} s)")

    # the numbers this example promises
    assert result["accuracy"] >= 0.95, result
    assert history["loss"][-1] < history["loss"][0] / 4
    # predict agrees with evaluate
    pred = model.predict(X_test).argmax(axis=1)
    assert np.mean(pred == y_test) == result["accuracy"]
    print("all checks passed")


if __name__ == "__main__":
    main()
