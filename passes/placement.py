"""Placement: which device runs each node (layer split) or how each weight is sharded
(tensor split)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.passes.cost import node_flops
from graphc.tensor import Tensor

SPLITS = ("layer", "tensor")


@dataclass
class DevicePlacement:
    """``stage[t]``: the device index of each node (layer split); ``shard[param name]``:
    the axis of each weight split over the devices, None for replicated (tensor split)."""

    split: str
    n_devices: int
    stage: dict[Tensor, int] = field(default_factory=dict)
    shard: dict[str, int | None] = field(default_factory=dict)

    def describe(self) -> dict[str, object]:
        """A summary for reports."""
        if self.split == "layer":
            counts = [0] * self.n_devices
            for t, s in self.stage.items():
                if not t.is_leaf:
                    counts[s] += 1
            return {"split": "layer", "nodes per device": counts}
        sharded = {n: a for n, a in self.shard.items() if a is not None}
        return {"split": "tensor", "sharded weights": len(sharded),
                "replicated weights": len(self.shard) - len(sharded)}


def place(g: Graph, n_devices: int, split: str, order: Sequence[Tensor] | None = None
          ) -> DevicePlacement:
    """Assign ``g`` to ``n_devices`` devices.

    ``layer``: contiguous stages of the order with balanced FLOPs; a leaf goes with its
    first reader. ``tensor``: each weight of rank >= 2 is split along its last axis (the
    output features of a matmul, the hidden size of an embedding) when that divides by the
    device count, else along its first; anything else is replicated.
    """
    if split not in SPLITS:
        raise GraphError(f"unknown split {split!r}", fix=f"use one of {SPLITS}")
    if n_devices < 1:
        raise GraphError("placement needs at least one device")
    placement = DevicePlacement(split, n_devices)
    if split == "tensor":
        for name, p in g.params.items():
            axis = None
            if p.ndim >= 2:
                if p.shape[-1] % n_devices == 0:
                    axis = p.ndim - 1
                elif p.shape[0] % n_devices == 0:
                    axis = 0
            placement.shard[name] = axis
        return placement
    order = list(order if order is not None else g.nodes)
    ops = [t for t in order if not t.is_leaf]
    total = sum(node_flops(t) for t in ops) or len(ops)
    acc = 0
    for t in ops:
        share = node_flops(t) if total != len(ops) else 1
        placement.stage[t] = min(n_devices - 1, acc * n_devices // max(total, 1))
        acc += share
    for t in order:  # leaves run where their first reader runs
        if t.is_leaf:
            readers = [u for u in ops if t in u.inputs]
            placement.stage[t] = placement.stage[readers[0]] if readers else 0
    return placement
