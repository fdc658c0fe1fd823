"""The computation graph as DOT: parsed by a small DOT parser written here, checked node for node
and edge for edge against the IR itself (toposort, sources, print_program), and rendered by
Graphviz when it is installed."""

import re
import shutil
import subprocess

import numpy as np
import pytest

import symbp
from symbp.compiler.autodiff import grad
from symbp.compiler.ir import toposort, type_str
from symbp.graph import ComputationGraph, GraphvizError, computation_graph
from symbp.tensor import graph_labels

# ---------------------------------------------------------------- a tiny DOT parser

TOKEN = re.compile(r'\s*(?:(->)|([{}\[\]=,;])|"((?:[^"\\]|\\.)*)"|([A-Za-z0-9_.#]+))')


def tokens(text):
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        assert m, f"DOT syntax error at {text[pos : pos + 30]!r}"
        arrow, sym, quoted, ident = m.groups()
        if quoted is not None:
            out.append(("str", re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e[1], e[1]), quoted)))
        else:
            out.append(("sym", arrow or sym) if (arrow or sym) else ("id", ident))
        pos = m.end()
    return out


def parse_dot(text):
    """digraph ID { stmt; ... } with node, edge and attribute statements -> nodes, edges."""
    toks = tokens(text)
    i = 0

    def take(kind=None, value=None):
        nonlocal i
        k, v = toks[i]
        assert kind is None or k == kind, (toks[i], kind)
        assert value is None or v == value, (toks[i], value)
        i += 1
        return v

    def attrs():
        out = {}
        if toks[i] != ("sym", "["):
            return out
        take("sym", "[")
        while toks[i] != ("sym", "]"):
            key = take("id")
            take("sym", "=")
            out[key] = take()
            if toks[i] == ("sym", ","):
                take()
        take("sym", "]")
        return out

    take("id", "digraph")
    take("id")
    take("sym", "{")
    nodes, edges, defaults = {}, [], {}
    while toks[i] != ("sym", "}"):
        name = take("id")
        if name in ("graph", "node", "edge"):
            defaults[name] = attrs()
        elif toks[i] == ("sym", "->"):
            take()
            edges.append((name, take("id"), attrs()))
        else:
            nodes[name] = attrs()
        take("sym", ";")
    take("sym", "}")
    assert i == len(toks), "text after the graph"
    return nodes, edges, defaults


# ---------------------------------------------------------------- models


class Net(symbp.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1, self.linear2 = symbp.nn.Linear(2, 3), symbp.nn.Linear(3, 2)

    def forward(self, x):
        return symbp.sigmoid(self.linear2(symbp.relu(self.linear1(x))))


def net_loss():
    symbp.manual_seed(0)
    net = Net()
    x = symbp.tensor(np.array([[0.5, -1.0], [2.0, 0.1]], np.float32))
    t = symbp.tensor(np.array([[0.0, 1.0], [1.0, 0.0]], np.float32))
    return net, ((net(x) - t) ** 2).sum() / 2


def label_of(node, labels):
    """What each IR node should be called, from print_program's own listing of the node."""
    from symbp.compiler.ops import print_program

    if node.op == "input":
        return f"{node.arg}\n{type_str(node)}"
    listing = print_program([node]).splitlines()[-2]  # "  a:f32[2,3] = op[arg] srcs"
    op_arg = listing.split(" = ", 1)[1].rsplit(" ", len(node.src))[0] if node.src else ""
    op_arg = op_arg or listing.split(" = ", 1)[1].strip()
    text = f"{op_arg} {type_str(node)}"
    return f"{labels[node]}\n{text}" if node in labels else text


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("simplified", [False, True])
def test_every_node_and_edge_of_the_program(simplified):
    net, loss = net_loss()
    params = list(net.parameters())
    g = computation_graph(loss, simplified=simplified)
    if simplified:
        derived = symbp.derive(loss.node, [p.node for p in params])
        fwd, grads = derived.outputs[0], list(derived.grads)
    else:
        fwd, grads = loss.node, grad(loss.node, [p.node for p in params])
    everything = toposort([fwd, *grads])
    labels = graph_labels([loss])  # the layers of this model's own calls
    nodes, edges, _ = parse_dot(g.to_dot(max_label=1000))

    ids = {n: f"n{i}" for i, n in enumerate((*g.forward, *g.backward))}
    assert set(ids) == set(everything)  # every node, each once
    for node in everything:
        assert nodes[ids[node]]["label"] == label_of(node, labels)
    want = {(ids[s], ids[n]) for n in everything for s in n.src}
    got = {(a, b) for a, b, _ in edges if not b.startswith("out")}
    assert got == want
    # each output named and attached to its node
    outs = {nodes[b]["label"]: a for a, b, _ in edges if b.startswith("out")}
    assert outs["loss"] == ids[fwd]
    for p, gnode in zip(params, grads):
        assert outs[f"∂loss/∂{p.name}"] == ids[gnode]


def test_backward_nodes_are_styled_apart():
    net, loss = net_loss()
    g = computation_graph(loss)
    nodes, edges, _ = parse_dot(g.to_dot())
    forward = set(toposort([loss.node]))
    ids = {n: f"n{i}" for i, n in enumerate((*g.forward, *g.backward))}
    for node, name in ids.items():
        if node.op == "input":
            continue
        assert (nodes[name]["fillcolor"] == "#fde2e2") == (node not in forward)
    for a, b, attrs in edges:
        if b.startswith("n"):
            target = next(n for n, i in ids.items() if i == b)
            assert (attrs.get("style") == "dashed") == (target not in forward)
    params = {p.node.arg for p in net.parameters()}  # leaves by their own names
    for node, name in ids.items():
        if node.op == "input":
            want = "#fff4d6" if node.arg in params else "#e8f0fe"
            assert nodes[name]["fillcolor"] == want and nodes[name]["shape"] == "ellipse"


def test_layers_label_their_nodes():
    _, loss = net_loss()
    nodes, _, _ = parse_dot(computation_graph(loss).to_dot())
    labels = [a["label"] for a in nodes.values()]
    assert any(text.startswith("linear1\new[add] f32[2,3]") for text in labels)
    assert any(text.startswith("linear2\n") for text in labels)


def test_operands_are_numbered_and_long_labels_cut():
    _, loss = net_loss()
    g = computation_graph(loss)
    nodes, edges, _ = parse_dot(g.to_dot(max_label=20))
    for a, b, attrs in edges:
        if b.startswith("n") and "label" in attrs:
            assert re.fullmatch(r"x\d", attrs["label"])
    assert all(len(a["label"].split("\n")[-1]) <= 20 + 12 for a in nodes.values())
    assert any("…" in a["label"] for a in nodes.values())


def test_traced_graph_keeps_the_batch_symbol_and_a_derived_program_draws():
    net = Net()
    traced = symbp.trace(lambda x: net(x).sum(), np.zeros((4, 2), np.float32))
    g = computation_graph(traced.outputs[0])
    assert "f32[B,2]" in g.to_dot()
    derived = symbp.derive(traced.outputs[0], [p.node for p in net.parameters()])
    g2 = computation_graph(derived)
    assert g2.outputs["loss"] is derived.outputs[0]
    assert len(g2.outputs) == 1 + len(list(net.parameters()))


def test_quotes_and_backslashes_are_escaped():
    _, loss = net_loss()
    title = 'a "quoted" \\ title'
    _, _, defaults = parse_dot(computation_graph(loss, title=title).to_dot())
    assert defaults["graph"]["label"] == title


def test_wrt_selects_the_gradients():
    net, loss = net_loss()
    g = computation_graph(loss, wrt=[net.linear1.weight])
    assert list(g.outputs) == ["loss", "∂loss/∂linear1.weight"]
    assert isinstance(g, ComputationGraph)


def test_dot_file_needs_no_graphviz(tmp_path, monkeypatch):
    _, loss = net_loss()
    g = computation_graph(loss)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    g.save(tmp_path / "g.dot")
    assert (tmp_path / "g.dot").read_text() == g.to_dot()
    with pytest.raises(GraphvizError, match=r"needs Graphviz's `dot` program .*apt-get install"):
        g.save(tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
    assert g._repr_svg_() is None


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_graphviz_accepts_it(tmp_path):
    _, loss = net_loss()
    g = computation_graph(loss)
    check = subprocess.run(["dot", "-Tsvg"], input=g.to_dot().encode(), capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    assert check.stderr == b""  # no syntax warnings either
    g.save(tmp_path / "g.svg")
    svg = (tmp_path / "g.svg").read_text()
    assert "∂loss/∂linear2.bias" in svg and "linear1.weight" in svg
    g.save(tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert g._repr_svg_().lstrip().startswith("<?xml")
