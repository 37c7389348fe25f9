"""Dead-code elimination and dead-output elimination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from graphc.passes.base import Pass, function_pass, register_pass
from graphc.passes.rewrite import Rebuilder, live_nodes

from graphc.graph import Graph
from graphc.reads import ReadsArg, normalize_reads
from graphc.tensor import Tensor


def dce(g: Graph) -> Graph:
    """Remove every node that no output and no state update depends on.

    Leaves (inputs, params, states) stay even when unused, so callers feed and bind the
    same names before and after. Returns a new graph.
    """
    return _keep_live(g, g.outputs)


def _keep_live(g: Graph, outputs: dict[str, Tensor]) -> Graph:
    """A copy of ``g`` with ``outputs`` marked and only the nodes they and the state
    updates need."""
    live = live_nodes(g, list(outputs.values()) + list(g.assigns.values()))
    rb = Rebuilder(g)
    for t in g.nodes:
        if not t.is_leaf and t in live:
            rb.map[t] = rb.copy(t)
    return rb.finish(outputs=outputs)


def dead_outputs(g: Graph, reads: ReadsArg, taps: Literal["error", "protect"] = "error"
                 ) -> Graph:
    """Unmark every output ``reads`` does not name, then remove what only they needed.

    ``reads`` as in :func:`graphc.compile`. Reading a tensor that is not an output is a
    GraphError telling to mark it, unless ``taps="protect"``, which marks it (``g`` itself
    gains the output). Row selections are kept for row pruning; this pass keeps whole
    outputs.
    """
    g, rd = normalize_reads(g, reads, taps)
    return _keep_live(g, {name: t for name, t in g.outputs.items() if name in rd})


function_pass("dce", "remove nodes that no output and no state update depends on")(dce)


@register_pass
@dataclass
class DeadOutputs(Pass):
    """Dead-output elimination driven by what the caller reads.

    ``reads``: e.g. ``logits[-1]+h_pre_norm`` (``+`` between reads). ``taps``: ``error``
    or ``protect``.
    """

    name = "dead-outputs"
    summary = "unmark outputs the caller does not read, and remove what only they needed"
    reads: str
    taps: str = "error"

    def run(self, g: Graph) -> Graph:
        if self.taps not in ("error", "protect"):
            from graphc.errors import GraphError

            raise GraphError(f"taps must be error or protect, got {self.taps!r}")
        return dead_outputs(g, self.reads, self.taps)  # type: ignore[arg-type]
