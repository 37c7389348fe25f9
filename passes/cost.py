"""Cost model: FLOPs and bytes moved per node and in total.

A model, not a measurement: a multiply-add counts 2 FLOPs, a transcendental a few
(``ELEMENT_FLOPS``), views cost nothing, and every other node reads its operands once and
writes its result once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from graphc.graph import Graph
from graphc.tensor import Tensor

ELEMENT_FLOPS: dict[str, int] = {
    "add": 1, "sub": 1, "mul": 1, "div": 1, "maximum": 1, "neg": 1, "relu": 1, "scale": 1,
    "exp": 4, "log": 4, "sqrt": 4, "rsqrt": 4, "tanh": 6, "sigmoid": 6, "silu": 7, "gelu": 10,
    "cast": 0, "copy": 0, "rms_norm": 4, "layer_norm": 7, "softmax": 6, "rope": 6,
}
VIEW_OPS = frozenset({"reshape", "transpose", "slice"})


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
    """Modelled FLOPs of one node."""
    op = t.op
    if t.is_leaf or op in VIEW_OPS:
        return 0
    if op == "matmul":
        a = t.inputs[0]
        return 2 * t.size * a.shape[-1]
    if op == "attention":
        q, k, v, _ = t.inputs
        tq, h, d = q.shape
        tk, dv = k.shape[0], v.shape[2]
        return 2 * tq * h * tk * (d + dv) + 6 * tq * h * tk
    if op in ("sum", "mean", "max", "argmax"):
        return t.inputs[0].size
    return ELEMENT_FLOPS.get(op, 0) * t.size


def node_bytes(t: Tensor) -> tuple[int, int]:
    """Modelled (bytes read, bytes written) of one node."""
    if t.is_leaf or t.op in VIEW_OPS:
        return 0, 0
    if t.op == "get_rows":
        return t.nbytes + t.inputs[1].nbytes, t.nbytes
    if t.op == "set_rows":
        dst, idx, src = t.inputs
        if t.inplace:
            return idx.nbytes + src.nbytes, src.nbytes
        return dst.nbytes + idx.nbytes + src.nbytes, t.nbytes
    return sum(i.nbytes for i in t.inputs), t.nbytes


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
