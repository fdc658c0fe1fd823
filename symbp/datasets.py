"""Small data sets shipped with symbp (nothing is downloaded at run time)."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 8x8 handwritten digits (UCI; scikit-learn's ``load_digits``).

    Returns ``(X, y)``: X float64 of shape [1797, 64] with pixels 0..16, y int64 labels 0..9.
    """
    path = resources.files("symbp.data").joinpath("digits.csv.gz")
    with path.open("rb") as raw, gzip.open(raw, "rt") as text:
        data = np.loadtxt(text, delimiter=",")
    return data[:, :-1], data[:, -1].astype(np.int64)


def standardize(X: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None):
    """(X - mean) / std per feature (constant features keep std 1); returns X, mean, std."""
    mean = X.mean(0) if mean is None else mean
    std = X.std(0) if std is None else std
    std = np.where(std > 0, std, 1.0)
    return (X - mean) / std, mean, std


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float = 0.2, seed: int = 0):
    """A seeded random split: (X_train, X_test, y_train, y_test)."""
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = round(len(X) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
