"""Emit Python source for Numba from a ``Schedule``: one loop nest per kernel.

A kernel's body is its SymPy formula, with every source replaced by the code that reads it at
the loop indices (through broadcasts, transposes and one-hots: see ``schedule``), then
common subexpressions shared (``sympy.cse``) and loop-invariant factors (``1/B``, a bias
correction ``lr/(1 - beta1**t)``) hoisted out of the loop and computed once, in float64 like
PyTorch's Python-side scalars. Matrix products are explicit loops when small (calling BLAS
costs more than a 2x2 product) and ``np.dot`` into the preallocated output otherwise.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from symbp.compiler.ir import B, G, Node, P, numel, type_str
from symbp.compiler.loops import rows_apart, stacked
from symbp.compiler.lower import simd
from symbp.compiler.lower.printer import LoweringError, NumbaPrinter
from symbp.compiler.lower.schedule import Buffer, Kernel, Schedule, Update, placement, stored
from symbp.compiler.ops import OPS, NotApplicable, bernoulli_threshold, to_expr, xsym

# Below this many multiply-adds a matrix product is written as loops (measured on W1/W5: a
# BLAS call costs ~0.3 us, more than the arithmetic of a 10x5 layer).
SMALL_MATMUL = 4096
# From this many multiply-adds a product runs in conv_kernels' register-tiled matmul, which
# beats BLAS here (MKL takes its non-Intel path on this AMD CPU; OpenBLAS is pinned to its
# AVX2 kernels by this host's OPENBLAS_CORETYPE=Haswell). Measured, float32, 2 cores:
# 128x256x128 62 us vs MKL 159 us, W3's 128x784x512 0.62 vs 1.11 ms; but 32x1024x64
# (2M) 55 vs 35 us, and below that BLAS wins: the tile pays for packing and its threads.
TILED_MATMUL = 1 << 22
# Below TILED_MATMUL, products run on one core in conv_kernels' matmul_small: no threads to
# wake, op(a) read in place. Measured, float32, against MKL (interleaved, per call): W2's
# 32x64x128 forward 4.3 vs 5.9 us and its 32x128 -> 128x64 weight gradient 2.9 vs 5.9 us;
# 64x128x128 10 vs 23 us; 32x1024x64 21 vs 29 us. Except a @ b.T with long rows (k > NT_SMALL):
# packing b.T then reads rows 4 KB apart (32x1024x64: 45-58 vs 29 us), so BLAS keeps those.
NT_SMALL = 128
# A batch-dependent product gets a loop branch only if it serves batches of this many rows.
SMALL_BATCH = 8

# An optimizer update over at least this many entries runs on all cores (numba prange): it
# reads and writes ~5 arrays per entry and is bound by memory bandwidth, not arithmetic.
PARALLEL_UPDATE = 1 << 15
# An elementwise or pooling kernel over at least this many entries per sample (a CNN's feature
# maps) splits its batch loop over the cores: the tutorial CNN's bias adds, pooling and their
# gradients took ~10 of its 18 ms a step on one core. Its iterations write disjoint samples
# (the ops whose ``Lowering.batch_parallel`` says so).
PARALLEL_SAMPLE = 1 << 12

LOOP_VARS = ("i", "j", "k", "l", "m", "n", "p", "q")
# The dtype a kernel prints its literals in. Integer and bool buffers live in the int64 arena
# (``iwork``; a bool is 0 or 1 there) and print integers exactly ("int").
_DT = {
    np.dtype(np.float32): "f32",
    np.dtype(np.float64): "f64",
    np.dtype(np.int64): "int",
    np.dtype(np.int32): "int",
    np.dtype(np.bool_): "int",
}


@functools.lru_cache(
    maxsize=1024, typed=True
)  # SymPy's printing is slow, and a program's dims repeat
def dim_code(d: object) -> str:
    return str(d) if not isinstance(d, sympy.Expr) else str(d).replace(" ", "")


def indent(lines: Sequence[str], n: int = 1) -> list[str]:
    """``lines`` indented by ``n`` levels of four spaces; a blank line stays blank."""
    return [("    " * n + line) if line else line for line in lines]


def numel_code(shape: Sequence[object]) -> str:
    if not shape:
        return "1"
    return "*".join(dim_code(d) for d in shape)


def at(buf: Buffer, idx: Sequence[str]) -> str:
    """The code indexing ``buf`` at ``idx`` (a 0-d buffer is a 1-element array)."""
    return f"{buf.name}[{', '.join(idx)}]" if idx else f"{buf.name}[0]"


class Emitter:
    """Turns kernels into indented lines of code; ``invariant`` maps symbols to local names."""

    def __init__(self, sched: Schedule, invariant: dict[sympy.Symbol, str], mkl: bool = False):
        self.mkl = (
            mkl  # matrix products through MKL's gemm (symbp.compiler.lower.support) or np.dot
        )
        self.parallel = False  # set when a loop uses prange: the function needs parallel=True
        self.threaded = False  # set when it calls a parallel library kernel (conv_kernels.py)
        # a loop body run by each thread on its own block of rows (``_as_function``): its
        # kernels stay on their thread (no prange, products on the one-core kernel)
        self.serial = False
        self.rows = False  # writing such a loop: the step's views are the block's rows
        self.kernels: list[str] = []  # the product kernels it calls by symbol (call_<name>)
        # the heading of each loop written, in order (the kernel schedule as data), and
        # whether it opens a loop of its own (False: computed in the loop before it)
        self.headings: list[tuple[str, bool]] = []
        self.calls_blas = False  # set when it writes an np.dot (runtime.one_blas_thread)
        # the helpers its code calls by name (support, conv_kernels, numba's prange): what the
        # module imports, no more
        self.uses: set[str] = set()
        # functions of their own, written before the program's (a loop's body, shared by the
        # loops of one body: ``_as_function``), and each one's (name, parameters) by key
        self.functions: list[tuple[str, str]] = []
        self._shared: dict[tuple, str] = {}
        # a distributed program's first row of this rank's share in the whole batch: dropout
        # masks are drawn by the row's place in the batch, so a share draws what one
        # process drawing the whole batch would (symbp.compiler.lower.program._distributed)
        self.row_offset: str | None = None
        # a distributed program's (allreduce kernel, the status it returns when MPI fails):
        # a psum node calls it; None: one process, where a sum across ranks is the value
        self.collective: tuple[str, int | str] | None = None
        self.sched = sched
        self.invariant = invariant
        self._syms: dict[str, sympy.Symbol] = {}
        self._codes: dict[sympy.Symbol, str] = {}  # a symbol named by its key: its code
        self._kid = itertools.count()

    def use(self, name: str) -> str:
        """``name``, a helper the module must import, as the code calls it."""
        self.uses.add(name)
        return name

    # ------------------------------------------------------------ reading through views

    def sym(self, code: str, key: str | None = None) -> sympy.Symbol:
        """The symbol of a read that prints as ``code``, named ``key`` (``Buffer.key``: what
        SymPy orders it by in a formula) where that differs."""
        key = key or code
        s = self._syms.get(key)
        if s is None:
            s = self._syms[key] = sympy.Symbol(key, real=True)
            if key != code:
                self._codes[s] = code
        return s

    def printed(self) -> dict[sympy.Symbol, str]:
        """What the printers print each symbol as: the invariants' locals, the reads' code."""
        return {**self.invariant, **self._codes}

    def read(self, n: Node, idx: Sequence[str], top: bool = False) -> sympy.Expr:
        """The value of node ``n`` at index ``idx`` as a SymPy expression of buffer reads."""
        buf = self.sched.buffers.get(n)
        if buf is not None and not top:
            return self.sym(at(buf, idx), buf.read_key(idx))
        rule = lowering(n).read
        if rule is None:
            raise LoweringError(f"the Numba backend cannot read a '{n.op}' node through a view")
        return rule(self, n, idx)

    # One read rule per view op (and for an elementwise node inlined into a reduction's loop):
    # the value at loop index ``idx`` from its source's, in ``LOWERING``.

    def _read_const(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        return sympy.sympify(n.arg)

    def _read_detach(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        return self.read(n.src[0], idx)

    def _read_expand(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        (x,) = n.src
        src_idx = ["0" if a == 1 and b != 1 else i for a, b, i in zip(x.shape, n.shape, idx)]
        return self.read(x, src_idx)

    def _read_transpose(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        src_idx = [""] * n.ndim
        for k, a in enumerate(n.arg):
            src_idx[a] = idx[k]
        return self.read(n.src[0], src_idx)

    def _read_reshape(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        return self.read(n.src[0], _reshape_index(n.src[0].shape, n.shape, idx))

    def _read_cast(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        value = self.read(n.src[0], idx)
        inner, key = self.code(value, n.src[0].dtype), self.code(value, n.src[0].dtype, True)
        if n.dtype.kind == "b":  # to bool: nonzero (NaN included) is True, as PyTorch
            return self.sym(f"int({inner} != 0)", f"int({key} != 0)")
        conv = _DT.get(n.dtype, "int")
        return self.sym(f"{conv}({inner})", f"{conv}({key})")

    def _read_onehot(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        label = self.read(n.src[0], idx[:-1])
        j = idx[-1]
        hot = sympy.Eq(label, sympy.Integer(0) if j == "0" else self.sym(j))
        return sympy.Piecewise((1, hot), (0, True))

    def _read_ew(self, n: Node, idx: Sequence[str]) -> sympy.Expr:
        return n.arg.expr.xreplace({xsym(i): self.read(s, idx) for i, s in enumerate(n.src)})

    def code(self, expr: sympy.Expr, dtype: np.dtype, keys: bool = False) -> str:
        """``expr`` as code (``keys``: with its reads' keys, to name a symbol by)."""
        names = dict(self.invariant) if keys else self.printed()
        return NumbaPrinter(names, _DT.get(dtype, "f64"), self.uses).doprint(expr)

    # ------------------------------------------------------------ formulas -> statements

    def assign(
        self, targets: Sequence[str], exprs: Sequence[sympy.Expr], dtype: np.dtype, op: str = "="
    ) -> tuple[list[str], list[str]]:
        """(hoisted lines, body lines) computing ``exprs`` into ``targets``.

        Loop-invariant subexpressions become hoisted locals (float64, cast to the kernel's
        dtype), repeated subexpressions become body locals.
        """
        kid = next(self._kid)
        hoisted: dict[sympy.Expr, sympy.Symbol] = {}
        inv_syms = set(self.invariant)

        def is_invariant(e: sympy.Expr) -> bool:
            if e.is_Atom:
                return e in inv_syms
            return e.free_symbols <= inv_syms and not e.is_Boolean and not e.is_Relational

        def lift(e: sympy.Expr) -> sympy.Symbol:
            return hoisted.setdefault(e, sympy.Symbol(f"k{kid}_{len(hoisted)}", real=True))

        def hoist(e: sympy.Expr) -> sympy.Expr:
            if e.is_number and not e.is_Number and not e.is_Boolean:  # sqrt(2/pi): one literal
                return sympy.Float(e.evalf(20), 20)
            if is_invariant(e):
                return lift(e)
            if e.is_Atom or e.is_Relational or e.is_Boolean:
                return e
            if isinstance(e, sympy.Piecewise):
                return sympy.Piecewise(*[(hoist(a), c) for a, c in e.args])
            if e.is_Add or e.is_Mul:  # group the invariant terms/factors into one local
                inv = [a for a in e.args if is_invariant(a)]
                rest = [hoist(a) for a in e.args if not is_invariant(a)]
                if inv:
                    return e.func(lift(e.func(*inv)), *rest)
                return e.func(*rest)
            return e.func(*[hoist(a) for a in e.args])

        exprs = [hoist(sympy.sympify(e)) for e in exprs]
        kt = _DT.get(dtype, "f64")
        pre = []
        f64 = NumbaPrinter(self.printed(), "f64", self.uses)
        for e, s in hoisted.items():
            value = f64.doprint(e)
            pre.append(f"{s.name} = {kt}({value})" if kt == "f32" else f"{s.name} = {value}")
        temps = (sympy.Symbol(f"c{kid}_{i}", real=True) for i in itertools.count())
        repl, reduced = sympy.cse(list(exprs), symbols=temps, order="none")
        printer = NumbaPrinter(self.printed(), kt, self.uses)
        body = [f"{s.name} = {printer.doprint(e)}" for s, e in repl]
        if len(targets) == 1:
            body.append(f"{targets[0]} {op} {printer.doprint(reduced[0])}")
        else:  # compute every new value before storing any (an update reads its old state)
            names = [f"n{kid}_{i}" for i in range(len(targets))]
            body += [f"{v} = {printer.doprint(e)}" for v, e in zip(names, reduced)]
            body += [f"{t} {op} {v}" for t, v in zip(targets, names)]
        return pre, body

    # ------------------------------------------------------------ kernels

    def kernel(self, k: Kernel) -> list[str]:
        n, out = k.node, k.out
        head = [f"# {out.name}:{type_str(n)} = {_describe(n, self.sched)}"]
        if self.sched.buffers.get(n) is not out:  # a second output of one value: a copy
            self.headings.append((head[0][2:], True))
            return [*head, *self.elementwise(n, out, copy=True)]
        for sib in self.sched.siblings.get(n, []):  # a reduction's: computed in its loop
            text = f"# {sib.out.name}:{type_str(sib.node)} = {_describe(sib.node, self.sched)}"
            head.append(text + " (in the same loop)")
        self.headings += [(h[2:], i == 0) for i, h in enumerate(head)]
        rule = lowering(n)
        if isinstance(rule.kernel, NotApplicable):
            raise LoweringError(f"the Numba backend computes no '{n.op}' node: {rule.kernel.why}")
        lines = rule.kernel(self, n, out)
        return [*head, *(self._batch_parallel(n, lines) if rule.batch_parallel else lines)]

    def _batch_parallel(self, n: Node, lines: list[str]) -> list[str]:
        """``lines`` with their outermost loops over the batch made ``prange``, when ``n``
        touches many entries per sample (its output or a batched source: a pooling's input);
        called for the ops whose loops write only their own sample (``batch_parallel``)."""
        if not n.shape or n.shape[0] != B or self.serial:
            return lines
        sizes = [sympy.sympify(numel(s.shape[1:])) for s in (n, *n.src) if s.shape[:1] == (B,)]
        if max((int(s) for s in sizes if s.is_Number), default=0) < PARALLEL_SAMPLE:
            return lines
        head = re.compile(r"^for (\w+) in range\(B\):$")
        out = [head.sub(r"for \1 in prange(B):", line) for line in lines]
        if out != lines:
            self.parallel = True
            self.use("prange")
        return out

    def elementwise(self, n: Node, out: Buffer, copy: bool = False) -> list[str]:
        idx = _index(n.shape)
        value = self.read(n, idx, top=not copy)
        pre, body = self.assign([at(out, idx)], [value], n.dtype)
        return pre + _loops(n.shape, idx, body)

    def _emit_sum(self, n: Node, out: Buffer) -> list[str]:
        return self.reduce(n, out, is_max=False)

    def _emit_max(self, n: Node, out: Buffer) -> list[str]:
        return self.reduce(n, out, is_max=True)

    def reduce(self, n: Node, out: Buffer, is_max: bool) -> list[str]:
        """A sum (or, ``is_max``, a max) over ``n.arg``'s axes, with the elementwise kernels
        inlined into it or computed in the same loop (``Schedule.siblings``)."""
        (x,) = n.src
        axes, keepdim = n.arg
        idx = _index(x.shape)
        if keepdim:
            oidx = ["0" if a in axes else v for a, v in enumerate(idx)]
        else:
            oidx = [v for a, v in enumerate(idx) if a not in axes]
        value = self.read(x, idx)
        kt = _DT.get(n.dtype, "f64")
        if is_max:
            init = "-np.inf" if kt == "f64" else "f32(-np.inf)"
        elif kt == "int":  # an integer sum (of a bool mask) counts exactly
            init = "0"
        else:
            init = "0.0" if (kt == "f64" or not oidx) else "f32(0.0)"
        suffix = list(axes) == list(range(x.ndim - len(axes), x.ndim))
        # sibling kernels over the same index space are computed in the same loop
        sib = self.sched.siblings.get(n, [])
        targets = ["v"] + [at(k.out, idx) for k in sib]
        values = [value] + [self.read(k.node, idx, top=True) for k in sib]
        if suffix:  # reduce the innermost axes into a scalar accumulator
            kept = x.ndim - len(axes)
            pre, body = self.assign(targets, values, n.dtype)
            step = ["if v > acc or v != v:", "    acc = v"] if is_max else ["acc += v"]
            inner = _loops(x.shape[kept:], idx[kept:], body + step)
            outer_body = [f"acc = {init}", *inner, f"{at(out, oidx)} = acc"]
            return pre + _loops(x.shape[:kept], idx[:kept], outer_body)
        # reduce leading axes: sweep the source in memory order, accumulating into the output
        zero = _loops(out.shape, _index(out.shape), [f"{at(out, _index(out.shape))} = {init}"])
        pre, body = self.assign(targets, values, n.dtype)
        o = at(out, oidx)

        def merge(v: str) -> list[str]:
            return [f"if {v} > {o} or {v} != {v}:", f"    {o} = {v}"] if is_max else [f"{o} += {v}"]

        # Reduced axes at the end (a conv bias gradient's H and W) are summed in a register,
        # not through memory: that store-to-load chain cost the tutorial CNN's bias sums ~2 ms.
        trailing = 0
        while trailing < x.ndim and x.ndim - 1 - trailing in axes:
            trailing += 1
        if trailing:
            lead = x.ndim - trailing
            count = sympy.Mul(*(sympy.sympify(d) for d in x.shape[lead:]))
            buf = self.sched.buffers.get(x)
            plain = buf is not None and str(value) == buf.read_key(idx) and not (is_max or sib)
            if plain and count.is_Number and int(count) >= 64 and kt != "int":
                # a stored array's contiguous runs: summed on vectors (support.run_sum_*)
                assert buf is not None
                strides = [numel_code(x.shape[a + 1 :]) for a in range(lead)]
                start = " + ".join(f"{v}*{s}" for v, s in zip(idx, strides) if v != "0")
                run_sum = self.use(f"run_sum_{kt}")
                call = f"acc = {run_sum}({buf.name}, {start or '0'}, {int(count)})"
                return zero + pre + _loops(x.shape[:lead], idx[:lead], [call, *merge("acc")])
            step = ["if v > acc or v != v:", "    acc = v"] if is_max else ["acc += v"]
            inner = _loops(x.shape[lead:], idx[lead:], body + step)
            run = [f"acc = {init}", *inner, *merge("acc")]
            return zero + pre + _loops(x.shape[:lead], idx[:lead], run)
        return zero + pre + _loops(x.shape, idx, body + merge("v"))

    def _emit_bernoulli(self, n: Node, out: Buffer) -> list[str]:
        """The dropout mask: entry f (C order) is 1 iff its hash is below floor(prob·2⁶⁴),
        ``symbp.compiler.ops.bernoulli_mask`` bit for bit (``support.bernoulli_bits``)."""
        prob = n.arg[0]
        thr = bernoulli_threshold(prob)
        one, zero = ("f32(1.0)", "f32(0.0)") if _DT.get(n.dtype) == "f32" else ("1.0", "0.0")
        idx = _index(n.shape)
        if thr is None:  # probability 1: every entry
            return _loops(n.shape, idx, [f"{at(out, idx)} = {one}"])
        hashed = list(idx)  # the indices the hash reads: in the whole batch
        if self.row_offset is not None and any(B in sympy.sympify(d).free_symbols
                                               for d in n.shape):  # fmt: skip
            if sympy.sympify(n.shape[0]) != B:
                raise NotImplementedError(
                    f"distributed: a dropout mask of shape {list(n.shape)} (the batch not its "
                    f"first dimension) cannot be shared between ranks yet"
                )
            hashed[0] = f"({idx[0]} + {self.row_offset})"
        terms, stride = [], sympy.Integer(1)  # the flat index from the loop indices
        for d, v in reversed(list(zip(n.shape, hashed))):
            if v != "0":
                terms.append(v if stride == 1 else f"{v} * {dim_code(stride)}")
            stride = stride * sympy.sympify(d)
        flat = " + ".join(reversed(terms)) or "0"
        key = self.sched.names.fresh(f"{out.name}_key")
        seed = n.src[0].dtype
        hit = f"{self.use('bernoulli_bits')}({key}, {flat}) < np.uint64({thr})"
        return [
            f"{key} = {self.use('bernoulli_key')}({self.code(self.read(n.src[0], []), seed)})",
            *_loops(n.shape, idx, [f"{at(out, idx)} = {one} if {hit} else {zero}"]),
        ]

    def blas_faster(self, kind: str) -> bool:
        """Whether the BLAS computes products of ``kind`` faster on this CPU
        (``tuning.blas_faster``: measured at the first product of the kind a program has to
        place, then kept per CPU)."""
        from symbp.compiler.lower import tuning

        return tuning.blas_faster(kind)

    def blas(self, kt: str, a: str, ta: bool, b: str, tb: bool, out: str) -> str:
        """``out = op(a) @ op(b)`` through the BLAS: MKL's gemm where symbp loaded it, else
        ``np.dot`` (SciPy's OpenBLAS, run on the calling thread: ``runtime.one_blas_thread``)."""
        if self.mkl and kt in ("f32", "f64"):
            return f"{self.use(f'gemm_{kt}')}({a}, {ta}, {b}, {tb}, {out})"
        self.calls_blas = True
        return f"np.dot({a}{'.T' if ta else ''}, {b}{'.T' if tb else ''}, {out})"

    def large_product(self, kt: str, a: str, ta: bool, b: str, tb: bool, out: str) -> str:
        """A big product: the tiled kernel on all cores, or the BLAS where it is faster."""
        if self.blas_faster("large"):
            return self.blas(kt, a, ta, b, tb, out)
        self.threaded = True
        return self.library(f"matmul_{kt}", a, ta, b, tb, out)

    def library(self, name: str, *args: object) -> str:
        """A call of the product kernel ``name`` through its symbol (``conv_kernels.need``)."""
        if name not in self.kernels:
            self.kernels.append(name)
        return f"{self.use(f'call_{name}')}({', '.join(str(a) for a in args)})"

    def operand(self, n: Node) -> tuple[Buffer, bool]:
        """The buffer behind a matmul operand, and whether it is read transposed."""
        while placement(n).operand == "same":
            n = n.src[0]
        if n in self.sched.buffers:
            return self.sched.buffers[n], False
        assert placement(n).operand == "transposed"  # what the scheduler left unstored
        buf, t = self.operand(n.src[0])
        return buf, not t

    def matmul(self, n: Node, out: Buffer) -> list[str]:
        (a, ta), (b, tb) = (self.operand(s) for s in n.src)
        M, K = (sympy.sympify(d) for d in n.src[0].shape)
        N = sympy.sympify(n.shape[1])

        def el(buf: Buffer, t: bool, r: str, c: str) -> str:
            return f"{buf.name}[{c}, {r}]" if t else f"{buf.name}[{r}, {c}]"

        kt = _DT.get(n.dtype, "f64")
        zero = "f32(0.0)" if kt == "f32" else "0.0"
        if tb and not ta:  # rows of a against rows of b: inner products over contiguous k
            loops = _loops(
                [M, N],
                ["i", "j"],
                [
                    f"acc = {zero}",
                    *_loops([K], ["k"], [f"acc += {el(a, ta, 'i', 'k')} * {el(b, tb, 'k', 'j')}"]),
                    f"{out.name}[i, j] = acc",
                ],
            )
        else:  # axpy form: out[i, :] += a[i, k] * b[k, :], contiguous in j
            loops = _loops(
                [M],
                ["i"],
                [
                    *_loops([N], ["j"], [f"{out.name}[i, j] = {zero}"]),
                    *_loops(
                        [K],
                        ["k"],
                        [
                            f"aik = {el(a, ta, 'i', 'k')}",
                            *_loops(
                                [N], ["j"], [f"{out.name}[i, j] += aik * {el(b, tb, 'k', 'j')}"]
                            ),
                        ],
                    ),
                ],
            )

        def mid() -> str:
            """The call for a mid-sized product, made only where it is used: a kernel called by
            symbol must be registered (``need``) only if the program calls it."""
            long_nt = tb and not ta and not (K.is_Number and int(K) <= NT_SMALL)
            blas = not self.serial and self.blas_faster("small")  # faster here (lower/tuning.py)
            if kt in ("f32", "f64") and not long_nt and not blas:
                # conv_kernels' one-core tile (see NT_SMALL), narrow when the product has at
                # most one vector of columns
                narrow = "_narrow" if N.is_Number and int(N) <= simd.lanes(n.dtype) else ""
                return self.library(f"matmul_small_{kt}{narrow}", a.name, ta, b.name, tb, out.name)
            return self.blas(kt, a.name, ta, b.name, tb, out.name)

        flops = sympy.sympify(M) * K * N
        static = flops.as_coeff_Mul()[0]  # the product is at least this big (B >= 1)
        tiles = not self.serial  # the tiled kernel's threads are the caller's in a serial body
        large = static >= TILED_MATMUL // (1 if flops.is_Number else 256)
        if tiles and kt in ("f32", "f64") and large:
            # big products: the register-tiled kernel of conv_kernels.py, or the BLAS where
            # that is faster here (a batch-dependent one, when batches up to 256 rows can
            # make it big, chooses at run time)
            tiled = self.large_product(kt, a.name, ta, b.name, tb, out.name)
            if flops.is_Number:
                return [tiled]
            big = f"if {dim_code(flops)} >= {TILED_MATMUL}:"
            return [big, "    " + tiled, "else:", "    " + mid()]
        if flops.is_Number:
            return loops if int(flops) <= SMALL_MATMUL else [mid()]
        if static * SMALL_BATCH > SMALL_MATMUL:
            # The loops would serve only batches of fewer than SMALL_BATCH rows, and each loop
            # nest costs LLVM ~0.4 s of compile time (W2's two such branches: 3.3 -> 2.5 s).
            return [mid()]
        return [
            f"if {dim_code(flops)} <= {SMALL_MATMUL}:",
            *indent(loops),
            "else:",
            "    " + mid(),
        ]

    # ------------------------------------------------------------ convolution and pooling
    #
    # Convolutions call the library kernels of ``conv_kernels.py`` (generated by ``conv.py``,
    # which says why and what they measure): register-blocked SIMD tiles, all cores, compiled
    # once per machine. Grouped convolutions, and input gradients whose padding exceeds the
    # kernel's reach (p > d*(k-1)), get plain loops (``_conv_nest``) written per layer. Pooling
    # loops over windows.

    def _src(self, n: Node) -> str:
        """The buffer name a window op reads source ``n`` from (the scheduler stores it)."""
        return self.operand(n)[0].name

    def _zero(self, dtype: np.dtype) -> str:
        return "f32(0.0)" if _DT.get(dtype) == "f32" else "0.0"

    @staticmethod
    def _tap_range(
        o: str, k: str, stride: int, dil: int, lo: int, size: object, out_size: object
    ) -> list[str]:
        """``{o}0, {o}1``: the output positions whose tap ``k`` lands inside the input:
        0 <= o*stride + k*dil - lo < size."""
        off = f"{k} * {dil} - {lo}" if dil != 1 else f"{k} - {lo}"
        return [
            f"{o}0 = max(0, -(({off}) // {stride}))",
            f"{o}1 = min({out_size}, ({size} - 1 - ({off})) // {stride} + 1)",
        ]

    @staticmethod
    def _in(o: str, k: str, stride: int, dil: int, lo: int) -> str:
        """The input coordinate tap ``k`` of output position ``o`` reads."""
        code = o if stride == 1 else f"{o} * {stride}"
        code += f" + {k}" if dil == 1 else f" + {k} * {dil}"
        return code + (f" - {lo}" if lo else "")

    def _conv_nest(
        self,
        a: Any,
        shapes: tuple[Sequence[object], Sequence[object], Sequence[object]],
        body: list[str],
        before_tap: list[str],
        after_tap: Sequence[str] = (),
    ) -> list[str]:
        """Loops over (image, out channel, in channel, tap, in-bounds oy, ox) of the
        convolution ``a`` (a ``Conv2dArg``) -- ``shapes`` = (x [N,C,H,W], out [N,O,Ho,Wo],
        w [O,C/g,kh,kw]) -- around ``body``, which sees the input coordinates ``iy``, ``ix``.
        ``before_tap`` and ``after_tap`` run once per tap around its rows."""
        (nb, _, h, w), (_, _, ho, wo), (o, cg, kh, kw) = shapes
        (sh, sw), (dh, dw), ((top, _), (left, _)) = a.stride, a.dilation, a.padding
        cols = [f"ix = {self._in('ox', 'kq', sw, dw, left)}", *body]
        rows = [
            f"iy = {self._in('oy', 'kp', sh, dh, top)}",
            "for ox in range(ox0, ox1):",
            *indent(cols),
        ]
        tap = [
            *before_tap,
            *self._tap_range("oy", "kp", sh, dh, top, h, ho),
            *self._tap_range("ox", "kq", sw, dw, left, w, wo),
            "for oy in range(oy0, oy1):",
            *indent(rows),
            *after_tap,
        ]
        group = "" if a.groups == 1 else f"(oc // {o // a.groups}) * {cg} + "
        inner = [f"ic = {group}icl", *_loops([kh, kw], ["kp", "kq"], tap)]
        return _loops([nb, o, cg], ["nb", "oc", "icl"], inner)

    def _zero_out(self, out: Buffer) -> list[str]:
        idx = _index(out.shape)
        return _loops(out.shape, idx, [f"{at(out, idx)} = 0"])

    def _conv_call(
        self, kernel: str, n: Node, a: Any, args: Sequence[str], w: Node
    ) -> list[str] | None:
        """A call of a library kernel (``conv_kernels.py``), when there is one for ``n``: the
        ``_narrow`` one when the channels it produces fit one vector."""
        kt = _DT.get(n.dtype)
        if a.groups != 1 or kt is None:
            return None
        (sh, sw), (dh, dw), ((top, _), (left, _)) = a.stride, a.dilation, a.padding
        geometry = f"{sh}, {sw}, {top}, {left}, {dh}, {dw}"
        produced = w.shape[1] if kernel == "input_grad" else w.shape[0]
        narrow = "_narrow" if produced <= simd.lanes(n.dtype) else ""
        self.threaded = True
        return [f"{self.use(f'conv2d_{kernel}_{kt}{narrow}')}({', '.join(args)}, {geometry})"]

    def _emit_conv2d(self, n: Node, out: Buffer) -> list[str]:
        x, w = (self._src(s) for s in n.src)
        call = self._conv_call("forward", n, n.arg, [x, w, out.name], n.src[1])
        if call is not None:
            return call
        shapes = (n.src[0].shape, n.shape, n.src[1].shape)
        body = [f"{out.name}[nb, oc, oy, ox] += wv * {x}[nb, ic, iy, ix]"]
        tap = [f"wv = {w}[oc, icl, kp, kq]"]
        return self._zero_out(out) + self._conv_nest(n.arg, shapes, body, tap)

    def _emit_conv2d_input_grad(self, n: Node, out: Buffer) -> list[str]:
        # x̄[n,c,iy,ix] = Σ ct[n,o,oy,ox] · w[o,c,p,q]
        ct, w = (self._src(s) for s in n.src)
        a = n.arg[0]
        (dh, dw), ((top, _), (left, _)) = a.dilation, a.padding
        _, _, kh, kw = n.src[1].shape
        if top <= dh * (kh - 1) and left <= dw * (kw - 1):  # the kernel's transposed form
            call = self._conv_call("input_grad", n, a, [ct, w, out.name], n.src[1])
            if call is not None:
                return call
        shapes = (n.shape, n.src[0].shape, n.src[1].shape)
        body = [f"{out.name}[nb, ic, iy, ix] += wv * {ct}[nb, oc, oy, ox]"]
        tap = [f"wv = {w}[oc, icl, kp, kq]"]
        return self._zero_out(out) + self._conv_nest(a, shapes, body, tap)

    def _emit_conv2d_weight_grad(self, n: Node, out: Buffer) -> list[str]:
        # w̄[o,c,p,q] = Σ ct[n,o,oy,ox] · x[n,c,iy,ix]
        x, ct = (self._src(s) for s in n.src)
        a = n.arg[0]
        call = self._conv_call("weight_grad", n, a, [x, ct, out.name], n)
        if call is not None:
            return call
        shapes = (n.src[0].shape, n.src[1].shape, n.shape)
        body = [f"acc += {ct}[nb, oc, oy, ox] * {x}[nb, ic, iy, ix]"]
        before = [f"acc = {self._zero(n.dtype)}"]
        after = [f"{out.name}[oc, icl, kp, kq] += acc"]
        return self._zero_out(out) + self._conv_nest(a, shapes, body, before, after)

    def _pool_nest(self, a: Any, in_shape: Sequence[object], body: list[str]) -> list[str]:
        """Loops over the in-bounds taps (iy, ix) of output (oy, ox)'s window around ``body``."""
        h, w = in_shape[2:]
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = a.kernel, a.stride, a.dilation, a.padding
        # without padding every tap is in bounds (no ceil_mode): no test in the inner loops
        cols = [f"ix = {self._in('ox', 'kq', sw, dw, pw)}", *_guard(pw, f"0 <= ix < {w}", body)]
        taps = [
            f"iy = {self._in('oy', 'kp', sh, dh, ph)}",
            *_guard(ph, f"0 <= iy < {h}", _loops([kw], ["kq"], cols)),
        ]
        return _loops([kh], ["kp"], taps)

    def _emit_maxpool2d(self, n: Node, out: Buffer) -> list[str]:
        return self._maxpool(n, out, grad=False)

    def _emit_maxpool2d_grad(self, n: Node, out: Buffer) -> list[str]:
        return self._maxpool(n, out, grad=True)

    def _maxpool(self, n: Node, out: Buffer, grad: bool) -> list[str]:
        """A window's maximum as PyTorch picks it: padding never, the first maximum on ties,
        a NaN over any number (and the last NaN of several). The gradient re-finds the
        arg-max tap ``hk`` and puts the cotangent there.

        Branch-free: each tap is a select, so nothing is mispredicted and the forward loops
        vectorise. With branches, the tutorial CNN's first pooling gradient (random data: a
        mispredicted branch per window or so) took 1.5 ms, selects 0.6 ms (still scalar).
        Windows that tile the input (stride = kernel, no padding or dilation) write each input
        entry once, the cotangent or zero; others (overlapping windows may pick the same
        entry) add into a zeroed gradient."""
        x = self._src(n.src[0])
        a = n.arg
        (kh, kw), (sh, sw), (dh, dw), (ph, pw) = a.kernel, a.stride, a.dilation, a.padding
        tap = "kp" if kw == 1 else f"kp * {kw} + kq"  # the flat index of tap (kp, kq)
        pick = [f"v = {x}[nb, c, iy, ix]"]
        if not any(a.padding):  # the window's first tap is in bounds: start from it
            y0, x0 = ("oy" if sh == 1 else f"oy * {sh}"), ("ox" if sw == 1 else f"ox * {sw}")
            start = [f"best = {x}[nb, c, {y0}, {x0}]"]
            pick.append("take = (v > best) | (v != v)")
        else:
            ninf = "f32(-np.inf)" if _DT.get(n.dtype) == "f32" else "-np.inf"
            start = [f"best = {ninf}", "hit = False"]
            pick += ["take = (v > best) | (v != v) | (not hit)", "hit = True"]
        pick.append("best = v if take else best")
        if grad:
            start.append("hk = 0")
            pick.append(f"hk = {tap} if take else hk")
        window = [*start, *self._pool_nest(a, n.src[0].shape, pick)]
        if not grad:
            window.append(f"{out.name}[nb, c, oy, ox] = best")
            return _loops(n.shape, ["nb", "c", "oy", "ox"], window)
        ct, zero = self._src(n.src[1]), self._zero(n.dtype)
        window.append(f"gv = {ct}[nb, c, oy, ox]")
        h, w = n.shape[2:]
        if (sh, sw) == (kh, kw) and (dh, dw) == (1, 1) and not any(a.padding):
            put = [
                f"{out.name}[nb, c, {self._in('oy', 'kp', sh, 1, 0)}, "
                f"{self._in('ox', 'kq', sw, 1, 0)}] = gv if hk == {tap} else {zero}"
            ]
            window += _loops([kh, kw], ["kp", "kq"], put)
            oh, ow = n.src[1].shape[2:]
            covered = oh * kh == h and ow * kw == w
            loops = _loops(n.src[1].shape, ["nb", "c", "oy", "ox"], window)
            return loops if covered else self._zero_out(out) + loops
        window += [
            f"hy = {self._in('oy', f'(hk // {kw})', sh, dh, ph)}",
            f"hx = {self._in('ox', f'(hk % {kw})', sw, dw, pw)}",
            f"{out.name}[nb, c, hy, hx] += gv",
        ]
        return self._zero_out(out) + _loops(n.src[1].shape, ["nb", "c", "oy", "ox"], window)

    def _emit_avgpool2d(self, n: Node, out: Buffer) -> list[str]:
        x = self._src(n.src[0])
        a = n.arg
        cnt = a.divisor is None and not a.count_include_pad
        body = [f"acc += {x}[nb, c, iy, ix]", *(["cnt += 1"] if cnt else [])]
        window = [
            f"acc = {self._zero(n.dtype)}",
            *(["cnt = 0"] if cnt else []),
            *self._pool_nest(a, n.src[0].shape, body),
            f"{out.name}[nb, c, oy, ox] = acc / {self._divisor(a, n.dtype)}",
        ]
        return _loops(n.shape, ["nb", "c", "oy", "ox"], window)

    def _emit_avgpool2d_grad(self, n: Node, out: Buffer) -> list[str]:
        ct = self._src(n.src[0])
        a, _ = n.arg
        cnt = a.divisor is None and not a.count_include_pad
        window = [
            *(["cnt = 0", *self._pool_nest(a, n.shape, ["cnt += 1"])] if cnt else []),
            f"v = {ct}[nb, c, oy, ox] / {self._divisor(a, n.dtype)}",
            *self._pool_nest(a, n.shape, [f"{out.name}[nb, c, iy, ix] += v"]),
        ]
        return self._zero_out(out) + _loops(n.src[0].shape, ["nb", "c", "oy", "ox"], window)

    @staticmethod
    def _divisor(a: Any, dtype: np.dtype) -> str:
        """What a window's sum is divided by (PyTorch's divisor_override, count_include_pad)."""
        if a.divisor is not None:
            div = str(a.divisor)
        elif a.count_include_pad:
            div = str(a.kernel[0] * a.kernel[1])
        else:
            div = "cnt"
        return f"f32({div})" if _DT.get(dtype) == "f32" else f"f64({div})"

    def update(self, u: Update, names: dict[str, str], title: str = "") -> list[str]:
        """The optimizer step of one parameter: new p and state from p, g, state, hypers, t."""
        p = u.param
        idx = list(LOOP_VARS[: len(p.shape)])
        sub = {P: self.sym(at(p, idx)), G: self.sym(at(u.grad, idx))}
        for s, buf in u.state.items():
            sub[sympy.Symbol(s, real=True)] = self.sym(at(buf, idx))
        hyper = {sympy.Symbol(h, real=True): sympy.Symbol(names[h], real=True) for h in u.hyper}
        sub.update(hyper)
        targets = [at(p, idx)] + [at(u.state[s], idx) for s in u.new_state]
        exprs = [e.xreplace(sub) for e in (u.new_p, *u.new_state.values())]
        pre, body = self.assign(targets, exprs, p.dtype)
        # per entry: p, g, the state and the hyperparameters are numbers here
        rule = "; ".join(
            f"{k} ← {text(v, hadamard=False)}" for k, v in [("p", u.new_p), *u.new_state.items()]
        )
        loops = _loops(p.shape, idx, body)
        n = sympy.sympify(numel(p.shape))
        if n.is_Number and int(n) >= PARALLEL_UPDATE:  # memory-bound: use both cores
            loops[0] = loops[0].replace(" in range(", f" in {self.use('prange')}(", 1)
            self.parallel = True
        self.headings.append((f"update {title or p.name}: {rule}", False))
        return [f"# {self.headings[-1][0]}", *pre, *loops]


def _guard(pad: int, test: str, body: list[str]) -> list[str]:
    """``body`` under ``if test:``, or as is where there is no padding to step into."""
    return [f"if {test}:", *indent(body)] if pad else body


def _reshape_index(src: Sequence[object], dst: Sequence[object], idx: Sequence[str]) -> list[str]:
    """Index into ``src`` for index ``idx`` of its reshape to ``dst`` (C order).

    The axes of both shapes are split into the fewest runs of equal size (``[B, 64, 128]`` to
    ``[64 B, 128]``: (B, 64) with (64 B), then 128 with 128), so that each source index comes
    from its own run's few indices: merged axes are a sum, a split axis' digits a division and
    a remainder, and an axis kept as it is, its own index. Through the whole tensor's flat
    index instead, each copy of a reshaped tensor did two divisions a run an element."""
    axes = [(d, i) for d, i in zip(dst, idx) if d != 1]  # a size-1 axis's index is 0
    big = [k for k, d in enumerate(src) if d != 1]
    out = ["0"] * len(src)
    runs = _runs([src[k] for k in big], [d for d, _ in axes])
    if runs is None:  # sizes that do not split into runs here: through the flat index
        return _flat_reshape_index(src, dst, idx)
    for s_run, d_run in runs:
        flat = _flat_index(axes[d_run.start : d_run.stop])  # the run's
        inner = "1"
        for pos in reversed(s_run):
            k, d = big[pos], src[big[pos]]
            if len(s_run) == 1:
                out[k] = flat
            elif pos == s_run.start:  # the outermost digit: no remainder needed
                out[k] = f"({flat}) // ({inner})"
            elif inner == "1":
                out[k] = f"({flat}) % ({dim_code(d)})"
            else:
                out[k] = f"(({flat}) // ({inner})) % ({dim_code(d)})"
            inner = dim_code(d) if inner == "1" else f"{inner}*{dim_code(d)}"
    return out


def _flat_index(axes: Sequence[tuple[object, str]]) -> str:
    """The C-order flat index of ``(size, index)`` axes: ``i*64 + j``."""
    terms, stride = [], "1"
    for d, i in reversed(axes):
        terms.append(i if stride == "1" else f"{_paren(i)}*{stride}")
        stride = dim_code(d) if stride == "1" else f"{stride}*{dim_code(d)}"
    return " + ".join(reversed(terms))


def _runs(src: Sequence[object], dst: Sequence[object]) -> list[tuple[range, range]] | None:
    """The shortest runs of axes of ``src`` and ``dst`` (no size-1 axes) with equal sizes, in
    order; None where a size of one does not divide the other's (symbolic sizes included)."""
    runs: list[tuple[range, range]] = []
    i = j = 0
    while i < len(src) and j < len(dst):
        i0, j0 = i, j
        ps, pd = sympy.sympify(src[i]), sympy.sympify(dst[j])
        i, j = i + 1, j + 1
        while (ratio := sympy.cancel(pd / ps)) != 1:
            num, den = sympy.fraction(ratio)
            if den == 1 and i < len(src):  # the source run is the smaller: one more axis
                ps *= sympy.sympify(src[i])
                i += 1
            elif num == 1 and j < len(dst):
                pd *= sympy.sympify(dst[j])
                j += 1
            else:
                return None
        runs.append((range(i0, i), range(j0, j)))
    return runs if i == len(src) and j == len(dst) else None


def _flat_reshape_index(
    src: Sequence[object], dst: Sequence[object], idx: Sequence[str]
) -> list[str]:
    """``_reshape_index`` through the flat index of the whole tensor."""
    flat = f"({_flat_index(list(zip(dst, idx)))})"
    out, stride = [], "1"
    for d in reversed(src):
        out.append(
            f"({flat} // ({stride})) % ({dim_code(d)})"
            if stride != "1"
            else f"{flat} % ({dim_code(d)})"
        )
        stride = f"{stride}*{dim_code(d)}" if stride != "1" else dim_code(d)
    return list(reversed(out))


def _loops(shape: Sequence[object], idx: Sequence[str], body: list[str]) -> list[str]:
    """Nested loops over ``shape`` with index variables ``idx`` (an index "0" is no loop)."""
    lines: list[str] = []
    depth = 0
    for d, v in zip(shape, idx):
        if v != "0":
            lines.append("    " * depth + f"for {v} in range({dim_code(d)}):")
            depth += 1
    return lines + ["    " * depth + b for b in body]


def _index(shape: Sequence[object]) -> list[str]:
    """Loop variables for ``shape``: "0" for an axis of size 1, which needs no loop."""
    return ["0" if d == 1 else v for d, v in zip(shape, LOOP_VARS)]


def _describe(n: Node, sched: Schedule) -> str:
    """The node as a formula over the names of its sources, for the kernel's comment."""

    def name(s: Node) -> str:
        if s in sched.buffers:
            return sched.buffers[s].name
        show = lowering(s).show
        if show is None:
            return f"{s.op}({', '.join(name(c) for c in s.src)})"
        return show(s, name)

    return lowering(n).describe(n, name)


# Describing rules: ``describe(n, name)`` is the comment over node n's kernel, ``show(n,
# name)`` names a node read through (a view, an inlined formula) inside another's; ``name(s)``
# gives a source's name.
Namer = Callable[[Node], str]


def text(expr: sympy.Expr, hadamard: bool = True) -> str:
    """``expr`` as the formulas print it (``symbp.formulas.text``: ``δ2·W2``, ``[z1 > 0]``,
    ``Σ_batch``), for a comment; ``hadamard``: products of tensors print as ⊙."""
    # the formulas' printer, a tool above the compiler: imported when a program is written
    from symbp.formulas.text import to_text

    return to_text(expr, hadamard)


def _sym(code: str) -> sympy.Symbol:
    """A shown name (``h``, ``onehot(y)``) as a symbol of a comment's formula."""
    return sympy.Symbol(code, real=True)


def _formula(n: Node, name: Namer) -> str:
    return text(n.arg.expr.xreplace({xsym(i): _sym(name(s)) for i, s in enumerate(n.src)}))


def _product(n: Node, name: Namer) -> str:
    from symbp.formulas.vocabulary import Dot

    return text(Dot(*(_sym(name(s)) for s in n.src)))


def _copy_of(n: Node, name: Namer) -> str:  # a view stored as an output, or an input copied
    return f"copy of {name(n)}"


def _reduction(n: Node, name: Namer) -> str:
    from symbp.formulas.vocabulary import MaxOver, SumOver

    axes, keepdim = n.arg
    x = n.src[0]
    whole = len(axes) == x.ndim
    args = (_sym(name(x)), sympy.Tuple(*axes), sympy.sympify(bool(keepdim)))
    if n.op == "max":
        return text(MaxOver(*args, sympy.sympify(whole)))
    batch = tuple(axes) == (0,) and x.shape[0] == B  # Σ_batch, Σ_dim1, Σ (all)
    return text(SumOver(*args, 2 if whole else 1 if batch else 0))


def _window(n: Node, name: Namer) -> str:
    srcs = ", ".join(name(s) for s in n.src)
    return f"{n.op}({srcs}) {OPS[n.op].show_arg(n, [])}"


@dataclass(frozen=True)
class Lowering:
    """How the emitter writes the nodes of one op: its row of ``LOWERING``.

    ``kernel(emitter, n, out)``: the lines computing node ``n`` into its buffer ``out`` (a
    view's: a copy loop, reading through it). ``describe``: the comment over that kernel.
    ``read(emitter, n, idx)``: ``n``'s value at loop index ``idx`` as a SymPy expression of
    buffer reads, for a node the schedule leaves unstored (a view, a formula inlined into a
    reduction); None: the op is always stored. ``show``: how such a node is named inside
    another's comment (None: ``op(sources)``). ``batch_parallel``: its loops write only
    their own sample, so a big enough one runs its batch loop on all cores. ``indexes(n)``:
    (the integer source whose entries index something, that size), for an op reading labels
    (a one-hot's, below its classes): the training loop checks a data batch's labels against
    it before any update, since an index out of range would silently pick nothing.
    """

    kernel: Callable[[Emitter, Node, Buffer], list[str]] | NotApplicable
    describe: Callable[[Node, Namer], str]
    read: Callable[[Emitter, Node, Sequence[str]], sympy.Expr] | None = None
    show: Callable[[Node, Namer], str] | None = None
    batch_parallel: bool = False
    indexes: Callable[[Node], tuple[Node, Any]] | None = None


def _view(
    read: Callable[[Emitter, Node, Sequence[str]], sympy.Expr],
    show: Callable[[Node, Namer], str] | None = None,
    indexes: Callable[[Node], tuple[Node, Any]] | None = None,
) -> Lowering:
    """A view's row: read through by its consumers; stored (an output), a copy loop."""
    return Lowering(Emitter.elementwise, _copy_of, read, show, indexes=indexes)


def _window_op(kernel: Callable[[Emitter, Node, Buffer], list[str]], pool: bool) -> Lowering:
    return Lowering(kernel, _window, batch_parallel=pool)  # a pooling's samples: disjoint


def _same(n: Node, name: Namer) -> str:
    return name(n.src[0])


# -- issue 12 . math (rows of this family go below this line)
#
# -- issue 12 . logic (rows of this family go below this line)
#
# -- issue 12 . indexing (rows of this family go below this line)
#
# A slice is a view: its readers index x at start + step·i. A gather (``take``) is a loop over
# its output reading x at the index arrays' entries, a scatter-add (``put_add``) a loop over
# its values adding into a zeroed output, a slice's gradient (``slice_grad``) a loop writing
# the box of a zeroed output. Each index is checked before it is used: out of range raises
# IndexError naming the op, the dim, the index and the size, in the forward or backward pass,
# so before any update (Numba's dynamic exceptions; ``boundscheck`` is off).


def _offset(start: object, step: int, i: str) -> str:
    """The source index of index ``i`` of a slice: step·i + start (``i`` may be another
    view's expression, so it is bracketed before it is multiplied)."""
    if i == "0":
        return dim_code(start)
    term = i if step == 1 and start == 0 else _paren(i) if step == 1 else f"{step}*{_paren(i)}"
    return term if start == 0 else f"{term} + {dim_code(start)}"


def _read_slice(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    return em.read(n.src[0], [_offset(a.start, a.step, i) for a, i in zip(n.arg, idx)])


def _read_iota(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    i = idx[n.arg[1]]
    return sympy.Integer(0) if i == "0" else em.sym(i)


def _index_lines(em: Emitter, n: Node, idx: Sequence[Node], at_idx: Sequence[str],
                 sizes: Sequence[object]) -> tuple[list[str], list[str]]:  # fmt: skip
    """(lines reading and checking the index arrays at ``at_idx``, the index variables)."""
    a = n.arg
    lines, names = [], []
    for m, (s, size) in enumerate(zip(idx, sizes)):
        raw, g = f"ir{m}", f"ix{m}"
        lines.append(f"{raw} = {em.code(em.read(s, at_idx), s.dtype)}")
        lines.append(f"{g} = {raw} + {dim_code(size)} if {raw} < 0 else {raw}" if a.wrap else
                     f"{g} = {raw}")  # fmt: skip
        # the op's name as a literal (a layer's name carries quotes), and the position in the
        # index array that holds the bad index (issue 17: Embedding names it)
        position = " + ', ' + ".join(f"str({i})" for i in at_idx) or "''"
        message = (
            f"{a.what + ': index '!r} + str({raw}) + ' is out of bounds for dimension "
            f"{a.axis + m} with size ' + str({dim_code(size)}) + ' (at position [' + "
            f"{position} + '] of the indices)'"
        )
        lines += [f"if {g} < 0 or {g} >= {dim_code(size)}:", f"    raise IndexError({message})"]
        names.append(g)
    return lines, names


def _emit_take(em: Emitter, n: Node, out: Buffer) -> list[str]:
    x, *idx = n.src
    a = n.arg
    oidx = _index(n.shape)
    r = idx[0].ndim
    inner = oidx[a.axis : a.axis + r]
    checks, names = _index_lines(em, n, idx, inner, x.shape[a.axis : a.axis + len(idx)])
    xidx = [*oidx[: a.axis], *names, *oidx[a.axis + r :]]
    pre, body = em.assign([at(out, oidx)], [em.read(x, xidx)], n.dtype)
    return pre + _nest(n.shape, oidx, a.axis + r, checks, body)


def _nest(
    shape: Sequence[object], idx: Sequence[str], k: int, checks: list[str], body: list[str]
) -> list[str]:
    """Loops over ``shape`` with the index reads and checks after the first ``k`` axes (the
    index arrays' own): once per index, not once per entry of a gathered row."""
    return _loops(shape[:k], idx[:k], checks + _loops(shape[k:], idx[k:], body))


def _emit_put_add(em: Emitter, n: Node, out: Buffer) -> list[str]:
    ct, *idx = n.src
    a = n.arg
    cidx = _index(ct.shape)
    r = idx[0].ndim
    inner = cidx[a.axis : a.axis + r]
    checks, names = _index_lines(em, n, idx, inner, n.shape[a.axis : a.axis + len(idx)])
    target = at(out, [*cidx[: a.axis], *names, *cidx[a.axis + r :]])
    pre, body = em.assign([target], [em.read(ct, cidx)], n.dtype, op="+=")
    return em._zero_out(out) + pre + _nest(ct.shape, cidx, a.axis + r, checks, body)


def _emit_slice_grad(em: Emitter, n: Node, out: Buffer) -> list[str]:
    (ct,) = n.src
    box, _ = n.arg
    cidx = _index(ct.shape)
    target = at(out, [_offset(a.start, a.step, i) for a, i in zip(box, cidx)])
    pre, body = em.assign([target], [em.read(ct, cidx)], n.dtype)
    return em._zero_out(out) + pre + _loops(ct.shape, cidx, body)


def copy_lines(dst: Buffer, src: Buffer) -> list[str]:
    """``dst[...] = src`` (same shapes) as loops. Numba compiles an array-to-array slice
    assignment with a shape check whose error message formats the shapes: about 1 s of
    compile per program for that machinery alone, where a loop costs nothing."""
    idx = _index(dst.shape)
    return _loops(dst.shape, idx, [f"{at(dst, idx)} = {at(src, idx)}"])


def allreduce_call(
    kernel: str, array: str, start: object, count: object, failed: int | str
) -> list[str]:
    """Sum ``array[start:start + count]`` over the ranks in place with ``kernel``
    (``symbp.distributed.kernel``); MPI's error code stops the program with ``failed``."""
    return [
        f"rc = {kernel}({array}, {start}, {count}, ints)",
        "if rc != 0:",
        "    ints[0] = t",
        "    ints[2] = rc",
        f"    return {failed}",
    ]


def _emit_psum(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """The source copied into its buffer, then summed over the ranks in place. An adjoint
    sum weights this rank's cotangents by its share of the batch and divides the total by
    it again (``ops.AllReduce``; ``share`` > 0 here, ``program._distributed``)."""
    idx = _index(n.shape)
    weighted = em.collective is not None and n.arg == "adjoint"
    value = em.read(n.src[0], idx)
    pre, body = em.assign([at(out, idx)], [em.sym("share") * value if weighted else value],
                          n.dtype)  # fmt: skip
    lines = pre + _loops(n.shape, idx, body)
    if em.collective is None:
        return lines
    kernel, failed = em.collective
    lines += allreduce_call(kernel, out.name, 0, numel_code(n.shape), failed)
    if weighted:
        lines += _loops(n.shape, idx, [f"{at(out, idx)} /= share"])
    return lines


def _show_slice(n: Node, name: Namer) -> str:
    return name(n.src[0]) + OPS["slice"].show_arg(n, [])


def _show_take(n: Node, name: Namer) -> str:
    x, *idx = n.src
    lead = [":"] * n.arg.axis
    return f"{name(x)}[{', '.join([*lead, *(name(i) for i in idx)])}]"


#
# -- issue 12 . shaping (rows of this family go below this line)
# Joining and shaping: flip, roll and pad are views, read through at transformed
# indices (a reflected pad reads x[n−1−|n−1−|i−lo||], a constant one tests whether i falls in
# the border); cat writes each source's block into its buffer; pad_grad adds the cotangent of
# every padded position onto the entry it copied.


def _paren(i: str) -> str:
    """An index as an operand: ``i`` stays, ``j + 2`` gets brackets (an index may be another
    view's expression)."""
    return i if re.fullmatch(r"\w+", i) else f"({i})"


def _read_flip(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    (x,) = n.src
    src = [
        f"{dim_code(d)} - 1 - {_paren(i)}" if a in n.arg else i
        for a, (d, i) in enumerate(zip(x.shape, idx))
    ]
    return em.read(x, src)


def _read_roll(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    (x,) = n.src
    shifts = dict(n.arg)  # out[i] = x[(i - s) mod d], written (i + d - s) % d: never negative
    src = [
        f"({_paren(i)} + {x.shape[a] - shifts[a]}) % {x.shape[a]}" if a in shifts else i
        for a, i in enumerate(idx)
    ]
    return em.read(x, src)


def _pad_index(mode: str, i: str, lo: int, size: int) -> str:
    """The code of ``ops.pad_source_index``: the source entry padded position ``i`` copies."""
    j = f"{_paren(i)} - {lo}" if lo else i
    if mode == "reflect":
        return f"{size - 1} - abs({size - 1} - abs({j}))"
    if mode == "circular":
        return f"({_paren(i)} + {size - lo}) % {size}"
    return f"min(max({j}, 0), {size - 1})"  # replicate, and constant's clamped read


def _read_pad(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    (x,) = n.src
    widths, mode, value = n.arg
    src = [
        _pad_index(mode, i, lo, d) if (lo or hi) else i
        for i, (lo, hi), d in zip(idx, widths, x.shape)
    ]
    inner = em.read(x, src)
    if mode != "constant":
        return inner
    # the border is the value; inside, the source (its index clamped, so that the read stays
    # in bounds even where a shared subexpression hoists it out of the test)
    inside = [
        sympy.And(em.sym(_paren(i)) >= lo, em.sym(_paren(i)) < lo + d)
        for i, (lo, hi), d in zip(idx, widths, x.shape)
        if lo or hi
    ]
    return sympy.Piecewise((inner, sympy.And(*inside)), (to_expr(value), True))


def _emit_cat(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """Each source's loop nest writes its block of the output."""
    lines: list[str] = []
    start: Any = 0
    for x in n.src:
        idx = _index(x.shape)
        oidx = list(idx)
        if start:
            oidx[n.arg] = f"{start} + {_paren(idx[n.arg])}"
        pre, body = em.assign([at(out, oidx)], [em.read(x, idx)], n.dtype)
        lines += pre + _loops(x.shape, idx, body)
        start += x.shape[n.arg]
    return lines


def _emit_pad_grad(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """Zero the source-shaped gradient, then add every padded position's cotangent onto the
    entry it copied (a border entry meets an inner one: +=)."""
    (ct,) = n.src
    widths, mode = n.arg
    idx = _index(ct.shape)
    target = [
        _pad_index(mode, i, lo, d) if (lo or hi) else i
        for i, (lo, hi), d in zip(idx, widths, n.shape)
    ]
    pre, body = em.assign([at(out, target)], [em.read(ct, idx)], n.dtype, op="+=")
    return em._zero_out(out) + pre + _loops(ct.shape, idx, body)


def _named(what: str) -> Callable[[Node, Namer], str]:
    """``what(source) [arg]``: a shaping node inside a comment."""
    return lambda n, name: f"{what}({name(n.src[0])}){OPS[n.op].show_arg(n, [])}"


def _shaping_view(
    read: Callable[[Emitter, Node, Sequence[str]], sympy.Expr], what: str
) -> Lowering:
    """A view's row (``_view``) whose stored copy's comment says what it copies."""
    show = _named(what)
    return Lowering(Emitter.elementwise, lambda n, name: f"copy of {show(n, name)}", read, show)


def _cat_describe(n: Node, name: Namer) -> str:
    return f"cat({', '.join(name(s) for s in n.src)}, dim={n.arg})"


# -- issue 12 . reductions (rows of this family go below this line)
#
# Kernels of the reductions that are ops of their own. Each loops over every axis but the one
# it runs along, and walks that axis in an inner loop written ``range(0, n)``: a scan carries
# state from entry to entry, so that loop must never become a ``prange`` (``_batch_parallel``
# turns only a top-level ``range(B)`` into one). Locals carry the output buffer's name, so
# kernels of different dtypes in one function never share a variable.


def _along(n: Node, x: Node, axis: int) -> tuple[list[str], list[object], list[str]]:
    """(x's loop indices, the other axes' sizes, their indices): loops over all but ``axis``."""
    idx = list(LOOP_VARS[: x.ndim])
    others = [a for a in range(x.ndim) if a != axis]
    return idx, [x.shape[a] for a in others], [idx[a] for a in others]


def _at_axis(idx: Sequence[str], axis: int, value: str) -> list[str]:
    return [value if a == axis else v for a, v in enumerate(idx)]


def _lit(dtype: np.dtype, value: float) -> str:
    """A literal of the kernel's dtype (an int for integer tensors)."""
    kt = _DT.get(dtype)
    if kt is None:
        return str(int(value))
    return f"f32({float(value)!r})" if kt == "f32" else repr(float(value))


def _emit_argidx(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """The first maximum (minimum) along the axis; a NaN wins and stays, as PyTorch."""
    (x,) = n.src
    axis, keepdim, largest = n.arg
    idx, sizes, outer = _along(n, x, axis)
    k, best, hit = idx[axis], f"{out.name}_best", f"{out.name}_hit"
    oidx = _at_axis(idx, axis, "0") if keepdim else outer
    first = em.code(em.read(x, _at_axis(idx, axis, "0")), x.dtype)
    v = em.code(em.read(x, idx), x.dtype)
    better = ">" if largest else "<"
    body = [
        f"{best} = {first}",
        f"{hit} = 0",
        f"for {k} in range(1, {dim_code(x.shape[axis])}):",
        f"    {out.name}_v = {v}",
        f"    if ({out.name}_v {better} {best} or {out.name}_v != {out.name}_v) "
        f"and {best} == {best}:",
        f"        {best} = {out.name}_v",
        f"        {hit} = {k}",
        f"{at(out, oidx)} = {hit}",
    ]
    return _loops(sizes, outer, body)


def _emit_cumarg(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """The index of the running maximum (minimum), the last of ties, as PyTorch's cummax."""
    (x,) = n.src
    axis, largest = n.arg
    idx, sizes, outer = _along(n, x, axis)
    k, best, hit, v = idx[axis], f"{out.name}_best", f"{out.name}_hit", f"{out.name}_v"
    better = ">=" if largest else "<="
    body = [
        f"{best} = {em.code(em.read(x, _at_axis(idx, axis, '0')), x.dtype)}",
        f"{hit} = 0",
        f"for {k} in range(0, {dim_code(x.shape[axis])}):",
        f"    {v} = {em.code(em.read(x, idx), x.dtype)}",
        f"    if ({v} {better} {best} or {v} != {v}) and {best} == {best}:",
        f"        {best} = {v}",
        f"        {hit} = {k}",
        f"    {at(out, idx)} = {hit}",
    ]
    return _loops(sizes, outer, body)


def _emit_argsort(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """Each row copied out, NumPy's stable argsort (mergesort), positions start..stop kept;
    descending sorts the negated row, which keeps equal entries in order, and then moves its
    NaNs (sorted last) to the front: NaN is the largest, as PyTorch."""
    (x,) = n.src
    axis, descending, start, stop = n.arg
    idx, sizes, outer = _along(n, x, axis)
    k, row, order = idx[axis], f"{out.name}_row", f"{out.name}_order"
    size = dim_code(x.shape[axis])
    npdt = {"f32": "np.float32", "f64": "np.float64"}.get(_DT.get(x.dtype, ""), "np.int64")
    v = em.code(em.read(x, idx), x.dtype)
    body = [
        f"{row} = np.empty({size}, {npdt})",
        f"for {k} in range(0, {size}):",
        f"    {row}[{k}] = {'-' if descending else ''}({v})",
        f'{order} = np.argsort({row}, kind="mergesort")',
    ]
    pick = f"{order}[{k} + {start}]"
    if descending and x.dtype.kind == "f":
        nans = f"{out.name}_nans"
        body += [f"{nans} = int(np.sum(np.isnan({row})))"]
        pick = f"{order}[({k} + {start} + {size} - {nans}) % {size}]"
    body += [f"for {k} in range(0, {stop - start}):", f"    {at(out, idx)} = {pick}"]
    return _loops(sizes, outer, body)


def _read_take_along(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    x, where = n.src
    j = em.code(em.read(where, idx), where.dtype)
    return em.read(x, _at_axis(idx, n.arg, f"({j})"))


def _emit_put_along(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """Zero, then add each cotangent entry at its index (repeated indices accumulate)."""
    ct, where = n.src
    axis, _ = n.arg
    idx = list(LOOP_VARS[: ct.ndim])
    j = f"{out.name}_j"
    body = [
        f"{j} = {em.code(em.read(where, idx), where.dtype)}",
        f"{at(out, _at_axis(idx, axis, j))} += {em.code(em.read(ct, idx), ct.dtype)}",
    ]
    lines: list[str] = []
    depth = 0
    for a, (d, v) in enumerate(zip(ct.shape, idx)):  # the indexed axis: never a prange
        lo = "0, " if a == axis else ""
        lines.append("    " * depth + f"for {v} in range({lo}{dim_code(d)}):")
        depth += 1
    return em._zero_out(out) + lines + ["    " * depth + b for b in body]


def _emit_prod(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """Ones, then every entry multiplied into its group's product (memory order)."""
    (x,) = n.src
    axes, keepdim = n.arg
    idx = _index(x.shape)
    oidx = (
        ["0" if a in axes else v for a, v in enumerate(idx)]
        if keepdim
        else [v for a, v in enumerate(idx) if a not in axes]
    )
    oall = _index(out.shape)
    one = _loops(out.shape, oall, [f"{at(out, oall)} = {_lit(n.dtype, 1)}"])
    pre, body = em.assign([at(out, oidx)], [em.read(x, idx)], n.dtype, op="*=")
    return one + pre + _loops(x.shape, idx, body)


def _emit_scan(em: Emitter, n: Node, out: Buffer, axis: int, reverse: bool, op: str) -> list[str]:
    (x,) = n.src
    idx, sizes, outer = _along(n, x, axis)
    k, acc, size = idx[axis], f"{out.name}_acc", dim_code(x.shape[axis])
    walk = [f"for {out.name}_s in range(0, {size}):"]
    walk.append(f"    {k} = {size} - 1 - {out.name}_s" if reverse else f"    {k} = {out.name}_s")
    body = [
        f"{acc} = {_lit(n.dtype, 1 if op == '*=' else 0)}",
        *walk,
        f"    {acc} {op} {em.code(em.read(x, idx), x.dtype)}",
        f"    {at(out, idx)} = {acc}",
    ]
    return _loops(sizes, outer, body)


def _emit_cumsum(em: Emitter, n: Node, out: Buffer) -> list[str]:
    return _emit_scan(em, n, out, n.arg[0], n.arg[1], "+=")


def _emit_cumprod(em: Emitter, n: Node, out: Buffer) -> list[str]:
    return _emit_scan(em, n, out, n.arg, False, "*=")


def _emit_cumprod_grad(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """x̄_i = Σ_{k≥i} ct_k · Π_{j≤k, j≠i} x_j by running products (``ops.cumprod_grad_numpy``):
    no division, so zeros in x are exact. O(n²) along the axis."""
    x, ct = n.src
    axis = n.arg
    idx, sizes, outer = _along(n, x, axis)
    i, size = idx[axis], dim_code(x.shape[axis])
    pre, run, acc, s = (f"{out.name}_{w}" for w in ("pre", "run", "acc", "s"))
    at_s = _at_axis(idx, axis, s)
    body = [
        f"{pre} = {_lit(n.dtype, 1)}",
        f"for {i} in range(0, {size}):",
        f"    {run} = {pre}",
        f"    {acc} = {_lit(n.dtype, 0)}",
        f"    for {s} in range({i}, {size}):",
        f"        if {s} > {i}:",
        f"            {run} *= {em.code(em.read(x, at_s), x.dtype)}",
        f"        {acc} += {em.code(em.read(ct, at_s), ct.dtype)} * {run}",
        f"    {at(out, idx)} = {acc}",
        f"    {pre} *= {em.code(em.read(x, idx), x.dtype)}",
    ]
    return _loops(sizes, outer, body)


def _along_op(n: Node, name: Namer) -> str:
    srcs = ", ".join(name(s) for s in n.src)
    return f"{n.op}({srcs}) {OPS[n.op].show_arg(n, [])}"


#
# -- issue 12 . linalg (rows of this family go below this line)
#
# A batched product is a loop over its batch axes around the 2-D product's loops, reading
# both operands through their views (a broadcast batch axis is read at index 0, a key's
# transpose through the transpose), so no operand is copied; the 2-D ``matmul`` keeps its
# BLAS and tiled paths. tril, diagonal and diag_embed are views: a select, or an index map.


def _ix(em: Emitter, code: str) -> sympy.Expr:
    """A loop index's code as a SymPy term (bracketed: it may be a sum or a modulo)."""
    if code == "0":
        return sympy.Integer(0)
    return em.sym(code if code.isidentifier() else f"({code})")


def _bmm_operand(em: Emitter, s: Node) -> tuple[Buffer, bool] | None:
    """The stored buffer behind a bmm operand, and whether it is read transposed (its last
    two axes swapped); None when the operand is another view (a broadcast, a permutation)."""
    while placement(s).operand == "same":
        s = s.src[0]
    if s in em.sched.buffers:
        return em.sched.buffers[s], False
    swap = (*range(s.ndim - 2), s.ndim - 1, s.ndim - 2)
    if s.op == "transpose" and s.arg == swap:
        inner = _bmm_operand(em, s.src[0])
        if inner is not None and not inner[1]:
            return inner[0], True
    return None


def _emit_bmm(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """out[b, i, j] = Σ_k x[b, i, k] y[b, k, j], one 2-D product per batch index b: np.dot
    on each batch's matrices when both are stored (or their transposes) and the product is
    big enough to pay for a BLAS call (``SMALL_MATMUL``), loops through the views otherwise."""
    x, y = n.src
    batch = n.shape[:-2]
    M, K, N = x.shape[-2], x.shape[-1], y.shape[-1]
    bidx = ["0" if d == 1 else f"b{a}" for a, d in enumerate(batch)]
    blas = [_bmm_operand(em, s) for s in n.src]
    flops = sympy.sympify(M) * K * N
    if n.dtype in _DT and blas[0] and blas[1] and flops.is_Number and int(flops) > SMALL_MATMUL:
        (a, ta), (b, tb) = blas[0], blas[1]
        at_b = ", ".join(bidx)
        em.calls_blas = True
        call = (
            f"np.dot({a.name}[{at_b}]{'.T' if ta else ''}, {b.name}[{at_b}]{'.T' if tb else ''}, "
            f"{out.name}[{at_b}])"
        )
        return _loops(batch, bidx, [call])
    i, j, k = ("0" if d == 1 else v for d, v in zip((M, N, K), ("i", "j", "k")))
    kt = _DT.get(n.dtype, "f64")
    zero = "f32(0.0)" if kt == "f32" else "0.0"

    def rd(s: Node, r: str, c: str) -> str:
        return em.code(em.read(s, [*bidx, r, c]), n.dtype)

    o = at(out, [*bidx, i, j])
    if y.op == "transpose" and y.arg[-2:] == (y.ndim - 1, y.ndim - 2):
        # y's rows are a stored tensor's columns (q @ kᵀ): inner products, contiguous in k
        body = [
            f"acc = {zero}",
            *_loops([K], [k], [f"acc += {rd(x, i, k)} * {rd(y, k, j)}"]),
            f"{o} = acc",
        ]
        nest = _loops([M, N], [i, j], body)
    else:  # axpy form: out[b, i, :] += x[b, i, k] * y[b, k, :], contiguous in j
        nest = _loops(
            [M],
            [i],
            [
                *_loops([N], [j], [f"{o} = {zero}"]),
                *_loops(
                    [K],
                    [k],
                    [f"xik = {rd(x, i, k)}", *_loops([N], [j], [f"{o} += xik * {rd(y, k, j)}"])],
                ),
            ],
        )
    return _loops(batch, bidx, nest)


def _read_tril(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    k, upper = n.arg
    gap = _ix(em, idx[-1]) - _ix(em, idx[-2])  # column − row
    keep = sympy.Ge(gap, k) if upper else sympy.Le(gap, k)
    if keep is sympy.true:
        return em.read(n.src[0], idx)
    if keep is sympy.false:
        return sympy.Integer(0)
    return sympy.Piecewise((em.read(n.src[0], idx), keep), (0, True))


def _read_diagonal(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    k, d1, d2 = n.arg
    rest, t = iter(idx[:-1]), idx[-1]

    def along(shift: int) -> str:
        return t if shift == 0 else str(shift) if t == "0" else f"{t} + {shift}"

    src = [
        along(max(-k, 0)) if a == d1 else along(max(k, 0)) if a == d2 else next(rest)
        for a in range(n.src[0].ndim)
    ]
    return em.read(n.src[0], src)


def _read_diag_embed(em: Emitter, n: Node, idx: Sequence[str]) -> sympy.Expr:
    k, d1, d2, _ = n.arg
    length = n.src[0].shape[-1]
    r, c = idx[d1], idx[d2]
    on = sympy.Eq(_ix(em, c) - _ix(em, r), k)
    if on is sympy.false:
        return sympy.Integer(0)
    pos = r if k >= 0 else c  # the entry's place along the diagonal, kept in bounds off it
    pos = "0" if length == 1 else pos if pos == "0" else f"min({pos}, {length - 1})"
    src = [v for a, v in enumerate(idx) if a not in (d1, d2)] + [pos]
    value = em.read(n.src[0], src)
    return value if on is sympy.true else sympy.Piecewise((value, on), (0, True))


def _tril_show(n: Node, name: Namer) -> str:
    return f"{'triu' if n.arg[1] else 'tril'}({name(n.src[0])}, {n.arg[0]})"


def _bmm_describe(n: Node, name: Namer) -> str:
    return f"{name(n.src[0])} @ {name(n.src[1])} (batched over {len(n.shape) - 2} axes)"


# One row per op of ops.OPS (tests/test_ops.py checks that none is missing).
# -- issue 17 . loops
# A loop node's body was scheduled on its own (``Schedule.bodies``): its kernels are emitted
# by an emitter of that schedule inside ``for step in range(T)``, after lines binding the
# body's step buffers to views of the node's sources and output at the step. The views are
# array slices (no copies); the body's intermediates are work buffers, reused every step.


def _at_step(buf: Buffer, step: str) -> str:
    """Step ``step`` of ``buf`` ``[T, ...]``: a view (a 1-element one of a ``[T]`` buffer)."""
    return f"{buf.name}[{step}]" if len(buf.shape) > 1 else f"{buf.name}[{step}:{step} + 1]"


def _carve_code(em: Emitter, src: str, start: object, shape: Sequence[object]) -> str:
    """A view of ``shape`` into the flat array ``src`` at ``start``, as the arenas carve."""
    if len(shape) > 1:
        dims = ", ".join(dim_code(d) for d in shape)
        return f"{em.use('carve')}({src}, {dim_code(start)}, ({dims}))"
    end = sympy.sympify(start) + sympy.Mul(*(sympy.sympify(d) for d in shape))
    return f"{src}[{dim_code(start)}:{dim_code(end)}]"


def _body_lines(em: Emitter, n: Node) -> list[str]:
    """The kernels of ``n``'s body, emitted in its schedule; what they use is the program's."""
    sub = Emitter(em.sched.bodies[n], em.invariant, em.mkl)
    # one list of library kernels and helpers, unique locals
    sub.kernels, sub.uses, sub._kid = em.kernels, em.uses, em._kid
    sub.headings = em.headings  # the body's loops in the program's schedule
    sub.row_offset, sub.collective = em.row_offset, em.collective
    sub.serial = em.serial or em.rows
    lines = [line for k in sub.sched.kernels for line in sub.kernel(k)]
    em.parallel |= sub.parallel
    em.threaded |= sub.threaded
    em.calls_blas |= sub.calls_blas
    return lines


def _step_buffers(em: Emitter, n: Node) -> tuple[list[Buffer], list[Buffer]]:
    """The body's step leaves' buffers and its outputs', in the order of ``n.arg``."""
    body = em.sched.bodies[n]
    return [body.buffers[leaf] for leaf in n.arg.steps], list(body.outputs.values())


def _as_function(em: Emitter, n: Node, out: Buffer, write: Callable[[], list[str]]) -> list[str]:
    """The call of a function computing loop node ``n`` into ``out`` with the lines ``write``
    gives, written once per loop body: the layers and directions of one shape (a 2-layer
    bidirectional GRU's four loops) share one function, so Numba compiles the body once. Its
    parameters are the buffers it touches, in an order equal bodies share (their schedules
    are the same), and B. A body with a collective (a psum: MPI's status, the step count) is
    written inline.

    A loop whose rows are apart (``loops.rows_apart``: each sample its own recurrence) runs
    as one such loop per thread over its block of rows, called in a ``prange``: the threads
    meet once for the whole sequence, where splitting each step's small product between them
    would make them meet at every step. Inside, ``B`` is the block's rows, ``B_all`` the
    batch's, and each buffer of rows a view of the block's."""
    body = em.sched.bodies[n]
    outer = [stored(s, em.sched).name for s in n.src] + [out.name]
    kernels = [k.out for k in body.all_kernels() if k.out.arena in ("work", "iwork")]
    inner = list(dict.fromkeys([*(b.name for b in kernels), *(v.name for v in body.all_views())]))
    inline = len(set(outer)) < len(outer) or any(
        k.node.op == "psum" for k in body.all_kernels()
    )  # a buffer twice would be two parameters of one name
    if inline:
        return write()
    rowed = [b for b in [*kernels, *body.all_views()] if b.shape[:1] == (B,)]
    apart = (
        not em.serial and rows_apart(n.arg) and len(rowed) == len(kernels) + len(body.all_views())
    )  # every buffer of the body is rows: none shared between the blocks
    params = [*outer, *inner, *(("B_all", "r0", "r1") if apart else ("B",))]
    key = (n.op, n.arg, tuple(b.shape for b in (stored(s, em.sched) for s in n.src)))
    name = em._shared.get(key)
    if name is None:
        name = em._shared[key] = em.sched.names.fresh(f"{n.op}_body")
        outer_parallel, em.parallel = em.parallel, False  # the function's own flag
        em.rows = apart
        lines = write()
        em.rows = False
        if apart:
            blocks = [f"{b} = {b}[r0:r1]" for b in dict.fromkeys(b.name for b in rowed)]
            lines = ["B = r1 - r0  # this thread's block of rows", *blocks, *lines]
        flags = "nogil=True, parallel=True)" if em.parallel else "nogil=True)"
        em.parallel = outer_parallel
        em.functions.append((name, "\n".join([
                f'@njit(cache=True, error_model="numpy", {flags}',
                f"def {name}({', '.join(params)}):",
                f'    """{_loop_describe(n, lambda s: stored(s, em.sched).name)}"""',
                *indent(lines),
            ])))  # fmt: skip
    if not apart:
        return [f"{name}({', '.join(params)})"]
    em.parallel = em.threaded = True  # (THREADS: the module starts the pool, program.POOL)
    nblocks, blk = em.sched.names.fresh("blocks"), em.sched.names.fresh("blk")
    bounds = [f"{blk} * B // {nblocks}", f"({blk} + 1) * B // {nblocks}"]
    args = ", ".join([*outer, *inner, "B", *bounds])
    return [
        f"{nblocks} = min(THREADS, B)",
        f"for {blk} in {em.use('prange')}({nblocks}):",
        f"    {name}({args})",
    ]


def _emit_loop(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """out[step] = body(out[step - 1] (h0 at step 0), xs[step], consts...); a loop storing
    values for its adjoint writes them after the carry, each step one flat block."""

    def write() -> list[str]:
        h0, xs = (stored(s, em.sched) for s in n.src[:2])
        (carry, x), outs = _step_buffers(em, n)
        head = _loop_head(em, str(n.shape[0]), carry, h0, out, [(x, xs)], outs)
        return [*head, *indent(_body_lines(em, n))]

    return _as_function(em, n, out, write)


def _loop_head(
    em: Emitter,
    bounds: str,
    carry: Buffer,
    h0: Buffer,
    saved: Buffer,
    at: list[tuple[Buffer, Buffer]],
    blocks: Sequence[Buffer],
) -> list[str]:
    """``for step in range(bounds):`` and the lines binding the body's buffers at the step:
    the carry before it (``h0`` at step 0, else the carry ``saved[step - 1]`` holds), each
    (buffer, source) of ``at`` to the source's view at the step, and ``blocks`` to the
    views of ``saved[step]`` (none: the carry is all it holds): the carry alone, or (a loop
    that stores values for its adjoint) the carry and the stored values, one after another
    in the step's flat row."""
    step = em.sched.names.fresh("step")
    shapes = [_all_rows(em, b.shape) for b in blocks] or [_all_rows(em, carry.shape)]
    rows = "[r0:r1]" if em.rows else ""

    def block(k: int, t: str) -> str:
        if len(shapes) == 1:
            return _at_step(saved, t) + rows
        start = sum((sympy.sympify(numel(s)) for s in shapes[:k]), sympy.Integer(0))
        return _carve_code(em, f"{saved.name}[{t}]", start, shapes[k]) + rows

    return [
        f"for {step} in range({bounds}):",
        f"    {carry.name} = {h0.name}{rows} if {step} == 0 else {block(0, f'{step} - 1')}",
        *(f"    {b.name} = {_at_step(src, step)}{rows}" for b, src in at),
        *(f"    {b.name} = {block(k, step)}" for k, b in enumerate(blocks)),
    ]


def _all_rows(em: Emitter, shape: Sequence[object]) -> tuple[object, ...]:
    """``shape`` in the whole batch's rows: inside a loop run by blocks of rows, ``B`` is the
    block's, ``B_all`` the batch's (what the outer buffers are laid out by)."""
    if not em.rows:
        return tuple(shape)
    return tuple(sympy.sympify(d).subs(B, B_ALL) for d in shape)


B_ALL = sympy.Symbol("B_all", positive=True, integer=True)


def _emit_loop_vjp(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """Backpropagation through time: for step = T-1 .. 0, the body's VJP at the saved carry
    (out[step - 1], h0 at step 0), its cotangent g (what step + 1 sent back, plus ct[step]),
    and what the forward loop stored at the step, if it did; it writes x's cotangent into
    its block of ``out``, adds each const's into its block (or stores what one product
    after the loop sums: ``Loop.sums``), and the carry's into the spare block, copied into
    g for the next step. g's block ends as h0's cotangent."""
    call = _as_function(em, n, out, lambda: _loop_vjp_lines(em, n, out))
    return [*call, *_sums_after(em, n, out)]


def _vjp_layout(em: Emitter, n: Node) -> list[tuple[object, tuple[object, ...]]]:
    """(start, shape) of each block of a ``scan_vjp``'s flat output: g, gx, each const's
    cotangent, the spare carry, then each value stored for the sums after the loop."""
    h0, xs, consts = n.src[0], n.src[1], n.src[4:]
    steps = xs.shape[0]
    stacks = [(steps, *v.shape) for v in stacked(n.arg)]
    blocks, start = [], sympy.Integer(0)
    for shape in (h0.shape, xs.shape, *(c.shape for c in consts), h0.shape, *stacks):
        shape = _all_rows(em, shape)
        blocks.append((start, shape))
        start = start + sympy.sympify(numel(shape))
    return blocks


def _loop_vjp_lines(em: Emitter, n: Node, out: Buffer) -> list[str]:
    h0, xs, fwd, ct = (stored(s, em.sched) for s in n.src[:4])
    steps, (d_carry, d_x, *rest) = _step_buffers(em, n)
    k = 4 + len(n.arg.consts)
    (carry, x, ct_t, g), accs, blocks = steps[:4], steps[4:k], steps[k:]
    gx = Buffer(em.sched.names.fresh(f"{out.name}_xs"), xs.shape, xs.dtype, "loop")
    sums = n.arg.sums or (None,) * len(accs)
    added: list[tuple[Buffer, Buffer]] = []  # (new sum, its accumulator)
    kept: list[Buffer] = []  # the outputs stored at each step
    for acc, how in zip(accs, sums):
        if how is None:
            added.append((rest.pop(0), acc))
        else:
            kept.extend(rest.pop(0) for _ in range(1 if how == "rows" else 2))
    stacks = [
        Buffer(em.sched.names.fresh(f"{out.name}_stack"), (xs.shape[0], *b.shape), b.dtype, "loop")
        for b in kept
    ]
    layout = _vjp_layout(em, n)
    rows = "[r0:r1]" if em.rows else ""
    views = [
        f"{b.name} = {_carve_code(em, out.name, start, shape)}{sub}"
        for b, (start, shape), sub in zip(
            [g, gx, *accs, d_carry, *stacks],
            layout,
            [rows, "", *("" for _ in accs), rows, *("" for _ in stacks)],
        )
    ]
    views += [f"{new.name} = {acc.name}" for new, acc in added]  # added in place
    zero = [line for b in (g, *(acc for _, acc in added)) for line in em._zero_out(b)]
    back = f"{n.src[1].shape[0] - 1}, -1, -1"
    at = [(x, xs), (ct_t, ct), (d_x, gx), *zip(kept, stacks)]
    return [
        *views,
        *zero,
        *_loop_head(em, back, carry, h0, fwd, at, blocks),
        *indent(_body_lines(em, n)),
        *indent(copy_lines(g, d_carry)),
    ]


def _sums_after(em: Emitter, n: Node, out: Buffer) -> list[str]:
    """The consts' cotangents summed after a ``scan_vjp``'s loop, over the rows of all its
    steps at once: a sum of the stored rows, or one product ``Aᵀ Y`` of the stored A and Y
    (T·B rows deep, where each step's would be B: the big, threaded kernel)."""
    sums = n.arg.sums
    if not any(sums):
        return []
    layout = _vjp_layout(em, n)
    consts = n.src[4:]
    steps = n.src[1].shape[0]
    kt = _DT.get(n.dtype, "f64")
    lines: list[str] = [f"# {out.name}: the consts' cotangents summed over the steps"]
    blocks = iter(zip(stacked(n.arg), layout[3 + len(consts) :]))
    for k, how in enumerate(sums):
        if how is None:
            continue
        start, shape = layout[2 + k]
        acc = Buffer(em.sched.names.fresh(f"{out.name}_acc"), tuple(shape), n.dtype, "work")
        lines.append(f"{acc.name} = {_carve_code(em, out.name, start, shape)}")
        flat = []
        for _ in range(1 if how == "rows" else 2):  # each stored value, its steps' rows
            v, (at_, _) = next(blocks)
            name = em.sched.names.fresh(f"{out.name}_rows")
            rows = (steps * v.shape[0], *v.shape[1:])
            lines.append(f"{name} = {_carve_code(em, out.name, at_, rows)}")
            flat.append((name, rows))
        if how == "product":
            (a, _), (y, _) = flat
            lines.append(em.large_product(kt, a, True, y, False, acc.name))
            continue
        a, rows = flat[0]
        idx = _index(shape)
        lines += em._zero_out(acc)
        add = f"{at(acc, idx)} += {a}[{', '.join(['r', *idx])}]"
        lines += _loops([rows[0], *shape], ["r", *idx], [add])
    return lines


def _block_rows(em: Emitter, bufs: Sequence[Buffer]) -> list[str]:
    """The subscript taking a thread's block of rows of each buffer (its axis of B), in a
    loop run by blocks; none elsewhere."""
    if not em.rows:
        return ["" for _ in bufs]
    return ["[r0:r1]" if b.shape[:1] == (B,) else "[:, r0:r1]" for b in bufs]


def _loop_describe(n: Node, name: Namer) -> str:
    srcs = ", ".join(name(s) for s in n.src)
    back = " back" if n.op == "scan_vjp" else ""
    return f"{n.op}({srcs}) over {n.src[1].shape[0]} steps{back}"


LOWERING: dict[str, Lowering] = {
    "input": Lowering(NotApplicable("a buffer given from outside, never computed"), _copy_of),
    "const": _view(Emitter._read_const, lambda n, name: str(n.arg)),
    "ew": Lowering(
        Emitter.elementwise,
        _formula,
        Emitter._read_ew,
        lambda n, name: "(" + _formula(n, name) + ")",
        batch_parallel=True,
    ),
    "cast": _view(Emitter._read_cast),
    "expand": _view(Emitter._read_expand, _same),
    "reshape": _view(Emitter._read_reshape, _same),
    "transpose": _view(Emitter._read_transpose, lambda n, name: name(n.src[0]) + "ᵀ"),
    "detach": _view(Emitter._read_detach, _same),
    "psum": Lowering(_emit_psum, lambda n, name: f"sum over ranks of {name(n.src[0])}"),
    "onehot": _view(
        Emitter._read_onehot,
        lambda n, name: f"onehot({name(n.src[0])})",
        indexes=lambda n: (n.src[0], n.arg[0]),  # labels < classes
    ),
    "sum": Lowering(Emitter._emit_sum, _reduction),
    "max": Lowering(Emitter._emit_max, _reduction),
    "matmul": Lowering(Emitter.matmul, _product),
    "bernoulli": Lowering(
        Emitter._emit_bernoulli,
        lambda n, name: f"bernoulli(seed={name(n.src[0])}, p={n.arg[0]})",
    ),
    "conv2d": _window_op(Emitter._emit_conv2d, pool=False),
    "conv2d_input_grad": _window_op(Emitter._emit_conv2d_input_grad, pool=False),
    "conv2d_weight_grad": _window_op(Emitter._emit_conv2d_weight_grad, pool=False),
    "maxpool2d": _window_op(Emitter._emit_maxpool2d, pool=True),
    "maxpool2d_grad": _window_op(Emitter._emit_maxpool2d_grad, pool=True),
    "avgpool2d": _window_op(Emitter._emit_avgpool2d, pool=True),
    "avgpool2d_grad": _window_op(Emitter._emit_avgpool2d_grad, pool=True),
    # -- issue 12 . math (rows of this family go below this line)
    #
    # -- issue 12 . logic (rows of this family go below this line)
    #
    # -- issue 12 . indexing (rows of this family go below this line)
    "slice": _view(_read_slice, _show_slice),
    "slice_grad": Lowering(
        _emit_slice_grad,
        lambda n, name: f"{name(n.src[0])} placed at {OPS['slice_grad'].show_arg(n, [])}",
    ),
    "take": Lowering(_emit_take, _show_take),
    "put_add": Lowering(
        _emit_put_add,
        lambda n, name: (
            f"scatter-add of {name(n.src[0])} at " + ", ".join(name(i) for i in n.src[1:])
        ),
    ),
    "iota": _view(_read_iota, lambda n, name: f"iota(axis={n.arg[1]})"),
    # -- issue 12 . shaping (rows of this family go below this line)
    # their loops write only their own sample (neither joins nor pads along the batch)
    "cat": Lowering(_emit_cat, _cat_describe, batch_parallel=True),
    "flip": _shaping_view(_read_flip, "flip"),
    "roll": _shaping_view(_read_roll, "roll"),
    "pad": _shaping_view(_read_pad, "pad"),
    "pad_grad": Lowering(_emit_pad_grad, _named("pad_grad"), batch_parallel=True),
    # -- issue 12 . reductions (rows of this family go below this line)
    "argidx": Lowering(_emit_argidx, _along_op, batch_parallel=True),
    "argsort": Lowering(_emit_argsort, _along_op, batch_parallel=True),
    "cumarg": Lowering(_emit_cumarg, _along_op, batch_parallel=True),
    "take_along": _view(_read_take_along, lambda n, name: f"{name(n.src[0])}[{name(n.src[1])}]"),
    "put_along": Lowering(_emit_put_along, _along_op, batch_parallel=True),
    "prod": Lowering(_emit_prod, _reduction, batch_parallel=True),
    "cumsum": Lowering(_emit_cumsum, _along_op, batch_parallel=True),
    "cumprod": Lowering(_emit_cumprod, _along_op, batch_parallel=True),
    "cumprod_grad": Lowering(_emit_cumprod_grad, _along_op, batch_parallel=True),
    #
    # -- issue 12 . linalg (rows of this family go below this line)
    #
    "bmm": Lowering(_emit_bmm, _bmm_describe, batch_parallel=True),
    "tril": _view(_read_tril, _tril_show),
    "diagonal": _view(_read_diagonal, lambda n, name: f"diagonal({name(n.src[0])})"),
    "diag_embed": _view(_read_diag_embed, lambda n, name: f"diag_embed({name(n.src[0])})"),
    # -- issue 17 . loops
    "scan": Lowering(_emit_loop, _loop_describe),
    "scan_vjp": Lowering(_emit_loop_vjp, _loop_describe),
}


def lowering(n: Node) -> Lowering:
    """The emitting rule of ``n``'s op; an op without a row is named in the error."""
    rule = LOWERING.get(n.op)
    if rule is None:
        raise LoweringError(f"the Numba backend has no lowering rule for op '{n.op}'")
    return rule


__all__ = [
    "LOWERING",
    "SMALL_MATMUL",
    "Emitter",
    "Lowering",
    "allreduce_call",
    "at",
    "copy_lines",
    "dim_code",
    "lowering",
    "numel_code",
]
