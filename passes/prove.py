"""What a backend does before it runs anything: plan, then prove the plan safe.

Kept apart from :mod:`graphc.passes.aliasing` on purpose: the checker module imports
nothing of the planner but its data types, so that no liveness code is shared.
"""

from __future__ import annotations

import time
from typing import Any

from graphc.graph import Graph
from graphc.passes.aliasing import assert_safe
from graphc.passes.memory import MemoryPlan, plan_memory
from graphc.passes.schedule import schedule as make_order
from graphc.reads import ReadsArg

PLAN_TIME_LIMIT = 2.0
"""Seconds a compile spends at most on the exact planner when greedy misses the bound."""


def plan_and_prove(g: Graph, reads: ReadsArg = None, *, plan: MemoryPlan | None = None,
                   schedule: str = "input", strategy: str = "auto",
                   check: bool = True, report: Any = None,
                   time_limit: float = PLAN_TIME_LIMIT) -> MemoryPlan:
    """Plan ``g`` (unless ``plan`` is given) over the ``schedule`` order, prove the plan
    safe for ``reads`` (AliasError otherwise; ``check=False`` skips the proof), and record
    it in ``report`` (a CompileReport). The default strategy ``auto`` keeps greedy when it
    meets the max-live bound and otherwise spends up to ``time_limit`` seconds on the exact
    planner."""
    t0 = time.perf_counter()
    if plan is None:
        plan = plan_memory(g, order=make_order(g, schedule, reads=reads), reads=reads,
                           strategy=strategy, time_limit=time_limit)
    if check:
        assert_safe(g, plan, reads)
    if report is not None:
        report.record_plan(plan, time.perf_counter() - t0)
    return plan


__all__ = ["plan_and_prove"]
