"""``symbp.compile``: a model, its loss and its optimizer as one compiled training program.

>>> import numpy as np, symbp
>>> from symbp import nn
>>> net = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 2), nn.Sigmoid())
>>> model = symbp.compile(net, nn.MSELoss(), symbp.optim.SGD(net.parameters(), lr=0.5))
>>> x = np.array([[0.05, 0.10]], np.float32); y = np.array([[0.01, 0.99]], np.float32)
>>> loss = model.step(x, y)  # forward, backward and update in one compiled call
>>> history = model.fit(x, y, epochs=100, batch_size=1)  # 100 epochs, one compiled call

The program is built on the first ``step``/``fit``/``predict`` call, for the feature shape and
dtype of that batch (the batch size stays a runtime value) by ``symbp.pipeline``: trace ->
derive -> simplify -> store for backward -> lower -> load -> Numba, or, on a disk-cache hit
(``symbp.compiler.cache``), trace -> load.

After ``step`` every Parameter's ``.data`` holds the new values and ``.grad`` the gradient, as
after PyTorch's ``zero_grad(); loss.backward(); opt.step()``; the optimizer's ``state`` holds
its buffers, so ``state_dict()``/``load_state_dict()`` work as usual, and batch norm's running
statistics have moved as PyTorch's would. (``.data``, ``.grad``, the state and the running
statistics are views into the compiled program's memory: assigning new arrays is fine, they
are copied in before the next call.) Dropout masks are drawn per step from (``fit``'s seed, or
one drawn when the program is built, and the step count): see ``functional.dropout``.
"""

from __future__ import annotations

import os
import secrets
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from symbp.api import trace
from symbp.compiler import runtime
from symbp.compiler.ir import ShapeError
from symbp.compiler.lower.program import CHECK_FINITE, Mode, Status
from symbp.nn.conv import StateUpdate, mode_dependent
from symbp.nn.module import Module
from symbp.pipeline import NUMBA, Program, compile_predict, compile_train, trace_inference
from symbp.progress import Stages
from symbp.tensor import Parameter, Tensor

_NO_ORDER = np.empty(0, np.int64)
_STEP = Mode.GRADS | Mode.UPDATE
_OPT_OUT = "pass check_finite=False to use it as it is"


def _array(a: Any, what: str) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.numpy()
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    return a


def _int_arg(where: str, name: str, value: Any, low: int) -> int:
    """``value`` as an int of at least ``low``, or an error naming the argument: every count
    and size an entry point takes goes through here (1.5 epochs, a batch of 0 rows)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an integer >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{where}: {name} must be >= {low}, got {value}")
    return int(value)


def _nonfinite_data_error(where: str, what: str, a: np.ndarray, row: int) -> ValueError:
    """The error for NaN or Inf data: the entry point, the array, its first bad row."""
    bad = ~np.isfinite(a[row])
    col = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    at = f" at [{', '.join(map(str, (row, *col)))}]" if col else ""
    return ValueError(
        f"{where}: {what} have a non-finite value ({a[(row, *col)]}) in row {row}{at}; "
        f"nothing was computed or updated: clean the data, or {_OPT_OUT}"
    )


def _check_finite_data(where: str, what: str, a: np.ndarray) -> None:
    """Refuse NaN or Inf in a whole data set (``fit``, ``evaluate``, ``predict``), up front:
    one vectorised pass. ``step`` checks its batch inside the compiled code instead."""
    if a.dtype.kind == "f" and a.size and not np.isfinite(a).all():
        rows = ~np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        raise _nonfinite_data_error(where, what, a, int(np.flatnonzero(rows)[0]))


def _batched(where: str, what: str, a: np.ndarray) -> None:
    """Data come in rows: a 0-d array is a clear error, before tracing slices a row off it."""
    if a.ndim == 0:
        raise ShapeError(
            f"{where}: {what} must have a batch dimension first ([N, ...]), got a 0-d array "
            f"({a!r}): pass np.atleast_1d(...) or a batch of rows"
        )


def _has_rows(where: str, x: np.ndarray) -> None:
    """A loss, a gradient or an update of no data is not defined (a mean over 0 rows)."""
    if len(x) == 0:
        raise ValueError(f"{where}: the batch has 0 rows: it needs at least one sample")


def _shape_str(shape: Sequence[Any]) -> str:
    return "[" + ", ".join("B" if d is None else str(d) for d in shape) + "]"


class _Program:
    """A loaded training program bound to its Parameters, optimizer and memory."""

    def __init__(self, model: CompiledModel, program: Program):
        self.model, self.mod, self.key = model, program.module, program.key
        self.program = program  # how it was made: its stages, source, spec and schedule
        self.spec: dict[str, Any] = program.spec
        self.source: str = program.source
        self.blas = _calls_blas(program.module)
        params: list[Parameter] = list(program.args)
        buffers = program.buffers
        self.dtype = np.dtype(self.spec["dtype"])
        self.params = params
        self.W = np.zeros(self.spec["w_size"], self.dtype)
        self.views, self.grads, self.states = [], [], []
        for p, ps in zip(params, self.spec["params"]):
            shape = tuple(ps["shape"])
            n = int(np.prod(shape, dtype=np.int64))

            def view(off: int, n: int = n, shape: tuple = shape) -> np.ndarray:
                return self.W[off : off + n].reshape(shape)

            self.views.append(view(ps["offset"]))
            self.grads.append(None if ps["grad"] is None else view(ps["grad"]))
            self.states.append({s: view(off) for s, off in ps["state"].items()})
            self.views[-1][...] = p._data
        self._bind_model_state(buffers)
        self.arenas = runtime.Arenas(self.spec, self.dtype, 1)
        self.hyper = np.zeros(max(sum(len(h) for h in self.spec["hyper"]), 1), np.float64)
        self.ints = np.zeros(self.spec.get("ints", 4), np.int64)
        self.distributed = bool(self.spec.get("distributed"))
        if self.distributed:  # MPI's function and handles: this process's, never cached
            from symbp import distributed

            distributed.fill_slots(self.ints, self.dtype)
        self._state_ref: Any = None
        self.stepped = [i for i, ps in enumerate(self.spec["params"]) if ps["group"] is not None]
        # what the fast path of step() compares against
        sx, sy = self.spec["data"]["x"], self.spec["data"]["y"]
        self.x_dtype, self.y_dtype = np.dtype(sx["dtype"]), np.dtype(sy["dtype"])
        self.x_tail, self.y_tail = tuple(sx["shape"][1:]), tuple(sy["shape"][1:])
        # the strides of C-contiguous data (the same for any number of rows): comparing them is
        # step()'s cheap contiguity test (x.flags.carray builds a flags object: ~0.1 us each)
        self.x_strides = np.empty((2, *self.x_tail), self.x_dtype).strides
        self.y_strides = np.empty((2, *self.y_tail), self.y_dtype).strides
        self.pairs = list(zip(params, self.views))
        self.grad_pairs = [(p, g) for p, g in zip(params, self.grads) if g is not None]
        self.opt = model.optimizer
        # the param groups' values (options and "params") as last read: sync_in compares each
        # group's values with them at every call; [] before the first
        self.watched: list[list[Any]] = []
        self.built_for = self.layout(self.opt)
        self.step_states: list[dict[str, Any]] = []
        self.state_views: list[tuple[dict[str, Any], str, np.ndarray]] = []
        self.losses1 = np.zeros(2, np.float64)
        self.warm = False
        self.fast: Callable[[Any, Any], float | None] | None = None  # after the first call
        self.call: Callable[..., Any] = self.mod.train

    # ------------------------------------------------------------ keeping Python in sync

    def _bind_model_state(self, buffers: Sequence[StateUpdate]) -> None:
        """Make the module buffers the program reads (BatchNorm's running statistics) views
        into W, as the parameters are, and draw the base of ``step``'s dropout seeds."""
        from symbp.nn.init import generator

        # step()'s k-th dropout mask at step t is drawn from dropout_seed(seed, t, k); fit()
        # passes its own seed instead (symbp.compiler.lower.support.dropout_seed)
        self.seed = int(generator().integers(0, 2**62)) if self.spec.get("seeds") else 0
        self.buffer_views: list[tuple[Any, str, np.ndarray]] = []
        for u, bs in zip(buffers, self.spec.get("buffers", [])):
            n = int(np.prod(bs["shape"], dtype=np.int64))
            view = self.W[bs["offset"] : bs["offset"] + n].reshape(bs["shape"])
            self.buffer_views.append((u.module, u.buffer, view))
            self._adopt_buffer(u.module, u.buffer, view)
        # num_batches_tracked stays in Python: it moves with the optimizer's step count t
        counted = {id(u.module): u.module for u in buffers if u.new is not None}
        self.counted = list(counted.values())
        self.t_seen = 0
        # batch norm over [B, C] cannot train on a batch of one (PyTorch's rule): step's fast
        # path takes only batches of at least min_batch rows, the others get check_batch
        small = [u for u in buffers if u.min_batch() > 1]
        self.min_batch = 2 if small else 1
        self.small_layer = small[0].module.describe() if small else ""
        # the modes the program was traced in: after a train()/eval() it is built again
        net = self.model.net
        mods = net.modules() if isinstance(net, Module) else ()
        self.mode_mods = [m for m in mods if mode_dependent(m)]
        self.modes = [m.training for m in self.mode_mods]

    def mode_changed(self) -> bool:
        return [m.training for m in self.mode_mods] != self.modes

    def check_batch(self, n: int, batch_size: int, where: str) -> None:
        """A clear error for a training batch of one row when batch norm needs two."""
        if self.min_batch < 2 or n < 1 or batch_size < 1:
            return
        if 1 not in (min(n, batch_size), n % batch_size):
            return
        got = "a batch of 1" if n == 1 or where == "step" else (
            f"{n} samples in batches of {batch_size} leave a last batch of 1"
        )  # fmt: skip
        raise ValueError(
            f"{where}: {self.small_layer} expects more than 1 value per channel when training, "
            f"got {got}: use larger batches, or call .eval() on it"
        )

    def _adopt_buffer(self, module: Any, name: str, view: np.ndarray) -> None:
        value = module._buffers[name]
        if value.shape != view.shape:
            raise ShapeError(
                f"{module.describe()}: buffer '{name}' changed to shape {list(value.shape)} "
                f"after compiling for {list(view.shape)}: compile the model again"
            )
        view[...] = value.numpy()
        # the same Tensor, now holding the view: references to the buffer stay live
        value._value = view

    def sync_in(self) -> bool:
        """Copy in whatever Python changed since the last call (new .data, loaded state, lr).

        True: the optimizer now needs another program (an option that changes the update's
        formula, or the param groups' members, changed): the caller builds it (``_program``).
        """
        for p, v in self.pairs:
            if p._data is not v:
                self._adopt_param(p, v)
        for m, name, v in self.buffer_views:  # a loaded state dict replaces buffers
            if getattr(m._buffers.get(name), "_value", None) is not v:
                self._adopt_buffer(m, name, v)
        opt = self.model.optimizer
        if opt is not self.opt:
            return True
        if opt is None:
            return False
        # every option and member of every group against what the program holds, at every
        # step: values in order, no hashing (~20 ns more than comparing lr alone)
        groups, seen = opt.param_groups, self.watched
        try:
            if len(groups) == 1 == len(seen):
                moved = [*groups[0].values()] != seen[0]
            else:
                moved = [[*g.values()] for g in groups] != seen
        except Exception:  # a Parameter whose == raises (a group's members changed)
            moved = True
        if moved and self.reread(opt):
            return True
        if opt.state is not self._state_ref:  # a loaded state dict
            self._adopt_state(opt)
            return False
        for st, name, view in self.state_views:
            if st.get(name) is not view:  # an eager opt.step() replaced the state's arrays
                self._adopt_state(opt)
                return False
        return False

    def reread(self, opt: Any) -> bool:
        """The options moved: take their new values, or True if they need another program."""
        if self.layout(opt) != self.built_for:
            return True
        flat = [v for g in opt.param_groups for v in opt.hyper_values(g)]
        self.hyper[: len(flat)] = flat
        # lists copied ("params"): appending to a group's list is a change
        self.watched = [
            [list(v) if type(v) is list else v for v in g.values()] for g in opt.param_groups
        ]
        return False

    def layout(self, opt: Any) -> tuple:
        """What the program's update is built from: each group's formula structure and the
        group of each parameter (None: not stepped)."""
        if opt is None:
            return ()
        group_of = {}
        for g, group in enumerate(opt.param_groups):
            missing = [k for k in opt.defaults if k not in group]
            if missing or "params" not in group:
                raise KeyError(
                    f"{type(opt).__name__}: param_groups[{g}] has no option "
                    f"{(missing or ['params'])[0]!r} (change options by assigning new values)"
                )
            for p in group["params"]:
                group_of[id(p)] = g
        members = tuple(group_of.get(id(p)) if p.requires_grad else None for p in self.params)
        return tuple(opt.structure(g) for g in opt.param_groups), members

    def _adopt_param(self, p: Parameter, v: np.ndarray) -> None:
        if p._data.shape != v.shape or p._data.dtype != v.dtype:
            raise ShapeError(
                f"parameter '{p.name}' changed to {p._data.dtype}{list(p._data.shape)} after "
                f"compiling for {v.dtype}{list(v.shape)}: compile the model again"
            )
        v[...] = p._data
        p._data = v

    def _adopt_state(self, opt: Any) -> None:
        """Move the optimizer's state into the program's memory and make it views of that."""
        t = 0
        fresh: set[int] = set()  # the groups with a state entry started here
        for i in self.stepped:
            p = self.params[i]
            st = opt.state.get(id(p))
            g = self.spec["params"][i]["group"]
            for name, view in self.states[i].items():
                if st is not None and name in st:
                    view[...] = np.asarray(st[name]).reshape(view.shape)
                else:
                    view[...] = opt.initial_state(opt.param_groups[g], name)
                    fresh.add(g)
            if st is not None:
                t = max(t, int(st.get("step", 0)))
        if t and fresh and opt.restart_count:  # one step count t serves every group here
            for g in sorted(fresh):
                name = opt.late_start(opt.param_groups[g], t)
                if name is not None:
                    raise NotImplementedError(
                        f"{type(opt).__name__}: param group {g} starts its {name} at step "
                        f"{t + 1} while other groups' state goes on; PyTorch would start it "
                        f"afresh, the compiled program counts one step for all groups. Start "
                        f"it in its own optimizer, or for one eager opt.step()"
                    )
        self.ints[0] = t
        self.t_seen = t
        self.step_states = []
        self.state_views = []
        for i in self.stepped:
            if not self.states[i]:  # as PyTorch: a stateless rule (plain SGD) keeps no state
                continue
            # entries this program does not update stay, as PyTorch keeps a momentum buffer
            # while momentum is off (copies: they may be views into a replaced program's W)
            kept = {
                n: np.array(v) if isinstance(v, np.ndarray) else v
                for n, v in opt.state.get(id(self.params[i]), {}).items()
            }
            st = opt.state[id(self.params[i])] = {**kept, "step": t, **self.states[i]}
            self.step_states.append(st)
            self.state_views += [(st, name, v) for name, v in self.states[i].items()]
        self._state_ref = opt.state

    def sync_out(self, grads: bool = True) -> None:
        if grads:
            for p, g in self.grad_pairs:
                p._grad = g  # a view into the program's memory
        if self.step_states:
            t = int(self.ints[0])
            for st in self.step_states:
                st["step"] = t
        if self.counted and self.ints[0] != self.t_seen:  # BatchNorm counts training steps
            done = int(self.ints[0]) - self.t_seen
            for m in self.counted:
                m._state("num_batches_tracked")[...] += done
            self.t_seen += done

    # ------------------------------------------------------------ data checks

    def check(self, x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
        """The data as the compiled code reads it, or a clear error before anything runs."""
        sx, sy = self.spec["data"]["x"], self.spec["data"]["y"]
        x = self.model._check_x(x, sx, where, "x")
        y = _array(y, "y")
        if y.dtype.kind in "iu" and np.dtype(sy["dtype"]).kind in "iu":
            y = y.astype(np.int64, copy=False)
        elif y.dtype != np.dtype(sy["dtype"]):
            raise TypeError(
                f"{where}: targets y are {y.dtype}, the loss expects {sy['dtype']}"
                + (" class labels" if np.dtype(sy["dtype"]).kind in "iu" else "")
            )
        if y.ndim != len(sy["shape"]) or tuple(y.shape[1:]) != tuple(sy["shape"][1:]):
            raise ShapeError(
                f"{where}: targets y have shape {list(y.shape)}, the loss expects "
                f"{_shape_str(sy['shape'])}"
            )
        if len(y) != len(x):
            raise ShapeError(f"{where}: {len(x)} inputs but {len(y)} targets")
        classes = self.spec["classes"]
        if classes is not None and y.size and where != "step":  # step: checked in the kernel
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= classes:
                bad = lo if lo < 0 else hi
                row = int(np.flatnonzero(y == bad)[0])
                raise IndexError(
                    f"{where}: label {bad} (row {row}) out of range for {classes} classes"
                )
        if not (y.flags.c_contiguous and y.flags.writeable):
            y = np.array(y, order="C")
        return x, y

    def run(self, x, y, n_epochs, batch_size, mode, seed=None, order=_NO_ORDER, where=""):
        """Run ``train``; a failed check raises here, but for fit's own non-finite loss and
        gradient statuses (returned: it knows the epochs and restores)."""
        seed = self.seed if seed is None else seed  # fit's seed, or step's dropout base
        if self.distributed:  # a rank with bad data fails every rank, before any collective
            from symbp import distributed

            distributed.agree(where or "train", lambda: self.precheck(x, y, mode, where))
        self.arenas.ensure(min(batch_size, max(len(x), 1)))
        losses = self.losses1 if n_epochs == 1 else np.zeros(n_epochs + 1, np.float64)
        mode = int(mode)  # a plain int for Numba: the bits are program.Mode's
        args = (x, y, order, n_epochs, batch_size, mode, seed, self.W, self.arenas.work,
                self.arenas.iwork, self.hyper, self.ints, losses)  # fmt: skip
        if self.warm:
            status = self.call(*args)
        else:  # the first call compiles, or loads Numba's code from the disk cache
            if self.distributed:  # rank 0 compiles (a call of 0 epochs) and caches; then all load
                self.compile_on_rank0(args)
            status = self.first_call(self.mod.train, args)
            self.warm = True
            self.call = _entry_point(self.mod.train)
            if self.blas:
                self.call = runtime.one_blas_thread(self.call)
        if status and not (
            where == "fit" and status in (Status.NONFINITE_LOSS, Status.NONFINITE_GRAD)
        ):
            self.failed(status, where, x, y)
        self.fast = None if self.distributed else self._fast_step()  # the arenas may have grown
        return status, losses

    def compile_on_rank0(self, args: tuple) -> None:
        """Numba compiles ``train`` on rank 0 alone, by a call running no epochs (so no
        collective), and writes its disk cache; the other ranks wait, then load that code
        instead of each compiling the same program on the same cores."""
        from symbp import distributed

        if distributed.rank() == 0:
            self.first_call(self.mod.train, (*args[:3], 0, *args[4:]))
        distributed.barrier()

    def precheck(self, x: np.ndarray, y: np.ndarray, mode: int, where: str) -> None:
        """What the kernel would stop on while gathering rows (a label out of range, NaN or
        Inf data), checked in Python: a distributed program must not stop on one rank alone."""
        classes = self.spec["classes"]
        if classes is not None and y.size:
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= classes:
                self.bad_label(y, int(np.flatnonzero((y < 0) | (y >= classes))[0]))
        if mode & Mode.CHECK_DATA:
            _check_finite_data(where, "inputs x", x)
            _check_finite_data(where, "targets y", y)

    def _fast_step(self) -> Callable[[Any, Any], float | None]:
        """``step``'s fast path: one closure over what it touches (locals, not attribute
        lookups: ~0.3 us of a ~2 us W5 step). None from it: the data need the general path."""
        call, a, ints, losses = self.call, self.arenas, self.ints, self.losses1
        W, work, iwork, hyper, seed = self.W, a.work, a.iwork, self.hyper, self.seed
        xd, yd, xt, yt = self.x_dtype, self.y_dtype, self.x_tail, self.y_tail
        xs, ys, lo, hi = self.x_strides, self.y_strides, self.min_batch, a.capacity
        sync_in, sync_out, modes = self.sync_in, self.sync_out, self.mode_mods
        mode = int(_STEP | (CHECK_FINITE if self.model.check_finite else 0))  # setting it: rebuilt
        ndarray = np.ndarray
        seen: list[Any] = [None, None]  # the shapes of the last batch that passed the checks

        def fast(x: Any, y: Any) -> float | None:
            if not (
                type(x) is ndarray
                and type(y) is ndarray
                and x.dtype is xd
                and y.dtype is yd
                and x.strides == xs  # C-contiguous (the flags object costs ~0.1 us), and
                and y.strides == ys  # as many dimensions as expected
            ):
                return None
            sx, sy = x.shape, y.shape
            if sx != seen[0] or sy != seen[1]:  # (slicing shapes costs ~0.15 us a step)
                if not (sx[1:] == xt and sy[1:] == yt and lo <= sx[0] == sy[0] <= hi):
                    return None
                seen[0], seen[1] = sx, sy
            if modes and self.mode_changed():
                return None
            if sync_in():  # new optimizer options need another program: step() builds it
                return None
            n = len(x)
            status = call(x, y, _NO_ORDER, 1, n, mode, seed, W, work, iwork, hyper, ints, losses)
            if status:
                self.failed(status, "step", x, y)
            sync_out()
            return float(losses[1])

        return fast

    def first_call(self, fn: Any, args: tuple) -> Any:
        """Call a freshly loaded function; if Numba's cached code for it is damaged, rebuild."""
        try:
            with runtime.deep_recursion():
                return fn(*args)
        except Exception as e:  # only failures inside Numba's cache loading are ours to fix
            frames = traceback.extract_tb(e.__traceback__)
            if not any(f.filename.endswith("caching.py") and "numba" in f.filename
                       for f in frames):  # fmt: skip
                raise
        # a truncated or stale Numba cache file: drop it, load the module afresh, compile
        text = runtime.module_text(self.source, self.spec)
        runtime.forget(self.key)
        self.mod = runtime.load(self.key, text)
        with runtime.deep_recursion():
            return getattr(self.mod, fn.__name__)(*args)

    def failed(self, status: int, where: str, x: np.ndarray, y: np.ndarray) -> None:
        """Raise the error a status of ``train`` stands for: nothing was updated."""
        if status == Status.BAD_LABEL:
            self.bad_label(y, int(self.ints[2]))
        if status == Status.MPI_FAILED:
            raise RuntimeError(f"{where}: MPI_Allreduce failed with error code {self.ints[2]}")
        if status == Status.NONFINITE_DATA:
            name = list(self.spec["data"])[int(self.ints[3])]
            what = {"x": "inputs x", "y": "targets y"}.get(name, name)
            a = x if name == "x" else y
            raise _nonfinite_data_error(where, what, a, int(self.ints[2]))
        raise FloatingPointError(f"{where}: {self.nonfinite(status)}; nothing was updated")

    def nonfinite(self, status: int, at: str = "") -> str:
        """What was not finite (a non-finite loss or gradient status) ``at`` where, and what
        to do."""
        if status == Status.NONFINITE_LOSS:
            loss_fn = self.model.loss_fn
            domain = getattr(loss_fn, "domain", "")  # e.g. BCELoss: probabilities in [0, 1]
            hint = f" ({type(loss_fn).__name__}: {domain})" if domain else ""
            return (
                f"the loss is not finite{at}{hint}. Lower the learning rate or check the data, "
                f"or {_OPT_OUT}"
            )
        net = self.model.net
        own = {id(p): n for n, p in net.named_parameters()} if isinstance(net, Module) else {}
        bad = [own.get(id(p), p.name) for p, g in zip(self.params, self.grads)
               if g is not None and not np.isfinite(g).all()]  # fmt: skip
        what = f"the gradient of '{bad[0]}'" if bad else "a new running statistic"
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return (
            f"{what}{more} is not finite{at} while the loss is (an Inf or NaN the forward "
            f"pass hid: a ReLU that is off, a sqrt at 0 ...). Check the data and the model, or "
            f"{_OPT_OUT}"
        )

    def bad_label(self, y: np.ndarray, row: int) -> None:
        raise IndexError(
            f"label {int(y[row])} (row {row}) out of range for {self.spec['classes']} classes; "
            f"nothing was updated"
        )


def _entry_point(dispatcher: Any) -> Callable[..., Any]:
    """The compiled function behind a Numba dispatcher with exactly one signature.

    Calling it skips the dispatcher's type resolution (~0.4 us of a ~3 us step from Python);
    callers pass the very types it was compiled for (``step``'s fast path checks them).
    """
    try:
        (sig,) = dispatcher.signatures
        return dispatcher.overloads[sig].entry_point  # type: ignore[no-any-return]
    except (ValueError, AttributeError, KeyError):
        return dispatcher  # type: ignore[no-any-return]


def _calls_blas(mod: Any) -> bool:
    """Whether a generated module calls BLAS (``np.dot``), as its lowering recorded."""
    return bool(mod.SPEC["blas"])


class CompiledModel:
    """A model compiled for training and inference; see ``symbp.compile``."""

    def __init__(
        self,
        net: Callable[..., Any],
        loss_fn: Callable[..., Any] | None,
        optimizer: Any,
        check_finite: bool = True,
        distributed: bool = False,
    ):
        if distributed:
            from symbp import distributed as dist

            if not dist.is_initialized():
                dist.init()
        self.distributed = bool(distributed)
        self.net = net
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self._train: _Program | None = None
        self.check_finite = check_finite
        self._predict: Program | None = None
        self.timings: dict[str, float] = {}

    @property
    def check_finite(self) -> bool:
        """Whether the entry points refuse NaN and Inf (the default; see ``symbp.compile``)."""
        return self._check_finite

    @check_finite.setter
    def check_finite(self, value: bool) -> None:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"check_finite must be True or False, got {value!r}")
        self._check_finite = bool(value)
        if self._train is not None:  # step's fast path holds its mode: make it again
            self._train.fast = None

    def _checking(self, where: str, check_finite: bool | None) -> bool:
        """A call's ``check_finite`` (None: the model's)."""
        if check_finite is None:
            return self._check_finite
        if not isinstance(check_finite, (bool, np.bool_)):
            raise TypeError(f"{where}: check_finite must be True, False or None, got "
                            f"{check_finite!r}")  # fmt: skip
        return bool(check_finite)

    # ------------------------------------------------------------ building

    def build(self, x: Any, y: Any) -> CompiledModel:
        """Compile the training program for batches shaped like ``x``, ``y`` (done lazily;
        Numba compiles its machine code on the first call that runs it)."""
        return self._build(x, y, Stages(quiet=True))

    def _build(self, x: Any, y: Any, stages: Stages) -> CompiledModel:
        """The training program through ``symbp.pipeline.compile_train``, bound to the model."""
        if self.loss_fn is None:
            raise TypeError("this model was compiled without a loss function: only predict()")
        x, y = _array(x, "x"), _array(y, "y")
        t0 = time.perf_counter()
        mpi, allreduce = None, None
        if self.distributed:
            from symbp import distributed

            mpi, allreduce = distributed.abi(), distributed.kernel_name()
        program = compile_train(self.net, self.loss_fn, self.optimizer, x, y, mpi=mpi,
                                allreduce=allreduce, stages=stages)  # fmt: skip
        self._train = _Program(self, program)
        traced = program.timings.get("trace", 0.0) + program.timings.get("cache lookup", 0.0)
        self.timings.update(trace=traced, lower=time.perf_counter() - t0 - traced,
                            cache_hit=float(program.hit))  # fmt: skip
        return self

    def _program(
        self, x: np.ndarray, y: np.ndarray, where: str = "step", stages: Stages | None = None
    ) -> _Program:
        _batched(where, "inputs x", x)
        _batched(where, "targets y", y)
        prog = self._train
        if prog is not None and (prog.mode_changed() or prog.sync_in()):
            # train()/eval() since: dropout and batch norm act otherwise; or an optimizer
            # option that changes the update's formula (momentum switched on, amsgrad...), or
            # the param groups' members: build (or load) that program, which takes over the
            # parameters and the optimizer state as they are
            self._train = None
        if self._train is None:
            self._build(x, y, stages if stages is not None else Stages(quiet=True))
        assert self._train is not None
        return self._train

    @property
    def source(self) -> str:
        """The generated training module (built by the first step/fit, or by ``build``)."""
        if self._train is not None:
            return self._train.source
        if self._predict is not None:
            return self._predict.source
        raise RuntimeError(
            "nothing compiled yet: the program is built for the shapes of the first batch; "
            "call step(), fit() or build(x, y) first"
        )

    def export(self, path: str | os.PathLike[str]) -> tuple[Any, Any]:
        """Write the generated kernels as a standalone module (numpy and numba only) to
        ``path`` (``name.py``) and the parameters to ``name.npz``; see ``symbp.export``."""
        from symbp.export import export_model

        return export_model(self, path)

    def export_onnx(self, path: str | os.PathLike[str], x: Any = None) -> Any:
        """Write the inference graph (``predict``'s) to ``path`` (``name.onnx``), opset 17 with
        a dynamic batch dimension; ``x``: a sample input, if nothing is compiled yet. Needs
        the ``onnx`` package; see ``symbp.onnx_export``."""
        from symbp.onnx_export import export_onnx

        return export_onnx(self, path, x)

    # ------------------------------------------------------------ checks in the model's words

    def _check_x(self, x: Any, sx: dict[str, Any], where: str, name: str) -> np.ndarray:
        x = _array(x, name)
        want = np.dtype(sx["dtype"])
        if x.dtype != want:
            raise TypeError(
                f"{where}: inputs x are {x.dtype}, the model is {want}: pass x.astype(np.{want})"
            )
        if x.ndim != len(sx["shape"]) or tuple(x.shape[1:]) != tuple(sx["shape"][1:]):
            try:  # let the model say what it expected, in its own terms
                trace(self.net, x[:1] if x.ndim else x)
            except ShapeError as e:
                raise ShapeError(f"{where}: {e}") from None
            raise ShapeError(
                f"{where}: inputs x have shape {list(x.shape)}, the model was compiled for "
                f"{_shape_str(sx['shape'])}"
            )
        if not (x.flags.c_contiguous and x.flags.writeable):
            x = np.array(x, order="C")
        return x

    # ------------------------------------------------------------ training

    def step(self, x: Any, y: Any, *, check_finite: bool | None = None) -> float:
        """One forward, backward and optimizer update on the batch (x, y); returns the loss.

        With ``check_finite`` (the model's setting unless given), NaN or Inf in x or y, a
        non-finite loss or a non-finite gradient is an error and nothing is updated."""
        prog = self._train
        if prog is not None and prog.fast is not None and check_finite is None:
            loss = prog.fast(x, y)  # the data the code was built for
            if loss is not None:
                return loss
        # the general path: convert, or explain what is wrong
        if self.optimizer is None:
            raise TypeError("step() needs an optimizer: symbp.compile(net, loss_fn, opt)")
        check = self._checking("step", check_finite)
        prog = self._program(_array(x, "x"), _array(y, "y"), "step")
        x, y = prog.check(x, y, "step")
        _has_rows("step", x)
        prog.check_batch(len(x), len(x), "step")
        prog.sync_in()
        prog.run(x, y, 1, len(x), _STEP | (CHECK_FINITE if check else 0), where="step")
        prog.sync_out()
        return float(prog.losses1[1])

    def loss_and_grads(
        self, x: Any, y: Any, *, check_finite: bool | None = None
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The loss and each parameter's gradient (by name; also in ``.grad``), no update.

        With ``check_finite``, NaN or Inf in x or y or a non-finite loss is an error."""
        check = self._checking("loss_and_grads", check_finite)
        prog = self._program(_array(x, "x"), _array(y, "y"), "loss_and_grads")
        x, y = prog.check(x, y, "loss_and_grads")
        _has_rows("loss_and_grads", x)
        prog.sync_in()
        mode = Mode.GRADS | (CHECK_FINITE if check else 0)
        _, losses = prog.run(x, y, 1, len(x), mode, where="loss_and_grads")
        prog.sync_out()
        names = {id(p): p.name for p in prog.params}
        if hasattr(self.net, "named_parameters"):  # the model's own names: "0.weight"
            names.update({id(p): n for n, p in self.net.named_parameters()})
        grads = {names[id(p)]: g.copy() for p, g in zip(prog.params, prog.grads) if g is not None}
        return float(losses[1]), grads

    def fit(
        self,
        X: Any,
        y: Any = None,
        epochs: int = 1,
        batch_size: int | None = None,
        shuffle: bool | None = None,
        seed: int | None = None,
        validation_data: tuple[Any, Any] | None = None,
        verbose: bool | int = False,
        callback: Callable[[int, dict[str, list[float]]], Any] | None = None,
        *,
        scheduler: Any = None,
        early_stopping: Any = None,
        checkpoint: str | os.PathLike[str] | None = None,
        checkpoint_every: int = 1,
        resume: str | os.PathLike[str] | None = None,
        check_finite: bool | None = None,
    ) -> dict[str, list[float]]:
        """Train for ``epochs`` passes over (X, y); returns per-epoch metrics (``"loss"``...).

        ``X`` may be a ``symbp.utils.data.DataLoader`` (then leave out ``y``; its batch size,
        shuffling and ``drop_last`` are fit's, see ``symbp.utils.data.arrays.fit_arrays``) or a
        ``TensorDataset``; ``validation_data`` too. ``batch_size`` defaults to 32 and
        ``shuffle`` to True.

        Each epoch -- shuffle (``seed``, epoch) -> ``lower.support.epoch_order``, gather
        the minibatches, forward, backward, update, sum the loss -- is one compiled call; when
        nothing needs Python between epochs (no validation, ``verbose``, ``callback``,
        scheduler, early stopping or checkpoint) all epochs are. A non-finite loss stops
        training with an error naming the epoch and batch, the parameters as they were before
        that batch (or at the start of that epoch if they had already stopped being finite).

        Between epochs, in this order: ``history`` gets ``loss``, ``val_*`` (with
        ``validation_data``) and ``lr`` (the first group's learning rate used in the epoch);
        ``scheduler.step()`` (``ReduceLROnPlateau.step(metric)`` with its ``monitor``
        attribute, default ``val_loss`` when there is validation data, else ``loss``);
        ``early_stopping`` (an ``EarlyStopping``, a dict of its options, or True) may stop;
        every ``checkpoint_every`` epochs, and at the last, ``save_checkpoint(checkpoint)``
        (model, optimizer, scheduler, early stopping, epoch, history, seed); then ``verbose``
        (True: a progress bar, quiet off a terminal; 2: one line per epoch) and
        ``callback(epoch, history)``, which stops training by returning True. Learning rates
        are re-read every epoch.

        Before the first epoch, fit compiles what it will run and has not compiled yet: the
        training program and Numba's code for it, and with ``validation_data`` (checked then)
        the inference program of the validation accuracy. ``verbose=True`` shows their stages,
        a bar per program, as it shows the epochs (``symbp.progress.Stages``);
        ``timings["fit_compile"]`` holds the seconds, 0 when all was compiled.

        ``resume=PATH`` loads such a checkpoint and continues from its epoch to ``epochs``
        (the total, as Keras' ``epochs`` with ``initial_epoch``), with its history and seed
        (unless ``seed`` is given), so the shuffles match an uninterrupted run; the scheduler
        and early stopping given carry on from their saved state (a run early stopping ended
        stays ended: resume without ``early_stopping`` to train on).

        ``check_finite`` (the model's setting unless given; see ``symbp.compile``): NaN or Inf
        in the data is an error before training; a non-finite loss or gradient stops training
        with an error, the update not made; a checkpoint is never written with non-finite
        parameters. False trains on whatever comes, as PyTorch does.
        """
        from symbp.checkpoint import check_writable, load_checkpoint, save_checkpoint
        from symbp.optim.lr_scheduler import ReduceLROnPlateau
        from symbp.progress import progress_bar
        from symbp.training import as_early_stopping, monitored
        from symbp.utils.data.arrays import eval_arrays, fit_arrays, is_data

        # a DataLoader or Dataset becomes arrays; batch_size=None, shuffle=None: 32, True
        X, y, batch_size, shuffle, seed = fit_arrays(
            X, y, batch_size, shuffle, seed, resume is None
        )
        if is_data(validation_data):
            validation_data = eval_arrays(validation_data, None, "fit: validation_data")
        if self.optimizer is None:
            raise TypeError("fit() needs an optimizer: symbp.compile(net, loss_fn, optimizer)")
        # every argument checked before anything trains (a bad path found after an epoch)
        epochs = _int_arg("fit", "epochs", epochs, 0)
        batch_size = _int_arg("fit", "batch_size", batch_size, 1)
        checkpoint_every = _int_arg("fit", "checkpoint_every", checkpoint_every, 1)
        if seed is not None:
            seed = _int_arg("fit", "seed", seed, 0)
        check = self._checking("fit", check_finite)
        if checkpoint is not None:
            check_writable(checkpoint, "fit: checkpoint")
        if validation_data is not None:
            if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
                raise TypeError(
                    f"fit: validation_data must be a pair (X_val, y_val), got "
                    f"{type(validation_data).__name__}"
                )
            if check:
                _check_finite_data("fit", "validation inputs", _array(validation_data[0], "X"))
                _check_finite_data("fit", "validation targets", _array(validation_data[1], "y"))
        stopper = as_early_stopping(early_stopping)
        if stopper is not None:
            stopper.reset()
        lead = True  # this process reports progress and writes checkpoints
        if self.distributed:
            from symbp import distributed

            lead = distributed.rank() == 0
            verbose = verbose if lead else False
        shown = None if verbose is True or verbose == 1 else True  # quiet= of the displays
        stages = Stages(quiet=shown)  # what fit compiles, shown before the epochs' bar
        try:
            prog = self._program(_array(X, "X"), _array(y, "y"), "fit", stages)
            X, y = prog.check(X, y, "fit")
            if len(X) == 0:
                raise ValueError("fit: no training samples")
            if check:  # once for all epochs, before any update (the kernel's check: off)
                _check_finite_data("fit", "inputs X", X)
                _check_finite_data("fit", "targets y", y)
            prog.check_batch(len(X), batch_size, "fit")
            history: dict[str, list[float]] = {"loss": []}
            done = 0
            if resume is not None:
                ckpt = load_checkpoint(
                    resume, self.net, self.optimizer, scheduler=scheduler, early_stopping=stopper
                )
                done = int(ckpt.epoch or 0)
                history = {k: list(v) for k, v in (ckpt.history or {"loss": []}).items()}
                if seed is None and "seed" in ckpt.extra:
                    seed = int(ckpt.extra["seed"])
            prog = self._compile_for_fit(X, y, batch_size, validation_data, stages)
        finally:
            stages.close()
        self.timings["fit_compile"] = stages.seconds
        seed = secrets.randbits(62) if seed is None else int(seed)
        if self.distributed:  # one shuffle for all ranks: rank 0's seed
            seed = distributed.broadcast(seed)
        order = np.empty(len(X), np.int64) if shuffle else _NO_ORDER
        # the data are checked above; in the kernel, the loss and the gradients
        mode = Mode.GRADS | Mode.UPDATE | (Mode.SHUFFLE if shuffle else 0)
        mode |= (Mode.STOP_NONFINITE | Mode.CHECK_UPDATE) if check else 0
        between = (
            validation_data is not None
            or verbose
            or callback is not None
            or scheduler is not None
            or stopper is not None
            or checkpoint is not None
        )
        per_call = 1 if between else max(epochs - done, 1)
        bar = progress_bar(epochs, "epoch", "epoch", quiet=shown)  # tqdm when installed
        bar.n = min(done, epochs)
        named = self.net.named_parameters() if hasattr(self.net, "named_parameters") else []
        own = {id(p): n for n, p in named}
        names = [own.get(id(p), p.name) for p in prog.params]  # the model's, as checkpoints'
        try:  # (a resumed run that early stopping had ended stays ended)
            while done < epochs and (stopper is None or stopper.stopped_epoch is None):
                n = min(per_call, epochs - done)
                prog = self._program(X, y)  # a callback may have changed the optimizer's options
                prog.sync_in()  # every call: a scheduler or callback may have changed lr
                lr = float(self.optimizer.param_groups[0].get("lr", np.nan))
                snapshot = prog.W.copy()
                t_before = int(prog.ints[0])
                prog.ints[1] = done  # the shuffle of epoch e is (seed, e): resumable
                status, losses = prog.run(X, y, n, batch_size, mode, seed, order, "fit")
                if status:
                    self._nonfinite(prog, snapshot, t_before, done, status)
                history["loss"] += losses[:n].tolist()
                history.setdefault("lr", []).extend([lr] * n)
                done += n
                prog.sync_out()
                if validation_data is not None:
                    val = self.evaluate(*validation_data, check_finite=False)  # checked above
                    for k, v in val.items():
                        history.setdefault(f"val_{k}", []).append(v)
                if scheduler is not None:
                    if isinstance(scheduler, ReduceLROnPlateau):
                        default = "val_loss" if validation_data is not None else "loss"
                        name = getattr(scheduler, "monitor", default)
                        scheduler.step(monitored(history, name, "the scheduler"))
                    else:
                        scheduler.step()
                stop = False
                if stopper is not None:
                    stop = stopper.update(monitored(history, stopper.monitor, "early stopping"))
                    if stopper.best_epoch == stopper._epoch - 1 and stopper.restore_best:
                        stopper.best_weights = {n: v.copy() for n, v in zip(names, prog.views)}
                if (
                    checkpoint is not None
                    and lead
                    and (done % checkpoint_every == 0 or done == epochs or stop)
                ):
                    save_checkpoint(
                        checkpoint, self.net, self.optimizer, scheduler=scheduler,
                        early_stopping=stopper, epoch=done, history=history, extra={"seed": seed},
                        allow_nonfinite=not check,
                    )  # fmt: skip
                self._report(bar, verbose, done, epochs, history, len(X) * n)
                if callback is not None and callback(done - 1, history):
                    stop = True
                if stop:
                    break
        finally:
            bar.close()
        best = stopper.best_weights if stopper is not None else None
        if stopper is not None and stopper.stopped_epoch is not None and best is not None:
            prog.sync_in()  # a resumed, ended run: the loaded parameters are not in W yet
            for name, view in zip(names, prog.views):
                view[...] = best[name]
        return history

    def _compile_for_fit(
        self, X: np.ndarray, y: np.ndarray, batch_size: int, validation_data: Any, stages: Stages
    ) -> _Program:
        """The training program with Numba's machine code, and the inference program that the
        validation accuracy needs, compiled now, on ``stages``, rather than inside epoch 1."""
        prog = self._program(X, y, "fit", stages)  # a resumed optimizer's options may need another
        if not prog.warm:
            stages.begin("training program", (NUMBA,))
            with stages.stage(NUMBA):  # a call running no epoch: Numba compiles or loads
                prog.run(X, y, 0, batch_size, 0, 0, _NO_ORDER, "fit")
        if validation_data is not None:  # the data as evaluate will check them, said now
            Xv, _ = prog.check(validation_data[0], validation_data[1], "fit: validation_data")
            if len(Xv):
                built = self._predict is None
                mod = self._predict_program(Xv, stages).module
                if not getattr(mod.predict, "overloads", True):  # not compiled or loaded yet
                    stages.begin("inference program", (NUMBA,))
                    with stages.stage(NUMBA):
                        self.predict(Xv[:1], check_finite=False)
                elif built:  # its module was loaded and compiled earlier in this process
                    stages.skip(1, "compiled earlier")
        return prog

    @staticmethod
    def _report(bar: Any, verbose: Any, done: int, epochs: int, history: dict, samples: int):
        """The progress bar (``verbose=True``) or one printed line per epoch (``verbose=2``)."""
        if not verbose:
            return
        latest = {k: v[-1] for k, v in history.items() if v}
        if verbose is True or verbose == 1:
            bar.update(samples=samples, **{k: v for k, v in latest.items() if k != "lr"})
        else:
            line = ", ".join(f"{k}={v:.4g}" for k, v in latest.items())
            print(f"epoch {done}/{epochs}: {line}", flush=True)

    def _nonfinite(self, prog: _Program, snapshot, t_before, first_epoch, status) -> None:
        epoch, batch = int(prog.ints[2]), int(prog.ints[3])
        n_params = sum(v.size for v in prog.views)
        finite = all(np.isfinite(v).all() for v in prog.views)
        if finite:
            restored = f"parameters are as before batch {batch + 1}"
        else:  # an update made them non-finite before the loss showed it: back to the epoch start
            prog.W[...] = snapshot
            prog.ints[0] = t_before
            restored = f"parameters restored to the start of epoch {first_epoch + 1}"
        prog.sync_out(grads=False)
        at = f" at epoch {first_epoch + epoch + 1}, batch {batch + 1} ({n_params} parameters)"
        raise FloatingPointError(f"fit: {prog.nonfinite(status, at)}; {restored}")

    # ------------------------------------------------------------ inference

    def _predict_program(self, X: np.ndarray, stages: Stages | None = None) -> Program:
        """The inference program (``symbp.pipeline.compile_predict``), built on first use."""
        if self._predict is None:
            t0 = time.perf_counter()
            self._predict = compile_predict(self.net, X, stages)
            self.timings["predict_build"] = time.perf_counter() - t0
        return self._predict

    def _trace_inference(self, x: np.ndarray) -> Any:
        """The model traced in eval mode, as the inference program is (``symbp.onnx_export``)."""
        return trace_inference(self.net, x)

    def predict(
        self, X: Any, batch_size: int = 256, *, check_finite: bool | None = None
    ) -> np.ndarray:
        """The model's outputs for every row of X, computed in compiled batches: inference, as
        after ``model.eval()`` (no dropout; batch norm normalises with its running statistics).
        With ``check_finite`` (the model's setting unless given), NaN or Inf in X is an error.
        """
        batch_size = _int_arg("predict", "batch_size", batch_size, 1)
        check = self._checking("predict", check_finite)
        X = _array(X, "X")
        _batched("predict", "inputs X", X)
        program = self._predict_program(X)
        mod, params, spec = program.module, program.args, program.spec
        X = self._check_x(X, spec["x"], "predict", "X")
        if check:
            _check_finite_data("predict", "inputs X", X)
        if self._train is not None:
            self._train.sync_in()
        out_shape = (len(X), *spec["out_shape"][1:])
        out = np.empty(out_shape, np.dtype(spec["out_dtype"]))
        if len(X):
            bs = max(1, min(batch_size, len(X)))
            ar = runtime.Arenas(spec, np.dtype(spec["dtype"]), bs)
            run = runtime.one_blas_thread(mod.predict) if _calls_blas(mod) else mod.predict
            run(X, bs, ar.work, ar.iwork, out, *(p._data for p in params))
        return out

    def evaluate(
        self,
        X: Any,
        y: Any = None,
        metrics: Sequence[str] = ("accuracy",),
        batch_size: int = 256,
        *,
        check_finite: bool | None = None,
    ) -> dict[str, float]:
        """The mean loss over (X, y) and the requested metrics (``"accuracy"``); X may be a
        DataLoader or TensorDataset (every sample it reads), with y left out.

        With ``check_finite`` (the model's setting unless given), NaN or Inf in X or y, or a
        non-finite loss, is an error."""
        from symbp.utils.data.arrays import eval_arrays

        X, y = eval_arrays(X, y, "evaluate")
        batch_size = _int_arg("evaluate", "batch_size", batch_size, 1)
        check = self._checking("evaluate", check_finite)
        if isinstance(metrics, str):
            metrics = (metrics,)
        for m in metrics:
            if m != "accuracy":
                raise ValueError(f"evaluate: unknown metric {m!r} (known: 'accuracy')")
        prog = self._program(_array(X, "X"), _array(y, "y"), "evaluate")
        X, y = prog.check(X, y, "evaluate")
        if len(X) == 0:  # a mean over no samples is not a loss (NumPy's would be nan)
            raise ValueError("evaluate: X has 0 rows: it needs at least one sample")
        prog.sync_in()
        # the data are checked as each batch is gathered: nothing is updated here
        _, losses = prog.run(X, y, 1, batch_size, CHECK_FINITE if check else 0, where="evaluate")
        result = {"loss": float(losses[0])}
        for _m in metrics:
            pred = self.predict(X, batch_size, check_finite=False)
            if y.ndim == 1 and y.dtype.kind in "iu":
                result["accuracy"] = float(np.mean(pred.argmax(axis=-1) == y))
            elif pred.shape[-1] == 1:  # binary: a probability or a logit against 0/1 targets
                thresh = 0.5 if (pred.min() >= 0 and pred.max() <= 1) else 0.0
                result["accuracy"] = float(np.mean((pred > thresh) == (y > 0.5)))
            else:
                result["accuracy"] = float(np.mean(pred.argmax(-1) == y.argmax(-1)))
        return result


def compile(  # noqa: A001 -- symbp.compile, as torch.compile
    net: Callable[..., Any],
    loss_fn: Callable[..., Any] | None = None,
    optimizer: Any = None,
    *,
    check_finite: bool = True,
    distributed: bool = False,
) -> CompiledModel:
    """Compile ``net`` with ``loss_fn(net(x), y)`` and ``optimizer`` for fast training.

    Nothing is built until the first batch arrives (its feature shape and dtype fix the
    program; the batch size stays free). See the module docstring for an example.

    ``check_finite`` (default True; ``model.check_finite`` changes it, and every entry point
    takes it per call): ``step``, ``loss_and_grads``, ``fit``, ``evaluate`` and ``predict``
    refuse NaN or Inf inputs and targets with an error naming the array and its first bad
    row, and a non-finite loss, or a non-finite gradient before its update lands, is an
    error, the parameters unchanged. ``step`` checks inside the compiled code (~0 cost).
    False uses whatever comes, as PyTorch does.

    ``distributed`` (needs MPI: see ``symbp.distributed``): data-parallel training under
    ``mpiexec``. ``fit``, ``step``, ``loss_and_grads`` and ``evaluate`` share each batch (of
    ``batch_size`` rows in all) between the ranks, sum the loss and gradients with one
    allreduce inside the compiled step, and apply the same update on every rank. Every rank
    passes the same data; parameters must start equal (``distributed.broadcast_parameters``).
    Rank 0 alone prints progress and writes checkpoints.
    """
    return CompiledModel(net, loss_fn, optimizer, check_finite=check_finite,
                         distributed=distributed)  # fmt: skip


__all__ = ["CompiledModel", "compile"]
