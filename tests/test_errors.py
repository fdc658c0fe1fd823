"""Bad input gives a clear error that names the layer or op and the shapes involved."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import symbp
from symbp import nn


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.fc2 = nn.Linear(5, 2)  # wrong on purpose: fc1 produces 3 features

    def forward(self, x):
        return self.fc2(self.fc1(x))


def zeros(*shape, dtype=np.float32):
    return symbp.tensor(np.zeros(shape), dtype=dtype)


def test_linear_fed_wrong_features_names_the_layer_and_both_shapes():
    model = TwoLayers()
    with pytest.raises(symbp.ShapeError) as err:
        model(zeros(2, 4))
    msg = str(err.value)
    assert "Linear 'fc2'" in msg
    assert "5 input features" in msg and "[2,5]" in msg  # what it expects (its weight)
    assert "[2,3]" in msg  # what it got


def test_linear_in_sequential_is_named_by_its_index():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(symbp.ShapeError, match=r"Linear '2' expects 5 input features.*\[2,3\]"):
        model(zeros(2, 4))


def test_elementwise_shapes_that_do_not_broadcast():
    with pytest.raises(
        symbp.ShapeError, match=re.escape("add: shapes [2,3] and [4] do not broadcast")
    ):
        zeros(2, 3) + zeros(4)
    with pytest.raises(symbp.ShapeError, match=re.escape("mul: shapes [2,3] and [3,2]")):
        zeros(2, 3) * zeros(3, 2)


def test_elementwise_error_inside_a_module_names_the_module():
    class Bad(nn.Module):
        def forward(self, x):
            return x + zeros(7)

    with pytest.raises(symbp.ShapeError, match=r"add: shapes \[2,3\] and \[7\].*\(in Bad 'bad'\)"):
        Bad()(zeros(2, 3))


def test_float32_and_float64_do_not_mix_silently():
    with pytest.raises(symbp.ShapeError, match=r"add: mixes float32 and float64.*\.double\(\)"):
        zeros(2, 3) + zeros(2, 3, dtype=np.float64)
    with pytest.raises(symbp.ShapeError, match="matmul: dtypes differ: float32 @ float64"):
        zeros(2, 3) @ zeros(3, 2, dtype=np.float64)
    # a float32 model fed float64 data: the error says which layer
    with pytest.raises(symbp.ShapeError, match=r"float64 @ float32 \(in Linear '0'\)"):
        nn.Sequential(nn.Linear(3, 2))(zeros(4, 3, dtype=np.float64))
    # and converting fixes it
    out = nn.Sequential(nn.Linear(3, 2))(zeros(4, 3, dtype=np.float64).float())
    assert out.dtype == np.float32


def test_backward_of_a_non_scalar_loss():
    x = symbp.tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=re.escape("scalar loss, got shape [2,3]")):
        (x * 2).backward()


def test_backward_without_anything_that_requires_grad():
    with pytest.raises(RuntimeError, match="does not depend on any tensor that requires grad"):
        zeros(3).sum().backward()


def test_derive_of_a_non_scalar_traced_loss():
    x = symbp.placeholder("x", (symbp.B, 3))
    with pytest.raises(symbp.ShapeError, match=re.escape("must be a scalar, got shape [B,3]")):
        symbp.derive(x.node, [])


def test_mse_shape_mismatch():
    with pytest.raises(symbp.ShapeError, match=re.escape("MSELoss: input [2,3] and target [2,1]")):
        nn.MSELoss()(zeros(2, 3), zeros(2, 1))
    with pytest.raises(symbp.ShapeError, match=re.escape("L1Loss: input [4] and target [4,1]")):
        nn.L1Loss()(zeros(4), zeros(4, 1))


@pytest.mark.parametrize("label", [3, -1])
def test_cross_entropy_label_out_of_range(label):
    with pytest.raises(
        IndexError, match=rf"label {label} out of range for 3 classes.*CrossEntropy"
    ):
        nn.CrossEntropyLoss()(zeros(2, 3), symbp.tensor([0, label]))


def test_nll_label_out_of_range():
    with pytest.raises(IndexError, match=r"label 5 out of range for 3 classes.*NLLLoss"):
        nn.NLLLoss()(zeros(2, 3), symbp.tensor([0, 5]))


def test_cross_entropy_float_labels_of_the_wrong_shape():
    # float targets are probabilities [N, C]; a float vector of class ids is a mistake
    with pytest.raises(
        symbp.ShapeError, match=r"class probabilities.*\[2,3\], got \[2\].*integers"
    ):
        nn.CrossEntropyLoss()(zeros(2, 3), symbp.tensor([0.0, 1.0]))


def test_cross_entropy_one_label_per_row():
    with pytest.raises(symbp.ShapeError, match=r"one label per row: input \[2,3\], labels \[3\]"):
        nn.CrossEntropyLoss()(zeros(2, 3), symbp.tensor([0, 1, 2]))
    # an input [C] is one unbatched sample (as PyTorch): its label is a scalar
    with pytest.raises(symbp.ShapeError, match=r"labels \[3\] \(should be \[\]\)"):
        nn.CrossEntropyLoss()(zeros(6), symbp.tensor([0, 1, 2]))


def test_trace_time_shape_error_with_symbolic_batch():
    model = TwoLayers()
    with pytest.raises(symbp.ShapeError) as err:
        symbp.trace(model, np.zeros((8, 4), np.float32))
    msg = str(err.value)
    assert "Linear 'fc2'" in msg and "[B,3]" in msg  # the batch stays symbolic in the message
    with pytest.raises(
        symbp.ShapeError, match=re.escape("shapes [B,3] and [B,2] do not broadcast")
    ):
        symbp.trace(lambda x, y: x + y, np.zeros((8, 3)), np.zeros((8, 2)))


def test_traced_program_run_with_inconsistent_batches():
    from symbp.compiler.reference import evaluate

    traced = symbp.trace(lambda x, y: (x * y).sum(), np.zeros((8, 3)), np.zeros((8, 3)))
    x, y = traced.inputs["x"], traced.inputs["y"]
    with pytest.raises(symbp.ShapeError, match="has B=5, but another input has B=4"):
        evaluate(traced.outputs, {x: np.zeros((4, 3)), y: np.zeros((5, 3))})
    with pytest.raises(symbp.ShapeError, match=re.escape("expects shape [B,3], got [4, 2]")):
        evaluate(traced.outputs, {x: np.zeros((4, 2)), y: np.zeros((4, 2))})


def test_load_state_dict_shape_mismatch():
    model = TwoLayers()
    state = model.state_dict()
    state["fc1.weight"] = np.zeros((4, 3))
    with pytest.raises(  # PyTorch's words; the square weight's transpose is named too
        RuntimeError,
        match=r"size mismatch for fc1.weight: copying a param with shape \[4,3\] from "
        r"checkpoint, the shape in current model is \[3,4\] \(transposed\?\)",
    ):
        model.load_state_dict(state)


def test_load_state_dict_missing_and_unexpected_keys():
    model = TwoLayers()
    with pytest.raises(
        RuntimeError,
        match=r'Missing key\(s\) in state_dict: "fc1.bias", .*\n\tUnexpected key\(s\) in '
        r'state_dict: "extra"',
    ):
        model.load_state_dict({"fc1.weight": np.zeros((3, 4)), "extra": np.zeros(1)})


def test_bad_reshapes_and_dims():
    x = zeros(2, 3)
    with pytest.raises(symbp.ShapeError, match=re.escape("cannot reshape [2,3] to [4,2]")):
        x.reshape(4, 2)
    with pytest.raises(symbp.ShapeError, match=re.escape("cannot reshape [2,3] to [-1, 4]")):
        x.reshape(-1, 4)
    with pytest.raises(
        symbp.ShapeError,
        match=re.escape(
            "sum: dimension out of range (expected to be in range of [-2, 1], but got 3) for a "
            "tensor of shape [2,3]"
        ),
    ):
        x.sum(3)
    with pytest.raises(symbp.ShapeError, match="matmul: inner dimensions differ"):
        x @ zeros(2, 3)


def test_bad_tensors():
    with pytest.raises(TypeError, match="only float tensors can require grad"):
        symbp.tensor([1, 2], requires_grad=True)
    with pytest.raises(TypeError, match="cannot make a tensor"):
        symbp.tensor(["a"])
    with pytest.raises(ValueError, match=re.escape("item() needs a tensor with one element")):
        zeros(2).item()


def test_bad_loss_reduction_and_optimizer_options():
    with pytest.raises(ValueError, match="MSELoss: reduction must be"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="invalid lr=-1"):
        symbp.optim.SGD(nn.Linear(2, 2).parameters(), lr=-1)
    with pytest.raises(TypeError, match="unknown option 'momentun'"):
        symbp.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentun=0.9)
    with pytest.raises(ValueError, match="empty parameter list"):
        symbp.optim.SGD([], lr=0.1)


def test_registering_an_elementwise_name_again_with_another_formula_warns():
    import sympy

    from symbp.compiler import ops

    saved = dict(ops.ELEMENTWISE)
    try:
        first = symbp.elementwise("twice_or_thrice", lambda x: 2 * x)
        x = symbp.tensor([1.5])
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the same formula again: nothing to say
            symbp.elementwise("twice_or_thrice", lambda x: 2 * x)
        with pytest.warns(UserWarning, match="'twice_or_thrice' registered again"):
            symbp.elementwise("twice_or_thrice", lambda x: 3 * x)
        # what the warning announces: the earlier handle now computes the new formula
        assert float(first(x).item()) == 4.5
        assert sympy.Symbol("y") * 3 == ops.ELEMENTWISE["twice_or_thrice"](sympy.Symbol("y"))
    finally:
        ops.ELEMENTWISE.clear()
        ops.ELEMENTWISE.update(saved)
