"""``CompiledModel.export`` and ``symbp export``: the generated kernels as a module that runs
where symbp cannot be imported, giving symbp's predictions and training steps (float64, to
1e-12), and a NumPy forward pass written here as the independent reference."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import symbp
from symbp import nn
from symbp.export import ExportError

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(21)
X = RNG.normal(size=(96, 64))
Y = RNG.integers(0, 10, size=96)
XT = RNG.normal(size=(40, 64))

# Run with symbp made unimportable: ``import symbp`` raises ImportError in there.
NO_SYMBP = "import sys; sys.modules['symbp'] = None\n"


pytestmark = pytest.mark.usefixtures("tmp_cache")  # compile into this session's cache


def run_without_symbp(code: str, where: Path) -> subprocess.CompletedProcess:
    script = where / "run_exported.py"
    script.write_text(NO_SYMBP + f"sys.path.insert(0, {str(where)!r})\n" + textwrap.dedent(code))
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          cwd=where, timeout=600)  # fmt: skip


def make():
    """An MLP big enough that its matrix products go to gemm (MKL when symbp has it), with a
    sigmoid (a copied helper) and Adam (hyperparameters and state to carry)."""
    symbp.manual_seed(4)
    net = nn.Sequential(nn.Linear(64, 48), nn.Sigmoid(), nn.Linear(48, 10)).double()
    opt = symbp.optim.Adam(net.parameters(), lr=0.01)
    return net, symbp.compile(net, nn.CrossEntropyLoss(), opt)


def numpy_forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    h = 1 / (1 + np.exp(-(x @ params["0.weight"].T + params["0.bias"])))
    return h @ params["2.weight"].T + params["2.bias"]


@pytest.mark.slow
def test_exported_module_predicts_and_trains_as_symbp(tmp_path):
    net, model = make()
    model.build(X[:32], Y[:32])
    before, _ = model.export(tmp_path / "untrained.py")  # training starts from here in there
    model.fit(X, Y, epochs=3, batch_size=32, seed=5)
    model.predict(XT)
    module, weights = model.export(tmp_path / "trained.py")
    assert (module, weights) == (tmp_path / "trained.py", tmp_path / "trained.npz")
    imported = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    # the standard library, numpy and numba (llvmlite is Numba's own: the copied SIMD vectors
    # of the matrix-product kernel use it, where this CPU runs it rather than the BLAS:
    # symbp.compiler.lower.tuning), never symbp
    assert {"math", "os", "numpy", "numba"} <= imported
    assert imported <= {"math", "os", "typing", "numpy", "numba", "llvmlite"}
    np.save(tmp_path / "X.npy", X), np.save(tmp_path / "Y.npy", Y), np.save(tmp_path / "XT.npy", XT)

    out = run_without_symbp(
        """
        import numpy as np
        try:
            import symbp
        except ImportError:
            pass
        else:
            raise SystemExit("symbp importable")
        import trained, untrained
        X, Y, XT = (np.load(n + ".npy") for n in ("X", "Y", "XT"))
        losses = untrained.fit(X, Y, epochs=3, batch_size=32, seed=5)
        np.savez("out.npz", trained=trained.predict(XT), fitted=untrained.predict(XT),
                 small_batches=trained.predict(XT, batch_size=7), losses=np.array(losses),
                 **{"p/" + k: v for k, v in untrained.model().params.items()})
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = np.load(tmp_path / "out.npz")
    want = model.predict(XT)
    params = {name: p.numpy() for name, p in net.named_parameters()}
    np.testing.assert_allclose(got["trained"], want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["small_batches"], want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(got["trained"], numpy_forward(params, XT), rtol=0, atol=1e-12)
    # the exported training program took the same three epochs as symbp's fit
    for name, value in params.items():
        np.testing.assert_allclose(got[f"p/{name}"], value, rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got["fitted"], want, rtol=0, atol=1e-12)
    assert before.is_file() and len(got["losses"]) == 3
    assert got["losses"][-1] < got["losses"][0]


@pytest.mark.slow
def test_exported_module_saves_and_reloads_its_training_state(tmp_path):
    _, model = make()
    model.fit(X, Y, epochs=1, batch_size=32, seed=1)
    model.export(tmp_path / "mlp.py")
    np.save(tmp_path / "X.npy", X), np.save(tmp_path / "Y.npy", Y)
    out = run_without_symbp(
        """
        import json
        import numpy as np
        import mlp
        X, Y = np.load("X.npy"), np.load("Y.npy")
        a = mlp.Model()
        a.fit(X, Y, epochs=1, batch_size=32, seed=1)
        a.save("saved.npz")
        b = mlp.Model("saved.npz")
        lr = [name for group in mlp.HYPER for name in group].index("lr")
        print(json.dumps({"same": bool(np.array_equal(a.W, b.W)), "epoch": b.epoch,
                          "step": int(b.ints[0]), "lr": float(b.hyper[lr])}))
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads(out.stdout)
    # one epoch of 96 samples in batches of 32 in here, after one in symbp: 6 Adam steps
    assert state == {"same": True, "epoch": 1, "step": 6, "lr": 0.01}


@pytest.mark.slow
def test_exported_training_updates_the_batch_norm_statistics_predict_reads(tmp_path):
    symbp.manual_seed(6)
    net = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3)).double()
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    x, y = RNG.normal(size=(24, 5)), RNG.integers(0, 3, size=24)
    model.build(x[:8], y[:8])
    model.export(tmp_path / "bn.py")
    model.fit(x, y, epochs=2, batch_size=8, seed=3)
    want = model.predict(x)  # eval mode: the running statistics the two epochs left
    np.save(tmp_path / "x.npy", x), np.save(tmp_path / "y.npy", y)
    out = run_without_symbp(
        """
        import numpy as np
        import bn
        x, y = np.load("x.npy"), np.load("y.npy")
        bn.fit(x, y, epochs=2, batch_size=8, seed=3)
        params = {"p/" + k: v for k, v in bn.model().params.items()}
        np.savez("got.npz", out=bn.predict(x), **params)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = np.load(tmp_path / "got.npz")
    for name, value in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue  # counted in Python by symbp, not by the kernels
        np.testing.assert_allclose(got[f"p/{name}"], value, rtol=0, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(got["out"], want, rtol=0, atol=1e-12)


def test_export_errors_are_clear(tmp_path):
    _, model = make()
    with pytest.raises(ExportError, match="nothing compiled to export yet"):
        model.export(tmp_path / "m.py")
    model.build(X[:4], Y[:4])
    with pytest.raises(ExportError, match=r"must end in \.py, not 'm\.txt'"):
        model.export(tmp_path / "m.txt")
    with pytest.raises(ExportError, match="'my-model' is not a Python module name"):
        model.export(tmp_path / "my-model.py")


@pytest.mark.slow
def test_inference_only_model_exports_predict(tmp_path):
    symbp.manual_seed(2)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    model = symbp.compile(net)
    x = RNG.normal(size=(5, 3))
    want = model.predict(x)
    model.export(tmp_path / "infer.py")
    np.save(tmp_path / "x.npy", x)
    out = run_without_symbp(
        """
        import numpy as np
        import infer
        np.save("got.npy", infer.predict(np.load("x.npy")))
        try:
            infer.fit(np.load("x.npy"), np.zeros((5, 2)))
        except RuntimeError as e:
            print(e)
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), want, rtol=0, atol=1e-12)
    w1, b1, w2, b2 = (p.numpy() for p in net.parameters())
    np.testing.assert_allclose(want, np.tanh(x @ w1.T + b1) @ w2.T + b2, rtol=0, atol=1e-12)
    assert "exported without its training program" in out.stdout


@pytest.mark.slow
def test_cli_export_of_the_tutorial_network(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "symbp.cli", "export", str(ROOT / "examples" / "model_222.py"),
         str(tmp_path / "net222.py")],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "net222.py" in out.stdout and "net222.npz" in out.stdout
    run = run_without_symbp(
        """
        import json
        import numpy as np
        import net222
        x = np.array([[0.05, 0.10]], np.float32)
        t = np.array([[0.01, 0.99]], np.float32)
        o = net222.predict(x)
        loss = net222.train_step(x, t)  # the tutorial's one SGD step, lr 0.5
        w2 = net222.model().params["linear2.weight"]
        print(json.dumps({"o": o.tolist(), "loss": loss, "w2": w2.tolist()}))
        """,
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout)
    o, loss, w2 = np.array(got["o"]), got["loss"], np.array(got["w2"])
    # The worked example's numbers, computed here in float64 from its weights
    x, t = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    w1, b1 = np.array([[0.15, 0.20], [0.25, 0.30]]), 0.35
    w2_0, b2 = np.array([[0.40, 0.45], [0.50, 0.55]]), 0.60
    h = 1 / (1 + np.exp(-(w1 @ x + b1)))
    want = 1 / (1 + np.exp(-(w2_0 @ h + b2)))
    np.testing.assert_allclose(o[0], want, rtol=1e-6)
    assert loss == pytest.approx(0.5 * np.sum((want - t) ** 2), rel=1e-6)
    delta = (want - t) * want * (1 - want)
    np.testing.assert_allclose(w2, w2_0 - 0.5 * np.outer(delta, h), rtol=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["examples/model_222.py", "out.txt"], "must end in .py, not 'out.txt'"),
        (["no/such/model.py", "out.py"], "MODEL file not found: no/such/model.py"),
    ],
)
def test_cli_export_errors_are_one_line(args, message, tmp_path):
    out = subprocess.run([sys.executable, "-m", "symbp.cli", "export", *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert message in line
    assert not (ROOT / "out.py").exists() and not (ROOT / "out.npz").exists()


@pytest.mark.slow
def test_exported_cnn_carries_the_convolution_kernels(tmp_path):
    """A CNN's export copies the library kernels and their SIMD intrinsics (a Numba type and
    its data model, copied as a whole module); it predicts and trains as symbp does."""
    from symbp.models import digits_cnn

    symbp.manual_seed(3)
    net = digits_cnn().double().eval()  # eval: no dropout, so training is deterministic
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    x = RNG.uniform(0, 1, size=(6, 1, 8, 8))
    y = np.arange(6) % 10
    model.step(x, y)  # builds the training program: its kernels are exported too
    want = model.predict(x)
    model.export(tmp_path / "cnn.py")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = run_without_symbp(
        """
        import numpy as np
        import cnn
        x, y = np.load("x.npy"), np.load("y.npy")
        np.save("got.npy", cnn.predict(x))
        cnn.train_step(x, y)
        np.save("after.npy", cnn.predict(x))
        """,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "got.npy"), want, rtol=0, atol=1e-12)
    model.step(x, y)
    after = model.predict(x)
    assert np.abs(after - want).max() > 1e-6  # the step changed the model
    np.testing.assert_allclose(np.load(tmp_path / "after.npy"), after, rtol=0, atol=1e-12)
