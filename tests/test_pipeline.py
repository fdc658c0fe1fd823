"""symbp.pipeline: the compiler's named stages, what SYMBP_DEBUG prints of each, the Program
they return, and the inference program simplified as the training program is."""

from __future__ import annotations

import numpy as np
import pytest

import symbp
from symbp import nn, pipeline
from symbp.compiler import cache, runtime
from symbp.compiler.lower import ParamSpec, lower_predict


def _mlp(width: int = 6, dtype: type = np.float32):
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))
    if dtype == np.float64:
        net = net.double()
    x = np.random.default_rng(1).standard_normal((7, 4)).astype(dtype)
    y = np.array([0, 1, 2, 1, 0, 2, 1])
    return net, x, y


def _compile_both(width: int):
    net, x, y = _mlp(width)
    opt = symbp.optim.SGD(net.parameters(), lr=0.1)
    train = pipeline.compile_train(net, nn.CrossEntropyLoss(), opt, x, y)
    predict = pipeline.compile_predict(net, x)
    return train, predict


@pytest.fixture
def miss(monkeypatch):
    """Every lookup misses, so every stage runs (the session's cache keeps Numba's kernels and
    the measured product choice; nothing here calls a program, so Numba compiles nothing)."""
    monkeypatch.setattr(cache, "read_entry", lambda key, directory=None: None)


@pytest.mark.parametrize("level", [0, 1, 2, 3, 4])
def test_each_debug_level_prints_what_it_says(level, miss, monkeypatch, capsys):
    monkeypatch.setenv("SYMBP_DEBUG", str(level))
    train, predict = _compile_both(5 + level)
    out = capsys.readouterr().out
    if level == 0:
        assert out == ""
        return
    # 1: each stage's name and time, and the cache's answer
    for stage in ("trace", "cache lookup", "derive", "simplify", "store for backward", "lower"):
        assert f"symbp training program: {stage}: " in out
    for stage in ("trace", "simplify", "lower", "load"):
        assert f"symbp inference program: {stage}: " in out
    assert f"key {train.key}: not in the cache" in out and str(train) in out
    # 2: the traced forward IR and the derived backward IR
    shown = {
        2: ["traced forward IR\n{ lambda", "derived backward IR\n{ lambda", "in (loss="],
        3: ["simplified program\n{ lambda", "kernel schedule\nforward", *_kernel_lines(train)],
        4: ["generated source (", "def train(", "def predict(", train.source, predict.source],
    }
    for at, texts in shown.items():
        for text in texts:
            assert (text in out) == (level >= at), (level, text)


def test_a_cache_hit_says_so(monkeypatch, capsys):
    train, _ = _compile_both(12)  # now in the cache, if it was not
    monkeypatch.setenv("SYMBP_DEBUG", "1")
    again, _ = _compile_both(12)
    out = capsys.readouterr().out
    assert again.hit and again.key == train.key
    assert f"key {train.key}: found in the cache" in out
    assert "derive" not in again.timings and "symbp training program: derive" not in out


def test_a_bad_debug_level_is_an_error_naming_it(monkeypatch):
    monkeypatch.setenv("SYMBP_DEBUG", "verbose")
    with pytest.raises(ValueError, match="SYMBP_DEBUG must be a level"):
        pipeline.debug_level()


def test_the_program_carries_its_source_and_spec_apart(miss):
    train, predict = _compile_both(6)
    for prog in (train, predict):
        assert "SPEC =" not in prog.source and prog.spec == prog.module.SPEC
        # the module's text is the source and its SPEC, nothing more
        with open(prog.module.__file__) as f:
            body = f.read().partition("\n")[2]
        assert body == runtime.module_text(prog.source, prog.spec)
        assert runtime.source(prog.key) == prog.source
    assert train.kind == "train" and predict.kind == "predict" and not train.hit
    assert train.title == "Sequential trained on CrossEntropyLoss with SGD"
    assert [p.name for p in train.args] == [p.name for p in predict.args]


def _kernel_lines(prog: pipeline.Program) -> list[str]:
    return [line for line in prog.schedule if line.startswith("  ")]


def _kernels(schedule: list[str]) -> list[str]:
    return [line.split(None, 1)[1] for line in schedule if line.startswith("  ")]


def test_inference_fuses_bias_and_relu_as_training_does(miss):
    net, x, _ = _mlp()
    predict = pipeline.compile_predict(net, x)
    fused = _kernels(predict.schedule)
    # the product, bias + ReLU in one loop, the product, the bias: as in training's forward
    assert any("= relu(layer0_bias + x_W1)" in k for k in fused), fused
    assert len(fused) == 4
    # the traced graph lowered as it is, unsimplified, as inference was before: one loop more
    traced = pipeline.trace_inference(net, x[:1])
    params = [ParamSpec(p.name, p.node, False) for p in traced.params.values()]
    (xnode,) = traced.inputs.values()
    raw = lower_predict("raw", traced.outputs[0], params, xnode)
    assert len(_kernels(pipeline.schedule_lines(raw.spec))) == len(fused) + 1


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_simplified_inference_matches_eager_and_torch(dtype, tol):
    net, x, _ = _mlp(6, dtype)
    model = symbp.compile(net)
    got = model.predict(x)
    assert got.dtype == dtype
    eager = net(symbp.tensor(x)).numpy()
    np.testing.assert_allclose(got, eager, rtol=tol, atol=tol)
    torch = pytest.importorskip("torch")
    ref = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    ref = ref.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for i in (0, 2):
            ref[i].weight.copy_(torch.from_numpy(net[i].weight.numpy().copy()))
            ref[i].bias.copy_(torch.from_numpy(net[i].bias.numpy().copy()))
        want = ref(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
