"""Compiler passes and analyses over :class:`graphc.Graph` (imported as ``graphc.passes``).

Passes (registered by name for pipelines): ``dce``, ``dead-outputs{reads=...}``,
``prune-rows{reads=...}``, ``cse``, ``fold``. Functions: :func:`dce`,
:func:`dead_outputs`, :func:`prune_rows`, :func:`cse`, :func:`fold`,
:func:`optimize_for_reads`; analysis :func:`cost`. Run pipelines with
:class:`PassManager`. Writing passes: :class:`Rebuilder` (copy a graph node by node,
replacing nodes), :class:`RewritePattern` / :func:`rewrite_pattern` and
:func:`apply_patterns` (local rewrites to a fixpoint), :func:`pattern_pass`,
:func:`register_pass`, :func:`function_pass`. Memory: :func:`schedule`, :func:`plan_memory`,
:func:`check_aliasing`; plan files: :func:`save_plan`, :func:`load_plan`.
"""

from __future__ import annotations

from graphc.graph import Graph
from graphc.passes.aliasing import Violation, assert_safe, check_aliasing
from graphc.passes.base import PASSES, Pass, function_pass, make_pass, register_pass
from graphc.passes.cost import CostReport, cost
from graphc.passes.cse import cse
from graphc.passes.dce import dce, dead_outputs
from graphc.passes.fold import fold
from graphc.passes.manager import PassError, PassManager, parse_pipeline, pipeline_for
from graphc.passes.memory import MemoryPlan, Peak, Placement, peak, plan_memory
from graphc.passes.plan_io import load_plan, save_plan
from graphc.passes.rewrite import (
    Rebuilder,
    RewriteError,
    RewritePattern,
    apply_patterns,
    gc_paused,
    pattern_pass,
    rewrite_pattern,
)
from graphc.passes.row_pruning import prune_rows
from graphc.passes.schedule import peak_bytes, schedule
from graphc.reads import Reads, ReadsArg, normalize_reads


def optimize_for_reads(g: Graph, reads: ReadsArg = None) -> tuple[Graph, Reads]:
    """The output-driven pipeline for what this call reads (``dead-outputs`` recording
    the reads in the IR, then ``prune-rows``, ``fold``, ``cse``, ``dce``), run by the
    PassManager. Returns the graph and the reads that apply to it (from its IR)."""
    g, rd = normalize_reads(g, reads)
    with gc_paused():
        out = PassManager(pipeline_for(rd, "default")).run(g)
    return out, Reads.of_graph(out)


__all__ = [
    "PASSES",
    "CostReport",
    "MemoryPlan",
    "Pass",
    "PassError",
    "PassManager",
    "Peak",
    "Placement",
    "Rebuilder",
    "RewriteError",
    "RewritePattern",
    "Violation",
    "apply_patterns",
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
    "pattern_pass",
    "peak",
    "peak_bytes",
    "pipeline_for",
    "plan_memory",
    "prune_rows",
    "register_pass",
    "rewrite_pattern",
    "save_plan",
    "schedule",
]
