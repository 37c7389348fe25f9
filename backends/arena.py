"""The arena backend: NumPy over one byte arena laid out exactly as a memory plan says.

Every tensor lives at its planned bytes: views are strided windows onto their source,
in-place results overwrite their operand, a reused buffer really is reused. It behaves
like a ggml-style runtime, so an unsafe plan gives the same wrong numbers a real runtime
would. :meth:`ArenaExecutable.read_buffer` reads any tensor's bytes after a run, the way a
ggml user reads ``tensor->data``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.backends.reference import evaluate_node
from graphc.dtypes import to_numpy
from graphc.errors import GraphError
from graphc.executable import Executable
from graphc.graph import Graph
from graphc.ops import contiguous_strides
from graphc.passes.memory import MemoryPlan
from graphc.reads import Reads
from graphc.tensor import Tensor


def bytes_used(plan: MemoryPlan, sizes: Mapping[str, int]) -> dict[str, int]:
    """Per region, one past the highest byte any in-bounds placement can touch: the
    shadow memory the sanitizer needs (a plan may claim far more than it uses)."""
    used = dict.fromkeys(sizes, 0)
    for t, p in plan.placements.items():
        if p.region not in sizes or p.offset < 0:
            continue
        strides = p.strides if p.strides is not None and len(p.strides) == t.ndim \
            else contiguous_strides(t.shape)
        reach = sum((n - 1) * abs(x) for n, x in zip(t.shape, strides, strict=True) if n > 1)
        hi = p.offset + (reach + 1) * t.itemsize
        if hi <= sizes[p.region]:
            used[p.region] = max(used[p.region], hi)
    return used


class ArenaExecutable(Executable):
    """Runs a graph inside the byte regions of its memory plan (``exe.plan``)."""

    backend = "arena"

    def __init__(self, graph: Graph, params: Mapping[str, Any] | None, reads: Reads,
                 states: Mapping[str, Any] | None, plan: MemoryPlan) -> None:
        super().__init__(graph, params, reads, states)
        self.plan = plan
        sizes = {"arena": plan.arena_bytes, "state": plan.state_bytes,
                 "param": plan.param_bytes}
        used = bytes_used(plan, sizes)  # a hand-made plan may claim far more than it uses
        self.regions = {r: np.zeros(max(min(n, used[r]), 1), np.uint8)
                        for r, n in sizes.items()}
        for name, t in graph.params.items():
            self.view(t)[...] = self.params[name]
        for name, t in graph.states.items():
            self.view(t)[...] = self.state[name]

    def view(self, t: Tensor) -> np.ndarray:
        """A NumPy view of ``t``'s planned bytes (writable; no copy)."""
        p = self.plan.placements[t]
        strides = p.strides or contiguous_strides(t.shape)
        # an axis of extent 0 or 1 never moves, whatever stride a plan gives it
        steps = tuple(s * t.itemsize if n > 1 else 0
                      for s, n in zip(strides, t.shape, strict=True))
        return np.ndarray(t.shape, dtype=to_numpy(t.dtype), buffer=self.regions[p.region],
                          offset=p.offset, strides=steps)

    def read_buffer(self, t: Tensor) -> np.ndarray:
        """A copy of what ``t``'s bytes hold now -- after a run, what a runtime that
        handed out this buffer would show (right or wrong)."""
        if t not in self.plan.placements:
            raise GraphError(f"{t!r} is not a tensor of this executable's graph")
        return self.view(t).copy()

    def _execute(self, inputs: dict[str, Any], state: dict[str, Any]
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
        g = self.graph
        for name, t in g.inputs.items():
            self.view(t)[...] = inputs[name]
        for name, t in g.states.items():  # exe.state is the truth: a caller may replace it
            self.view(t)[...] = np.asarray(state[name])
        for t in self.plan.order:
            p = self.plan.placements[t]
            if t.is_leaf or p.view_of is not None:
                continue  # leaves were written above; a view is only a window
            value = evaluate_node(t, [self.view(o) for o in t.inputs])
            self.view(t)[...] = value
        # after the run, all at once: the caller's outputs and every new state value are
        # read before any state is written (so `assign a <- b; assign b <- a` swaps)
        outputs = {n: self.read_buffer(t) for n, t in g.outputs.items() if n in self.reads}
        new_values = {s: self.read_buffer(v) for s, v in g.assigns.items()}
        for s, value in new_values.items():
            self.view(s)[...] = value  # a no-op copy when the update was planned in place
        return outputs, {s.leaf_name: value for s, value in new_values.items()}
