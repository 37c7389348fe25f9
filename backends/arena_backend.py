"""The ``arena`` backend's entry point: plan, prove, and run in the plan's bytes -- under
shadow memory with ``sanitize=True``."""

from __future__ import annotations

from typing import Any

from graphc.backends.arena import ArenaExecutable
from graphc.backends.sanitizer import SanitizedArenaExecutable
from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.passes.memory import MemoryPlan
from graphc.passes.prove import plan_and_prove
from graphc.reads import Reads


def build(graph: Graph, params: Any, reads: Reads, states: Any = None, *,
          plan: MemoryPlan | None = None, check: bool = True, strategy: str = "auto",
          schedule: str = "input", report: Any = None, sanitize: bool = False,
          **options: Any) -> ArenaExecutable:
    """Backend entry point: plan (unless ``plan`` is given), check unless ``check=False``,
    and return the executable -- run under shadow memory when ``sanitize=True`` (a
    :class:`graphc.backends.sanitizer.SanitizedArenaExecutable`)."""
    if options:
        raise GraphError(f"the arena backend takes no option {sorted(options)[0]!r}")
    plan = plan_and_prove(graph, dict(reads.rows), plan=plan, schedule=schedule,
                          strategy=strategy, check=check, report=report)
    if sanitize:
        return SanitizedArenaExecutable(graph, params, reads, states, plan)
    return ArenaExecutable(graph, params, reads, states, plan)
