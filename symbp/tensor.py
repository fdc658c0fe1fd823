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
    # PyTorch's elementwise math as methods, x.sin() and the in-place x.sin_(): each applies
    # its formula of ops.ELEMENTWISE through apply_math (below, with the functions).

    @staticmethod  # a helper of this class body, deleted after it
    def _math_method(name: str, inplace: bool = False) -> Any:
        if inplace:

            def method(self, *args: Any, **kwargs: Any) -> Tensor:
                return self._math_(name, *args, **kwargs)

        else:

            def method(self, *args: Any, **kwargs: Any) -> Tensor:
                return MATH_FUNCTIONS[name](self, *args, **kwargs)

        method.__name__ = name + "_" * inplace
        method.__doc__ = f"As ``Tensor.{name}{'_' * inplace}`` (see symbp.{name})."
        return method

    sin, sin_ = _math_method("sin"), _math_method("sin", True)
    cos, cos_ = _math_method("cos"), _math_method("cos", True)
    tan, tan_ = _math_method("tan"), _math_method("tan", True)
    asin, asin_ = _math_method("asin"), _math_method("asin", True)
    acos, acos_ = _math_method("acos"), _math_method("acos", True)
    atan, atan_ = _math_method("atan"), _math_method("atan", True)
    arcsin, arccos, arctan = asin, acos, atan
    atan2, atan2_ = _math_method("atan2"), _math_method("atan2", True)
    arctan2 = atan2
    sinh, sinh_ = _math_method("sinh"), _math_method("sinh", True)
    cosh, cosh_ = _math_method("cosh"), _math_method("cosh", True)
    asinh, asinh_ = _math_method("asinh"), _math_method("asinh", True)
    acosh, acosh_ = _math_method("acosh"), _math_method("acosh", True)
    atanh, atanh_ = _math_method("atanh"), _math_method("atanh", True)
    arcsinh, arccosh, arctanh = asinh, acosh, atanh
    exp2, exp2_ = _math_method("exp2"), _math_method("exp2", True)
    expm1, expm1_ = _math_method("expm1"), _math_method("expm1", True)
    log2, log2_ = _math_method("log2"), _math_method("log2", True)
    log10, log10_ = _math_method("log10"), _math_method("log10", True)
    log1p, log1p_ = _math_method("log1p"), _math_method("log1p", True)
    rsqrt, rsqrt_ = _math_method("rsqrt"), _math_method("rsqrt", True)
    reciprocal, reciprocal_ = _math_method("reciprocal"), _math_method("reciprocal", True)
    square, square_ = _math_method("square"), _math_method("square", True)
    erf, erf_ = _math_method("erf"), _math_method("erf", True)
    erfc, erfc_ = _math_method("erfc"), _math_method("erfc", True)
    erfinv, erfinv_ = _math_method("erfinv"), _math_method("erfinv", True)
    floor, floor_ = _math_method("floor"), _math_method("floor", True)
    ceil, ceil_ = _math_method("ceil"), _math_method("ceil", True)
    round, round_ = _math_method("round"), _math_method("round", True)
    trunc, trunc_ = _math_method("trunc"), _math_method("trunc", True)
    fix, fix_ = trunc, trunc_
    frac, frac_ = _math_method("frac"), _math_method("frac", True)
    fmod, fmod_ = _math_method("fmod"), _math_method("fmod", True)
    remainder, remainder_ = _math_method("remainder"), _math_method("remainder", True)
    lerp, lerp_ = _math_method("lerp"), _math_method("lerp", True)
    hypot, hypot_ = _math_method("hypot"), _math_method("hypot", True)
    xlogy, xlogy_ = _math_method("xlogy"), _math_method("xlogy", True)
    logaddexp = _math_method("logaddexp")
    nan_to_num, nan_to_num_ = _math_method("nan_to_num"), _math_method("nan_to_num", True)
    pow = _math_method("pow")
    sigmoid_ = _math_method("sigmoid", True)
    tanh_ = _math_method("tanh", True)
    relu_ = _math_method("relu", True)
    del _math_method

    def _math_(self, name: str, *args: Any, **kwargs: Any) -> Tensor:
        """x.<name>_(...): the function's values written into x, PyTorch's in-place rules
        (``_writable``); another tensor operand is read as values."""
        what = name + "_"
        dst = self._writable(what)
        if dst.dtype.kind != "f" and name not in _KEEPS_INTEGERS:
            raise RuntimeError(
                f"result type Float can't be cast to the desired output type Long ({what})"
            )
        operands = [_operand(self, what, a) for a in args]
        operands = [
            tensor(v, dtype=dst.dtype if v.dtype.kind == "f" else None)
            if isinstance(v, np.ndarray)
            else v
            for v in operands
        ]
        with np.errstate(all="ignore"):
            out = MATH_FUNCTIONS[name](tensor(dst), *operands, **kwargs)
        return self._assign(what, out.numpy())

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
# PyTorch's elementwise math, each its formula of ops.ELEMENTWISE applied with broadcasting:
# numbers fold into the formula as constants, and so do parameters (a slope, a bound).
# Integer tensors compute in the default float, as PyTorch, except where an op keeps them
# (the roundings of an integer are itself; fmod and remainder of integers are integers).

_KEEPS_INTEGERS = ("floor", "ceil", "round", "trunc", "fmod", "remainder", "nan_to_num")


def apply_math(name: str, *args: Any, params: Sequence[Any] = ()) -> Tensor:
    """Apply the formula ``ops.ELEMENTWISE[name]`` to tensors or numbers ``args`` (broadcast
    together), with ``params`` its trailing constant arguments."""
    like = next((a for a in args if isinstance(a, Tensor)), None)
    if like is None and any(isinstance(a, sympy.Basic) for a in args):
        # on formulas: symbp.sin(w*x + b) for symbp.grad, as symbp.sigmoid
        return ops.ELEMENTWISE[name](*map(ops.to_expr, (*args, *params)))
    if like is None:
        raise TypeError(
            f"{name}(): expects a Tensor argument, got " + ", ".join(type(a).__name__ for a in args)
        )
    lifted = [_lift(a, like) for a in args]
    ints = [a for a in lifted if isinstance(a, Tensor) and a.dtype.kind != "f"]
    if ints and len(ints) == builtins.sum(isinstance(a, Tensor) for a in lifted):
        floats = [a for a in args if isinstance(a, (float, np.floating))]
        if name in ("floor", "ceil", "round", "trunc", "nan_to_num") and len(lifted) == 1:
            return lifted[0]  # type: ignore[return-value]  # integers are whole and finite
        if name not in _KEEPS_INTEGERS or floats:
            lifted = [cast(a, _default_dtype[0]) if isinstance(a, Tensor) else a for a in lifted]
    elif ints:  # integer tensors joining float ones compute in their float
        target = next(a.dtype for a in lifted if isinstance(a, Tensor) and a.dtype.kind == "f")
        lifted = [
            cast(a, target) if any(a is i for i in ints) else a  # type: ignore[arg-type]
            for a in lifted
        ]
    return nary(name, *lifted, *(ops.to_expr(p) for p in params))


def _math_unary(name: str):
    def fn(input: Any) -> Tensor:  # noqa: A002 -- PyTorch's name
        return apply_math(name, input)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name}, as ``torch.{name}`` (formula: ops.ELEMENTWISE[{name!r}])."
    return fn


def _math_binary(name: str):
    def fn(input: Any, other: Any) -> Tensor:  # noqa: A002
        return apply_math(name, input, other)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name}, as ``torch.{name}`` (formula: ops.ELEMENTWISE[{name!r}])."
    return fn


def _round(input: Any, decimals: int = 0) -> Tensor:  # noqa: A002
    """Round to the nearest integer, halves to even (``torch.round``); ``decimals`` as
    PyTorch: round(x * 10**d) / 10**d."""
    if decimals == 0:
        return apply_math("round", input)
    scale = 10.0**decimals
    return apply_math("round", _lift(input) * scale) / scale


def lerp(input: Any, end: Any, weight: Any) -> Tensor:  # noqa: A002
    """input + weight (end - input), as ``torch.lerp`` (a tensor or a number weight)."""
    return apply_math("lerp", input, end, weight)


def nan_to_num(
    input: Any,  # noqa: A002
    nan: float = 0.0,
    posinf: float | None = None,
    neginf: float | None = None,
) -> Tensor:
    """NaN, +inf and -inf replaced by ``nan``, ``posinf``, ``neginf``; the infinities by
    default by the dtype's largest and smallest finite values, as PyTorch. The gradient is 1
    at finite entries, 0 at the replaced ones (PyTorch's)."""
    x = _lift(input)
    if not isinstance(x, Tensor):
        raise TypeError(f"nan_to_num(): expects a Tensor, got {type(input).__name__}")
    if x.dtype.kind != "f":
        return x
    big = float(np.finfo(x.dtype).max)
    hi = big if posinf is None else posinf
    lo = -big if neginf is None else neginf
    return apply_math("nan_to_num", x, params=(nan, hi, lo, big))


def _pow(input: Any, exponent: Any) -> Tensor:  # noqa: A002
    """input ** exponent, tensors or numbers either side (``torch.pow``)."""
    return binary("pow", input, exponent)


MATH_FUNCTIONS: dict[str, Any] = {
    **{
        n: _math_unary(n)
        for n in (
            "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh",
            "atanh", "exp2", "expm1", "log2", "log10", "log1p", "rsqrt", "reciprocal",
            "square", "erf", "erfc", "erfinv", "floor", "ceil", "trunc", "frac", "sigmoid",
            "tanh", "relu",
        )
    },
    **{
        n: _math_binary(n)
        for n in ("atan2", "fmod", "remainder", "hypot", "xlogy", "logaddexp")
    },
    # (private names here: a module-level round or pow would hide the builtins in this module)
    "round": _round,
    "lerp": lerp,
    "nan_to_num": nan_to_num,
    "pow": _pow,
}  # fmt: skip
_round.__name__, _pow.__name__ = "round", "pow"
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
# -- issue 12/13 . autograd (rows of this family go below this line)
#
