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
import sys
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

    ns = load_model(args.model)
    f = symbp.formulas(_loss(ns))
    if args.scalar or args.param:
        out = (
            f.scalar(args.param, expand=args.expand) if args.param else f.scalar(expand=args.expand)
        )
        print(out.latex() if args.latex else out)
    else:
        print(f.latex() if args.latex else f)
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
    if args.stage == "source":
        compiled = symbp.compile(ns.model, ns.loss_fn, ns.optimizer)
        x, t = ns.sample
        compiled.loss_and_grads(np.asarray(x), np.asarray(t))
        print(compiled.source)
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


def cmd_demo(args: argparse.Namespace) -> int:
    from symbp import demo

    return demo.main(epochs=args.epochs, quiet=args.quiet)


def cmd_cache(args: argparse.Namespace) -> int:
    import symbp

    if args.action == "clear":
        n = symbp.clear_cache()
        print(f"removed {n} cache entries")
    else:
        print(symbp.cache_info())
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
    f.set_defaults(fn=cmd_formulas)

    c = sub.add_parser("check", help="compare symbolic gradients with finite differences")
    c.add_argument("model", help="path/to/model.py or package.module:attr")
    c.set_defaults(fn=cmd_check)

    s = sub.add_parser("show", help="print a compiler stage of a MODEL")
    s.add_argument("model", help="path/to/model.py or package.module:attr")
    s.add_argument("--stage", choices=["ir", "backward", "source"], default="backward")
    s.set_defaults(fn=cmd_show)

    k = sub.add_parser("cache", help="show or clear the compiled-kernel cache")
    k.add_argument("action", choices=["info", "clear"], nargs="?", default="info")
    k.set_defaults(fn=cmd_cache)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
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
