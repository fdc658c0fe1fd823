"""symbp.utils.data against torch.utils.data: datasets, samplers, collation, DataLoader, errors.
(fit on a DataLoader, which needs no torch: test_data_fit.py.)"""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest

import symbp
import symbp.utils.data as sdata
from symbp import nn
from symbp.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    random_split,
)

torch = pytest.importorskip("torch")
tdata = torch.utils.data

Point = collections.namedtuple("Point", ["x", "y"])


def _plain(obj):
    """A collated batch with every tensor (symbp's or torch's) as (dtype name, NumPy values),
    and containers by kind: the structure both libraries must agree on."""
    if isinstance(obj, symbp.Tensor):
        return ("tensor", str(obj.dtype).replace("symbp.", ""), obj.numpy().tolist())
    if isinstance(obj, torch.Tensor):
        return ("tensor", str(obj.dtype).replace("torch.", ""), obj.numpy().tolist())
    if isinstance(obj, Point):
        return ("Point", *map(_plain, obj))
    if isinstance(obj, dict):
        return ("dict", {k: _plain(v) for k, v in obj.items()})
    if isinstance(obj, list):
        return ("list", [_plain(v) for v in obj])
    if isinstance(obj, tuple):
        return ("tuple", [_plain(v) for v in obj])
    return (type(obj).__name__, obj)


def _tensors(arrays, lib):
    """The same data as symbp tensors or torch tensors."""
    if lib is torch:
        return [torch.from_numpy(np.array(a)) for a in arrays]
    return [symbp.tensor(a) for a in arrays]


def _data(n=10):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3)).astype(np.float32), rng.integers(0, 4, n)


# ---------------------------------------------------------------- datasets


def test_importable_as_pytorch_spells_it():
    import symbp.utils.data as data
    from symbp.utils.data import DataLoader as DL

    assert data.DataLoader is DL is symbp.utils.data.DataLoader
    assert set(data.__all__) <= set(tdata.__all__)
    for name in ("Dataset", "TensorDataset", "DataLoader", "random_split", "Subset",
                 "default_collate", "WeightedRandomSampler", "get_worker_info"):  # fmt: skip
        assert name in data.__all__


def test_subclassing_with_type_parameters_as_in_pytorch():
    class Pairs(Dataset[tuple[symbp.Tensor, int]]):
        def __getitem__(self, i):
            return symbp.tensor([float(i)]), i

        def __len__(self):
            return 3

    class Backwards(sdata.Sampler[int]):
        def __init__(self, n):
            self.n = n

        def __iter__(self):
            return iter(range(self.n - 1, -1, -1))

        def __len__(self):
            return self.n

    (xb, yb), *_ = DataLoader(Pairs(), batch_size=2, sampler=Backwards(3))
    assert xb.tolist() == [[2.0], [1.0]] and yb.tolist() == [2, 1]


def test_tensor_dataset_items_as_torch():
    x, y = _data()
    s, t = TensorDataset(*_tensors((x, y), symbp)), tdata.TensorDataset(*_tensors((x, y), torch))
    assert len(s) == len(t) == 10
    for i in (0, 3, -1):
        assert _plain(s[i]) == _plain(t[i])
    assert _plain(s[2:5]) == _plain(t[2:5])
    with pytest.raises(AssertionError, match=r"^Size mismatch between tensors$"):
        TensorDataset(symbp.tensor(x), symbp.tensor(y[:5]))
    with pytest.raises(AssertionError, match=r"^Size mismatch between tensors$"):
        tdata.TensorDataset(torch.from_numpy(x), torch.from_numpy(y[:5]))


def test_concat_subset_and_add_as_torch():
    x, y = _data()
    for lib, mod in ((symbp, sdata), (torch, tdata)):
        a = mod.TensorDataset(*_tensors((x[:4], y[:4]), lib))
        b = mod.TensorDataset(*_tensors((x[4:], y[4:]), lib))
        both = a + b
        assert isinstance(both, mod.ConcatDataset) and len(both) == 10
        assert both.cumulative_sizes == [4, 10]
    sa = sdata.ConcatDataset([TensorDataset(*_tensors((x[:4], y[:4]), symbp)),
                              TensorDataset(*_tensors((x[4:], y[4:]), symbp))])  # fmt: skip
    ta = tdata.ConcatDataset([tdata.TensorDataset(*_tensors((x[:4], y[:4]), torch)),
                              tdata.TensorDataset(*_tensors((x[4:], y[4:]), torch))])  # fmt: skip
    for i in (0, 3, 4, 9, -1, -10):
        assert _plain(sa[i]) == _plain(ta[i])
    for ds in (sa, ta):
        with pytest.raises(ValueError, match="absolute value of index should not exceed"):
            ds[-11]
    s_sub, t_sub = Subset(sa, [7, 1, 1]), tdata.Subset(ta, [7, 1, 1])
    assert len(s_sub) == 3 and _plain(s_sub[0]) == _plain(t_sub[0])
    assert _plain(s_sub.__getitems__([2, 0])) == _plain(t_sub.__getitems__([2, 0]))


def test_random_split_sizes_as_torch_disjoint_and_covering():
    cases = [(10, [3, 7]), (10, [0.3, 0.3, 0.4]), (5, [0.5, 0.5]), (7, [0.1, 0.2, 0.7]),
             (11, [0.25, 0.25, 0.25, 0.25]), (3, [1.0])]  # fmt: skip
    for n, lengths in cases:
        ours = random_split(range(n), lengths, generator=np.random.default_rng(n))
        theirs = tdata.random_split(range(n), lengths, generator=torch.Generator().manual_seed(0))
        assert [len(s) for s in ours] == [len(s) for s in theirs], (n, lengths)
        seen = [i for s in ours for i in s]
        assert sorted(seen) == list(range(n))  # disjoint, and every sample somewhere
        assert all(isinstance(s, Subset) for s in ours)


def test_random_split_reproducible_under_manual_seed_and_generator():
    symbp.manual_seed(3)
    a = [list(s) for s in random_split(range(20), [0.5, 0.5])]
    symbp.manual_seed(3)
    b = [list(s) for s in random_split(range(20), [0.5, 0.5])]
    assert a == b and a[0] != list(range(10))
    c = [list(s) for s in random_split(range(20), [10, 10], generator=np.random.default_rng(9))]
    d = [list(s) for s in random_split(range(20), [10, 10], generator=np.random.default_rng(9))]
    assert c == d


def test_random_split_errors_and_warning_as_torch():
    for split, gen in ((random_split, None), (tdata.random_split, torch.Generator())):
        kw = {} if gen is None else {"generator": gen}
        with pytest.raises(ValueError) as e:
            split(range(10), [3, 3], **kw)
        assert (
            str(e.value) == "Sum of input lengths does not equal the length of the input dataset!"
        )
        with pytest.raises(ValueError, match=r"^Fraction at index 0 is not between 0 and 1$"):
            split(range(10), [1.5, -0.5], **kw)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            split(range(2), [0.9, 0.05, 0.05], **kw)
        assert [str(w.message) for w in caught] == [
            f"Length of split at index {i} is 0. This might result in an empty dataset."
            for i in (1, 2)
        ]


# ---------------------------------------------------------------- samplers


def test_samplers_cover_the_data():
    g = np.random.default_rng(0)
    assert list(SequentialSampler(range(5))) == list(tdata.SequentialSampler(range(5)))
    perm = list(RandomSampler(range(50), generator=g))
    assert sorted(perm) == list(range(50)) and perm != list(range(50))
    long = list(RandomSampler(range(10), num_samples=25, generator=g))
    assert len(long) == 25 and sorted(long[:10]) == sorted(long[10:20]) == list(range(10))
    assert len(set(long[20:])) == 5  # the remainder: the start of a third permutation
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=40, generator=g))
    assert len(drawn) == 40 and set(drawn) <= {0, 1, 2}
    sub = list(SubsetRandomSampler([7, 3, 9, 1], generator=g))
    assert sorted(sub) == [1, 3, 7, 9]
    pairs = [
        (RandomSampler(range(7), num_samples=3), tdata.RandomSampler(range(7), num_samples=3)),
        (SubsetRandomSampler([1, 2]), tdata.SubsetRandomSampler([1, 2])),
        (WeightedRandomSampler([1, 2], 5), tdata.WeightedRandomSampler([1, 2], 5)),
    ]
    for s, t in pairs:
        assert len(s) == len(t) == len(list(s))


def test_weighted_sampler_follows_the_weights():
    w = [0.0, 1.0, 2.0, 3.0, 4.0]
    picks = np.array(list(WeightedRandomSampler(w, 20000, generator=np.random.default_rng(1))))
    freq = np.bincount(picks, minlength=5) / len(picks)
    np.testing.assert_allclose(freq, np.array(w) / 10, atol=0.015)  # ~5 standard errors
    once = list(WeightedRandomSampler(w, 4, replacement=False, generator=np.random.default_rng(2)))
    assert sorted(once) == [1, 2, 3, 4]  # without replacement: each non-zero weight once
    for mod in (sdata, tdata):  # PyTorch gives the zero-weight index last; NumPy would refuse
        picks = list(mod.WeightedRandomSampler(w, 5, replacement=False))
        assert sorted(picks) == [0, 1, 2, 3, 4] and picks[-1] == 0
    errors = []
    for mod in (sdata, tdata):
        for weights, k, replace in (([1.0, -1.0], 2, True), ([0.0, 0.0], 1, True),
                                    ([1, 2], 3, False), ([1, np.inf], 1, True)):  # fmt: skip
            with pytest.raises(RuntimeError) as e:
                list(mod.WeightedRandomSampler(weights, k, replacement=replace))
            errors.append(str(e.value))
    assert errors[:4] == errors[4:]


@pytest.mark.parametrize(
    "n, size, drop", [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, False)]
)
def test_batch_sampler_as_torch(n, size, drop):
    ours = BatchSampler(SequentialSampler(range(n)), size, drop)
    theirs = tdata.BatchSampler(tdata.SequentialSampler(range(n)), size, drop)
    assert list(ours) == list(theirs) and len(ours) == len(theirs)


# ---------------------------------------------------------------- collation


class _Samples:
    """A map-style dataset of given samples, the same for both libraries."""

    def __init__(self, samples):
        self.samples = samples

    def __getitem__(self, i):
        return self.samples[i]

    def __len__(self):
        return len(self.samples)


def _collate_cases():
    rng = np.random.default_rng(3)
    f32, f64 = (rng.standard_normal((4, 2)).astype(d) for d in (np.float32, np.float64))
    return {
        "tuple of array and int": [(f32[i], i) for i in range(4)],
        "python floats are float64": [(float(f64[i, 0]), [1.5, 2]) for i in range(4)],
        "dict": [{"x": f64[i], "label": i % 2, "name": f"s{i}"} for i in range(4)],
        "namedtuple": [Point(f32[i], np.float32(i)) for i in range(4)],
        "nested list": [[f32[i], {"a": [i, i + 1]}] for i in range(4)],
        "bools and numpy scalars": [(True, np.int64(i), np.float64(i / 3)) for i in range(4)],
        "mixed int and float": [1, 2.5, 3, 4],
    }


@pytest.mark.parametrize("case", list(_collate_cases()))
def test_default_collate_structure_and_dtypes_as_torch(case):
    samples = _collate_cases()[case]
    for size in (1, 3, 4):
        batch = samples[:size]
        assert _plain(default_collate(batch)) == _plain(tdata.default_collate(batch))
    ours = list(DataLoader(_Samples(samples), batch_size=3))
    theirs = list(tdata.DataLoader(_Samples(samples), batch_size=3))
    assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]
    ours = list(DataLoader(_Samples(samples), batch_size=None))  # no batching: default_convert
    theirs = list(tdata.DataLoader(_Samples(samples), batch_size=None))
    assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]


def test_collate_of_tensors_and_integer_arrays():
    t = [symbp.tensor([1.0, 2.0]), symbp.tensor([3.0, 4.0])]
    out = default_collate(t)
    assert out.shape == (2, 2) and out.dtype == symbp.get_default_dtype()
    assert out.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    u8 = default_collate([np.array([1, 2], np.uint8), np.array([3, 4], np.uint8)])
    assert u8.dtype == np.int64 and u8.tolist() == [[1, 2], [3, 4]]  # symbp's one integer dtype
    with pytest.raises(NotImplementedError, match="requires grad"):
        default_collate([symbp.tensor([1.0], requires_grad=True)])


@pytest.mark.parametrize(
    "batch",
    [
        lambda lib: _tensors([np.zeros(3), np.zeros(2)], lib),
        lambda lib: [[1, 2], [3]],
        lambda lib: [object()],
        lambda lib: [np.array(["a", "b"])],
    ],
    ids=["unequal tensors", "ragged lists", "an object", "a string array"],
)
def test_collate_errors_as_torch(batch):
    errors = []
    for lib, mod in ((symbp, sdata), (torch, tdata)):
        with pytest.raises(Exception) as e:
            mod.default_collate(batch(lib))
        errors.append((type(e.value), str(e.value).replace("torch.", "")))
    assert errors[0] == errors[1]


# ---------------------------------------------------------------- DataLoader


@pytest.mark.parametrize("size, drop", [(4, False), (4, True), (5, True), (1, False), (12, False)])
def test_loader_batches_as_torch(size, drop):
    x, y = _data()
    ours = DataLoader(TensorDataset(*_tensors((x, y), symbp)), batch_size=size, drop_last=drop)
    theirs = tdata.DataLoader(tdata.TensorDataset(*_tensors((x, y), torch)), batch_size=size,
                              drop_last=drop)  # fmt: skip
    assert len(ours) == len(theirs) == len(iter(ours)) == len(iter(theirs))
    got, want = [_plain(b) for b in ours], [_plain(b) for b in theirs]
    assert len(got) == len(ours) and got == want


def test_loader_over_a_tensor_as_torch():
    x, _ = _data(7)
    for size in (3, None):
        ours = [_plain(b) for b in DataLoader(symbp.tensor(x), batch_size=size)]
        assert ours == [_plain(b) for b in tdata.DataLoader(torch.from_numpy(x), batch_size=size)]


def test_eager_training_over_a_loader_as_torch():
    """A PyTorch loop, run by both libraries from the same weights: the same parameters."""
    x, y = _data(10)
    symbp.manual_seed(0)
    nets = {symbp: nn.Linear(3, 4), torch: torch.nn.Linear(3, 4)}
    with torch.no_grad():
        nets[torch].weight.copy_(torch.from_numpy(nets[symbp].weight.numpy()))
        nets[torch].bias.copy_(torch.from_numpy(nets[symbp].bias.numpy()))
    for lib, mod in ((symbp, sdata), (torch, tdata)):
        net, loss_fn = nets[lib], lib.nn.CrossEntropyLoss()
        opt = lib.optim.SGD(net.parameters(), lr=0.5)
        loader = mod.DataLoader(mod.TensorDataset(*_tensors((x, y), lib)), batch_size=4)
        for _ in range(3):
            for xb, yb in loader:
                opt.zero_grad()
                loss = loss_fn(net(xb), yb)
                loss.backward()
                opt.step()
    np.testing.assert_allclose(nets[symbp].weight.data, nets[torch].weight.detach().numpy(),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(nets[symbp].bias.data, nets[torch].bias.detach().numpy(),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert not np.allclose(nets[symbp].bias.data, 0)


def test_gathered_batches_equal_sample_by_sample_collation():
    """A TensorDataset (in a Subset, a ConcatDataset) is batched by one gather per tensor;
    a subclass with its own __getitem__ goes sample by sample: the batches are the same."""

    class Rows(TensorDataset):
        def __getitem__(self, i):
            return super().__getitem__(i)

    x, y = _data(12)
    arrays = (x, y, (x[:, 0] > 0))  # float32, int64, bool
    for make in (
        lambda cls: Subset(cls(*_tensors(arrays, symbp)), [5, 0, 11, 3, 3, 7]),
        lambda cls: cls(*_tensors(arrays, symbp)) + cls(*_tensors(arrays, symbp)),
        lambda cls: cls(*arrays) + cls(*arrays),
    ):
        fast, slow = make(TensorDataset), make(Rows)
        assert sdata.dataset.gather(fast, np.arange(2)) is not None
        assert sdata.dataset.gather(slow, np.arange(2)) is None
        got = [_plain(b) for b in DataLoader(fast, batch_size=4)]
        assert got == [_plain(b) for b in DataLoader(slow, batch_size=4)]
        ds_len = len(fast)
        with pytest.raises(IndexError):
            list(DataLoader(fast, batch_sampler=[[0, ds_len]]))
        assert [_plain(b) for b in DataLoader(fast, batch_sampler=[[-1, 0]])] == [
            _plain(b) for b in DataLoader(slow, batch_sampler=[[-1, 0]])
        ]
        assert got[0][1][0] == ("tensor", "float32", x[[5, 0, 11, 3]].tolist() if len(fast) == 6
                                else x[:4].tolist())  # fmt: skip


def test_shuffle_reshuffles_each_epoch_and_follows_the_seed():
    _, y = _data(30)
    ds = TensorDataset(symbp.tensor(np.arange(30)), symbp.tensor(y))

    def epochs(loader, k=3):
        return [np.concatenate([xb.numpy() for xb, _ in loader]).tolist() for _ in range(k)]

    symbp.manual_seed(5)
    a = epochs(DataLoader(ds, batch_size=7, shuffle=True))
    for order in a:
        assert sorted(order) == list(range(30))  # every sample once per epoch
    assert a[0] != a[1] != a[2] and a[0] != list(range(30))
    symbp.manual_seed(5)
    assert epochs(DataLoader(ds, batch_size=7, shuffle=True)) == a
    g1, g2 = np.random.default_rng(8), np.random.default_rng(8)
    b = epochs(DataLoader(ds, batch_size=7, shuffle=True, generator=g1))
    assert b == epochs(DataLoader(ds, batch_size=7, shuffle=True, generator=g2))
    assert b[0] != b[1]


def test_loader_with_samplers_and_batch_sampler_as_torch():
    x, y = _data(10)
    s_ds, t_ds = (
        TensorDataset(*_tensors((x, y), symbp)),
        tdata.TensorDataset(*_tensors((x, y), torch)),
    )
    batches = [[3, 1], [0, 9, 9]]
    ours = list(DataLoader(s_ds, batch_sampler=batches))
    theirs = list(tdata.DataLoader(t_ds, batch_sampler=batches))
    assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]
    ours = list(DataLoader(s_ds, sampler=[4, 2, 8], batch_size=2))
    theirs = list(tdata.DataLoader(t_ds, sampler=[4, 2, 8], batch_size=2))
    assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]
    sub = DataLoader(s_ds, sampler=SubsetRandomSampler([1, 4, 6]), batch_size=2)
    seen = sorted(v for xb, yb in sub for v in yb.tolist())
    assert seen == sorted(y[[1, 4, 6]].tolist()) and len(sub) == 2


def test_iterable_dataset_as_torch():
    def stream(mod):
        class Count(mod.IterableDataset):
            def __iter__(self):
                return iter(range(7))

            def __len__(self):
                return 7

        return Count()

    for size, drop in ((3, False), (3, True), (None, False)):
        ours, theirs = (mod.DataLoader(stream(mod), batch_size=size, drop_last=drop)
                        for mod in (sdata, tdata))  # fmt: skip
        assert len(ours) == len(theirs)
        assert [_plain(b) for b in ours] == [_plain(b) for b in theirs]
    for mod in (sdata, tdata):
        chained = stream(mod) + stream(mod)
        assert isinstance(chained, mod.ChainDataset) and len(chained) == 14
        assert list(chained) == [*range(7), *range(7)]
        with pytest.raises(AssertionError, match="ConcatDataset does not support IterableDataset"):
            mod.ConcatDataset([stream(mod)])


def test_num_workers_run_in_process_with_the_same_batches():
    x, y = _data(10)
    ds = TensorDataset(*_tensors((x, y), symbp))
    calls = []
    serial = [_plain(b) for b in DataLoader(ds, batch_size=3)]
    loader = DataLoader(ds, batch_size=3, num_workers=2, worker_init_fn=calls.append,
                        persistent_workers=True, prefetch_factor=4, timeout=5)  # fmt: skip
    assert [_plain(b) for b in loader] == serial and loader.prefetch_factor == 4
    assert calls == [] and sdata.get_worker_info() is None
    assert DataLoader(ds, num_workers=2).prefetch_factor == 2  # PyTorch's default
    with pytest.warns(UserWarning, match="'pin_memory' argument is set as true"):
        assert [_plain(b) for b in DataLoader(ds, batch_size=3, pin_memory=True)] == serial
    with pytest.warns(UserWarning, match="iterates the IterableDataset once"):

        class Stream(IterableDataset):
            def __iter__(self):
                return iter(range(3))

        DataLoader(Stream(), num_workers=2)


def _ds(mod):
    return mod.TensorDataset(*_tensors(_data(6), symbp if mod is sdata else torch))


def _stream(mod):
    class S(mod.IterableDataset):
        def __iter__(self):
            return iter(range(3))

    return S()


_ERRORS = {
    "negative workers": lambda mod: mod.DataLoader(_ds(mod), num_workers=-1),
    "negative timeout": lambda mod: mod.DataLoader(_ds(mod), timeout=-1),
    "prefetch without workers": lambda mod: mod.DataLoader(_ds(mod), prefetch_factor=2),
    "persistent without workers": lambda mod: mod.DataLoader(_ds(mod), persistent_workers=True),
    "sampler and shuffle": lambda mod: mod.DataLoader(_ds(mod), sampler=[0], shuffle=True),
    "batch_sampler and batch_size": lambda mod: mod.DataLoader(
        _ds(mod), batch_sampler=[[0]], batch_size=2
    ),
    "batch_size None and drop_last": lambda mod: mod.DataLoader(
        _ds(mod), batch_size=None, drop_last=True
    ),
    "iterable and shuffle": lambda mod: mod.DataLoader(_stream(mod), shuffle=True),
    "iterable and sampler": lambda mod: mod.DataLoader(_stream(mod), sampler=[0]),
    "iterable, shuffle and sampler": lambda mod: mod.DataLoader(
        _stream(mod), shuffle=True, sampler=[0]
    ),
    "context without workers": lambda mod: mod.DataLoader(
        _ds(mod), multiprocessing_context="spawn"
    ),
    "set batch_size later": lambda mod: setattr(mod.DataLoader(_ds(mod)), "batch_size", 3),
    "timeout without workers": lambda mod: next(iter(mod.DataLoader(_ds(mod), timeout=1))),
    "batch size zero": lambda mod: mod.BatchSampler(range(3), 0, False),
    "drop_last not bool": lambda mod: mod.BatchSampler(range(3), 2, 1),
    "replacement not bool": lambda mod: mod.RandomSampler(range(3), replacement=1),
    "num_samples zero": lambda mod: mod.RandomSampler(range(3), num_samples=0),
    "weighted num_samples": lambda mod: mod.WeightedRandomSampler([1, 2], 0),
    "weighted replacement": lambda mod: mod.WeightedRandomSampler([1, 2], 2, replacement=0),
    "weighted 2-d": lambda mod: mod.WeightedRandomSampler([[1, 2]], 2),
    "empty concat": lambda mod: mod.ConcatDataset([]),
    "stack args and kwargs": lambda mod: mod.StackDataset(_ds(mod), a=_ds(mod)),
    "stack sizes": lambda mod: mod.StackDataset(_ds(mod), range(2)),
    "base Dataset getitem": lambda mod: mod.Dataset()[0],
    "Subset overriding only __getitem__": lambda mod: type(
        "Picky", (mod.Subset,), {"__getitem__": lambda self, i: 0}
    )(range(3), [0]),
}


@pytest.mark.parametrize("case", list(_ERRORS))
def test_errors_as_torch(case):
    errors = []
    for mod in (sdata, tdata):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(Exception) as e:
                _ERRORS[case](mod)
        errors.append((type(e.value), str(e.value).replace("torch.", "")))
    assert errors[0] == errors[1]


def test_generator_of_the_wrong_kind_is_refused():
    with pytest.raises(TypeError, match=r"generator must be a numpy\.random\.Generator"):
        RandomSampler(range(3), generator=42)
    with pytest.raises(TypeError, match=r"generator must be a numpy\.random\.Generator"):
        random_split(range(3), [1, 2], generator="seed")
