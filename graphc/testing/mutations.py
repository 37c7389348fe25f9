"""Fault injection for memory plans: mutation testing of the aliasing checker.

``mutate_plan`` takes a safe plan and injects one known fault that makes it unsafe by
construction. The checker must report every one; the kinds it may report are returned
with the mutant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from graphc.graph import Graph
from graphc.passes.memory import MemoryPlan, Placement, lifetimes
from graphc.tensor import Tensor

CLOBBER_KINDS = frozenset({"overlap", "clobbered-read", "output-clobbered", "unmarked-tap",
                           "state-misassigned", "bad-view", "bad-inplace"})


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A faulty plan, the fault's name, and the violation kinds that catch it."""

    plan: MemoryPlan
    fault: str
    expect: frozenset[str]
    detail: str


def _copy(plan: MemoryPlan, **changes: object) -> MemoryPlan:
    return dataclasses.replace(plan, placements=dict(plan.placements), order=list(plan.order),
                               **changes)  # type: ignore[arg-type]


def _values(plan: MemoryPlan) -> list[Tensor]:
    return [t for t in plan.order if plan.placements[t].view_of is None
            and plan.placements[t].region == "arena" and plan.placements[t].nbytes > 0]


def _times(g: Graph, plan: MemoryPlan) -> tuple[dict[Tensor, int], dict[Tensor, int]]:
    view_src = {t: p.view_of for t, p in plan.placements.items() if p.view_of is not None}
    return lifetimes(plan.order, view_src, set(g.outputs.values()))


def _chain_of(plan: MemoryPlan, t: Tensor) -> set[Tensor]:
    """t with every value that shares its bytes through views or in-place writes."""
    group = {t}
    changed = True
    while changed:
        changed = False
        for r, p in plan.placements.items():
            if r not in group and (p.view_of in group or p.inplace_of in group):
                group.add(r)
                changed = True
        for r in list(group):
            p = plan.placements[r]
            for o in (p.view_of, p.inplace_of):
                if o is not None and o not in group:
                    group.add(o)
                    changed = True
    return group


def shift_offset(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Move a value onto the bytes of another value live at the same time."""
    step, last = _times(g, plan)
    vals = _values(plan)
    pairs = [(u, v) for u in vals for v in vals if u is not v and step[u] < step[v] <= last[u]
             and v not in _chain_of(plan, u)]
    if not pairs:
        return None
    u, v = pairs[int(rng.integers(0, len(pairs)))]
    m = _copy(plan)
    m.placements[v] = dataclasses.replace(plan.placements[v], offset=plan.placements[u].offset,
                                          inplace_of=None)
    return Mutant(m, "shift-offset", CLOBBER_KINDS,
                  f"moved {v!r} onto {u!r}, which is live at the same time")


def drop_output(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Plan as if an output were not marked: reuse its bytes for a later value."""
    step, _last = _times(g, plan)
    outs = [t for t in set(g.outputs.values()) if t in _values(plan) and not t.is_leaf]
    cands = []
    for o in outs:
        in_graph = max([step[o]] + [step[r] for r in plan.order if o in r.inputs])
        for v in _values(plan):
            if step[v] > in_graph and v not in _chain_of(plan, o):
                cands.append((o, v))
    if not cands:
        return None
    o, v = cands[int(rng.integers(0, len(cands)))]
    m = _copy(plan)
    m.placements[v] = dataclasses.replace(plan.placements[v], offset=plan.placements[o].offset,
                                          inplace_of=None)
    return Mutant(m, "drop-output", CLOBBER_KINDS | {"output-clobbered"},
                  f"reused output {o!r}'s bytes for {v!r} after its last in-graph reader")


def swap_order(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Swap two nodes of the order so that one runs before an operand it needs."""
    pos = {t: i for i, t in enumerate(plan.order)}
    cands = [(pos[o], pos[t]) for t in plan.order for o in t.inputs]
    if not cands:
        return None
    i, j = cands[int(rng.integers(0, len(cands)))]
    m = _copy(plan)
    m.order[i], m.order[j] = m.order[j], m.order[i]
    return Mutant(m, "swap-order", frozenset({"bad-order"}),
                  f"swapped steps {i} and {j}")


def out_of_bounds(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Push a value past the end of the arena."""
    vals = _values(plan)
    if not vals:
        return None
    v = vals[int(rng.integers(0, len(vals)))]
    m = _copy(plan)
    m.placements[v] = dataclasses.replace(plan.placements[v], offset=plan.arena_bytes)
    return Mutant(m, "out-of-bounds", frozenset({"out-of-bounds"}) | CLOBBER_KINDS,
                  f"moved {v!r} past the end of the arena")


def stale(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Claim the plan was made for another version of the graph."""
    m = _copy(plan, fingerprint="0" * 32)
    return Mutant(m, "stale", frozenset({"stale-plan"}), "changed the fingerprint")


def drop_placement(g: Graph, plan: MemoryPlan, rng: np.random.Generator) -> Mutant | None:
    """Forget one tensor's placement."""
    t = plan.order[int(rng.integers(0, len(plan.order)))]
    m = _copy(plan)
    del m.placements[t]
    return Mutant(m, "drop-placement", frozenset({"missing-placement"}), f"dropped {t!r}")


MUTATIONS: dict[str, Callable[[Graph, MemoryPlan, np.random.Generator], Mutant | None]] = {
    "shift-offset": shift_offset,
    "drop-output": drop_output,
    "swap-order": swap_order,
    "out-of-bounds": out_of_bounds,
    "stale": stale,
    "drop-placement": drop_placement,
}


def mutate_plan(g: Graph, plan: MemoryPlan, fault: str | None = None, seed: int = 0
                ) -> Mutant | None:
    """One mutant of ``plan`` with the named fault (default: a random applicable one), or
    None when that fault cannot be injected into this plan."""
    rng = np.random.default_rng(seed)
    names = [fault] if fault else list(rng.permutation(list(MUTATIONS)))
    for name in names:
        m = MUTATIONS[name](g, plan, rng)
        if m is not None:
            return m
    return None


__all__ = ["MUTATIONS", "Mutant", "Placement", "mutate_plan"]
