"""Stage 4, lower: schedule the simplified program into kernels and print it as Numba source.

- ``schedule``: which nodes get buffers, which are read through views, kernel order;
- ``printer``:  one SymPy scalar formula -> one line of nopython-mode Python;
- ``emit``:     one kernel -> a loop nest (or a BLAS call);
- ``program``:  the whole module: the training loop (``train``) and inference (``predict``);
- ``support``:  the scalar helpers (stable sigmoid, softplus, clamped log), the shuffle
  and the dropout masks' hash.
"""

from symbp.compiler import cache

# Numba's cache of the kernels below (conv_kernels, support) goes to symbp's cache directory:
# set before any of them is decorated, whichever of them is imported first. (Their parallel
# regions run on OpenMP: runtime.prefer_openmp, when symbp first loads a program.)
cache.use_for_numba()

from symbp.compiler.lower.printer import LoweringError, NumbaPrinter, numba_code  # noqa: E402
from symbp.compiler.lower.program import Lowered, ParamSpec, StateSpec, lower_predict, lower_train  # noqa: E402

__all__ = [
    "Lowered",
    "LoweringError",
    "NumbaPrinter",
    "ParamSpec",
    "StateSpec",
    "lower_predict",
    "lower_train",
    "numba_code",
]
