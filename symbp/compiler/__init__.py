"""The compiler: a traced program in, a compiled Numba module out. The modules, in the order
the data flows through them:

- ``ir``: the IR, immutable interned tensor nodes ``Node(op, src, arg, shape, dtype)``, the
  walks over them, and the symbols programs share (the batch size ``B``; an update rule's
  ``P``, ``G``, ``T``);
- ``ops``: the op table, each op in one place (shape rule, NumPy reference, adjoint);
  ``scalar``: the scalar functions SymPy lacks, each with its derivative and printed form;
- ``autodiff``: reverse mode, the backward graph built by the chain rule in the same IR;
- ``simplify``: purposeful rewrites (folding, CSE, stable forms), a program to a program;
- ``loops``: ``scan`` and its adjoint, the IR's loops, and the pass that makes a forward loop
  store what its adjoint reads;
- ``lower``: schedule (fusing elementwise chains), the Numba printer, the emitter, the
  library kernels, the whole generated module;
- ``runtime`` and ``cache``: load a generated module through the disk cache, and run it;
- ``reference``: the NumPy executor every stage is tested against.

The front end (``symbp.tensor``, ``nn``, ``optim``, ``functional``: PyTorch's API, whose module
paths it keeps) traces programs into this IR; ``symbp.api`` runs the stages on one screen;
the tools (``formulas``, ``check``, ``cli``, ``export`` ...) use both. Nothing here imports
from above (tests/test_architecture.py checks it).
"""
