"""Stage 1, trace: ``Tensor`` records every op into the IR as it runs.

A Tensor is a node of the graph plus, in eager use, its value: each op builds its node and
evaluates it at once with the NumPy reference executor, so a tutorial runs line by line and
``loss.backward()`` can derive the backward graph of exactly what ran. Traced for the compiler,
inputs carry no value and a symbolic batch dimension ``B``; the same code builds the same graph.
"""

from __future__ import annotations

import builtins
import itertools
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import sympy

from symbp import devices as _device
from symbp import dtypes, ops
from symbp.grad_mode import enable_grad, is_grad_enabled
from symbp.ir import (
    Node,
    ShapeError,
    float32,
    float64,
    int64,
    numel,
    shape_error,
    shape_str,
    toposort,
    type_str,
    where,
)
from symbp.reference import evaluate

_default_dtype = [float32]
_ids = itertools.count()


def set_default_dtype(dtype: Any) -> None:
    """Make ``dtype`` (symbp.float32 or symbp.float64) the dtype of new float tensors."""
    _default_dtype[0] = np.dtype(dtype)


def get_default_dtype() -> np.dtype:
    return _default_dtype[0]


def _as_array(data: Any, dtype: Any = None) -> np.ndarray:
    if isinstance(data, Tensor):
        data = data.numpy()
    if dtype is not None:
        return np.array(data, dtype=np.dtype(dtype))
    keeps_dtype = isinstance(data, (np.ndarray, np.generic))
    arr = np.array(data)
    if arr.dtype.kind == "f" and not keeps_dtype:
        arr = arr.astype(_default_dtype[0])  # Python floats become the default float, as torch
    elif arr.dtype.kind in "iu":
        arr = arr.astype(int64)
    elif arr.dtype.kind not in "fb":
        raise TypeError(f"symbp.tensor: cannot make a tensor of {arr.dtype} data")
    return arr


def _no_comparison(x: Tensor, op: str, other: Any) -> NotImplementedError:
    them = f"a {shape_str(other.shape)} tensor" if isinstance(other, Tensor) else repr(other)
    return NotImplementedError(
        f"x {op} y on a {shape_str(x.shape)} tensor and {them}: PyTorch compares elementwise and "
        f"gives a bool tensor; symbp has no comparison ops yet (Python's fallback would compare "
        f"the objects). Compare the values, x.numpy() {op} y.numpy(); test identity with `is`"
        + where()
    )


def _leaf(arr: np.ndarray) -> Tensor:
    """A new leaf holding ``arr`` itself (no copy): ``.data``, ``.grad``, results under no_grad."""
    return Tensor(Node("input", (), f"t{next(_ids)}", arr.shape, arr.dtype), arr)


def _operand(x: Tensor, what: str, other: Any) -> Any:
    """The values of an in-place op's other operand (a number stays a number)."""
    if not isinstance(other, Tensor):
        return other
    if other.requires_grad and is_grad_enabled():
        raise NotImplementedError(
            f"x.{what} with an operand that requires grad, outside no_grad(): PyTorch would make "
            f"x part of that graph; symbp does in-place updates only on constants. Write "
            f"x = x {_SYMBOLS.get(what, '...')} y, or update inside symbp.no_grad()" + where()
        )
    return other.numpy()


_SYMBOLS = {"add_": "+", "sub_": "-", "mul_": "*", "div_": "/", "pow_": "**"}


class Tensor:
    """A node of the traced graph, with its value when it has one (eager mode)."""

    _version: int  # bumped by each in-place update

    __array_priority__ = 1000  # so numpy_array * tensor calls Tensor.__rmul__

    def __init__(
        self,
        node: Node,
        value: np.ndarray | None = None,
        requires_grad: bool = False,
        parents: tuple[Tensor, ...] = (),
    ):
        self._node = node
        # an array, never a NumPy scalar: in-place updates write into it
        self._value = value if value is None or type(value) is np.ndarray else np.asarray(value)
        self.requires_grad = requires_grad
        self._parents = parents
        # the parents' versions when this was computed: an in-place update of one since
        # would make backward read other values than the forward did (PyTorch's check)
        self._versions = tuple(p._version for p in parents)
        self._version = 0
        self._grad: np.ndarray | None = None
        self._grad_view: Tensor | None = None

    # ------------------------------------------------------------ basic attributes

    @property
    def node(self) -> Node:
        return self._node

    @property
    def shape(self) -> tuple:
        return self.node.shape

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    @property
    def dtype(self) -> Any:
        # A symbp dtype (prints symbp.float32); typed Any because it stands in for the NumPy
        # dtype it equals wherever NumPy takes one (np.zeros(3, x.dtype), arr.astype(x.dtype)).
        return dtypes.of(self.node.dtype)

    @property
    def device(self) -> _device.device:
        return _device.CPU

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """As ``Tensor.to``: ``to(dtype)``, ``to('cpu')``, ``to(device, dtype)``, ``to(other)``."""
        _, dtype = _device.parse_to(args, kwargs, "Tensor.to")
        return self if dtype is None else cast(self, dtype)

    def cpu(self) -> Tensor:
        return self

    def cuda(self, device: Any = None, non_blocking: bool = False) -> Tensor:
        _device.check("cuda" if device is None else device, "Tensor.cuda")
        return self

    @property
    def ndim(self) -> int:
        return self.node.ndim

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> Any:
        return numel(self.shape)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")  # PyTorch's words
        try:
            return int(self.shape[0])
        except TypeError:
            raise TypeError(
                f"len() of a traced {shape_str(self.shape)} tensor: its first dimension is the "
                f"symbolic {self.shape[0]}, known only when the program runs; use x.shape[0]"
            ) from None

    @property
    def has_value(self) -> bool:
        return self.value is not None

    @property
    def value(self) -> np.ndarray | None:
        return self._value

    def numpy(self) -> np.ndarray:
        if self.value is None:
            raise RuntimeError(
                f"this tensor ({shape_str(self.shape)}) is symbolic: it was traced without "
                f"values, so it has none to return"
            )
        return self.value

    def item(self) -> float:
        v = self.numpy()
        if v.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {list(v.shape)}")
        return v.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __float__(self) -> float:
        return float(self.item())

    def __bool__(self) -> bool:
        # Python's default would be len(x) != 0: `if x:` true for any non-empty tensor.
        v = self.value
        if v is None:
            raise RuntimeError(
                f"bool() of a traced {shape_str(self.shape)} tensor: its value is known only when "
                f"the program runs, so Python control flow (if, while, and, or) cannot depend "
                f"on it"
            )
        if v.size != 1:
            amount = "more than one value" if v.size else "no values"
            raise RuntimeError(f"Boolean value of Tensor with {amount} is ambiguous")
        return bool(v.reshape(()).item())

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        """``np.asarray(x)``: the value, as PyTorch gives it (without, NumPy would make an
        object array holding the tensor)."""
        if self.requires_grad:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead (PyTorch's rule for np.asarray; symbp's x.numpy() also works)"
            )
        arr = self.numpy()  # shared, as PyTorch's np.asarray(t) shares the tensor's memory
        if dtype is not None and np.dtype(dtype) != arr.dtype:
            if copy is False:
                raise ValueError(f"np.asarray(x, {np.dtype(dtype)}, copy=False) of {arr.dtype}")
            return arr.astype(dtype)
        return arr.copy() if copy else arr

    # ------------------------------------------------------------ what symbp does not do yet
    # Each of these means something in PyTorch (an elementwise comparison, an iteration over
    # rows) that Python's fallback would silently replace with something else
    # (identity, rebinding the name, getitem(0), getitem(1), ...): a clear error until symbp
    # has the op. Hashing stays by identity, so tensors still key dicts and fill sets. (`x @= y`
    # is left to Python: PyTorch has no in-place matmul either, and rebinds the name too.)

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:  # type: ignore[override]
        if other is None:
            return False  # as PyTorch: `x == None` is False
        raise _no_comparison(self, "==", other)

    def __ne__(self, other: object) -> bool:  # type: ignore[override]
        if other is None:
            return True
        raise _no_comparison(self, "!=", other)

    def __lt__(self, other: Any) -> Any:
        raise _no_comparison(self, "<", other)

    def __le__(self, other: Any) -> Any:
        raise _no_comparison(self, "<=", other)

    def __gt__(self, other: Any) -> Any:
        raise _no_comparison(self, ">", other)

    def __ge__(self, other: Any) -> Any:
        raise _no_comparison(self, ">=", other)

    def __contains__(self, item: Any) -> bool:
        raise NotImplementedError(
            f"`v in x` on a {shape_str(self.shape)} tensor: PyTorch tests (x == v).any() "
            f"elementwise; symbp has no comparison ops yet: test the values, v in x.numpy()"
        )

    def __iter__(self) -> Any:
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")  # PyTorch's words
        raise NotImplementedError(
            f"iterating over a {shape_str(self.shape)} tensor: PyTorch yields x[0], x[1], ... "
            f"(tensors of one dimension less); symbp has no integer indexing yet: iterate over "
            f"the values, x.tolist() or x.numpy()"
        )

    # ------------------------------------------------------------ in place
    # PyTorch's rules: an update writes into this tensor's memory (every alias sees it), keeps
    # its shape and dtype, and is refused on a leaf that requires grad while grad mode is on.
    # symbp updates only constants (a leaf, or any tensor no graph needs): an update of a
    # tensor inside a graph that requires grad would need version-checked saved values.

    def _writable(self, what: str) -> np.ndarray:
        """The array an in-place op may write, after PyTorch's checks."""
        if self.requires_grad:
            if self.is_leaf and is_grad_enabled():
                raise RuntimeError(
                    "a leaf Variable that requires grad is being used in an in-place operation."
                    f" (x.{what}; update parameters inside symbp.no_grad())" + where()
                )
            if not self.is_leaf:
                raise NotImplementedError(
                    f"x.{what} on a {shape_str(self.shape)} tensor computed from tensors that "
                    f"require grad: symbp does in-place updates only on leaves and constants; "
                    f"write x = x {_SYMBOLS.get(what, '...')} y (a new tensor)" + where()
                )
        if self.value is None:
            raise NotImplementedError(
                f"x.{what} on a traced {shape_str(self.shape)} tensor: in-place updates need "
                f"values; inside a traced model write x = x {_SYMBOLS.get(what, '...')} y"
            )
        return self.value

    def _assign(self, what: str, values: Any) -> Tensor:
        """Write ``values`` (broadcast to this shape) into this tensor's memory."""
        dst = self._writable(what)
        values = np.asarray(values)
        if np.broadcast_shapes(values.shape, dst.shape) != dst.shape:
            raise RuntimeError(  # PyTorch's words
                f"output with shape {list(dst.shape)} doesn't match the broadcast shape "
                f"{list(np.broadcast_shapes(values.shape, dst.shape))}" + where()
            )
        if not np.can_cast(values.dtype, dst.dtype, "same_kind"):
            names = {"f": "Float", "i": "Long", "u": "Long", "b": "Bool"}
            raise RuntimeError(
                f"result type {names.get(values.dtype.kind, values.dtype)} can't be cast to the "
                f"desired output type {names.get(dst.dtype.kind, dst.dtype)}" + where()
            )
        dst[...] = values
        self._changed()
        return self

    def _changed(self) -> None:
        self._version += 1
        if self._parents:  # now a constant: its node's formula no longer gives its values
            self._node = Node("input", (), f"t{next(_ids)}", self.shape, self.dtype)
            self._parents, self._versions = (), ()

    def _binary_(self, what: str, fn: Any, other: Any, alpha: Any = 1) -> Tensor:
        dst = self._writable(what)
        y = _operand(self, what, other)
        if alpha != 1:
            y = np.multiply(alpha, y)
        with np.errstate(all="ignore"):  # inf and nan as PyTorch gives them
            return self._assign(what, fn(dst, y))

    def _unary_(self, what: str, fn: Any) -> Tensor:
        dst = self._writable(what)
        if dst.dtype.kind != "f" and what in ("exp_", "log_", "sqrt_"):
            raise RuntimeError(
                f"result type Float can't be cast to the desired output type Long ({what})"
            )
        with np.errstate(all="ignore"):
            return self._assign(what, fn(dst))

    def add_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._binary_("add_", np.add, other, alpha)

    def sub_(self, other: Any, alpha: Any = 1) -> Tensor:
        return self._binary_("sub_", np.subtract, other, alpha)

    def mul_(self, other: Any) -> Tensor:
        return self._binary_("mul_", np.multiply, other)

    def div_(self, other: Any) -> Tensor:
        return self._binary_("div_", np.true_divide, other)

    def pow_(self, exponent: Any) -> Tensor:
        return self._binary_("pow_", np.power, exponent)

    def __iadd__(self, other: Any) -> Tensor:
        return self.add_(other)

    def __isub__(self, other: Any) -> Tensor:
        return self.sub_(other)

    def __imul__(self, other: Any) -> Tensor:
        return self.mul_(other)

    def __itruediv__(self, other: Any) -> Tensor:
        return self.div_(other)

    def __ipow__(self, other: Any) -> Tensor:
        return self.pow_(other)

    def neg_(self) -> Tensor:
        return self._unary_("neg_", np.negative)

    def abs_(self) -> Tensor:
        return self._unary_("abs_", np.abs)

    def exp_(self) -> Tensor:
        return self._unary_("exp_", np.exp)

    def log_(self) -> Tensor:
        return self._unary_("log_", np.log)

    def sqrt_(self) -> Tensor:
        return self._unary_("sqrt_", np.sqrt)

    def clamp_(self, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002 (PyTorch's names)
        if min is None and max is None:
            raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
        dst = self._writable("clamp_")
        lo = None if min is None else _operand(self, "clamp_", min)
        hi = None if max is None else _operand(self, "clamp_", max)
        out = dst if lo is None else np.maximum(dst, lo)  # NaN stays NaN, as PyTorch
        out = out if hi is None else np.minimum(out, hi)  # max wins where min > max, as PyTorch
        return self._assign("clamp_", out)

    def clamp_min_(self, min: Any) -> Tensor:  # noqa: A002
        return self.clamp_(min=min)

    def clamp_max_(self, max: Any) -> Tensor:  # noqa: A002
        return self.clamp_(max=max)

    def zero_(self) -> Tensor:
        return self._assign("zero_", np.zeros((), self.dtype))

    def fill_(self, value: Any) -> Tensor:
        v = np.asarray(_operand(self, "fill_", value))
        if v.ndim:
            raise RuntimeError(
                f"fill_ only supports 0-dimension value tensor but got tensor with {v.ndim} "
                f"dimensions."
            )
        return self._assign("fill_", v.astype(self.dtype))  # fill_ casts, as PyTorch

    def copy_(self, src: Any) -> Tensor:
        v = np.asarray(_operand(self, "copy_", src))
        return self._assign("copy_", v.astype(self.dtype))  # copy_ converts the dtype

    def uniform_(self, a: float = 0.0, b: float = 1.0) -> Tensor:
        from symbp.nn.init import generator

        shape = self._writable("uniform_").shape
        return self._assign("uniform_", generator().uniform(a, b, shape))

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        from symbp.nn.init import generator

        shape = self._writable("normal_").shape
        return self._assign("normal_", generator().normal(mean, std, shape))

    def __setitem__(self, key: Any, value: Any) -> None:
        """``x[key] = v`` for basic keys (integers, slices, ``...``, ``None``) and bool masks,
        where NumPy and PyTorch agree; integer-array keys raise."""
        keys = key if isinstance(key, tuple) else (key,)
        for k in keys:
            basic = k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer))
            mask = isinstance(k, (Tensor, np.ndarray)) and k.dtype.kind == "b"
            if not (basic or mask) or isinstance(k, bool):
                raise NotImplementedError(
                    f"x[{_show_index(k)}] = v on a {shape_str(self.shape)} tensor: symbp writes "
                    f"with integers, slices, ..., None and bool masks; for integer-array "
                    f"indices write the NumPy values, x.numpy()[...] = v" + where()
                )
        dst = self._writable("__setitem__")
        keys = tuple(k.numpy() if isinstance(k, Tensor) else k for k in keys)
        v = np.asarray(_operand(self, "__setitem__", value))
        if not np.can_cast(v.dtype, dst.dtype, "same_kind") and v.ndim:
            raise RuntimeError(
                f"Index put requires the source and destination dtypes match, "
                f"got {dst.dtype} for the destination and {v.dtype} for the source."
            )
        dst[keys] = v
        self._changed()

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        if self.value is None:
            return f"Tensor(<traced {type_str(self.node)}>{grad})"
        body = np.array2string(self.value, separator=", ", precision=4)
        return f"tensor({body}{grad})"

    # ------------------------------------------------------------ autograd

    def detach(self) -> Tensor:
        return _unary_node(ops.detach(self.node), self, requires_grad=False)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        if self.requires_grad and not self.is_leaf and not requires_grad:
            raise RuntimeError(  # PyTorch's words
                "you can only change requires_grad flags of leaf variables. If you want to use a "
                "computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        if requires_grad and self.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        if requires_grad and self._parents:
            if self.value is None:
                raise NotImplementedError(
                    f"requires_grad_() on a traced {shape_str(self.shape)} tensor computed from "
                    f"others: make it an input of the traced function instead" + where()
                )
            self._changed()  # a tensor no graph needed: it becomes a leaf of new graphs
            self._version -= 1  # its values did not change
        self.requires_grad = bool(requires_grad)
        return self

    @property
    def is_leaf(self) -> bool:
        """As PyTorch: a tensor that does not require grad, or one made by the user."""
        return not self.requires_grad or (self.node.op == "input" and not self._parents)

    @property
    def grad(self) -> Tensor | None:
        """The accumulated gradient, a Tensor sharing the stored array's memory (so
        ``x.grad.zero_()`` clears it); None until a backward reaches this leaf."""
        g = self._grad
        if g is None:
            return None
        view = self._grad_view
        if view is None or view._value is not g:
            view = self._grad_view = _leaf(g)
        return view

    @grad.setter
    def grad(self, value: Any) -> None:
        if value is None:
            self._grad = self._grad_view = None
            return
        arr = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        if self.value is not None and arr.shape != self.value.shape:
            raise RuntimeError(  # PyTorch's words
                f"attempting to assign a gradient of size '{list(arr.shape)}' to a tensor of "
                f"size '{list(self.value.shape)}'. Please ensure that the gradient and the "
                f"tensor are the same size"
            )
        self._grad = arr
        self._grad_view = value if isinstance(value, Tensor) and not value._parents else None

    @property
    def data(self) -> Tensor:
        """The values as a new leaf that does not require grad, sharing this tensor's memory:
        updates through it (``x.data.sub_(...)``) change this tensor and record no graph."""
        if self.value is None:
            return self.detach()
        return _leaf(self.value)

    @data.setter
    def data(self, value: Any) -> None:
        arr = _as_array(value) if not isinstance(value, Tensor) else value.numpy()
        if arr.shape != self.shape or arr.dtype != self.dtype or self._parents:
            self._node = Node("input", (), f"t{next(_ids)}", arr.shape, arr.dtype)
            self._parents, self._versions = (), ()
        self._value = arr

    def backward(self) -> None:
        """Derive the gradient of this scalar symbolically and add it to every leaf's ``.grad``."""
        from symbp.api import backward

        backward(self)

    # ------------------------------------------------------------ arithmetic

    def __add__(self, other):
        return binary("add", self, other)

    def __radd__(self, other):
        return binary("add", other, self)

    def __sub__(self, other):
        return binary("sub", self, other)

    def __rsub__(self, other):
        return binary("sub", other, self)

    def __mul__(self, other):
        return binary("mul", self, other)

    def __rmul__(self, other):
        return binary("mul", other, self)

    def __truediv__(self, other):
        return binary("div", self, other)

    def __rtruediv__(self, other):
        return binary("div", other, self)

    def __pow__(self, other):
        return binary("pow", self, other)

    def __rpow__(self, other):
        return binary("pow", other, self)

    def __neg__(self):
        return unary("neg", self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    # ------------------------------------------------------------ functions as methods

    def exp(self):
        return unary("exp", self)

    def log(self):
        return unary("log", self)

    def sqrt(self):
        return unary("sqrt", self)

    def abs(self):
        return unary("abs", self)

    def sigmoid(self):
        return unary("sigmoid", self)

    def tanh(self):
        return unary("tanh", self)

    def relu(self):
        return unary("relu", self)

    def float(self):
        return cast(self, float32)

    def double(self):
        return cast(self, float64)

    def long(self):
        return cast(self, int64)

    def half(self):
        return cast(self, dtypes.to_numpy(dtypes.float16, "Tensor.half"))  # raises: not stored

    def sum(self, dim=None, keepdim: bool = False):
        return sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return mean(self, dim, keepdim)

    def max(self, dim=None, keepdim: bool = False):
        return max(self, dim, keepdim)

    def softmax(self, dim: int = -1):
        return softmax(self, dim)

    def log_softmax(self, dim: int = -1):
        return log_softmax(self, dim)

    def logsumexp(self, dim: int = -1, keepdim: bool = False):
        return logsumexp(self, dim, keepdim)

    def reshape(self, *shape):
        return reshape(self, *shape)

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int = 0, dim1: int = 1):
        perm = list(range(self.ndim))
        perm[dim0], perm[dim1] = perm[dim1], perm[dim0]
        return permute(self, *perm)

    def permute(self, *dims):
        return permute(self, *dims)

    @property
    def T(self):
        return permute(self, *reversed(range(self.ndim)))

    def t(self):
        return self.T

    def unsqueeze(self, dim: int):
        shape = list(self.shape)
        shape.insert(dim % (self.ndim + 1), 1)
        return reshape(self, *shape)

    def squeeze(self, dim: int | None = None):
        if dim is None:
            return reshape(self, *[d for d in self.shape if d != 1])
        shape = list(self.shape)
        if shape[dim] == 1:
            shape.pop(dim)
        return reshape(self, *shape)

    # -- issue 12/13 . math (rows of this family go below this line)
    #
    # -- issue 12/13 . logic (rows of this family go below this line)
    #
    # -- issue 12/13 . indexing (rows of this family go below this line)
    #
    # -- issue 12/13 . shaping (rows of this family go below this line)
    #
    # -- issue 12/13 . reductions (rows of this family go below this line)
    #
    # -- issue 12/13 . linalg (rows of this family go below this line)
    #
    def matmul(self, other):
        return matmul(self, other)

    def mm(self, other):
        return mm(self, other)

    def bmm(self, other):
        return bmm(self, other)

    def mv(self, vec):
        return mv(self, vec)

    def dot(self, other):
        return dot(self, other)

    def outer(self, other):
        return outer(self, other)

    ger = outer

    def inner(self, other):
        return inner(self, other)

    def addmm(self, mat1, mat2, *, beta=1, alpha=1):
        return addmm(self, mat1, mat2, beta=beta, alpha=alpha)

    def addmv(self, mat, vec, *, beta=1, alpha=1):
        return addmv(self, mat, vec, beta=beta, alpha=alpha)

    def baddbmm(self, batch1, batch2, *, beta=1, alpha=1):
        return baddbmm(self, batch1, batch2, beta=beta, alpha=alpha)

    def addbmm(self, batch1, batch2, *, beta=1, alpha=1):
        return addbmm(self, batch1, batch2, beta=beta, alpha=alpha)

    def tril(self, diagonal: int = 0):
        return tril(self, diagonal)

    def triu(self, diagonal: int = 0):
        return triu(self, diagonal)

    def diagonal(self, offset: int = 0, dim1: int = 0, dim2: int = 1):
        return diagonal(self, offset, dim1, dim2)

    def diag(self, diagonal: int = 0):
        return diag(self, diagonal)

    def diag_embed(self, offset: int = 0, dim1: int = -2, dim2: int = -1):
        return diag_embed(self, offset, dim1, dim2)

    def trace(self):
        return matrix_trace(self)

    # -- issue 12/13 . autograd (rows of this family go below this line)
    #
    def __getitem__(self, key):
        return index(self, key)


class Parameter(Tensor):
    """A trainable tensor: ``requires_grad=True`` and a NumPy ``.data`` you may assign."""

    _registry: weakref.WeakValueDictionary[str, Parameter] = weakref.WeakValueDictionary()

    def __init__(self, data: Any, requires_grad: bool = True):
        arr = _as_array(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(_default_dtype[0])
        self.data = arr
        self._name = ""
        self.rename(f"param{next(_ids)}")
        super().__init__(self.node, None, requires_grad)

    def rename(self, name: str) -> None:
        """Give the parameter its model name (``linear1.weight``); leaves are named by it."""
        if self._name == name:
            return
        base, n = name, 1
        while (other := Parameter._registry.get(name)) is not None and other is not self:
            n += 1
            name = f"{base}#{n}"
        Parameter._registry[name] = self
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def data(self) -> Tensor:
        return _leaf(self._data)

    @data.setter
    def data(self, value: Any) -> None:
        if isinstance(value, Tensor) and value.value is getattr(self, "_data", None):
            return  # p.data -= ...: updated in place already
        # Assignment keeps the parameter's dtype (a NumPy literal is float64 where the ported
        # torch.tensor literal was float32); module.double() / .to() change it on purpose.
        current = getattr(self, "_data", None)
        arr = _as_array(value)  # a Tensor's values are copied: its own stay its own
        dtype = current.dtype if current is not None else arr.dtype
        if dtype.kind != "f":
            dtype = _default_dtype[0]
        self._data = arr.astype(dtype, copy=arr is value)

    def set_dtype(self, dtype: Any) -> None:
        self._data = self._data.astype(np.dtype(dtype))

    @property
    def node(self) -> Node:  # a leaf named after the parameter, with its current shape and dtype
        return Node("input", (), self._name, self._data.shape, self._data.dtype)

    @property
    def value(self) -> np.ndarray:
        return self._data

    def __repr__(self) -> str:
        return f"Parameter({self.name}, {np.array2string(self._data, precision=4)})"


def tensor(data: Any, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A leaf tensor holding ``data`` (a copy), as ``torch.tensor``."""
    arr = _as_array(data, dtype)
    if requires_grad and arr.dtype.kind != "f":
        raise TypeError(f"only float tensors can require grad, got {arr.dtype}")
    node = Node("input", (), f"t{next(_ids)}", arr.shape, arr.dtype)
    return Tensor(node, arr, requires_grad)


def placeholder(name: str, shape: Sequence, dtype: Any = float32) -> Tensor:
    """A value-less input for tracing; shape entries may be symbolic (``symbp.B``)."""
    return Tensor(Node("input", (), name, tuple(shape), np.dtype(dtype)))


# ---------------------------------------------------------------- applying ops to tensors


def _lift(x: Any, like: Tensor | None = None) -> Tensor | sympy.Expr:
    """Tensors stay, Python numbers become formula constants, arrays become leaf tensors."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float, np.integer, np.floating, sympy.Expr)) and not isinstance(
        x, np.ndarray
    ):
        return ops.to_expr(x)
    dtype = like.dtype if like is not None and np.asarray(x).dtype.kind == "f" else None
    return tensor(x, dtype=dtype)


def _result(node: Node, args: Sequence[Tensor], requires_grad: bool | None = None) -> Tensor:
    """Wrap a new node, evaluating it now when every argument has a value."""
    if not is_grad_enabled():
        # no graph: an eager result is a constant leaf, a traced one is cut off from the
        # gradient (either way nothing computed here is differentiated later)
        with enable_grad():
            if not all(a.has_value for a in args):
                return _result(ops.detach(node), args, False)
            out = _result(node, args, False)
        return Tensor(Node("input", (), f"t{next(_ids)}", node.shape, node.dtype), out.value)
    if requires_grad is None:
        requires_grad = any(a.requires_grad for a in args)
    value = None
    if all(a.has_value for a in args):
        env: dict[Node, np.ndarray] = {a.node: a.value for a in args}  # type: ignore[misc]
        if any(n.op == "input" and n not in env for n in toposort([node], known=env)):
            # a builder folded through an argument (a reshape of a reshape): look further back
            stack = list(args)
            while stack:
                t = stack.pop()
                if t.value is not None:
                    env.setdefault(t.node, t.value)
                stack.extend(t._parents)
        value = evaluate([node], env)[0]
    return Tensor(node, value, requires_grad, tuple(args))


def _unary_node(node: Node, x: Tensor, requires_grad: bool | None = None) -> Tensor:
    return _result(node, [x], requires_grad)


def unary(name: str, x: Any) -> Tensor:
    x = _lift(x)
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expects a Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        x = cast(x, _default_dtype[0])
    return _unary_node(ops.apply(name, x.node), x)


def binary(name: str, a: Any, b: Any) -> Tensor:
    if isinstance(a, (float, np.floating)) or isinstance(b, (float, np.floating)):
        # an integer tensor with a Python float (n * 0.5, n + 1.0) computes in float, as PyTorch
        a, b = (cast(v, _default_dtype[0]) if _is_int_tensor(v) else v for v in (a, b))
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    return nary(name, _lift(a, like), _lift(b, like))


def _is_int_tensor(v: Any) -> bool:
    return isinstance(v, Tensor) and v.dtype.kind != "f"


def nary(name: str, *args: Tensor | sympy.Expr) -> Tensor:
    """Apply a named elementwise op with NumPy broadcasting; numbers fold into the formula."""
    tensors = [a for a in args if isinstance(a, Tensor)]
    floats = {t.dtype for t in tensors if t.dtype.kind == "f"}
    target = floats.pop() if len(floats) == 1 else None
    if len(floats) > 1:
        raise ShapeError(
            f"{name}: mixes float32 and float64 tensors; convert one with .float() or .double()"
            + where()
        )
    if target is None:
        target = _default_dtype[0] if name in ("div", "sqrt", "exp", "log") else None
    if target is not None:  # integer operands join the float computation
        args = tuple(cast(a, target) if isinstance(a, Tensor) else a for a in args)
        tensors = [a for a in args if isinstance(a, Tensor)]
    shape = ops.broadcast_shapes(*(t.shape for t in tensors), what=name)
    nodes = [ops.broadcast_to(t.node, shape) if isinstance(t, Tensor) else t for t in args]
    return _result(ops.apply(name, *nodes, shape=shape), tensors)


def cast(x: Tensor, dtype: Any) -> Tensor:
    node = ops.cast(x.node, np.dtype(dtype))
    return x if node is x.node else _unary_node(node, x, x.requires_grad and node.dtype.kind == "f")


def matmul(a: Any, b: Any) -> Tensor:
    """``a @ b`` with PyTorch's rules for every rank: 1-D · 1-D is a dot product, a 1-D
    operand gains an axis that the result loses, batch axes broadcast
    (``ops.batched_matmul``)."""
    a, b = _lift(a), _lift(b)
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    if a.ndim == 0 or b.ndim == 0:
        raise shape_error(
            f"matmul: both arguments need at least 1 dimension, got {shape_str(a.shape)} @ "
            f"{shape_str(b.shape)}"
        )
    if a.ndim == 1 and b.ndim == 1:
        if a.shape[0] != b.shape[0]:
            raise shape_error(
                f"matmul: inner dimensions differ: {shape_str(a.shape)} @ {shape_str(b.shape)} "
                f"({a.shape[0]} != {b.shape[0]})"
            )
        return sum(a * b)
    x = reshape(a, 1, *a.shape) if a.ndim == 1 else a
    y = reshape(b, *b.shape, 1) if b.ndim == 1 else b
    out = _result(ops.batched_matmul(x.node, y.node), [x, y])
    if a.ndim == 1:  # the row axis it gained, second to last
        out = reshape(out, *out.shape[:-2], out.shape[-1])
    if b.ndim == 1:
        out = reshape(out, *out.shape[:-1])
    return out


def _axes(x: Tensor, dim) -> tuple[int, ...]:
    if dim is None:
        return tuple(range(x.ndim))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    for d in dims:
        if not -x.ndim <= d < builtins.max(x.ndim, 1):
            raise shape_error(f"dim {d} out of range for a tensor of shape {shape_str(x.shape)}")
    return tuple(d % x.ndim for d in dims) if x.ndim else ()


def sum(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return _unary_node(ops.sum_(x.node, _axes(x, dim), keepdim), x)


def mean(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    if x.dtype.kind != "f":  # the mean of integers is a float (an int mean would truncate)
        x = cast(x, _default_dtype[0])
    axes = _axes(x, dim)
    count = sympy.sympify(numel(tuple(x.shape[a] for a in axes)))
    if count.is_zero:  # a mean over no elements is nan, as PyTorch's (1/0 is SymPy's zoo)
        return sum(x, dim, keepdim) * sympy.nan
    return sum(x, dim, keepdim) * (1 / count)


class MaxResult(NamedTuple):
    values: Tensor
    indices: Tensor


def max(x: Tensor, dim=None, keepdim: bool = False):  # noqa: A001
    """``x.max()`` is a scalar; ``x.max(dim)`` is (values, indices), as in PyTorch."""
    axes = _axes(x, dim)
    if dim is not None and x.ndim == 1:
        # A max over every axis spreads ties (x.max()); x.max(0) sends the gradient to the
        # first maximum, as PyTorch does: take it along axis 1 of the [1, n] row instead.
        row = max(reshape(x, 1, *x.shape), 1, keepdim).values
        out = reshape(row, *row.shape[1:])
    else:
        out = _unary_node(ops.max_(x.node, axes, keepdim), x)
    if dim is None:
        return out
    idx = None
    if x.has_value:
        idx = np.argmax(x.numpy(), axis=_axes(x, dim)[0])
        idx = np.expand_dims(idx, dim) if keepdim else idx
    indices = Tensor(Node("input", (), f"t{next(_ids)}", out.shape, int64), idx)
    return MaxResult(out, indices)


def reshape(x: Tensor, *shape) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    want: list[Any] = list(shape)
    if want.count(-1) > 1:
        raise shape_error(f"reshape: only one dimension can be -1, got {want}")
    if -1 in want:
        known = numel(tuple(d for d in want if d != -1))
        # sympify first: int / int is a float, and a shape of 4.0 is not the shape 4
        inferred = sympy.simplify(sympy.sympify(numel(x.shape)) / known)
        if inferred.is_integer is False:
            raise shape_error(f"reshape: cannot reshape {shape_str(x.shape)} to {list(shape)}")
        want[want.index(-1)] = inferred
    dims = tuple(int(d) if isinstance(d, sympy.Integer) else d for d in want)
    return _unary_node(ops.reshape(x.node, dims), x)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    s, e = start_dim % x.ndim, end_dim % x.ndim
    return reshape(x, *x.shape[:s], numel(x.shape[s : e + 1]), *x.shape[e + 1 :])


def permute(x: Tensor, *dims) -> Tensor:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    return _unary_node(ops.transpose(x.node, tuple(d % x.ndim for d in dims)), x)


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x - max) / sum(exp(x - max)): the max shift is exact, so it carries no gradient."""
    e = (x - max(x.detach(), dim, keepdim=True).values).exp()
    return e / sum(e, dim, keepdim=True)


def logsumexp(x: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    m = max(x.detach(), dim, keepdim=True).values
    out = m + sum((x - m).exp(), dim, keepdim=True).log()
    return out if keepdim else out.squeeze(dim)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    # (x - m) - log(sum(exp(x - m))), not x - logsumexp(x): x - (m + ...) loses ulp(m)
    z = x - max(x.detach(), dim, keepdim=True).values
    return z - sum(z.exp(), dim, keepdim=True).log()


def index(x: Tensor, key: Any) -> Tensor:
    """``x[key]``. Of PyTorch's indexing symbp has only the pick of a loss, ``x[range(n),
    labels]``: entry labels[i] of each row i, exactly as PyTorch. Every other form raises, naming
    the form, rather than give an answer PyTorch would not (``x[:, labels]`` selects columns)."""
    if isinstance(key, tuple) and len(key) == 2 and x.ndim == 2:
        rows, labels = key
        if _is_integer_index(rows) and _is_integer_index(labels):
            return _pick_by_index(x, rows, labels)
    keys = key if isinstance(key, tuple) else (key,)
    shown = ", ".join(_show_index(k) for k in keys)
    meaning = ""
    columns = len(keys) == 2 and isinstance(keys[0], slice) and keys[0] == slice(None)
    if columns and _is_integer_index(keys[1]):
        meaning = (
            " PyTorch selects whole columns here (a result of shape [n, len(labels)]), not one "
            "entry per row."
        )
    raise NotImplementedError(
        f"x[{shown}] on a {shape_str(x.shape)} tensor: symbp does not implement this indexing form "
        f"yet.{meaning} It supports x[range(n), labels] (entry labels[i] of each row i, as "
        f"PyTorch); for values, index x.numpy()" + where()
    )


def _index_array(k: Any) -> np.ndarray | None:
    """A list or array index as NumPy reads it; None for what NumPy cannot (ragged lists)."""
    try:
        return np.asarray(k)
    except (TypeError, ValueError, RuntimeError):
        return None


def _is_integer_index(k: Any) -> bool:
    """An integer index array (PyTorch's advanced indexing): not a bool mask, not a scalar."""
    if isinstance(k, range):
        return True
    if isinstance(k, Tensor):
        return k.dtype.kind in "iu"
    if isinstance(k, (list, np.ndarray)) and (arr := _index_array(k)) is not None:
        return arr.ndim > 0 and (arr.dtype.kind in "iu" or (arr.size == 0 and isinstance(k, list)))
    return False


def _show_index(k: Any) -> str:
    """One entry of an index as Python wrote it, or what it is: ``:``, ``1:5:2``, ``None``,
    ``...``, ``3``, ``<bool mask [4]>``, ``<integer indices [3]>``."""
    if isinstance(k, slice):
        parts = ["" if v is None else str(v) for v in (k.start, k.stop, k.step)]
        return ":".join(parts[:2]) + (f":{parts[2]}" if k.step is not None else "")
    if k is None or k is Ellipsis or isinstance(k, (bool, int, np.bool_, np.integer)):
        return "..." if k is Ellipsis else repr(k)
    arr = k if isinstance(k, Tensor) else _index_array(k) if isinstance(k, (list, range)) else k
    if isinstance(arr, (Tensor, np.ndarray)):
        what = {"b": "bool mask", "i": "integer indices", "u": "integer indices"}
        return f"<{what.get(arr.dtype.kind, f'{arr.dtype} values')} {shape_str(arr.shape)}>"
    return f"<{type(k).__name__}>"


def _known_ints(k: Any) -> np.ndarray | None:
    if isinstance(k, Tensor):
        return None if k.value is None else np.asarray(k.value)
    return np.asarray(k, dtype=int64)


def _pick_by_index(x: Tensor, rows: Any, labels: Any) -> Tensor:
    """``x[rows, labels]`` when rows are every row in order; anything else raises."""
    n, classes = x.shape
    row_vals = _known_ints(rows)
    want = f"x[range(n), labels] on a {shape_str(x.shape)} tensor{where()}"
    if row_vals is None or not isinstance(n, (int, np.integer)):
        raise NotImplementedError(
            f"{want}: symbp picks one entry per row when the rows are known to be 0..n-1 in order "
            f"(here the {'row count' if row_vals is not None else 'rows'} are only known when "
            f"the program runs); losses pick with nn.NLLLoss / nn.CrossEntropyLoss"
        )
    if row_vals.ndim != 1 or not np.array_equal(row_vals, np.arange(n)):
        raise NotImplementedError(
            f"{want}: rows {_show_index(rows)} are not all {n} rows in order: PyTorch picks "
            f"x[rows[i], labels[i]]; symbp has only the form whose rows are range({n})"
        )
    if isinstance(labels, Tensor) and labels.ndim == 1 and labels.shape[0] == n:
        lab = labels
    else:
        shape = labels.shape if isinstance(labels, Tensor) else np.shape(labels)
        if len(shape) != 1 or shape[0] != n:
            raise NotImplementedError(
                f"{want}: {n} rows but labels of shape {shape_str(shape)}: PyTorch broadcasts "
                f"the two index arrays; symbp needs one label per row"
            )
        lab = tensor(np.asarray(labels, dtype=int64))
    if lab.value is not None:
        v = lab.value
        bad = (v < -classes) | (v >= classes)
        if bad.any():
            raise IndexError(  # PyTorch's words, with the row
                f"index {v[bad][0]} is out of bounds for dimension 1 with size {classes} "
                f"(labels[{int(np.argmax(bad))}]){where()}"
            )
        if (v < 0).any():  # PyTorch counts a negative index from the end
            lab = tensor(np.where(v < 0, v + classes, v))
    return pick(x, lab)


def pick(x: Tensor, labels: Tensor) -> Tensor:
    """Entry labels[i] of each row of a [N, C] tensor, as sum(x * onehot(labels)) over the
    classes; labels [N] in 0..C-1 (losses have checked them; x[range(n), labels] goes here)."""
    oh = _result(ops.onehot(labels.node, x.shape[1], x.dtype), [labels], False)
    if x.value is not None and labels.value is not None:
        # x * onehot makes an inf or nan anywhere in the row a nan (inf * 0), where PyTorch's
        # pick reads only the picked entry: say so rather than return the nan.
        off = ~np.isfinite(x.value) & (oh.numpy() == 0)
        if off.any():
            r, c = (int(i) for i in np.argwhere(off)[0])
            raise NotImplementedError(
                f"picking entry labels[i] of each row of a {shape_str(x.shape)} tensor with "
                f"{x.value[r, c]} at the unpicked entry [{r}, {c}]: symbp picks as "
                f"sum(x * onehot(labels)), which would give nan where PyTorch reads only the "
                f"picked entries; mask with a large finite value instead of inf{where()}"
            )
    return sum(x * oh, 1)


def onehot(labels: Tensor, classes: int, dtype: Any = None) -> Tensor:
    dtype = np.dtype(dtype or _default_dtype[0])
    return _result(ops.onehot(labels.node, classes, dtype), [labels], False)


# -- issue 12/13 . math (rows of this family go below this line)
#
# -- issue 12/13 . logic (rows of this family go below this line)
#
# -- issue 12/13 . indexing (rows of this family go below this line)
#
# -- issue 12/13 . shaping (rows of this family go below this line)
#
# -- issue 12/13 . reductions (rows of this family go below this line)
#
# -- issue 12/13 . linalg (rows of this family go below this line)
#
# PyTorch's linear algebra over the IR's products: ``matmul`` (2-D) and ``bmm`` (batched),
# with transposes, reshapes, elementwise products and sums. Each function checks its operands'
# ranks and inner sizes itself, so an error names the function the user called.


def _tensors(what: str, *xs: Any) -> list[Tensor]:
    out = []
    for x in xs:
        t = _lift(x)
        if not isinstance(t, Tensor):
            t = tensor(np.asarray(x, dtype=_default_dtype[0]))
        out.append(t)
    return out


def _need_ndim(what: str, x: Tensor, ndims: tuple[int, ...], role: str = "") -> None:
    if x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise shape_error(f"{what}: expects {role or 'a'} {want} tensor, got {shape_str(x.shape)}")


def _inner(what: str, a: Tensor, b: Tensor, ka: Any, kb: Any) -> None:
    if ka != kb:
        raise shape_error(
            f"{what}: inner dimensions differ: {shape_str(a.shape)} and {shape_str(b.shape)} "
            f"({ka} != {kb})"
        )


def _scaled(x: Tensor, factor: Any) -> Tensor:
    return x if factor == 1 else x * factor


def _affine(what: str, inp: Any, product: Tensor, beta: Any, alpha: Any) -> Tensor:
    """beta·input + alpha·product, input broadcast to the product's shape; with beta = 0 the
    input is not read (PyTorch's rule: its nan and inf do not propagate)."""
    (inp,) = _tensors(what, inp)
    ops.broadcast_shapes(inp.shape, product.shape, what=what)
    if tuple(ops.broadcast_shapes(inp.shape, product.shape)) != tuple(product.shape):
        raise shape_error(
            f"{what}: input {shape_str(inp.shape)} does not broadcast to the product's shape "
            f"{shape_str(product.shape)}"
        )
    out = _scaled(product, alpha)
    return out if beta == 0 else out + _scaled(inp, beta)


def mm(a: Any, b: Any) -> Tensor:
    """[n, k] @ [k, m], as ``torch.mm`` (no broadcasting)."""
    a, b = _tensors("mm", a, b)
    _need_ndim("mm", a, (2,), "a")
    _need_ndim("mm", b, (2,), "a")
    _inner("mm", a, b, a.shape[1], b.shape[0])
    return matmul(a, b)


def bmm(a: Any, b: Any) -> Tensor:
    """[B, n, k] @ [B, k, m], as ``torch.bmm`` (equal batches, no broadcasting)."""
    a, b = _tensors("bmm", a, b)
    _need_ndim("bmm", a, (3,), "a")
    _need_ndim("bmm", b, (3,), "a")
    if a.shape[0] != b.shape[0]:
        raise shape_error(f"bmm: batch sizes differ: {shape_str(a.shape)} and {shape_str(b.shape)}")
    _inner("bmm", a, b, a.shape[2], b.shape[1])
    return matmul(a, b)


def mv(a: Any, v: Any) -> Tensor:
    """[n, k] @ [k], as ``torch.mv``."""
    a, v = _tensors("mv", a, v)
    _need_ndim("mv", a, (2,), "a matrix:")
    _need_ndim("mv", v, (1,), "a vector:")
    _inner("mv", a, v, a.shape[1], v.shape[0])
    return matmul(a, v)


def dot(a: Any, b: Any) -> Tensor:
    """Σ_i a[i] b[i] of two vectors of one length, as ``torch.dot``."""
    a, b = _tensors("dot", a, b)
    _need_ndim("dot", a, (1,), "1-D tensors:")
    _need_ndim("dot", b, (1,), "1-D tensors:")
    _inner("dot", a, b, a.shape[0], b.shape[0])
    return sum(a * b)


def outer(a: Any, b: Any) -> Tensor:
    """out[i, j] = a[i] b[j], as ``torch.outer`` (alias ``ger``)."""
    a, b = _tensors("outer", a, b)
    _need_ndim("outer", a, (1,), "1-D tensors:")
    _need_ndim("outer", b, (1,), "1-D tensors:")
    return reshape(a, a.shape[0], 1) * reshape(b, 1, b.shape[0])


ger = outer


def inner(a: Any, b: Any) -> Tensor:
    """Σ over the last axis of both: [*a, k], [*b, k] -> [*a, *b], as ``torch.inner``."""
    a, b = _tensors("inner", a, b)
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    _inner("inner", a, b, a.shape[-1], b.shape[-1])
    return tensordot(a, b, ([a.ndim - 1], [b.ndim - 1]))


def addmm(inp: Any, m1: Any, m2: Any, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
    """beta·input + alpha·(m1 @ m2), as ``torch.addmm``."""
    return _affine("addmm", inp, mm(m1, m2), beta, alpha)


def addmv(inp: Any, mat: Any, vec: Any, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
    """beta·input + alpha·(mat @ vec), as ``torch.addmv``."""
    return _affine("addmv", inp, mv(mat, vec), beta, alpha)


def baddbmm(inp: Any, b1: Any, b2: Any, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
    """beta·input + alpha·bmm(b1, b2), as ``torch.baddbmm``."""
    return _affine("baddbmm", inp, bmm(b1, b2), beta, alpha)


def addbmm(inp: Any, b1: Any, b2: Any, *, beta: Any = 1, alpha: Any = 1) -> Tensor:
    """beta·input + alpha·Σ_b b1[b] @ b2[b], as ``torch.addbmm``."""
    return _affine("addbmm", inp, sum(bmm(b1, b2), 0), beta, alpha)


def tensordot(a: Any, b: Any, dims: Any = 2) -> Tensor:
    """Contract a's axes ``dims[0]`` with b's ``dims[1]`` (an int n: a's last n with b's
    first n), as ``torch.tensordot``: one 2-D product of the reshaped operands."""
    a, b = _tensors("tensordot", a, b)
    if isinstance(dims, (int, np.integer)):
        n = int(dims)
        if n < 0 or n > builtins.min(a.ndim, b.ndim):
            raise shape_error(
                f"tensordot: cannot contract {n} axes of {shape_str(a.shape)} and "
                f"{shape_str(b.shape)}"
            )
        da, db = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        da, db = ([d] if isinstance(d, int) else list(d) for d in dims)
        da = [d % a.ndim for d in da]
        db = [d % b.ndim for d in db]
    if len(da) != len(db) or any(a.shape[i] != b.shape[j] for i, j in zip(da, db)):
        raise shape_error(
            f"tensordot: axes {da} of {shape_str(a.shape)} do not match axes {db} of "
            f"{shape_str(b.shape)}"
        )
    fa = [i for i in range(a.ndim) if i not in da]
    fb = [j for j in range(b.ndim) if j not in db]
    k = numel(tuple(a.shape[i] for i in da))
    x = reshape(permute(a, *fa, *da), numel(tuple(a.shape[i] for i in fa)), k)
    y = reshape(permute(b, *db, *fb), k, numel(tuple(b.shape[j] for j in fb)))
    return reshape(matmul(x, y), *(a.shape[i] for i in fa), *(b.shape[j] for j in fb))


def tril(x: Any, diagonal: int = 0) -> Tensor:
    """Entries on and below diagonal ``diagonal`` of the last two axes, zeros above
    (``torch.tril``: attention's causal mask)."""
    (x,) = _tensors("tril", x)
    return _unary_node(ops.tril(x.node, diagonal, upper=False), x)


def triu(x: Any, diagonal: int = 0) -> Tensor:
    """Entries on and above diagonal ``diagonal`` of the last two axes (``torch.triu``)."""
    (x,) = _tensors("triu", x)
    return _unary_node(ops.tril(x.node, diagonal, upper=True), x)


def _dim(what: str, d: int, ndim: int) -> int:
    if not -ndim <= d < ndim:
        raise shape_error(f"{what}: dim {d} out of range for {ndim} dimensions")
    return d % ndim


def diagonal(x: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of axes (dim1, dim2), ``offset`` above it, as the last axis
    (``torch.diagonal``)."""
    (x,) = _tensors("diagonal", x)
    d1, d2 = _dim("diagonal", dim1, x.ndim), _dim("diagonal", dim2, x.ndim)
    if d1 == d2:
        raise shape_error(f"diagonal: dim1 and dim2 are both {d1}")
    return _unary_node(ops.diagonal(x.node, offset, d1, d2), x)


def diag_embed(x: Any, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """The last axis on the diagonal of two new axes (dim1, dim2) (``torch.diag_embed``)."""
    (x,) = _tensors("diag_embed", x)
    d1, d2 = _dim("diag_embed", dim1, x.ndim + 1), _dim("diag_embed", dim2, x.ndim + 1)
    if d1 == d2:
        raise shape_error(f"diag_embed: dim1 and dim2 are both {d1}")
    n = x.shape[-1] + builtins.abs(offset)
    return _unary_node(ops.diag_embed(x.node, offset, d1, d2, (n, n)), x)


def diag(x: Any, diagonal: int = 0) -> Tensor:
    """A vector to the square matrix with it on diagonal ``diagonal``; a matrix to that
    diagonal (``torch.diag``)."""
    (x,) = _tensors("diag", x)
    _need_ndim("diag", x, (1, 2))
    if x.ndim == 1:
        return diag_embed(x, diagonal, 0, 1)
    return _unary_node(ops.diagonal(x.node, diagonal, 0, 1), x)


def matrix_trace(x: Any) -> Tensor:
    """The sum of a matrix's diagonal (``torch.trace``; ``symbp.trace`` of a Tensor)."""
    (x,) = _tensors("trace", x)
    _need_ndim("trace", x, (2,), "a")
    return sum(diagonal(x))


# einsum: subscripts to the IR's products. Each operand's labels are a list (an ellipsis
# gives labels ".0", ".1" ... aligned from the right, as broadcasting aligns them); repeated
# labels within one operand take a diagonal, labels no one else needs are summed first, and
# operands are contracted pairwise, left to right, each pair one matmul/bmm of reshaped
# operands (or, with nothing to contract or nothing free, a broadcast product and a sum).


def _einsum_labels(what: str, term: str, ndim: int, ell: int | None) -> list[str]:
    if term.count("...") > 1 or "." in term.replace("...", ""):
        raise ValueError(f"{what}: bad subscripts {term!r}")
    head, dots, tail = term.partition("...")
    for c in head + tail:
        if not c.isalpha():
            raise ValueError(f"{what}: subscript {c!r} in {term!r} is not a letter")
    n_ell = ndim - len(head) - len(tail) if ell is None else ell
    if (not dots and n_ell != 0) or n_ell < 0:
        raise shape_error(
            f"{what}: subscripts {term!r} name {len(head) + len(tail)} dimensions of a "
            f"{ndim}-D operand"
        )
    return [*head, *(f".{i}" for i in range(n_ell)), *tail]


def einsum(equation: str, *operands: Any) -> Tensor:
    """PyTorch's ``einsum``: any contraction string, implicit or explicit output, ``...``.

    Lowered to diagonals, transposes, reshapes, products and sums, so it compiles with the
    existing kernels; 'bij,bjk->bik' is one batched matmul.

    >>> import symbp
    >>> a, b = symbp.ones(2, 3), symbp.ones(3, 4)
    >>> symbp.einsum("ij,jk->ik", a, b).shape
    (2, 4)
    """
    what = f"einsum {equation!r}"
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ts = _tensors(what, *operands)
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ts):
        raise ValueError(f"{what}: {len(terms)} subscript terms for {len(ts)} operands")
    labels = [_einsum_labels(what, t, x.ndim, None) for t, x in zip(terms, ts)]
    # broadcast ellipses of different ranks: right-align them on the widest one
    n_dots = [builtins.sum(lab.startswith(".") for lab in ls) for ls in labels]
    width = builtins.max(n_dots, default=0)
    for ls, n in zip(labels, n_dots):
        for i, lab in enumerate(ls):
            if lab.startswith("."):
                ls[i] = f".{int(lab[1:]) + width - n}"
    if arrow:
        out = _einsum_labels(what, rhs, 0, width) if "..." in rhs else list(rhs)
        if "..." not in rhs:
            for c in out:
                if not c.isalpha():
                    raise ValueError(f"{what}: subscript {c!r} of the output is not a letter")
        if len(set(out)) != len(out):
            raise ValueError(f"{what}: the output repeats a subscript")
        everywhere = {lab for ls in labels for lab in ls}
        for lab in out:
            if lab not in everywhere:
                raise ValueError(f"{what}: output subscript {lab!r} is in no operand")
    else:  # implicit: the ellipsis, then the letters seen once, in alphabetical order
        counts: dict[str, int] = {}
        for ls in labels:
            for lab in ls:
                counts[lab] = counts.get(lab, 0) + 1
        out = [f".{i}" for i in range(width)]
        out += sorted(c for c, k in counts.items() if k == 1 and not c.startswith("."))
    sizes: dict[str, Any] = {}
    for t, ls in zip(ts, labels):
        for lab, d in zip(ls, t.shape):
            known = sizes.get(lab, 1)
            if known != 1 and d != 1 and known != d:
                name = "..." if lab.startswith(".") else lab
                raise shape_error(
                    f"{what}: subscript {name!r} has size {known} in one operand and {d} in "
                    f"another (shapes {', '.join(shape_str(x.shape) for x in ts)})"
                )
            sizes[lab] = d if known == 1 else known
    # each operand on its own: diagonals of repeated labels
    items = []
    for t, ls in zip(ts, labels):
        ls = list(ls)
        while len(set(ls)) != len(ls):
            lab = next(lab for lab in ls if ls.count(lab) > 1)
            a = ls.index(lab)
            b = ls.index(lab, a + 1)
            if t.shape[a] != t.shape[b]:
                raise shape_error(
                    f"{what}: subscript {lab!r} repeats over axes of sizes {t.shape[a]} and "
                    f"{t.shape[b]} in an operand of shape {shape_str(t.shape)}"
                )
            t = diagonal(t, 0, a, b)
            ls = [x for i, x in enumerate(ls) if i not in (a, b)] + [lab]
        items.append((t, ls))
    # contract left to right; a label is summed as soon as no one later needs it
    cur, cl = items[0]
    for k in range(1, len(items) + 1):
        later = set(out).union(*(set(ls) for _, ls in items[k + 1 :]))  # after this pair
        if k == len(items):
            drop = [i for i, lab in enumerate(cl) if lab not in later]
            cur = sum(cur, tuple(drop)) if drop else cur
            cl = [lab for lab in cl if lab in later]
            break
        y, yl = items[k]
        # what only one side has and no one later needs: summed before the product
        xs = [i for i, lab in enumerate(cl) if lab not in later and lab not in yl]
        if xs:
            cur, cl = sum(cur, tuple(xs)), [lab for lab in cl if lab in later or lab in yl]
        ys = [i for i, lab in enumerate(yl) if lab not in later and lab not in cl]
        if ys:
            y, yl = sum(y, tuple(ys)), [lab for lab in yl if lab in later or lab in cl]
        cur, cl = _contract(cur, cl, y, yl, later, sizes)
    perm = [cl.index(lab) for lab in out]
    return permute(cur, *perm) if perm != list(range(len(perm))) else cur


def _contract(
    x: Tensor, xl: list[str], y: Tensor, yl: list[str], keep: set[str], sizes: dict[str, Any]
) -> tuple[Tensor, list[str]]:
    """The product of two einsum operands, summed over the labels both have and ``keep``
    lacks: (result, its labels)."""
    batch = [lab for lab in xl if lab in yl and lab in keep]
    summed = [lab for lab in xl if lab in yl and lab not in keep]
    left = [lab for lab in xl if lab not in yl]
    right = [lab for lab in yl if lab not in xl]

    def arrange(t: Tensor, ls: list[str], order: list[str]) -> Tensor:
        """t's axes in ``order``, size 1 for the labels it lacks (broadcast in products)."""
        mine = [lab for lab in order if lab in ls]
        t = permute(t, *[ls.index(lab) for lab in mine]) if t.ndim > 1 else t
        return reshape(t, *[t.shape[mine.index(lab)] if lab in ls else 1 for lab in order])

    if not summed or not (left or right):
        order = batch + left + right + summed
        prod = arrange(x, xl, order) * arrange(y, yl, order)
        if summed:
            prod = sum(prod, tuple(range(len(order) - len(summed), len(order))))
        return prod, batch + left + right

    def full(t: Tensor, ls: list[str], order: list[str]) -> Tensor:  # size-1 labels broadcast
        t = arrange(t, ls, order)
        want = tuple(sizes[lab] for lab in order)
        return t if tuple(t.shape) == want else _unary_node(ops.expand(t.node, want), t)

    def n(labs: list[str]) -> Any:
        return numel(tuple(sizes[lab] for lab in labs))

    xm = reshape(
        full(x, xl, batch + left + summed), *([n(batch)] if batch else []), n(left), n(summed)
    )
    ym = reshape(
        full(y, yl, batch + summed + right), *([n(batch)] if batch else []), n(summed), n(right)
    )
    prod = matmul(xm, ym)
    shape = [sizes[lab] for lab in batch + left + right]
    return reshape(prod, *shape), batch + left + right


# -- issue 12/13 . autograd (rows of this family go below this line)
#
