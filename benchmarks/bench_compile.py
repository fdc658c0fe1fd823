#!/usr/bin/env python
"""Where a cold compile goes: symbp's stages, Numba's typing, LLVM, code generation, the cache.

Usage::

    python benchmarks/bench_compile.py                 # demo MLP, a test-sized CNN, warm runs
    python benchmarks/bench_compile.py --cases demo    # one case
    python benchmarks/bench_compile.py --child demo    # (internal) one measurement, as JSON

Each measurement runs in a fresh child process with empty caches: an empty ``SYMBP_CACHE_DIR``
(the programs) and an empty ``NUMBA_CACHE_DIR`` (symbp's library kernels and helpers, as after
a fresh install), then, for the "warm" rows, the same case again on the caches the cold child
left. Times are CPU seconds of the child (``time.process_time``: user + system of all its
threads), not wall time: the machines this project runs on are shared, and CPU time does not
count the time a busy neighbour holds a core. Numba compiles in the calling thread, so for a
compile CPU time is what a quiet machine would show as wall time, give or take the thread pool.

The split is exclusive (a stage's own time, not the stages it calls):

* ``symbp: trace``, ``derive``, ``schedule``, ``emit`` (the rest of ``lower_train``/
  ``lower_predict``), ``load`` (cache checks, ``exec`` of the generated module and the imports
  it triggers, the library kernels' modules included);
* ``numba: typing`` (type inference passes, which also type every helper a function calls),
  ``numba: lowering`` (Numba IR -> LLVM IR, in Python), ``numba: other passes`` (bytecode ->
  IR, SSA, rewrites, inlining), ``llvm: optimise`` (function and module passes),
  ``llvm: codegen`` (machine code), ``cache: write`` / ``cache: load`` (Numba's index and code
  files), ``other`` (the first step's own run, Python between the stages).

Then one line per Numba function that was compiled or loaded (its own module, CPU seconds
including what it called, and the generated source size for a symbp program).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import cpu_model  # benchmarks/machine.py, beside this script

ROOT = Path(__file__).resolve().parent.parent

# Numba's pass names (``numba:run_pass`` events name them "<pass> [<function>]")
TYPING = {"nopython_type_inference", "partial_type_inference"}
LOWERING = {"native_lowering", "native_parfor_lowering", "nopython_backend"}
PARFOR = {"parfor_pass", "pre_parfor_pass", "parfor_fusion_pass", "parfor_prelowering_pass"}


class Profile:
    """Exclusive CPU time per category, from wrapped functions and Numba's pass events."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []  # [category, start, time of children]
        self.functions: list[dict[str, Any]] = []
        self.compiling: list[str] = []  # the Numba functions being compiled, innermost last
        self.by_fn: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def enter(self, cat: str) -> None:
        self.stack.append([cat, time.process_time(), 0.0])

    def leave(self) -> float:
        cat, start, children = self.stack.pop()
        spent = time.process_time() - start
        self.totals[cat] += spent - children
        if self.compiling:
            self.by_fn[self.compiling[-1]][cat] += spent - children
        if self.stack:
            self.stack[-1][2] += spent
        return spent

    def wrap(self, owner: Any, name: str, cat: str) -> None:
        fn = getattr(owner, name)

        def wrapped(*a: Any, **k: Any) -> Any:
            self.enter(cat)
            try:
                return fn(*a, **k)
            finally:
                self.leave()

        setattr(owner, name, wrapped)

    def install(self) -> None:
        import numba.core.caching as caching
        import numba.core.codegen as codegen
        import numba.core.event as ev

        import symbp.api
        import symbp.compiled
        import symbp.compiler.lower.program
        import symbp.compiler.runtime

        prof = self

        class Passes(ev.Listener):
            def on_start(self, event: Any) -> None:
                name = event.data["name"].split(" [")[0]
                prof.enter(
                    "numba: typing"
                    if name in TYPING
                    else "numba: lowering"
                    if name in LOWERING
                    else "numba: parfors"
                    if name in PARFOR
                    else "numba: other passes"
                )

            def on_end(self, event: Any) -> None:
                prof.leave()

        class Compiles(ev.Listener):
            def on_start(self, event: Any) -> None:
                d = event.data["dispatcher"]
                prof.compiling.append(f"{d.py_func.__module__}.{d.py_func.__name__}")
                prof.enter("other")

            def on_end(self, event: Any) -> None:
                spent = prof.leave()
                d = event.data["dispatcher"]
                prof.compiling.pop()
                prof.functions.append(
                    {"name": d.py_func.__name__, "module": d.py_func.__module__, "cpu_s": spent}
                )

        ev.register("numba:run_pass", Passes())
        ev.register("numba:compile", Compiles())
        lib = codegen.CPUCodeLibrary
        self.wrap(lib, "_optimize_functions", "llvm: optimise")
        self.wrap(lib, "_optimize_final_module", "llvm: optimise")
        self.wrap(codegen.JITCodeLibrary, "_finalize_specific", "llvm: codegen")
        self.wrap(caching.Cache, "save_overload", "cache: write")
        self.wrap(caching.Cache, "load_overload", "cache: load")
        # symbp's stages, where symbp.pipeline calls them (derive: differentiate, simplify
        # and store for backward; an inference program's simplify too)
        import symbp.pipeline

        self.wrap(symbp.pipeline, "trace", "symbp: trace")
        self.wrap(symbp.pipeline, "trace_inference", "symbp: trace")
        self.wrap(symbp.pipeline, "canonical", "symbp: trace")
        for stage in ("differentiate", "simplified", "store_for_backward", "simplify"):
            self.wrap(symbp.pipeline, stage, "symbp: derive")
        self.wrap(symbp.pipeline, "lower_train", "symbp: emit")
        self.wrap(symbp.pipeline, "lower_predict", "symbp: emit")
        self.wrap(symbp.compiler.lower.program, "schedule", "symbp: schedule")
        self.wrap(symbp.compiler.runtime, "load", "symbp: load")


def _digits() -> tuple[Any, Any]:
    import numpy as np

    from symbp.datasets import load_digits, standardize

    X, y = load_digits()
    X, _, _ = standardize(X)
    return X.astype(np.float32), y


def case_demo() -> Callable[[], Any]:
    """``symbp demo``'s compiled part: MLP 64-128-10, cross-entropy, Adam; build + first step."""
    import symbp
    from symbp import nn

    X, y = _digits()
    symbp.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    model = symbp.compile(mlp, nn.CrossEntropyLoss(), symbp.optim.Adam(mlp.parameters(), lr=1e-3))
    return lambda: model.step(X[:32], y[:32])


def case_demo_all() -> Callable[[], Any]:
    """The demo's whole compiled part: first step, fit, evaluate and predict."""
    import symbp
    from symbp import nn

    X, y = _digits()
    symbp.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    model = symbp.compile(mlp, nn.CrossEntropyLoss(), symbp.optim.Adam(mlp.parameters(), lr=1e-3))

    def run() -> None:
        model.step(X[:32], y[:32])
        model.fit(X, y, epochs=1, batch_size=32)
        model.evaluate(X, y)
        model.predict(X)

    return run


def case_cnn() -> Callable[[], Any]:
    """A test-sized CNN (tests' size: conv 1->4 3x3, ReLU, max-pool, linear) on 8x8 digits."""
    import symbp
    from symbp import nn

    X, y = _digits()
    X = X.reshape(-1, 1, 8, 8)
    symbp.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 10),
    )
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=0.1))
    return lambda: model.step(X[:16], y[:16])


def case_tutorial_cnn() -> Callable[[], Any]:
    """The tutorial CNN of docs/guides/cnn.md (W4: symbp.models.tutorial_cnn), batch 32."""
    import numpy as np

    import symbp
    from symbp import models, nn

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 32)
    symbp.manual_seed(0)
    net = models.tutorial_cnn(nn)
    model = symbp.compile(net, nn.CrossEntropyLoss(), symbp.optim.SGD(net.parameters(), lr=1e-3))
    return lambda: model.step(X, y)


def case_tiny() -> Callable[[], Any]:
    """A test-sized program: MLP 3-4-4-2 tanh, float64, MSE, SGD (tests/test_optim_compiled)."""
    import numpy as np

    import symbp
    from symbp import nn

    rng = np.random.default_rng(7)
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    symbp.manual_seed(3)
    f64 = np.float64
    net = nn.Sequential(nn.Linear(3, 4, dtype=f64), nn.Tanh(), nn.Linear(4, 2, dtype=f64))
    model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.05))
    return lambda: model.step(x, y)


def case_char_lstm(steps: int) -> Callable[[], Callable[[], Any]]:
    """The char LSTM of tests/test_nn_rnn.py (2 layers, hidden 6, vocabulary 5, float64,
    SGD) over ``steps`` characters: one scan per layer, so its compile should not grow
    with ``steps`` (docs/guides/recurrent.md)."""

    def case() -> Callable[[], Any]:
        import numpy as np

        import symbp
        from symbp import nn

        symbp.set_default_dtype(symbp.float64)
        symbp.manual_seed(0)

        class CharLSTM(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.lstm = nn.LSTM(5, 6, num_layers=2, batch_first=True)
                self.head = nn.Linear(6, 5)

            def forward(self, x: Any) -> Any:
                return self.head(self.lstm(x)[0]).reshape(-1, 5)

        ids = np.random.default_rng(0).integers(0, 5, (3, steps + 1))
        x, y = np.eye(5)[ids[:, :-1]], ids[:, 1:]
        net, ce = CharLSTM(), nn.CrossEntropyLoss()
        opt = symbp.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
        model = symbp.compile(net, lambda z, t: ce(z, t.reshape(-1)), opt)
        return lambda: model.step(x, y)

    return case


CASES: dict[str, Callable[[], Callable[[], Any]]] = {
    "char_lstm_T8": case_char_lstm(8),
    "char_lstm_T64": case_char_lstm(64),
    "tiny": case_tiny,
    "demo": case_demo,
    "demo_all": case_demo_all,
    "cnn": case_cnn,
    "tutorial_cnn": case_tutorial_cnn,
}


def child(case: str) -> dict[str, Any]:
    t_import = time.process_time()
    import numba  # noqa: F401

    import symbp

    imports = time.process_time() - t_import
    prof = Profile()
    prof.install()
    run = CASES[case]()
    import symbp.compiler.runtime

    loaded_before = set(symbp.compiler.runtime._LOADED)
    start = time.process_time()
    prof.enter("other")
    run()
    prof.leave()
    total = time.process_time() - start
    sources = {
        f"symbp_generated_{k}": len(Path(str(m.__file__)).read_text())
        for k, m in symbp.compiler.runtime._LOADED.items()
        if k not in loaded_before
    }
    for f in prof.functions:
        f["source_chars"] = sources.get(f["module"])
    own = {f: dict(c) for f, c in prof.by_fn.items()}
    return {
        "imports": imports, "total": total, "split": dict(prof.totals), "fns": prof.functions,
        "own": own,
    }  # fmt: skip


def measure(case: str, caches: Path, empty: tuple[str, ...]) -> dict[str, Any]:
    """One child on the caches under ``caches``, after emptying those named in ``empty``."""
    import shutil

    env = dict(os.environ)
    for sub in ("symbp", "numba", "xdg"):
        if sub in empty:
            shutil.rmtree(caches / sub, ignore_errors=True)
        (caches / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    env.update(
        SYMBP_CACHE_DIR=str(caches / "symbp"),
        NUMBA_CACHE_DIR=str(caches / "numba"),
        XDG_CACHE_HOME=str(caches / "xdg"),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    out = subprocess.run(
        [sys.executable, __file__, "--child", case],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"{case}: child failed\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


ORDER = [
    "symbp: trace", "symbp: derive", "symbp: schedule", "symbp: emit", "symbp: load",
    "numba: other passes", "numba: typing", "numba: parfors", "numba: lowering", "llvm: optimise",
    "llvm: codegen", "cache: write", "cache: load", "other",
]  # fmt: skip


def report(results: dict[str, dict[str, Any]]) -> str:
    import numba

    cols = list(results)
    lines = [
        f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; Python {platform.python_version()},"
        f" Numba {numba.__version__}; NUMBA_OPT={os.environ.get('NUMBA_OPT', 'default')}",
        "CPU seconds of the child process (time.process_time), exclusive per stage",
        "",
        "| stage | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for stage in ORDER:
        row = [f"{results[c]['split'].get(stage, 0.0):.2f}" for c in cols]
        lines.append(f"| {stage} | " + " | ".join(row) + " |")
    lines.append("| **build + first call** | " + " | ".join(
        f"**{results[c]['total']:.2f}**" for c in cols) + " |")  # fmt: skip
    lines.append("| (imports, before) | " + " | ".join(
        f"{results[c]['imports']:.2f}" for c in cols) + " |")  # fmt: skip
    for c in cols:
        lines += ["", f"{c}: Numba functions compiled or loaded (CPU s, with their callees)"]
        by: dict[tuple[str, str], list[float]] = defaultdict(list)
        chars: dict[tuple[str, str], Any] = {}
        for f in results[c]["fns"]:
            key = (f["module"].replace("symbp_generated_", "program "), f["name"])
            by[key].append(f["cpu_s"])
            chars[key] = f.get("source_chars")
        for (mod, name), ts in sorted(by.items(), key=lambda kv: -max(kv[1])):
            size = f", source {chars[(mod, name)]} chars" if chars[(mod, name)] else ""
            n = f" x{len(ts)}" if len(ts) > 1 else ""
            lines.append(f"  {max(ts):6.2f}  {mod}.{name}{n}{size}")
        lines += ["", f"{c}: each function's own time (without its callees' compiles), by stage"]
        own = results[c].get("own", {})
        for fn, cats in sorted(own.items(), key=lambda kv: -sum(kv[1].values()))[:8]:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cats.items(), key=lambda kv: -kv[1])
                              if v >= 0.01)  # fmt: skip
            fn = fn.replace("symbp_generated_", "program ")
            lines.append(f"  {sum(cats.values()):6.2f}  {fn}: {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="demo,cnn", help=f"comma-separated, of {sorted(CASES)}")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument(
        "--runs",
        default="cold,program,warm",
        help="cold: no caches at all (a fresh machine); program: symbp's kernels "
        "cached, the program not (a new model); warm: both cached",
    )
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child)))
        return 0
    results: dict[str, dict[str, Any]] = {}
    for case in args.cases.split(","):
        with tempfile.TemporaryDirectory(prefix="symbp-bench-compile-") as tmp:
            for run in args.runs.split(","):
                print(f"{case}: {run} ...", file=sys.stderr)
                empty = {"cold": ("symbp", "numba", "xdg"), "program": ("symbp",), "warm": ()}
                results[f"{case} {run}"] = measure(case, Path(tmp), empty[run])
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
