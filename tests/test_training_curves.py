"""docs/guides/ecosystem.md's training-curve recipes run as written: the TensorBoard callback
(tensorboardX, where it installs) writes one scalar per history entry and epoch, read back here
from the event file with tensorboardX's own protobuf classes, equal to fit's history; the
MLflow callback (mlflow-skinny) logs them by step, read back with MLflow's own client."""

import re
import struct
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "guides" / "ecosystem.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def block_with(text: str) -> str:
    (block,) = [b for b in python_blocks() if text in b]
    return block


def read_events(path: Path):
    """TensorBoard's record format: length (u64), its CRC (u32), the Event bytes, their CRC."""
    from tensorboardX.proto import event_pb2

    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (n,) = struct.unpack("<Q", data[at : at + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[at + 12 : at + 12 + n])
        events.append(event)
        at += 12 + n + 4
    return events


@pytest.mark.slow
def test_tensorboard_recipe(tmp_path):
    pytest.importorskip("tensorboardX")  # not a PyTorch comparison: CI's torch check ignores it
    scope: dict = {}
    exec(block_with("model = symbp.compile("), scope)  # the digits model
    exec(block_with("def tensorboard("), scope)
    usage = block_with('log = tensorboard("runs/digits-mlp")')
    usage = usage.replace('"runs/digits-mlp"', repr(str(tmp_path / "run")))
    usage = usage.replace("epochs=20", "epochs=3")  # the same lines, fewer epochs
    exec(usage, scope)
    history = scope["history"]
    assert sorted(history) == ["loss", "lr", "val_accuracy", "val_loss"]
    (events_file,) = (tmp_path / "run").glob("events.out.tfevents.*")
    logged: dict = {}
    for event in read_events(events_file):
        for value in event.summary.value:
            logged.setdefault(value.tag, []).append((event.step, value.simple_value))
    assert sorted(logged) == sorted(history)
    for name, values in history.items():
        assert [step for step, _ in logged[name]] == [1, 2, 3]
        np.testing.assert_array_equal(
            [v for _, v in logged[name]],
            np.float32(values),  # TensorBoard keeps float32
        )


def test_mlflow_recipe(tmp_path, monkeypatch):
    """The callback logs each history entry by step; MLflow's client reads them back. The
    store is a directory under tmp_path: MLflow 3 defaults to SQLite, which mlflow-skinny (the
    test extra's) cannot open, and keeps its file store behind MLFLOW_ALLOW_FILE_STORE."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.chdir(tmp_path)  # anything else it writes stays here too
    scope: dict = {}
    exec(block_with("def mlflow_callback("), scope)
    history = {"loss": [1.0, 0.5], "val_loss": [1.2, 0.7]}
    with mlflow.start_run() as run:
        for epoch in range(2):
            scope["mlflow_callback"](epoch, {k: v[: epoch + 1] for k, v in history.items()})
    client = mlflow.tracking.MlflowClient()
    for name, values in history.items():
        logged = client.get_metric_history(run.info.run_id, name)
        assert [(m.step, m.value) for m in logged] == [(1, values[0]), (2, values[1])]
