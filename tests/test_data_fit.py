"""CompiledModel.fit and evaluate on a DataLoader or TensorDataset: the trajectory of fit on
the same arrays, and clear errors for what fit cannot do the loader's way."""

from __future__ import annotations

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.utils.data import (
    DataLoader,
    Dataset,
    Subset,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
)

pytestmark = pytest.mark.usefixtures("tmp_cache")  # compile into this session's cache


def _model(seed=0):
    symbp.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.ReLU(),
                        nn.Linear(6, 3, dtype=np.float64))  # fmt: skip
    return net, symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.Adam(net.parameters(), 0.01))


def _blobs(n=23):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) + np.eye(3, 4)[y] * 2, y


def _same_run(a, b):
    (net_a, hist_a), (net_b, hist_b) = a, b
    np.testing.assert_array_equal(hist_a["loss"], hist_b["loss"])
    for p, q in zip(net_a.parameters(), net_b.parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def _fit(data, *args, **kw):
    net, model = _model()
    return net, model.fit(data, *args, **kw)


def test_fit_on_a_loader_follows_the_trajectory_of_fit_on_the_arrays():
    x, y = _blobs()
    ds = TensorDataset(symbp.tensor(x), symbp.tensor(y))
    arrays = _fit(x, y, epochs=3, batch_size=5, shuffle=False)
    _same_run(_fit(DataLoader(ds, batch_size=5), epochs=3), arrays)
    _same_run(_fit(ds, epochs=3, batch_size=5, shuffle=False), arrays)
    # the reference: the eager step loop over the loader's own batches, in its order
    net, model = _model()
    for _ in range(3):
        for xb, yb in DataLoader(ds, batch_size=5):
            model.step(xb.numpy(), yb.numpy())
    for p, q in zip(net.parameters(), arrays[0].parameters()):
        np.testing.assert_allclose(p.data, q.data, rtol=1e-12, atol=1e-14)
    shuffled = _fit(x, y, epochs=3, batch_size=5, seed=11)
    _same_run(_fit(DataLoader(ds, batch_size=5, shuffle=True), epochs=3, seed=11), shuffled)
    net, _ = shuffled  # fit's order is epoch_order(seed, epoch): not the arrays' order
    assert not np.array_equal(net[0].weight.data, arrays[0][0].weight.data)


def test_fit_on_a_loader_drop_last_subset_and_seed():
    x, y = _blobs()
    ds = TensorDataset(symbp.tensor(x), symbp.tensor(y))
    _same_run(_fit(DataLoader(ds, batch_size=5, drop_last=True), epochs=2),
              _fit(x[:20], y[:20], epochs=2, batch_size=5, shuffle=False))  # fmt: skip
    train = Subset(ds, [4, 8, 15, 16, 23 - 1, 0, 3])
    idx = np.array(train.indices)
    _same_run(_fit(DataLoader(train, batch_size=3), epochs=2),
              _fit(x[idx], y[idx], epochs=2, batch_size=3, shuffle=False))  # fmt: skip
    # no seed: one drawn from the loader's generator, so manual_seed makes the run repeat
    runs = []
    for _ in range(2):
        net, model = _model()  # (manual_seed inside)
        runs.append((net, model.fit(DataLoader(ds, batch_size=5, shuffle=True), epochs=2)))
    _same_run(*runs)
    g = np.random.default_rng(4)
    seed = int(np.random.default_rng(4).integers(2**62))
    _same_run(_fit(DataLoader(ds, batch_size=5, shuffle=True, generator=g), epochs=2),
              _fit(x, y, epochs=2, batch_size=5, seed=seed))  # fmt: skip
    net, model = _model()
    want = model.evaluate(x, y)
    assert model.evaluate(DataLoader(ds, batch_size=4)) == want
    assert model.evaluate(ds) == want
    hist = model.fit(ds, epochs=1, batch_size=5, validation_data=DataLoader(ds, batch_size=7))
    assert hist["val_loss"] == [model.evaluate(x, y)["loss"]]


class _Custom(Dataset):
    def __getitem__(self, i):
        return np.ones(4), 0

    def __len__(self):
        return 6


_FIT_ERRORS = {
    "y with a loader": ((lambda ds: DataLoader(ds, batch_size=5)), {"y": np.zeros(23)},
                        TypeError, "leave y out with a DataLoader"),
    "batch_size conflict": ((lambda ds: DataLoader(ds, batch_size=5)), {"batch_size": 8},
                            ValueError, r"batch_size=8 conflicts with the DataLoader's batch_size"),
    "shuffle conflict": ((lambda ds: DataLoader(ds, batch_size=5)), {"shuffle": True},
                         ValueError, "shuffle=True conflicts"),
    "shuffle and drop_last": ((lambda ds: DataLoader(ds, 5, shuffle=True, drop_last=True)), {},
                              ValueError, "a different 3 samples each epoch"),
    "custom collate": ((lambda ds: DataLoader(ds, 5, collate_fn=default_collate.__call__)), {},
                       ValueError, "its own collate_fn"),
    "weighted sampler": ((lambda ds: DataLoader(ds, 5, sampler=WeightedRandomSampler([1] * 9, 9))),
                         {}, ValueError, "cannot train with the DataLoader's WeightedRandom"),
    "batch_sampler": ((lambda ds: DataLoader(ds, batch_sampler=[[0, 1]])), {},
                      ValueError, "has no batch_size"),
    "custom dataset": ((lambda ds: DataLoader(_Custom(), 2)), {},
                       TypeError, "cannot read the arrays of a _Custom: its samples come from"),
    "three tensors": ((lambda ds: TensorDataset(*ds.tensors, ds.tensors[1])), {},
                      ValueError, r"expects samples \(x, y\), got a TensorDataset of 3 tensors"),
    "no targets": ((lambda ds: ds.tensors[0].numpy()), {}, TypeError, "missing the targets y"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_FIT_ERRORS))
def test_fit_refuses_what_it_cannot_do_the_loaders_way(case):
    make, kw, error, match = _FIT_ERRORS[case]
    x, y = _blobs()
    _, model = _model()
    with pytest.raises(error, match=match):
        model.fit(make(TensorDataset(symbp.tensor(x), symbp.tensor(y))), **kw)
