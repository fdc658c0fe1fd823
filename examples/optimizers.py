"""SGD, SGD with momentum, Adam and RMSprop on the digits MLP, each a compiled ``fit``.

The same network (64-128-10, ReLU), the same initial values and the same shuffles for every
optimizer, so the curves differ only by the update rule. Training curves go to
``optimizers.png`` when matplotlib is installed (``pip install 'symbp[plot]'``).

    python examples/optimizers.py [--plot FILE.png]
    SYMBP_EXAMPLE_QUICK=1 python examples/optimizers.py    # 5 epochs, as CI runs it
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # digits_mlp, beside this file

from digits_mlp import digits

import symbp
from symbp import nn

QUICK = os.environ.get("SYMBP_EXAMPLE_QUICK") == "1"
EPOCHS = 5 if QUICK else 20

OPTIMIZERS = {
    "SGD": lambda ps: symbp.optim.SGD(ps, lr=0.01),
    "SGD momentum": lambda ps: symbp.optim.SGD(ps, lr=0.01, momentum=0.9),
    "Adam": lambda ps: symbp.optim.Adam(ps, lr=1e-3),
    "RMSprop": lambda ps: symbp.optim.RMSprop(ps, lr=1e-3),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plot", default="optimizers.png", help="where to save the curves")
    args = p.parse_args()
    X_train, X_test, y_train, y_test = digits()
    histories, accuracy = {}, {}
    for name, make in OPTIMIZERS.items():
        symbp.manual_seed(0)  # the same initial values for every optimizer
        net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        model = symbp.compile(net, nn.CrossEntropyLoss(), make(net.parameters()))
        histories[name] = model.fit(
            X_train, y_train, epochs=EPOCHS, batch_size=32, seed=0,
            validation_data=(X_test, y_test),
        )  # fmt: skip
        accuracy[name] = model.evaluate(X_test, y_test)["accuracy"]
        h = histories[name]
        print(f"{name:13s} loss {h['loss'][0]:.4f} -> {h['loss'][-1]:.4f}, "
              f"test accuracy {accuracy[name]:.2%}")  # fmt: skip

    # the numbers: everything learns; momentum and the adaptive methods beat plain SGD
    final = {name: h["loss"][-1] for name, h in histories.items()}
    for name, h in histories.items():
        assert h["loss"][-1] < h["loss"][0], name
    assert accuracy["SGD"] >= 0.75, accuracy
    for name in ("SGD momentum", "Adam", "RMSprop"):
        assert accuracy[name] >= 0.93, accuracy
        assert final[name] < final["SGD"], final

    try:
        from symbp.plot import plot_history

        plot_history(histories, args.plot, title="digits MLP: optimizers")
        print(f"training curves written to {args.plot}")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install 'symbp[plot]')")
    print("all checks passed")


if __name__ == "__main__":
    main()
