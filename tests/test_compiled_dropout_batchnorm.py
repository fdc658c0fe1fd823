"""Dropout and batch norm through ``symbp.compile``.

Dropout: the ``bernoulli`` op's counter-based hash gives the same bits in NumPy and Numba;
compiled training draws each step's masks from ``dropout_seed(seed, t, k)`` and agrees with
eager symbp given those seeds. Batch norm: compiled steps update ``running_mean`` and
``running_var`` as eager symbp and PyTorch do; eval mode and ``predict`` use them.
"""

from __future__ import annotations

import numpy as np
import pytest

import symbp
from symbp import functional as F
from symbp import nn
from symbp.compiler import ops
from symbp.compiler.lower import support
from symbp.datasets import load_digits, train_test_split
from symbp.tensor import _result

MASK64 = 2**64 - 1


pytestmark = pytest.mark.usefixtures("tmp_cache")  # compile into this session's cache


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ---------------------------------------------------------------- the mask's bits


def _splitmix_bits(seed: int, i: int) -> int:
    """splitmix64 in Python integers: an independent statement of the hash of entry i."""

    def mix(z: int) -> int:
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    return mix((mix(seed & MASK64) + (i + 1) * 0x9E3779B97F4A7C15) & MASK64)


@pytest.mark.parametrize("seed", [0, 1, -5, 2**62 + 12345, -(2**63)])
def test_bernoulli_bits_are_splitmix64_in_numpy_and_numba_alike(seed):
    for prob in (0.0, 0.25, 0.5, 0.9, 1.0):
        want = ops.bernoulli_mask(seed, prob, (50, 40)).ravel()
        np.testing.assert_array_equal(support.bernoulli_numba(seed, prob, want.size), want)
        for i in (0, 1, 7, 1999):
            assert want[i] == (prob == 1.0 or _splitmix_bits(seed, i) < int(prob * 2.0**64))


def test_bernoulli_mask_fraction_is_the_probability():
    n = 1_000_000
    for prob in (0.1, 0.5, 0.75):
        frac = ops.bernoulli_mask(2024, prob, (1000, 1000)).mean()
        assert abs(frac - prob) < 5 * np.sqrt(prob * (1 - prob) / n)


# ---------------------------------------------------------------- dropout, compiled


def _mask(seed: int, prob: float, like):
    s = symbp.tensor(np.int64(seed))
    return _result(ops.bernoulli(s.node, prob, like.shape, like.dtype), [s], False)


def _eager_forward(net, x, seeds):
    """net(x) with the Dropout named ``name`` drawing its mask from ``seeds[name]``."""
    h = x
    for name, layer in net.named_children():
        if isinstance(layer, nn.Dropout):
            h = h * _mask(seeds[f"{name}.seed"], 1.0 - layer.p, h) / (1.0 - layer.p)
        else:
            h = layer(h)
    return h


def _mlp(seed=0):
    symbp.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 12), nn.Tanh(),
        nn.Dropout(0.5), nn.Linear(12, 3),
    ).double()  # fmt: skip


@pytest.mark.slow  # its own program (a 3-layer MLP with two Dropouts): ~16 s of CPU
def test_compiled_dropout_matches_eager_given_its_seeds(rng):
    x, y = rng.normal(size=(10, 6)), rng.integers(0, 3, 10)
    net, ref = _mlp(), _mlp()
    ref.load_state_dict(net.state_dict())
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.5))
    opt = symbp.optim.SGD(ref.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    seed = 987654321
    for t in range(3):  # one batch per epoch: fit's step t draws from dropout_seed(seed, t, k)
        history = model.fit(x, y, epochs=1, batch_size=10, shuffle=False, seed=seed)
        names = model._train.spec["seeds"]
        assert sorted(names) == ["2.seed", "5.seed"]
        seeds = {name: int(support.dropout_seed(seed, t, k)) for k, name in enumerate(names)}
        opt.zero_grad()
        loss = loss_fn(_eager_forward(ref, symbp.tensor(x), seeds), symbp.tensor(y))
        loss.backward()
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, atol=1e-14, err_msg=name)
        opt.step()
        assert history["loss"][0] == pytest.approx(loss.item(), rel=1e-12)
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14, err_msg=name)


def _masked_weights(p=0.25, n=4096):
    """A model whose weight gradient is its dropout mask / (1 - p): d sum(W·1 ⊙ m/(1-p)) / dW."""
    symbp.manual_seed(3)
    net = nn.Sequential(nn.Linear(1, n, bias=False), nn.Dropout(p)).double()
    model = symbp.compile(
        net, lambda out, y: (out * y).sum(), symbp.optim.SGD(net.parameters(), lr=0.1)
    )
    return net, model, np.ones((1, 1)), np.ones((1, n))


def test_compiled_dropout_steps_draw_fresh_masks_of_the_right_fraction():
    p, n = 0.25, 4096
    net, model, x, y = _masked_weights(p, n)
    masks = []
    for t in range(3):
        model.step(x, y)
        g = net[0].weight.grad.numpy()[:, 0].copy()
        want = ops.bernoulli_mask(int(support.dropout_seed(model._train.seed, t, 0)), 1 - p, (n,))
        np.testing.assert_array_equal(g, want / (1 - p))  # kept entries scaled by exactly 1/(1-p)
        assert abs(want.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
        masks.append(want)
    assert (masks[0] != masks[1]).any() and (masks[1] != masks[2]).any()
    # inference has no dropout, whatever mode the model is in
    np.testing.assert_array_equal(model.predict(x), x @ net[0].weight.numpy().T)


def test_compiled_dropout_in_eval_mode_is_the_identity():
    net, model, x, y = _masked_weights()
    net.eval()
    model.step(x, y)
    np.testing.assert_array_equal(net[0].weight.grad, np.ones((4096, 1)))
    assert "bernoulli_key(" not in model.source and not model._train.spec["seeds"]


def test_compiled_step_masks_follow_symbp_manual_seed():
    grads = []
    for _ in range(2):
        net, model, x, y = _masked_weights()  # manual_seed(3) before compiling
        model.step(x, y)
        grads.append(net[0].weight.grad.numpy().copy())
    np.testing.assert_array_equal(grads[0], grads[1])


@pytest.mark.slow
def test_fit_with_dropout_trains_a_digits_mlp():
    X, y = load_digits()
    X = (X / 16.0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10))
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.Adam(net.parameters(), lr=0.01))
    history = model.fit(X_train, y_train, epochs=15, batch_size=32, seed=0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    net.eval()
    pred = model.predict(X_test)
    np.testing.assert_allclose(pred, net(symbp.tensor(X_test)).numpy(), rtol=1e-4, atol=1e-5)
    assert float(np.mean(pred.argmax(1) == y_test)) >= 0.95


# ---------------------------------------------------------------- batch norm, compiled


def bn1d_net(nn_, momentum=0.1):
    return nn_.Sequential(
        nn_.Linear(5, 8), nn_.BatchNorm1d(8, momentum=momentum), nn_.ReLU(), nn_.Linear(8, 3)
    )


def bn2d_net(nn_, momentum=0.1):
    return nn_.Sequential(
        nn_.Conv2d(2, 3, 3, padding=1), nn_.BatchNorm2d(3, momentum=momentum), nn_.ReLU(),
        nn_.Flatten(), nn_.Linear(75, 4),
    )  # fmt: skip


def bn2d_sync_net(nn_, momentum=0.1):
    """bn2d_net with its batch norm converted to SyncBatchNorm: in one process, batch norm."""
    return nn_.SyncBatchNorm.convert_sync_batchnorm(bn2d_net(nn_, momentum))


NETS = {
    "bn1d": (bn1d_net, 0.1, (5,), 3),
    "bn2d-sync": (bn2d_sync_net, 0.1, (2, 5, 5), 4),
    "bn1d-momentum0.3": (bn1d_net, 0.3, (5,), 3),
    "bn2d": (bn2d_net, 0.1, (2, 5, 5), 4),
}
STATS = ("running_mean", "running_var", "num_batches_tracked")


def _pair(kind):
    build, momentum, _, _ = NETS[kind]
    symbp.manual_seed(1)
    net = build(nn, momentum).double()
    ref = build(nn, momentum).double()
    ref.load_state_dict(net.state_dict())
    return net, ref


def _batches(kind, rng, n_steps, batch=6):
    _, _, shape, classes = NETS[kind]
    xs = rng.normal(loc=0.5, scale=2.0, size=(n_steps, batch, *shape))
    return xs, rng.integers(0, classes, (n_steps, batch))


@pytest.mark.parametrize("kind", sorted(NETS))
@pytest.mark.slow
def test_compiled_batchnorm_steps_match_eager_and_pytorch(kind, rng):
    net, ref = _pair(kind)
    model = symbp.compile(
        net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    )
    opt = symbp.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    torch = _torch()
    if torch is not None:
        build, momentum, _, _ = NETS[kind]
        theirs = build(torch.nn, momentum).double()
        theirs.load_state_dict({k: torch.tensor(v.numpy()) for k, v in net.state_dict().items()})
        topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for x, y in zip(*_batches(kind, rng, 5)):
        got = model.step(x, y)
        opt.zero_grad()
        want = loss_fn(ref(symbp.tensor(x)), symbp.tensor(y))
        want.backward()
        opt.step()
        assert got == pytest.approx(want.item(), rel=1e-10)
        if torch is not None:
            topt.zero_grad()
            tloss = torch.nn.CrossEntropyLoss()(theirs(torch.tensor(x)), torch.tensor(y))
            tloss.backward()
            topt.step()
            assert got == pytest.approx(tloss.item(), rel=1e-10)
        # read between steps: the buffers are always current
        bn = net[1]
        np.testing.assert_allclose(bn.running_mean, ref[1].running_mean, rtol=1e-10)
    state, want_state = net.state_dict(), ref.state_dict()
    assert int(state["1.num_batches_tracked"]) == 5
    assert not np.allclose(state["1.running_var"], 1.0)  # the statistics moved
    for k, v in state.items():
        np.testing.assert_allclose(v, want_state[k], rtol=1e-10, atol=1e-12, err_msg=k)
        if torch is not None:
            theirs_v = theirs.state_dict()[k].numpy()
            np.testing.assert_allclose(v, theirs_v, rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kind", ["bn1d", "bn2d"])
@pytest.mark.slow
def test_compiled_batchnorm_fit_then_eval_predict_matches_eager(kind, rng):
    net, ref = _pair(kind)
    xs, ys = _batches(kind, rng, 5, batch=8)
    X, y = xs.reshape(-1, *xs.shape[2:]), ys.ravel()
    # (SGD: Adam would amplify the rounding noise in the zero gradient of the bias before
    # the batch norm, which the normalisation subtracts out, to lr-sized steps)
    opt_of = lambda net: symbp.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)  # noqa: E731
    model = symbp.compile(net, nn.CrossEntropyLoss(), opt_of(net))
    model.fit(X, y, epochs=3, batch_size=8, shuffle=False)
    opt = opt_of(ref)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(3):
        for xb, yb in zip(xs, ys):
            opt.zero_grad()
            loss_fn(ref(symbp.tensor(xb)), symbp.tensor(yb)).backward()
            opt.step()
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)
    assert int(net[1].num_batches_tracked) == 15
    net.eval()
    ref.eval()
    got = model.predict(X)
    np.testing.assert_allclose(got, ref(symbp.tensor(X)).numpy(), rtol=1e-10, atol=1e-12)
    # eval mode also trains (fine-tuning on the running statistics, which stay put)
    eval_model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), 0.1))
    eval_opt = symbp.optim.SGD(ref.parameters(), 0.1)
    stats = net[1].running_mean.clone()
    got_loss = eval_model.step(xs[0], ys[0])
    eval_opt.zero_grad()
    want = loss_fn(ref(symbp.tensor(xs[0])), symbp.tensor(ys[0]))
    want.backward()
    eval_opt.step()
    assert got_loss == pytest.approx(want.item(), rel=1e-10)
    np.testing.assert_array_equal(net[1].running_mean, stats)
    assert int(net[1].num_batches_tracked) == 15
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.slow
def test_compiled_batchnorm_reads_buffers_loaded_between_steps(rng):
    net, ref = _pair("bn1d")
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    opt = symbp.optim.SGD(ref.parameters(), lr=0.1)
    xs, ys = _batches("bn1d", rng, 2)
    model.step(xs[0], ys[0])
    # new statistics, loaded as a state dict (new arrays) and written in place
    state = net.state_dict()
    state["1.running_mean"] = rng.normal(size=8)
    net.load_state_dict(state)
    net[1].running_var[...] = 2.0
    ref.load_state_dict(net.state_dict())
    model.step(xs[1], ys[1])
    opt.zero_grad()
    nn.CrossEntropyLoss()(ref(symbp.tensor(xs[1])), symbp.tensor(ys[1])).backward()
    opt.step()
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)


def test_compiled_batchnorm_errors_speak_the_models_language():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=None))
    model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    x = np.ones((4, 3), np.float32)
    with pytest.raises(NotImplementedError, match="BatchNorm1d '1' with momentum=None"):
        model.step(x, np.ones((4, 4), np.float32))
    mixed = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False, dtype=np.float64))
    model = symbp.compile(mixed, nn.MSELoss(), symbp.optim.SGD(mixed.parameters(), lr=0.1))
    with pytest.raises(symbp.ShapeError, match="BatchNorm1d '1' keeps its running_mean in float64"):
        model.step(x, np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(symbp.tensor(x), 2.0)
    # predict is inference: a dropout no eval() can switch off is an error, not random output
    model = symbp.compile(lambda x: F.dropout(x * 2.0, 0.5, training=True))
    with pytest.raises(NotImplementedError, match="predict: the model applies dropout"):
        model.predict(x)


@pytest.mark.slow
def test_compiled_batchnorm1d_refuses_a_training_batch_of_one(rng):
    net, _ = _pair("bn1d")
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    xs, ys = _batches("bn1d", rng, 1, batch=7)
    model.step(xs[0], ys[0])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="BatchNorm1d '1' expects more than 1 value per channel"):
        model.step(xs[0][:1], ys[0][:1])  # as PyTorch: no statistics from one value
    with pytest.raises(ValueError, match="7 samples in batches of 3 leave a last batch of 1"):
        model.fit(xs[0], ys[0], batch_size=3)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)  # nothing moved
    model.fit(xs[0], ys[0], batch_size=4)  # batches of 4 and 3
    assert int(net[1].num_batches_tracked) == 3
    # over [N, C, H, W] one image has H·W values per channel: a batch of one trains
    net2d, ref2d = _pair("bn2d")
    model = symbp.compile(net2d, nn.CrossEntropyLoss(), symbp.optim.SGD(net2d.parameters(), 0.1))
    x2, y2 = _batches("bn2d", rng, 1, batch=1)
    model.step(x2[0], y2[0])
    ref2d(symbp.tensor(x2[0]))  # the eager forward updates the running statistics
    np.testing.assert_allclose(net2d[1].running_var, ref2d[1].running_var, rtol=1e-10)


@pytest.mark.slow  # a program per mode (BatchNorm1d): ~25 s of CPU
def test_compiled_model_follows_train_and_eval_switches(rng):
    net, ref = _pair("bn1d")
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    opt = symbp.optim.SGD(ref.parameters(), lr=0.1)
    xs, ys = _batches("bn1d", rng, 4)
    for mode, x, y in zip(("train", "train", "eval", "train"), xs, ys):
        net.train(mode == "train")
        ref.train(mode == "train")
        got = model.step(x, y)  # a switch since the last step: the program is built again
        opt.zero_grad()
        want = nn.CrossEntropyLoss()(ref(symbp.tensor(x)), symbp.tensor(y))
        want.backward()
        opt.step()
        assert got == pytest.approx(want.item(), rel=1e-10), mode
    assert int(net[1].num_batches_tracked) == 3
    for k, v in ref.state_dict().items():
        np.testing.assert_allclose(net.state_dict()[k], v, rtol=1e-10, atol=1e-12, err_msg=k)


@pytest.mark.slow
def test_compiled_batchnorm2d_float32_matches_eager(rng):
    symbp.manual_seed(2)
    net, ref = bn2d_net(nn), bn2d_net(nn)
    ref.load_state_dict(net.state_dict())
    # (SGD: see test_compiled_batchnorm_fit_then_eval_predict_matches_eager)
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    opt = symbp.optim.SGD(ref.parameters(), lr=0.1)
    xs, ys = _batches("bn2d", rng, 3)
    for x, y in zip(xs.astype(np.float32), ys):
        got = model.step(x, y)
        opt.zero_grad()
        want = nn.CrossEntropyLoss()(ref(symbp.tensor(x)), symbp.tensor(y))
        want.backward()
        opt.step()
        assert got == pytest.approx(want.item(), rel=1e-4)
    for k in STATS:
        got, want = getattr(net[1], k), getattr(ref[1], k)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=k)
