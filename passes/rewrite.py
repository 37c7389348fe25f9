"""Copying a graph into a new one, node by node: the tool every transforming pass uses."""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from graphc.graph import Graph
from graphc.tensor import LEAF_OPS, Tensor


class Rebuilder:
    """Builds a new graph from ``src``, keeping a map from old tensors to new ones.

    Leaves are copied first (all of them, so callers keep feeding the same names);
    :meth:`copy` re-creates a node over new operands, skipping the shape rule when the
    operands' types did not change (the old node was valid, so the new one is too).
    """

    def __init__(self, src: Graph) -> None:
        self.src = src
        self.dst = Graph(src.name)
        self.map: dict[Tensor, Tensor] = {}
        nodes, leaves = self.dst._nodes, self.dst._leaves
        for t in src._nodes:
            if t.op in LEAF_OPS:  # a valid leaf stays valid: copy it without re-checking
                new = Tensor._trusted(self.dst, t.op, (), t.attrs, t.shape, t.dtype, t.name)
                nodes.append(new)
                leaves[t.name] = new  # type: ignore[index]
                self.map[t] = new

    def __getitem__(self, t: Tensor) -> Tensor:
        return self.map[t]

    def copy(self, t: Tensor, inputs: Sequence[Tensor] | None = None,
             attrs: Mapping[str, Any] | None = None) -> Tensor:
        """A copy of ``t`` over ``inputs`` (default: the mapped operands of ``t``)."""
        ins = tuple(self.map[i] for i in t.inputs) if inputs is None else tuple(inputs)
        same = attrs is None and len(ins) == len(t.inputs)
        if same:
            dst = self.dst
            for a, b in zip(ins, t.inputs, strict=True):
                if a.graph is not dst or a.shape != b.shape or a.dtype != b.dtype:
                    same = False
                    break
        if same:  # same op over operands of the same types: the old checks still hold
            new = Tensor._trusted(self.dst, t.op, ins, t.attrs, t.shape, t.dtype, t.name)
            self.dst._nodes.append(new)
            return new
        return self.dst.apply(t.op, ins, dict(t.attrs) if attrs is None else attrs, t.name)

    def finish(self, outputs: Mapping[str, Tensor] | None = None,
               assigns: Iterable[tuple[Tensor, Tensor]] | None = None) -> Graph:
        """Mark outputs and assigns (given as old tensors, default: those of ``src``) on
        the new graph and return it."""
        outs = self.src.outputs if outputs is None else outputs
        for name, t in outs.items():
            self.dst.set_output(self.map[t], name)
        for s, v in (self.src.assigns.items() if assigns is None else assigns):
            self.dst.assign(self.map[s], self.map[v])
        return self.dst


def live_nodes(g: Graph, roots: Iterable[Tensor]) -> set[Tensor]:
    """Every node some root depends on (roots included)."""
    live: set[Tensor] = set()
    stack = list(roots)
    while stack:
        t = stack.pop()
        if t in live:
            continue
        live.add(t)
        stack.extend(t.inputs)
    return live


def users(g: Graph) -> dict[Tensor, list[Tensor]]:
    """For every node, the nodes that read it (in graph order, repeated per operand)."""
    out: dict[Tensor, list[Tensor]] = {t: [] for t in g.nodes}
    for t in g.nodes:
        for i in t.inputs:
            out[i].append(t)
    return out


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a pass rebuilds a graph.

    Rebuilding allocates one object per node and frees little, which makes full
    collections run again and again over a growing heap (a third of the time at 100k
    nodes). Reference counting still frees acyclic garbage; the rest is collected when the
    collector resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
