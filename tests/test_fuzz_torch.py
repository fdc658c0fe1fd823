"""Differential fuzz: symbp's eager and compiled training against PyTorch, case by seed.

Each case draws, from ``numpy.random.default_rng(seed)``, a small MLP or CNN (every activation,
optionally batch norm), a loss (every loss, each reduction), an optimizer with random options
(every optimizer, every option), and a few training steps, between which it may change the
optimizer's options as a PyTorch user would (``opt.param_groups[0]["momentum"] = 0.9``). Then
PyTorch, symbp eager (``loss.backward(); opt.step()``) and symbp compiled (``model.step``) train
the same model from the same weights in float64; losses and parameters after every step must
agree to ``RTOL``.

A case's id is its seed: ``pytest tests/test_fuzz_torch.py -k seed_17`` replays case 17 (with
more cases also 170-179; the node id ``test_training_matches_torch[seed_17]`` is exact), and
``describe(17)`` says what it is. ``SYMBP_FUZZ_CASES=500`` runs 500 cases (default
``DEFAULT_CASES``); a seed draws the same case whatever the number of cases.

Compiling costs seconds per new program, so only every ``COMPILED_EVERY``-th case trains
compiled too, on one of a few fixed architectures (``COMPILED_ARCHS``, in turn; its weights,
data, optimizer, options and their changes stay random), and all cases share one cache
directory: the default run compiles a handful of small MLP programs (batch norm comes at
seed 32, the CNN at 48).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

import symbp
from symbp import nn

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("tmp_cache")

DEFAULT_CASES = 32
N_CASES = int(os.environ.get("SYMBP_FUZZ_CASES", DEFAULT_CASES))
RTOL, ATOL = 1e-9, 1e-12

# activation name -> (symbp layer, torch layer); the softmaxes act along the features
ACTIVATIONS: dict[str, tuple[Any, Any]] = {
    "relu": (nn.ReLU, torch.nn.ReLU),
    "sigmoid": (nn.Sigmoid, torch.nn.Sigmoid),
    "tanh": (nn.Tanh, torch.nn.Tanh),
    "gelu": (nn.GELU, torch.nn.GELU),
    "silu": (nn.SiLU, torch.nn.SiLU),
    "softplus": (nn.Softplus, torch.nn.Softplus),
    "identity": (nn.Identity, torch.nn.Identity),
    "softmax": (lambda: nn.Softmax(-1), lambda: torch.nn.Softmax(-1)),
    "logsoftmax": (lambda: nn.LogSoftmax(-1), lambda: torch.nn.LogSoftmax(-1)),
}
ELEMENTWISE = [a for a in ACTIVATIONS if "softmax" not in a]
LOSSES = ["mse", "l1", "bce", "bce_logits", "cross_entropy", "cross_entropy_probs", "nll"]
OPTIMIZERS = ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad"]

# The compiled half's architectures, every structural choice fixed (kind, activations, loss,
# reduction, widths, batch norm; a CNN's conv and pool), so that their programs are shared
# between cases through the cache and the default run stays short; weights, data, the
# optimizer, its options and their changes stay random.
COMPILED_ARCHS: list[dict[str, Any]] = [
    {"kind": "mlp", "acts": ["tanh", "relu"], "loss": "mse", "widths": [3, 4, 3, 2]},
    {"kind": "mlp", "acts": ["silu"], "loss": "bce_logits", "widths": [2, 3, 1],
     "reduction": "sum"},
    {"kind": "mlp", "acts": ["gelu"], "loss": "cross_entropy", "widths": [3, 4, 3],
     "batchnorm": True},  # (batch norm programs compile slowly: not in the default run)
    {"kind": "cnn", "acts": ["relu"], "loss": "cross_entropy", "widths": [1, 2, 3], "image": 5,
     "conv": (2, 1, 1), "pool": "max"},
]  # fmt: skip
COMPILED_EVERY = 16  # seeds 0, 16, 32 ... run compiled too (seconds per new program)


# ---------------------------------------------------------------- drawing a case


@dataclass
class Case:
    seed: int
    kind: str  # "mlp" or "cnn"
    acts: list[str]
    loss: str
    reduction: str
    widths: list[int]  # MLP: features in, hidden..., out; CNN: channels, conv out, classes
    image: int = 0  # CNN: input height = width
    conv: tuple[int, int, int] = (3, 1, 0)  # CNN: kernel, stride, padding
    pool: str = "none"  # CNN: "max", "avg", "adaptive" or "none"
    batchnorm: bool = False
    batch: int = 4
    opt: str = "SGD"
    options: dict[str, Any] = field(default_factory=dict)
    changes: dict[int, dict[str, Any]] = field(default_factory=dict)  # before step k: new options
    steps: int = 3


def _options(rng: np.random.Generator, opt: str) -> dict[str, Any]:
    """Random options for ``opt`` that PyTorch accepts at construction."""

    def maybe(p: float, value: Any, default: Any) -> Any:
        return value if rng.random() < p else default

    lr = float(rng.choice([0.01, 0.05, 0.1]))
    o: dict[str, Any] = {"lr": lr, "maximize": bool(rng.random() < 0.2)}
    o["weight_decay"] = maybe(0.4, float(rng.choice([0.01, 0.1, 0.5])), 0.0)
    if opt == "SGD":
        o["momentum"] = maybe(0.6, float(rng.choice([0.5, 0.9])), 0.0)
        o["nesterov"] = bool(o["momentum"] and rng.random() < 0.4)
        o["dampening"] = 0.0 if o["nesterov"] else maybe(0.4, float(rng.choice([0.1, 0.5])), 0.0)
    elif opt in ("Adam", "AdamW"):
        o["betas"] = maybe(0.5, (float(rng.choice([0.5, 0.8])), float(rng.choice([0.9, 0.99]))),
                           (0.9, 0.999))  # fmt: skip
        o["eps"] = maybe(0.3, 1e-3, 1e-8)
        o["amsgrad"] = bool(rng.random() < 0.4)
        if opt == "AdamW" and rng.random() < 0.5:
            del o["weight_decay"]  # AdamW's own default, 0.01
    elif opt == "RMSprop":
        o["alpha"] = maybe(0.5, float(rng.choice([0.5, 0.9])), 0.99)
        o["eps"] = maybe(0.3, 1e-3, 1e-8)
        o["momentum"] = maybe(0.5, float(rng.choice([0.5, 0.9])), 0.0)
        o["centered"] = bool(rng.random() < 0.5)
    else:
        o["lr_decay"] = maybe(0.5, float(rng.choice([0.01, 0.1])), 0.0)
        o["eps"] = maybe(0.3, 1e-3, 1e-10)
        o["initial_accumulator_value"] = maybe(0.5, float(rng.choice([0.1, 1.0])), 0.0)
    return o


def _change(rng: np.random.Generator, opt: str, now: dict[str, Any], first: dict[str, Any]):
    """One mid-run change PyTorch supports: a new value, or a switch turned on or off (a
    switch whose state PyTorch creates only at the first step, amsgrad, centered and RMSprop's
    momentum, is turned back on only if it was on then)."""
    choices: list[tuple[str, Any]] = [
        ("lr", float(rng.choice([0.02, 0.2]))),
        ("maximize", not now.get("maximize", False)),
        ("weight_decay", 0.0 if now.get("weight_decay", 1.0) else 0.2),
        ("weight_decay", float(rng.choice([0.05, 0.3]))),
    ]
    if opt == "SGD":
        choices += [
            ("momentum", 0.0 if now["momentum"] else 0.8),
            ("momentum", 0.7),
            ("dampening", float(rng.choice([0.0, 0.3]))),
            ("nesterov", not now["nesterov"]),
        ]
    elif opt in ("Adam", "AdamW"):
        choices += [("betas", (0.7, 0.95)), ("eps", 1e-4)]
        if first["amsgrad"]:
            choices.append(("amsgrad", not now["amsgrad"]))
    elif opt == "RMSprop":
        choices += [("alpha", 0.8), ("eps", 1e-4)]
        if first["centered"]:
            choices.append(("centered", not now["centered"]))
        if first["momentum"]:
            choices.append(("momentum", 0.0 if now["momentum"] else 0.6))
    else:
        choices += [("lr_decay", 0.2), ("eps", 1e-4)]
    name, value = choices[int(rng.integers(len(choices)))]
    return name, value


def draw(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    kind = "cnn" if rng.random() < 0.25 else "mlp"
    pool = ELEMENTWISE if kind == "cnn" else list(ACTIVATIONS)
    acts = [str(rng.choice(pool)) for _ in range(int(rng.integers(1, 3)))]
    loss = str(rng.choice(LOSSES))
    case = Case(seed, kind, acts, loss, str(rng.choice(["mean", "sum"])), [])
    classes = int(rng.integers(2, 4))
    out = 1 if loss in ("bce", "bce_logits") and rng.random() < 0.5 else classes
    if kind == "mlp":
        case.widths = [int(rng.integers(2, 5)), *(int(rng.integers(2, 5)) for _ in acts), out]
    else:
        case.acts = case.acts[:1]
        case.widths = [int(rng.integers(1, 3)), int(rng.integers(2, 4)), out]
        case.image = int(rng.integers(5, 7))
        case.conv = (int(rng.integers(2, 4)), int(rng.integers(1, 3)), int(rng.integers(0, 2)))
        case.pool = str(rng.choice(["max", "avg", "adaptive", "none"]))
    case.batchnorm = bool(rng.random() < 0.25)
    if seed % COMPILED_EVERY == 0:  # one of the shared architectures (the draws above kept
        # so that the rest of the case is drawn from the same stream either way)
        arch = COMPILED_ARCHS[(seed // COMPILED_EVERY) % len(COMPILED_ARCHS)]
        case.reduction, case.batchnorm = "mean", False
        for k, v in arch.items():
            setattr(case, k, list(v) if isinstance(v, list) else v)
    case.batch = int(rng.integers(2, 6))
    case.opt = str(rng.choice(OPTIMIZERS))
    case.options = _options(rng, case.opt)
    case.steps = int(rng.integers(3, 6))
    now = _torch_like_options(case.opt, case.options)
    first = dict(now)
    compiled = seed % COMPILED_EVERY == 0  # the few compiled cases: more changes, at least one
    when = [k for k in range(1, case.steps) if rng.random() < (0.75 if compiled else 0.5)]
    for k in when or ([1] if compiled else []):
        name, value = _change(rng, case.opt, now, first)
        case.changes[k] = {name: value}
        now[name] = value
    return case


def _torch_like_options(opt: str, options: dict[str, Any]) -> dict[str, Any]:
    """All of a group's options as PyTorch fills them in (what a change is drawn against)."""
    group = getattr(torch.optim, opt)([torch.zeros(1, requires_grad=True)], **options)
    return dict(group.param_groups[0], params=None)


def describe(seed: int) -> str:
    return repr(draw(seed))


# ---------------------------------------------------------------- the model, twice


def _layers(case: Case, lib: Any) -> list[Any]:
    """The case's layers in symbp (``lib`` is symbp.nn) or torch (torch.nn), same order."""
    which = 0 if lib is nn else 1
    act = [ACTIVATIONS[a][which] for a in case.acts]
    f64 = {"dtype": np.float64} if lib is nn else {"dtype": torch.float64}
    layers: list[Any] = []
    if case.kind == "mlp":
        for k, (a, b) in enumerate(zip(case.widths[:-2], case.widths[1:-1])):
            # no bias before batch norm: its gradient is rounding noise (the mean is taken
            # out), which Adam and RMSprop would blow up to steps of lr in either direction
            norm = case.batchnorm and k == 0
            layers.append(lib.Linear(a, b, bias=not norm, **f64))
            if norm:
                layers.append(lib.BatchNorm1d(b, **f64))
            layers.append(act[k]())
        layers.append(lib.Linear(case.widths[-2], case.widths[-1], **f64))
    else:
        c_in, c_out, classes = case.widths
        k, s, p = case.conv
        layers += [lib.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=not case.batchnorm, **f64)]
        if case.batchnorm:
            layers.append(lib.BatchNorm2d(c_out, **f64))
        layers.append(act[0]())
        side = (case.image + 2 * p - k) // s + 1
        if case.pool in ("max", "avg") and side >= 2:
            layers.append((lib.MaxPool2d if case.pool == "max" else lib.AvgPool2d)(2))
            side //= 2
        elif case.pool == "adaptive":  # (symbp: the output size must divide the input's)
            side = 2 if side % 2 == 0 else 1
            layers.append(lib.AdaptiveAvgPool2d(side))
        layers += [lib.Flatten(), lib.Linear(c_out * side * side, classes, **f64)]
    if case.loss == "bce":
        layers.append(lib.Sigmoid())
    if case.loss == "nll":
        layers.append(lib.LogSoftmax(-1) if lib is nn else lib.LogSoftmax(1))
    return layers


def _loss(case: Case, lib: Any) -> Any:
    name = {
        "mse": "MSELoss", "l1": "L1Loss", "bce": "BCELoss", "bce_logits": "BCEWithLogitsLoss",
        "cross_entropy": "CrossEntropyLoss", "cross_entropy_probs": "CrossEntropyLoss",
        "nll": "NLLLoss",
    }[case.loss]  # fmt: skip
    return getattr(lib, name)(reduction=case.reduction)


def _data(case: Case) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(10_000 + case.seed)
    n = case.batch
    if case.kind == "mlp":
        x = rng.standard_normal((n, case.widths[0]))
    else:
        x = rng.standard_normal((n, case.widths[0], case.image, case.image))
    out = case.widths[-1]
    if case.loss in ("cross_entropy", "nll"):
        y: np.ndarray = rng.integers(0, out, n)
    elif case.loss == "cross_entropy_probs":
        y = rng.dirichlet(np.ones(out), n)
    elif case.loss in ("bce", "bce_logits"):
        y = rng.uniform(0, 1, (n, out))
    else:
        y = rng.standard_normal((n, out))
    return x, y


def _symbp_net(case: Case) -> nn.Sequential:
    symbp.manual_seed(case.seed)
    return nn.Sequential(*_layers(case, nn))


def _torch_net(case: Case, like: nn.Sequential) -> Any:
    net = torch.nn.Sequential(*_layers(case, torch.nn))
    net.load_state_dict({k: torch.tensor(np.array(v)) for k, v in like.state_dict().items()})
    return net


def _symbp_opt(case: Case, net: nn.Sequential) -> Any:
    return getattr(symbp.optim, case.opt)(net.parameters(), **case.options)


# ---------------------------------------------------------------- training three ways


def _loop(case: Case, net, opt, loss_fn, x, y) -> list[tuple[float, list[np.ndarray]]]:
    """The PyTorch training loop, as written for torch: symbp runs the very same code."""
    out = []
    for k in range(case.steps):
        opt.param_groups[0].update(case.changes.get(k, {}))
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        out.append((float(loss.item()), [p.detach().numpy().copy() for p in net.parameters()]))
    return out


def _train_torch(case: Case) -> list[tuple[float, list[np.ndarray]]]:
    net = _torch_net(case, _symbp_net(case))
    x, y = (torch.tensor(a) for a in _data(case))
    opt = getattr(torch.optim, case.opt)(net.parameters(), **case.options)
    return _loop(case, net, opt, _loss(case, torch.nn), x, y)


def _train_eager(case: Case) -> list[tuple[float, list[np.ndarray]]]:
    net = _symbp_net(case)
    x, y = (symbp.tensor(a) for a in _data(case))
    return _loop(case, net, _symbp_opt(case, net), _loss(case, nn), x, y)


def _train_compiled(case: Case) -> list[tuple[float, list[np.ndarray]]]:
    net = _symbp_net(case)
    x, y = _data(case)
    opt = _symbp_opt(case, net)
    model = symbp.compile(net, _loss(case, nn), opt)
    out = []
    for k in range(case.steps):
        opt.param_groups[0].update(case.changes.get(k, {}))
        loss = model.step(x, y)
        out.append((loss, [p.numpy().copy() for p in net.parameters()]))
    return out


def _assert_same(case: Case, got: list, want: list, who: str) -> None:
    for k, ((loss, params), (want_loss, want_params)) in enumerate(zip(got, want)):
        where = f"{who}, step {k + 1} of {describe(case.seed)}"
        np.testing.assert_allclose(loss, want_loss, rtol=RTOL, atol=ATOL, err_msg=f"loss: {where}")
        for i, (p, q) in enumerate(zip(params, want_params)):
            np.testing.assert_allclose(p, q, rtol=RTOL, atol=ATOL, err_msg=f"param {i}: {where}")


@pytest.mark.parametrize("seed", range(N_CASES), ids=lambda s: f"seed_{s}")
def test_training_matches_torch(seed):
    case = draw(seed)
    want = _train_torch(case)
    _assert_same(case, _train_eager(case), want, "eager")
    if seed % COMPILED_EVERY == 0:
        _assert_same(case, _train_compiled(case), want, "compiled")
