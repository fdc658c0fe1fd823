"""ONNX export (symbp/onnx_export.py): the inference graph, checked by onnx's checker and run by
onnxruntime (onnx's reference evaluator where onnxruntime does not install), against symbp's
own ``predict`` (compiled) and its eager forward (the NumPy reference), at batch sizes other
than the traced one."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import sympy

import symbp
import symbp.nn.functional as F
from symbp import nn
from symbp.compiler import ops
from symbp.models import digits_cnn
from symbp.onnx_export import ONNX, OPSET, OnnxExportError, onnx_model

# a skip names onnx, never torch: conftest's SYMBP_REQUIRE_TORCH counts only skips whose
# reason names torch (test_onnx_skip_is_no_torch_skip checks the reason's wording)
onnx = pytest.importorskip("onnx")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _runner(model):
    """A function x -> output running ``model`` (a ModelProto) in onnxruntime, or in onnx's
    reference evaluator when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        ref = ReferenceEvaluator(model)
        return lambda x: ref.run(None, {"input": x})[0]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # two cores shared by the whole test run
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return lambda x: session.run(None, {"input": x})[0]


def _eager(net, x):
    net.eval()
    try:
        return net(symbp.tensor(x)).numpy()
    finally:
        net.train()


def _rows(shape, n, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, *shape[1:])).astype(dtype)


def _check_against_eager(net, x, batches=(1, 4, 7), tol=1e-5):
    """Export ``net`` traced on one row of ``x``; onnxruntime gives its eager outputs."""
    model = onnx_model(symbp.compile(net), x[:1])
    run = _runner(model)
    for n in batches:
        xs = _rows(x.shape, n, x.dtype, seed=n)
        want = _eager(net, xs)
        got = run(xs)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=f"batch {n}")
    return model


# ---------------------------------------------------------------- the file and its graph


def test_onnx_skip_is_no_torch_skip():
    from conftest import _TORCH_REASON

    assert not _TORCH_REASON.search("could not import 'onnx': No module named 'onnx'")
    assert not _TORCH_REASON.search("could not import 'onnxruntime': No module named 'x'")


def test_checker_opset_and_dynamic_batch(tmp_path):
    ns = runpy.run_path(str(EXAMPLES / "model_222.py"))
    compiled = symbp.compile(ns["model"])
    path = compiled.export_onnx(tmp_path / "m222.onnx", ns["sample"][0])
    assert path == tmp_path / "m222.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import] == [OPSET] and OPSET >= 17
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 2]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["batch", 2]
    names = {t.name for t in model.graph.initializer}
    assert {"linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"} <= names
    # a Linear is one Gemm: the weight as stored (transB), the bias its C
    assert [n.op_type for n in model.graph.node] == ["Gemm", "Sigmoid"] * 2 + ["Identity"]
    gemm = model.graph.node[0]
    assert list(gemm.input) == ["input", "linear1.weight", "linear1.bias"]
    assert [(a.name, a.i) for a in gemm.attribute] == [("transB", 1)]
    # the tutorial's numbers: out = σ(σ(x W1ᵀ + b1) W2ᵀ + b2) at x = [0.05, 0.10]
    got = _runner(model)(np.array([[0.05, 0.10]] * 3, np.float32))
    np.testing.assert_allclose(got, [[0.75136507, 0.77292847]] * 3, rtol=1e-6)


def test_sample_from_what_was_compiled_or_an_error(tmp_path):
    net = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(OnnxExportError, match="pass a sample input x"):
        symbp.compile(net).export_onnx(tmp_path / "m.onnx")
    with pytest.raises(OnnxExportError, match=r"must end in \.onnx"):
        symbp.compile(net).export_onnx(tmp_path / "m.py", np.zeros((1, 3), np.float32))


def test_float64(float64):
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Softmax(1)).double()
    model = _check_against_eager(net, np.zeros((1, 5)), tol=1e-12)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE


# ---------------------------------------------------------------- the examples against predict


def _example(name):
    if name == "digits_cnn":
        symbp.manual_seed(0)
        net = digits_cnn()
        return net, _rows((1, 1, 8, 8), 1)
    if name == "mlp_10_5_1":
        symbp.manual_seed(0)
        return nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 1)), _rows((1, 10), 1)
    ns = runpy.run_path(str(EXAMPLES / f"{name}.py"))
    return ns["model"], np.asarray(ns["sample"][0])


@pytest.mark.parametrize(
    "name",
    [
        "model_222",
        pytest.param("model_digits", marks=pytest.mark.slow),
        pytest.param("model_cnn", marks=pytest.mark.slow),
        pytest.param("digits_cnn", marks=pytest.mark.slow),
        pytest.param("mlp_10_5_1", marks=pytest.mark.slow),
    ],
)
def test_examples_reproduce_predict(name, tmp_path):
    net, x = _example(name)
    compiled = symbp.compile(net)
    want = compiled.predict(_rows(x.shape, 2, seed=1))  # traced for one row, runs any batch
    compiled.export_onnx(tmp_path / f"{name}.onnx")  # the shape predict was compiled for
    run = _runner(onnx.load(str(tmp_path / f"{name}.onnx")))
    np.testing.assert_allclose(run(_rows(x.shape, 2, seed=1)), want, rtol=1e-5, atol=1e-5)
    for n in (1, 9):  # dynamic batch
        xs = _rows(x.shape, n, seed=n)
        np.testing.assert_allclose(run(xs), compiled.predict(xs), rtol=1e-5, atol=1e-5)


def test_cli_export_onnx(tmp_path, capsys):
    from symbp.cli import main

    out = tmp_path / "cnn.onnx"
    assert main(["export", str(EXAMPLES / "model_cnn.py"), str(out)]) == 0
    assert "ONNX" in capsys.readouterr().out
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    ns = runpy.run_path(str(EXAMPLES / "model_cnn.py"))
    x = _rows((1, 1, 4, 4), 3)
    np.testing.assert_allclose(_runner(model)(x), _eager(ns["model"], x), rtol=1e-5, atol=1e-5)
    used = [n.op_type for n in model.graph.node]
    assert {"Conv", "MaxPool", "Relu", "Gemm"} <= set(used)
    assert "Expand" not in used  # the conv's bias broadcasts in Add, as ONNX broadcasts


# ---------------------------------------------------------------- layers and ops, against eager


def test_batchnorm_pooling_and_softmax_layers():
    symbp.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, stride=2, groups=1),
        nn.BatchNorm2d(3),
        nn.LeakyReLU(0.2),
        nn.AvgPool2d(2),
        nn.Conv2d(3, 4, 1),
        nn.Flatten(),
        nn.Linear(16, 5),
        nn.BatchNorm1d(5),
        nn.GELU(),
        nn.Dropout(0.5),  # off in inference
        nn.Linear(5, 3),
        nn.LogSoftmax(1),
    )
    for bn in (net[1], net[7]):  # running statistics that are not the defaults
        bn.running_mean[:] = np.linspace(-0.5, 0.5, len(bn.running_mean))
        bn.running_var[:] = np.linspace(0.5, 2.0, len(bn.running_var))
    _check_against_eager(net, _rows((1, 2, 8, 8), 1))


class Ops(nn.Module):
    """Many traced ops at once: shaping, indexing, reductions and a cast."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        rng = np.random.default_rng(5)
        self.w = nn.Parameter(rng.standard_normal((6, 2)).astype(np.float32))
        self.b = nn.Parameter(rng.standard_normal(2).astype(np.float32))

    def forward(self, x):
        h = self.fc(x)  # [B, 6]
        parts = [
            h @ self.w + self.b,  # Gemm without transB
            h[:, 1:5:2],  # slice with a step
            symbp.flip(h, [1])[:, :2],
            symbp.roll(h, 2, 1)[:, :2],
            F.pad(h, (1, 2), mode="reflect")[:, :3],
            F.pad(h, (2, 0), value=0.5)[:, :3],
            symbp.index_select(h, 1, symbp.tensor([4, 0, 4])),
            symbp.gather(h, 1, h.argmin(1, keepdim=True)),
            symbp.cumsum(h, 1)[:, -2:],
            h.max(1, keepdim=True).values.expand(-1, 2),
            h.amax(1, keepdim=True) - h.mean(1, keepdim=True),
            h.prod(1, keepdim=True),
            (h.argmax(1, keepdim=True) * 1.0) + h.sum(1, keepdim=True),
            symbp.tril(h.reshape(-1, 2, 3)).reshape(-1, 6)[:, :4],
            h - h.mean(0, keepdim=True),  # a mean over the batch: 1/B in the graph
            (h > 0).float() + symbp.where(h < 0.1, h, -h),
            h.reshape(-1, 3, 2).transpose(1, 2).reshape(-1, 6),
            symbp.scatter_add(h, 1, h.argmax(1, keepdim=True), h[:, :1] * 3),
            h.index_add(1, symbp.tensor([0, 2, 0]), h[:, 3:]),
        ]
        return symbp.cat(parts, 1)


def test_structural_ops():
    symbp.manual_seed(0)
    model = _check_against_eager(Ops(), _rows((1, 6), 1))
    used = {n.op_type for n in model.graph.node}
    want = {"Slice", "Concat", "Pad", "Gather", "GatherElements", "CumSum", "ReduceMax"}
    want |= {"ReduceSum", "ReduceProd", "ArgMax", "Trilu", "Where", "Transpose"}
    assert want | {"ScatterElements"} <= used


def _formula_net(fn):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return fn(self.fc(x) * 2)

    symbp.manual_seed(0)
    return Net()


FORMULAS = {
    "activations": lambda h: symbp.cat(
        [
            F.elu(h),
            F.selu(h),
            F.celu(h, 0.5),
            F.hardtanh(h, -0.5, 0.5),
            F.relu6(h * 4),
            F.hardsigmoid(h * 3),
            F.hardswish(h * 3),
            F.mish(h),
            F.gelu(h, approximate="tanh"),
            F.softplus(h, beta=2),
            F.logsigmoid(h),
            F.softsign(h),
            F.silu(h),
        ],
        1,
    ),
    "math": lambda h: symbp.cat(
        [
            symbp.log1p(h.abs()),
            symbp.expm1(h),
            symbp.atan2(h, h.flip([1]) - 0.3),
            symbp.fmod(h, 0.7),
            symbp.remainder(h, 0.7),
            symbp.hypot(h, h * 0.5),
            symbp.sign(h),
            symbp.trunc(h * 3),
            symbp.round(h * 3),
            symbp.clamp(h, -0.3, 0.4),
            symbp.logaddexp(h, -h),
            symbp.xlogy(h.abs(), h.abs() + 0.5),
            h.sqrt().nan_to_num(0.0),  # NaN where h < 0, then 0
            symbp.lerp(h, h * h, 0.25),
            symbp.sigmoid(h) ** 3 / (1 + h * h) - symbp.exp(-h) * symbp.tanh(h),
            symbp.erf(h) + symbp.cos(h) * symbp.sin(h),
        ],
        1,
    ),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_elementwise_formulas(name):
    _check_against_eager(_formula_net(FORMULAS[name]), _rows((1, 4), 1))


def test_custom_elementwise_ops():
    """A formula (inlined in the graph) and an opaque op with its own derivative: both are
    written as ONNX arithmetic from their SymPy formulas."""
    swish = symbp.elementwise("onnx_swish", lambda x: x / (1 + sympy.exp(-x)))
    bump = symbp.elementwise(
        "onnx_bump",
        lambda x, y: sympy.Piecewise((sympy.exp(-(x**2)) * y, x < 1), (y / x, True)),
        derivative=lambda x, y: (sympy.S.Zero, sympy.S.One),  # a custom backward
    )
    net = _formula_net(lambda h: symbp.cat([swish(h), bump(h, h * h + 1)], 1))
    model = _check_against_eager(net, _rows((1, 4), 1))
    used = [n.op_type for n in model.graph.node]
    assert "Where" in used and "Exp" in used and "Less" in used


# ---------------------------------------------------------------- sorting, running ops, diagonals


def _awkward(shape, n, seed):
    """Rows with what these ops must get right: ties (halves), zeros, negatives, NaN, ±inf."""
    x = np.round(_rows(shape, n, seed=seed) * 2) / 2
    flat = x.reshape(-1)
    flat[1::7], flat[3::11], flat[5::13] = np.nan, np.inf, -np.inf
    return x


def _sign(x):
    return (x > 0).long() - (x < 0).long()  # int64 ties aplenty (NaN: 0)


def _flat(*parts):
    return symbp.cat([p.reshape(p.shape[0], -1).float() for p in parts], 1)


class Circular(nn.Module):
    """A convolution over a torus: circular padding (Conv2d has padding_mode 'zeros' only)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)

    def forward(self, x):
        finite = x.nan_to_num(0.0, 0.0, 0.0)  # a NaN would spread over the convolution
        h = self.conv(F.pad(finite, (2, 1, 1, 3), mode="circular"))
        return _flat(h, F.pad(x[:, 0], (4, 3), mode="circular"))  # up to a period each side


NEW_RULES = {  # op: (a model using it, its input shape, the ONNX operators it is written with)
    "argsort": (
        lambda x: _flat(
            symbp.argsort(x, 1),
            symbp.argsort(x, 1, descending=True),
            symbp.topk(x, 3, 1).indices,  # the first stop positions
            symbp.topk(x, 2, 1, largest=False).values,
            x.median(1, keepdim=True).indices,  # positions from start > 0
            symbp.sort(_sign(x), 1, descending=True).indices,  # int64: one TopK
            symbp.argsort(x > 0, 1),  # bool
        ),
        (1, 9),
        {"TopK", "GatherElements", "IsNaN"},
    ),
    "cumarg": (
        lambda x: _flat(
            *symbp.cummax(x, 2),
            *symbp.cummin(x, 1),
            symbp.cummax(_sign(x), 2).indices,
        ),
        (1, 3, 7),
        {"Where", "GreaterOrEqual", "LessOrEqual", "Concat"},
    ),
    "cumprod": (
        lambda x: _flat(symbp.cumprod(x, 1), symbp.cumprod(_sign(x), 1)),
        (1, 11),
        {"Mul", "Concat"},
    ),
    "diagonal": (
        lambda x: _flat(
            symbp.diagonal(x, 0, 1, 2), symbp.diagonal(x, 1, 2, 1), symbp.diagonal(x, -2, 1, 2)
        ),
        (1, 3, 4),
        {"Gather", "Transpose"},
    ),
    "diag_embed": (
        lambda x: _flat(
            symbp.diag_embed(x), symbp.diag_embed(x, 1, 1, 3), symbp.diag_embed(x, -1, 3, 1)
        ),
        (1, 2, 3),
        {"Gather", "Pad", "Transpose"},
    ),
    "pad": (Circular, (1, 2, 4, 5), {"Slice", "Concat", "Conv"}),
}


@pytest.mark.parametrize("op", sorted(NEW_RULES))
def test_sorting_running_and_diagonal_ops_reproduce_predict(op):
    """onnxruntime against symbp's compiled predict (and its eager forward), float32 to 1e-5,
    on values where the rules could go wrong: ties, zeros, negatives, NaN and ±inf."""
    fn, shape, written_with = NEW_RULES[op]
    symbp.manual_seed(0)
    net = fn() if isinstance(fn, type) else Layer(fn)
    compiled = symbp.compile(net)
    model = onnx_model(compiled, np.zeros(shape, np.float32))
    used = {n.op_type for n in model.graph.node}
    assert written_with <= used and not used & {"Loop", "Scan"}, used
    run = _runner(model)
    for n in (1, 6):
        xs = _awkward(shape, n, seed=n)
        want = compiled.predict(xs, check_finite=False)
        got = run(xs)
        assert got.shape == want.shape and got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"batch {n}")
        with np.errstate(invalid="ignore"):  # NumPy's inf · 0 in the eager reference
            eager = _eager(net, xs)
        np.testing.assert_allclose(got, eager, rtol=1e-5, atol=1e-5)


def test_argsort_puts_nan_past_the_infinities():
    """TopK leaves NaN's place open: symbp's (NaN the largest, after +inf ascending, before it
    descending, ties by position) holds in any runtime, by construction."""
    net = Layer(lambda x: _flat(symbp.argsort(x, 1), symbp.argsort(x, 1, descending=True)))
    inf, nan = np.inf, np.nan
    x = np.array([[nan, inf, 1.0, nan, -inf, inf, 1.0, nan]], np.float32)
    got = _runner(onnx_model(symbp.compile(net), x))(x)
    want = [[4, 2, 6, 1, 5, 0, 3, 7], [0, 3, 7, 1, 5, 2, 6, 4]]
    np.testing.assert_array_equal(got.reshape(2, 8), want)
    np.testing.assert_array_equal(_eager(net, x).reshape(2, 8), want)  # symbp's own order


def test_cumprod_of_zeros_and_negatives_is_exact():
    """Products, never exp(cumsum(log|x|)): zeros stay zero, signs alternate, integers exact."""
    net = Layer(lambda x: symbp.cumprod(x, 1))
    x = np.array([[-2.0, 3.0, -0.5, 0.0, 7.0, -1.0, 2.0]], np.float32)
    got = _runner(onnx_model(symbp.compile(net), x))(x)
    np.testing.assert_array_equal(got, [[-2.0, -6.0, 3.0, 0.0, 0.0, -0.0, -0.0]])


# ---------------------------------------------------------------- what ONNX cannot express


def test_every_op_has_an_onnx_row():
    assert sorted(set(ops.OPS) - set(ONNX)) == []
    assert sorted(set(ONNX) - set(ops.OPS)) == []


class Layer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_unsupported_op_names_op_and_layer():
    """A running product over the batch: its scan needs a static length, the batch has none."""
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), Layer(lambda x: symbp.cumprod(x, 0)))
    with pytest.raises(OnnxExportError, match=r"op 'cumprod' in layer '1'.*static length"):
        onnx_model(symbp.compile(net), np.zeros((1, 3), np.float32))


def test_unsupported_function_names_it():
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 3), nn.Tanh(), Layer(lambda x: symbp.erfinv(x * 0.5)))
    with pytest.raises(OnnxExportError, match=r"in layer '2'.*the function erfinv"):
        onnx_model(symbp.compile(net), np.zeros((1, 3), np.float32))


def test_training_mode_dropout_is_an_error():
    net = nn.Sequential(nn.Linear(3, 3), Layer(lambda x: F.dropout(x, 0.5, training=True)))
    with pytest.raises(OnnxExportError, match=r"dropout .* in training mode"):
        onnx_model(symbp.compile(net), np.zeros((1, 3), np.float32))


def test_missing_onnx_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # import onnx fails
    with pytest.raises(OnnxExportError, match=r"pip install onnx"):
        onnx_model(symbp.compile(nn.Linear(2, 2)), np.zeros((1, 2), np.float32))


def test_reference_evaluator_agrees():
    """onnx's own reference evaluator, a second runtime, runs the same file to the same
    numbers (and is what the tests fall back on where onnxruntime does not install)."""
    from onnx.reference import ReferenceEvaluator

    ns = runpy.run_path(str(EXAMPLES / "model_cnn.py"))
    model = onnx_model(symbp.compile(ns["model"]), ns["sample"][0])
    x = _rows((1, 1, 4, 4), 5)
    got = ReferenceEvaluator(model).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, _eager(ns["model"], x), rtol=1e-5, atol=1e-6)


class Embedding(nn.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = nn.Parameter(rng.standard_normal((10, 3)).astype(np.float32))

    def forward(self, x):
        return self.w[x].reshape(x.shape[0], -1).tanh()


def test_integer_input_lookup_table():
    """An int64 input (token ids) gathering rows of a table: Gather, then the batch is still
    dynamic through the reshape."""
    net = Embedding()
    model = onnx_model(symbp.compile(net), np.array([[1, 2, 3, 9]]))
    run = _runner(model)
    for n in (1, 6):
        xs = np.random.default_rng(n).integers(-10, 10, (n, 4))  # negative ids count from the end
        np.testing.assert_allclose(run(xs), _eager(net, xs), rtol=1e-6, atol=1e-6)
    assert [n.op_type for n in model.graph.node][:1] == ["Gather"]


def test_several_outputs_are_an_error():
    net = Layer(lambda x: (x.tanh(), x.exp()))
    with pytest.raises(OnnxExportError, match="returns 2 tensors"):
        onnx_model(symbp.compile(net), np.zeros((1, 3), np.float32))
