"""Schedule a simplified program into kernels over named buffers.

Which nodes get a buffer, and what every other node is, is one row per op of ``PLACEMENT``:

- ``input``: a buffer given from outside (a data batch or a parameter);
- a *kernel* (``ew``, ``matmul``, ``sum``, ``max``, ``bernoulli``, the window ops, ...):
  one loop nest (or library call) each, writing its own buffer -- except an ``ew`` node read
  only by one reduction, which is computed inside the reduction's loop and never stored. A
  window op (a convolution, a pooling, their gradients) sweeps its sources' buffers with
  computed indices, and a matmul hands its operands to BLAS, so a view feeding one is copied
  into a buffer first unless the op can take it as it is (``Placement.sources``);
- a *view* (``expand``, ``reshape``, ``transpose``, ``detach``, ``cast``, ``const``,
  ``onehot``): never stored: a reader indexes through it (a broadcast bias is read as
  ``bias[j]`` inside its consumer's loop, a one-hot as ``(1 if y[i] == j else 0)``). A view
  that is a program output is copied into a buffer by a kernel of its own.

The result is a ``Schedule``: buffers with model-derived names, and kernels in execution order,
each tagged with the phase it belongs to (forward, backward, update).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import sympy

from symbp.compiler.ir import Labels, Names, Node, Shape, StepNames, consumers, toposort
from symbp.compiler.lower.printer import LoweringError


@dataclass(frozen=True)
class Placement:
    """How the scheduler treats the nodes of one op: its row of ``PLACEMENT``.

    ``kind``: ``"input"`` (a buffer given from outside), ``"kernel"`` (computed into a buffer
    of its own, named ``prefix`` + a count) or ``"view"`` (read through by its consumers,
    stored only when it is an output or a source that must be a buffer).
    ``sources``: what its sources must be: ``"any"`` (read through views at its loop
    indices), ``"blas"`` (buffers or their transposes, as a BLAS call takes them), or
    ``"buffers"`` (the buffers a window op sweeps with computed indices).
    ``operand``: for a view, how a ``blas`` or ``buffers`` consumer sees through it without
    a copy: ``"same"`` (its source's memory as is) or ``"transposed"``; None: it cannot.
    ``fuses``: an elementwise kernel, computed inside the loop of the one reduction reading
    it (then never stored), or of an earlier reduction over the same index space.
    ``reduction``: a reduction whose loop hosts such kernels.
    ``alias``: a view whose copy of a stored intermediate is that buffer's memory, carved
    (a reshape: C order is kept).
    ``loop``: its ``arg`` is a loop body (``symbp.compiler.loops.Loop``), scheduled on its own
    (``Schedule.bodies``) over buffers the emitter binds at every step.
    ``naming``: what it is to the names of a layer's tensors (``formula_names``): an
    ``"alias"`` of its source (read transposed, reshaped, broadcast, cast), a ``"product"``
    (with a layer's weight: ``x_W1``; a weight's gradient reads the layer's δ), a ``"pool"``.
    """

    kind: Literal["input", "kernel", "view"]
    prefix: str = "copy"
    sources: Literal["any", "blas", "buffers"] = "any"
    operand: Literal["same", "transposed"] | None = None
    fuses: bool = False
    reduction: bool = False
    alias: bool = False
    loop: bool = False
    naming: Literal["alias", "product", "pool"] | None = None


_VIEW = Placement("view")
_ALIAS = Placement("view", naming="alias")

# One row per op of ops.OPS (tests/test_ops.py checks that none is missing).
PLACEMENT: dict[str, Placement] = {
    "input": Placement("input"),
    "const": _VIEW,
    "ew": Placement("kernel", "ew", fuses=True),
    "cast": _ALIAS,
    "expand": _ALIAS,
    "reshape": Placement("view", alias=True, naming="alias"),
    "transpose": Placement("view", operand="transposed", naming="alias"),
    "detach": Placement("view", operand="same", naming="alias"),
    "onehot": _VIEW,
    "sum": Placement("kernel", "sum", reduction=True),
    "max": Placement("kernel", "max", reduction=True),
    "matmul": Placement("kernel", "mm", sources="blas", naming="product"),
    "bernoulli": Placement("kernel", "mask"),  # a dropout mask, drawn from its seed's buffer
    "conv2d": Placement("kernel", "conv", sources="buffers", naming="product"),
    "conv2d_input_grad": Placement("kernel", "dconv_x", sources="buffers", naming="product"),
    "conv2d_weight_grad": Placement("kernel", "dconv_w", sources="buffers", naming="product"),
    "maxpool2d": Placement("kernel", "maxpool", sources="buffers", naming="pool"),
    "maxpool2d_grad": Placement("kernel", "dmaxpool", sources="buffers"),
    "avgpool2d": Placement("kernel", "avgpool", sources="buffers", naming="pool"),
    "avgpool2d_grad": Placement("kernel", "davgpool", sources="buffers"),
    # a sum across ranks: stored, since MPI sums a buffer in place
    "psum": Placement("kernel", "psum"),
    # -- issue 12 . math (rows of this family go below this line)
    #
    # -- issue 12 . logic (rows of this family go below this line)
    #
    # -- issue 12 . indexing (rows of this family go below this line)
    "slice": _VIEW,  # basic indexing: read at start + step·i, never stored
    "slice_grad": Placement("kernel", "placed"),  # zeros with the box written
    "take": Placement("kernel", "gather"),  # advanced indexing: a gather
    "put_add": Placement("kernel", "scatter"),  # its adjoint: a scatter-add into zeros
    "iota": _VIEW,  # the loop index itself
    # -- issue 12 . shaping (rows of this family go below this line)
    # cat writes each source's block; pad_grad accumulates a border back; the rest are read
    # through at moved indices, never stored
    "cat": Placement("kernel", "cat"),
    "flip": _VIEW,
    "roll": _VIEW,
    "pad": _VIEW,
    "pad_grad": Placement("kernel", "dpad"),
    # -- issue 12 . reductions (rows of this family go below this line)
    "argidx": Placement("kernel", "argidx"),
    "argsort": Placement("kernel", "argsort"),
    "cumarg": Placement("kernel", "cumarg"),
    "take_along": _VIEW,  # a gather: its readers index x at the read index
    "put_along": Placement("kernel", "put"),
    "prod": Placement("kernel", "prod"),
    "cumsum": Placement("kernel", "cumsum"),
    "cumprod": Placement("kernel", "cumprod"),
    "cumprod_grad": Placement("kernel", "dcumprod"),
    #
    # -- issue 12 . linalg (rows of this family go below this line)
    #
    # a batched product hands each batch's matrices to BLAS when they are stored (or their
    # transposes: q @ kᵀ); a view BLAS cannot take is copied first, as for matmul. Its loops
    # (small products, other views) read through any view.
    "bmm": Placement("kernel", "bmm", sources="blas"),
    "tril": _VIEW,  # a select on the index: j - i <= k
    "diagonal": _VIEW,
    "diag_embed": _VIEW,
    # -- issue 17 . loops: a body run at every step, reading its sources' buffers at a step
    "scan": Placement("kernel", "scan", sources="buffers", loop=True),
    "scan_vjp": Placement("kernel", "dscan", sources="buffers", loop=True),
}


def placement(n: Node) -> Placement:
    """The scheduling rule of ``n``'s op; an op without a row is named in the error."""
    rule = PLACEMENT.get(n.op)
    if rule is None:
        raise LoweringError(f"the Numba backend has no scheduling rule for op '{n.op}'")
    return rule


def ident(name: str) -> str:
    """A Python identifier from a model name: ``0.weight`` -> ``layer0_weight`` (a shown
    name's tag ``#2`` dropped: the buffer names are handed out unique)."""
    name = name.split("#")[0]
    name = re.sub(r"\W", "_", name).strip("_") or "t"
    return f"layer{name}" if name[0].isdigit() else name


@dataclass
class Buffer:
    """A named array the generated code reads and writes.

    ``arena`` says where it lives: ``"W"`` (parameters, gradients, optimizer state: kept
    between calls), ``"work"``/``"iwork"`` (float/integer intermediates, sized by the batch;
    a bool is 0 or 1 in ``iwork``).
    ``view_of``: the work buffer whose memory this one is, reshaped (C order), not a copy.
    """

    name: str
    shape: Shape
    dtype: np.dtype
    arena: str  # "W", "work", "iwork", "global" (a constant), "arg", "loop" (bound per step)
    node: Node | None = None
    view_of: Buffer | None = None
    # what SymPy orders its reads by inside a formula (its name when empty): the name by its
    # kernel's kind (mm0, ew3) it had before the layers named it. The order of a float sum is
    # its rounding, and a readable name must not change what a program computes.
    key: str = ""

    def read_key(self, idx: Sequence[str]) -> str:
        """The name of the SymPy symbol for its entry at ``idx`` (``at`` prints the code)."""
        key = self.key or self.name
        return f"{key}[{', '.join(idx)}]" if idx else f"{key}[0]"


@dataclass
class Kernel:
    """One loop nest (or BLAS call) computing ``node`` into ``out``."""

    node: Node
    out: Buffer
    phase: str  # "forward" | "backward" | "copy"


@dataclass
class Update:
    """The optimizer update of one parameter: formulas in p, g, t, its state and hyperparameters."""

    param: Buffer
    grad: Buffer
    state: dict[str, Buffer]
    group: int
    new_p: sympy.Expr
    new_state: dict[str, sympy.Expr]
    hyper: list[str]


@dataclass
class Schedule:
    buffers: dict[Node, Buffer]
    kernels: list[Kernel]
    inlined: set[Node]  # ew nodes computed inside their reduction's loop
    outputs: dict[str, Buffer]
    views: list[Buffer] = field(default_factory=list)  # reshapes of work buffers: no kernel
    updates: list[Update] = field(default_factory=list)
    # elementwise kernels computed in the loop of a reduction over the same index space (the
    # loss's sum and the output layer's δ share their σ(z): computed once, not twice)
    siblings: dict[Node, list[Kernel]] = field(default_factory=dict)
    names: Names = field(default_factory=Names)  # of buffers and generated locals
    keys: Names = field(default_factory=Names)  # of the buffers' keys (``Buffer.key``)
    # the schedule of each loop node's body (its buffers named from the same Names)
    bodies: dict[Node, Schedule] = field(default_factory=dict)
    labels: Labels = field(default_factory=dict)  # which layer made each node: buffer names
    # what a layer calls its loop's step (ir.StepNames), by the body's carry output node
    steps: StepNames = field(default_factory=dict)

    def all_kernels(self) -> list[Kernel]:
        """Every kernel, those computed in a reduction's loop and in loop bodies included."""
        inner = [k for b in self.bodies.values() for k in b.all_kernels()]
        return self.kernels + [k for ks in self.siblings.values() for k in ks] + inner

    def all_views(self) -> list[Buffer]:
        """Every reshaped view of a work buffer, those in loop bodies included."""
        return self.views + [v for b in self.bodies.values() for v in b.all_views()]


def _blas_operand(n: Node, stored: set[Node]) -> bool:
    """Can np.dot take this operand as it is: a stored 2-D buffer or the transpose of one?"""
    while placement(n).operand == "same":
        n = n.src[0]
    if n in stored:
        return True
    return placement(n).operand == "transposed" and _blas_operand(n.src[0], stored)


def _must_copy(s: Node, rule: Placement, stored: set[Node]) -> bool:
    """Must source ``s`` of a node scheduled by ``rule`` be copied into a buffer first?"""
    if rule.sources == "blas":
        return not _blas_operand(s, stored)
    if rule.sources == "buffers":  # a window op reads a buffer as is, or through a detach
        return placement(s).operand != "same" or s.src[0] not in stored
    return False


def schedule(
    outputs: Sequence[tuple[Buffer, Node]],
    inputs: dict[Node, Buffer],
    forward: Sequence[Node] = (),
    reserved: Sequence[str] = (),
    names: Names | None = None,
    layers: Mapping[Node, tuple[str, str]] | None = None,
    weight_grads: Mapping[Node, str] | None = None,
    keys: Names | None = None,
    labels: Labels | None = None,
    steps: StepNames | None = None,
    given: Mapping[Node, str] | None = None,
) -> Schedule:
    """Kernels computing each output node into its given buffer, from the ``inputs`` buffers.

    ``forward`` are the nodes whose kernels belong to the forward phase (what the loss needs);
    the rest of the program is the backward phase. ``reserved`` names are not given to buffers;
    ``names``: the allocator to name them from (a loop body's: its program's). ``layers``:
    (attribute, layer number) of each parameter leaf (``ir.layer_numbers``), and
    ``weight_grads``: the layer number of each weight's gradient node, from which the
    buffers of the layers' tensors are named as the formulas name them (``formula_names``);
    ``keys``: the allocator of the buffers' keys (``Buffer.key``), a loop body's: its program's.
    ``labels``: which layer made each node (the trace's, ``api.Traced.labels``), buffers are
    named by it; ``steps``: what the layers call their loops' steps, by the carry output of the
    body (``ir.StepNames``), the bodies' buffers are named by it (``step_names``); ``given``:
    names for nodes of this schedule (a loop body's, from ``step_names``).
    """
    out_nodes = [n for _, n in outputs]
    order = toposort(out_nodes)
    users = consumers(order)
    sched = Schedule(
        dict(inputs),
        [],
        set(),
        {},
        names=names or Names(reserved),
        labels=labels or {},
        steps=steps or {},
    )
    sched.keys = keys or Names(reserved)
    sched.names.taken.update(b.name for b in inputs.values())
    sched.names.taken.update(b.name for b, _ in outputs)
    sched.keys.taken.update(b.key or b.name for b in inputs.values())
    sched.keys.taken.update(b.key or b.name for b, _ in outputs)

    # Which nodes need a buffer of their own.
    stored: set[Node] = set(inputs)
    for n in order:
        rule = placement(n)
        if rule.kind == "kernel":
            readers = users.get(n, [])
            to_reduction = (
                rule.fuses
                and n not in out_nodes
                and len(readers) == 1
                and placement(readers[0]).reduction
            )
            if to_reduction:
                sched.inlined.add(n)
            else:
                stored.add(n)
        elif rule.kind == "input" and n not in inputs:
            raise KeyError(f"no buffer for input '{n.arg}'")
    for n in order:  # views BLAS (or a window op) cannot read get copied into a buffer
        rule = placement(n)
        # lazily: a source copied just now is a buffer the next one may be the transpose of
        stored.update(s for s in n.src if _must_copy(s, rule, stored))

    fwd = set(toposort(forward)) if forward else set()
    target: dict[Node, Buffer] = {}
    for buf, n in outputs:  # an output's kernel writes straight into the output's buffer
        if n not in inputs:
            target.setdefault(n, buf)
    counters: dict[str, int] = {}
    known = {**formula_names(order, fwd, layers or {}, weight_grads or {}), **(given or {})}

    def count(base: str, counters: dict[str, int]) -> str:
        k = counters.get(base, 0)
        counters[base] = k + 1
        return f"{base}{k}"

    key_counters: dict[str, int] = {}

    def buffer_name(n: Node, prefix: str, name: str | None = None) -> tuple[str, str]:
        """(name, key): z1, h, delta2, x_W1 (a product, named by its operand), where the
        layers name one (or ``name``), else layer6_view0, ew3: the layer, the kind, a count."""
        label = sched.labels.get(n)
        base = f"{ident(label)}_{prefix}" if label else prefix
        key = sched.keys.fresh(count(base, key_counters))
        name = name or known.get(n)
        if name is not None and "{" in name:  # a product's: its operand's buffer's name
            srcs = [sched.buffers.get(_through(s)) for s in n.src]
            name = name.format(*(b.name for b in srcs if b)) if all(srcs) else None
        return sched.names.fresh(name or count(base, counters)), key

    for n in order:
        if n in inputs or (n not in stored and n not in target):
            continue
        found = target.get(n)
        src = sched.buffers.get(n.src[0]) if placement(n).alias else None
        if found is None and src is not None and src.arena in ("work", "iwork"):
            # a reshape of a stored intermediate (a CNN's Flatten) is the same memory
            # a named tensor reshaped: s1_flat (a CNN's Flatten), delta2_W2_view
            flat = len(n.shape) == 2 and len(src.shape) > 2
            alias = f"{src.name}_{'flat' if flat else 'view'}" if n.src[0] in known else None
            (name, key), base = buffer_name(n, "view", alias), src.view_of or src
            view = Buffer(name, n.shape, n.dtype, src.arena, n, base, key)
            sched.buffers[n] = view
            sched.views.append(view)
            continue
        if found is not None:
            buf = found
        else:
            kind = "iwork" if n.dtype.kind in "iub" else "work"
            name, key = buffer_name(n, placement(n).prefix)
            buf = Buffer(name, n.shape, n.dtype, kind, n, key=key)
        sched.buffers[n] = buf
        sched.kernels.append(Kernel(n, buf, "forward" if n in fwd else "backward"))
    for buf, n in outputs:  # outputs that are inputs, or repeat another output: copies
        if sched.buffers[n] is not buf:
            sched.kernels.append(Kernel(n, buf, "forward" if n in fwd else "backward"))
    sched.outputs = {b.name: b for b, _ in outputs}
    _fuse_siblings(sched)
    for k in sched.kernels:
        if placement(k.node).loop and sched.buffers.get(k.node) is k.out:
            sched.bodies[k.node] = _body(k.node, sched)
    return sched


def _through(n: Node) -> Node:
    """What a name sees through: a tensor read transposed, reshaped, broadcast is itself."""
    while placement(n).naming == "alias":
        n = n.src[0]
    return n


def formula_names(
    order: Sequence[Node],
    forward: set[Node],
    layers: Mapping[Node, tuple[str, str]],
    weight_grads: Mapping[Node, str],
) -> dict[Node, str]:
    """The names the formulas give a program's layer tensors (``symbp.formulas.naming``),
    found by the program's structure, for the nodes that have one: layer k's pre-activation
    ``zk`` (its product plus its bias, or its product alone), its activation ``hk`` (``h``
    when there is one hidden, ``o`` when no later layer reads it), its pooling ``sk``; the
    error signal ``deltak`` that the gradient of layer k's weight reads, and each product
    with layer k's weight, named by its other operand: ``x_Wk``, ``deltak_Wk`` (a template,
    ``{0}_Wk``, filled with the buffer name of that source). ``k`` is "" with one layer."""
    weight = {leaf: k for leaf, (attr, k) in layers.items() if attr == "weight"}
    bias = {leaf: k for leaf, (attr, k) in layers.items() if attr == "bias"}
    has_bias = set(bias.values())
    users = consumers(order)

    def reads(n: Node) -> set[Node]:
        return {_through(s) for s in n.src}

    def one(ks: set[str]) -> str | None:
        return ks.pop() if len(ks) == 1 else None

    names: dict[Node, str] = {}
    product: dict[Node, str] = {}  # forward products with a layer's weight
    z: dict[Node, str] = {}
    for n in order:
        product_op = placement(n).naming == "product"
        if product_op and (k := one({weight[s] for s in reads(n) if s in weight})):
            if n in forward:
                product[n] = k
            operand = next((i for i, s in enumerate(n.src) if _through(s) not in weight), None)
            if operand is not None:
                names[n] = f"{{{operand}}}_W{k}"
            if k not in has_bias and n in forward:
                z[n] = k
        elif n.op == "ew" and n in forward:
            src = reads(n)
            k = one({bias[s] for s in src if s in bias})
            if k is not None and any(product.get(s) == k for s in src) and _is_sum(n):
                z[n] = k
    hidden: dict[Node, str] = {}
    for n in order:  # an activation reads its layer's z alone (or its product and bias)
        if n.op != "ew" or n not in forward or n in z:
            continue
        src = reads(n)
        ks = {z[s] for s in src if s in z} | {product[s] for s in src if s in product}
        k = one(ks)
        if k is not None and all(s in z or s in product or bias.get(s) == k for s in src):
            hidden[n] = k
    later = set(product)
    for n, k in z.items():
        names[n] = f"z{k}"
    one_hidden = sum(_reaches(n, later, users) for n in hidden) == 1
    for n, k in hidden.items():
        if not _reaches(n, later, users):
            names[n] = "o"
        else:
            names[n] = "h" if one_hidden else f"h{k}"
    for n in order:  # a pooling of an activation: s_k
        if placement(n).naming == "pool" and n in forward:
            k = one({hidden[s] for s in reads(n) if s in hidden})
            if k is not None:
                names[n] = f"s{k}"
    for g, k in weight_grads.items():  # the δ a weight's gradient (a product) reads
        if placement(_through(g)).naming != "product":
            continue  # a norm's scale: its gradient is a sum of δ ⊙ x̂, whose δ is no buffer
        for s in (_through(s) for s in _through(g).src):
            if s not in forward and s.op != "input" and s not in names:
                names[s] = f"delta{k}"
                break
    return names


def _is_sum(n: Node) -> bool:
    """An elementwise node adding its sources and nothing else (a product plus a bias)."""
    expr = n.arg.expr
    return bool(expr.is_Add) and all(a.is_Symbol for a in expr.args)


def _reaches(n: Node, goals: set[Node], users: Mapping[Node, list[Node]]) -> bool:
    stack, seen = list(users.get(n, [])), set()
    while stack:
        u = stack.pop()
        if u in goals:
            return True
        if u not in seen:
            seen.add(u)
            stack.extend(users.get(u, []))
    return False


def stored(n: Node, sched: Schedule) -> Buffer:
    """The buffer behind source ``n`` of an op that reads buffers (through a detach)."""
    while n not in sched.buffers and placement(n).operand == "same":
        n = n.src[0]
    return sched.buffers[n]


def _body(n: Node, outer: Schedule) -> Schedule:
    """The schedule of loop node ``n``'s body: its step leaves and outputs are buffers the
    emitter binds at each step (views of the node's sources and output, arena "loop"), its
    consts the buffers of the node's trailing sources, its intermediates work buffers."""
    loop = n.arg
    names, keys = outer.names, outer.keys
    inputs = {
        leaf: Buffer(names.fresh(ident(str(leaf.arg))), leaf.shape, leaf.dtype, "loop", leaf,
                     key=keys.fresh(ident(str(leaf.arg))))
        for leaf in loop.steps
    }  # fmt: skip
    consts = n.src[len(n.src) - len(loop.consts) :]
    inputs.update(zip(loop.consts, (stored(s, outer) for s in consts)))
    out = outer.buffers[n]
    known = step_names(loop, outer.steps.get(loop.outputs[0], {}))
    outputs = [  # a step's output the formulas name (a gate, stored for the adjoint): by it
        (Buffer(names.fresh(f"{out.name}_{known.get(o, name)}"), o.shape, o.dtype, "loop",
                key=keys.fresh(f"{out.key or out.name}_{name}")), o)
        for o, name in zip(loop.outputs, loop.names)
    ]  # fmt: skip
    return schedule(outputs, inputs, names=names, keys=keys, labels=outer.labels,
                    steps=outer.steps, given=known)  # fmt: skip


def step_names(loop: Any, given: Mapping[str, tuple[str, ...]]) -> dict[Node, str]:
    """The names the formulas give the tensors of a loop's step (``formulas.recurrence``),
    found by the body's structure, for the nodes that have one: the carry's parts, the sources
    of the step's closing cat (``h, c`` as the layer calls them, else ``h1, h2`` ...), and
    their values at the step before, read off the carry (``h_prev``); where the layer names
    its gates (``i, f, g, o``), their pre-activation ``a``, the node the step reads in as many
    equal column blocks, and each gate, what reads one block alone."""
    y, carry = loop.outputs[0], loop.steps[0]
    names: dict[Node, str] = {}
    order = toposort(loop.outputs)
    users = consumers(order)
    if y.op == "cat" and y.arg == y.ndim - 1 and len(y.src) > 1:
        parts = tuple(given.get("carry", ()))
        if len(parts) != len(y.src):
            parts = tuple(f"h{k + 1}" for k in range(len(y.src)))
        starts = itertools.accumulate((int(s.shape[-1]) for s in y.src), initial=0)
        at = dict(zip(starts, parts))
        for s, part in zip(y.src, parts):
            names.setdefault(s, part)
        for u in users.get(carry, []):  # the carry's part at the step before: h_{t-1}
            block = _column_block(u)
            if block is not None and block[0] in at:
                names.setdefault(u, f"{at[block[0]]}_prev")
    gates = tuple(given.get("gates", ()))
    for n in order if len(gates) > 1 else ():
        blocks = {b: u for u in users.get(n, []) if (b := _column_block(u)) is not None}
        width = int(n.shape[-1]) if n.shape else 0
        if len(blocks) != len(gates) or width % len(gates):
            continue
        size = width // len(gates)
        if sorted(blocks) != [(k * size, size) for k in range(len(gates))]:
            continue
        names.setdefault(n, "a")
        for k, gate in enumerate(gates):
            readers = [u for u in users.get(blocks[(k * size, size)], []) if u.op == "ew"]
            if len(readers) == 1 and len(readers[0].src) == 1:
                names.setdefault(readers[0], gate)
    return names


def _column_block(n: Node) -> tuple[int, int] | None:
    """(start, size) of the columns a slice takes whole rows of (``a[:, 5:10]``), else None."""
    if n.op != "slice" or not n.arg or any(getattr(a, "step", None) != 1 for a in n.arg):
        return None
    *rows, cols = n.arg
    src = n.src[0]
    whole = all(a.start == 0 and a.size == d for a, d in zip(rows, src.shape))
    if not whole or not isinstance(cols.start, int) or not isinstance(cols.size, int):
        return None
    return cols.start, cols.size


def _stored_deps(n: Node, sched: Schedule) -> set[Node]:
    """The stored nodes (and inputs) that reading ``n`` touches, through views and inlining."""
    if n in sched.buffers:
        return {n}
    out: set[Node] = set()
    for s in n.src:
        out |= _stored_deps(s, sched)
    return out


def _fuse_siblings(sched: Schedule) -> None:
    """Move each elementwise kernel into an earlier reduction's loop when both sweep the same
    index space, share a source, and everything the kernel reads is ready by then."""
    position = {k.node: i for i, k in enumerate(sched.kernels)}
    taken: set[int] = set()
    for i, r in enumerate(sched.kernels):
        if not placement(r.node).reduction or r.node.src[0] not in sched.inlined:
            continue
        space = r.node.src[0].shape
        shared = _stored_deps(r.node.src[0], sched)
        for j in range(i + 1, len(sched.kernels)):
            k = sched.kernels[j]
            if j in taken or not placement(k.node).fuses or k.node.shape != space:
                continue
            if sched.buffers.get(k.node) is not k.out:
                continue
            deps = set().union(*(_stored_deps(s, sched) for s in k.node.src))
            ready = all(position.get(d, -1) < i for d in deps)
            if ready and deps & shared:
                sched.siblings.setdefault(r.node, []).append(k)
                taken.add(j)
    sched.kernels = [k for j, k in enumerate(sched.kernels) if j not in taken]


__all__ = [
    "PLACEMENT",
    "Buffer",
    "Kernel",
    "Placement",
    "Schedule",
    "Update",
    "formula_names",
    "ident",
    "placement",
    "schedule",
    "stored",
]
