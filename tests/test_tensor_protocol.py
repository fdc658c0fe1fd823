"""Python's number protocols on tensors, as PyTorch's: int(), index use, and their errors."""

import numpy as np
import pytest

import symbp

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("value", [4, -2.7, 2.999, True])
def test_int_of_a_one_element_tensor(value):
    assert int(symbp.tensor(value)) == int(torch.tensor(value))


def test_an_integer_tensor_is_an_index():
    n = symbp.tensor(3)
    assert list(range(n)) == list(range(torch.tensor(3))) == [0, 1, 2]
    assert ["a", "b", "c"][symbp.tensor(np.int64(2))] == "c"


def test_a_float_tensor_is_no_index():
    with pytest.raises(TypeError, match="integer tensors of a single element"):
        ["a", "b"][symbp.tensor(1.0)]
    with pytest.raises(TypeError):
        ["a", "b"][torch.tensor(1.0)]


def test_int_of_several_elements_is_an_error():
    with pytest.raises((ValueError, RuntimeError)):
        int(symbp.tensor([1, 2]))
    with pytest.raises((ValueError, RuntimeError)):
        int(torch.tensor([1, 2]))
