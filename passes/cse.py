"""Common-subexpression elimination."""

from __future__ import annotations

from typing import Any

from graphc.graph import Graph
from graphc.passes.base import function_pass
from graphc.passes.rewrite import Rebuilder
from graphc.tensor import Tensor


def _key(t: Tensor, ins: tuple[Tensor, ...]) -> tuple[Any, ...]:
    items = tuple(sorted(t.attrs.items()))  # repr: -0.0 and 0.0 are not the same node
    return (t.op, tuple(id(i) for i in ins), items, repr(items), t.shape, t.dtype)


def cse(g: Graph) -> Graph:
    """Merge nodes with the same op, attributes and (merged) operands into one.

    Leaves are never merged (they are distinct values) and neither are in-place nodes
    (each owns the buffer it writes) nor the nodes they overwrite. The first node keeps
    its name. Returns a new graph.
    """
    rb = Rebuilder(g)
    seen: dict[tuple[Any, ...], Tensor] = {}
    # a node some op overwrites in place keeps its own readers: merged with another, the
    # write would clobber the other's readers too
    overwritten = {t.inputs[0] for t in g.node_view if t.inplace and t.inputs}
    for t in g.nodes:
        if t.is_leaf:
            continue
        ins = tuple(rb.map[i] for i in t.inputs)
        if t.inplace or t in overwritten:
            rb.map[t] = rb.copy(t, ins)
            continue
        key = _key(t, ins)
        found = seen.get(key)
        if found is None:
            found = seen[key] = rb.copy(t, ins)
        rb.map[t] = found
    return rb.finish()


function_pass("cse", "merge identical nodes (same op, attributes and operands)")(cse)
