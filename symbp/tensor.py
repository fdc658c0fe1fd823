"""Stage 1, trace: ``Tensor`` records every op into the IR as it runs.

A Tensor is a node of the graph plus, in eager use, its value: each op builds its node and
evaluates it at once with the NumPy reference executor, so a tutorial runs line by line and
``loss.backward()`` can derive the backward graph of exactly what ran. Traced for the compiler,
inputs carry no value and a symbolic batch dimension ``B``; the same code builds the same graph.
"""

from __future__ import annotations

import builtins
import itertools
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import sympy

from symbp import devices as _device
from symbp import dtypes
from symbp import random as _random
from symbp.compiler import ops
from symbp.compiler.ir import (
    Node,
    Param,
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
from symbp.compiler.reference import evaluate
from symbp.grad_mode import enable_grad, is_grad_enabled
from symbp.size import Size

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


# PyTorch's warning, word for word, on reading .grad of a non-leaf
NON_LEAF_GRAD = (
    "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. Its .grad "
    "attribute won't be populated during autograd.backward(). If you indeed want the .grad "
    "field to be populated for a non-leaf Tensor, use .retain_grad() on the non-leaf Tensor. If "
    "you access the non-leaf Tensor by mistake, make sure you access the leaf Tensor instead. "
    "See github.com/pytorch/pytorch/pull/30531 for more information."
)

_SYMBOLS = {"add_": "+", "sub_": "-", "mul_": "*", "div_": "/", "pow_": "**"}


class Tensor:
    """A node of the traced graph, with its value when it has one (eager mode)."""

    _version: int  # bumped by each in-place update
    # Which layer made this tensor: (order of the call, the node it returned, the module's
    # path), set by the first ``Module.__call__`` returning it. Labels belong to the graph of
    # tensors, not to the interned nodes, which two models (or two calls) may share.
    _label: tuple[int, Node, str] | None = None
    # what the layer that made this scan calls its step's parts (ir.StepNames): graph_steps
    _steps: tuple[Node, Mapping[str, tuple[str, ...]]] | None = None
    # the labels of a loop body's graph (``loops.scan`` traces it apart from its parents)
    _inner_labels: tuple[tuple[int, Node, str], ...] = ()

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
    def shape(self) -> Size:
        """The shape as PyTorch gives it: a ``Size``, the tuple that prints ``Size([2, 3])``."""
        return Size(self.node.shape)

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.node.shape[dim]

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

    nelement = numel

    def element_size(self) -> int:
        """Bytes per element (4 for float32), as PyTorch's."""
        return int(np.dtype(self.node.dtype).itemsize)

    def is_floating_point(self) -> bool:
        return bool(self.dtype.kind == "f")

    def contiguous(self, memory_format: Any = None) -> Tensor:
        """This tensor: symbp's values are always in one C-ordered block."""
        return self

    def is_contiguous(self, memory_format: Any = None) -> bool:
        return True

    # x.new_zeros(...) and friends: new leaves with x's dtype (and device), as PyTorch's
    def new_tensor(self, data: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return tensor(data, requires_grad=requires_grad, dtype=dtype or self.dtype)

    def new_full(
        self, size: Any, fill_value: Any, dtype: Any = None, requires_grad: bool = False
    ) -> Tensor:
        arr = np.full(_sizes((size,)), fill_value, np.dtype(dtype or self.dtype))
        return tensor(arr, requires_grad=requires_grad)

    def new_zeros(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self.new_full(_sizes(size), 0, dtype, requires_grad)

    def new_ones(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self.new_full(_sizes(size), 1, dtype, requires_grad)

    def new_empty(self, *size: Any, dtype: Any = None, requires_grad: bool = False) -> Tensor:
        return self.new_zeros(*size, dtype=dtype, requires_grad=requires_grad)

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

    def __int__(self) -> int:
        """As PyTorch: a one-element tensor's value, truncated toward zero if a float."""
        return int(self.item())

    def __index__(self) -> int:
        """A one-element integer tensor used as an index (``range(n)``, ``lst[t]``), as
        PyTorch allows; a float tensor is refused, as there."""
        if self.dtype.kind not in "iub":
            raise TypeError(
                f"only integer tensors of a single element can be converted to an index, got "
                f"a {self.dtype} tensor"
            )
        return int(self.item())

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

    def _records(self, what: str, other: Any = None) -> bool:
        """Does an in-place ``what`` on this tensor go into the graph (it was computed from
        tensors that require grad, or is traced, or ``other`` requires grad), done as PyTorch
        records it: x stands for a new node from then on (``_rebind``)? A leaf that requires
        grad is refused first, as PyTorch refuses it."""
        if self.requires_grad and self.is_leaf and is_grad_enabled():
            self._writable(what)
        return _in_graph(self, other)

    def _record(self, what: str, new: Tensor) -> Tensor:
        """This tensor rebound to ``new``, the in-place op's result, with PyTorch's rules: the
        shape stays (no broadcasting x up), and a float result never goes into an integer x."""
        if tuple(new.shape) != tuple(self.shape):
            raise RuntimeError(  # PyTorch's words
                f"output with shape {shape_str(self.shape)} doesn't match the broadcast shape "
                f"{shape_str(new.shape)} (x.{what})" + where()
            )
        if new.dtype != self.dtype:
            if new.dtype.kind == "f" and self.dtype.kind != "f":
                raise RuntimeError(
                    f"result type Float can't be cast to the desired output type "
                    f"{'Bool' if self.dtype.kind == 'b' else 'Long'} (x.{what})" + where()
                )
            new = cast(new, self.dtype)
        return _rebind(self, new)

    def _binary_(self, what: str, fn: Any, other: Any, alpha: Any = 1) -> Tensor:
        if self._records(what, other):
            y = other if alpha == 1 else other * alpha
            return self._record(what, _IN_PLACE[what](self, y))
        dst = self._writable(what)
        y = _operand(self, what, other)
        if alpha != 1:
            y = np.multiply(alpha, y)
        with np.errstate(all="ignore"):  # inf and nan as PyTorch gives them
            return self._assign(what, fn(dst, y))

    def _unary_(self, what: str, fn: Any) -> Tensor:
        if self._records(what):
            return self._record(what, getattr(self, what[:-1])())  # x.exp_(): x.exp()
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

    def neg(self) -> Tensor:
        return -self

    negative = neg

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
        bounds = [b for b in (min, max) if isinstance(b, Tensor)]
        if self._records("clamp_", bounds[0] if bounds else None):
            return self._record("clamp_", self.clamp(min, max))
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
        shape = self._writable("uniform_").shape
        rng = _random.default_generator.numpy_generator
        return self._assign("uniform_", rng.uniform(a, b, shape))

    def normal_(self, mean: float = 0.0, std: float = 1.0) -> Tensor:
        shape = self._writable("normal_").shape
        rng = _random.default_generator.numpy_generator
        return self._assign("normal_", rng.normal(mean, std, shape))

    def __setitem__(self, key: Any, value: Any) -> None:
        """``x[key] = v`` as PyTorch (every key ``x[key]`` reads): see ``setitem``."""
        setitem(self, key, value)

    def __repr__(self) -> str:
        from symbp.tensor_str import tensor_repr

        fn = self.grad_fn
        grad = f"grad_fn=<{fn.name()}>" if fn is not None else ""
        grad = grad or ("requires_grad=True" if self.requires_grad else "")
        if self.value is None:
            return f"Tensor(<traced {type_str(self.node)}>{', ' + grad if grad else ''})"
        return tensor_repr(self.value, [grad] if grad else [], _default_dtype[0])

    # ------------------------------------------------------------ autograd

    def clone(self, *, memory_format: Any = None) -> Tensor:
        """A copy in memory of its own, in the same graph: gradients flow through it to this
        tensor (PyTorch's CloneBackward0), and an in-place update of either leaves the other
        as it was."""
        out = _result(self.node, [self])
        if out._value is not None and out._value is self._value:
            out._value = out._value.copy()
        if out.requires_grad:
            _made_by(out, "CloneBackward0", self)
        return out

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
        self._requires_grad = bool(requires_grad)
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
            if not self.is_leaf and not self._retains_grad:
                warnings.warn(NON_LEAF_GRAD, UserWarning, stacklevel=2)
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

    def backward(
        self,
        gradient: Any = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """Derive the gradient symbolically and add it to every leaf's ``.grad``, as PyTorch's
        ``Tensor.backward`` (see ``symbp.autograd.backward``; ``retain_graph`` is accepted:
        symbp's graph is never freed, see ``symbp.autograd.engine``)."""
        from symbp.autograd.engine import run_backward

        if isinstance(inputs, Tensor):
            inputs = [inputs]
        elif inputs is not None:
            inputs = list(inputs)
        run_backward([self], [gradient], inputs, create_graph, "backward")

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

    def __mod__(self, other):
        return remainder_op(self, other)

    def __rmod__(self, other):
        return remainder_op(other, self)

    def __floordiv__(self, other):
        return floor_divide(self, other)

    def __rfloordiv__(self, other):
        return floor_divide(other, self)

    def floor_divide(self, other):
        return floor_divide(self, other)

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

    def sum(self, dim=None, keepdim: bool = False, *, dtype=None):
        return sum(self, dim, keepdim, dtype=dtype)

    def mean(self, dim=None, keepdim: bool = False, *, dtype=None):
        return mean(self, dim, keepdim, dtype=dtype)

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
        return unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return squeeze(self, dim)

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
        tensors = [a for a in args if isinstance(a, Tensor)]
        if self._records(what, tensors[0] if tensors else None):
            return self._record(what, MATH_FUNCTIONS[name](self, *args, **kwargs))
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
    @staticmethod  # a helper of this class body, deleted after it
    def _logic_method(name: str) -> Any:
        def method(self, *args: Any) -> Tensor:
            return LOGIC_FUNCTIONS[name](self, *args)

        method.__name__ = method.__qualname__ = name
        method.__doc__ = f"As ``Tensor.{name}`` (see symbp.{name})."
        return method

    eq, ne, lt, le = (
        _logic_method("eq"),
        _logic_method("ne"),
        _logic_method("lt"),
        _logic_method("le"),
    )
    gt, ge = _logic_method("gt"), _logic_method("ge")
    greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
    logical_not, logical_and = _logic_method("logical_not"), _logic_method("logical_and")
    logical_or, logical_xor = _logic_method("logical_or"), _logic_method("logical_xor")
    isnan, isinf, isfinite = (
        _logic_method("isnan"),
        _logic_method("isinf"),
        _logic_method("isfinite"),
    )
    isposinf, isneginf = _logic_method("isposinf"), _logic_method("isneginf")
    maximum, minimum = _logic_method("maximum"), _logic_method("minimum")
    fmax, fmin = _logic_method("fmax"), _logic_method("fmin")

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

    def sign(self):
        return sign(self)

    sgn = sign
    del _logic_method

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

    def type(self, dtype=None):
        return tensor_type(self, dtype)

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
    def view_as(self, other):
        return reshape(self, *other.shape)

    def reshape_as(self, other):
        return reshape(self, *other.shape)

    def expand(self, *sizes):
        return broadcast_to(self, *sizes)

    def expand_as(self, other):
        return broadcast_to(self, *other.shape)

    def broadcast_to(self, *sizes):
        return broadcast_to(self, *sizes)

    def repeat(self, *sizes):
        return repeat(self, *sizes)

    def tile(self, *dims):
        return tile(self, _sizes(dims))

    def repeat_interleave(self, repeats, dim=None):
        return repeat_interleave(self, repeats, dim)

    def flip(self, *dims, **kw):
        return flip(self, *dims, **kw)

    def fliplr(self):
        return fliplr(self)

    def flipud(self):
        return flipud(self)

    def roll(self, shifts, dims=None):
        return roll(self, shifts, dims)

    def movedim(self, source, destination):
        return movedim(self, source, destination)

    moveaxis = movedim

    def swapaxes(self, axis0: int, axis1: int):
        return swapaxes(self, axis0, axis1)

    swapdims = swapaxes

    def split(self, split_size, dim: int = 0):
        return split(self, split_size, dim)

    def chunk(self, chunks: int, dim: int = 0):
        return chunk(self, chunks, dim)

    def unbind(self, dim: int = 0):
        return unbind(self, dim)

    # -- issue 12/13 . reductions (rows of this family go below this line)
    #
    def min(self, dim=None, keepdim: bool = False):
        return min(self, dim, keepdim)

    def amax(self, dim=(), keepdim: bool = False):
        return amax(self, dim, keepdim)

    def amin(self, dim=(), keepdim: bool = False):
        return amin(self, dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False):
        return argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim: bool = False):
        return argmin(self, dim, keepdim)

    def prod(self, dim=None, keepdim: bool = False, *, dtype=None):
        return prod(self, dim, keepdim, dtype=dtype)

    def var(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
        return var(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim: bool = False, *, correction=None):
        return std(self, dim, unbiased, keepdim, correction=correction)

    def norm(self, p="fro", dim=None, keepdim: bool = False, dtype=None):
        return norm(self, p, dim, keepdim, dtype)

    def count_nonzero(self, dim=None):
        return count_nonzero(self, dim)

    def cumsum(self, dim, *, dtype=None):
        return cumsum(self, dim, dtype=dtype)

    def cumprod(self, dim, *, dtype=None):
        return cumprod(self, dim, dtype=dtype)

    def cummax(self, dim):
        return cummax(self, dim)

    def cummin(self, dim):
        return cummin(self, dim)

    def sort(self, dim=-1, descending: bool = False, stable: bool = False):
        return sort(self, dim, descending, stable)

    def argsort(self, dim=-1, descending: bool = False, stable: bool = False):
        return argsort(self, dim, descending, stable)

    def topk(self, k, dim=-1, largest: bool = True, sorted: bool = True):  # noqa: A002
        return topk(self, k, dim, largest, sorted)

    def median(self, dim=None, keepdim: bool = False):
        return median(self, dim, keepdim)

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
    _retains_grad = False  # set by retain_grad(): backward fills .grad of this non-leaf too

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        # ``x.requires_grad = True`` is requires_grad_(True), as in PyTorch: on a tensor that
        # was computed (``randn(3).double()``), it makes it a leaf, so .grad fills
        if "_requires_grad" not in self.__dict__:
            self._requires_grad = bool(value)  # construction
        else:
            self.requires_grad_(value)

    @property
    def grad_fn(self) -> Any:
        """The backward of the op that made this tensor, named as PyTorch names it
        (``<AddBackward0 object at ...>``, with ``next_functions``); None for a leaf."""
        from symbp.autograd.graph import grad_fn

        return grad_fn(self)

    def retain_grad(self) -> None:
        """Have backward fill ``.grad`` of this non-leaf too (a leaf's fills anyway)."""
        if not self.requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if not self.is_leaf:
            self._retains_grad = True

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad and not self.is_leaf

    def detach_(self) -> Tensor:
        """Detach this tensor from its graph in place: a leaf that does not require grad."""
        if self.value is None:
            self._node = ops.detach(self._node)
        elif self._parents:
            self._node = Node("input", (), f"t{next(_ids)}", self.shape, self.dtype)
            self._parents, self._versions = (), ()
        self._requires_grad = False
        self._retains_grad = False
        return self

    def __getitem__(self, key):
        return index(self, key)

    # Named as PyTorch's casts, these shadow the builtins in the class body: they come last,
    # so that no annotation above reads them as types.
    def bool(self):
        return cast(self, np.dtype(np.bool_))

    def int(self):
        return cast(self, np.dtype(np.int32))


class Parameter(Tensor):
    """A trainable tensor: ``requires_grad=True`` and a NumPy ``.data`` you may assign."""

    def __init__(self, data: Any, requires_grad: bool = True):
        arr = _as_array(data)
        if arr.dtype.kind != "f":
            arr = arr.astype(_default_dtype[0])
        self.data = arr
        # its identity in the IR: names label it, never make it (two models' 0.weight are
        # two leaves); a copy gets a Param of its own (__setstate__)
        self._param = Param(f"param{next(_ids)}")
        super().__init__(self.node, None, requires_grad)

    def rename(self, name: str) -> None:
        """Give the parameter its model name (``linear1.weight``): the label of its leaf."""
        self._param.name = name

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A copy (copy.copy, copy.deepcopy, pickle) is a parameter of its own: a new identity
        # with the same label, so that a graph of the copy never reads the original
        self.__dict__.update(state)
        self._param = Param(self._param.name)

    @staticmethod
    def of_leaf(node: Node) -> Param | None:
        """The parameter identity of a leaf, None for a leaf of data (a graph known by its
        nodes alone: an IR node, a Derived program)."""
        return node.arg if node.op == "input" and isinstance(node.arg, Param) else None

    @property
    def name(self) -> str:
        """The model's name (``0.weight``): the label of its leaf."""
        return self._param.name

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
    def node(self) -> Node:  # the parameter's leaf, with its current shape and dtype
        return Node("input", (), self._param, self._data.shape, self._data.dtype)

    @property
    def value(self) -> np.ndarray:
        return self._data

    def __repr__(self) -> str:
        # PyTorch's: ``Parameter containing:`` over the tensor's repr (symbp's model name
        # for the parameter is its ``.name``)
        return "Parameter containing:\n" + super().__repr__()


def graph_tensors(roots: Sequence[Tensor], grad_only: bool = False) -> list[Tensor]:
    """The tensors ``roots`` were computed from; with ``grad_only``, only along paths that
    require grad (PyTorch's autograd graph: a detached branch reaches no leaf)."""
    seen: set[int] = set()
    out: list[Tensor] = []
    stack = list(roots)
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        out.append(t)
        if t.requires_grad or not grad_only:
            stack.extend(t._parents)
    return out


def label_marks(roots: Sequence[Tensor]) -> tuple[tuple[int, Node, str], ...]:
    """The labels marked on the graph of ``roots`` (``Tensor._label``), loop bodies' included."""
    return tuple(
        m
        for t in graph_tensors(roots)
        for m in (*t._inner_labels, *(() if t._label is None else (t._label,)))
    )


def graph_labels(roots: Sequence[Tensor]) -> dict[Node, str]:
    """Which layer made each node of the graph of ``roots`` (``Module.__call__`` marks the
    tensors it returns): the program's labels, for names, comments and error messages. A node
    that several calls returned (nodes are interned) takes the first call's label."""
    labels: dict[Node, str] = {}
    for _, node, path in sorted(label_marks(roots), key=lambda m: m[0]):
        labels.setdefault(node, path)
    return labels


def graph_steps(roots: Sequence[Tensor]) -> dict[Node, Mapping[str, tuple[str, ...]]]:
    """What the layers of the graph of ``roots`` call their loops' steps, by scan node
    (``ir.StepNames``): the program's own, read off its tensors as its labels are."""
    return {t._steps[0]: t._steps[1] for t in graph_tensors(roots) if t._steps is not None}


def parameter_leaves(roots: Sequence[Tensor]) -> dict[Node, Parameter]:
    """The parameters ``roots`` were computed from, keyed by their leaves in the order the
    graph reads them. Found by identity among the tensors of the graph, not by name: a data
    input may carry a parameter's name (``x``, of another model even), and another model's
    parameter of the same name must not answer for this one."""
    found = {t.node: t for t in graph_tensors(roots) if isinstance(t, Parameter)}
    return {n: found[n] for n in toposort([r.node for r in roots]) if n in found}


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
    if name == "neg" and x.dtype.kind == "b":
        raise RuntimeError(  # PyTorch's words
            "Negation, the `-` operator, on a bool tensor is not supported. If you are trying "
            "to invert a mask, use the `~` or `logical_not()` operator instead." + where()
        )
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
    if dtype.kind == "b" and name in _BOOL_ARITHMETIC:  # bools stay bools, as PyTorch's
        name = _BOOL_ARITHMETIC[name]
        if name == "sub":
            raise RuntimeError(  # PyTorch's words
                "Subtraction, the `-` operator, with two bool tensors is not supported. Use "
                "the `^` or `logical_xor()` operator instead." + where()
            )
        a, b = (tensor(bool(v)) if _is_number(v) else v for v in (a, b))
    if name == "div" and _is_number(b) and b == 0:  # SymPy's x/0 is zoo; IEEE's is ±inf, NaN
        b = tensor(float(b), dtype=dtype)
    a, b = (cast(v, dtype) if isinstance(v, Tensor) else v for v in (a, b))
    return nary(name, _lift(a, like), _lift(b, like))


# bool + bool is a logical or, bool * bool an and (a bool result; SymPy's x + y would count)
_BOOL_ARITHMETIC = {"add": "logical_or", "mul": "logical_and", "sub": "sub"}


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


class DimError(ShapeError, IndexError):
    """A dim out of range: an IndexError as PyTorch raises it, a ShapeError as symbp's other
    trace-time mistakes."""


def _dim(what: str, dim: Any, ndim: int, shape: Any = None) -> int:
    """``dim`` in [-ndim, ndim) as an axis (a 0-d tensor takes 0 and -1, as PyTorch): the one
    dim check of every op. ``ndim`` is the rank the dim counts in (an unsqueeze's is one more
    than its input's); ``shape``, when given, is named in the error."""
    n = builtins.max(ndim, 1)
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{what}: dim must be an int, got {type(dim).__name__}" + where())
    if not -n <= dim < n:
        of = f" for a tensor of shape {shape_str(shape)}" if shape is not None else ""
        raise DimError(
            f"{what}: dimension out of range (expected to be in range of [{-n}, {n - 1}], but "
            f"got {dim}){of}" + where()
        )
    return int(dim) % n


def _axes(x: Tensor, dim: Any, what: str) -> tuple[int, ...]:
    """The axes of a reduction over ``dim``: None for all, an int or a sequence of them."""
    if dim is None:
        return tuple(range(x.ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    axes = tuple(_dim(what, d, x.ndim, x.shape) for d in dims)
    return axes if x.ndim else ()


def sum(x: Tensor, dim=None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:  # noqa: A001
    """The sum over ``dim`` (an int, a tuple, None for all); bool and integer tensors sum in
    int64, as PyTorch."""
    x = _accumulating(x, dtype)
    return _unary_node(ops.sum_(x.node, _axes(x, dim, "sum"), keepdim), x)


def mean(x: Tensor, dim=None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """sum / count over ``dim``. Integer and bool tensors raise, as PyTorch's mean (an
    accuracy is ``(pred == y).float().mean()``); over no elements it is nan."""
    if dtype is not None:
        x = cast(x, dtypes.to_numpy(dtype, "mean"))
    if x.dtype.kind != "f":
        raise TypeError(
            f"mean(): could not infer output dtype: the input is {x.dtype}, and the mean needs "
            f"a float tensor, as in PyTorch; convert it with .float() or .double()" + where()
        )
    axes = _axes(x, dim, "mean")
    count = sympy.sympify(numel(tuple(x.shape[a] for a in axes)))
    if count.is_zero:  # a mean over no elements is nan, as PyTorch's (1/0 is SymPy's zoo)
        return sum(x, dim, keepdim) * sympy.nan
    return sum(x, dim, keepdim) * (1 / count)


class MaxResult(NamedTuple):
    """(values, indices), named ``max`` as PyTorch's torch.return_types.max."""

    values: Tensor
    indices: Tensor


MaxResult.__name__ = MaxResult.__qualname__ = "max"


def max(x: Tensor, dim=None, keepdim: bool = False):  # noqa: A001
    """``x.max()`` is a scalar, ties sharing the gradient evenly; ``x.max(dim)`` is (values,
    indices) of the first maximum, the gradient sent to it, as in PyTorch. ``max(a, b)`` with
    a tensor b is the elementwise maximum (PyTorch's overload)."""
    if isinstance(dim, Tensor):
        return binary("maximum", x, dim)
    if dim is None:
        _nonempty(x, "max")
        return amax(x, None)
    return _extreme(x, dim, keepdim, largest=True)


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


def _made_by(out: Tensor, name: str, *inputs: Tensor) -> Tensor:
    """Mark ``out`` as made by a function symbp composes of several ops (softmax is exp, sum
    and div), so its ``grad_fn`` is PyTorch's single node for it (``SoftmaxBackward0``, whose
    next functions are those of ``inputs``)."""
    out.__dict__["_made_by"] = (out.node, name, inputs)
    return out


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x - max) / sum(exp(x - max)): the max shift is exact, so it carries no gradient."""
    e = (x - amax(x.detach(), dim, keepdim=True)).exp()
    return _made_by(e / sum(e, dim, keepdim=True), "SoftmaxBackward0", x)


def logsumexp(x: Tensor, dim: Any = -1, keepdim: bool = False) -> Tensor:
    """log Σ exp(x) over ``dim`` (an int or a tuple), shifted by the max so that nothing
    overflows; a row of -inf gives -inf and one holding +inf gives +inf, as PyTorch."""
    if x.dtype.kind != "f":
        x = cast(x, _default_dtype[0])
    axes = _axes(x, dim, "logsumexp")
    if not axes:
        return x
    m = _finite_shift(amax(x.detach(), axes, keepdim=True))
    out = m + sum((x - m).exp(), axes, keepdim=True).log()
    out = out if keepdim else reshape(out, *[d for a, d in enumerate(x.shape) if a not in axes])
    return _made_by(out, "LogsumexpBackward0", x)


def log_softmax(x: Tensor, dim: int = -1) -> Tensor:
    # (x - m) - log(sum(exp(x - m))), not x - logsumexp(x): x - (m + ...) loses ulp(m)
    z = x - amax(x.detach(), dim, keepdim=True)
    return _made_by(z - sum(z.exp(), dim, keepdim=True).log(), "LogSoftmaxBackward0", x)


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


def _no_integer_zero(what: str, dtype: np.dtype, other: Any) -> None:
    """An integer division by zero is PyTorch's error (a RuntimeError "ZeroDivisionError")
    where the divisor is known (eager); a traced divisor is data of the run."""
    if dtype.kind not in "iub":
        return
    values = other.value if isinstance(other, Tensor) else np.asarray(other)
    if values is not None and (np.asarray(values) == 0).any():
        raise RuntimeError(f"ZeroDivisionError: {what}: integer division by zero" + where())


def remainder_op(input: Any, other: Any) -> Tensor:  # noqa: A002
    """``input % other``: torch.remainder (the sign of ``other``, Python's convention)."""
    _no_integer_zero("remainder", result_type(input, other, what="remainder"), other)
    return apply_math("remainder", input, other)


def floor_divide(input: Any, other: Any) -> Tensor:  # noqa: A002
    """input / other rounded toward -inf, as ``torch.floor_divide`` and Python's ``//``: the
    exact multiple (input - remainder(input, other)) / other, rounded to the nearest integer
    as PyTorch computes it (1 // 0.1 is 9.0, where floor(1 / 0.1) is 10); a float divided by 0
    is ±inf or NaN. Integer operands give an integer (computed in float64: exact below 2**53).
    Its gradient is 0, floor's (PyTorch's backward raises)."""
    dtype = np.dtype(result_type(input, other, what="floor_divide"))
    _no_integer_zero("floor_divide", dtype, other)
    work = dtype if dtype.kind == "f" else np.dtype(np.float64)
    a, b = (cast(_lift(v), work) if not _is_number(v) else float(v) for v in (input, other))
    q = apply_math("round", (a - apply_math("remainder", a, b)) / b)
    if dtype.kind != "f":
        return cast(q, dtype)
    if isinstance(b, Tensor):
        return where_(b == 0, a / b, q)
    return q if b != 0 else binary("div", a, b)


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


def _ieee(name: str, x: Any) -> Tensor:
    x = _tensor_arg(name, "input", x)
    compute = x.node.dtype if x.dtype.kind == "f" else _default_dtype[0]  # an int is finite
    return _elementwise(name, [x], compute, np.dtype(bool))


def _unary_named(name: str, rule: Callable[..., Tensor], doc: str) -> Callable[..., Tensor]:
    """``name(input)``, PyTorch's function, as ``rule(name, input)``: a row of the tables below
    (one line each, where every wrapper once was a def of its own)."""

    def fn(input: Any) -> Tensor:  # noqa: A002
        return rule(name, input)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _binary_named(name: str, rule: Callable[..., Tensor], doc: str) -> Callable[..., Tensor]:
    """``name(input, other)`` as ``rule(name, input, other)``; see ``_unary_named``."""

    def fn(input: Any, other: Any) -> Tensor:  # noqa: A002
        return rule(name, input, other)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc
    return fn


def _as_torch(text: str, name: str) -> str:
    return f"{text}, as ``torch.{name}``: a bool tensor that requires no grad."


eq, ne, lt, le, gt, ge = (
    _binary_named(n, compare, _as_torch(f"``input {op} other`` elementwise", n))
    for n, op in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">="))
)
logical_not = _unary_named("logical_not", _logical, _as_torch("``input == 0``", "logical_not"))
logical_and, logical_or, logical_xor = (
    _binary_named(n, _logical, _as_torch(f"Nonzero {op} nonzero (NaN is nonzero)", n))
    for n, op in (("logical_and", "and"), ("logical_or", "or"), ("logical_xor", "xor"))
)
isnan, isinf, isposinf, isneginf, isfinite = (
    _unary_named(n, _ieee, _as_torch(what, n))
    for n, what in (
        ("isnan", "Whether an entry is NaN"),
        ("isinf", "Whether an entry is ±inf"),
        ("isposinf", "Whether an entry is +inf"),
        ("isneginf", "Whether an entry is -inf"),
        ("isfinite", "Whether an entry is neither NaN nor ±inf"),
    )
)


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


maximum, minimum, fmax, fmin = (
    _binary_named(n, _pairwise, doc)
    for n, doc in (
        ("maximum", "As ``torch.maximum`` (and ``torch.max(a, b)``): NaN if either is NaN; a "
         "tie splits the gradient in halves."),
        ("minimum", "As ``torch.minimum``: NaN if either is NaN; a "
         "tie splits the gradient in halves."),
        ("fmax", "As ``torch.fmax``: the number where one is NaN; a tie's gradient goes to "
         "``input``."),
        ("fmin", "As ``torch.fmin``: the number where one is NaN; a tie's gradient goes to "
         "``input``."),
    )
)  # fmt: skip
# the functions above that Tensor also has as methods, each by its name (``_logic_method``)
LOGIC_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    f.__name__: f
    for f in (eq, ne, lt, le, gt, ge, logical_not, logical_and, logical_or, logical_xor,
              isnan, isinf, isposinf, isneginf, isfinite, maximum, minimum, fmax, fmin)
}  # fmt: skip


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


# The out-of-place op of each in-place arithmetic update, for updates recorded in a graph
_IN_PLACE: dict[str, Callable[[Tensor, Any], Tensor]] = {
    "add_": lambda x, y: x + y,
    "sub_": lambda x, y: x - y,
    "mul_": lambda x, y: x * y,
    "div_": lambda x, y: x / y,
    "pow_": lambda x, y: x**y,
}


def _rebind(x: Tensor, new: Tensor) -> Tensor:
    """An in-place op on a tensor inside a graph, done functionally: x now stands for the new
    node (a new version), its old self a parent of it, as PyTorch's autograd records it."""
    old = Tensor(x._node, x._value, x.requires_grad, x._parents)
    old._versions, old._version = x._versions, x._version
    parents = tuple(old if p is x else p for p in new._parents)
    # ``_requires_grad``, not the property: its setter makes a computed tensor a leaf
    x._node, x._value, x._requires_grad = new._node, new._value, new.requires_grad
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


def _whole_mask(x: Tensor, key: Any, value: Any) -> bool:
    """Is ``x[key] = value`` a bool mask of x's shape set to one value (a number, or a
    one-element tensor)?"""
    one = not isinstance(value, Tensor) and np.ndim(value) == 0
    one = one or (isinstance(value, Tensor) and value.ndim == 0)
    return (
        one
        and isinstance(key, Tensor)
        and key.dtype.kind == "b"
        and tuple(key.shape) == tuple(x.shape)
    )


def setitem(x: Tensor, key: Any, value: Any) -> None:
    """``x[key] = value`` as PyTorch: into x's memory for a constant; inside a graph (a
    tensor computed from ones that require grad, or traced) a new node x is rebound to."""
    if x.requires_grad and x.is_leaf and is_grad_enabled():
        x._writable("__setitem__")  # PyTorch's error for a leaf that requires grad
    if _whole_mask(x, key, value) and _in_graph(x, value):
        # x[mask] = v with a mask of x's own shape and one value keeps the shape: it is
        # where(mask, v, x), which a traced program (a custom backward) can compute
        # a mask with values is a constant (x[x < 0] = 0 reads x before the write)
        mask = tensor(key.numpy()) if key.has_value else key
        new = where_(mask, value, x)
        _rebind(x, new if new.dtype == x.dtype else cast(new, x.dtype))
        return
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


def _long(index: Any, what: str) -> Tensor:
    t = index if isinstance(index, Tensor) else tensor(np.asarray(index))
    if t.dtype.kind not in "iu":
        raise RuntimeError(f"{what}(): Expected dtype int64 for index" + where())
    return t


def index_select(x: Tensor, dim: int, index: Any) -> Tensor:
    """As ``torch.index_select``: the entries ``index`` (1-D) along ``dim``."""
    d, idx = _dim("index_select", dim, x.ndim, x.shape), _long(index, "index_select")
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
    d = _dim("narrow", dim, x.ndim, x.shape)
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
    d, idx = _dim("gather", dim, x.ndim, x.shape), _long(index, "gather")
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
    d, idx = _dim("scatter_add", dim, x.ndim, x.shape), _long(index, "scatter_add")
    arrays = _along(x, d, idx, "scatter_add")
    v = _scatter_src(src, idx, x)
    arg = ops.IndexArg(0, "scatter_add", False, x.shape)
    return _result(ops.apply("add", x.node, ops.put_add(v.node, arrays, arg)), [x, v, idx])


def scatter(x: Tensor, dim: int, index: Any, src: Any = None, value: Any = None) -> Tensor:
    """As ``torch.scatter`` (src or value form): x[i][index[i][j]] = src[i][j] (dim 1)."""
    if (src is None) == (value is None):
        raise TypeError("scatter(): give exactly one of src and value")
    d, idx = _dim("scatter", dim, x.ndim, x.shape), _long(index, "scatter")
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
    d, idx = _dim("index_add", dim, x.ndim, x.shape), _long(index, "index_add")
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
# Joining and shaping, with PyTorch's names, signatures and semantics: dims are ints (negative
# from the end) or tuples, sizes varargs or one sequence. Most are reshapes, transposes and
# expands of the IR; cat, flip, roll, pad and split's pieces (crops) are ops of their own.


def _dims(what: str, dims: Any, ndim: int, shape: Any = None) -> tuple[int, ...]:
    """An int or a sequence of ints as distinct axes."""
    seq = dims if isinstance(dims, (tuple, list)) else (dims,)
    axes = tuple(_dim(what, d, ndim, shape) for d in seq)
    for a in axes:
        if axes.count(a) > 1:
            raise ValueError(f"{what}: dim {a} appears multiple times in the list of dims")
    return axes


def _sizes(args: Sequence[Any]) -> tuple:
    """Varargs sizes or one sequence of them (``x.repeat(2, 3)`` and ``x.repeat((2, 3))``)."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def _tensors(what: str, tensors: Any) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, (tuple, list)):
        raise TypeError(
            f"{what}: expects a list or tuple of tensors, got {type(tensors).__name__}" + where()
        )
    if not tensors:
        raise ValueError(f"{what}: expects a non-empty list of tensors" + where())
    out = [_lift(t) for t in tensors]
    for k, t in enumerate(out):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: entry {k} is a {type(tensors[k]).__name__}, not a tensor")
    return out  # type: ignore[return-value]


def _joined_dtype(what: str, ts: list[Tensor]) -> list[Tensor]:
    """The tensors in one dtype: integers and bools join floats as PyTorch promotes them; a
    float32 and a float64 tensor are an error, as in symbp's arithmetic (PyTorch would make
    the float32 model's values float64 without a word)."""
    dts = [np.dtype(t.dtype) for t in ts]
    floats = sorted({d for d in dts if d.kind == "f"}, key=str)
    if len(floats) > 1:
        k = next(i for i, d in enumerate(dts) if d != dts[0])
        raise ShapeError(
            f"{what}: tensor {k} is {dts[k]} but tensor 0 is {dts[0]}; convert one with "
            f".float() or .double()" + where()
        )
    if len(set(dts)) == 1:
        return ts
    kinds = {d.kind for d in dts}
    target = floats[0] if floats else int64 if kinds & set("iu") else dts[0]
    return [cast(t, target) for t in ts]


def cat(tensors: Sequence[Tensor], dim: int = 0, *, axis: int | None = None) -> Tensor:
    """Join tensors along ``dim`` (as ``torch.cat``; ``axis`` is its NumPy-style alias, as in
    ``torch.concatenate``); every other size must agree.

    >>> import symbp
    >>> symbp.cat([symbp.ones(2, 1), symbp.zeros(2, 2)], dim=1).tolist()
    [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    """
    ts = _joined_dtype("cat", _tensors("cat", tensors))
    if axis is not None:
        dim = axis
    first = ts[0]
    axis = _dim("cat", dim, first.ndim, first.shape)
    for k, t in enumerate(ts):  # PyTorch's checks, named for this call
        if t.ndim != first.ndim:
            raise ShapeError(
                f"cat: tensors must have the same number of dimensions: tensor 0 is "
                f"{shape_str(first.shape)}, tensor {k} is {shape_str(t.shape)}" + where()
            )
        for i, (a, b) in enumerate(zip(first.shape, t.shape)):
            if i != axis and a != b:
                raise ShapeError(
                    f"cat: sizes of tensors must match except in dim {axis}: tensor 0 is "
                    f"{shape_str(first.shape)}, tensor {k} is {shape_str(t.shape)} (dim {i}: "
                    f"{a} != {b})" + where()
                )
    return _result(ops.cat([t.node for t in ts], axis), ts)


concat = concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join equal-shaped tensors along a new axis ``dim`` (as ``torch.stack``)."""
    ts = _tensors("stack", tensors)
    for k, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise ShapeError(
                f"stack: expects each tensor to be equal size, but got {shape_str(ts[0].shape)} "
                f"at entry 0 and {shape_str(t.shape)} at entry {k}" + where()
            )
    axis = _dim("stack", dim, ts[0].ndim + 1, ts[0].shape)
    return cat([unsqueeze(t, axis) for t in ts], axis)


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    """Join along dim 1, or dim 0 for 1-D tensors (as ``torch.hstack``)."""
    ts = [atleast_1d(t) for t in _tensors("hstack", tensors)]
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    """Join along dim 0, 1-D tensors as rows (as ``torch.vstack``)."""
    return cat([atleast_2d(t) for t in _tensors("vstack", tensors)], 0)


def atleast_1d(x: Tensor) -> Tensor:
    return reshape(x, 1) if x.ndim == 0 else x


def atleast_2d(x: Tensor) -> Tensor:
    return reshape(x, 1, *x.shape) if x.ndim < 2 else x  # [n] -> [1, n], as torch


def _static(what: str, x: Tensor, axis: int) -> int:
    try:
        return ops.static_size(what, x.node, axis)
    except ShapeError as e:
        raise ShapeError(str(e) + where()) from None


def narrow_axis(x: Tensor, axis: int, start: int, length: int) -> Tensor:
    """Entries start .. start+length-1 along ``axis``: a split's piece."""
    return _unary_node(ops.crop_axis(x.node, axis, start, start + length), x)


def split(x: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple[Tensor, ...]:
    """Pieces along ``dim``: of ``split_size`` each (the last one smaller) or of the listed
    sizes, which must sum to the size (as ``torch.split``)."""
    axis = _dim("split", dim, x.ndim, x.shape)
    size = _static("split", x, axis)
    if isinstance(split_size_or_sections, (tuple, list)):
        sizes = [int(s) for s in split_size_or_sections]
        if builtins.sum(sizes) != size or any(s < 0 for s in sizes):
            raise ValueError(
                f"split: split_sizes must be non-negative and sum exactly to {size} (the size "
                f"of {shape_str(x.shape)} in dim {axis}), but got split_sizes={sizes}" + where()
            )
    else:
        step = int(split_size_or_sections)
        if step <= 0 and size:
            raise ValueError(f"split: split_size must be positive, got {step}" + where())
        sizes = [builtins.min(step, size - s) for s in range(0, size, step)] if size else [0]
    starts = itertools.accumulate([0, *sizes])
    return tuple(narrow_axis(x, axis, s, n) for s, n in zip(starts, sizes))


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple[Tensor, ...]:
    """At most ``chunks`` pieces of ceil(size / chunks) along ``dim`` (as ``torch.chunk``)."""
    if int(chunks) <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}" + where())
    axis = _dim("chunk", dim, x.ndim, x.shape)
    size = _static("chunk", x, axis)
    return split(x, builtins.max(-(-size // int(chunks)), 1), axis)


def unbind(x: Tensor, dim: int = 0) -> tuple[Tensor, ...]:
    """The slices along ``dim``, that axis removed (as ``torch.unbind``)."""
    axis = _dim("unbind", dim, x.ndim, x.shape)
    return tuple(squeeze(p, axis) for p in split(x, 1, axis))


def squeeze(x: Tensor, dim: Any = None) -> Tensor:
    """Drop axes of size 1: all of them, or those among ``dim`` (an int or a tuple); a named
    axis of another size stays, as in PyTorch."""
    if dim is None:
        axes: tuple[int, ...] = tuple(range(x.ndim))
    else:
        axes = _dims("squeeze", dim, x.ndim, x.shape) if x.ndim else ()
    return reshape(x, *[d for i, d in enumerate(x.shape) if not (i in axes and d == 1)])


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """A new axis of size 1 at ``dim`` (in [-ndim-1, ndim])."""
    axis = _dim("unsqueeze", dim, x.ndim + 1, x.shape)
    return reshape(x, *x.shape[:axis], 1, *x.shape[axis:])


def movedim(x: Tensor, source: Any, destination: Any) -> Tensor:
    """Move the axes ``source`` to the positions ``destination``; the others keep their order
    (as ``torch.movedim``)."""
    src = _dims("movedim", source, x.ndim, x.shape)
    dst = _dims("movedim", destination, x.ndim, x.shape)
    if len(src) != len(dst):
        raise ValueError(
            f"movedim: invalid source or destination dims: source ({list(src)} dims) should "
            f"contain the same number of dims as destination ({list(dst)} dims)" + where()
        )
    rest = iter(a for a in range(x.ndim) if a not in src)
    placed = dict(zip(dst, src))
    return permute(x, *[placed[i] if i in placed else next(rest) for i in range(x.ndim)])


moveaxis = movedim


def swapaxes(x: Tensor, axis0: int, axis1: int) -> Tensor:
    a, b = _dim("swapaxes", axis0, x.ndim, x.shape), _dim("swapaxes", axis1, x.ndim, x.shape)
    perm = list(range(x.ndim))
    perm[a], perm[b] = b, a
    return permute(x, *perm)


swapdims = swapaxes


def broadcast_to(x: Tensor, *size: Any) -> Tensor:
    """``x`` expanded to ``size``: new leading axes, size-1 axes repeated, -1 keeps an axis
    (as ``torch.broadcast_to`` and ``Tensor.expand``). A view: no copy."""
    want = _sizes(size)
    lead = len(want) - x.ndim
    if lead < 0:
        raise ShapeError(
            f"expand: the number of sizes provided ({len(want)}) must be greater or equal to "
            f"the number of dimensions in the tensor ({x.ndim})" + where()
        )
    shape = []
    for i, w in enumerate(want):
        have = x.shape[i - lead] if i >= lead else None
        if w == -1:
            if have is None:
                raise ShapeError(
                    f"expand: the size -1 is not allowed in a leading, non-existing dim {i} "
                    f"(target sizes {list(want)}, tensor {shape_str(x.shape)})" + where()
                )
            w = have
        if have is not None and have != 1 and have != w:
            raise ShapeError(
                f"expand: the expanded size of the tensor ({w}) must match the existing size "
                f"({have}) at non-singleton dimension {i}. Target sizes: {list(want)}. Tensor "
                f"sizes: {shape_str(x.shape)}" + where()
            )
        shape.append(w)
    return _unary_node(ops.broadcast_to(x.node, tuple(shape)), x)


def repeat(x: Tensor, *sizes: Any) -> Tensor:
    """``x`` tiled ``sizes[i]`` times along each axis, new leading axes for extra sizes (as
    ``Tensor.repeat``): an expand of interleaved size-1 axes, read as a view."""
    reps = [int(r) for r in _sizes(sizes)]
    if len(reps) < x.ndim:
        raise ShapeError(
            f"repeat: the number of repeat dims ({len(reps)}) can not be smaller than the "
            f"number of dimensions of the tensor {shape_str(x.shape)}" + where()
        )
    shape = (1,) * (len(reps) - x.ndim) + tuple(x.shape)
    split_shape: list[Any] = []
    big: list[Any] = []
    for axis, (r, d) in enumerate(zip(reps, shape)):
        if r < 0:
            raise ValueError(f"repeat: repeats must be non-negative, got {reps}" + where())
        if r != 1 and d != 1:  # a copy per repeat, ahead of the axis: [r, d]
            if not isinstance(d, int):
                raise ShapeError(
                    f"repeat: repeating dim {axis} of {shape_str(x.shape)}, the batch "
                    f"dimension {d}, would change the batch; repeat another dim" + where()
                )
            split_shape += [1, d]
            big += [r, d]
        else:
            split_shape.append(d)
            big.append(r * d if r != 1 else d)
    node = ops.expand(ops.reshape(x.node, tuple(split_shape)), tuple(big))
    out = tuple(r * d if r != 1 else d for r, d in zip(reps, shape))
    return _unary_node(ops.reshape(node, out), x)


def tile(x: Tensor, dims: Any) -> Tensor:
    """``torch.tile``: ``repeat``, with too few ``dims`` padded by leading 1s."""
    reps = list(_sizes((dims,)))
    return repeat(x, *([1] * (x.ndim - len(reps)) + reps))


def repeat_interleave(x: Tensor, repeats: Any, dim: int | None = None) -> Tensor:
    """Each entry ``repeats`` times in a row along ``dim`` (flattened when None), as
    ``torch.repeat_interleave`` with an int count."""
    if isinstance(repeats, Tensor) and repeats.ndim == 0 and repeats.has_value:
        repeats = int(repeats.item())
    if isinstance(repeats, (Tensor, list, tuple, np.ndarray)):
        raise NotImplementedError(
            "repeat_interleave: repeats per entry (a tensor) give a shape that depends on the "
            "data; symbp takes one int count" + where()
        )
    r = int(repeats)
    if r < 0:
        raise ValueError(f"repeat_interleave: repeats must be non-negative, got {r}" + where())
    if dim is None:
        x, axis = reshape(x, -1), 0
    else:
        axis = _dim("repeat_interleave", dim, x.ndim, x.shape)
    if r != 1 and x.shape[axis] != 1:  # a batch of B would become one of r·B
        _static("repeat_interleave", x, axis)
    d = x.shape[axis]
    node = ops.reshape(x.node, (*x.shape[: axis + 1], 1, *x.shape[axis + 1 :]))
    node = ops.expand(node, (*x.shape[: axis + 1], r, *x.shape[axis + 1 :]))
    return _unary_node(ops.reshape(node, (*x.shape[:axis], d * r, *x.shape[axis + 1 :])), x)


def flip(x: Tensor, *args: Any, dims: Any = None) -> Tensor:
    """Reverse the order along ``dims`` (as ``torch.flip(x, dims)``, ``x.flip(0, 1)`` or
    ``x.flip(dims=(0,))``). A view in compiled code."""
    if dims is not None and args:
        raise TypeError("flip: dims given twice, positionally and as dims=" + where())
    dims = _sizes(args) if dims is None else dims
    axes = _dims("flip", dims, x.ndim, x.shape) if x.ndim else ()
    return _unary_node(ops.flip(x.node, axes), x)


def fliplr(x: Tensor) -> Tensor:
    if x.ndim < 2:
        raise ShapeError(f"fliplr: input must be at least 2-D, got {shape_str(x.shape)}" + where())
    return flip(x, 1)


def flipud(x: Tensor) -> Tensor:
    if x.ndim < 1:
        raise ShapeError("fliplr: input must be at least 1-D, got a 0-d tensor" + where())
    return flip(x, 0)


def roll(x: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    """Shift entries cyclically along ``dims`` (as ``torch.roll``; none: the flattened
    tensor, shape kept). A view in compiled code."""
    shift = list(shifts) if isinstance(shifts, (tuple, list)) else [shifts]
    if dims is None:
        if len(shift) != 1:
            raise ValueError(f"roll: {len(shift)} shifts need as many dims" + where())
        return reshape(roll(reshape(x, -1), shift[0], 0), *x.shape)
    axes = list(dims) if isinstance(dims, (tuple, list)) else [dims]
    if len(axes) != len(shift):
        raise ValueError(
            f"roll: shifts and dimensions must align: {len(shift)} shifts, {len(axes)} dims"
            + where()
        )
    pairs = [(_dim("roll", a, x.ndim, x.shape), int(s)) for a, s in zip(axes, shift)]
    for a, s in pairs:
        if s % builtins.max(int(x.shape[a]) if isinstance(x.shape[a], int) else 1, 1):
            _static("roll", x, a)
    return _unary_node(ops.roll(x.node, pairs), x)


def pad(x: Tensor, pad: Sequence[int], mode: str = "constant", value: Any = None) -> Tensor:
    """``torch.nn.functional.pad``: ``pad`` lists (before, after) pairs from the last dim
    backwards; modes ``constant`` (with ``value``, default 0; negative widths crop),
    ``reflect``, ``replicate`` and ``circular`` (the last 1-3 dims of a batched or unbatched
    input, as PyTorch)."""
    widths = [int(p) for p in pad]
    if len(widths) % 2 or len(widths) // 2 > x.ndim:
        raise ValueError(
            f"pad: padding length must be even and at most twice the input's dims: got "
            f"{len(widths)} for {shape_str(x.shape)}" + where()
        )
    k = len(widths) // 2
    pairs = [(0, 0)] * (x.ndim - k) + [
        (widths[2 * i], widths[2 * i + 1]) for i in reversed(range(k))
    ]
    if mode not in ops.PAD_MODES:
        raise ValueError(f"pad: mode {mode!r} is none of {', '.join(ops.PAD_MODES)}" + where())
    if mode != "constant":
        if value is not None and value != 0:
            raise ValueError(f'pad: padding mode "{mode}" does not take a value' + where())
        if not 1 <= k <= 3 or x.ndim not in (k + 1, k + 2):
            raise NotImplementedError(
                f"pad: {mode} padding of the last {k} dims needs a {k + 1}-D or {k + 2}-D "
                f"input (batch optional), got {shape_str(x.shape)}, as PyTorch" + where()
            )
        if any(lo < 0 or hi < 0 for lo, hi in pairs):
            raise ValueError(f"pad: negative {mode} padding {widths}" + where())
    node = x.node
    # negative widths crop first (constant mode); what is left pads
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        ranges = []
        for a, ((lo, hi), d) in enumerate(zip(pairs, x.shape)):
            if lo < 0 or hi < 0:
                d = _static("pad", x, a)
                ranges.append((builtins.max(-lo, 0), d - builtins.max(-hi, 0)))
                if ranges[-1][0] > ranges[-1][1]:
                    raise ShapeError(
                        f"pad: widths {widths} leave dim {a} of {shape_str(x.shape)} empty"
                        + where()
                    )
            else:
                ranges.append((0, d))
        node = ops.crop(node, ranges)
        pairs = [(builtins.max(lo, 0), builtins.max(hi, 0)) for lo, hi in pairs]
    try:
        node = ops.pad(node, pairs, mode, 0 if value is None else value)
    except ShapeError as e:
        raise ShapeError(str(e) + where()) from None
    return _unary_node(node, x)


# -- issue 12/13 . reductions (rows of this family go below this line)
#
# PyTorch's reductions over any dim (an int, a tuple, negative, None for all). Where one is a
# composition of IR ops it is built as one (mean = sum / n, amin = -amax(-x), var from sums,
# norm from abs, pow and sum), so it derives, prints and compiles with no op of its own.


def _named(kind: str) -> Any:
    """PyTorch's (values, indices) result type for ``kind`` (torch.return_types.<kind>)."""
    return NamedTuple(kind, [("values", Tensor), ("indices", Tensor)])


_RESULTS = {k: _named(k) for k in ("min", "cummax", "cummin", "sort", "topk", "median")}
_RESULTS["max"] = MaxResult


def _lead(x: Tensor) -> Tensor:
    """A 0-d tensor as [1], so a dim-wise op has an axis to run along."""
    return reshape(x, 1) if x.ndim == 0 else x


def _unlead(out: Tensor, x: Tensor) -> Tensor:
    return reshape(out) if x.ndim == 0 and out.ndim == 1 else out


def _index_result(node: Node, x: Tensor) -> Tensor:
    """An int64 index node of ``x`` (no gradient)."""
    return _result(node, [x], False)


def _picked(x: Tensor, idx: Tensor, axis: int) -> Tensor:
    """x at int64 indices along ``axis``: its gradient goes to exactly the picked entries."""
    return _result(ops.take_along(x.node, idx.node, axis), [x, idx], x.requires_grad)


def _nonempty(x: Tensor, what: str) -> None:
    if sympy.sympify(numel(x.shape)).is_zero:
        raise shape_error(
            f"{what}(): the input {shape_str(x.shape)} is empty: no {what}; specify the "
            f"reduction dim with the 'dim' argument (as PyTorch)"
        )


def _extreme(x: Tensor, dim: Any, keepdim: bool, largest: bool):
    """max(x, dim) / min(x, dim): (values, indices), ties to the first, the gradient to it."""
    kind = "max" if largest else "min"
    y = _lead(x)
    axis = _dim(kind, dim, y.ndim, x.shape)
    if y.shape[axis] == 0:
        raise shape_error(f"{kind}(): dim {dim} of {shape_str(x.shape)} is empty")
    idx = _index_result(ops.argidx(y.node, axis, True, largest), y)
    values = _picked(y, idx, axis)
    if not keepdim or x.ndim == 0:
        squeezed = [d for a, d in enumerate(y.shape) if a != axis]
        values, idx = reshape(values, *squeezed), reshape(idx, *squeezed)
    return _RESULTS[kind](_unlead(values, x), _unlead(idx, x))


def amax(x: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """The maximum over ``dim`` (all dims for () or None); ties share the gradient evenly."""
    axes = _axes(x, None if dim == () else dim, "amax")
    if any(sympy.sympify(x.shape[a]).is_zero for a in axes):
        raise shape_error(f"amax(): reduces over an empty dim of {shape_str(x.shape)}")
    return _unary_node(ops.max_(x.node, axes, keepdim), x)


def amin(x: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """-amax(-x): the minimum over ``dim``, ties sharing the gradient evenly."""
    neg = _unary_node(ops.ew(-ops.xsym(0), [x.node], label="neg"), x)
    top = amax(neg, dim, keepdim)
    return _unary_node(ops.ew(-ops.xsym(0), [top.node], label="neg"), top)


def min(x: Tensor, dim: Any = None, keepdim: bool = False):  # noqa: A001
    """``x.min()`` is a scalar (ties share the gradient); ``x.min(dim)`` is (values,
    indices), the first minimum; ``min(a, b)`` with a tensor b is the elementwise minimum."""
    if isinstance(dim, Tensor):
        return binary("minimum", x, dim)
    if dim is None:
        _nonempty(x, "min")
        return amin(x, None)
    return _extreme(x, dim, keepdim, largest=False)


def _arg(x: Tensor, dim: Any, keepdim: bool, largest: bool) -> Tensor:
    if dim is None:  # over the flattened tensor, as PyTorch
        _nonempty(x, "argmax" if largest else "argmin")
        flat = reshape(x, -1)
        idx = _index_result(ops.argidx(flat.node, 0, False, largest), flat)
        return reshape(idx, *([1] * x.ndim)) if keepdim else idx
    y = _lead(x)
    axis = _dim("argmax" if largest else "argmin", dim, y.ndim, x.shape)
    idx = _index_result(ops.argidx(y.node, axis, keepdim and x.ndim > 0, largest), y)
    return _unlead(idx, x)


def argmax(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """int64 index of the first maximum (a NaN counts as the maximum), as PyTorch."""
    return _arg(x, dim, keepdim, True)


def argmin(x: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    """int64 index of the first minimum, as PyTorch."""
    return _arg(x, dim, keepdim, False)


def _accumulating(x: Tensor, dtype: Any) -> Tensor:
    """Sum-like reductions of bool and integer tensors accumulate in int64, as PyTorch."""
    if dtype is not None:
        return cast(x, dtypes.to_numpy(dtype, "dtype"))
    return cast(x, int64) if x.dtype.kind in "biu" else x


def prod(x: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """The product over ``dim`` (all for None); exact gradients with zeros, as PyTorch."""
    x = _accumulating(x, dtype)
    axes = _axes(x, dim, "prod")
    return _unary_node(ops.prod(x.node, axes, keepdim), x)


def _numel_over(x: Tensor, axes: tuple[int, ...]) -> sympy.Expr:
    return sympy.sympify(numel(tuple(x.shape[a] for a in axes)))


def var(
    x: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:
    """Σ (x - mean)² / (N - correction) over ``dim``; correction 1 by default (Bessel's),
    the old ``unbiased=False`` is correction 0. N ≤ correction gives inf or nan, as PyTorch."""
    if isinstance(dim, bool):  # the old var(x, unbiased) signature
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError("var: give correction or the older unbiased, not both")
    c = correction if correction is not None else (1 if unbiased is None else int(bool(unbiased)))
    if x.dtype.kind != "f":
        raise TypeError(f"var(): expects a float tensor, got {x.dtype} (as PyTorch)")
    axes = _axes(x, dim, "var")
    m = mean(x, axes, keepdim=True)
    centred = x - m
    total = sum(centred * centred, axes, keepdim)
    n = _numel_over(x, axes) - ops.to_expr(c)
    if n.is_number and n <= 0:  # 0/0 -> nan, s/0 -> inf, as PyTorch's division by max(0, N-c)
        return total * sympy.oo
    return total * (1 / n)


def std(
    x: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> Tensor:
    """sqrt(var(x, ...)), with var's arguments."""
    return var(x, dim, unbiased, keepdim, correction=correction).sqrt()


def var_mean(
    x: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> tuple[Tensor, Tensor]:
    """(var, mean) over ``dim``, as PyTorch."""
    if isinstance(dim, bool):
        dim, unbiased = None, dim
    v = var(x, dim, unbiased, keepdim, correction=correction)
    return v, mean(x, dim, keepdim)


def std_mean(
    x: Tensor,
    dim: Any = None,
    unbiased: Any = None,
    keepdim: bool = False,
    *,
    correction: Any = None,
) -> tuple[Tensor, Tensor]:
    """(std, mean) over ``dim``, as PyTorch."""
    v, m = var_mean(x, dim, unbiased, keepdim, correction=correction)
    return v.sqrt(), m


def _ew(expr: sympy.Expr, x: Tensor, label: str = "") -> Tensor:
    return _unary_node(ops.ew(expr, [x.node], label=label), x)


def vector_norm(x: Tensor, ord: Any = 2, dim: Any = None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """(Σ |x|^p)^(1/p) over ``dim`` (all for None): p = 2, 1, any positive float, inf (the
    largest |x|), -inf (the smallest) and 0 (the count of nonzeros), as
    torch.linalg.vector_norm. The gradient at 0 is 0, PyTorch's subgradient: the root and
    |x|^p are pinned to 0 at 0 (a Piecewise), where their derivatives would be 0/0."""
    if x.dtype.kind != "f":
        raise TypeError(f"vector_norm: expects a float tensor, got {x.dtype} (as PyTorch)")
    axes = tuple(range(x.ndim)) if dim is None else _axes(x, dim, "vector_norm")
    p = float(ord) if not isinstance(ord, str) else ord
    s = ops.xsym(0)
    if p == np.inf:
        return amax(_ew(sympy.Abs(s), x, "abs"), axes, keepdim)
    if p == -np.inf:
        return amin(_ew(sympy.Abs(s), x, "abs"), axes, keepdim)
    if p == 0:
        return sum(_ew(sympy.Piecewise((0, sympy.Eq(s, 0)), (1, True)), x), axes, keepdim)
    if not isinstance(p, float) or p < 0:
        raise ValueError(f"vector_norm: ord must be a number >= 0 or ±inf, got {ord!r}")
    if p == 1:
        return sum(_ew(sympy.Abs(s), x, "abs"), axes, keepdim)
    e = ops.to_expr(p)
    power = s**2 if p == 2 else sympy.Piecewise((0, sympy.Eq(s, 0)), (sympy.Abs(s) ** e, True))
    total = sum(_ew(power, x), axes, keepdim)
    root = sympy.sqrt(s) if p == 2 else s ** (1 / e)
    return _ew(sympy.Piecewise((0, sympy.Eq(s, 0)), (root, True)), total)


def norm(
    x: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False, dtype: Any = None
) -> Tensor:
    """torch.norm: 'fro' (and None) is the 2-norm of the entries over ``dim``; a number
    is ``vector_norm``'s ord. ('nuc' needs a singular value decomposition: not here.)"""
    if dtype is not None:
        x = cast(x, dtypes.to_numpy(dtype, "norm"))
    if p is None or p == "fro":
        p = 2
    if isinstance(p, str):
        raise NotImplementedError(f"norm: p={p!r} is not implemented (use 'fro' or a number)")
    return vector_norm(x, p, dim, keepdim)


def _finite_shift(m: Tensor) -> Tensor:
    """max(x) clamped to the finite range: subtracting an infinite max would make x - m nan
    (-inf - -inf), while a shift by the largest float keeps a row of -inf at -inf and one
    holding +inf at +inf. (SymPy takes real symbols as finite, so no test for inf folds.)"""
    big = ops.to_expr(float(np.finfo(m.dtype).max))
    return _ew(sympy.Max(sympy.Min(ops.xsym(0), big), -big), m)


def count_nonzero(x: Tensor, dim: Any = None) -> Tensor:
    """The number of nonzero entries over ``dim`` (all for None), int64, as PyTorch."""
    s = ops.xsym(0)
    hit = _unary_node(
        ops.ew(sympy.Piecewise((0, sympy.Eq(s, 0)), (1, True)), [x.node], dtype=int64), x, False
    )
    return sum(hit, dim)


def cumsum(x: Tensor, dim: Any, *, dtype: Any = None) -> Tensor:
    """Running sum along ``dim``: out_i = Σ_{j≤i} x_j (bool and int accumulate in int64)."""
    x = _accumulating(x, dtype)
    y = _lead(x)
    return _unlead(_unary_node(ops.cumsum(y.node, _dim("cumsum", dim, y.ndim, x.shape)), y), x)


def cumprod(x: Tensor, dim: Any, *, dtype: Any = None) -> Tensor:
    """Running product along ``dim``; its gradient is exact with zeros in x, as PyTorch."""
    x = _accumulating(x, dtype)
    y = _lead(x)
    return _unlead(_unary_node(ops.cumprod(y.node, _dim("cumprod", dim, y.ndim, x.shape)), y), x)


def _running(x: Tensor, dim: Any, largest: bool):
    kind = "cummax" if largest else "cummin"
    y = _lead(x)
    axis = _dim(kind, dim, y.ndim, x.shape)
    idx = _index_result(ops.cumarg(y.node, axis, largest), y)
    return _RESULTS[kind](_unlead(_picked(y, idx, axis), x), _unlead(idx, x))


def cummax(x: Tensor, dim: Any):
    """(values, indices) of the running maximum along ``dim``; ties to the last index and
    the gradient to it, as PyTorch."""
    return _running(x, dim, True)


def cummin(x: Tensor, dim: Any):
    """(values, indices) of the running minimum along ``dim``, as ``cummax``."""
    return _running(x, dim, False)


def _sorted_part(x: Tensor, dim: Any, descending: bool, start: int, stop: Any, kind: str):
    y = _lead(x)
    axis = _dim(kind, dim, y.ndim, x.shape)
    idx = _index_result(ops.argsort(y.node, axis, descending, start, stop), y)
    return y, idx, axis


def sort(x: Tensor, dim: Any = -1, descending: bool = False, stable: bool = False):
    """(values, indices) sorted along ``dim``. Always stable (equal entries keep their order),
    which PyTorch's stable=True guarantees and its default gives on the CPU."""
    y, idx, axis = _sorted_part(x, dim, descending, 0, None, "sort")
    return _RESULTS["sort"](_unlead(_picked(y, idx, axis), x), _unlead(idx, x))


def argsort(x: Tensor, dim: Any = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The indices that sort ``x`` along ``dim`` (stable, as ``sort``)."""
    return _unlead(_sorted_part(x, dim, descending, 0, None, "argsort")[1], x)


def topk(x: Tensor, k: int, dim: Any = -1, largest: bool = True, sorted: bool = True):  # noqa: A002
    """(values, indices) of the k largest (or smallest) along ``dim``, largest first; the
    gradient goes to the picked entries. Among tied entries symbp picks the first ones;
    PyTorch's choice among ties is unspecified (its CPU kernel may pick others)."""
    y = _lead(x)
    n = y.shape[_dim("topk", dim, y.ndim, x.shape)]
    if not isinstance(k, (int, np.integer)) or k < 0 or (isinstance(n, int) and k > n):
        raise shape_error(f"topk: k={k} out of range for dim {dim} of {shape_str(x.shape)}")
    y, idx, axis = _sorted_part(x, dim, largest, 0, int(k), "topk")
    return _RESULTS["topk"](_unlead(_picked(y, idx, axis), x), _unlead(idx, x))


def median(x: Tensor, dim: Any = None, keepdim: bool = False):
    """The lower median (entry (n-1)//2 of the sorted values), as PyTorch: ``median()`` a
    scalar whose gradient is shared by the entries equal to it, ``median(dim)`` (values,
    indices) whose gradient goes to the one entry indexed. The index is the stable sort's,
    which is PyTorch's on ties (checked in the tests)."""
    if dim is None:  # the value; its gradient shared evenly by the entries equal to it
        if sympy.sympify(numel(x.shape)).is_zero:
            return sum(x) * sympy.nan  # PyTorch's median of nothing is nan
        m = median(reshape(x.detach(), -1), 0).values
        at = ops.broadcast_to(m.node, x.shape)
        s0, s1 = ops.xsym(0), ops.xsym(1)
        hit = _result(
            ops.ew(sympy.Piecewise((1, sympy.Eq(s0, s1)), (0, True)), [x.node, at]), [x, m], False
        )
        return m + sum((x - m) * hit) / sum(hit)  # m exactly; d/dx = hit / count
    y = _lead(x)
    axis = _dim("median", dim, y.ndim, x.shape)
    n = y.shape[axis]
    if not isinstance(n, int):
        raise shape_error(f"median: dim {dim} must have a known size, got {shape_str(x.shape)}")
    mid = (n - 1) // 2
    y, idx, axis = _sorted_part(x, dim, False, mid, mid + 1, "median")
    values = _picked(y, idx, axis)
    if not keepdim or x.ndim == 0:
        squeezed = [d for a, d in enumerate(y.shape) if a != axis]
        values, idx = reshape(values, *squeezed), reshape(idx, *squeezed)
    return _RESULTS["median"](_unlead(values, x), _unlead(idx, x))


#
# -- issue 12/13 . linalg (rows of this family go below this line)
#
# PyTorch's linear algebra over the IR's products: ``matmul`` (2-D) and ``bmm`` (batched),
# with transposes, reshapes, elementwise products and sums. Each function checks its operands'
# ranks and inner sizes itself, so an error names the function the user called.


def _linalg_operands(what: str, *xs: Any) -> list[Tensor]:
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
    (inp,) = _linalg_operands(what, inp)
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
    a, b = _linalg_operands("mm", a, b)
    _need_ndim("mm", a, (2,), "a")
    _need_ndim("mm", b, (2,), "a")
    _inner("mm", a, b, a.shape[1], b.shape[0])
    return matmul(a, b)


def bmm(a: Any, b: Any) -> Tensor:
    """[B, n, k] @ [B, k, m], as ``torch.bmm`` (equal batches, no broadcasting)."""
    a, b = _linalg_operands("bmm", a, b)
    _need_ndim("bmm", a, (3,), "a")
    _need_ndim("bmm", b, (3,), "a")
    if a.shape[0] != b.shape[0]:
        raise shape_error(f"bmm: batch sizes differ: {shape_str(a.shape)} and {shape_str(b.shape)}")
    _inner("bmm", a, b, a.shape[2], b.shape[1])
    return matmul(a, b)


def mv(a: Any, v: Any) -> Tensor:
    """[n, k] @ [k], as ``torch.mv``."""
    a, v = _linalg_operands("mv", a, v)
    _need_ndim("mv", a, (2,), "a matrix:")
    _need_ndim("mv", v, (1,), "a vector:")
    _inner("mv", a, v, a.shape[1], v.shape[0])
    return matmul(a, v)


def dot(a: Any, b: Any) -> Tensor:
    """Σ_i a[i] b[i] of two vectors of one length, as ``torch.dot``."""
    a, b = _linalg_operands("dot", a, b)
    _need_ndim("dot", a, (1,), "1-D tensors:")
    _need_ndim("dot", b, (1,), "1-D tensors:")
    _inner("dot", a, b, a.shape[0], b.shape[0])
    return sum(a * b)


def outer(a: Any, b: Any) -> Tensor:
    """out[i, j] = a[i] b[j], as ``torch.outer`` (alias ``ger``)."""
    a, b = _linalg_operands("outer", a, b)
    _need_ndim("outer", a, (1,), "1-D tensors:")
    _need_ndim("outer", b, (1,), "1-D tensors:")
    return reshape(a, a.shape[0], 1) * reshape(b, 1, b.shape[0])


ger = outer


def inner(a: Any, b: Any) -> Tensor:
    """Σ over the last axis of both: [*a, k], [*b, k] -> [*a, *b], as ``torch.inner``."""
    a, b = _linalg_operands("inner", a, b)
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
    a, b = _linalg_operands("tensordot", a, b)
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
    (x,) = _linalg_operands("tril", x)
    return _unary_node(ops.tril(x.node, diagonal, upper=False), x)


def triu(x: Any, diagonal: int = 0) -> Tensor:
    """Entries on and above diagonal ``diagonal`` of the last two axes (``torch.triu``)."""
    (x,) = _linalg_operands("triu", x)
    return _unary_node(ops.tril(x.node, diagonal, upper=True), x)


def diagonal(x: Any, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal of axes (dim1, dim2), ``offset`` above it, as the last axis
    (``torch.diagonal``)."""
    (x,) = _linalg_operands("diagonal", x)
    d1, d2 = _dim("diagonal", dim1, x.ndim, x.shape), _dim("diagonal", dim2, x.ndim, x.shape)
    if d1 == d2:
        raise shape_error(f"diagonal: dim1 and dim2 are both {d1}")
    return _unary_node(ops.diagonal(x.node, offset, d1, d2), x)


def diag_embed(x: Any, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """The last axis on the diagonal of two new axes (dim1, dim2) (``torch.diag_embed``)."""
    (x,) = _linalg_operands("diag_embed", x)
    d1 = _dim("diag_embed", dim1, x.ndim + 1, x.shape)
    d2 = _dim("diag_embed", dim2, x.ndim + 1, x.shape)
    if d1 == d2:
        raise shape_error(f"diag_embed: dim1 and dim2 are both {d1}")
    n = x.shape[-1] + builtins.abs(offset)
    return _unary_node(ops.diag_embed(x.node, offset, d1, d2, (n, n)), x)


def diag(x: Any, diagonal: int = 0) -> Tensor:
    """A vector to the square matrix with it on diagonal ``diagonal``; a matrix to that
    diagonal (``torch.diag``)."""
    (x,) = _linalg_operands("diag", x)
    _need_ndim("diag", x, (1, 2))
    if x.ndim == 1:
        return diag_embed(x, diagonal, 0, 1)
    return _unary_node(ops.diagonal(x.node, diagonal, 0, 1), x)


def matrix_trace(x: Any) -> Tensor:
    """The sum of a matrix's diagonal (``torch.trace``; ``symbp.trace`` of a Tensor)."""
    (x,) = _linalg_operands("trace", x)
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
    symbp.Size([2, 4])
    """
    what = f"einsum {equation!r}"
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    ts = _linalg_operands(what, *operands)
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
