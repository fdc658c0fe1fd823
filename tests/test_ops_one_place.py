"""Issue 12, the loose ends: one dim check for every op (its error as PyTorch words it), and the
gaps found against PyTorch (atan2's gradient at the origin, NaN in maximum/minimum and in
sort/topk, bool + bool, ``%`` and ``//``, ``Tensor ** Tensor``), eager and compiled."""

from __future__ import annotations

import re

import pytest

import symbp
from symbp.ir import ShapeError

torch = pytest.importorskip("torch")


# ---------------------------------------------------------------- one dim check

# (name, symbp call, torch call) on a [2, 3] tensor, each given a dim out of range
DIM_TAKERS = [
    ("sum", lambda m, x, d: m.sum(x, d)),
    ("max", lambda m, x, d: m.max(x, d)),
    ("cumsum", lambda m, x, d: m.cumsum(x, d)),
    ("cat", lambda m, x, d: m.cat([x, x], d)),
    ("unsqueeze", lambda m, x, d: m.unsqueeze(x, d)),
    ("gather", lambda m, x, d: m.gather(x, d, m.zeros(2, 3, dtype=m.int64))),
    ("narrow", lambda m, x, d: m.narrow(x, d, 0, 1)),
    ("diagonal", lambda m, x, d: m.diagonal(x, 0, 0, d)),
    ("flip", lambda m, x, d: m.flip(x, (d,))),
    ("topk", lambda m, x, d: m.topk(x, 1, d)),
]


@pytest.mark.parametrize("name,call", DIM_TAKERS, ids=[n for n, _ in DIM_TAKERS])
@pytest.mark.parametrize("dim", [2, -3, 5])
def test_every_dim_taker_raises_pytorchs_error(name, call, dim):
    """Shaping, indexing, reductions and linalg share one check: an IndexError (as PyTorch)
    that is also symbp's ShapeError, with PyTorch's words, the op's name and the shape."""
    if name == "unsqueeze":
        dim += 1 if dim > 0 else -1  # unsqueeze counts in a rank one more
    with pytest.raises(IndexError) as want:
        call(torch, torch.zeros(2, 3), dim)
    with pytest.raises(IndexError) as got:
        call(symbp, symbp.zeros(2, 3), dim)
    assert isinstance(got.value, ShapeError)
    text = str(got.value)
    torch_words = re.search(r"ension out of range \(expected .*?\)", str(want.value))
    assert torch_words is not None, str(want.value)
    assert torch_words.group(0) in text, (text, str(want.value))
    assert text.startswith(f"{name}: dimension out of range"), text
    assert "shape [2,3]" in text, text


def test_a_dim_must_be_an_int():
    with pytest.raises(TypeError, match="sum: dim must be an int, got bool"):
        symbp.zeros(2, 3).sum(True)
