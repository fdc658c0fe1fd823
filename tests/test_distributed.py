"""Data-parallel training on MPI (``symbp.distributed``): N ranks train as one process does.

Each scenario runs ``tests/mpi_worker.py`` under ``mpiexec -n N`` (oversubscribed on small
machines) and reads back what every rank wrote; the reference is the same model trained in
this process, undistributed, with the same global batch and seed (so the same shuffle).
Without mpi4py and an ``mpiexec`` these tests skip, unless ``SYMBP_REQUIRE_MPI=1`` (.ci/run),
which makes that a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import symbp
from symbp import nn, optim

sys.path.insert(0, str(Path(__file__).parent))
import mpi_worker as W  # the models and data the ranks use

pytestmark = pytest.mark.slow

REQUIRE = os.environ.get("SYMBP_REQUIRE_MPI") == "1"


def _mpiexec() -> list[str]:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        if REQUIRE:
            pytest.fail("SYMBP_REQUIRE_MPI=1 but mpi4py does not import: pip install mpi4py mpich")
        pytest.skip("MPI is not installed (pip install mpi4py mpich)")
    exe = shutil.which("mpiexec")
    if exe is None:
        if REQUIRE:
            pytest.fail("SYMBP_REQUIRE_MPI=1 but no mpiexec on PATH")
        pytest.skip("no mpiexec on PATH")
    cmd = [exe, "-n"]
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in out or "OpenRTE" in out:  # more ranks than cores, and as root
        cmd = [exe, "--oversubscribe", "--allow-run-as-root", "-n"]
    return cmd


def run(scenario: str, n: int, tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(symbp.__file__).parents[1]),
                                         env.get("PYTHONPATH", "")])  # fmt: skip
    env["NUMBA_NUM_THREADS"] = "1"  # N ranks share the cores
    worker = str(Path(__file__).parent / "mpi_worker.py")
    return subprocess.run(
        [*_mpiexec(), str(n), sys.executable, worker, scenario, str(tmp)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def ranks(tmp: Path, n: int) -> list[dict[str, np.ndarray]]:
    return [dict(np.load(tmp / f"rank{r}.npz")) for r in range(n)]


def reference(make, data, opt_of, batch_size, epochs):
    net = make()
    model = symbp.compile(net, nn.CrossEntropyLoss(), opt_of(net))
    per_epoch = []
    hist = model.fit(*data, epochs=epochs, batch_size=batch_size, seed=3,
                     callback=lambda e, h: per_epoch.append(W.params(net)))  # fmt: skip
    return model, net, np.array(per_epoch), np.array(hist["loss"])


def _close(a, b, tol=1e-10):
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("n", [1, 2, 4])
def test_mlp_adam_equals_one_process(n, tmp_path):
    done = run("mlp", n, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = ranks(tmp_path, n)
    model, net, per_epoch, loss = reference(
        W.mlp, W.mlp_data(), lambda m: optim.Adam(m.parameters(), lr=0.01), 8, 3
    )
    for r in out:  # every rank, every epoch: the single-process parameters and losses
        _close(r["per_epoch"], per_epoch)
        _close(r["loss"], loss)
        np.testing.assert_array_equal(r["per_epoch"], out[0]["per_epoch"])  # bit-identical
    X, y = W.mlp_data()
    step_loss = model.step(X[:9], y[:9])
    lg_loss, grads = model.loss_and_grads(X[10:13], y[10:13])
    ev = model.evaluate(X, y, batch_size=7)["loss"]
    for r in out:
        _close(r["step_loss"], step_loss)
        _close(r["after_step"], W.params(net))
        _close(r["lg_loss"], lg_loss)
        _close(r["lg_grads"], np.concatenate([g.ravel() for g in grads.values()]))
        _close(r["eval_loss"], ev)
        # user collectives: sum of arange(3) + rank over the ranks; rank 0's parameters
        np.testing.assert_array_equal(r["all_reduce"], n * np.arange(3.0) + n * (n - 1) / 2)
        np.testing.assert_array_equal(r["broadcast"], W.params(W.mlp()))
        # NaN in the last rank's batch: an error on every rank, nothing updated
        msg = str(r["bad_data"])
        assert msg != "no error" and ("non-finite" in msg or "rank" in msg), msg
        np.testing.assert_array_equal(r["after_bad"], r["after_step"])
    if n > 1:
        assert f"rank {n - 1} failed" in str(out[0]["bad_data"])
    assert "non-finite value (nan) in row 4" in str(out[-1]["bad_data"])


@pytest.mark.parametrize("n", [1, 2, 4])
def test_digits_cnn_sgd_momentum_equals_one_process(n, tmp_path):
    """The digits CNN (dropout included) on real digits, global batch 16 (the last of 50 rows
    has 2: with 4 ranks two have none)."""
    done = run("cnn", n, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = ranks(tmp_path, n)
    _, _, per_epoch, loss = reference(
        W.cnn, W.digits_data(), lambda m: optim.SGD(m.parameters(), lr=0.05, momentum=0.9), 16, 2
    )
    for r in out:
        _close(r["per_epoch"], per_epoch)
        _close(r["loss"], loss)
        np.testing.assert_array_equal(r["per_epoch"], out[0]["per_epoch"])  # bit-identical


def test_a_rank_that_raises_ends_the_job(tmp_path):
    done = run("raise", 2, tmp_path, timeout=300)
    assert done.returncode != 0
    err = done.stdout + done.stderr
    assert "rank 1 failed" in err and "bad data on this rank" in err, err


def test_a_killed_rank_ends_the_job_and_its_checkpoint_resumes(tmp_path):
    """Dropout too: each share draws the masks one process draws for those rows."""
    done = run("kill", 2, tmp_path, timeout=300)  # a hang would be a TimeoutExpired
    assert done.returncode != 0
    assert not (tmp_path / "rank0.npz").exists()
    assert symbp.load_checkpoint(tmp_path / "ckpt.npz").epoch == 2
    done = run("resume", 2, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = ranks(tmp_path, 2)
    model = W.dropout_model(distributed=False)  # uninterrupted, in one process
    hist = model.fit(*W.mlp_data(), epochs=4, batch_size=8, seed=3)
    for r in out:
        _close(r["final"], W.params(model.net))
        _close(r["loss"], hist["loss"])
    np.testing.assert_array_equal(out[0]["final"], out[1]["final"])


def _eager_ddp_step(net, opt, x, y, n):
    """DistributedDataParallel's step, by hand (eager, one process): each of ``n`` shares
    normalises by its own batch statistics; the gradient is the share-weighted mean of the
    shares' gradients; the running statistics are those of the last share."""
    bn = net[1]
    keys = ("running_mean", "running_var")
    arr = {k: np.asarray(getattr(bn._buffers[k], "_data", bn._buffers[k])) for k in keys}
    start = {k: arr[k].copy() for k in keys}
    total = [np.zeros(p.shape) for p in net.parameters()]
    for r in range(n):
        lo, hi = len(x) * r // n, len(x) * (r + 1) // n
        for k in keys:
            arr[k][...] = start[k]
        opt.zero_grad()
        out = net(symbp.tensor(x[lo:hi]))
        nn.CrossEntropyLoss()(out, symbp.tensor(y[lo:hi])).backward()
        for acc, p in zip(total, net.parameters()):
            acc += (hi - lo) / len(x) * p.grad.numpy()
    for acc, p in zip(total, net.parameters()):
        p.grad = symbp.tensor(acc)
    opt.step()


def test_batch_norm_statistics_per_rank_as_ddp(tmp_path):
    done = run("bn", 2, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = ranks(tmp_path, 2)
    net = W.bn_mlp()
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    X, y = W.mlp_data()
    for k in range(4):
        _eager_ddp_step(net, opt, X[9 * k : 9 * k + 9], y[9 * k : 9 * k + 9], 2)
    for r in out:
        _close(r["final"], W.params(net))
        _close(r["stats"], W.stats(net))
    np.testing.assert_array_equal(out[0]["final"], out[1]["final"])
    np.testing.assert_array_equal(out[0]["stats"], out[1]["stats"])


def _plain_bn_cnn():
    """sync_bn_cnn as it was before the conversion: plain BatchNorm2d, the same weights."""
    symbp.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(27, 4)).double()  # fmt: skip


@pytest.mark.parametrize("n", [2, 4])
def test_sync_batch_norm_equals_one_process(n, tmp_path):
    """SyncBatchNorm on N ranks normalises by the whole batch's statistics: compiled, the
    job trains as one process with plain batch norm and the same global batch (4 ranks: the
    short last batch of 4 rows gives each rank one row, and 3 rows leave one rank none);
    eagerly, each rank's outputs are its rows of the whole batch's, and the gradients,
    averaged over the ranks as DDP does, are the whole batch's."""
    done = run("syncbn", n, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = ranks(tmp_path, n)
    net = _plain_bn_cnn()
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    model = symbp.compile(net, nn.CrossEntropyLoss(), opt)
    X, y = W.cnn_data()
    per_epoch = []
    hist = model.fit(X, y, epochs=2, batch_size=6, seed=3,
                     callback=lambda e, h: per_epoch.append(W.params(net)))  # fmt: skip
    lg_loss, grads = model.loss_and_grads(X[:3], y[:3])
    eager = _plain_bn_cnn()
    whole = eager(symbp.tensor(X[:8]))
    nn.CrossEntropyLoss()(whole, symbp.tensor(y[:8])).backward()
    for r, got in enumerate(out):
        _close(got["per_epoch"], np.array(per_epoch))
        _close(got["loss"], hist["loss"])
        _close(got["stats"], W.stats(net))
        _close(got["lg_loss"], lg_loss)
        _close(got["lg_grads"], np.concatenate([g.ravel() for g in grads.values()]))
        _close(got["eager_out"], whole.detach().numpy()[8 * r // n : 8 * (r + 1) // n])
        _close(got["eager_grads"], np.concatenate([p.grad.numpy().ravel()
                                                   for p in eager.parameters()]))  # fmt: skip
        _close(got["eager_stats"], W.stats(eager))
        np.testing.assert_array_equal(got["per_epoch"], out[0]["per_epoch"])  # bit-identical


def test_a_world_of_one():
    _mpiexec()  # MPI installed (or a skip)
    import symbp.distributed as dist

    dist.init()  # this process alone
    assert dist.is_initialized() and dist.rank() == 0 and dist.world_size() == 1
    a = np.arange(4.0)
    assert dist.all_reduce(a, op="mean") is a
    np.testing.assert_array_equal(a, np.arange(4.0))
    with pytest.raises(ValueError, match="op must be one of"):
        dist.all_reduce(a, op="avg")


MODEL = """
import numpy as np
import symbp
from symbp import nn, optim

symbp.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).double()
loss_fn = nn.CrossEntropyLoss()
optimizer = optim.Adam(model.parameters(), lr=0.01)
rng = np.random.default_rng(0)
data = (rng.standard_normal((40, 4)), rng.integers(0, 3, 40))
sample = (data[0][:4], data[1][:4])
"""


def test_symbp_train_distributed(tmp_path, capsys):
    """`mpiexec -n 2 symbp train MODEL --distributed` prints (once) what one process prints."""
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    cmd = [*_mpiexec(), "2", sys.executable, "-m", "symbp.cli", "train", str(path),
           "--distributed", "--epochs", "3", "--quiet"]  # fmt: skip
    env = dict(os.environ, NUMBA_NUM_THREADS="1",
               PYTHONPATH=str(Path(symbp.__file__).parents[1]))  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    from symbp import cli

    assert cli.main(["train", str(path), "--epochs", "3", "--quiet"]) == 0
    one = capsys.readouterr().out.strip().splitlines()[-1]
    lines = [line for line in done.stdout.splitlines() if line.startswith("Adam, 3 epochs")]
    assert len(lines) == 1, done.stdout  # rank 0 alone prints
    # the same losses and accuracies (the times differ)
    assert lines[0].split(": ", 1)[1] == one.split(": ", 1)[1]
