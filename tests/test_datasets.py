"""symbp.datasets speaks scikit-learn's argument names (test_size, random_state); the old
names still give the same split, with a DeprecationWarning."""

import numpy as np
import pytest

from symbp.datasets import load_digits, train_test_split

X = np.arange(40.0).reshape(20, 2)
y = np.arange(20)


def test_split_is_a_seeded_permutation():
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=3)
    order = np.random.default_rng(3).permutation(20)  # the reference, by hand
    np.testing.assert_array_equal(y_test, order[:5])
    np.testing.assert_array_equal(y_train, order[5:])
    np.testing.assert_array_equal(X_test, X[order[:5]])
    np.testing.assert_array_equal(X_train, X[order[5:]])


def test_int_size_and_no_shuffle_as_scikit_learn():
    sk = pytest.importorskip("sklearn.model_selection")
    for test_size in (3, 0.3):
        ours = train_test_split(X, y, test_size=test_size, shuffle=False)
        theirs = sk.train_test_split(X, y, test_size=test_size, shuffle=False)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


def test_old_names_warn_and_agree():
    new = train_test_split(X, y, test_size=0.2, random_state=7)
    with pytest.warns(DeprecationWarning, match="test_fraction= is now test_size="):
        old = train_test_split(X, y, test_fraction=0.2, random_state=7)
    with pytest.warns(DeprecationWarning, match="seed= is now random_state="):
        old2 = train_test_split(X, y, test_size=0.2, seed=7)
    for a, b, c in zip(new, old, old2):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    with pytest.raises(TypeError, match="give random_state= only"):
        train_test_split(X, y, random_state=1, seed=1)


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match=r"test_size=20 samples must be in 1\.\.19"):
        train_test_split(X, y, test_size=20)
    with pytest.raises(ValueError, match="fraction in \\(0, 1\\)"):
        train_test_split(X, y, test_size=1.5)
    with pytest.raises(ValueError, match="X has 20 samples, y has 3"):
        train_test_split(X, y[:3])


def test_digits_default_split_is_unchanged():
    Xd, yd = load_digits()
    _, X_test, _, _ = train_test_split(Xd, yd)
    assert len(X_test) == round(1797 * 0.2) == 359
