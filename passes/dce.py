"""Dead-code elimination and dead-output elimination."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.passes.base import Pass, function_pass, register_pass
from graphc.passes.rewrite import Rebuilder, live_nodes
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


def dead_outputs(g: Graph, reads: ReadsArg = None,
                 taps: Literal["error", "protect"] = "error") -> Graph:
    """Unmark every output ``reads`` does not name, record in the IR the rows read of
    each output it names, then remove what only the unmarked outputs needed.

    ``reads`` as in :func:`graphc.compile` (None: what the IR already says). Reading a
    tensor that is not an output is a GraphError telling to mark it, unless
    ``taps="protect"``, which marks it in the result (never in ``g``). The rows stay
    selections on whole outputs; ``prune-rows`` then computes only those rows.
    """
    g, rd = normalize_reads(g, reads, taps)
    out = _keep_live(g, {name: t for name, t in g.outputs.items() if name in rd})
    for name, sel in rd.rows.items():
        out.set_output_rows(name, None if sel == "all" else sel)
    return out


function_pass("dce", "remove nodes that no output and no state update depends on")(dce)


@register_pass
@dataclass
class DeadOutputs(Pass):
    """Dead-output elimination driven by what the caller reads.

    ``reads``: e.g. ``logits[-1]+h_pre_norm`` (``+`` between reads), recorded in the IR;
    empty: the reads the IR already holds. ``taps``: ``error`` or ``protect``.
    """

    name = "dead-outputs"
    summary = "unmark outputs the caller does not read, record the rows read, and remove " \
              "what only the unmarked outputs needed"
    reads: str = ""
    taps: str = "error"

    def run(self, g: Graph) -> Graph:
        if self.taps not in ("error", "protect"):
            raise GraphError(f"taps must be error or protect, got {self.taps!r}")
        return dead_outputs(g, self.reads or None, self.taps)  # type: ignore[arg-type]  # checked above
