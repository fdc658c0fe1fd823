"""Small data sets shipped with symbp (nothing is downloaded at run time)."""

from __future__ import annotations

import gzip
import numbers
import warnings
from importlib import resources
from typing import Any

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


def train_test_split(
    X: np.ndarray,
    y: np.ndarray,
    test_size: float | int | None = None,
    random_state: int | None = None,
    *,
    shuffle: bool = True,
    test_fraction: float | None = None,
    seed: int | None = None,
):
    """A seeded random split: (X_train, X_test, y_train, y_test), in scikit-learn's words.

    ``test_size`` is a fraction in (0, 1) (the count rounded to nearest; scikit-learn rounds
    up) or a number of samples (default 0.2, a fifth);
    ``random_state`` seeds the permutation (default 0, so the split repeats; not NumPy's
    global state); ``shuffle=False`` takes the last samples as the test set, in order. The
    older names ``test_fraction`` and ``seed`` still work and warn (DeprecationWarning).

    >>> X, y = np.arange(20).reshape(10, 2), np.arange(10)
    >>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=3, random_state=1)
    >>> len(X_train), len(X_test), sorted(np.concatenate([y_train, y_test]).tolist())
    (7, 3, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    test_size = _renamed("test_fraction", test_fraction, "test_size", test_size)
    random_state = _renamed("seed", seed, "random_state", random_state)
    n = len(X)
    if len(y) != n:
        raise ValueError(f"train_test_split: X has {n} samples, y has {len(y)}")
    n_test = _n_test(n, 0.2 if test_size is None else test_size)
    if shuffle:
        order = np.random.default_rng(0 if random_state is None else random_state).permutation(n)
        test, train = order[:n_test], order[n_test:]
    else:  # scikit-learn's order: the test set is the tail
        train, test = np.arange(n - n_test), np.arange(n - n_test, n)
    return X[train], X[test], y[train], y[test]


def _renamed(old: str, old_value: Any, new: str, new_value: Any) -> Any:
    """The value of a renamed argument: the new name's, or the old one's with a warning."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise TypeError(f"train_test_split: give {new}= only ({old}= is its old name)")
    warnings.warn(
        f"train_test_split: {old}= is now {new}= (scikit-learn's name); {old}= will go",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value


def _n_test(n: int, test_size: object) -> int:
    """scikit-learn's reading: an int counts samples, a float in (0, 1) is a fraction.

    ``test_size`` is the caller's value as given (a NumPy integer or float too), checked here;
    typed ``object`` since typeshed makes neither int a ``numbers.Integral`` nor float a
    ``numbers.Real``, so that mypy would call both branches unreachable."""
    if not isinstance(test_size, bool) and isinstance(test_size, numbers.Integral):
        count = int(test_size)
        if not 0 < count < n:
            raise ValueError(
                f"train_test_split: test_size={test_size} samples must be in 1..{n - 1} "
                f"(of {n} samples)"
            )
        return count
    if isinstance(test_size, numbers.Real) and 0 < float(test_size) < 1:
        return round(n * float(test_size))
    raise ValueError(
        f"train_test_split: test_size must be a fraction in (0, 1) or a number of samples, "
        f"got {test_size!r}"
    )
