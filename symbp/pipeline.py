"""The compiler on one screen: a model becomes a loaded program in named stages.

``compile_train`` and ``compile_predict`` are the whole path from a model to a loaded module,
one call per stage, each result printable (``SYMBP_DEBUG``, below)::

    trace -> derive -> simplify -> store for backward -> lower -> load      (training)
    trace -> simplify -> lower -> load                                      (inference)

On a disk-cache hit (``symbp.compiler.cache``) the traced program's key finds the module: trace ->
load. ``symbp.compile`` (``CompiledModel``) binds the ``Program`` they return to the model's
memory and runs it.

``SYMBP_DEBUG=N`` prints what each stage made, to stdout (``DEBUG_LEVELS``; each level adds
to the ones below it): 1 the stages, their times and cache hits; 2 the traced forward IR and
the derived backward IR; 3 the simplified program and the kernel schedule; 4 the generated
source.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symbp.api import Derived, Traced, canonical, canonical_labels, differentiate, simplified, trace
from symbp.compiler import cache, runtime
from symbp.compiler.ir import Node, shown_names, toposort
from symbp.compiler.loops import save_for_backward
from symbp.compiler.lower import ParamSpec, StateSpec, lower_predict, lower_train, tuning
from symbp.compiler.ops import print_program
from symbp.compiler.simplify import lowered, simplify
from symbp.nn.conv import StateUpdate, check_compilable, program_inputs
from symbp.progress import Stages

# What each SYMBP_DEBUG level prints, in one place (docs/architecture/index.md shows them)
DEBUG_LEVELS = {
    1: "each stage's name and time, and whether the disk cache had the program",
    2: "the traced forward IR and the derived backward IR (print_program)",
    3: "the simplified program and the kernel schedule",
    4: "the generated source",
}

# What compiling a program does, as fit(verbose=True) shows it (symbp.progress.Stages): on a
# disk-cache hit the middle stages have nothing to do; Numba compiles, or loads its own cache
NUMBA = "Numba compile"
TRAIN_STAGES = ("trace", "derive and simplify", "generate code", "load", NUMBA)
PREDICT_STAGES = ("trace", "generate code", "load", NUMBA)


def debug_level() -> int:
    """``SYMBP_DEBUG`` as a level (0 when unset), or a clear error for another value."""
    value = os.environ.get("SYMBP_DEBUG", "").strip() or "0"
    try:
        level = int(value)
    except ValueError:
        raise ValueError(
            f"SYMBP_DEBUG must be a level 0-{max(DEBUG_LEVELS)}, got {value!r}"
        ) from None
    return level


@dataclass(frozen=True)
class Program:
    """A compiled, loaded program and how it was made.

    ``source`` is the generated module without its ``SPEC``; ``spec`` is its layout (buffers,
    shapes, the kernel schedule); ``module`` the loaded module (``train`` or ``predict``).
    ``args`` are the Parameters (for inference also the buffers) in the order the program
    takes them; ``timings`` the seconds of each stage that ran."""

    kind: str  # "train" or "predict"
    key: str  # the disk cache's key
    title: str
    source: str
    spec: dict[str, Any]
    module: Any
    args: tuple[Any, ...]
    buffers: tuple[StateUpdate, ...]
    hit: bool  # found in the disk cache: only trace and load ran
    timings: Mapping[str, float]

    @property
    def schedule(self) -> list[str]:
        """The kernel schedule: one line per section, then one per kernel (numbered; ``+``
        for what runs in the loop before it), from the lowering's own record."""
        return schedule_lines(self.spec)

    def __str__(self) -> str:
        times = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.timings.items())
        found = "found in the cache" if self.hit else "compiled"
        return f"{self.kind} program {self.key}: {self.title} ({found}; {times})"


def schedule_lines(spec: Mapping[str, Any]) -> list[str]:
    """A spec's kernel schedule as ``symbp show --stage kernels`` prints it."""
    lines, n = [], 0
    for section, heads in spec.get("schedule", []):
        lines.append(section)
        for text, counted in heads:
            n += counted
            lines.append(f"  {n if counted else '+':>3}  {text}")
    return lines


class _Run:
    """Runs the stages of one program: times each, and prints it as ``SYMBP_DEBUG`` asks."""

    def __init__(self, what: str):
        self.what = what
        self.level = debug_level()
        self.timings: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        out = fn(*args, **kw)
        self.timings[name] = time.perf_counter() - t0
        self.say(1, f"{name}: {self.timings[name] * 1e3:.1f} ms")
        return out

    def say(self, level: int, text: str | Callable[[], str]) -> None:
        """Print ``text`` (a callable: made only when shown) at ``level`` and above."""
        if self.level >= level:
            body = text() if callable(text) else text
            head, _, rest = body.partition("\n")
            print(f"symbp {self.what}: {head}" + (f"\n{rest}" if rest else ""), flush=True)


# ---------------------------------------------------------------- training


def compile_train(
    net: Callable[..., Any],
    loss_fn: Callable[..., Any],
    optimizer: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    mpi: tuple[Any, ...] | None = None,
    allreduce: str | None = None,
    stages: Stages | None = None,
) -> Program:
    """The training program of ``loss_fn(net(x), y)`` and ``optimizer``'s update, loaded.

    ``mpi`` (the MPI ABI) and ``allreduce`` (its kernel) make the data-parallel program;
    ``stages`` shows the stages as ``fit(verbose=True)`` does."""
    shown = stages if stages is not None else Stages(quiet=True)
    run = _Run("training program")
    shown.begin("training program", TRAIN_STAGES)
    with shown.stage("trace"):  # and look the program up in the cache
        check_compilable(net)  # layers the backend cannot train yet: a clear error now
        traced = run("trace", trace, lambda a, b: loss_fn(net(a), b), x[:1], y[:1])
        run.say(2, lambda: f"traced forward IR\n{traced}")
        params = list(traced.params.values())
        # running statistics (read, and their new values) and dropout seeds: inputs beyond the
        # data and parameters, each with its role in the key
        buffers, seeds = program_inputs(net, traced)
        key = train_key(traced, params, buffers, seeds, optimizer, mpi)
        text = run("cache lookup", cache.read_entry, key)
    hit = text is not None
    run.say(1, f"key {key}: {'found in the cache' if hit else 'not in the cache'}")
    title = train_title(net, loss_fn, optimizer)
    if hit:
        shown.skip(2, "found in the cache")
    else:
        trainable = [p for p in params if p.requires_grad]
        news = [u.new for u in buffers if u.new is not None]
        loss = traced.outputs[0]
        with shown.stage("derive and simplify"):
            derived = run("derive", differentiate, loss, [p.node for p in trainable], news)
            run.say(2, lambda: f"derived backward IR\n{_listing(derived)}")
            derived = run("simplify", simplified, derived)
            run.say(3, lambda: f"simplified program\n{_listing(derived)}")
            derived = run("store for backward", store_for_backward, derived)
        with shown.stage("generate code"):
            args = train_lowering(title, traced, params, derived, buffers, seeds, optimizer)
            low = run("lower", lower_train, *args, allreduce=allreduce, labels=traced.labels,
                      steps=body_steps(traced))  # fmt: skip
        text = runtime.module_text(low.source, low.spec)
    with shown.stage("load"):  # importing it: Numba's library kernels it needs, too
        mod = run("load", runtime.load, key, None if hit else text)
    return _program("train", key, title, mod, params, buffers, hit, run)


def train_title(net: Any, loss_fn: Any, optimizer: Any) -> str:
    loss_name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
    title = f"{type(net).__name__} trained on {loss_name}"
    return title + (f" with {type(optimizer).__name__}" if optimizer is not None else "")


def store_for_backward(derived: Derived) -> Derived:
    """Each loop stores what its adjoint reads of a step, and cotangents placed into the
    slices of one tensor are written as their concatenation (``simplify.LOWERING``): lowering
    choices, formulas, gradcheck and the listing show the adjoint as derived."""
    return derived.through(save_for_backward).through(lowered)


def train_key(
    traced: Traced,
    params: Sequence[Any],
    buffers: Sequence[StateUpdate],
    seeds: Sequence[Node],
    optimizer: Any,
    mpi: tuple[Any, ...] | None = None,
) -> str:
    """The disk cache's key of the training program: its canonical graph, the roles of
    its inputs, the optimizer's update formulas, names, dtype and constants."""
    loss = traced.outputs[0]
    (canon,), memo = canonical([loss])
    state: list[Any] = []
    if buffers or seeds:
        news = [u.new for u in buffers if u.new is not None]
        canon_all, memo_all = canonical([loss, *news])
        state = [
            print_program(canon_all),
            [(memo_all[u.read].arg, u.name, u.new is not None) for u in buffers],
            [memo_all[s].arg for s in seeds],  # by position: F.dropout numbers its names
        ]
    opt = optimizer
    group_of: dict[int, int] = {}
    if opt is not None:
        for g, group in enumerate(opt.param_groups):
            for p in group["params"]:
                group_of[id(p)] = g
    roles = [
        (memo[p.node].arg, p.requires_grad, group_of.get(id(p)) if p.requires_grad else None)
        for p in params
    ]
    data_roles = [memo[n].arg if n in memo else None for n in traced.inputs.values()]
    opt_key = None
    if opt is not None:
        opt_key = (
            type(opt).__name__,
            [(opt.structure(g), opt.formulas(g)[0]) for g in opt.param_groups],
        )
    names = shown_names([p.node.arg for p in params])
    consts = [
        (memo[n].arg, v.dtype.str, v.shape, v.tobytes().hex()) for n, v in traced.constants.items()
    ]
    return cache.make_key(
        tuning.cache_token(),
        "train",
        print_program([canon]),
        roles,
        data_roles,
        opt_key,
        names,
        str(loss.dtype),
        consts,
        canonical_labels([loss], traced.labels),
        canonical_steps([loss], traced),
        *state,
        *([("mpi", *mpi)] if mpi is not None else []),
    )


def body_steps(traced: Traced) -> dict[Node, Mapping[str, tuple[str, ...]]]:
    """What the layers call their loops' steps (``Traced.steps``, by scan node), by each body's
    carry output: the body's nodes stay what they are through simplify and store for backward,
    which rebuild the scan node itself."""
    return {scan.arg.outputs[0]: names for scan, names in traced.steps.items()}


def canonical_steps(outputs: Sequence[Node], traced: Traced) -> list[tuple[int, list]]:
    """The step names of a program by the position of their scan nodes, as a cache key names
    them (the generated code names the bodies' buffers by them)."""
    steps = traced.steps
    return [(k, sorted(steps[n].items())) for k, n in enumerate(toposort(outputs)) if n in steps]


def train_lowering(
    title: str,
    traced: Traced,
    params: Sequence[Any],
    derived: Derived,
    buffers: Sequence[StateUpdate],
    seeds: Sequence[Node],
    opt: Any,
) -> tuple[Any, ...]:
    """``lower_train``'s arguments: the program's outputs by parameter, the optimizer's
    update formulas by group, the buffers with their new values."""
    trainable = [p for p in params if p.requires_grad]
    # the model's names (a tag only where two of this program's would read the same)
    shown = dict(zip(map(id, params), shown_names([p.node.arg for p in params])))
    grads = {shown[id(p)]: g for p, g in zip(trainable, derived.grads)}
    new_of = iter(derived.also)  # the new values, simplified with the program
    states = [StateSpec(u.name, u.read, None if u.new is None else next(new_of)) for u in buffers]
    pspecs, updates = [], {}
    hyper: list[list[str]] = []
    if opt is not None:
        forms = [opt.formulas(g) for g in opt.param_groups]
        hyper = [list(f[0]) for f in forms]
    for p in params:
        group = None
        if opt is not None and p.requires_grad:
            for g, grp in enumerate(opt.param_groups):
                if any(q is p for q in grp["params"]):
                    group = g
                    h, new_p, new_s = forms[g]
                    updates[shown[id(p)]] = (g, h, new_p, new_s)
        pspecs.append(ParamSpec(shown[id(p)], p.node, p.requires_grad, group))
    data = dict(traced.inputs)
    return (title, derived.outputs[0], grads, pspecs, data, updates, hyper, traced.constants,
            states, seeds)  # fmt: skip


def _listing(derived: Derived) -> str:
    """A derived program as ``print_program`` gives it: the loss, each gradient, the rest."""
    names = {"loss": derived.outputs[0]}
    names.update({f"grad_{w.arg}": g for w, g in zip(derived.wrt, derived.grads)})
    names.update({f"also{i}": a for i, a in enumerate(derived.also)})
    return print_program(names)


# ---------------------------------------------------------------- inference


class BufferArg:
    """A module buffer ``predict`` takes like a parameter: its current array at each call."""

    def __init__(self, u: StateUpdate):
        self.module, self.buffer, self.name, self.node = u.module, u.buffer, u.name, u.read

    @property
    def _data(self) -> np.ndarray:  # read as a Parameter's array is
        return self.module._state(self.buffer)  # type: ignore[no-any-return]


def compile_predict(
    net: Callable[..., Any], x: np.ndarray, stages: Stages | None = None
) -> Program:
    """The inference program of ``net`` for inputs shaped like ``x`` (eval mode), loaded."""
    shown = stages if stages is not None else Stages(quiet=True)
    run = _Run("inference program")
    shown.begin("inference program", PREDICT_STAGES)
    with shown.stage("trace"):  # and look the program up in the cache
        traced = run("trace", trace_inference, net, x[:1])
        run.say(2, lambda: f"traced forward IR\n{traced}")
        out = traced.outputs[0]
        buffers, seeds = program_inputs(net, traced)  # eval: running statistics
        if seeds:  # a dropout outside any Module that eval() could switch off
            raise NotImplementedError(
                f"predict: the model applies dropout ('{seeds[0].arg}') in training "
                f"mode; inference has no dropout: pass training=False to F.dropout"
            )
        params: list[Any] = [*traced.params.values(), *map(BufferArg, buffers)]
        (canon,), _memo = canonical([out])
        names = shown_names([p.node.arg for p in params])
        key = cache.make_key(
            tuning.cache_token(),
            "predict",
            print_program([canon]),
            names,
            str(out.dtype),
            canonical_labels([out], traced.labels),
            canonical_steps([out], traced),
        )
        text = run("cache lookup", cache.read_entry, key)
    hit = text is not None
    run.say(1, f"key {key}: {'found in the cache' if hit else 'not in the cache'}")
    title = f"{type(net).__name__} inference"
    if hit:
        shown.skip(1, "found in the cache")
    else:
        with shown.stage("generate code"):
            # the passes training runs too: bias-add and activation fuse into one loop
            (simple,) = run("simplify", simplify, [out])
            run.say(3, lambda: f"simplified program\n{print_program({'out': simple})}")
            pspecs = [ParamSpec(n, p.node, False) for n, p in zip(names, params)]
            (xnode,) = traced.inputs.values()
            low = run("lower", lower_predict, title, simple, pspecs, xnode, traced.labels,
                      steps=body_steps(traced))  # fmt: skip
        text = runtime.module_text(low.source, low.spec)
    with shown.stage("load"):
        mod = run("load", runtime.load, key, None if hit else text)
    return _program("predict", key, title, mod, params, (), hit, run)


def trace_inference(net: Callable[..., Any], x: np.ndarray) -> Traced:
    """``net`` traced in eval mode (Dropout off, BatchNorm on its running statistics),
    whatever mode it is in: one inference program serves both."""
    model: Any = net
    modes = [(m, m.training) for m in model.modules()] if hasattr(model, "eval") else []
    if modes:
        model.eval()
    try:
        return trace(net, x)
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)


# ---------------------------------------------------------------- the program


def _program(
    kind: str,
    key: str,
    title: str,
    mod: Any,
    args: Sequence[Any],
    buffers: Sequence[StateUpdate],
    hit: bool,
    run: _Run,
) -> Program:
    """The Program of a loaded module: its spec the module's ``SPEC``, its source what
    ``runtime.load`` ran less that (the lowering's own source when this process made it)."""
    source = runtime.source(key)
    program = Program(kind, key, title, source, mod.SPEC, mod, tuple(args), tuple(buffers), hit,
                      dict(run.timings))  # fmt: skip
    run.say(1, lambda: str(program))
    run.say(3, lambda: "kernel schedule\n" + "\n".join(program.schedule))
    run.say(4, lambda: f"generated source ({mod.__file__})\n{source}")
    return program


__all__ = [
    "DEBUG_LEVELS",
    "Program",
    "compile_predict",
    "compile_train",
    "debug_level",
    "schedule_lines",
    "train_key",
]
