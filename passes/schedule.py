"""Scheduling: choosing a topological order that lowers peak memory.

Strategies:

- ``input``: the graph's own order.
- ``breadth-first``: level by level (Kahn's algorithm with a FIFO queue); a baseline.
- ``depth-first``: post-order from the outputs, the order in which ggml builds a graph;
  a baseline.
- ``memory``: a greedy that runs, among the ready nodes, the one that allocates the least
  net memory (bytes it allocates minus bytes it lets go), preferring nodes that free
  memory. Graphs with few op nodes get an exact search over all orders instead. The
  result is the best of these and the baselines (input, breadth-first, depth-first) on
  the planner's lower bound, so it is never worse than any of them.
"""

from __future__ import annotations

from collections import deque
from functools import cache

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.ops import OP_TABLE
from graphc.passes.memory import arena_lower_bound, kept_after_run
from graphc.reads import ReadsArg
from graphc.tensor import Tensor

SCHEDULES = ("input", "breadth-first", "depth-first", "memory")


def _is_view(t: Tensor) -> bool:
    op = OP_TABLE.get(t.op)
    return op is not None and op.is_view


class _Sim:
    """Live-byte bookkeeping shared by the greedy and the exact search."""

    def __init__(self, g: Graph, keep: set[Tensor]) -> None:
        self.nodes = [t for t in g.node_view if not t.is_leaf]
        self.index = {t: i for i, t in enumerate(self.nodes)}
        self.root: dict[Tensor, Tensor] = {}
        for t in g.node_view:
            self.root[t] = self.root[t.inputs[0]] if _is_view(t) else t
        self.refs: dict[Tensor, int] = {t: 0 for t in g.node_view}
        for t in g.node_view:
            for o in t.inputs:
                self.refs[self.root[o]] += 1
        self.keep = {self.root[t] for t in keep}
        self.size = {t: (0 if (_is_view(t) or t.op in ("param", "state")) else t.nbytes)
                     for t in g.node_view}
        self.start = sum(t.nbytes for t in g.node_view if t.op == "input")

    def delta(self, t: Tensor, refs: dict[Tensor, int]) -> tuple[int, int]:
        """(bytes allocated, bytes freed) by running ``t`` now."""
        freed = 0
        seen: dict[Tensor, int] = {}
        for o in t.inputs:
            r = self.root[o]
            seen[r] = seen.get(r, 0) + 1
        for r, k in seen.items():
            if refs[r] == k and r not in self.keep and r.op not in ("param", "state"):
                freed += r.nbytes
        return self.size[t], freed


def _greedy(g: Graph, sim: _Sim) -> list[Tensor]:
    leaves = [t for t in g.node_view if t.is_leaf]
    users: dict[Tensor, list[Tensor]] = {t: [] for t in g.node_view}
    for t in sim.nodes:
        for o in set(t.inputs):
            users[o].append(t)
    waiting = {t: len({o for o in t.inputs if not o.is_leaf}) for t in sim.nodes}
    refs = dict(sim.refs)
    ready = [t for t in sim.nodes if waiting[t] == 0]
    order = list(leaves)
    while ready:
        best_k, best_key = 0, None
        for k, t in enumerate(ready):
            alloc, freed = sim.delta(t, refs)
            key = (alloc - freed, -freed, sim.index[t])
            if best_key is None or key < best_key:
                best_k, best_key = k, key
        t = ready.pop(best_k)
        order.append(t)
        for o in t.inputs:
            refs[sim.root[o]] -= 1
        for u in users[t]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    return order


def _exact(g: Graph, sim: _Sim) -> list[Tensor]:
    """The order with the least peak live bytes, by search over sets of scheduled nodes."""
    nodes = sim.nodes
    n = len(nodes)
    preds = [0] * n
    for i, t in enumerate(nodes):
        for o in t.inputs:
            if o in sim.index:
                preds[i] |= 1 << sim.index[o]

    def live_of(done: int) -> int:
        refs = dict(sim.refs)
        live = sim.start
        for i in range(n):
            if done >> i & 1:
                t = nodes[i]
                alloc, freed = sim.delta(t, refs)
                live += alloc - freed
                for o in t.inputs:
                    refs[sim.root[o]] -= 1
        return live

    @cache
    def best(done: int) -> tuple[int, tuple[int, ...]]:
        if done == (1 << n) - 1:
            return 0, ()
        live = live_of(done)
        refs = dict(sim.refs)
        for i in range(n):
            if done >> i & 1:
                for o in nodes[i].inputs:
                    refs[sim.root[o]] -= 1
        result: tuple[int, tuple[int, ...]] | None = None
        for i in range(n):
            if not done >> i & 1 and preds[i] & done == preds[i]:
                alloc, _freed = sim.delta(nodes[i], refs)
                peak_here = live + alloc
                rest, seq = best(done | 1 << i)  # an absolute peak: live_of() is absolute
                cand = (max(peak_here, rest), (i, *seq))
                if result is None or cand[0] < result[0]:
                    result = cand
        assert result is not None
        return result

    _, seq = best(0)
    return [t for t in g.node_view if t.is_leaf] + [nodes[i] for i in seq]


def _breadth_first(g: Graph) -> list[Tensor]:
    waiting = {t: len(set(t.inputs)) for t in g.node_view}
    users: dict[Tensor, list[Tensor]] = {t: [] for t in g.node_view}
    for t in g.node_view:
        for o in set(t.inputs):
            users[o].append(t)
    queue = deque(t for t in g.node_view if waiting[t] == 0)
    order: list[Tensor] = []
    while queue:
        t = queue.popleft()
        order.append(t)
        for u in users[t]:
            waiting[u] -= 1
            if waiting[u] == 0:
                queue.append(u)
    return order


def _depth_first(g: Graph) -> list[Tensor]:
    """Post-order from the outputs, then the state updates, operands in order: the order in
    which ggml builds a graph (``ggml_build_forward_expand``). Leaves come first; nodes no
    root needs follow in graph order."""
    order = [t for t in g.node_view if t.is_leaf]
    seen = set(order)
    roots = [*g.output_view.values(), *g.assign_view.values()]
    for root in roots:
        stack: list[tuple[Tensor, int]] = [(root, 0)]
        while stack:
            t, k = stack.pop()
            if t in seen:
                continue
            if k < len(t.inputs):
                stack.append((t, k + 1))
                stack.append((t.inputs[k], 0))
                continue
            seen.add(t)
            order.append(t)
    order += [t for t in g.node_view if t not in seen]
    return order


def schedule(g: Graph, strategy: str = "memory", reads: ReadsArg = None,
             exact_limit: int = 12) -> list[Tensor]:
    """A topological order of ``g`` chosen by ``strategy`` (see the module doc).

    ``reads``: tensors read after the run besides the outputs (they stay live, as do the
    outputs and the values assigned to states).
    ``exact_limit``: graphs with at most this many op nodes are searched exhaustively.
    """
    if strategy not in SCHEDULES:
        raise GraphError(f"unknown schedule {strategy!r}", fix=f"use one of {SCHEDULES}")
    if strategy == "input":
        return list(g.node_view)
    if strategy == "breadth-first":
        return _breadth_first(g)
    if strategy == "depth-first":
        return _depth_first(g)
    sim = _Sim(g, kept_after_run(g, reads))
    # every baseline is a candidate too, so the memory order is never worse than any
    candidates = [list(g.node_view), _greedy(g, sim), _depth_first(g), _breadth_first(g)]
    if len(sim.nodes) <= exact_limit:
        candidates.append(_exact(g, sim))
    scored = [(arena_lower_bound(g, c, reads), k) for k, c in enumerate(candidates)]
    return candidates[min(scored)[1]]


def peak_bytes(g: Graph, order: list[Tensor], reads: ReadsArg = None) -> int:
    """The planner's lower bound for ``order``: the most bytes live at any step."""
    return arena_lower_bound(g, order, reads)


__all__ = ["SCHEDULES", "peak_bytes", "schedule"]
