"""The ``function`` op's rows in the backend stages' tables (one op, one place: here).

A custom Function's output is a view of its forward's result (``src[0]``): the scheduler
reads through it as through ``detach``, the emitter reads ``src[0]``, ``formulas`` shows the
forward's expression (the user's backward appears in the backward graph as the IR ops it is
made of), and ``gradcheck`` finds kinks in the forward's own nodes.
"""

from __future__ import annotations

from symbp.check import KINKS
from symbp.compiler.lower.emit import LOWERING, Emitter, _same, _view
from symbp.compiler.lower.schedule import PLACEMENT, Placement
from symbp.compiler.ops import NotApplicable
from symbp.formulas import PRINTING, Printing, _ScalarLevel

PLACEMENT["function"] = Placement("view", operand="same")
LOWERING["function"] = _view(Emitter._read_detach, _same)  # reads src[0], the forward's value
PRINTING["function"] = Printing(lambda n, a, c: a[0], _ScalarLevel._evaluated)
KINKS["function"] = NotApplicable(
    "its value is its forward's (src[0]), whose own nodes carry their kinks"
)
