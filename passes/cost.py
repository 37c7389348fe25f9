"""Cost model: FLOPs and bytes moved per node and in total.

A model, not a measurement, priced by each op's :class:`graphc.ops.Cost` in the op table:
a multiply-add counts 2 FLOPs, a transcendental a few, views (and leaves) cost nothing, and
every other node reads its operands once and writes its result once unless its op says
otherwise (a gather reads only the rows it takes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from graphc.graph import Graph
from graphc.ops import get_op
from graphc.tensor import Tensor


@dataclass(frozen=True)
class NodeCost:
    """The modelled cost of one node."""

    node: Tensor
    flops: int
    bytes_read: int
    bytes_written: int


@dataclass
class CostReport:
    """Per-node costs (graph order) and totals."""

    nodes: list[NodeCost] = field(default_factory=list)

    @property
    def flops(self) -> int:
        """Total FLOPs."""
        return sum(c.flops for c in self.nodes)

    @property
    def bytes_read(self) -> int:
        """Total bytes read."""
        return sum(c.bytes_read for c in self.nodes)

    @property
    def bytes_written(self) -> int:
        """Total bytes written."""
        return sum(c.bytes_written for c in self.nodes)

    def by_op(self) -> dict[str, tuple[int, int, int]]:
        """op -> (count, FLOPs, bytes moved), largest FLOPs first."""
        acc: dict[str, list[int]] = {}
        for c in self.nodes:
            row = acc.setdefault(c.node.op, [0, 0, 0])
            row[0] += 1
            row[1] += c.flops
            row[2] += c.bytes_read + c.bytes_written
        return {k: (v[0], v[1], v[2]) for k, v in sorted(acc.items(), key=lambda kv: -kv[1][1])}


def node_flops(t: Tensor) -> int:
    """Modelled FLOPs of one node (leaves: 0); its op's cost rule decides."""
    if t.is_leaf:
        return 0
    return get_op(t.op).cost.flops(t)


def node_bytes(t: Tensor) -> tuple[int, int]:
    """Modelled (bytes read, bytes written) of one node (leaves: nothing); its op's cost
    rule decides."""
    if t.is_leaf:
        return 0, 0
    return get_op(t.op).cost.moved(t)


def cost(g: Graph) -> CostReport:
    """The cost report of ``g``."""
    report = CostReport()
    for t in g.nodes:
        r, w = node_bytes(t)
        report.nodes.append(NodeCost(t, node_flops(t), r, w))
    return report


def human(n: float, unit: str = "") -> str:
    """1234567 -> '1.23 M' (powers of 1000)."""
    if n == 0:
        return f"0 {unit}".strip()
    k = min(int(math.log10(abs(n)) // 3), 5)
    return f"{n / 1000**k:.3g} {' kMGTP'[k]}{unit}".replace("  ", " ").strip()
