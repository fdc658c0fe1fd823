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

    # ------------------------------------------------------------ comparisons
    # Elementwise, as PyTorch: bool tensors (``logic`` section below). Hashing stays by
    # identity, as PyTorch's, so tensors still key dicts and fill sets; ``t in list`` then
    # compares values, and raises PyTorch's "ambiguous" error for a many-entry answer.

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> Any:  # type: ignore[override]
        if other is None:
            return False  # as PyTorch: `x == None` is False
        return compare("eq", self, other)

    def __ne__(self, other: object) -> Any:  # type: ignore[override]
        if other is None:
            return True
        return compare("ne", self, other)

    def __lt__(self, other: Any) -> Any:
        return compare("lt", self, other)

    def __le__(self, other: Any) -> Any:
        return compare("le", self, other)

    def __gt__(self, other: Any) -> Any:
        return compare("gt", self, other)

    def __ge__(self, other: Any) -> Any:
        return compare("ge", self, other)

    def __contains__(self, item: Any) -> bool:
        if not isinstance(item, Tensor) and not _is_number(item):
            raise RuntimeError(  # PyTorch's words
                f"Tensor.__contains__ only supports Tensor or scalar, but you passed in a "
                f"{type(item)}."
            )
        return bool(any_(compare("eq", self, item)))

    # ------------------------------------------------------------ what symbp does not do yet
    # Iteration means something in PyTorch (rows) that Python's fallback would silently
    # replace (getitem(0), getitem(1), ...): a clear error until symbp has the op.

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
    def eq(self, other):
        return compare("eq", self, other)

    def ne(self, other):
        return compare("ne", self, other)

    def lt(self, other):
        return compare("lt", self, other)

    def le(self, other):
        return compare("le", self, other)

    def gt(self, other):
        return compare("gt", self, other)

    def ge(self, other):
        return compare("ge", self, other)

    greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne

    def logical_not(self):
        return logical_not(self)

    def logical_and(self, other):
        return logical_and(self, other)

    def logical_or(self, other):
        return logical_or(self, other)

    def logical_xor(self, other):
        return logical_xor(self, other)

    def isnan(self):
        return isnan(self)

    def isinf(self):
        return isinf(self)

    def isposinf(self):
        return isposinf(self)

    def isneginf(self):
        return isneginf(self)

    def isfinite(self):
        return isfinite(self)

    def any(self, dim=None, keepdim: bool = False):
        return any_(self, dim, keepdim)

    def all(self, dim=None, keepdim: bool = False):
        return all_(self, dim, keepdim)

    def where(self, condition, other):
        return where_(condition, self, other)

    def masked_fill(self, mask, value):
        return masked_fill(self, mask, value)

    def masked_fill_(self, mask, value):
        m = mask.numpy() if isinstance(mask, Tensor) else np.asarray(mask)
        if m.dtype.kind != "b":
            raise RuntimeError(
                f"masked_fill_ only supports boolean masks, but got mask with dtype "
                f"{_torch_name(m.dtype)}" + where()
            )
        dst = self._writable("masked_fill_")
        v = np.asarray(_operand(self, "masked_fill_", value))
        if v.ndim:
            raise RuntimeError(
                f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                f"{v.ndim} dimension(s)." + where()
            )
        return self._assign("masked_fill_", np.where(m, v.astype(dst.dtype), dst))

    def clamp(self, min=None, max=None):  # noqa: A002
        return clamp(self, min, max)

    clip = clamp

    def clamp_min(self, min):  # noqa: A002
        return clamp(self, min=min)

    def clamp_max(self, max):  # noqa: A002
        return clamp(self, max=max)

    def maximum(self, other):
        return maximum(self, other)

    def minimum(self, other):
        return minimum(self, other)

    def fmax(self, other):
        return fmax(self, other)

    def fmin(self, other):
        return fmin(self, other)

    def sign(self):
        return sign(self)

    sgn = sign

    # ~m, m & n, m | n, m ^ n on bool masks are PyTorch's logical ops; on integers they are
    # bitwise, which symbp has no ops for: refused rather than computed as logical ones
    def __invert__(self):
        return logical_not(_bool_operand(self, "~"))

    def __and__(self, other):
        return logical_and(_bool_operand(self, "&"), _bool_operand(other, "&"))

    def __or__(self, other):
        return logical_or(_bool_operand(self, "|"), _bool_operand(other, "|"))

    def __xor__(self, other):
        return logical_xor(_bool_operand(self, "^"), _bool_operand(other, "^"))

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def bool(self):
        return cast(self, np.dtype(np.bool_))

    def int(self):
        return cast(self, np.dtype(np.int32))

    def type(self, dtype=None):
        return tensor_type(self, dtype)

    #
    # -- issue 12/13 . indexing (rows of this family go below this line)
    #
    # -- issue 12/13 . shaping (rows of this family go below this line)
    #
    # -- issue 12/13 . reductions (rows of this family go below this line)
    #
    # -- issue 12/13 . linalg (rows of this family go below this line)
    #
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
    if x.dtype.kind != "f" and not (name in _INTEGER_CLOSED and x.dtype.kind in "iu"):
        x = cast(x, _default_dtype[0])
    return _unary_node(ops.apply(name, x.node), x)


# Ops that map integers to integers, as in PyTorch (-n and |n| of an int64 tensor are int64).
_INTEGER_CLOSED = ("neg", "abs")
# Ops whose result is a float even for integer operands (int / int is a float, as PyTorch).
_FLOAT_RESULT = ("div", "sqrt", "exp", "log")


def binary(name: str, a: Any, b: Any) -> Tensor:
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    a, b = (v if _is_number(v) else _lift(v, like) for v in (a, b))
    # PyTorch's promotion, from the operands as the user gave them (a Python float makes an
    # integer tensor's result a float: n * 0.5, n + 1.0)
    dtype = _promoted(name, result_type(a, b, what=name))
    a, b = (cast(v, dtype) if isinstance(v, Tensor) else v for v in (a, b))
    return nary(name, _lift(a, like), _lift(b, like))


def _is_number(v: Any) -> bool:
    return isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating))


def _promoted(name: str, dtype: np.dtype) -> np.dtype:
    return _default_dtype[0] if name in _FLOAT_RESULT and dtype.kind != "f" else dtype


def nary(name: str, *args: Tensor | sympy.Expr) -> Tensor:
    """Apply a named elementwise op with NumPy broadcasting; numbers fold into the formula.
    The operands are promoted as PyTorch promotes them (``result_type``)."""
    target = _promoted(name, result_type(*args, what=name))
    args = tuple(cast(a, target) if isinstance(a, Tensor) else a for a in args)
    tensors = [a for a in args if isinstance(a, Tensor)]
    shape = ops.broadcast_shapes(*(t.shape for t in tensors), what=name)
    nodes = [ops.broadcast_to(t.node, shape) if isinstance(t, Tensor) else t for t in args]
    return _result(ops.apply(name, *nodes, shape=shape), tensors)


def cast(x: Tensor, dtype: Any) -> Tensor:
    node = ops.cast(x.node, np.dtype(dtype))
    return x if node is x.node else _unary_node(node, x, x.requires_grad and node.dtype.kind == "f")


def matmul(a: Any, b: Any) -> Tensor:
    a, b = _lift(a), _lift(b)
    assert isinstance(a, Tensor) and isinstance(b, Tensor)
    if a.ndim == 1 and b.ndim == 1:
        return sum(a * b)
    x = reshape(a, 1, *a.shape) if a.ndim == 1 else a
    y = reshape(b, *b.shape, 1) if b.ndim == 1 else b
    if x.ndim > 2 and y.ndim == 2:  # [..., k] @ [k, n]: fold the leading axes into one
        lead = x.shape[:-1]
        out = matmul(reshape(x, -1, x.shape[-1]), y)
        return reshape(out, *lead, y.shape[1])
    out = _result(ops.matmul(x.node, y.node), [x, y])
    if a.ndim == 1:
        out = reshape(out, *out.shape[1:])
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
    if x.dtype.kind == "b" or x.dtype == np.int32:  # PyTorch sums bools and int32 as int64
        x = cast(x, int64)
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
    if isinstance(dim, Tensor):  # torch.max(a, b): elementwise (the logic family's maximum)
        return maximum(x, dim)
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
# Comparisons, logic, where/clamp and PyTorch's type promotion. A comparison computes in the
# operands' promoted dtype (an int tensor against 0.5 compares in float; a Python number is
# first rounded to that dtype, as PyTorch converts it) and gives a bool tensor that requires
# no grad; its formula is a 0/1 indicator (ops.indicator).

_CATEGORY = {"b": 0, "i": 1, "u": 1, "f": 2}  # PyTorch's bool < integer < floating


def promote_types(a: Any, b: Any) -> Any:
    """As ``torch.promote_types``: the higher category wins (int64 and float32 give float32,
    not NumPy's float64); within one, the wider type."""
    x, y = np.dtype(a), np.dtype(b)
    if _CATEGORY[x.kind] != _CATEGORY[y.kind]:
        return dtypes.of(x if _CATEGORY[x.kind] > _CATEGORY[y.kind] else y)
    return dtypes.of(np.promote_types(x, y))


def _combine(higher: np.dtype | None, lower: np.dtype | None) -> np.dtype | None:
    """PyTorch's rule joining a priority group with the lower ones: a group decides unless a
    lower one is of a higher category (an int tensor with a float scalar is a float)."""
    if higher is None:
        return lower
    if lower is None or higher.kind == "f":
        return higher
    if higher.kind == "b" or lower.kind == "f":
        return np.dtype(promote_types(higher, lower))
    return higher


def result_type(*operands: Any, what: str = "result_type", mixed_floats: bool = False) -> Any:
    """As ``torch.result_type``: the dtype an elementwise op on ``operands`` computes in.

    Three priority groups, as PyTorch: tensors with dimensions, 0-d tensors, then Python
    numbers (an int is int64, a float the default dtype). The highest group holding a tensor
    decides, unless a lower group is of a higher category: float32 [3] + float64 0-d is
    float32, int64 [3] + 0.5 is the default float. ``None`` operands are skipped.

    symbp refuses float32 mixed with float64 in the deciding group (PyTorch would quietly
    compute in float64); ``mixed_floats`` allows it where nothing is lost (a comparison).
    """
    groups: list[list[np.dtype]] = [[], [], []]
    for v in operands:
        if v is None:
            continue
        if isinstance(v, Tensor):
            groups[0 if v.ndim else 1].append(np.dtype(v.node.dtype))
        elif isinstance(v, (bool, np.bool_)):
            groups[2].append(np.dtype(np.bool_))
        elif isinstance(v, (int, np.integer)) or (isinstance(v, sympy.Expr) and v.is_integer):
            groups[2].append(int64)
        elif isinstance(v, (float, np.floating, sympy.Expr)):
            groups[2].append(_default_dtype[0])
        else:
            raise TypeError(f"{what}: cannot compute with a {type(v).__name__}" + where())
    if not mixed_floats:
        for group in groups[:2]:
            floats = {d for d in group if d.kind == "f"}
            if len(floats) > 1:
                raise ShapeError(
                    f"{what}: mixes float32 and float64 tensors; convert one with .float() or "
                    f".double()" + where()
                )
            if floats:
                break
    joined: list[np.dtype | None] = []
    for group in groups:
        out: np.dtype | None = None
        for d in group:
            out = d if out is None else np.dtype(promote_types(out, d))
        joined.append(out)
    found = _combine(joined[0], _combine(joined[1], joined[2]))
    return dtypes.of(found if found is not None else _default_dtype[0])


def _scalar_as(v: Any, dtype: np.dtype) -> Any:
    """A Python number as the op sees it: converted to the compute dtype, as PyTorch does."""
    if isinstance(v, sympy.Basic):
        return v
    if dtype.kind == "f":
        return dtype.type(v)  # 0.1 against a float32 tensor is float32(0.1)
    return int(v)


def _operands(args: Sequence[Any], like: Tensor | None = None) -> list[Any]:
    """Tensors stay, numbers stay numbers, arrays and lists become tensors."""
    if like is None:
        like = next((a for a in args if isinstance(a, Tensor)), None)
    return [a if a is None or isinstance(a, Tensor) or _is_number(a) else _lift(a, like)
            for a in args]  # fmt: skip


def _elementwise(
    name: str, args: Sequence[Any], compute: np.dtype, out: np.dtype | None = None
) -> Tensor:
    """ELEMENTWISE[name] of ``args`` (broadcast), tensors cast to ``compute``, the result of
    dtype ``out`` (default: ``compute``); only a float result can require grad."""
    compute = np.dtype(compute)
    out = compute if out is None else np.dtype(out)
    vals = [cast(a, compute) if isinstance(a, Tensor) else _scalar_as(a, compute) for a in args]
    tensors = [v for v in vals if isinstance(v, Tensor)]
    if not tensors:
        raise TypeError(f"{name}: expects at least one Tensor" + where())
    shape = ops.broadcast_shapes(*(t.shape for t in tensors), what=name)
    nodes = [ops.broadcast_to(v.node, shape) if isinstance(v, Tensor) else v for v in vals]
    node = ops.apply_as(name, *nodes, shape=shape, dtype=out)
    return _result(node, tensors, None if out.kind == "f" else False)


# x == x is not "always true": NaN differs from itself. SymPy would fold Eq(x0, x0) to True
# (its symbols are real numbers), so a comparison of a tensor with itself is written out.
_SELF_COMPARISON = {
    "eq": lambda x: ops.indicator(sympy.Eq(ops.isnan(x), 0)),
    "le": lambda x: ops.indicator(sympy.Eq(ops.isnan(x), 0)),
    "ge": lambda x: ops.indicator(sympy.Eq(ops.isnan(x), 0)),
    "ne": lambda x: ops.isnan(x),
    "lt": lambda x: sympy.Integer(0),
    "gt": lambda x: sympy.Integer(0),
}


def compare(name: str, a: Any, b: Any) -> Tensor:
    """``a <op> b`` for op ``name`` in eq ne lt le gt ge: a bool tensor, as PyTorch."""
    a, b = _operands([a, b])
    compute = np.dtype(result_type(a, b, what=name, mixed_floats=True))
    # an infinite or NaN number stays an operand: SymPy, whose symbols are finite reals,
    # would fold x == -oo to False and x > -oo to True
    a, b = (tensor(np.asarray(v, compute)) if _is_number(v) and not np.isfinite(v) else v
            for v in (a, b))  # fmt: skip
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.node is b.node:
        x = cast(a, compute)
        return _result(
            ops.ew(_SELF_COMPARISON[name](ops.xsym(0)), [x.node], name, dtype=np.dtype(bool)),
            [x],
            False,
        )
    return _elementwise(name, [a, b], compute, np.dtype(bool))


def eq(input: Any, other: Any) -> Tensor:  # noqa: A002 (PyTorch's argument names)
    return compare("eq", input, other)


def ne(input: Any, other: Any) -> Tensor:  # noqa: A002
    return compare("ne", input, other)


def lt(input: Any, other: Any) -> Tensor:  # noqa: A002
    return compare("lt", input, other)


def le(input: Any, other: Any) -> Tensor:  # noqa: A002
    return compare("le", input, other)


def gt(input: Any, other: Any) -> Tensor:  # noqa: A002
    return compare("gt", input, other)


def ge(input: Any, other: Any) -> Tensor:  # noqa: A002
    return compare("ge", input, other)


def _tensor_arg(what: str, name: str, v: Any) -> Tensor:
    v = _lift(v) if not isinstance(v, Tensor) and not _is_number(v) else v
    if not isinstance(v, Tensor):
        raise TypeError(f"{what}(): argument '{name}' must be Tensor, not {type(v).__name__}")
    return v


def _bool_operand(v: Any, op: str) -> Any:
    kind = v.dtype.kind if isinstance(v, Tensor) else "b" if isinstance(v, bool) else "?"
    if kind != "b":
        what = f"a {_torch_name(v.dtype)} tensor" if isinstance(v, Tensor) else repr(v)
        raise NotImplementedError(
            f"x {op} y with {what}: on bool tensors PyTorch's {op} is logical (symbp has it); "
            f"on integers it is bitwise, which symbp has no ops for" + where()
        )
    return v


def _logical(name: str, *args: Any) -> Tensor:
    # nonzero is true, NaN included; no promotion: each operand is tested in its own dtype
    xs = [tensor(a) if _is_number(a) else _tensor_arg(name, n, a)
          for n, a in zip(("input", "other"), args)]  # fmt: skip
    shape = ops.broadcast_shapes(*(x.shape for x in xs), what=name)
    node = ops.apply_as(
        name, *(ops.broadcast_to(x.node, shape) for x in xs), shape=shape, dtype=np.dtype(bool)
    )
    return _result(node, xs, False)


def logical_not(input: Any) -> Tensor:  # noqa: A002
    return _logical("logical_not", input)


def logical_and(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _logical("logical_and", input, other)


def logical_or(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _logical("logical_or", input, other)


def logical_xor(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _logical("logical_xor", input, other)


def _ieee(name: str, x: Any) -> Tensor:
    x = _tensor_arg(name, "input", x)
    compute = x.node.dtype if x.dtype.kind == "f" else _default_dtype[0]  # an int is finite
    return _elementwise(name, [x], compute, np.dtype(bool))


def isnan(input: Any) -> Tensor:  # noqa: A002
    return _ieee("isnan", input)


def isinf(input: Any) -> Tensor:  # noqa: A002
    return _ieee("isinf", input)


def isposinf(input: Any) -> Tensor:  # noqa: A002
    return _ieee("isposinf", input)


def isneginf(input: Any) -> Tensor:  # noqa: A002
    return _ieee("isneginf", input)


def isfinite(input: Any) -> Tensor:  # noqa: A002
    return _ieee("isfinite", input)


def _count(x: Tensor, test: str, dim: Any, keepdim: bool) -> Tensor:
    """How many entries pass ``test`` (ne: nonzero, eq: zero) over ``dim``, as a float sum of
    0/1 indicators: the sum kernel every backend has, exact up to 2^24 entries in float32."""
    counted = x.node.dtype if x.dtype.kind == "f" else _default_dtype[0]
    hits = _elementwise(test, [x, 0], x.node.dtype, counted)
    return sum(hits, dim, keepdim)


# (where_, any_, all_: this module reads ir.where and the builtins any and all; symbp exports
# these as symbp.where, symbp.any and symbp.all)


def any_(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """As ``torch.any``: whether any entry (over ``dim``: int or tuple) is nonzero; bool."""
    x = _tensor_arg("any", "input", input)
    return compare("gt", _count(x, "ne", dim, keepdim), 0)


def all_(input: Any, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """As ``torch.all``: whether every entry (over ``dim``: int or tuple) is nonzero; bool."""
    x = _tensor_arg("all", "input", input)
    return compare("eq", _count(x, "eq", dim, keepdim), 0)


def where_(condition: Any, input: Any = None, other: Any = None) -> Tensor:  # noqa: A002
    """As ``torch.where(condition, input, other)``: input where condition holds, else other
    (tensors or numbers, broadcast, promoted). The gradient goes to the branch taken."""
    if input is None and other is None:
        raise NotImplementedError(
            "torch.where(condition) with one argument is nonzero(condition, as_tuple=True): its "
            "shape depends on the values; symbp has the three-argument where" + where()
        )
    cond = _tensor_arg("where", "condition", condition)
    if cond.dtype.kind != "b":
        raise RuntimeError(
            f"where expected condition to be a boolean tensor, but got a tensor with dtype "
            f"{_torch_name(cond.dtype)}" + where()
        )
    x, y = _operands([input, other])
    compute = np.dtype(result_type(x, y, what="where"))
    return _where(cond, x, y, compute)


def _where(cond: Tensor, x: Any, y: Any, compute: np.dtype) -> Tensor:
    vals = [cast(v, compute) if isinstance(v, Tensor) else _scalar_as(v, compute) for v in (x, y)]
    tensors = [cond, *(v for v in vals if isinstance(v, Tensor))]
    shape = ops.broadcast_shapes(*(t.shape for t in tensors), what="where")
    nodes = [ops.broadcast_to(v.node, shape) if isinstance(v, Tensor) else v for v in vals]
    node = ops.apply_as("where", ops.broadcast_to(cond.node, shape), *nodes, shape=shape,
                        dtype=compute)  # fmt: skip
    return _result(node, tensors, None if compute.kind == "f" else False)


_TORCH_NAMES = {"float32": "Float", "float64": "Double", "int64": "Long", "int32": "Int",
                "bool": "Bool"}  # fmt: skip


def _torch_name(dtype: Any) -> str:
    return _TORCH_NAMES.get(np.dtype(dtype).name, str(dtype))


def masked_fill(input: Any, mask: Any, value: Any) -> Tensor:  # noqa: A002
    """As ``torch.masked_fill``: ``value`` (a number or a 0-d tensor) where ``mask`` (bool,
    broadcast) holds, the input elsewhere; the input's dtype."""
    x = _tensor_arg("masked_fill", "input", input)
    m = _tensor_arg("masked_fill", "mask", mask)
    if m.dtype.kind != "b":
        raise RuntimeError(
            f"masked_fill_ only supports boolean masks, but got mask with dtype "
            f"{_torch_name(m.dtype)}" + where()
        )
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(
            f"masked_fill_ only supports a 0-dimensional value tensor, but got tensor with "
            f"{value.ndim} dimension(s)." + where()
        )
    return _where(m, value, x, x.node.dtype)


def clamp(input: Any, min: Any = None, max: Any = None) -> Tensor:  # noqa: A002
    """As ``torch.clamp``: bounds are numbers or tensors (broadcast), either may be None;
    where min > max the result is max. Gradients as PyTorch's: at a bound x's passes."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    x = _tensor_arg("clamp", "input", input)
    lo, hi = _operands([min, max], x)
    compute = np.dtype(result_type(x, lo, hi, what="clamp"))
    lo = -sympy.oo if lo is None else lo  # a missing bound: a branch SymPy drops
    hi = sympy.oo if hi is None else hi
    return _elementwise("clamp", [x, lo, hi], compute)


clip = clamp


def clamp_min(input: Any, min: Any) -> Tensor:  # noqa: A002
    return clamp(input, min=min)


def clamp_max(input: Any, max: Any) -> Tensor:  # noqa: A002
    return clamp(input, max=max)


def _pairwise(name: str, input: Any, other: Any) -> Tensor:  # noqa: A002
    a = _tensor_arg(name, "input", input)
    b = _tensor_arg(name, "other", other)
    return _elementwise(name, [a, b], np.dtype(result_type(a, b, what=name)))


def maximum(input: Any, other: Any) -> Tensor:  # noqa: A002
    """As ``torch.maximum`` (and ``torch.max(a, b)``): a tie splits the gradient in halves."""
    return _pairwise("maximum", input, other)


def minimum(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _pairwise("minimum", input, other)


def fmax(input: Any, other: Any) -> Tensor:  # noqa: A002
    """As ``torch.fmax``: the number where one is NaN; a tie's gradient goes to ``input``."""
    return _pairwise("fmax", input, other)


def fmin(input: Any, other: Any) -> Tensor:  # noqa: A002
    return _pairwise("fmin", input, other)


def sign(input: Any) -> Tensor:  # noqa: A002
    """As ``torch.sign``: -1, 0 or 1 (0 at NaN), in the input's dtype; gradient 0."""
    x = _tensor_arg("sign", "input", input)
    return _elementwise("sign", [x], x.node.dtype)


sgn = sign  # the same for real tensors


def tensor_type(x: Tensor, dtype: Any = None) -> Any:
    """``x.type()``: its type's name (``'torch.FloatTensor'``, as PyTorch prints it, so
    ported comparisons hold); ``x.type(dtype)``: ``x.to(dtype)``."""
    if dtype is None:
        return f"torch.{_torch_name(x.dtype)}Tensor"
    if isinstance(dtype, str):
        names = {f"torch.{v}Tensor": k for k, v in _TORCH_NAMES.items()}
        if dtype not in names:
            raise TypeError(f"Tensor.type: invalid type: '{dtype}'")
        dtype = names[dtype]
    return cast(x, dtypes.to_numpy(dtype, "Tensor.type"))


#
# -- issue 12/13 . indexing (rows of this family go below this line)
#
# -- issue 12/13 . shaping (rows of this family go below this line)
#
# -- issue 12/13 . reductions (rows of this family go below this line)
#
# -- issue 12/13 . linalg (rows of this family go below this line)
#
# -- issue 12/13 . autograd (rows of this family go below this line)
#
