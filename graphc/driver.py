"""`compile`: verify a graph, settle what the caller reads, optimize, hand it to a backend."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from graphc.errors import GraphError
from graphc.executable import Executable
from graphc.graph import Graph
from graphc.reads import Reads, ReadsArg, normalize_reads
from graphc.report import CompileReport
from graphc.verifier import verify

DEFAULT_PIPELINES = {"reference": "none", "arena": "none", "jax": "default"}
def _optimize(g: Graph, rd: Reads, pipeline: str, report: CompileReport) -> tuple[Graph, Reads]:
    """Run ``pipeline`` for ``rd``; the reads that apply to the result come from its IR."""
    from graphc.passes import PassManager, cost, pipeline_for

    report.nodes_before, report.flops_before = len(g), cost(g).flops
    t0 = time.perf_counter()
    text = pipeline_for(rd, pipeline)
    if text:
        pm = PassManager(text)
        for p in pm.passes[1:]:  # a pass that reads for itself must read what the call does
            own = p.options().get("reads")
            if own and dict(normalize_reads(g, own)[1].rows) != dict(rd.rows):
                raise GraphError(
                    f"pipeline pass {p.spec()} reads other rows than this call "
                    f"(reads={rd.to_text()})",
                    fix="drop reads= from the pipeline: compile records the call's reads in "
                        "the IR before the pipeline runs")
        g2 = pm.run(g)
        report.passes = [p.spec() for p in pm.passes]
        missing = [n for n in rd.rows if n not in g2.outputs]
        if missing:
            raise GraphError(f"pipeline {pipeline!r} removed output {missing[0]!r}, which "
                             f"this call reads", fix="read only outputs the pipeline keeps")
        rd2 = Reads.of_graph(g2)
    else:
        g2, rd2 = g, rd
    report.passes_seconds = time.perf_counter() - t0
    report.nodes_after, report.flops_after = len(g2), cost(g2).flops
    return g2, rd2


def compile(
    g: Graph,
    params: Mapping[str, Any] | None = None,
    reads: ReadsArg = None,
    backend: str = "reference",
    *,
    states: Mapping[str, Any] | None = None,
    taps: Literal["error", "protect"] = "error",
    pipeline: str | None = None,
    **options: Any,
) -> Executable:
    """Compile ``g`` for ``backend`` with ``params`` bound; return an :class:`Executable`.

    ``reads`` says which outputs (and rows) each run returns (default: what the graph's
    outputs say, every row unless an output selects rows). ``pipeline``: ``"default"``
    (dead-output elimination and row pruning for ``reads``, folding, CSE, DCE),
    ``"none"``, or pipeline text, which runs after ``dead-outputs`` has recorded the
    reads in the IR; the default is ``"default"`` for ``jax`` and ``"none"`` for
    ``reference`` and ``arena`` (so a plan made for ``g`` stays valid). The compile
    report lists the passes that ran. ``states`` seeds persistent buffers (default:
    zeros). ``taps="protect"`` marks a tensor read without being an output, on a copy of
    ``g``, instead of refusing it. Backend options
    (``plan``, ``check``, ``strategy``, ``devices``, ``split``...) pass through. Raises
    GraphError for an invalid graph or call, AliasError for an unsafe memory plan.
    """
    from graphc.backends import get_backend

    verify(g)
    g, rd = normalize_reads(g, reads, taps)
    build = get_backend(backend)
    pipe = DEFAULT_PIPELINES.get(backend, "none") if pipeline is None else pipeline
    report = CompileReport(backend=backend, pipeline=pipe)
    g2, rd2 = _optimize(g, rd, pipe, report)
    exe: Executable = build(g2, params, rd2, states, report=report, **options)
    exe.compile_report = report
    return exe
