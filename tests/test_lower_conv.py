"""Convolution and pooling through the Numba backend agree with the NumPy reference executor.

As in ``test_lower``: each case is ``out = f(X, W)`` of parameters X and W, compiled with the
loss ``sum(out * R)``, so ``grad R`` is the op's forward value and ``grad X``, ``grad W`` its
backward ops (``conv2d_input_grad``, ``conv2d_weight_grad``, ``maxpool2d_grad``,
``avgpool2d_grad``), each checked against the eager reference in float64 and float32.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_kernel_matches, kernel_results

from symbp import functional as F

# compile into this session's cache; slow: the biggest programs of the suite (every window op)
pytestmark = [pytest.mark.usefixtures("tmp_cache"), pytest.mark.slow]


def _conv(k, s, p, d, groups=1):
    return lambda x, w: F.conv2d(x, w, stride=s, padding=p, dilation=d, groups=groups)


# name -> (f(X, W), shape of X, shape of W, integer-valued X (ties for max pooling))
CASES: dict[str, tuple] = {}
# a covering subset of kernel 3/5 x stride 1/2 x padding 0/1/'same' x dilation 1/2 x batch 1/3
# (every pair of values appears; each compiled program costs Numba seconds)
for k, s, p, d, batch in [
    (3, 1, 0, 1, 1),
    (3, 2, 1, 2, 3),
    (3, 1, "same", 2, 1),
    (3, 2, 0, 1, 3),
    (3, 1, 1, 1, 3),
    (5, 1, 1, 2, 1),
    (5, 2, 0, 2, 3),
    (5, 1, "same", 1, 3),
    (5, 2, 1, 1, 1),
    (5, 1, 0, 2, 3),
]:
    CASES[f"conv_k{k}_s{s}_p{p}_d{d}_b{batch}"] = (
        _conv(k, s, p, d),
        (batch, 2, 10, 9),
        (3, 2, k, k),
        False,
    )
CASES["conv_groups2"] = (_conv(3, 1, 1, 1, groups=2), (2, 4, 6, 5), (6, 2, 3, 3), False)
CASES["conv_rect"] = (
    lambda x, w: F.conv2d(x, w, stride=(2, 1), padding=(1, 0)),
    (2, 2, 7, 6),
    (3, 2, 3, 2),
    False,
)


def _scaled(pool, **kw):
    return lambda x, w: pool(x * w, **kw)  # w [1, C, 1, 1] scales channels: a grad W too


POOLS = {
    "max_k2": (F.max_pool2d, {"kernel_size": 2}),
    "max_k3_s2_p1": (F.max_pool2d, {"kernel_size": 3, "stride": 2, "padding": 1}),
    "max_k3_s1_p1_d2": (F.max_pool2d, {"kernel_size": 3, "stride": 1, "padding": 1, "dilation": 2}),
    "avg_k2": (F.avg_pool2d, {"kernel_size": 2}),
    "avg_k3_s2_p1": (F.avg_pool2d, {"kernel_size": 3, "stride": 2, "padding": 1}),
    "avg_k3_s2_p1_nopad": (
        F.avg_pool2d,
        {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
    ),
    "avg_k3_s1_p1_div5": (
        F.avg_pool2d,
        {"kernel_size": 3, "stride": 1, "padding": 1, "divisor_override": 5},
    ),
}
for name, (pool, kw) in POOLS.items():
    batch = 1 if name.endswith("k2") else 3
    CASES[f"{name}_b{batch}"] = (_scaled(pool, **kw), (batch, 2, 7, 6), (1, 2, 1, 1), False)
# integer-valued inputs: ties inside windows, and (stride 1) windows sharing their arg-max
CASES["max_ties"] = (
    _scaled(F.max_pool2d, kernel_size=3, stride=2, padding=1),
    (3, 2, 7, 6),
    (1, 2, 1, 1),
    True,
)
CASES["max_ties_overlap"] = (
    _scaled(F.max_pool2d, kernel_size=3, stride=1),
    (2, 2, 5, 5),
    (1, 2, 1, 1),
    True,
)

# windows that tile the input (stride = kernel): each entry written once, ties included
CASES["max_ties_tiled"] = (_scaled(F.max_pool2d, kernel_size=2), (2, 2, 6, 4), (1, 2, 1, 1), True)

CHUNK = 11  # cases per compiled program


def _make_xw(rng, xs, ws, ties):
    # integer inputs and positive weights force ties in the pooling windows
    x = rng.integers(0, 3, xs) if ties else rng.uniform(-1.5, 1.5, xs)
    w = np.abs(rng.uniform(0.5, 1.5, ws)) if ties else rng.uniform(-1.5, 1.5, ws)
    return x, w


@pytest.fixture(scope="module")
def results(tmp_cache):
    """(eager reference grads, compiled grads, losses) for both dtypes, computed once."""
    return kernel_results(CASES, CHUNK, _make_xw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(CASES))
def test_window_kernel_matches_reference(name, dtype, results):
    assert_kernel_matches(results, name, dtype)


# NaN and infinities in the windows: a NaN wins over any number (the last NaN of several), an
# all -inf window still routes its gradient to its first tap; against the eager reference,
# which test_conv checks against PyTorch on such inputs
NAN_CASES = {
    f"max_nan_{name}": (_scaled(F.max_pool2d, **kw), (2, 2, 6, 6), (1, 2, 1, 1), False)
    for name, kw in {
        "k2": {"kernel_size": 2},
        "k3_s1_p1": {"kernel_size": 3, "stride": 1, "padding": 1},
        "k2_s1": {"kernel_size": 2, "stride": 1},
    }.items()
}


def _make_xw_nan(rng, xs, ws, ties):
    x, w = _make_xw(rng, xs, ws, ties)
    w = np.abs(w)  # keeps the signs of the infinities
    flat = x.reshape(-1)
    for value, count in [(np.nan, 6), (np.inf, 3), (-np.inf, 8)]:
        flat[rng.choice(flat.size, count, replace=False)] = value
    x[0, 0, :2, :2] = -np.inf  # a whole window of -inf
    x[1, 1, 2:4, 2:4] = [[np.nan, 1.0], [np.nan, 2.0]]  # two NaNs in one window
    return x, w


@pytest.fixture(scope="module")
def nan_results(tmp_cache):
    with np.errstate(invalid="ignore"):  # the eager loss is NaN
        return kernel_results(NAN_CASES, CHUNK, _make_xw_nan)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(NAN_CASES))
def test_max_pool_nan_and_infinity_match_reference(name, dtype, nan_results):
    assert_kernel_matches(nan_results, name, dtype)
