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
        return (self[i] for i in range(len(self)))  # x[0], x[1], ... as PyTorch

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
        """``x[key] = v`` as PyTorch (every key ``x[key]`` reads): see ``setitem``."""
        setitem(self, key, value)

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
    def index_select(self, dim: int, index: Any) -> Tensor:
        return index_select(self, dim, index)

    def gather(self, dim: int, index: Any) -> Tensor:
        return gather(self, dim, index)

    def take(self, index: Any) -> Tensor:
        return take(self, index)

    def narrow(self, dim: int, start: int, length: int) -> Tensor:
        return narrow(self, dim, start, length)

    def masked_select(self, mask: Any) -> Tensor:
        return masked_select(self, mask)

    def scatter(self, dim: int, index: Any, src: Any = None, value: Any = None) -> Tensor:
        return scatter(self, dim, index, src, value)

    def scatter_add(self, dim: int, index: Any, src: Any) -> Tensor:
        return scatter_add(self, dim, index, src)

    def index_add(self, dim: int, index: Any, source: Any, alpha: Any = 1) -> Tensor:
        return index_add(self, dim, index, source, alpha)

    def index_put(self, indices: Any, values: Any, accumulate: bool = False) -> Tensor:
        return index_put(self, indices, values, accumulate)

    def _inplace(self, what: str, new: Tensor) -> Tensor:
        """An in-place indexing op (scatter_, index_put_ ...): recorded in the graph when
        self is in one, else written into its values."""
        if self.requires_grad and self.is_leaf and is_grad_enabled():
            self._writable(what)
        if _in_graph(self, new):
            return _rebind(self, new)
        return self._assign(what, new.numpy())

    def scatter_(self, dim: int, index: Any, src: Any = None, value: Any = None) -> Tensor:
        return self._inplace("scatter_", scatter(self, dim, index, src, value))

    def scatter_add_(self, dim: int, index: Any, src: Any) -> Tensor:
        return self._inplace("scatter_add_", scatter_add(self, dim, index, src))

    def index_add_(self, dim: int, index: Any, source: Any, alpha: Any = 1) -> Tensor:
        return self._inplace("index_add_", index_add(self, dim, index, source, alpha))

    def index_put_(self, indices: Any, values: Any, accumulate: bool = False) -> Tensor:
        return self._inplace("index_put_", index_put(self, indices, values, accumulate))

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
    """``x[key]`` with PyTorch's semantics (``getitem``, with the indexing ops)."""
    return getitem(x, key)


def _index_array(k: Any) -> np.ndarray | None:
    """A list or array index as NumPy reads it; None for what NumPy cannot (ragged lists)."""
    try:
        return np.asarray(k)
    except (TypeError, ValueError, RuntimeError):
        return None


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


def pick(x: Tensor, labels: Tensor) -> Tensor:
    """Entry labels[i] of each row of a [N, C] tensor, as sum(x * onehot(labels)) over the
    classes; labels [N] in 0..C-1 (the losses' pick, which have checked them; x[range(n),
    labels] is a gather, ``getitem``)."""
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
# x[key] as PyTorch reads it. A key is parsed into items, one per indexed dim (masks become
# their nonzero positions), then built as: one ``slice`` of the integers and slices (an
# integer is a box of size 1 whose axis a reshape drops, None a size-1 axis it adds), then
# one ``take`` of the integer arrays, broadcast together. PyTorch's rule for where the
# gathered axes land: in place when the arrays index adjacent dims (None counts as a dim,
# an integer does not: PyTorch selects those first), else first.


class _Item(NamedTuple):
    """One entry of a parsed key: kind "int", "slice", "none" or "array" (``value``: an int,
    a slice, None or an integer index Tensor); ``dim``: the user's dim it indexes."""

    kind: str
    value: Any
    dim: int


_MASK_HINT = (
    "its result's shape depends on the mask's values, so it is known only in eager mode; "
    "a compiled program needs static shapes: keep the shape with symbp.where(mask, x, 0) or "
    "x.masked_fill(~mask, 0)"
)


def _key_error(x: Tensor, key: Any, why: str, error: type = IndexError) -> Exception:
    keys = key if isinstance(key, tuple) else (key,)
    shown = ", ".join(_show_index(k) for k in keys)
    return error(f"x[{shown}] on a {shape_str(x.shape)} tensor: {why}" + where())


def _as_index(k: Any) -> Any:
    """A list, range or array key entry as a NumPy array or Tensor; other entries as they are."""
    if isinstance(k, (list, range)):
        arr = _index_array(k)
        if arr is None or arr.dtype == object:
            return k  # ragged: PyTorch reads it as a tuple (below)
        return arr.astype(int64) if arr.size == 0 else arr
    return k


def _parse_key(x: Tensor, key: Any, what: str = "x[...]") -> list[_Item]:
    """The items of ``key`` for tensor ``x``, every integer checked against its dim's size."""
    if isinstance(key, list) and ((arr := _index_array(key)) is None or arr.dtype == object):
        key = tuple(key)  # a ragged list: PyTorch's legacy reading, x[[0, 1], [2]]
    keys = list(key) if isinstance(key, tuple) else [key]
    keys = [_as_index(k) for k in keys]
    for k in keys:
        ok = k is None or k is Ellipsis or isinstance(k, (slice, int, np.integer, np.bool_))
        ok = ok or isinstance(k, (Tensor, np.ndarray))
        if not ok:
            raise _key_error(
                x, key, "only integers, slices (:), ellipsis (...), None and long or bool "
                "tensors are valid indices (PyTorch's rule)", IndexError)  # fmt: skip
        if isinstance(k, (Tensor, np.ndarray)) and k.dtype.kind not in "iub":
            raise _key_error(
                x, key, "tensors used as indices must be long, int, byte or bool tensors"
            )
    if builtins.sum(k is Ellipsis for k in keys) > 1:
        raise _key_error(x, key, "an index can only have a single ellipsis ('...')")

    def width(k: Any) -> int:  # how many dims of x an entry indexes
        if k is None or k is Ellipsis or isinstance(k, (bool, np.bool_)):
            return 0
        if isinstance(k, (Tensor, np.ndarray)) and k.dtype.kind == "b":
            return k.ndim
        return 1

    used = builtins.sum(width(k) for k in keys)
    if used > x.ndim:
        raise _key_error(x, key, f"too many indices for tensor of dimension {x.ndim}")
    items: list[_Item] = []
    d = 0
    for k in keys:
        if k is Ellipsis:
            for _ in range(x.ndim - used):
                items.append(_Item("slice", slice(None), d))
                d += 1
        elif k is None or isinstance(k, (bool, np.bool_)):
            if k is False or k is np.False_:
                raise _key_error(x, key, "x[False] (an empty new axis) is not supported",
                                 NotImplementedError)  # fmt: skip
            items.append(_Item("none", None, d))
        elif isinstance(k, slice):
            items.append(_Item("slice", k, d))
            d += 1
        elif isinstance(k, (int, np.integer)):
            items.append(_Item("int", _int_index(x, key, int(k), d, what), d))
            d += 1
        elif k.dtype.kind == "b":
            items += _mask_items(x, key, k, d)
            d += k.ndim
        else:
            idx = k if isinstance(k, Tensor) else tensor(np.asarray(k, dtype=int64))
            if idx.value is not None:  # known now: checked at trace time, naming the dim
                ops.check_indices(what, idx.value, d, x.shape[d], wrap=True)
            items.append(_Item("array", idx, d))
            d += 1
    items += [_Item("slice", slice(None), i) for i in range(d, x.ndim)]
    return items


def _int_index(x: Tensor, key: Any, k: int, d: int, what: str) -> Any:
    n = x.shape[d]
    if isinstance(n, sympy.Expr):  # the batch: B is known only when the program runs
        if k in (0, -1):
            return 0 if k == 0 else n - 1
        raise _key_error(
            x, key, f"integer {k} on dim {d} of symbolic size {n}: only 0 and -1 are in range "
            f"for every batch size", NotImplementedError)  # fmt: skip
    if not -n <= k < n:
        raise IndexError(  # PyTorch's words, with the op
            f"{what}: index {k} is out of bounds for dimension {d} with size {n}" + where()
        )
    return k % n


def _mask_items(x: Tensor, key: Any, mask: Any, d: int) -> list[_Item]:
    want = tuple(x.shape[d : d + mask.ndim])
    if tuple(mask.shape) != want:
        raise _key_error(
            x, key, f"the shape of the mask {shape_str(mask.shape)} at index {d} does not "
            f"match the shape of the indexed tensor {shape_str(x.shape)} at index {d}")  # fmt: skip
    values = mask.value if isinstance(mask, Tensor) else np.asarray(mask)
    if values is None:
        raise _key_error(
            x, key, f"a bool mask known only when the program runs: {_MASK_HINT}",
            NotImplementedError)  # fmt: skip
    if mask.ndim == 0:
        raise _key_error(x, key, "a 0-d bool mask is not supported", NotImplementedError)
    return [_Item("array", tensor(p), d + m) for m, p in enumerate(np.nonzero(values))]


def _box(item: _Item, n: Any, x: Tensor) -> ops.SliceArg:
    """The slice of one dim of size ``n``."""
    if item.kind == "int":
        return ops.SliceArg(item.value, 1, 1)
    if item.kind == "array":
        return ops.SliceArg(0, n, 1)
    s: slice = item.value
    if s.step is not None and s.step <= 0:
        raise ValueError("step must be greater than zero" + where())  # PyTorch's words
    if isinstance(n, sympy.Expr):
        start, stop = s.start or 0, s.stop
        if s.step not in (None, 1) or start < 0 or (stop is not None and stop >= 0):
            raise NotImplementedError(
                f"x[{_show_index(s)}] on dim {item.dim} of symbolic size {n}: compiled code "
                f"slices the batch only as x[a:] or x[a:-b] with a, b >= 0 (its size must be "
                f"a formula in {n})" + where()
            )
        end = n if stop is None else n + stop
        return ops.SliceArg(start, end - start, 1)
    start, stop, step = s.indices(int(n))
    return ops.SliceArg(start, builtins.max(0, -(-(stop - start) // step)), step)


def _indexed(base: Node, items: list[_Item], shape: tuple, x: Tensor, what: str) -> Node:
    """x[key] built on ``base`` (a node of x's shape) from the parsed items."""
    box = [_box(it, shape[it.dim], x) for it in items if it.kind != "none"]
    out_shape: list[Any] = []
    arrays: list[tuple[int, _Item]] = []  # (axis of the sliced, reshaped tensor, item)
    bi = iter(box)
    for it in items:
        if it.kind == "none":
            out_shape.append(1)
            continue
        b = next(bi)
        if it.kind == "int":
            continue
        if it.kind == "array":
            arrays.append((len(out_shape), it))
        out_shape.append(b.size)
    node = ops.reshape(ops.slice_(base, box), tuple(out_shape))
    if not arrays:
        return node
    idx_shape = ops.broadcast_shapes(*(it.value.shape for _, it in arrays), what=what)
    idx = [ops.broadcast_to(it.value.node, idx_shape) for _, it in arrays]
    axes = [a for a, _ in arrays]
    arg = ops.IndexArg(axes[0], what)
    if axes != list(range(axes[0], axes[0] + len(axes))):  # apart: gathered axes go first
        rest = [a for a in range(len(out_shape)) if a not in axes]
        node = ops.transpose(node, tuple(axes + rest))
        arg = ops.IndexArg(0, what)
    return ops.take(node, idx, arg)


def _index_tensors(items: list[_Item]) -> list[Tensor]:
    return [it.value for it in items if it.kind == "array"]


def getitem(x: Tensor, key: Any) -> Tensor:
    """``x[key]`` with PyTorch's semantics; its gradient places the cotangent back (a slice's
    is a padded placement, a gather's a scatter-add: repeated indices accumulate)."""
    items = _parse_key(x, key)
    node = _indexed(x.node, items, x.shape, x, "x[...]")
    return _result(node, [x, *_index_tensors(items)])


def _placed(x: Tensor, items: list[_Item], values: Node, what: str) -> Node:
    """``values`` (shaped as x[key]) placed at key's positions of zeros shaped as x: the
    adjoint of the indexing, walked back from x[key] to x (repeated positions add)."""
    dummy = Node("input", (), "_indexed", x.shape, x.node.dtype)
    out = _indexed(dummy, items, x.shape, x, what)
    ct, n = values, out
    while n is not dummy:
        back = ops.OPS[n.op].adjoint(n, ct)[0]
        assert back is not None  # each step of an indexing is linear in x
        ct, n = back, n.src[0]
    return ct


def _put(x: Tensor, items: list[_Item], value: Any, accumulate: bool, what: str) -> Tensor:
    """A new tensor: x with ``value`` written at (or, ``accumulate``, added to) the places of
    the parsed key; functional, so it records into the graph like any op."""
    v = value if isinstance(value, Tensor) else tensor(np.asarray(value, dtype=x.dtype))
    if v.dtype != x.dtype:
        if v.ndim and not (v.dtype.kind == x.dtype.kind == "f"):
            raise RuntimeError(
                f"Index put requires the source and destination dtypes match, got "
                f"{x.dtype} for the destination and {v.dtype} for the source." + where()
            )
        v = cast(v, x.dtype)
    dummy = Node("input", (), "_indexed", x.shape, x.node.dtype)
    target = _indexed(dummy, items, x.shape, x, what).shape
    try:
        shape = ops.broadcast_shapes(v.shape, target)
        if tuple(shape) != tuple(target):
            raise ShapeError
    except ShapeError:
        raise RuntimeError(  # PyTorch's words
            f"{what}: shape mismatch: value tensor of shape {shape_str(v.shape)} cannot be "
            f"broadcast to indexing result of shape {shape_str(target)}" + where()
        ) from None
    vb = ops.broadcast_to(v.node, target)
    placed = _placed(x, items, vb, what)
    args = [x, v, *_index_tensors(items)]
    if accumulate:
        return _result(ops.apply("add", x.node, placed), args)
    hits = _placed(x, items, ops.const(1, target, x.node.dtype), what)
    count = _result(hits, _index_tensors(items), False)
    if count.value is not None and count.value.max(initial=0) > 1:
        raise NotImplementedError(
            f"{what} writes one place more than once (repeated indices): PyTorch leaves which "
            f"write wins unspecified; use unique indices, or accumulate=True (index_put) / "
            f"index_add to add them" + where()
        )
    take_new = sympy.Piecewise((ops.xsym(1), ops.xsym(2) > _HALF), (ops.xsym(0), True))
    return _result(ops.ew(take_new, [x.node, placed, hits], label="index_put"), args)


# A written place is one whose hit count is above 1/2 (it is 0 or 1): never exactly at the
# Piecewise's boundary, so gradcheck sees no kink there (the counts are constants anyway).
_HALF = sympy.Rational(1, 2)


def _rebind(x: Tensor, new: Tensor) -> Tensor:
    """An in-place op on a tensor inside a graph, done functionally: x now stands for the new
    node (a new version), its old self a parent of it, as PyTorch's autograd records it."""
    old = Tensor(x._node, x._value, x.requires_grad, x._parents)
    old._versions, old._version = x._versions, x._version
    parents = tuple(old if p is x else p for p in new._parents)
    x._node, x._value, x.requires_grad = new._node, new._value, new.requires_grad
    x._parents = parents
    x._versions = tuple(p._version for p in parents)
    x._version += 1
    return x


def _in_graph(x: Tensor, value: Any) -> bool:
    """Must an update of x be recorded in the graph (rather than written into its values)?"""
    if x.value is None or (isinstance(value, Tensor) and value.value is None):
        return True
    if not is_grad_enabled():
        return False
    return x.requires_grad or (isinstance(value, Tensor) and value.requires_grad)


def setitem(x: Tensor, key: Any, value: Any) -> None:
    """``x[key] = value`` as PyTorch: into x's memory for a constant; inside a graph (a
    tensor computed from ones that require grad, or traced) a new node x is rebound to."""
    if x.requires_grad and x.is_leaf and is_grad_enabled():
        x._writable("__setitem__")  # PyTorch's error for a leaf that requires grad
    items = _parse_key(x, key, "x[...] = v")
    if _in_graph(x, value):
        _rebind(x, _put(x, items, value, False, "x[...] = v"))
        return
    dst = x._writable("__setitem__")
    v = _operand(x, "__setitem__", value)
    if all(it.kind != "array" for it in items):  # basic: NumPy's meaning is PyTorch's
        target = dst[(*_numpy_key(items), Ellipsis)]  # a view, even of one entry
        if np.ndim(v) and not np.can_cast(np.asarray(v).dtype, dst.dtype, "same_kind"):
            raise RuntimeError(  # PyTorch's words
                f"Index put requires the source and destination dtypes match, got "
                f"{dst.dtype} for the destination and {np.asarray(v).dtype} for the source."
            )
        shape = np.broadcast_shapes(np.shape(v), target.shape)
        if shape != target.shape:
            raise RuntimeError(  # PyTorch's words
                f"x[...] = v: shape mismatch: value tensor of shape {list(np.shape(v))} cannot "
                f"be broadcast to indexing result of shape {list(target.shape)}" + where()
            )
        target[...] = v  # a view of x's memory
        x._changed()
        return
    new = _put(_leaf(dst), items, v, False, "x[...] = v")
    x._assign("__setitem__", new.numpy())


def _numpy_key(items: list[_Item]) -> tuple:
    """The NumPy key of parsed basic items (ints, slices, None)."""
    return tuple(np.newaxis if it.kind == "none" else it.value for it in items)


def index_put(x: Tensor, indices: Any, values: Any, accumulate: bool = False) -> Tensor:
    """As ``torch.index_put``: a new tensor, x with ``values`` at ``x[indices]`` (added when
    ``accumulate``: repeated indices add up)."""
    items = _parse_key(x, tuple(indices), "index_put")
    return _put(x, items, values, accumulate, "index_put")


def _dim(x: Tensor, dim: int, what: str) -> int:
    if not -builtins.max(x.ndim, 1) <= dim < builtins.max(x.ndim, 1):
        raise IndexError(
            f"{what}: Dimension out of range (expected to be in range of "
            f"[{-x.ndim}, {x.ndim - 1}], but got {dim})" + where()
        )
    return dim % builtins.max(x.ndim, 1)


def _long(index: Any, what: str) -> Tensor:
    t = index if isinstance(index, Tensor) else tensor(np.asarray(index))
    if t.dtype.kind not in "iu":
        raise RuntimeError(f"{what}(): Expected dtype int64 for index" + where())
    return t


def index_select(x: Tensor, dim: int, index: Any) -> Tensor:
    """As ``torch.index_select``: the entries ``index`` (1-D) along ``dim``."""
    d, idx = _dim(x, dim, "index_select"), _long(index, "index_select")
    if idx.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector" + where())
    idx = reshape(idx, -1) if idx.ndim == 0 else idx
    if idx.value is not None:
        ops.check_indices("index_select", idx.value, d, x.shape[d], wrap=False)
    node = ops.take(x.node, [idx.node], ops.IndexArg(d, "index_select", False))
    return _result(node, [x, idx])


def take(x: Tensor, index: Any) -> Tensor:
    """As ``torch.take``: x read as 1-D at ``index`` (negative counts from the end)."""
    idx = _long(index, "take")
    flat = reshape(x, -1)
    if idx.value is not None:
        ops.check_indices("take", idx.value, 0, flat.shape[0], wrap=True)
    return _result(ops.take(flat.node, [idx.node], ops.IndexArg(0, "take")), [flat, idx])


def narrow(x: Tensor, dim: int, start: int, length: int) -> Tensor:
    """As ``torch.narrow``: ``length`` entries of ``dim`` from ``start`` (a view)."""
    d = _dim(x, dim, "narrow")
    n = x.shape[d]
    s = start + n if start < 0 else start
    if isinstance(n, int) and not (s >= 0 and s + length <= n and length >= 0):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    key = [slice(None)] * x.ndim
    key[d] = slice(s, s + length)
    return getitem(x, tuple(key))


def _along(x: Tensor, d: int, idx: Tensor, what: str, shape: Any = None) -> list[Node]:
    """The index arrays of a gather/scatter along ``d``: ``idx`` there, iotas elsewhere."""
    if idx.ndim != x.ndim:
        raise RuntimeError(
            f"{what}: Index tensor must have the same number of dimensions as input tensor "
            f"({shape_str(idx.shape)} index, {shape_str(x.shape)} input)" + where()
        )
    for a, (i, n) in enumerate(zip(idx.shape, x.shape)):
        if a != d and isinstance(i, int) and isinstance(n, int) and i > n:
            raise RuntimeError(
                f"{what}: Size does not match at dimension {a} expected index "
                f"{shape_str(idx.shape)} to be no larger than self {shape_str(x.shape)} apart "
                f"from dimension {d}" + where()
            )
    if idx.value is not None:
        ops.check_indices(what, idx.value, d, x.shape[d], wrap=False)
    return [idx.node if a == d else ops.iota(idx.shape, a) for a in range(x.ndim)]


def gather(x: Tensor, dim: int, index: Any) -> Tensor:
    """As ``torch.gather``: out[i][j] = x[i][index[i][j]] (for dim 1). Its gradient is a
    scatter-add: an entry gathered twice gets both cotangents."""
    d, idx = _dim(x, dim, "gather"), _long(index, "gather")
    arrays = _along(x, d, idx, "gather")
    return _result(ops.take(x.node, arrays, ops.IndexArg(0, "gather", False)), [x, idx])


def _scatter_src(src: Any, idx: Tensor, x: Tensor) -> Tensor:
    """The values a scatter writes: src's first index.shape entries, or a number filled."""
    if not isinstance(src, Tensor):
        return (
            tensor(np.full(idx.shape, src, dtype=x.dtype))
            if all(isinstance(n, int) for n in idx.shape)
            else _result(ops.const(src, idx.shape, x.node.dtype), [], False)
        )
    box = [ops.SliceArg(0, i, 1) for i in idx.shape]
    return _result(ops.slice_(src.node, box), [src])


def scatter_add(x: Tensor, dim: int, index: Any, src: Any) -> Tensor:
    """As ``torch.scatter_add``: x[i][index[i][j]] += src[i][j] (dim 1), repeats adding."""
    d, idx = _dim(x, dim, "scatter_add"), _long(index, "scatter_add")
    arrays = _along(x, d, idx, "scatter_add")
    v = _scatter_src(src, idx, x)
    arg = ops.IndexArg(0, "scatter_add", False, x.shape)
    return _result(ops.apply("add", x.node, ops.put_add(v.node, arrays, arg)), [x, v, idx])


def scatter(x: Tensor, dim: int, index: Any, src: Any = None, value: Any = None) -> Tensor:
    """As ``torch.scatter`` (src or value form): x[i][index[i][j]] = src[i][j] (dim 1)."""
    if (src is None) == (value is None):
        raise TypeError("scatter(): give exactly one of src and value")
    d, idx = _dim(x, dim, "scatter"), _long(index, "scatter")
    arrays = _along(x, d, idx, "scatter")
    v = _scatter_src(src if src is not None else value, idx, x)
    arg = ops.IndexArg(0, "scatter", False, x.shape)
    placed = ops.put_add(v.node, arrays, arg)
    hits = ops.put_add(ops.const(1, idx.shape, x.node.dtype), arrays, arg)
    count = _result(hits, [idx], False)
    if count.value is not None and count.value.max(initial=0) > 1:
        raise NotImplementedError(
            "scatter writes one place more than once (repeated indices): PyTorch leaves which "
            "write wins unspecified; use scatter_add to add them" + where()
        )
    pick = sympy.Piecewise((ops.xsym(1), ops.xsym(2) > _HALF), (ops.xsym(0), True))
    return _result(ops.ew(pick, [x.node, placed, hits], label="scatter"), [x, v, idx])


def index_add(x: Tensor, dim: int, index: Any, source: Any, alpha: Any = 1) -> Tensor:
    """As ``torch.index_add``: x[..., index[j], ...] += alpha * source[..., j, ...] along dim,
    repeated indices adding."""
    d, idx = _dim(x, dim, "index_add"), _long(index, "index_add")
    if idx.value is not None:
        ops.check_indices("index_add", idx.value, d, x.shape[d], wrap=False)
    src = source if isinstance(source, Tensor) else tensor(np.asarray(source, dtype=x.dtype))
    if alpha != 1:
        src = src * alpha
    arg = ops.IndexArg(d, "index_add", False, x.shape)
    return _result(ops.apply("add", x.node, ops.put_add(src.node, [idx.node], arg)), [x, src, idx])


def masked_select(x: Tensor, mask: Any) -> Tensor:
    """As ``torch.masked_select``: the entries where ``mask`` (broadcast with x) is True, as a
    1-D tensor. Its length depends on the mask's values: eager only."""
    m = mask.value if isinstance(mask, Tensor) else np.asarray(mask)
    if m is None or (x.value is None and any(isinstance(d, sympy.Expr) for d in x.shape)):
        raise NotImplementedError(
            f"masked_select on a {shape_str(x.shape)} tensor with a mask known only when the "
            f"program runs: {_MASK_HINT}" + where()
        )
    if m.dtype != np.bool_:
        raise RuntimeError(f"masked_select: expected BoolTensor for mask, got {m.dtype}")
    shape = ops.broadcast_shapes(x.shape, m.shape, what="masked_select")
    xb = _result(ops.broadcast_to(x.node, shape), [x])
    return getitem(xb, np.broadcast_to(m, shape))


#
# -- issue 12/13 . shaping (rows of this family go below this line)
#
# -- issue 12/13 . reductions (rows of this family go below this line)
#
# -- issue 12/13 . linalg (rows of this family go below this line)
#
# -- issue 12/13 . autograd (rows of this family go below this line)
#
