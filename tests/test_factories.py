"""Dtypes, devices, tensor factories and random generators against PyTorch (issue 13).

Deterministic factories must give torch's values and dtypes; random ones torch's shapes and
dtypes, the right distribution (moments on large samples) and reproducible seeded streams
(symbp does not reproduce torch's bit stream). Devices: only the CPU, with clear errors."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.compiler.ir import Node
from symbp.utils.data import DataLoader, RandomSampler, TensorDataset

torch = pytest.importorskip("torch")


def torch_name(dtype) -> str:
    return repr(dtype).replace("symbp.", "torch.")


def assert_like_torch(ours, theirs) -> None:
    assert torch_name(ours.dtype) == str(theirs.dtype)
    assert tuple(ours.shape) == tuple(theirs.shape)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ dtypes


def test_dtype_objects_are_torch_s_names():
    assert symbp.float is symbp.float32 and symbp.double is symbp.float64
    assert symbp.long is symbp.int64 and symbp.int is symbp.int32 and symbp.half is symbp.float16
    for ours, theirs in [
        (symbp.float32, torch.float32),
        (symbp.float64, torch.float64),
        (symbp.int64, torch.int64),
        (symbp.int32, torch.int32),
        (symbp.float16, torch.float16),
        (symbp.bool, torch.bool),
    ]:
        assert isinstance(ours, symbp.dtype) and torch_name(ours) == str(theirs)
        assert ours.is_floating_point == theirs.is_floating_point
        assert ours.itemsize == theirs.itemsize
    x = symbp.zeros(2)
    assert isinstance(x.dtype, symbp.dtype) and x.dtype == symbp.float32 and x.dtype is symbp.float
    assert repr(x.dtype) == "symbp.float32"
    # A symbp dtype is the NumPy dtype it names: equal, same hash, accepted by NumPy.
    assert x.dtype == np.float32 and np.dtype(np.float32) == x.dtype
    assert {np.dtype(np.float32): "f"}[x.dtype] == "f"
    assert np.zeros(2, symbp.float64).dtype == np.float64
    assert x.dtype != symbp.float64 and x.dtype != "nonsense"
    assert copy.deepcopy(x.dtype) is symbp.float32 and copy.copy(symbp.int64) is symbp.int64
    assert pickle.loads(pickle.dumps(symbp.float64)) is symbp.float64
    # A node built from a Tensor's dtype holds the NumPy dtype (generated code prints it).
    node = Node("input", (), "dtype_probe", (2,), x.dtype)
    assert type(node.dtype) is type(np.dtype(np.float32)) and str(node.dtype) == "float32"
    assert node is Node("input", (), "dtype_probe", (2,), np.float32)


def test_seeded_training_with_factories_runs_and_learns():
    # The tutorials' style: leaves from randn(requires_grad=True), data from linspace/sin.
    symbp.manual_seed(0)
    x = symbp.linspace(-1, 1, 50).reshape(50, 1)
    y = 3 * x + 1
    w = symbp.randn(1, 1, requires_grad=True)
    b = symbp.zeros(1, requires_grad=True)
    loss = ((x @ w + b - y) ** 2).mean()
    loss.backward()
    # d/dw mean((xw + b - y)^2) = mean(2 (xw + b - y) x), by hand in NumPy.
    xs, ys, w0 = x.numpy(), y.numpy(), w.numpy()
    expected = np.mean(2 * (xs @ w0 - ys) * xs)
    np.testing.assert_allclose(np.asarray(w.grad).ravel(), [expected], rtol=1e-5)


def test_default_dtype_takes_symbp_dtypes():
    assert symbp.get_default_dtype() is symbp.float32
    try:
        symbp.set_default_dtype(symbp.float64)
        assert symbp.get_default_dtype() is symbp.float64
        assert symbp.zeros(2).dtype is symbp.float64 and symbp.tensor([1.5]).dtype is symbp.double
        assert symbp.arange(0.0, 1.0, 0.5).dtype is symbp.float64
    finally:
        symbp.set_default_dtype(symbp.float32)
    with pytest.raises(TypeError, match="float dtype"):
        symbp.set_default_dtype(symbp.int64)


def test_unstored_dtypes_raise_instead_of_converting():
    for make in (
        lambda: symbp.zeros(2, dtype=symbp.half),
        lambda: symbp.ones(2).half(),
        lambda: symbp.ones(2).to(symbp.float16),
        lambda: nn.Linear(2, 2).half(),
    ):
        with pytest.raises(TypeError, match="not supported: symbp computes in float32 or float64"):
            make()


def test_int32_is_stored_as_pytorch_stores_it():
    # int32 tensors are values of the IR (issue 12): made, kept and promoted as PyTorch's
    for ours, theirs in [
        (symbp.tensor([1, 2], dtype=symbp.int32), torch.tensor([1, 2], dtype=torch.int32)),
        (symbp.arange(3, dtype=symbp.int), torch.arange(3, dtype=torch.int)),
        (symbp.from_numpy(np.zeros(2, np.int32)), torch.from_numpy(np.zeros(2, np.int32))),
    ]:
        assert torch_name(ours.dtype) == str(theirs.dtype)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        assert torch_name((ours + 1).dtype) == str((theirs + 1).dtype)  # int32 + int: int32


# ------------------------------------------------------------------ deterministic factories

DETERMINISTIC = [
    ("zeros", (2, 3), {}),
    ("zeros", ((2, 3),), {}),
    ("zeros", ([4],), {"dtype": "int64"}),
    ("zeros", ((),), {}),
    ("ones", (3,), {}),
    ("ones", ((2, 2),), {"dtype": "float64"}),
    ("ones", (2,), {"dtype": "bool"}),
    ("full", ((2,), 3), {}),
    ("full", ((2, 1), 3.5), {}),
    ("full", ((2,), True), {}),
    ("full", ((3,), 2), {"dtype": "float64"}),
    ("eye", (3,), {}),
    ("eye", (2, 4), {}),
    ("eye", (3,), {"dtype": "int64"}),
    ("arange", (5,), {}),
    ("arange", (1, 4), {}),
    ("arange", (10, 0, -3), {}),
    ("arange", (0.0, 1, 0.1), {}),
    ("arange", (0, 1, 0.3), {}),
    ("arange", (-1.5, 2.5), {}),
    ("arange", (5,), {"dtype": "float64"}),
    ("linspace", (0, 1, 5), {}),
    ("linspace", (-1.0, 1.0, 7), {}),
    ("linspace", (0, 10, 4), {"dtype": "int64"}),
    ("linspace", (2, 2, 1), {}),
    ("logspace", (0, 2, 3), {}),
    ("logspace", (0, 1, 4), {"base": 2.0}),
    ("logspace", (-1, 1, 5), {"dtype": "float64"}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), DETERMINISTIC)
def test_deterministic_factories_match_torch(name, args, kwargs):
    def call(lib):
        kw = dict(kwargs)
        if "dtype" in kw:
            kw["dtype"] = getattr(lib, kw["dtype"])
        return getattr(lib, name)(*args, **kw)

    assert_like_torch(call(symbp), call(torch))


def test_like_factories_keep_the_input_s_dtype_and_shape():
    for data in ([[1, 2, 3], [4, 5, 6]], [[1.0, 2.0]], [True, False]):
        ours, theirs = symbp.tensor(data), torch.tensor(data)
        assert_like_torch(symbp.zeros_like(ours), torch.zeros_like(theirs))
        assert_like_torch(symbp.ones_like(ours), torch.ones_like(theirs))
        assert_like_torch(symbp.full_like(ours, 1), torch.full_like(theirs, 1))
        assert_like_torch(symbp.empty_like(ours).zero_(), torch.empty_like(theirs).zero_()) if (
            hasattr(symbp.Tensor, "zero_")
        ) else None
        assert symbp.empty_like(ours).shape == tuple(theirs.shape)
    x = symbp.tensor([[1, 2]])
    assert_like_torch(
        symbp.zeros_like(x, dtype=symbp.float64),
        torch.zeros_like(torch.tensor([[1, 2]]), dtype=torch.float64),
    )
    assert symbp.empty(2, 3).shape == (2, 3) and symbp.empty((4,)).dtype is symbp.float32


def test_tensor_from_data_infers_torch_s_dtypes():
    for data in ([1, 2], [1.0, 2], [True, False], 3, 2.5, [[1, 2], [3, 4]]):
        assert_like_torch(symbp.tensor(data), torch.tensor(data))
    assert_like_torch(
        symbp.tensor([1, 2], dtype=symbp.float64), torch.tensor([1, 2], dtype=torch.float64)
    )
    x = symbp.tensor([1.0], requires_grad=True, device="cpu")
    assert x.requires_grad
    with pytest.raises(RuntimeError, match="only floating point"):
        symbp.zeros(2, dtype=symbp.long, requires_grad=True)
    assert symbp.ones(2, requires_grad=True).requires_grad
    assert symbp.FloatTensor([1, 2]).dtype is symbp.float32
    assert symbp.LongTensor([1, 2]).dtype is symbp.int64
    assert symbp.DoubleTensor(2, 3).shape == (2, 3)
    assert_like_torch(symbp.FloatTensor([[1, 2]]), torch.FloatTensor([[1, 2]]))


def test_from_numpy_and_as_tensor_share_memory():
    arr = np.arange(4.0)
    t = symbp.from_numpy(arr)
    assert t.dtype is symbp.float64  # the array's dtype, as torch.from_numpy
    arr[0] = 7.0
    assert t.numpy()[0] == 7.0 and t.numpy() is arr
    ints = np.array([1, 2], dtype=np.int64)
    assert symbp.as_tensor(ints).numpy() is ints
    assert symbp.as_tensor(ints, dtype=symbp.float32).dtype is symbp.float32  # a copy
    assert symbp.as_tensor([1, 2]).dtype is symbp.int64
    x = symbp.tensor([1.0])
    assert symbp.as_tensor(x) is x
    with pytest.raises(TypeError, match=r"np\.ndarray"):
        symbp.from_numpy([1, 2])


def test_factory_argument_errors():
    with pytest.raises(TypeError, match="size must be ints"):
        symbp.zeros(2.5)
    with pytest.raises(RuntimeError, match="negative dimension"):
        symbp.ones(-1)
    with pytest.raises(RuntimeError, match="step must be nonzero"):
        symbp.arange(0, 1, 0)
    with pytest.raises(TypeError, match="missing its size"):
        symbp.zeros()
    with pytest.raises(TypeError, match="unexpected keyword"):
        symbp.zeros(2, colour="red")


# ------------------------------------------------------------------ random factories

RANDOM = [
    ("rand", (2, 3), {}),
    ("rand", ((4,),), {"dtype": "float64"}),
    ("randn", (3, 1), {}),
    ("randint", (10, (3,)), {}),
    ("randint", (2, 5, (2, 2)), {}),
    ("randint", (3, (2,)), {"dtype": "float32"}),
    ("randperm", (7,), {}),
    ("normal", (0.0, 1.0, (3,)), {}),
]


@pytest.mark.parametrize(("name", "args", "kwargs"), RANDOM)
def test_random_factories_have_torch_s_shapes_and_dtypes(name, args, kwargs):
    def call(lib):
        kw = dict(kwargs)
        if "dtype" in kw:
            kw["dtype"] = getattr(lib, kw["dtype"])
        return getattr(lib, name)(*args, **kw, generator=lib.Generator().manual_seed(0))

    ours, theirs = call(symbp), call(torch)
    assert torch_name(ours.dtype) == str(theirs.dtype) and tuple(ours.shape) == tuple(theirs.shape)


def test_random_tensor_arguments_have_torch_s_shapes_and_dtypes():
    for lib in (symbp, torch):
        lib.manual_seed(0)
    mean, std = [[0.0, 1.0, 2.0]], [[1.0], [2.0]]
    pairs = [
        (
            symbp.normal(symbp.tensor(mean), symbp.tensor(std)),
            torch.normal(torch.tensor(mean), torch.tensor(std)),
        ),
        (symbp.normal(symbp.tensor(mean), 2.0), torch.normal(torch.tensor(mean), 2.0)),
        (symbp.normal(1.0, symbp.tensor(std)), torch.normal(1.0, torch.tensor(std))),
        (symbp.bernoulli(symbp.full((2, 3), 0.5)), torch.bernoulli(torch.full((2, 3), 0.5))),
        (
            symbp.multinomial(symbp.tensor([1.0, 2, 3]), 2),
            torch.multinomial(torch.tensor([1.0, 2, 3]), 2),
        ),
        (
            symbp.multinomial(symbp.ones(4, 5), 3, replacement=True),
            torch.multinomial(torch.ones(4, 5), 3, replacement=True),
        ),
        (symbp.rand_like(symbp.zeros(2, 2)), torch.rand_like(torch.zeros(2, 2))),
        (
            symbp.randn_like(symbp.zeros(3, dtype=symbp.double)),
            torch.randn_like(torch.zeros(3, dtype=torch.double)),
        ),
        (symbp.randint_like(symbp.zeros(3), 5), torch.randint_like(torch.zeros(3), 5)),
        (symbp.randint_like(symbp.zeros(3), 2, 5), torch.randint_like(torch.zeros(3), 2, 5)),
    ]
    for ours, theirs in pairs:
        assert torch_name(ours.dtype) == str(theirs.dtype) and tuple(ours.shape) == tuple(
            theirs.shape
        )


def test_random_factories_draw_the_right_distributions():
    g = symbp.Generator().manual_seed(123)
    n = 200_000
    u = symbp.rand(n, generator=g).numpy().astype(np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    z = symbp.randn(n, generator=g).numpy().astype(np.float64)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    y = symbp.normal(3.0, 2.0, (n,), generator=g).numpy().astype(np.float64)
    assert abs(y.mean() - 3.0) < 0.02 and abs(y.std() - 2.0) < 0.02
    k = symbp.randint(2, 6, (n,), generator=g).numpy()
    assert set(np.unique(k)) == {2, 3, 4, 5}
    np.testing.assert_allclose(np.bincount(k)[2:] / n, 0.25, atol=0.005)
    p = symbp.randperm(50, generator=g).numpy()
    assert sorted(p.tolist()) == list(range(50))
    b = symbp.bernoulli(symbp.full((n,), 0.3), generator=g).numpy()
    assert set(np.unique(b)) == {0.0, 1.0} and abs(b.mean() - 0.3) < 0.005
    probs = np.array([0.1, 0.2, 0.7])
    m = symbp.multinomial(symbp.tensor(probs), n, replacement=True, generator=g).numpy()
    np.testing.assert_allclose(np.bincount(m, minlength=3) / n, probs, atol=0.005)
    rows = symbp.multinomial(symbp.ones(100, 6), 6, generator=g).numpy()  # no replacement
    assert all(sorted(r) == list(range(6)) for r in rows.tolist())
    with pytest.raises(RuntimeError, match="without replacement"):
        symbp.multinomial(symbp.tensor([1.0, 0.0, 1.0]), 3)


def test_seeded_streams_are_reproducible():
    symbp.manual_seed(7)
    a = [symbp.rand(5).numpy(), symbp.randn(3).numpy(), symbp.randint(100, (4,)).numpy()]
    symbp.manual_seed(7)
    b = [symbp.rand(5).numpy(), symbp.randn(3).numpy(), symbp.randint(100, (4,)).numpy()]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # The documented stream: NumPy's PCG64 seeded with the same seed.
    symbp.manual_seed(7)
    np.testing.assert_array_equal(
        symbp.rand(4, dtype=symbp.float64).numpy(), np.random.default_rng(7).random(4)
    )
    assert symbp.initial_seed() == 7 and isinstance(symbp.manual_seed(7), symbp.Generator)


def test_generators_are_independent_of_each_other_and_the_default():
    g1, g2 = symbp.Generator().manual_seed(1), symbp.Generator().manual_seed(1)
    first = symbp.rand(4, generator=g1).numpy()
    symbp.manual_seed(0)
    symbp.rand(100)  # draws on the default generator leave g2's stream alone
    np.testing.assert_array_equal(symbp.rand(4, generator=g2).numpy(), first)
    g3 = symbp.Generator().manual_seed(2)
    assert not np.array_equal(symbp.rand(4, generator=g3).numpy(), first)
    assert g1.initial_seed() == 1 and g3.manual_seed(5) is g3
    assert symbp.Generator("cpu").device == symbp.device("cpu")
    # Negative seeds are valid in torch too.
    np.testing.assert_array_equal(
        symbp.rand(2, generator=symbp.Generator().manual_seed(-3)).numpy(),
        symbp.rand(2, generator=symbp.Generator().manual_seed(-3)).numpy(),
    )


def test_rng_state_round_trips():
    symbp.manual_seed(11)
    state = symbp.get_rng_state()
    a = symbp.randn(6).numpy()
    symbp.rand(3)
    symbp.set_rng_state(state)
    np.testing.assert_array_equal(symbp.randn(6).numpy(), a)
    g = symbp.Generator().manual_seed(4)
    symbp.rand(2, generator=g)
    saved = g.get_state()
    x = symbp.rand(3, generator=g).numpy()
    other = symbp.Generator().set_state(saved)
    np.testing.assert_array_equal(symbp.rand(3, generator=other).numpy(), x)
    assert other.initial_seed() == 4
    with pytest.raises(RuntimeError, match="get_state"):
        symbp.set_rng_state(symbp.tensor([1, 2, 3]))


def test_seed_is_fresh_and_recorded():
    s = symbp.seed()
    assert isinstance(s, int) and symbp.initial_seed() == s
    g = symbp.Generator()
    t = g.seed()
    assert g.initial_seed() == t
    symbp.manual_seed(0)


def test_generators_drive_symbp_utils_data():
    ds = TensorDataset(symbp.arange(10))

    def order(seed):
        loader = DataLoader(
            ds, batch_size=10, shuffle=True, generator=symbp.Generator().manual_seed(seed)
        )
        return next(iter(loader))[0].numpy().tolist()

    assert order(3) == order(3) and sorted(order(3)) == list(range(10))
    sampler = RandomSampler(range(8), generator=symbp.Generator().manual_seed(1))
    assert list(sampler) == list(
        RandomSampler(range(8), generator=symbp.Generator().manual_seed(1))
    )
    # The default generator, seeded by symbp.manual_seed, shuffles too.
    symbp.manual_seed(9)
    a = list(RandomSampler(range(8)))
    symbp.manual_seed(9)
    assert list(RandomSampler(range(8))) == a


# ------------------------------------------------------------------ devices


def test_device_objects_as_torch():
    for spec in ("cpu", "cpu:0"):
        ours, theirs = symbp.device(spec), torch.device(spec)
        assert str(ours) == str(theirs) and repr(ours) == repr(theirs)
        assert ours.type == theirs.type and ours.index == theirs.index
    assert symbp.device("cpu") == "cpu" and symbp.device(symbp.device("cpu:0")) == symbp.device(
        "cpu", 0
    )
    assert symbp.device("cpu") != symbp.device("cpu:0")  # torch's rule as well
    assert len({symbp.device("cpu"), symbp.device("cpu")}) == 1
    assert str(symbp.device("cuda:1")) == "cuda:1"  # buildable, as in torch; unusable
    assert not symbp.cuda.is_available() and symbp.cuda.device_count() == 0
    assert not symbp.backends.mps.is_available()
    symbp.cuda.manual_seed_all(0)  # a no-op, as torch's without a GPU
    symbp.backends.cudnn.deterministic = True
    with pytest.raises(AttributeError, match="symbp runs in float32/float64 on the CPU"):
        symbp.cuda.amp


def test_tensor_to_and_device():
    x = symbp.tensor([1.0, 2.0])
    assert x.device == symbp.device("cpu") and str(x.device) == str(torch.tensor([1.0]).device)
    assert x.to("cpu") is x and x.cpu() is x and x.to(symbp.device("cpu")) is x
    assert x.to(torch_free_dtype := symbp.float64).dtype is torch_free_dtype
    assert x.to("cpu", symbp.float64).dtype is symbp.float64
    assert x.to(device="cpu", dtype=symbp.float64, non_blocking=True).dtype is symbp.float64
    assert x.to(symbp.tensor([1])).dtype is symbp.int64
    np.testing.assert_array_equal(x.to(symbp.long).numpy(), [1, 2])
    symbp.set_default_device("cpu")
    assert symbp.get_default_device() == symbp.device("cpu")


def test_cuda_raises_a_clear_error():
    x = symbp.tensor([1.0])
    for make in (
        lambda: x.cuda(),
        lambda: x.to("cuda"),
        lambda: x.to(symbp.device("cuda:0"), symbp.float32),
        lambda: symbp.zeros(2, device="cuda"),
        lambda: symbp.tensor([1.0], device="cuda"),
        lambda: symbp.randn(2, device="mps"),
        lambda: symbp.set_default_device("cuda"),
        lambda: nn.Linear(2, 2).cuda(),
        lambda: nn.Linear(2, 2).to("cuda"),
        lambda: symbp.Generator(device="cuda"),
    ):
        with pytest.raises(symbp.DeviceError) as err:
            make()
        assert "symbp runs on the CPU" in str(err.value)
        assert "'cuda' if torch.cuda.is_available() else 'cpu'" in str(err.value)
    assert isinstance(symbp.DeviceError("x"), RuntimeError)


def test_module_to_and_cpu():
    lin = nn.Linear(2, 3)
    assert lin.to("cpu") is lin and lin.cpu() is lin
    assert lin.to("cpu", symbp.float64) is lin and lin.weight.data.dtype == np.float64
    lin.to(dtype=symbp.float32)
    assert lin.weight.data.dtype == np.float32
    with pytest.raises(TypeError, match="floating point"):
        lin.to(symbp.int64)


def test_a_portable_device_program_runs_on_the_cpu():
    for lib in (symbp, torch):
        device = "cuda" if lib.cuda.is_available() else "cpu"
        lib.manual_seed(0)
        model = lib.nn.Linear(3, 1).to(device)
        x = lib.randn(4, 3, device=device)
        out = model(x.to(device))
        assert tuple(out.shape) == (4, 1) and str(out.device) == "cpu"
