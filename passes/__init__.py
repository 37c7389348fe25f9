"""Compiler passes and analyses over :class:`graphc.Graph` (imported as ``graphc.passes``).

Passes (registered by name for pipelines): ``dce``, ``dead-outputs{reads=...}``,
``prune-rows{reads=...}``, ``cse``, ``fold``. Functions: :func:`dce`,
:func:`dead_outputs`, :func:`prune_rows`, :func:`cse`, :func:`fold`,
:func:`optimize_for_reads`; analysis :func:`cost`. Run pipelines with
:class:`PassManager`. Memory: :func:`schedule`, :func:`plan_memory`,
:func:`check_aliasing`; plan files: :func:`save_plan`, :func:`load_plan`.
"""

from __future__ import annotations

from graphc.passes.aliasing import Violation, assert_safe, check_aliasing
from graphc.passes.base import PASSES, Pass, function_pass, make_pass, register_pass
from graphc.passes.cost import CostReport, cost
from graphc.passes.cse import cse
from graphc.passes.dce import dce, dead_outputs
from graphc.passes.fold import fold
from graphc.passes.manager import PassError, PassManager, parse_pipeline
from graphc.passes.memory import MemoryPlan, Placement, plan_memory
from graphc.passes.plan_io import load_plan, save_plan
from graphc.passes.rewrite import gc_paused
from graphc.passes.row_pruning import prune_rows
from graphc.passes.schedule import peak_bytes, schedule

from graphc.graph import Graph
from graphc.reads import Reads, ReadsArg


def optimize_for_reads(g: Graph, reads: ReadsArg = None) -> tuple[Graph, Reads]:
    """The output-driven pipeline: dead-output elimination, row pruning, folding, CSE and
    DCE for what this call reads. Returns the graph and the reads that apply to it."""
    with gc_paused():
        g2 = dead_outputs(g, reads)
        g2, rd = prune_rows(g2, _rebased(g, g2, reads))
        return dce(cse(fold(g2))), rd


def _rebased(old: Graph, new: Graph, reads: ReadsArg) -> ReadsArg:
    """Reads given by tensor refer to ``old``; restate them by output name for ``new``."""
    from graphc.reads import normalize_reads

    _, rd = normalize_reads(old, reads)
    return {name: list(sel) if sel != "all" else "all" for name, sel in rd.rows.items()}


__all__ = [
    "PASSES",
    "CostReport",
    "MemoryPlan",
    "Pass",
    "PassError",
    "PassManager",
    "Placement",
    "Violation",
    "assert_safe",
    "check_aliasing",
    "cost",
    "cse",
    "dce",
    "dead_outputs",
    "fold",
    "function_pass",
    "load_plan",
    "make_pass",
    "optimize_for_reads",
    "parse_pipeline",
    "peak_bytes",
    "plan_memory",
    "prune_rows",
    "register_pass",
    "save_plan",
    "schedule",
]
