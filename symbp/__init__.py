"""symbp: symbolic differentiation and Numba code generation for training neural networks.

Write models as in PyTorch; symbp traces them into a static graph, derives the backward graph
symbolically (every elementwise derivative from SymPy), simplifies it on purpose, and runs it.

>>> import symbp
>>> x = symbp.tensor([1.0, 2.0, 3.0])
>>> w = symbp.tensor(2.0, requires_grad=True)
>>> loss = ((w * x - 1) ** 2).mean()
>>> loss.backward()  # d/dw of mean((w x - 1)^2) is 2/3 * sum((w x - 1) x) = 44/3 at w = 2
>>> w.grad  # a Tensor, in the default dtype (float32), printed as PyTorch prints it
tensor(14.6667)
>>> w.grad.item()
14.666666030883789
"""

from symbp import backends, cuda, dtypes, nn, optim, random, utils
from symbp.api import Derived, Traced, derive, elementwise, grad, symbols, trace
from symbp.check import GradcheckReport, GradcheckWarning, check_grads, gradcheck
from symbp.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from symbp.compiled import CompiledModel, compile
from symbp.compiler.cache import cache_info, clear_cache
from symbp.compiler.ir import B, ShapeError
from symbp.compiler.ops import print_program
from symbp.devices import DeviceError, device, get_default_device, set_default_device
from symbp.dtypes import dtype, float16, float32, float64, int32, int64
from symbp.factories import (
    BoolTensor,
    DoubleTensor,
    FloatTensor,
    LongTensor,
    arange,
    as_tensor,
    bernoulli,
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    linspace,
    logspace,
    multinomial,
    normal,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from symbp.formulas import Formulas, formulas
from symbp.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from symbp.graph import ComputationGraph, computation_graph
from symbp.interop import WeightsError, load_weights, save_weights
from symbp.plot import plot_formula, plot_history
from symbp.progress import Progress
from symbp.random import (
    Generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    seed,
    set_rng_state,
)
from symbp.serialization import load, save
from symbp.size import Size
from symbp.tensor import (
    Parameter,
    Tensor,
    flatten,
    log_softmax,
    logsumexp,
    matmul,
    onehot,
    placeholder,
    softmax,
)
from symbp.tensor import get_default_dtype as _get_default_dtype
from symbp.tensor import max as max
from symbp.tensor import mean as mean
from symbp.tensor import set_default_dtype as _set_default_dtype
from symbp.tensor import sum as sum
from symbp.training import EarlyStopping
from symbp.version import __version__ as __version__

# PyTorch's aliases (defined here, after every use of the builtins they shadow in this module).
float = float32  # noqa: A001
double = float64
half = float16
long = int64
int = int32  # noqa: A001
bool = dtypes.bool_  # noqa: A001


def set_default_dtype(d: object) -> None:
    """As ``torch.set_default_dtype``: ``symbp.float32`` or ``symbp.float64`` for new float
    tensors (Python floats, ``zeros``, ``rand``, layers' parameters)."""
    np_dtype = dtypes.to_numpy(d, "symbp.set_default_dtype")
    if np_dtype.kind != "f":
        raise TypeError(
            f"symbp.set_default_dtype: expected a float dtype, got {dtypes.of(np_dtype)!r}"
        )
    _set_default_dtype(np_dtype)


def get_default_dtype() -> dtype:
    """The dtype of new float tensors, as a symbp dtype (``symbp.float32`` by default)."""
    return dtypes.of(_get_default_dtype())


def _unary(name: str):
    def fn(x):
        import sympy

        from symbp.compiler.ops import ELEMENTWISE
        from symbp.tensor import unary

        if isinstance(x, sympy.Basic):  # on formulas: symbp.sigmoid(w*x + b) for symbp.grad
            return ELEMENTWISE[name](x)
        return unary(name, x)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} (its formula is ops.ELEMENTWISE[{name!r}])."
    return fn


sigmoid = _unary("sigmoid")
relu_, sigmoid_, tanh_ = Tensor.relu_, Tensor.sigmoid_, Tensor.tanh_  # torch.relu_(x) ...
relu = _unary("relu")
tanh = _unary("tanh")
exp = _unary("exp")
log = _unary("log")
sqrt = _unary("sqrt")
abs = _unary("abs")  # noqa: A001
gelu = _unary("gelu")
silu = _unary("silu")
softplus = _unary("softplus")

__all__ = [
    "B",
    "BoolTensor",
    "Checkpoint",
    "CheckpointError",
    "CompiledModel",
    "ComputationGraph",
    "Derived",
    "DeviceError",
    "DoubleTensor",
    "EarlyStopping",
    "FloatTensor",
    "Formulas",
    "Generator",
    "GradcheckReport",
    "GradcheckWarning",
    "LongTensor",
    "Parameter",
    "Progress",
    "ShapeError",
    "Size",
    "Tensor",
    "Traced",
    "WeightsError",
    "abs",
    "arange",
    "as_tensor",
    "backends",
    "bernoulli",
    "bool",
    "cache_info",
    "check_grads",
    "clear_cache",
    "compile",
    "computation_graph",
    "cuda",
    "derive",
    "device",
    "double",
    "dtype",
    "dtypes",
    "elementwise",
    "empty",
    "empty_like",
    "enable_grad",
    "exp",
    "eye",
    "flatten",
    "float",
    "float16",
    "float32",
    "float64",
    "formulas",
    "from_numpy",
    "full",
    "full_like",
    "gelu",
    "get_default_device",
    "get_default_dtype",
    "get_rng_state",
    "grad",
    "gradcheck",
    "half",
    "inference_mode",
    "initial_seed",
    "int",
    "int32",
    "int64",
    "is_grad_enabled",
    "linspace",
    "load",
    "load_checkpoint",
    "load_weights",
    "log",
    "log_softmax",
    "logspace",
    "logsumexp",
    "long",
    "manual_seed",
    "matmul",
    "max",
    "mean",
    "multinomial",
    "nn",
    "no_grad",
    "normal",
    "onehot",
    "ones",
    "ones_like",
    "optim",
    "placeholder",
    "plot_formula",
    "plot_history",
    "print_program",
    "rand",
    "rand_like",
    "randint",
    "randint_like",
    "randn",
    "randn_like",
    "random",
    "randperm",
    "relu",
    "relu_",
    "save",
    "save_checkpoint",
    "save_weights",
    "seed",
    "set_default_device",
    "set_default_dtype",
    "set_grad_enabled",
    "set_rng_state",
    "sigmoid",
    "sigmoid_",
    "silu",
    "softmax",
    "softplus",
    "sqrt",
    "sum",
    "symbols",
    "tanh",
    "tanh_",
    "tensor",
    "trace",
    "utils",
    "zeros",
    "zeros_like",
]

# -- issue 12/13 (names and __all__ += [...]) . math (rows of this family go below this line)
# PyTorch's elementwise math (symbp.tensor.MATH_FUNCTIONS; the activations with parameters
# are in symbp.nn.functional, as PyTorch has them)
from symbp.tensor import MATH_FUNCTIONS as _MATH  # noqa: E402

sin, cos, tan = _MATH["sin"], _MATH["cos"], _MATH["tan"]
asin, acos, atan, atan2 = _MATH["asin"], _MATH["acos"], _MATH["atan"], _MATH["atan2"]
arcsin, arccos, arctan, arctan2 = asin, acos, atan, atan2
sinh, cosh, asinh, acosh, atanh = (_MATH[n] for n in ("sinh", "cosh", "asinh", "acosh", "atanh"))
arcsinh, arccosh, arctanh = asinh, acosh, atanh
exp2, expm1, log2, log10, log1p = (_MATH[n] for n in ("exp2", "expm1", "log2", "log10", "log1p"))
rsqrt, reciprocal, square = _MATH["rsqrt"], _MATH["reciprocal"], _MATH["square"]
erf, erfc, erfinv = _MATH["erf"], _MATH["erfc"], _MATH["erfinv"]
floor, ceil, round, trunc = _MATH["floor"], _MATH["ceil"], _MATH["round"], _MATH["trunc"]  # noqa: A001
fix, frac = trunc, _MATH["frac"]
fmod, remainder, lerp, hypot = _MATH["fmod"], _MATH["remainder"], _MATH["lerp"], _MATH["hypot"]
xlogy, logaddexp, nan_to_num = _MATH["xlogy"], _MATH["logaddexp"], _MATH["nan_to_num"]
pow = _MATH["pow"]  # noqa: A001
from symbp.tensor import floor_divide  # noqa: E402

__all__ += [
    "acos",
    "acosh",
    "arccos",
    "arccosh",
    "arcsin",
    "arcsinh",
    "arctan",
    "arctan2",
    "arctanh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "cos",
    "cosh",
    "erf",
    "erfc",
    "erfinv",
    "exp2",
    "expm1",
    "fix",
    "floor",
    "floor_divide",
    "fmod",
    "frac",
    "hypot",
    "lerp",
    "log1p",
    "log2",
    "log10",
    "logaddexp",
    "nan_to_num",
    "pow",
    "reciprocal",
    "remainder",
    "round",
    "rsqrt",
    "sin",
    "sinh",
    "square",
    "tan",
    "trunc",
    "xlogy",
]  # fmt: skip
#
# -- issue 12/13 (names and __all__ += [...]) . logic (rows of this family go below this line)
from symbp.tensor import all_ as all  # noqa: E402
from symbp.tensor import any_ as any  # noqa: E402
from symbp.tensor import (  # noqa: E402
    clamp,
    clamp_max,
    clamp_min,
    clip,
    eq,
    fmax,
    fmin,
    ge,
    gt,
    isfinite,
    isinf,
    isnan,
    isneginf,
    isposinf,
    le,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    masked_fill,
    maximum,
    minimum,
    ne,
    promote_types,
    result_type,
    sgn,
    sign,
)
from symbp.tensor import where_ as where  # noqa: E402

greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne
__all__ += [
    "all",
    "any",
    "clamp",
    "clamp_max",
    "clamp_min",
    "clip",
    "eq",
    "fmax",
    "fmin",
    "ge",
    "greater",
    "greater_equal",
    "gt",
    "isfinite",
    "isinf",
    "isnan",
    "isneginf",
    "isposinf",
    "le",
    "less",
    "less_equal",
    "logical_and",
    "logical_not",
    "logical_or",
    "logical_xor",
    "lt",
    "masked_fill",
    "maximum",
    "minimum",
    "ne",
    "not_equal",
    "promote_types",
    "result_type",
    "sgn",
    "sign",
    "where",
]
#
# -- issue 12/13 (names and __all__ += [...]) . indexing (rows of this family go below this line)
from symbp.tensor import (  # noqa: E402 (the indexing family's names, PyTorch's)
    gather,
    index_add,
    index_put,
    index_select,
    masked_select,
    narrow,
    scatter,
    scatter_add,
    take,
)

__all__ += [
    "gather",
    "index_add",
    "index_put",
    "index_select",
    "masked_select",
    "narrow",
    "scatter",
    "scatter_add",
    "take",
]
#
# -- issue 12/13 (names and __all__ += [...]) . shaping (rows of this family go below this line)
from symbp.tensor import (  # noqa: E402 (after the builtins' aliases above)
    atleast_1d,
    atleast_2d,
    broadcast_to,
    cat,
    chunk,
    concat,
    concatenate,
    flip,
    fliplr,
    flipud,
    hstack,
    moveaxis,
    movedim,
    permute,
    repeat_interleave,
    reshape,
    roll,
    split,
    squeeze,
    stack,
    swapaxes,
    swapdims,
    tile,
    unbind,
    unsqueeze,
    vstack,
)

__all__ += [
    "atleast_1d",
    "atleast_2d",
    "broadcast_to",
    "cat",
    "chunk",
    "concat",
    "concatenate",
    "flip",
    "fliplr",
    "flipud",
    "hstack",
    "moveaxis",
    "movedim",
    "permute",
    "repeat_interleave",
    "reshape",
    "roll",
    "split",
    "squeeze",
    "stack",
    "swapaxes",
    "swapdims",
    "tile",
    "unbind",
    "unsqueeze",
    "vstack",
]
# -- issue 12/13 (names and __all__ += [...]) . reductions (rows of this family go below this line)
from symbp.tensor import (  # noqa: E402 (the families' names come after the core's)
    amax,
    amin,
    argmax,
    argmin,
    argsort,
    count_nonzero,
    cummax,
    cummin,
    cumprod,
    cumsum,
    median,
    norm,
    prod,
    sort,
    std,
    std_mean,
    topk,
    var,
    var_mean,
    vector_norm,
)
from symbp.tensor import min as min  # noqa: E402

__all__ += [
    "amax",
    "amin",
    "argmax",
    "argmin",
    "argsort",
    "count_nonzero",
    "cummax",
    "cummin",
    "cumprod",
    "cumsum",
    "median",
    "min",
    "norm",
    "prod",
    "sort",
    "std",
    "std_mean",
    "topk",
    "var",
    "var_mean",
    "vector_norm",
]
#
# -- issue 12/13 (names and __all__ += [...]) . linalg (rows of this family go below this line)
#
from symbp import linalg  # noqa: E402
from symbp.api import trace as _trace_program  # noqa: E402
from symbp.tensor import (  # noqa: E402
    addbmm,
    addmm,
    addmv,
    baddbmm,
    bmm,
    diag,
    diag_embed,
    diagonal,
    dot,
    einsum,
    ger,
    inner,
    matrix_trace,
    mm,
    mv,
    outer,
    tensordot,
    tril,
    triu,
)


def trace(fn, *args, **kwargs):  # type: ignore[no-untyped-def,no-redef]  # noqa: F811
    """``symbp.trace(tensor)``: the sum of a matrix's diagonal, as ``torch.trace``;
    ``symbp.trace(fn, *shapes)``: trace ``fn`` into the IR (``symbp.api.trace``)."""
    if isinstance(fn, Tensor):
        return matrix_trace(fn, *args, **kwargs)
    return _trace_program(fn, *args, **kwargs)


__all__ += [
    "addbmm",
    "addmm",
    "addmv",
    "baddbmm",
    "bmm",
    "diag",
    "diag_embed",
    "diagonal",
    "dot",
    "einsum",
    "ger",
    "inner",
    "linalg",
    "matrix_trace",
    "mm",
    "mv",
    "outer",
    "tensordot",
    "tril",
    "triu",
]
# -- issue 12/13 (names and __all__ += [...]) . autograd (rows of this family go below this line)
#
from symbp import autograd  # noqa: E402
from symbp.autograd import rows as _function_rows  # noqa: E402, F401 (the function op's rows)

__all__ += ["autograd"]
# -- issue 17 . loops: scan, one IR node for a recurrence (nn.RNN/LSTM/GRU traced to compile)
from symbp.api import scan  # noqa: E402

__all__ += ["scan"]
# -- issue 13 . PyTorch's small top-level helpers, and the names symbp does not have
#
import builtins as _builtins  # noqa: E402 (bool, float here are PyTorch's dtypes)

import numpy as _np  # noqa: E402


def numel(input: Tensor) -> object:  # noqa: A002 (PyTorch's names)
    return input.numel()


def is_tensor(obj: object) -> _builtins.bool:
    return isinstance(obj, Tensor)


def is_floating_point(input: Tensor) -> _builtins.bool:  # noqa: A002
    return input.is_floating_point()


def allclose(
    input: Tensor,  # noqa: A002
    other: Tensor,
    rtol: _builtins.float = 1e-05,
    atol: _builtins.float = 1e-08,
    equal_nan: _builtins.bool = False,
) -> _builtins.bool:
    """As ``torch.allclose``: |input - other| <= atol + rtol |other| everywhere."""
    return _builtins.bool(_np.allclose(input.numpy(), other.numpy(), rtol, atol, equal_nan))


def equal(input: Tensor, other: Tensor) -> _builtins.bool:  # noqa: A002
    """As ``torch.equal``: the same shape and the same values."""
    a, b = input.numpy(), other.numpy()
    return a.shape == b.shape and _builtins.bool(_np.array_equal(a, b))


# PyTorch names with no symbp counterpart: an AttributeError saying why, and what to use
_NOT_IN_SYMBP = {
    "amp": "symbp runs in float32/float64 on the CPU (no mixed precision)",
    "autocast": "symbp runs in float32/float64 on the CPU (no mixed precision)",
    "jit": "symbp.compile(model, loss, optimizer) traces and compiles a model",
    "distributed": "symbp trains in one process on the CPU",
    "mps": "symbp runs on the CPU (symbp.backends.mps.is_available() is False)",
    "bfloat16": "symbp computes in float32 or float64",
    "complex64": "symbp has real dtypes only (float32, float64, int64, int32, bool)",
    "complex128": "symbp has real dtypes only (float32, float64, int64, int32, bool)",
}


def __getattr__(name: str) -> object:
    if name in _NOT_IN_SYMBP:
        raise AttributeError(f"symbp has no 'torch.{name}': {_NOT_IN_SYMBP[name]}")
    raise AttributeError(f"module 'symbp' has no attribute '{name}'")


__all__ += ["allclose", "equal", "is_floating_point", "is_tensor", "numel"]
