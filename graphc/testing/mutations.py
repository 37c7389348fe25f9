"""Random edits of memory plans: mutation testing of the aliasing checker.

A mutation is chosen from the plan as raw data (placements, positions in ``plan.order``,
region sizes) and from the graph's structure (operands, outputs, assigns, which ops may
write in place) only. No liveness is computed here: this module shares no code with the
planner or the checker it tests, so a mistake there cannot hide in a mutant. A mutant is
*not* guaranteed to be unsafe: a dynamic sanitizer (running the plan and comparing with
the reference backend) judges each one, and the checker must agree with it.

``mutate_plan(g, plan, fault, seed)`` returns a :class:`Mutant` (a copy of the plan with
one edit, the mutation's name and what changed) or None when the mutation does not apply
to this plan. The input plan is never modified. :data:`MUTATIONS` maps every name to its
function ``(g, plan, rng) -> Mutant | None``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

from graphc.graph import Graph
from graphc.naming import label
from graphc.ops import OP_TABLE, contiguous_strides
from graphc.passes.memory import MemoryPlan, Placement
from graphc.tensor import Tensor

REGIONS = ("arena", "state", "param")
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A mutated copy of a plan (``plan``), the mutation's name (``fault``, a key of
    :data:`MUTATIONS`) and what was changed (``detail``, tensors named by their printed
    labels). The edit may or may not make the plan unsafe."""

    plan: MemoryPlan
    fault: str
    detail: str


Mutation = Callable[[Graph, MemoryPlan, np.random.Generator], Mutant | None]
"""A mutation: ``(graph, plan, rng) -> Mutant | None`` (None: it does not apply)."""


def copy_plan(plan: MemoryPlan, **changes: object) -> MemoryPlan:
    """A copy of ``plan`` (with ``changes`` to its fields) whose placements dict and order
    list are new objects (placements themselves are frozen, so sharing them is safe)."""
    return dataclasses.replace(plan, placements=dict(plan.placements),
                               order=list(plan.order), **changes)  # type: ignore[arg-type]  # any field


def _choice(rng: np.random.Generator, items: Sequence[T]) -> T:
    return items[int(rng.integers(0, len(items)))]


def _values(plan: MemoryPlan) -> list[Tensor]:
    """Placed tensors with bytes of their own (not views), in plan order, then the rest."""
    seen = [t for t in dict.fromkeys(plan.order) if t in plan.placements]
    in_order = set(seen)
    seen += [t for t in plan.placements if t not in in_order]
    return [t for t in seen if plan.placements[t].view_of is None]


def moved(plan: MemoryPlan, t: Tensor, **changes: object) -> MemoryPlan:
    """A copy of ``plan`` with ``t``'s placement changed (``offset=``, ``region=``...):
    the way to hand-make a faulty plan."""
    m = copy_plan(plan)
    m.placements[t] = dataclasses.replace(
        plan.placements[t], **changes)  # type: ignore[arg-type]  # any field
    return m


def shift_offset(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Move a non-view value onto another value's offset in the same region (any pair
    whose offsets differ). None when no such pair exists."""
    vals = _values(plan)
    pl = plan.placements
    pairs = [(u, v) for u in vals for v in vals if u is not v and pl[u].region == pl[v].region
             and pl[u].offset != pl[v].offset]
    if not pairs:
        return None
    u, v = _choice(rng, pairs)
    return Mutant(moved(plan, v, offset=pl[u].offset), "shift-offset",
                  f"moved {label(v)} from offset {pl[v].offset} onto {label(u)} at "
                  f"{pl[u].offset} ({pl[u].region})")


def nudge_offset(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Move a non-view value by a whole number of elements, between one element and its
    size, up or down (up when down would leave the region). None when no value has bytes."""
    vals = [t for t in _values(plan) if plan.placements[t].nbytes > 0 and t.itemsize > 0]
    if not vals:
        return None
    v = _choice(rng, vals)
    p = plan.placements[v]
    n = max(1, p.nbytes // v.itemsize)
    delta = int(rng.integers(1, n + 1)) * v.itemsize
    if rng.random() < 0.5 and p.offset - delta >= 0:
        delta = -delta
    return Mutant(moved(plan, v, offset=p.offset + delta), "nudge-offset",
                  f"moved {label(v)} by {delta:+d} bytes to {p.offset + delta} ({p.region})")


def misalign(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Move any placement (view or not) one byte up. None when the plan is empty."""
    if not plan.placements:
        return None
    t = _choice(rng, list(plan.placements))
    p = plan.placements[t]
    return Mutant(moved(plan, t, offset=p.offset + 1), "misalign",
                  f"moved {label(t)} from offset {p.offset} to {p.offset + 1}")


def flip_region(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Put any placement (leaf or not) in another region at the same offset."""
    if not plan.placements:
        return None
    t = _choice(rng, list(plan.placements))
    p = plan.placements[t]
    region = _choice(rng, [r for r in REGIONS if r != p.region])
    return Mutant(moved(plan, t, region=region), "flip-region",
                  f"moved {label(t)} from region {p.region} to {region} at offset {p.offset}")


def _stride_edits(t: Tensor, current: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Non-dense or other-than-current element strides for a tensor of ``t``'s shape."""
    dense = contiguous_strides(t.shape)
    cands = [dense[::-1], tuple(reversed(current)), current[1:] + current[:1]]
    for i, d in enumerate(t.shape):
        if d > 1:
            cands.append((*current[:i], 0, *current[i + 1:]))
            cands.append((*current[:i], current[i] * 2 or 1, *current[i + 1:]))
    return [c for c in dict.fromkeys(cands) if c != current]


def edit_strides(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Give a value (or a view) other element strides: dense strides reversed or rotated,
    one stride 0, or one stride doubled. None when no tensor has more than one element."""
    cands = [t for t in plan.placements if t.ndim >= 1 and t.size > 1]
    if not cands:
        return None
    t = _choice(rng, cands)
    p = plan.placements[t]
    current = p.strides if p.strides is not None else contiguous_strides(t.shape)
    edits = _stride_edits(t, current)
    if not edits:
        return None
    new = _choice(rng, edits)
    return Mutant(moved(plan, t, strides=new), "edit-strides",
                  f"gave {label(t)} strides {list(new)} instead of {list(current)}")


def swap_order(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Swap two positions of ``plan.order``: neighbours or any two (the result may or may
    not still be topological). None when the order has fewer than two steps."""
    n = len(plan.order)
    if n < 2:
        return None
    if rng.random() < 0.5:
        i = int(rng.integers(0, n - 1))
        j = i + 1
    else:
        i, j = (int(x) for x in rng.choice(n, size=2, replace=False))
    m = copy_plan(plan)
    m.order[i], m.order[j] = m.order[j], m.order[i]
    return Mutant(m, "swap-order", f"swapped steps {i} ({label(plan.order[i])}) and {j} "
                                   f"({label(plan.order[j])})")


def drop_view(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Turn a view placement into a value of its own at the same offset (``view_of`` and
    ``strides`` cleared). None when the plan has no view."""
    views = [t for t, p in plan.placements.items() if p.view_of is not None]
    if not views:
        return None
    t = _choice(rng, views)
    src = plan.placements[t].view_of
    assert src is not None
    return Mutant(moved(plan, t, view_of=None, strides=None), "drop-view",
                  f"made view {label(t)} of {label(src)} a dense value at the same offset")


def drop_inplace(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Clear one ``inplace_of`` label, leaving the placement where it is. None when no
    placement is in place."""
    marked = [t for t, p in plan.placements.items() if p.inplace_of is not None]
    if not marked:
        return None
    t = _choice(rng, marked)
    op0 = plan.placements[t].inplace_of
    assert op0 is not None
    return Mutant(moved(plan, t, inplace_of=None), "drop-inplace",
                  f"cleared {label(t)}'s in-place label over {label(op0)}")


def force_inplace(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Place a node of an in-place-capable op exactly over its operand 0 (same region and
    offset, ``inplace_of`` = operand 0), whether or not operand 0 is read later. Operand 0
    must have the node's shape and dtype and be a non-view. None when no node qualifies
    or every candidate already is so placed."""
    pl = plan.placements
    cands: list[Tensor] = []
    for t, p in pl.items():
        if t.is_leaf or not t.inputs or t.op not in OP_TABLE or not OP_TABLE[t.op].inplace:
            continue
        x = t.inputs[0]
        if x not in pl or pl[x].view_of is not None or (x.shape, x.dtype) != (t.shape, t.dtype):
            continue
        if (p.region, p.offset, p.inplace_of, p.view_of) == (pl[x].region, pl[x].offset, x,
                                                               None):
            continue
        cands.append(t)
    if not cands:
        return None
    t = _choice(rng, cands)
    x = t.inputs[0]
    m = copy_plan(plan)
    m.placements[t] = Placement(pl[x].region, pl[x].offset, pl[t].nbytes, inplace_of=x)
    return Mutant(m, "force-inplace", f"placed {label(t)} in place over {label(x)} at "
                                      f"{pl[x].region} offset {pl[x].offset}")


def _reuse(plan: MemoryPlan, kept: Sequence[Tensor], fault: str, what: str,
           rng: np.random.Generator) -> Mutant | None:
    """Place a non-view value that comes later in ``plan.order`` than one of ``kept``
    at that tensor's region and offset."""
    pos = {t: i for i, t in enumerate(plan.order)}
    pl = plan.placements
    later = [t for t in _values(plan) if t in pos]
    pairs = [(k, v) for k in dict.fromkeys(kept) if k in pos and k in pl for v in later
             if pos[v] > pos[k] and (pl[v].region, pl[v].offset) != (pl[k].region, pl[k].offset)]
    if not pairs:
        return None
    k, v = _choice(rng, pairs)
    m = moved(plan, v, region=pl[k].region, offset=pl[k].offset)
    return Mutant(m, fault, f"placed {label(v)} (step {pos[v]}) at {what} {label(k)}'s "
                            f"{pl[k].region} offset {pl[k].offset} (step {pos[k]})")


def reuse_output(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Place a value at the bytes of a marked output defined earlier in the order. None
    when no output has a later non-view value."""
    return _reuse(plan, list(g.outputs.values()), "reuse-output", "output", rng)


def reuse_assigned(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Place a value at the bytes of a value assigned to a state, defined earlier in the
    order. None when no assigned value has a later non-view value."""
    return _reuse(plan, list(g.assigns.values()), "reuse-assigned", "assigned value", rng)


def shrink_region(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Reduce the size of one non-empty region (arena, state or param bytes) by one byte,
    one alignment unit, half, or all of it. None when every region is empty."""
    fields = {"arena": "arena_bytes", "state": "state_bytes", "param": "param_bytes"}
    sizes = {r: getattr(plan, f) for r, f in fields.items()}
    regions = [r for r, n in sizes.items() if n > 0]
    if not regions:
        return None
    r = _choice(rng, regions)
    n = sizes[r]
    cut = _choice(rng, [1, min(n, plan.alignment), max(1, n // 2), n])
    m = copy_plan(plan, **{fields[r]: n - cut})
    return Mutant(m, "shrink-region", f"shrank the {r} region from {n} to {n - cut} bytes")


def stale(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Change the fingerprint, as if the plan were made for another version of the graph."""
    fp = plan.fingerprint
    new = "0" * 32 if fp != "0" * 32 else "f" * 32
    return Mutant(copy_plan(plan, fingerprint=new), "stale",
                  f"changed the fingerprint from {fp!r} to {new!r}")


def drop_placement(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Delete one tensor's placement. None when the plan is empty."""
    if not plan.placements:
        return None
    t = _choice(rng, list(plan.placements))
    m = copy_plan(plan)
    del m.placements[t]
    return Mutant(m, "drop-placement", f"dropped the placement of {label(t)}")


MUTATIONS: dict[str, Mutation] = {
    "shift-offset": shift_offset,
    "nudge-offset": nudge_offset,
    "misalign": misalign,
    "flip-region": flip_region,
    "edit-strides": edit_strides,
    "swap-order": swap_order,
    "drop-view": drop_view,
    "drop-inplace": drop_inplace,
    "force-inplace": force_inplace,
    "reuse-output": reuse_output,
    "reuse-assigned": reuse_assigned,
    "shrink-region": shrink_region,
    "stale": stale,
    "drop-placement": drop_placement,
}
"""Every mutation by name: ``(graph, plan, rng) -> Mutant | None``."""


def mutate_plan(g: Graph, plan: MemoryPlan, fault: str | None = None, seed: int = 0
                ) -> Mutant | None:
    """One random edit of ``plan`` by the mutation named ``fault`` (default: a random one
    that applies), drawn from ``seed``; None when it does not apply (or, with no ``fault``,
    when none does). ``plan`` itself is never modified. Raises ValueError for an unknown
    name."""
    if fault is not None and fault not in MUTATIONS:
        raise ValueError(f"unknown mutation {fault!r}; known: {', '.join(MUTATIONS)}")
    rng = np.random.default_rng(seed)
    names = [fault] if fault else [str(n) for n in rng.permutation(list(MUTATIONS))]
    for name in names:
        m = MUTATIONS[name](g, plan, rng)
        if m is not None:
            return m
    return None


__all__ = ["MUTATIONS", "Mutant", "Mutation", "Placement", "copy_plan", "moved", "mutate_plan"]
