"""The ``symbp`` command line.

MODEL, for the commands that take one, is a Python file (``path/to/model.py``) or a module
attribute (``package.module:name``) that provides, as module-level names or as attributes of
what ``name`` is (called first if it is a function):

- ``model``: an ``nn.Module``;
- ``loss_fn``: ``loss_fn(model_output, target) -> scalar Tensor`` (an ``nn`` loss or a function);
- ``sample``: ``(x, target)``, a small batch to derive, print and check gradients on;
- optionally ``optimizer`` and ``data = (X, y)`` for training.

Errors print as one line (exit code 2) unless ``--debug`` is given.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


class UsageError(Exception):
    """A user mistake reported as one line."""


# ---------------------------------------------------------------- loading a MODEL


def load_model(spec: str) -> SimpleNamespace:
    """Load a MODEL (file path or ``module:attr``) into a namespace with model, loss_fn, sample."""
    if spec.endswith(".py") or Path(spec).is_file():
        path = Path(spec)
        if not path.is_file():
            raise UsageError(f"MODEL file not found: {spec}")
        mod_name = f"_symbp_model_{abs(hash(str(path.resolve())))}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise UsageError(f"cannot import MODEL file {spec}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
        source: Any = module
    else:
        mod_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as e:
            raise UsageError(f"cannot import MODEL module {mod_name!r}: {e}") from e
        source = getattr(module, attr) if attr else module
        if attr and callable(source) and not hasattr(source, "forward"):
            source = source()
    get = source.get if isinstance(source, dict) else lambda k, d=None: getattr(source, k, d)
    ns = SimpleNamespace(
        model=get("model"),
        loss_fn=get("loss_fn"),
        sample=get("sample"),
        optimizer=get("optimizer"),
        data=get("data"),
        name=spec,
    )
    missing = [k for k in ("model", "loss_fn", "sample") if getattr(ns, k) is None]
    if missing:
        raise UsageError(
            f"MODEL {spec} must define {', '.join(missing)} (see `symbp --help` for the convention)"
        )
    return ns


def _loss(ns: SimpleNamespace):
    import symbp

    x, t = ns.sample
    x = x if isinstance(x, symbp.Tensor) else symbp.tensor(x)
    return ns.loss_fn(ns.model(x), t)


# ---------------------------------------------------------------- commands


def cmd_formulas(args: argparse.Namespace) -> int:
    import symbp

    if args.png:
        from symbp.plot import _matplotlib

        _matplotlib()  # missing: say so before deriving anything
    ns = load_model(args.model)
    f = symbp.formulas(_loss(ns))
    out: Any = f
    if args.scalar or args.param:
        out = (
            f.scalar(args.param, expand=args.expand) if args.param else f.scalar(expand=args.expand)
        )
    if args.png:
        from symbp.plot import plot_formula

        plot_formula(out, args.png)
        print(f"formulas rendered to {args.png}")
    else:
        print(out.latex() if args.latex else out)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import symbp

    ns = load_model(args.model)
    x, t = ns.sample
    report = symbp.gradcheck(ns.model, ns.loss_fn, x, t)
    print(report)
    return 0 if report.ok else 1


def cmd_show(args: argparse.Namespace) -> int:
    import symbp

    ns = load_model(args.model)
    if args.stage in ("source", "kernels"):
        compiled = symbp.compile(ns.model, ns.loss_fn, ns.optimizer)
        x, t = ns.sample
        compiled.loss_and_grads(np.asarray(x), np.asarray(t))
        if args.stage == "source":
            print(compiled.source)
        else:
            doc = compiled.source.split('"""')[1].strip().splitlines()
            print("\n".join([doc[0], doc[-1], "", *_kernels(compiled.source)]))
        return 0
    # What the compiler sees: traced without values, the batch dimension symbolic (B).
    traced = symbp.trace(lambda x, t: ns.loss_fn(ns.model(x), t), *ns.sample, names=["x", "t"])
    (loss,) = traced.outputs
    if args.stage == "ir":
        print(symbp.print_program({"loss": loss}))
        return 0
    params = traced.params
    print(symbp.derive(loss, [p.node for p in params.values()]))
    return 0


def _kernels(source: str) -> list[str]:
    """The kernel schedule of a generated module: sections, then one line per kernel (its node
    and formula, from the comment the emitter writes above each loop nest)."""
    lines, n = [], 0
    for line in source.splitlines():
        text = line.strip()
        if text.startswith("# ---- "):  # a section: forward, backward, optimizer update
            lines.append(text[7:])
        elif re.match(r"# (\w+:\w+\[[^]]*\] = |update group )", text):
            fused = text.endswith("(in the same loop)") or text.startswith("# update")
            n += not fused
            lines.append(f"  {'+' if fused else n:>3}  {text[2:]}")
    return lines


def cmd_train(args: argparse.Namespace) -> int:
    import symbp

    ns = load_model(args.model)
    if ns.data is None:
        raise UsageError(f"MODEL {args.model} defines no data = (X, y) to train on")
    X, y = (np.asarray(a) for a in ns.data)
    opt = ns.optimizer
    if args.optimizer is not None:
        names = {
            n.lower(): n for n in symbp.optim.__all__ if n not in ("Optimizer", "lr_scheduler")
        }
        if args.optimizer.lower() not in names:
            raise UsageError(
                f"unknown optimizer {args.optimizer!r} (known: {', '.join(sorted(names))})"
            )
        cls = getattr(symbp.optim, names[args.optimizer.lower()])
        opt = cls(ns.model.parameters(), lr=args.lr if args.lr is not None else 1e-2)
    elif opt is None:
        opt = symbp.optim.SGD(ns.model.parameters(), lr=args.lr if args.lr is not None else 1e-2)
    elif args.lr is not None:
        for group in opt.param_groups:
            group["lr"] = args.lr
    validation = None
    if args.val_split > 0:
        n_val = round(len(X) * args.val_split)
        perm = np.random.default_rng(args.seed).permutation(len(X))
        X, Xv, y, yv = X[perm[n_val:]], X[perm[:n_val]], y[perm[n_val:]], y[perm[:n_val]]
        validation = (Xv, yv)
    scheduler = _scheduler(args.scheduler, opt) if args.scheduler else None
    stopper = None
    if args.patience is not None:
        monitor = "val_loss" if validation is not None else "loss"
        stopper = symbp.EarlyStopping(monitor=monitor, patience=args.patience)
    resume = None
    if args.resume:
        if not args.checkpoint:
            raise UsageError("--resume needs --checkpoint FILE (the checkpoint to resume from)")
        if Path(args.checkpoint).is_file():
            resume = args.checkpoint
            done = symbp.load_checkpoint(resume).epoch
            print(f"resuming from {resume} after epoch {done}")
        else:
            print(f"no checkpoint {args.checkpoint} yet: starting from epoch 0")
    lead = True  # prints (under mpiexec: rank 0 alone)
    if args.distributed:
        import symbp.distributed as dist

        dist.init()
        dist.broadcast_parameters(ns.model)  # every rank starts from rank 0's parameters
        lead = dist.rank() == 0
        args.quiet = args.quiet or not lead
    model = symbp.compile(ns.model, ns.loss_fn, opt, distributed=args.distributed)
    # fit compiles before its first epoch (the stages on a bar, in a terminal); the training
    # time is fit's less that, model.timings["fit_compile"]
    verbose: bool | int = False if args.quiet else (True if sys.stdout.isatty() else 2)
    start = time.perf_counter()
    history = model.fit(
        X,
        y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        validation_data=validation,
        verbose=verbose,
        scheduler=scheduler,
        early_stopping=stopper,
        checkpoint=args.checkpoint,
        resume=resume,
    )
    compiling = model.timings.get("fit_compile", 0.0)
    seconds = time.perf_counter() - start - compiling
    train = model.evaluate(X, y)
    final = f"train loss {train['loss']:.4f} accuracy {train['accuracy']:.2%}"
    if validation is not None:
        val = model.evaluate(*validation)
        final += f"; validation loss {val['loss']:.4f} accuracy {val['accuracy']:.2%}"
    ran = len(history["loss"])
    if stopper is not None and stopper.stopped_epoch is not None:
        final += f" (early stopping after epoch {ran}: the parameters of epoch "
        final += f"{stopper.best_epoch + 1}, best {stopper.monitor} {stopper.best:.4f})"
    if not lead:
        return 0
    took = f"{ran} epochs in {seconds:.2f} s (compiling before them {compiling:.2f} s)"
    print(f"{type(opt).__name__}, {took}: {final}")
    if args.checkpoint:
        print(f"checkpoint written to {args.checkpoint}")
    if args.plot:
        from symbp.plot import plot_history

        plot_history(history, args.plot, title=f"{args.model} ({type(opt).__name__})")
        print(f"training curves written to {args.plot}")
    return 0


_SCHEDULERS = {  # --scheduler NAME:ARG:ARG -> (class, its positional options, their types)
    "step": ("StepLR", ("step_size", "gamma"), (int, float)),
    "exponential": ("ExponentialLR", ("gamma",), (float,)),
    "cosine": ("CosineAnnealingLR", ("T_max", "eta_min"), (int, float)),
    "plateau": ("ReduceLROnPlateau", ("patience", "factor"), (int, float)),
}


def _scheduler(spec: str, opt: Any) -> Any:
    """``--scheduler step:10:0.5`` -> ``StepLR(opt, step_size=10, gamma=0.5)``, and so on."""
    from symbp.optim import lr_scheduler

    name, *values = spec.split(":")
    known = ", ".join(
        f"{k}:{':'.join(a.upper() for a in args)}" for k, (_, args, _) in _SCHEDULERS.items()
    )
    if name not in _SCHEDULERS or len(values) > len(_SCHEDULERS[name][1]):
        raise UsageError(f"unknown scheduler {spec!r} (known: {known}; trailing values optional)")
    cls, names, types = _SCHEDULERS[name]
    try:
        options = {k: t(v) for k, t, v in zip(names, types, values)}
    except ValueError as e:
        raise UsageError(f"scheduler {spec!r}: {e}") from e
    return getattr(lr_scheduler, cls)(opt, **options)


def cmd_export(args: argparse.Namespace) -> int:
    import symbp
    from symbp.export import module_path

    onnx = Path(args.out).suffix == ".onnx"  # the inference graph in ONNX, by the extension
    if not onnx:
        module_path(args.out)  # a bad name: say so before compiling anything
    ns = load_model(args.model)
    if args.checkpoint:  # the trained weights, and the optimizer's state when it is this one
        saved = symbp.load_checkpoint(args.checkpoint).meta.get("optimizer_class")
        opt = ns.optimizer if saved == type(ns.optimizer).__name__ else None
        symbp.load_checkpoint(args.checkpoint, ns.model, opt)
    compiled = symbp.compile(ns.model, ns.loss_fn, ns.optimizer)
    x, t = (np.asarray(a) for a in ns.sample)
    if onnx:  # traced, not compiled: no kernels are built
        from symbp.onnx_export import OPSET

        path = compiled.export_onnx(args.out, x)
        print(f"{path}: the inference graph in ONNX (opset {OPSET}, dynamic batch dimension)")
        return 0
    if ns.optimizer is not None:
        compiled.build(x, t)
    compiled.predict(x)
    module, weights = compiled.export(args.out)
    what = "inference and training" if ns.optimizer is not None else "inference"
    print(f"{module}: the {what} kernels, needing only numpy and numba; parameters in {weights}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import subprocess

    import symbp

    script = Path(symbp.__file__).resolve().parents[1] / "benchmarks" / "bench.py"
    if not script.is_file():
        print(
            "symbp bench: the benchmarks are not installed with the package; run it from a "
            "source checkout (git clone ... && pip install -e .)",
            file=sys.stderr,
        )
        return 1
    cmd = [sys.executable, str(script)] + ([] if args.full else ["--quick"]) + args.bench_args
    return subprocess.call(cmd)


def cmd_demo(args: argparse.Namespace) -> int:
    from symbp import demo

    return demo.main(epochs=args.epochs, quiet=args.quiet)


def cmd_cache(args: argparse.Namespace) -> int:
    import symbp

    if args.action == "clear":
        n = symbp.clear_cache()
        print(f"removed {n} cache entries")
    else:
        with warnings.catch_warnings():  # said once below, plainly, rather than as a warning
            warnings.simplefilter("ignore", symbp.compiler.cache.CacheWarning)
            info = symbp.cache_info()
        print(info)
        if info["refused"]:
            print(info["refused"], file=sys.stderr)
    return 0


# ---------------------------------------------------------------- parsing


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="symbp",
        description="Symbolic backpropagation compiled to Numba.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    d = sub.add_parser("demo", help="formulas, gradient check and fast training on digits")
    d.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    d.add_argument("--quiet", action="store_true", help="no progress display")
    d.set_defaults(fn=cmd_demo)

    f = sub.add_parser("formulas", help="print the derived gradient formulas of a MODEL")
    f.add_argument("model", help="path/to/model.py or package.module:attr")
    f.add_argument("--latex", action="store_true", help="LaTeX instead of text")
    f.add_argument("--scalar", action="store_true", help="scalar closed forms, one per weight")
    f.add_argument("--param", help="only this weight (e.g. w5 or linear2.weight)")
    f.add_argument("--expand", action="store_true", help="expand fully in inputs and weights")
    f.add_argument(
        "--png", metavar="FILE.png", help="render the formulas to a picture (needs matplotlib)"
    )
    f.set_defaults(fn=cmd_formulas)

    c = sub.add_parser("check", help="compare symbolic gradients with finite differences")
    c.add_argument("model", help="path/to/model.py or package.module:attr")
    c.set_defaults(fn=cmd_check)

    s = sub.add_parser("show", help="print a compiler stage of a MODEL")
    s.add_argument("model", help="path/to/model.py or package.module:attr")
    s.add_argument(
        "--stage",
        choices=["ir", "backward", "kernels", "source"],
        default="backward",
        help="ir: the traced graph; backward: the derived gradients; kernels: the kernel "
        "schedule of the training program; source: the generated Numba module",
    )
    s.set_defaults(fn=cmd_show)

    t = sub.add_parser("train", help="train a MODEL on its data = (X, y)")
    t.add_argument("model", help="path/to/model.py or package.module:attr (with data)")
    t.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    t.add_argument("--batch-size", type=int, default=32, help="minibatch size (default 32)")
    t.add_argument(
        "--optimizer",
        help="sgd, adam, adamw, rmsprop or adagrad (default: the MODEL's optimizer, else sgd)",
    )
    t.add_argument("--lr", type=float, help="learning rate (default: the optimizer's, or 0.01)")
    t.add_argument(
        "--val-split", type=float, default=0.2, help="fraction held out for validation (0.2)"
    )
    t.add_argument("--seed", type=int, default=0, help="shuffle and split seed (default 0)")
    t.add_argument("--plot", metavar="FILE.png", help="save training curves (needs matplotlib)")
    t.add_argument("--checkpoint", metavar="FILE", help="save a .npz checkpoint every epoch")
    t.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI ranks: run as `mpiexec -n N symbp train ... --distributed`",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint FILE if it exists (model, optimizer, epoch, scheduler "
        "and early stopping); --epochs is the total",
    )
    t.add_argument(
        "--scheduler",
        metavar="SPEC",
        help="learning-rate schedule: step:STEP_SIZE[:GAMMA], exponential:GAMMA, "
        "cosine:T_MAX[:ETA_MIN] or plateau[:PATIENCE[:FACTOR]]",
    )
    t.add_argument(
        "--patience",
        type=int,
        metavar="N",
        help="early stopping: stop when the validation loss (the training loss with "
        "--val-split 0) has not improved for N epochs, keeping the best parameters",
    )
    t.add_argument("--quiet", action="store_true", help="no per-epoch progress")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser(
        "export",
        help="write the compiled kernels as a standalone module (numpy and numba only), or "
        "the inference graph as ONNX",
        description="Compile MODEL and write its generated kernels, the symbp helpers they use "
        "and a small driver (predict, fit, train_step, save) to OUT.py, and its parameters to "
        "OUT.npz beside it. The module imports only numpy and numba. With OUT.onnx, write the "
        "inference graph (what predict computes) as an ONNX model instead (needs onnx).",
    )
    e.add_argument("model", help="path/to/model.py or package.module:attr")
    e.add_argument("out", metavar="OUT.py|OUT.onnx", help="the module (or ONNX file) to write")
    e.add_argument(
        "--checkpoint", metavar="FILE", help="load these weights first (from symbp train)"
    )
    e.set_defaults(fn=cmd_export)

    b = sub.add_parser(
        "bench",
        help="run the benchmarks (--quick) from a source checkout",
        description="Run benchmarks/bench.py --quick; other options are passed on to it "
        "(e.g. --workloads W1,W2 --peers symbp,torch --json out.json).",
    )
    b.add_argument("--full", action="store_true", help="the full benchmark, not --quick")
    b.set_defaults(fn=cmd_bench)

    k = sub.add_parser("cache", help="show or clear the compiled-kernel cache")
    k.add_argument("action", choices=["info", "clear"], nargs="?", default="info")
    k.set_defaults(fn=cmd_cache)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and getattr(args, "command", None) != "bench":
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    args.bench_args = extra
    if not getattr(args, "fn", None):
        p.print_help()
        return 0
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line for users; the traceback with --debug
        if args.debug:
            raise
        print(f"symbp {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
