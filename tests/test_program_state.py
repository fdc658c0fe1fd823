"""What belongs to one program and not to the process: the layer labels of its nodes, the names
of its parameters, the names its generated code takes (symbp issue #15).

IR nodes are interned, so two models (or one layer called twice) can share a node; whatever a
program says about its nodes (which layer made them, what its parameters are called) must come
from its own trace, never from whichever model happened to touch the node first.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import symbp
from symbp import nn


class Named(nn.Module):
    """ReLU then Linear, as ``nn.Sequential(nn.ReLU(), nn.Linear(3, 1))``, other names."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU()
        self.fc = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc(self.act(x))


def _two_models():
    """Two live models whose graphs share the node relu(x) (the same input, no parameter)."""
    return nn.Sequential(nn.ReLU(), nn.Linear(3, 1)), Named()


def test_two_models_sharing_a_node_each_name_it_after_their_own_layer():
    seq, named = _two_models()
    x = symbp.tensor(np.array([[0.5, 1.0, -2.0]], np.float32))
    loss_seq, loss_named = seq(x).sum(), named(x).sum()
    assert loss_seq.node.src[0].src[0].src[0] is loss_named.node.src[0].src[0].src[0]  # shared
    legend = str(symbp.formulas(loss_seq)).split("where")[1]
    assert re.search(r"h\s+output of layer 0\b", legend), legend
    legend = str(symbp.formulas(loss_named)).split("where")[1]
    assert re.search(r"h\s+output of act\b", legend), legend
    assert "layer 0" not in legend
    # and the first model, asked again after the second, still reads its own
    assert re.search(r"h\s+output of layer 0\b", str(symbp.formulas(seq(x).sum())))


def test_traces_keep_their_own_labels():
    seq, named = _two_models()
    shape = np.zeros((2, 3), np.float32)
    traced_seq = symbp.trace(lambda x: seq(x).sum(), shape)
    traced_named = symbp.trace(lambda x: named(x).sum(), shape)
    relu = next(n for n, label in traced_seq.labels.items() if label == "0")
    assert traced_named.labels[relu] == "act"
    assert traced_seq.labels[relu] == "0"


def test_compiled_programs_name_buffers_after_their_own_layers(tmp_cache):
    seq, named = _two_models()
    x = np.array([[0.5, 1.0, -2.0], [1.0, 2.0, 3.0]], np.float32)
    y = np.zeros((2, 1), np.float32)
    alive = [symbp.trace(lambda x: net(x).sum(), x) for net in (seq, named)]  # graphs both live
    sources = []
    for net in (named, seq):
        model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
        model.loss_and_grads(x, y)
        sources.append(model.source)
    # relu(x) is stored for the product: its buffer is named after the layer that made it
    assert re.search(r"\bact_ew\d+ = carve\(", sources[0])
    assert "layer0_" not in sources[0]
    assert re.search(r"\blayer0_ew\d+ = carve\(", sources[1])
    assert "act_" not in sources[1]
    assert alive


def test_gradcheck_says_which_of_its_own_layers_sits_on_a_kink():
    """The labels reach gradcheck's messages from the graph it ran (its own float64 copy)."""
    seq, named = _two_models()
    for net in (seq, named):
        net.double()
    x = symbp.tensor(np.array([[0.0, 1.0, -2.0]]))  # relu's kink at x[0, 0]
    messages = {}
    for net in (named, seq):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            symbp.check.gradcheck(net, lambda out: out.sum(), x, wrt_inputs=True)
        messages[net] = " ".join(str(w.message) for w in caught)
    assert "relu in 'act'" in messages[named], messages[named]
    assert "relu in '0'" in messages[seq], messages[seq]


# Names the generated code writes itself (its signature, arenas, loop locals, imported helpers,
# hyperparameter locals, index variables): a parameter called like one must still train.
CLASHING = (
    "X", "Y", "order", "n_epochs", "batch_size", "mode", "seed", "W", "work", "iwork", "hyper",
    "ints", "losses", "t", "N", "B", "epoch", "batch", "start", "total", "value", "carved",
    "r", "acc", "v", "np", "math", "f32", "f64", "carve", "njit", "i", "j", "k", "i0", "lr",
    "momentum", "x", "y", "loss", "OK",
)  # fmt: skip


class Clashing(nn.Module):
    """A model whose parameters are named after the generated code's own names."""

    def __init__(self, n: int):
        super().__init__()
        for name in CLASHING:
            setattr(self, name, nn.Parameter(symbp.randn(n) * 0.1 + 1.0))
        self.fc = nn.Linear(n, 2)

    def forward(self, x):
        for name in CLASHING:
            x = x + getattr(self, name)
        return self.fc(x)


def test_parameters_named_like_the_generated_codes_own_names_train_like_pytorch(tmp_cache):
    import torch

    symbp.manual_seed(0)
    net = Clashing(3).double()
    theirs = {
        name: torch.tensor(p.numpy(), requires_grad=True) for name, p in net.named_parameters()
    }
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    opt = symbp.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    model = symbp.compile(net, nn.MSELoss(), opt)
    topt = torch.optim.SGD(list(theirs.values()), lr=0.05, momentum=0.9)
    for _ in range(3):
        got = model.step(x, y)
        h = torch.tensor(x)
        for name in CLASHING:
            h = h + theirs[name]
        out = h @ theirs["fc.weight"].T + theirs["fc.bias"]
        tloss = torch.nn.functional.mse_loss(out, torch.tensor(y))
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert got == pytest.approx(tloss.item(), rel=1e-10)
    for name, p in net.named_parameters():
        np.testing.assert_allclose(
            p.numpy(), theirs[name].detach().numpy(), rtol=1e-10, err_msg=name
        )
    np.testing.assert_allclose(
        model.predict(x), net(symbp.tensor(x)).numpy(), rtol=1e-12, atol=1e-14
    )


def _mlp():
    symbp.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def _train_program(net):
    """The training program's cache key and generated source (lowered here, not read from
    the cache, which would hand the second model the first one's text): the stages of
    ``pipeline.compile_train``, one by one."""
    from symbp import pipeline
    from symbp.api import differentiate, simplified
    from symbp.compiler.lower import lower_train
    from symbp.nn.conv import program_inputs

    loss_fn, opt = nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1)
    x, y = np.zeros((1, 3), np.float32), np.zeros((1, 1), np.float32)
    traced = symbp.trace(lambda a, b: loss_fn(net(a), b), x, y)
    params = list(traced.params.values())
    buffers, seeds = program_inputs(net, traced)
    key = pipeline.train_key(traced, params, buffers, seeds, opt)
    derived = differentiate(traced.outputs[0], [p.node for p in params])
    derived = pipeline.store_for_backward(simplified(derived))
    title = pipeline.train_title(net, loss_fn, opt)
    args = pipeline.train_lowering(title, traced, params, derived, buffers, seeds, opt)
    low = lower_train(*args, labels=traced.labels)
    return key, low.source, low.spec


def test_a_model_built_while_an_identical_one_is_alive_has_the_same_program():
    first = _mlp()
    key, source, spec = _train_program(first)
    second = _mlp()  # its parameters' leaves must differ from the first's: tagged inside
    assert second[0].weight.node is not first[0].weight.node
    key2, source2, spec2 = _train_program(second)
    assert key2 == key
    assert source2 == source
    assert spec2 == spec
    assert not re.search(r"\w#\d", source)  # no tag of a live model's parameter
    assert [p["name"] for p in spec["params"]] == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_users_see_the_models_own_parameter_names_while_another_model_is_alive():
    first, second = _mlp(), _mlp()
    names = ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = np.zeros((2, 3), np.float32)
    first(symbp.tensor(x))  # names its parameters first: the second's leaves are tagged
    traced = symbp.trace(lambda x: second(x).sum(), x)
    assert second[0].weight.node is not first[0].weight.node  # two leaves, one label
    assert second[0].weight.node.arg.name == first[0].weight.node.arg.name == "0.weight"
    assert [p.name for p in second.parameters()] == names
    assert list(traced.params) == names
    listing = str(traced) + str(
        symbp.derive(traced.outputs[0], [p.node for p in second.parameters()])
    )
    assert "0.weight:f32[4,3]" in listing and "grad_0.weight" in listing
    assert not re.search(r"\w#\d", listing)
    loss = second(symbp.tensor(x)).sum()
    assert not re.search(r"\w#\d", str(symbp.formulas(loss)))
    graph = symbp.computation_graph(loss)
    assert set(graph.outputs) == {"loss", *(f"∂loss/∂{n}" for n in names)}
    assert not re.search(r"\w#\d", graph.to_dot())
    report = symbp.check.gradcheck(None, lambda x: (second(x) ** 2).sum(), x.astype(np.float64))
    assert [r.name for r in report.rows if r.kind == "parameter"] == names
    assert first is not second


def test_the_cache_key_names_the_lowerings_choices_handed_to_it(monkeypatch):
    """The cache imports nothing above it: the lowering hands the key what it chose on this
    machine (the products' choice, the BLAS), and a key made under another choice differs."""
    from symbp.compiler import cache
    from symbp.compiler.lower import tuning

    keys = {}
    for pin in ("own", "blas"):
        monkeypatch.setenv(tuning.ENV, pin)
        assert f"products=pinned:{tuning.pinned()}" in tuning.cache_token()
        keys[pin] = _train_program(_mlp())[0]
    assert keys["own"] != keys["blas"]
    assert "products" not in cache.versions() and "symbp=" in cache.versions()


def test_a_parameters_leaf_is_its_identity_and_its_name_only_a_label():
    """Leaves of parameters are told apart by an identity object (``ir.Param``), not by their
    names: renaming one changes no node, two of one name and shape are two leaves, a copy is a
    leaf of its own, and nothing in the process keeps a registry of names."""
    import copy

    from symbp.compiler.ir import Param, shown_names
    from symbp.tensor import Parameter

    assert not hasattr(Parameter, "_registry")
    a, b = nn.Parameter(np.ones(3)), nn.Parameter(np.ones(3))
    a.rename("w")
    b.rename("w")
    assert isinstance(a.node.arg, Param) and a.node.arg.name == "w"
    assert a.node is not b.node and a.node.arg is not b.node.arg
    leaf = a.node
    a.rename("v")
    assert a.node is leaf and a.name == "v" == str(leaf.arg)
    c = copy.deepcopy(a)
    assert c.name == "v" and c.node is not a.node
    assert copy.copy(a).node is not a.node  # a shallow copy is a parameter of its own too
    # shown in one program, the second of a name is tagged; a leaf listed twice reads the same
    assert shown_names([b.node.arg, a.node.arg, c.node.arg, a.node.arg]) == ["w", "v", "v#2", "v"]
    assert Parameter.of_leaf(a.node) is a.node.arg
    assert Parameter.of_leaf(symbp.tensor(np.ones(3)).node) is None


def test_two_models_of_one_name_in_one_program_are_told_apart_only_when_shown():
    """Two same-named models in one loss: their parameters stay two leaves (their gradients
    differ), shown as 0.weight and 0.weight#2 only because the program holds both."""
    first, second = _mlp(), _mlp()
    with symbp.no_grad():
        for p in second.parameters():
            p.mul_(2.0)
    x = symbp.tensor(np.ones((2, 3), np.float32))
    first(x), second(x)  # each names its parameters
    traced = symbp.trace(lambda x: (first(x) - second(x)).sum(), np.ones((2, 3), np.float32))
    assert len(traced.params) == 8
    assert "0.weight" in traced.params and "0.weight#2" in traced.params
    assert traced.params["0.weight"] is first[0].weight
    assert traced.params["0.weight#2"] is second[0].weight


def test_what_a_layer_calls_its_loops_step_is_the_programs_not_the_processes():
    """An LSTM's step names (carry h, c; gates i, f, g, o) travel with its trace, keyed by its
    scan node (``Traced.steps``), not in a table of the process keyed by interned nodes."""
    from symbp.compiler import ir

    assert not hasattr(ir, "STEP_NAMES")
    symbp.manual_seed(0)
    lstm = nn.LSTM(2, 3, batch_first=True)
    traced = symbp.trace(lambda x: lstm(x)[0].sum(), np.zeros((1, 4, 2), np.float32))
    ((scan, names),) = traced.steps.items()
    assert scan.op == "scan" and names == {"carry": ("h", "c"), "gates": ("i", "f", "g", "o")}
    text = str(symbp.formulas(traced))
    assert "c_t" in text and "f_t" in text, text


def test_a_loops_step_is_generated_with_the_formulas_names(tmp_cache):
    """The buffers of an LSTM's step (its scan body) are named as the formulas name them: the
    gates' pre-activation a, the gates i, f, g, o (stored for the adjoint), the new c and h,
    h at the step before; not by the kind of kernel (ew0_1, copy0_1) as they were."""

    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.fc = nn.LSTM(3, 5, batch_first=True), nn.Linear(5, 4)

        def forward(self, x):
            return self.fc(self.rnn(x)[0]).sum(1)

    symbp.manual_seed(0)
    net = Seq()
    x, y = np.zeros((4, 7, 3), np.float32), np.zeros(4, np.int64)
    opt = symbp.optim.SGD(net.parameters(), lr=0.1)
    source = symbp.compile(net, nn.CrossEntropyLoss(), opt).build(x, y).source
    body = source[source.index("def scan_body(") :]
    body = body[: body.index("\n\n")]
    head = body.splitlines()[0]
    for name in ("h_prev", "a", "c", "h"):
        assert re.search(rf"\b{name}\b", head), head
    for gate in "ifgo":
        assert re.search(rf"\bscan\d*_{gate} = carve\(", body), gate
    assert re.search(r"# c:f32\[B,5\] = \S+ ⊙ scan_carry\[:B, 5:10\] \+", body), body
    assert not re.search(r"\b(ew|copy)\d+_\d+\b", head), head
