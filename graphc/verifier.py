"""`verify`: the rules every graph must satisfy before anything compiles or runs it."""

from __future__ import annotations

import networkx as nx

from graphc.dtypes import DTYPES
from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.naming import node_lines
from graphc.ops import OP_TABLE, OpError, check_shape, contiguous_strides, infer, view_layout
from graphc.tensor import Tensor


def _cycle(g: Graph) -> list[Tensor]:
    dg: nx.DiGraph = nx.DiGraph()
    for t in g.nodes:
        for i in t.inputs:
            dg.add_edge(i, t)
    try:
        return [u for u, _ in nx.find_cycle(dg)]
    except nx.NetworkXNoCycle:
        return []


def problems(g: Graph) -> list[GraphError]:
    """Every rule ``g`` breaks, one GraphError each (empty: the graph is valid).

    Rules: nodes belong to ``g`` and appear once; the graph is acyclic and every operand
    is defined before use; each op is known, has the right arity, valid attributes, and
    the shape and dtype its rule gives; view regions lie inside their source; leaf names
    are unique; outputs are nodes of ``g``; ``assign`` targets states of matching type;
    ``inplace=True`` only on ops that allow it and whose result fits operand 0.
    """
    found: list[GraphError] = []
    printed: dict[Tensor, str] = {}

    def line_of(t: Tensor) -> str:
        if not printed:  # printing is costly: only when there is a problem to report
            printed.update(node_lines(g))
        return printed.get(t, repr(t))

    def bad(msg: str, t: Tensor | None = None, fix: str | None = None) -> None:
        found.append(GraphError(msg, node=t, fix=fix,
                                ir_line=line_of(t) if t is not None else None))

    position: dict[Tensor, int] = {}
    for k, t in enumerate(g.nodes):
        if t in position:
            bad("node appears twice in the node list", t)
        position[t] = k
        if t.graph is not g:
            bad(f"node belongs to graph @{t.graph.name}, not @{g.name}", t)

    cycle_reported = False
    leaf_names: dict[str, Tensor] = {}
    for k, t in enumerate(g.nodes):
        for j, i in enumerate(t.inputs):
            if i not in position:
                bad(f"operand {j} is not a node of this graph", t,
                    fix="add the operand to the graph before the node that uses it")
            elif position[i] >= k and not cycle_reported:
                cyc = _cycle(g)
                if cyc:
                    cycle_reported = True
                    path = " -> ".join(line_of(c).split(" ")[0] for c in cyc)
                    bad(f"cycle: {path}", t, fix="a value cannot depend on itself")
                else:
                    bad(f"operand {j} is used before its definition", t,
                        fix="order the nodes topologically")
        if t.is_leaf:
            if t.inputs or t.attrs:
                bad(f"a {t.op} takes no operands or attributes", t)
            if not isinstance(t.name, str) or not t.name:
                bad(f"a {t.op} needs a name", t)
            elif t.name in leaf_names:
                bad(f"{t.op} name {t.name!r} is also used by another leaf", t)
            else:
                leaf_names[t.name] = t
            if t.dtype not in DTYPES:
                bad(f"unknown dtype {t.dtype!r}", t)
            try:
                check_shape(t.shape)
            except OpError as e:
                bad(e.message, t, e.fix)
            continue
        if t.op not in OP_TABLE:
            bad(f"unknown op {t.op!r}", t, fix="use one of: " + ", ".join(sorted(OP_TABLE)))
            continue
        try:
            attrs, shape, dtype = infer(t.op, [i.shape for i in t.inputs],
                                        [i.dtype for i in t.inputs], t.attrs)
        except OpError as e:
            bad(f"{t.op}: {e.message}", t, e.fix)
            continue
        if (shape, dtype) != (t.shape, t.dtype):
            bad(f"node claims type {t.type_str} but {t.op} gives "
                f"{dtype}[{', '.join(map(str, shape))}]", t)
        if attrs != dict(t.attrs):
            bad(f"attributes {dict(t.attrs)} are not canonical (expected {attrs})", t,
                fix="build nodes with Graph.apply, which canonicalizes attributes")
        op = OP_TABLE[t.op]  # (inplace=True was judged by infer() above, with the attrs)
        if op.is_view and t.inputs:
            src = t.inputs[0]
            layout = view_layout(t.op, src.shape, contiguous_strides(src.shape), t.attrs)
            if layout is not None and t.size:
                offset, strides = layout
                last = offset + sum((d - 1) * s for d, s in zip(t.shape, strides, strict=True))
                if offset < 0 or last >= src.size:
                    bad(f"view covers elements {offset}..{last} outside its source of "
                        f"{src.size}", t)

    for name, t in g.outputs.items():
        if t not in position:
            bad(f"output {name!r} is not a node of this graph", t)
    for s, v in g.assigns.items():
        if s.op != "state":
            bad(f"assign target is a {s.op}, not a state", s)
        if s not in position or v not in position:
            bad("assign refers to a node outside this graph", s)
        elif (s.shape, s.dtype) != (v.shape, v.dtype):
            bad(f"assign to state {s.name!r} of type {s.type_str} from a value of type "
                f"{v.type_str}", v)
    return found


def verify(g: Graph) -> None:
    """Raise a GraphError for the first rule ``g`` breaks (see :func:`problems`)."""
    if not isinstance(g, Graph):
        raise GraphError(f"verify needs a Graph, got {type(g).__name__}")
    found = problems(g)
    if found:
        first = found[0]
        if len(found) > 1:
            first.message += f" (and {len(found) - 1} more problem(s))"
            first.args = (str(first),)
        raise first
