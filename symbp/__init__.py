"""symbp: symbolic differentiation and Numba code generation for training neural networks.

Write models as in PyTorch; symbp traces them into a static graph, derives the backward graph
symbolically (every elementwise derivative from SymPy), simplifies it on purpose, and runs it.

>>> import symbp
>>> x = symbp.tensor([1.0, 2.0, 3.0])
>>> w = symbp.tensor(2.0, requires_grad=True)
>>> loss = ((w * x - 1) ** 2).mean()
>>> loss.backward()
>>> float(w.grad)
18.666666666666668
"""

from symbp import nn, optim
from symbp.api import Derived, Traced, derive, elementwise, grad, symbols, trace
from symbp.cache import cache_info, clear_cache
from symbp.check import GradcheckReport, GradcheckWarning, check_grads, gradcheck
from symbp.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from symbp.compiled import CompiledModel, compile
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
from symbp.ir import B, ShapeError, float32, float64, int64, print_program
from symbp.nn.init import manual_seed
from symbp.plot import plot_formula, plot_history
from symbp.progress import Progress
from symbp.tensor import (
    Parameter,
    Tensor,
    get_default_dtype,
    log_softmax,
    logsumexp,
    matmul,
    onehot,
    placeholder,
    set_default_dtype,
    softmax,
    tensor,
)
from symbp.tensor import max as max
from symbp.tensor import mean as mean
from symbp.tensor import sum as sum
from symbp.training import EarlyStopping

__version__ = "0.1.0"


def _unary(name: str):
    def fn(x):
        import sympy

        from symbp.ops import ELEMENTWISE
        from symbp.tensor import unary

        if isinstance(x, sympy.Basic):  # on formulas: symbp.sigmoid(w*x + b) for symbp.grad
            return ELEMENTWISE[name](x)
        return unary(name, x)

    fn.__name__ = name
    fn.__doc__ = f"Elementwise {name} (its formula is ops.ELEMENTWISE[{name!r}])."
    return fn


sigmoid = _unary("sigmoid")
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
    "Checkpoint",
    "CheckpointError",
    "CompiledModel",
    "ComputationGraph",
    "Derived",
    "EarlyStopping",
    "Formulas",
    "GradcheckReport",
    "GradcheckWarning",
    "Parameter",
    "Progress",
    "ShapeError",
    "Tensor",
    "Traced",
    "WeightsError",
    "abs",
    "cache_info",
    "check_grads",
    "clear_cache",
    "compile",
    "computation_graph",
    "derive",
    "elementwise",
    "enable_grad",
    "exp",
    "float32",
    "float64",
    "formulas",
    "gelu",
    "get_default_dtype",
    "grad",
    "gradcheck",
    "inference_mode",
    "int64",
    "is_grad_enabled",
    "load_checkpoint",
    "load_weights",
    "log",
    "log_softmax",
    "logsumexp",
    "manual_seed",
    "matmul",
    "max",
    "mean",
    "nn",
    "no_grad",
    "onehot",
    "optim",
    "placeholder",
    "plot_formula",
    "plot_history",
    "print_program",
    "relu",
    "save_checkpoint",
    "save_weights",
    "set_default_dtype",
    "set_grad_enabled",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "sqrt",
    "sum",
    "symbols",
    "tanh",
    "tensor",
    "trace",
]
