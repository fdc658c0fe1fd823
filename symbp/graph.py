"""The computation graph of a program, forward and backward, as Graphviz DOT.

>>> import symbp
>>> net = symbp.nn.Linear(2, 1)
>>> loss = (net(symbp.tensor([[1.0, 2.0]])) ** 2).sum()
>>> g = symbp.computation_graph(loss)
>>> print(g.to_dot().splitlines()[0])
digraph symbp {

Every IR node is one box labelled ``op[arg] type`` (``matmul f32[B,2]``,
``ew[σ(x0 + x1)] f32[B,2]``), with the layer that produced it on the line above
(``linear1``, from the model's calls: ``tensor.graph_labels``). Leaves are ellipses:
parameters in yellow, data in blue. Backward nodes are red, their edges dashed; the loss and
each gradient end in a named output. Where a node reads several inputs its edges are labelled
``x0, x1, ...``, the names its formula uses.

Two views:

- ``simplified=False`` (default): the forward graph as traced, every layer labelled, and the
  reverse-mode graph ``autodiff`` builds from it before any rewrite: the chain rule as it is
  applied.
- ``simplified=True``: the program as it is compiled (``symbp.derive``): fused, folded and
  shared forward and backward.

The DOT text needs nothing; ``save("graph.png")`` (or ``.svg``, ``.pdf``) runs Graphviz's
``dot`` program, and notebooks show the SVG when it is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symbp.checkpoint import atomic_write
from symbp.compiler.ir import Labels, Node, shown_names, toposort, type_str

__all__ = ["ComputationGraph", "GraphvizError", "computation_graph", "render_dot"]

# Colours: forward white, backward red, parameters yellow, data blue.
STYLE = {
    "forward": {"fillcolor": "#ffffff", "color": "#444444"},
    "backward": {"fillcolor": "#fde2e2", "color": "#c0392b", "fontcolor": "#7b241c"},
    "param": {"shape": "ellipse", "fillcolor": "#fff4d6", "color": "#b7950b"},
    "data": {"shape": "ellipse", "fillcolor": "#e8f0fe", "color": "#2e5c9a"},
    "output": {"shape": "plaintext", "style": "", "fontname": "Helvetica-Bold"},
}


class GraphvizError(RuntimeError):
    """Graphviz's ``dot`` is missing, or failed to render."""


@dataclass(frozen=True)
class ComputationGraph:
    """Forward and backward nodes of one program, and its named outputs."""

    forward: tuple[Node, ...]
    backward: tuple[Node, ...]
    outputs: dict[str, Node]
    params: frozenset[str] = frozenset()  # names of the leaves that are parameters
    labels: dict[Node, str] = field(default_factory=dict)
    title: str = ""

    # ------------------------------------------------------------ DOT

    def to_dot(self, max_label: int = 60, rankdir: str = "TB") -> str:
        """The graph as DOT text; labels longer than ``max_label`` characters are cut."""
        from symbp.compiler.ops import OPS

        ids = {node: f"n{i}" for i, node in enumerate((*self.forward, *self.backward))}
        leaves = [n for n in ids if n.op == "input"]
        shown = dict(zip(leaves, shown_names([n.arg for n in leaves])))  # the model's names
        back = set(self.backward)
        lines = [
            "digraph symbp {",
            f"  graph [rankdir={rankdir}, fontname=Helvetica, labelloc=t, "
            f"label={_quote(self.title)}];",
            '  node [shape=box, style="rounded,filled", fontname=Helvetica, fontsize=10];',
            '  edge [color="#555555", fontname=Helvetica, fontsize=8];',
        ]
        for node, name in ids.items():
            if node.op == "input":
                kind = "param" if node.arg in self.params else "data"
                text = f"{shown[node]}\n{type_str(node)}"
            else:
                kind = "backward" if node in back else "forward"
                arg = OPS[node.op].show_arg(node, [ids[s] for s in node.src])
                text = f"{_cut(node.op + arg, max_label)} {type_str(node)}"
                if node in self.labels:
                    text = f"{self.labels[node]}\n{text}"
            lines.append(f"  {name} [label={_quote(text)}{_attrs(STYLE[kind])}];")
        for node, name in ids.items():
            for i, src in enumerate(node.src):
                attrs = {"label": f"x{i}"} if len(node.src) > 1 else {}
                if node in back:
                    attrs.update(style="dashed", color="#c0392b")
                lines.append(f"  {ids[src]} -> {name}{_attrs(attrs, first=True)};")
        for i, (out, node) in enumerate(self.outputs.items()):
            kind = "backward" if node in back else "forward"
            lines.append(f"  out{i} [label={_quote(out)}{_attrs(STYLE['output'])}];")
            color = STYLE[kind]["color"]
            lines.append(f"  {ids[node]} -> out{i} [color={_quote(color)}, penwidth=1.5];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_dot()

    # ------------------------------------------------------------ pictures

    def save(self, path: str | os.PathLike[str], format: str | None = None) -> Path:  # noqa: A002
        """Write ``.dot``/``.gv`` text, or render ``.png``, ``.svg``, ``.pdf`` ... with Graphviz."""
        return render_dot(self.to_dot(), path, format)

    def _repr_svg_(self) -> str | None:  # notebooks: the picture when Graphviz is there
        if shutil.which("dot") is None:
            return None
        return _run_dot(self.to_dot(), "svg").decode()


def _quote(text: str) -> str:
    """A DOT double-quoted string (``\\n`` breaks a label's line)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(attrs: dict[str, str], first: bool = False) -> str:
    if not attrs:
        return ""
    body = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
    return f" [{body}]" if first else f", {body}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- building


def _node(x: Any) -> Node:
    node = getattr(x, "node", x)
    if not isinstance(node, Node):
        raise TypeError(f"computation_graph: expected a Tensor or IR node, got {type(x).__name__}")
    return node


def computation_graph(
    loss: Any,
    wrt: Sequence[Any] | None = None,
    *,
    simplified: bool = False,
    title: str = "",
    labels: Labels | None = None,
) -> ComputationGraph:
    """The forward graph of a scalar ``loss`` and the backward graph of its gradients.

    ``loss`` is a Tensor (eager or traced), an IR node, or a ``symbp.Derived`` program.
    ``wrt`` lists what to differentiate with respect to (parameters, tensors or nodes);
    by default every parameter the loss reads. ``simplified`` picks the view (see the module
    docstring). ``labels`` names the layer of each node (a trace's ``Traced.labels``); a
    Tensor's graph knows its own (``tensor.graph_labels``).
    """
    from symbp.api import Derived, derive
    from symbp.compiler.autodiff import grad
    from symbp.tensor import Parameter, Tensor, graph_labels, parameter_leaves

    # Parameters by identity among the tensors of a tensor's graph; a graph given by its nodes
    # alone (an IR node, a Derived program) asks which live parameter each leaf is.
    found = set(parameter_leaves([loss])) if isinstance(loss, Tensor) else None

    def is_param(n: Node) -> bool:
        if n.op != "input":
            return False
        return n in found if found is not None else Parameter.of_leaf(n) is not None

    if isinstance(loss, Derived):
        forward_out, wrt_nodes = loss.outputs[0], list(loss.wrt)
        grads: list[Node | None] = list(loss.grads)
    else:
        forward_out = _node(loss)
        if wrt is None:
            wrt_nodes = [n for n in toposort([forward_out]) if is_param(n)]
        else:
            wrt_nodes = [_node(w) for w in wrt]
        if simplified:
            derived = derive(forward_out, wrt_nodes)
            forward_out, grads = derived.outputs[0], list(derived.grads)
        else:
            grads = list(grad(forward_out, wrt_nodes)) if wrt_nodes else []

    forward = toposort([forward_out])
    reached = [(w, g) for w, g in zip(wrt_nodes, grads) if g is not None]
    seen = set(forward)
    backward = [n for n in toposort([g for _, g in reached]) if n not in seen]
    outputs = {"loss": forward_out}
    for w, g in zip(shown_names([w.arg for w, _ in reached]), (g for _, g in reached)):
        outputs[f"∂loss/∂{w}"] = g
    params = frozenset(n.arg for n in (*forward, *backward) if is_param(n))
    if labels is None:
        labels = graph_labels([loss]) if isinstance(loss, Tensor) else {}
    shown = {n: labels[n] for n in (*forward, *backward) if n in labels}
    return ComputationGraph(tuple(forward), tuple(backward), outputs, params, shown, title)


# ---------------------------------------------------------------- rendering


def _run_dot(text: str, fmt: str) -> bytes:
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizError(
            "rendering a graph needs Graphviz's `dot` program (apt-get install graphviz, "
            "brew install graphviz or conda install graphviz); the DOT text needs nothing: "
            "save to a .dot file, or use to_dot()"
        )
    proc = subprocess.run([exe, f"-T{fmt}"], input=text.encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise GraphvizError(f"dot -T{fmt} failed: {proc.stderr.decode().strip()}")
    return proc.stdout


def render_dot(text: str, path: str | os.PathLike[str], format: str | None = None) -> Path:  # noqa: A002
    """Write DOT ``text`` to ``path``: as text for ``.dot``/``.gv``, else rendered by Graphviz
    in the format its suffix names (or ``format``)."""
    path = Path(path)
    fmt = (format or path.suffix.lstrip(".") or "dot").lower()
    data = text.encode() if fmt in ("dot", "gv") else _run_dot(text, fmt)
    with atomic_write(path) as f:
        f.write(data)
    return path
