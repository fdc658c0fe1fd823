"""Export a compiled model as one standalone Python module that needs only numpy and numba.

>>> model.fit(X, y, epochs=10)                       # doctest: +SKIP
>>> model.export("digits_mlp.py")                    # doctest: +SKIP
(PosixPath('digits_mlp.py'), PosixPath('digits_mlp.npz'))

and then, anywhere numpy and numba are installed (symbp need not be)::

    import digits_mlp
    probabilities = digits_mlp.predict(X)            # the compiled inference program
    losses = digits_mlp.fit(X, y, epochs=5, seed=0)  # the compiled training program
    digits_mlp.save()                                # its parameters back to digits_mlp.npz

The module holds the generated kernels exactly as symbp runs them (the training program, when
the model was compiled with a loss and an optimizer, and the inference program), the helpers
they import from ``symbp`` copied in by source (``compiler.lower.support``: the stable sigmoid,
the epoch shuffle ...), and a small driver. Matrix products that call MKL through symbp's
``gemm_f32``/``gemm_f64`` go to ``np.dot`` instead (Numba's BLAS: OpenBLAS or whatever NumPy
links), so no MKL is needed; everything else runs the same operations in the same order, so
``fit`` and ``predict`` give symbp's numbers. The parameters, the optimizer state and the
hyperparameters go to an ``.npz`` of the same name beside the module.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib
import inspect
import os
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from symbp.checkpoint import atomic_write
from symbp.compiler.ir import shown_names
from symbp.compiler.lower.program import Mode

__all__ = ["ExportError", "export_model", "module_path"]


def _literal(obj: object) -> str | None:
    """Python source for a constant of the generated code's helpers (a NumPy or Python scalar,
    or a tuple of them, as polynomial coefficients are kept), or None."""
    if isinstance(obj, np.generic):
        return f"np.{type(obj).__name__}({obj.item()!r})"
    if isinstance(obj, (bool, int, str)) or (isinstance(obj, float) and np.isfinite(obj)):
        return repr(obj)
    if isinstance(obj, tuple):
        items = [_literal(v) for v in obj]
        if all(t is not None for t in items):
            return "(" + "".join(f"{t}, " for t in items).rstrip(" ") + ")"
    return None


class ExportError(RuntimeError):
    """A compiled model that cannot be written as a standalone module."""


# Helpers whose symbp version needs more than numpy and numba, and their portable stand-ins.
# symbp's gemm calls MKL's cblas_?gemm by symbol; np.dot into the preallocated output is what
# the generated code itself does when MKL is absent.
_GEMM = '''\
@njit(cache=True)
def {name}(a, ta, b, tb, out):
    """out = op(a) @ op(b), op = transpose when ta / tb (np.dot: Numba's BLAS, no MKL)."""
    if ta:
        if tb:
            np.dot(a.T, b.T, out)
        else:
            np.dot(a.T, b, out)
    elif tb:
        np.dot(a, b.T, out)
    else:
        np.dot(a, b, out)
'''
_STAND_INS = {
    ("symbp.compiler.lower.support", "gemm_f32"): _GEMM.format(name="gemm_f32"),
    ("symbp.compiler.lower.support", "gemm_f64"): _GEMM.format(name="gemm_f64"),
}


# ---------------------------------------------------------------- reading generated modules


class _Module:
    """One generated module split into its top-level pieces, each kept as its source text, by
    the layout its lowering recorded (``spec["layout"]``: what each piece is, on which lines)
    and the symbp helpers its code calls (``spec["helpers"]``): nothing parses it back.

    Product kernels are called by symbol in symbp (``Emitter.library``: ``call_<name>``,
    registered by ``conv_kernels.need``); the spec names them, and the export binds each
    ``call_<name>`` to the kernel as a Numba function, copied in by source, registering
    nothing."""

    def __init__(self, source: str, spec: dict[str, Any]):
        if "layout" not in spec:  # a module of a symbp before the layout was recorded
            raise ExportError("the compiled program has no recorded layout: compile it again")
        self.by_symbol = {f"call_{k}": k for k in spec.get("kernels", [])}
        lines = source.splitlines()
        self.imports: list[str] = []  # plain imports (math, numpy, numba)
        self.bound: set[str] = set()  # the names they bind
        self.symbp: dict[str, str] = dict(spec["helpers"])  # name -> "module:attr" it calls
        self.pieces: list[tuple[str, str]] = []  # (name, text) of assignments and defs
        for kind, name, first, end in spec["layout"]:
            text = "\n".join(lines[first:end])
            if kind == "import":  # named by the names it binds
                self.imports.append(text)
                self.bound.update(name.split())
            elif kind == "def":
                self.pieces.append((name, text))
            # the docstring, symbp's imports (copied as helpers) and the registration of the
            # kernels called by symbol (see above) are not exported


def _join(texts: list[str]) -> str:
    """Top-level statements as a module lays them out: definitions two blank lines apart."""
    out = ""
    for text in texts:
        text = text.strip("\n")
        if out:
            one_liners = "\n" not in text and "\n" not in out.rsplit("\n\n", 1)[-1]
            out += "\n" if one_liners and not text.startswith(("@", "def ")) else "\n\n\n"
        out += text
    return out


# ---------------------------------------------------------------- copying symbp's helpers


class _Helpers:
    """The symbp helpers a generated module imports, copied by source with what they use.

    A helper's dependencies come first: the names its source reads that its module defines
    (constants, other helpers, copied the same way) or imports (the same import statement,
    unless it imports from symbp: then that helper is copied in turn).
    """

    def __init__(self) -> None:
        self.imports: list[str] = []
        self.defs: dict[str, str] = {}  # name -> source, dependencies first
        self._seen: set[tuple[str, str]] = set()

    def add(self, name: str, where: str) -> None:
        if (name, where) in self._seen:  # by both: a name re-exported from another module
            return
        self._seen.add((name, where))
        module_name, _, attr = where.partition(":")
        module = importlib.import_module(module_name)
        if module_name in _WHOLE_MODULES:  # defines types and registers them: copied whole
            self.defs.setdefault(module_name, _module_body(module))
            if attr != name:
                self.defs[name] = f"{name} = {attr}"
            return
        obj = getattr(module, attr)
        stand_in = _STAND_INS.get((module_name, attr))
        imported = _imports(module).get(attr)
        fn = getattr(obj, "py_func", None) or getattr(obj, "_defn", None)  # @njit, @intrinsic
        if stand_in is not None:
            self._define(module, name, stand_in)
        elif imported is not None:
            line, source = imported
            if source.split(".")[0] == "symbp":
                self.add(name, f"{source}:{attr}")
            else:
                self._import(line if attr == name else f"{line} as {name}")
        elif fn is not None or inspect.isfunction(obj):
            text = textwrap.dedent(inspect.getsource(fn or obj))
            defined = (fn or obj).__name__  # attr, or the variant it names (conv_kernels' _r8)
            self._define(module, defined, text)
            if defined != name:  # imported under another name, or a kernel's variant: bound
                self.alias(name, defined)
        elif (literal := _literal(obj)) is not None:  # a constant: numbers, or a tuple of them
            if "np." in literal:
                self._import("import numpy as np")
            self.defs[name] = f"{name} = {literal}"
        else:
            raise ExportError(
                f"cannot copy {module_name}.{attr} ({type(obj).__name__}) into a standalone module"
            )

    def alias(self, name: str, defined: str) -> None:
        """``name`` for the helper ``defined`` (copied already)."""
        self.defs[name] = f"{name} = {defined}"

    def _define(self, module: Any, name: str, text: str) -> None:
        for dep in sorted(_free_names(text)):
            if dep in vars(module):
                self.add(dep, f"{module.__name__}:{dep}")
        self.defs[name] = text

    def _import(self, line: str) -> None:
        if line not in self.imports:
            self.imports.append(line)


# Modules copied in whole when anything of theirs is used: the SIMD intrinsics of the
# convolution and matrix kernels come with a Numba type and its data model (registered on
# import), which no single function's source carries.
_WHOLE_MODULES = ("symbp.compiler.lower.simd",)


def _module_body(module: Any) -> str:
    """A module's source without its docstring, ``from __future__`` and ``__all__``."""
    tree = ast.parse(inspect.getsource(module))
    keep = [
        node
        for node in tree.body
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
        and not (isinstance(node, ast.ImportFrom) and node.module == "__future__")
        and not (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", "") for t in node.targets] == ["__all__"]
        )
    ]
    lines = inspect.getsource(module).splitlines()
    chunks = []
    for node in keep:
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        chunks.append("\n".join(lines[start - 1 : node.end_lineno]))
    return "\n\n".join(chunks)


@functools.cache
def _imports(module: Any) -> dict[str, tuple[str, str]]:
    """A module's top-level imports: bound name -> (an import statement binding just that name,
    the module it comes from)."""
    found = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.Import):
            for a in node.names:
                found[a.asname or a.name.split(".")[0]] = (
                    f"import {a.name}" + (f" as {a.asname}" if a.asname else ""),
                    a.name,
                )
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for a in node.names:
                line = f"from {node.module} import {a.name}"
                found[a.asname or a.name] = (line + (f" as {a.asname}" if a.asname else ""),
                                             node.module)  # fmt: skip
    return found


def _bound(line: str) -> set[str]:
    """The names an import statement binds."""
    return {a.asname or a.name for node in ast.parse(line).body
            for a in getattr(node, "names", [])}  # fmt: skip


def _free_names(text: str) -> set[str]:
    """The names a function's source reads but does not bind: globals, decorators."""
    tree = ast.parse(text)
    bound = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name)]
    bound |= {n.id for n in names if isinstance(n.ctx, ast.Store)}
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    return {n.id for n in names} - bound


# ---------------------------------------------------------------- the driver

# the mode bits of train_epochs the driver uses, as program.Mode defines them
_DRIVER_MODES = [m for m in Mode if m <= Mode.STOP_NONFINITE]
_MODES = (
    f"{', '.join(str(m.name) for m in _DRIVER_MODES)} = "
    f"{', '.join(str(m.value) for m in _DRIVER_MODES)}  # mode bits of train_epochs"
)

_DRIVER = '''\
# ---------------------------------------------------------------- the driver

__MODES__
WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), __WEIGHTS__)


def _size(expr, batch):
    """A work-array size from its formula in the batch size B ('16*B+2')."""
    return int(eval(expr, {"__builtins__": {}}, {"B": batch}))


def _work(spec, batch):
    work = np.zeros(max(_size(spec["work"], batch), 1), spec["dtype"])
    return work, np.zeros(max(_size(spec["iwork"], batch), 1), np.int64)


def _check(a, data, what):
    """``a`` as the compiled code reads it (C order, the compiled dtype), or a clear error."""
    dtype, a = np.dtype(data["dtype"]), np.asarray(a)
    if dtype.kind in "iu" and a.dtype.kind not in "iu":
        raise TypeError(f"{what} must be integer class labels, not {a.dtype}")
    a = np.ascontiguousarray(a, dtype=dtype)
    want = ["N", *data["shape"][1:]]
    if a.ndim != len(want) or list(a.shape[1:]) != want[1:]:
        raise ValueError(f"{what} has shape {list(a.shape)}, the model takes {want}")
    return a


class Model:
    """The exported model: its parameters (and optimizer state) and the compiled programs.

    ``Model(path)`` loads an .npz written with this module (``WEIGHTS`` by default). ``params``
    maps each parameter's name to its array: views into ``W``, the training program's memory
    (parameters, gradients, optimizer state), so training updates what ``predict`` uses.
    ``hyper`` holds the optimizer's hyperparameters in the order of ``HYPER`` (``hyper[0]`` is
    usually the first group's learning rate); ``ints[0]`` is the optimizer's step count.
    """

    def __init__(self, path=WEIGHTS):
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        self.W = arrays.get("W")
        self.hyper = arrays.get("hyper", np.zeros(1))
        self.ints = arrays.get("ints", np.zeros((TRAIN_SPEC or {}).get("ints", 4), np.int64))
        self.epoch = int(arrays.get("epoch", 0))
        self.params = {}
        for p in IN_W:  # views into W: training updates what predict reads
            n = int(np.prod(p["shape"], dtype=np.int64))
            self.params[p["name"]] = self.W[p["offset"] : p["offset"] + n].reshape(p["shape"])
        for name in PREDICT_PARAMS:
            if name not in self.params:
                self.params[name] = arrays["param/" + name]

    def predict(self, X, batch_size=256):
        """The model's outputs for every row of X, in compiled batches of ``batch_size``."""
        X = _check(X, PREDICT_SPEC["x"], "X")
        out = np.empty((len(X), *PREDICT_SPEC["out_shape"][1:]), PREDICT_SPEC["out_dtype"])
        if len(X):
            bs = max(1, min(batch_size, len(X)))
            work, iwork = _work(PREDICT_SPEC, bs)
            args = [self.params[name] for name in PREDICT_PARAMS]
            predict_batches(X, bs, work, iwork, out, *args)
        return out

    def _run(self, X, y, epochs, batch_size, mode, seed):
        if TRAIN_SPEC is None:
            raise RuntimeError("this model was exported without its training program")
        X = _check(X, TRAIN_SPEC["data"]["x"], "X")
        y = _check(y, TRAIN_SPEC["data"]["y"], "y")
        if len(X) != len(y) or not len(X):
            raise ValueError(f"{len(X)} inputs but {len(y)} targets")
        bs = max(1, min(batch_size, len(X)))
        work, iwork = _work(TRAIN_SPEC, bs)
        losses = np.zeros(epochs + 1, np.float64)
        order = np.empty(len(X) if mode & SHUFFLE else 0, np.int64)
        self.ints[1] = self.epoch  # the order of epoch e is a function of (seed, e)
        status = train_epochs(
            X, y, order, epochs, bs, mode, seed, self.W, work, iwork, self.hyper, self.ints,
            losses,
        )
        if status == 1:
            raise FloatingPointError(
                f"the loss is not finite at epoch {self.epoch + int(self.ints[2]) + 1}, batch "
                f"{int(self.ints[3]) + 1}: lower the learning rate or check the data"
            )
        if status == 2:
            row = int(self.ints[2])
            raise IndexError(f"label {int(y[row])} (row {row}) is out of range")
        return losses

    def step(self, x, y):
        """One forward, backward and optimizer update on the batch (x, y); returns the loss."""
        return float(self._run(x, y, 1, len(x), GRADS | UPDATE, 0)[1])

    def fit(self, X, y, epochs=1, batch_size=32, shuffle=True, seed=0):
        """``epochs`` passes over (X, y) in one compiled call; returns the epochs' mean losses.

        With ``shuffle``, epoch e visits the samples in an order that is a function of
        (``seed``, e), e counting on across ``fit`` calls: symbp's ``fit(seed=seed)`` order.
        """
        mode = GRADS | UPDATE | STOP_NONFINITE | (SHUFFLE if shuffle else 0)
        losses = self._run(X, y, epochs, batch_size, mode, seed)
        self.epoch += epochs
        return losses[:epochs].tolist()

    def evaluate(self, X, y, batch_size=256):
        """The mean loss over (X, y); the parameters stay as they are."""
        return float(self._run(X, y, 1, batch_size, 0, 0)[0])

    def save(self, path=WEIGHTS):
        """Write the parameters, optimizer state and hyperparameters to ``path`` (.npz)."""
        arrays = {}
        if self.W is not None:
            arrays.update(W=self.W, hyper=self.hyper, ints=self.ints, epoch=self.epoch)
        for name in PREDICT_PARAMS:
            if name not in {p["name"] for p in IN_W}:
                arrays["param/" + name] = self.params[name]
        np.savez(path, **arrays)


_MODEL = None


def model():
    """The module's model, loaded from ``WEIGHTS`` on first use."""
    global _MODEL
    if _MODEL is None:
        _MODEL = Model()
    return _MODEL


def predict(X, batch_size=256):
    """``model().predict(X)``: the outputs for every row of X."""
    return model().predict(X, batch_size)


def train_step(x, y):
    """``model().step(x, y)``: one compiled forward, backward and update; returns the loss."""
    return model().step(x, y)


def fit(X, y, epochs=1, batch_size=32, shuffle=True, seed=0):
    """``model().fit(...)``: ``epochs`` passes over (X, y); returns the epochs' mean losses."""
    return model().fit(X, y, epochs, batch_size, shuffle, seed)


def save(path=WEIGHTS):
    """``model().save(path)``: the parameters and optimizer state to an .npz."""
    model().save(path)


if __name__ == "__main__":  # a smoke test: the outputs for one row of zeros
    shape = [1, *PREDICT_SPEC["x"]["shape"][1:]]
    out = predict(np.zeros(shape, PREDICT_SPEC["x"]["dtype"]))
    print(f"predict(zeros {shape}) -> {out.dtype}{list(out.shape)}: {out.ravel()[:4]}")
'''


# ---------------------------------------------------------------- exporting


# what a spec records of its lowering for symbp's own displays, not needed to run it
_LOWERING_RECORD = ("schedule", "summary", "kernels", "blas", "layout", "helpers")


def _portable(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy of a program's spec as the exported module keeps it: what its driver reads."""
    return {k: copy.deepcopy(v) for k, v in spec.items() if k not in _LOWERING_RECORD}


def _in_w(spec: dict[str, Any] | None) -> list[dict[str, Any]]:
    """What a training program keeps in W by name: its parameters and updated buffers."""
    return [*spec["params"], *spec.get("buffers", [])] if spec else []


def module_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if it can name an importable module (``name.py``), else a clear error."""
    path = Path(path)
    if path.suffix != ".py":
        raise ExportError(f"the module's file name must end in .py, not {path.name!r}")
    if not path.stem.isidentifier():
        raise ExportError(f"{path.stem!r} is not a Python module name (letters, digits, _)")
    return path


def export_model(compiled: Any, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``compiled`` (a ``CompiledModel``) as the module ``path`` and its weights beside it.

    Returns the paths of the module and of its ``.npz``. The training program is exported when
    it has been built (``fit``, ``step`` or ``build``); the inference program is built now if
    ``predict`` has not built it yet.
    """
    path = module_path(path)
    prog = compiled._train if compiled.optimizer is not None else None
    if prog is None and compiled._predict is None:
        raise ExportError(
            "nothing compiled to export yet: call fit(), step(), predict() or build(x, y) first"
        )
    if prog is not None:
        prog.sync_in()  # what Python changed since the last call: .data, lr, loaded state
        if compiled._predict is None:
            sx = prog.spec["data"]["x"]
            shape = [1, *sx["shape"][1:]]
            compiled._predict_program(np.zeros(shape, np.dtype(sx["dtype"])))
    predicted = compiled._predict
    pred_params, pred_spec = predicted.args, _portable(predicted.spec)

    programs = []
    if prog is not None:
        programs.append(("train", "train_epochs", "training", _Module(prog.source, prog.spec)))
    inference = _Module(predicted.source, predicted.spec)
    programs.append(("predict", "predict_batches", "inference", inference))
    helpers = _Helpers()
    imports: list[str] = ["import math", "import os", "", "import numpy as np"]
    bound = {"math", "os", "np"}
    defined: dict[str, str] = {}
    sections: list[str] = []
    for entry, new_name, what, m in programs:
        imports += [line for line in m.imports if line not in imports]
        bound |= m.bound
        for name, where in m.symbp.items():
            kernel = m.by_symbol.get(name)
            if kernel is not None:  # called by symbol in symbp: the kernel itself here
                helpers.add(kernel, f"{where.partition(':')[0]}:{kernel}")
                helpers.alias(name, kernel)
            else:
                helpers.add(name, where)
        texts = []
        for name, text in m.pieces:
            if name == entry:  # bound to another name: the driver's predict() takes this one
                texts += [text, f"{new_name} = {entry}"]
                continue
            if name in defined:
                if defined[name] != text:
                    raise ExportError(f"both programs define {name!r}, differently")
                continue
            defined[name] = text
            texts.append(text)
        sections.append(f"# ---------------------------------------------------------------- "
                        f"the {what} program\n\n{_join(texts)}")  # fmt: skip
    # the helpers' own imports (from symbp's source) that bind what no import here binds
    imports += [line for line in helpers.imports if not _bound(line) <= bound]

    # the parameters: the training program's memory, and those only inference reads
    arrays: dict[str, np.ndarray] = {}
    predict_names = shown_names([p.node.arg for p in pred_params])  # unique: tagged where alike
    train_spec = None
    if prog is not None:
        train_spec = _portable(prog.spec)
        arrays.update(W=prog.W.copy(), hyper=prog.hyper.copy(), ints=prog.ints.copy())
        arrays["epoch"] = np.array(0, np.int64)
        by_id = {id(p): ps["name"] for p, ps in zip(prog.params, prog.spec["params"])}
        predict_names = [by_id.get(id(p), str(p.node.arg)) for p in pred_params]
    # the model's names ("0.weight"), without the "#2" that tells apart same-named parameters
    # of one program (unless that would make two the same)
    every = [v["name"] for v in _in_w(train_spec)] + predict_names
    plain = {n: n.split("#")[0] for n in every}
    if len(set(plain.values())) == len(set(every)):
        predict_names = [plain[n] for n in predict_names]
        for v in _in_w(train_spec):
            v["name"] = plain[v["name"]]
    # in W: the parameters, and the module buffers training updates (BatchNorm's statistics)
    in_w = {v["name"] for v in _in_w(train_spec)}
    for name, p in zip(predict_names, pred_params):
        if name not in in_w:
            arrays[f"param/{name}"] = np.ascontiguousarray(p._data)

    title = (prog.program if prog is not None else predicted).title
    hyper_names = [[str(h) for h in group] for group in (train_spec or {}).get("hyper", [])]
    weights = path.with_suffix(".npz")
    doc = _docstring(path.stem, weights.name, title.rstrip("."), train_spec, pred_spec,
                     hyper_names)  # fmt: skip
    text = "\n".join(
        [
            doc,
            "# ruff: noqa",
            "# (the generated code as symbp runs it, unformatted and unlinted)",
            "",
            *imports,
            "",
            "# ---------------------------------------------------------------- symbp's helpers",
            "",
            _join(list(helpers.defs.values())),
            "",
            "",
            *[section + "\n\n" for section in sections],
            f"TRAIN_SPEC = {train_spec!r}",
            f"PREDICT_SPEC = {pred_spec!r}",
            f"PREDICT_PARAMS = {predict_names!r}  # predict_batches' parameter arguments",
            f"HYPER = {hyper_names!r}  # the order of Model.hyper, per optimizer group",
            "IN_W = [*TRAIN_SPEC['params'], *TRAIN_SPEC.get('buffers', [])] if TRAIN_SPEC else []",
            "",
            "",
            _DRIVER.replace("__WEIGHTS__", repr(weights.name)).replace("__MODES__", _MODES),
        ]
    )
    compile(text, str(path), "exec")  # a broken export fails here, not in the user's hands
    savez: Any = np.savez  # (numpy's stubs take the first ** key for allow_pickle)
    with atomic_write(weights) as f:
        savez(f, **arrays)
    with atomic_write(path) as f:
        f.write(text.encode())
    return path, weights


def _docstring(
    stem: str,
    weights: str,
    title: str,
    train_spec: dict[str, Any] | None,
    pred_spec: dict[str, Any],
    hyper: list[list[str]],
) -> str:
    """The exported module's docstring: what it is, its shapes and how to call it."""

    def shape(data: dict[str, Any]) -> str:
        return "[" + ",".join("N" if d is None else str(d) for d in data["shape"]) + "]"

    def para(text: str) -> list[str]:
        return textwrap.wrap(text, 96)

    out = {"shape": pred_spec["out_shape"]}
    lines = [
        f'"""{title}: exported by symbp; needs only numpy and numba.',
        "",
        *para(
            f"The parameters are in {weights} beside this file. Inputs X are "
            f"{pred_spec['x']['dtype']} {shape(pred_spec['x'])}, outputs "
            f"{pred_spec['out_dtype']} {shape(out)}."
        ),
        "",
        f"    import {stem}",
        f"    out = {stem}.predict(X)",
    ]
    if train_spec is not None:
        y = train_spec["data"]["y"]
        lines += [
            f"    losses = {stem}.fit(X, y, epochs=5, batch_size=32, seed=0)  "
            f"# y: {y['dtype']} {shape(y)}",
            f"    loss = {stem}.train_step(x, y)  # one minibatch",
            f"    {stem}.save()  # the trained parameters back to {weights}",
            "",
            *para(
                f"``{stem}.Model(path)`` loads another set of weights. The optimizer's "
                f"hyperparameters (``Model.hyper``): {', '.join('/'.join(g) for g in hyper)}."
            ),
        ]
    else:
        lines += ["", "Exported without a training program (compiled without a loss)."]
    lines += ["", f"    python {stem}.py  # a smoke test", '"""']
    return "\n".join(lines)
