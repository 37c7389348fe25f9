"""What a backend does before it runs anything: plan, then prove the plan safe.

Kept apart from :mod:`graphc.passes.aliasing` on purpose: the checker module imports
nothing of the planner but its data types, so that no liveness code is shared.
"""

from __future__ import annotations

import time
from typing import Any

from graphc.passes.aliasing import assert_safe
from graphc.passes.memory import MemoryPlan, plan_memory
from graphc.passes.schedule import schedule as make_order

from graphc.graph import Graph
from graphc.reads import ReadsArg


def plan_and_prove(g: Graph, reads: ReadsArg = None, *, plan: MemoryPlan | None = None,
                   schedule: str = "input", strategy: str = "greedy-by-size",
                   check: bool = True, report: Any = None) -> MemoryPlan:
    """Plan ``g`` (unless ``plan`` is given) over the ``schedule`` order, prove the plan
    safe for ``reads`` (AliasError otherwise; ``check=False`` skips the proof), and record
    it in ``report`` (a CompileReport)."""
    t0 = time.perf_counter()
    if plan is None:
        plan = plan_memory(g, order=make_order(g, schedule, reads=reads), reads=reads,
                           strategy=strategy)
    if check:
        assert_safe(g, plan, reads)
    if report is not None:
        report.record_plan(plan, time.perf_counter() - t0)
    return plan


__all__ = ["plan_and_prove"]
