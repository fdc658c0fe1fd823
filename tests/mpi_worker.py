"""Run under ``mpiexec -n N python tests/mpi_worker.py SCENARIO OUTDIR``: distributed
training as tests/test_distributed.py checks it. Each rank writes ``OUTDIR/rank<r>.npz``
(parameters after every epoch, the history, the results of the smaller checks)."""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import symbp
import symbp.distributed as dist
from symbp import nn, optim


def mlp():
    symbp.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def cnn():
    """The digits CNN of symbp.models (two convolutions, pooling, dropout)."""
    from symbp.models import digits_cnn

    symbp.manual_seed(0)
    return digits_cnn().double()


def digits_data():
    """The first 50 of scikit-learn's digits (shipped with symbp), scaled to [0, 1]."""
    from symbp.datasets import load_digits

    X, y = load_digits()
    return X[:50].reshape(-1, 1, 8, 8) / 16.0, y[:50]


def mlp_data():
    rng = np.random.default_rng(1)  # every rank: the same data
    return rng.standard_normal((45, 5)), rng.integers(0, 3, 45)


def cnn_data():
    rng = np.random.default_rng(2)
    return rng.standard_normal((22, 1, 8, 8)), rng.integers(0, 4, 22)


def dropout_mlp():
    symbp.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3)).double()


def dropout_model(distributed=True):
    net = dropout_mlp()
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    return symbp.compile(net, nn.CrossEntropyLoss(), opt, distributed=distributed)


def bn_mlp():
    symbp.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()


def sync_bn_cnn():
    """A CNN with batch norm over images, converted to SyncBatchNorm as PyTorch users do."""
    symbp.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(27, 4)).double()  # fmt: skip
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def stats(net):
    """The running statistics, flat (a buffer may be an array or a Tensor)."""
    bn = net[1]
    return np.concatenate([np.asarray(getattr(bn._buffers[k], "_data", bn._buffers[k])).ravel()
                           for k in ("running_mean", "running_var")])  # fmt: skip


def params(net):
    return np.concatenate([p.detach().numpy().ravel() for p in net.parameters()])


def train(make, data, opt_of, batch_size, epochs=3):
    net = make()
    model = symbp.compile(net, nn.CrossEntropyLoss(), opt_of(net), distributed=True)
    X, y = data
    per_epoch = []
    hist = model.fit(X, y, epochs=epochs, batch_size=batch_size, seed=3,
                     callback=lambda e, h: per_epoch.append(params(net)))  # fmt: skip
    return model, net, np.array(per_epoch), np.array(hist["loss"])


def main(SCENARIO: str, OUT: str) -> None:
    dist.init()
    results: dict[str, np.ndarray] = {}
    if SCENARIO == "mlp":
        model, net, per_epoch, loss = train(
            mlp, mlp_data(), lambda n: optim.Adam(n.parameters(), lr=0.01), batch_size=8
        )
        results.update(per_epoch=per_epoch, loss=loss)
        X, y = mlp_data()
        # step on a global batch of 9 rows (with 4 ranks one has 3 rows, the others 2)
        results["step_loss"] = np.array(model.step(X[:9], y[:9]))
        results["after_step"] = params(net)
        loss1, grads = model.loss_and_grads(X[10:13], y[10:13])  # 3 rows: with 4 ranks one has none
        results["lg_loss"] = np.array(loss1)
        results["lg_grads"] = np.concatenate([g.ravel() for g in grads.values()])
        results["eval_loss"] = np.array(model.evaluate(X, y, batch_size=7)["loss"])
        # the user-level collectives
        a = np.arange(3.0) + dist.rank()
        results["all_reduce"] = dist.all_reduce(a).copy()
        other = mlp()
        if dist.rank() != 0:
            for p in other.parameters():
                p.data[...] = 7.0
        dist.broadcast_parameters(other)
        results["broadcast"] = params(other)
        # bad data on one rank: every rank raises, naming it
        Xb = X.copy()
        if dist.rank() == dist.world_size() - 1:
            Xb[4, 2] = np.nan
        try:
            model.step(Xb[:8], y[:8])
            results["bad_data"] = np.array("no error")
        except Exception as e:  # the message is what the test reads
            results["bad_data"] = np.array(f"{type(e).__name__}: {e}")
        results["after_bad"] = params(net)
    elif SCENARIO == "cnn":
        _, _, per_epoch, loss = train(
            cnn, digits_data(), lambda n: optim.SGD(n.parameters(), lr=0.05, momentum=0.9),
            batch_size=16, epochs=2,
        )  # fmt: skip
        results.update(per_epoch=per_epoch, loss=loss)
    elif SCENARIO == "bn":  # batch norm: each rank's share its own batch statistics
        net = bn_mlp()
        opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        model = symbp.compile(net, nn.CrossEntropyLoss(), opt, distributed=True)
        X, y = mlp_data()
        for k in range(4):
            model.step(X[9 * k : 9 * k + 9], y[9 * k : 9 * k + 9])
        results.update(final=params(net), stats=stats(net))
    elif SCENARIO == "syncbn":  # statistics of the whole batch: N ranks train as one process
        net = sync_bn_cnn()
        opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        model = symbp.compile(net, nn.CrossEntropyLoss(), opt, distributed=True)
        X, y = cnn_data()
        per_epoch = []
        hist = model.fit(X, y, epochs=2, batch_size=6, seed=3,
                         callback=lambda e, h: per_epoch.append(params(net)))  # fmt: skip
        results.update(per_epoch=np.array(per_epoch), loss=np.array(hist["loss"]),
                       stats=stats(net))  # fmt: skip
        # 3 rows on 4 ranks: one rank has none, and still takes part in every sum
        loss1, grads = model.loss_and_grads(X[:3], y[:3])
        results["lg_loss"] = np.array(loss1)
        results["lg_grads"] = np.concatenate([g.ravel() for g in grads.values()])
        # eagerly: each rank its half of 8 rows, PyTorch's SyncBatchNorm semantics (the sum
        # of the ranks' losses), gradients averaged over the ranks by hand as DDP does
        eager = sync_bn_cnn()
        r, n = dist.rank(), dist.world_size()
        lo, hi = 8 * r // n, 8 * (r + 1) // n
        out = eager(symbp.tensor(X[lo:hi]))
        nn.CrossEntropyLoss()(out, symbp.tensor(y[lo:hi])).backward()
        results["eager_out"] = out.detach().numpy()
        results["eager_grads"] = np.concatenate(
            [dist.all_reduce(p.grad.numpy().copy(), "mean").ravel() for p in eager.parameters()]
        )
        results["eager_stats"] = stats(eager)
    elif SCENARIO == "kill":  # checkpoints every epoch; the last rank dies after epoch 2
        model = dropout_model()
        X, y = mlp_data()

        def die(epoch, history):
            if epoch == 1 and dist.rank() == dist.world_size() - 1:
                # only after rank 0 has written epoch 2's checkpoint: dying while it writes,
                # the job ends with epoch 1's (the write is atomic), which the test cannot
                # tell from a lost checkpoint
                path = os.path.join(OUT, "ckpt.npz")
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    try:
                        if symbp.load_checkpoint(path).epoch >= 2:
                            break
                    except (OSError, ValueError, KeyError):
                        pass  # not there yet, or being replaced
                    time.sleep(0.05)
                os._exit(3)

        model.fit(X, y, epochs=50, batch_size=8, seed=3, callback=die,
                  checkpoint=os.path.join(OUT, "ckpt.npz"))  # fmt: skip
    elif SCENARIO == "resume":  # from the dead run's last checkpoint, on to epoch 4
        model = dropout_model()
        X, y = mlp_data()
        hist = model.fit(X, y, epochs=4, batch_size=8, resume=os.path.join(OUT, "ckpt.npz"))
        results.update(final=params(model.net), loss=np.array(hist["loss"]))
    elif SCENARIO == "raise":  # an uncaught error on one rank ends the job
        if dist.rank() == 1:
            raise ValueError("bad data on this rank")
        dist.barrier()  # the other ranks would wait here forever
    np.savez(os.path.join(OUT, f"rank{dist.rank()}.npz"), **results)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
