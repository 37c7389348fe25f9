"""Judge a ggml capture: ggml's own plan under graphc's checker, graphc's plans of the
same graph, and what the dynamic check saw while ggml ran.

:func:`judge` is what ``graphc check CAPTURE.json`` and ``graphc llama-check`` print.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphc.interop.capture import Capture
from graphc.interop.ggml_import import Imported, check_import, import_capture
from graphc.passes.aliasing import check_aliasing
from graphc.passes.memory import MemoryPlan, plan_memory


@dataclass
class Verdict:
    """Everything ``graphc llama-check`` reports for one captured graph."""

    label: str
    capture: Capture
    imported: Imported
    violations: list[str]
    ggml_span: int  # bytes of the compute buffers ggml's placement of this graph reaches
    greedy: MemoryPlan
    best: MemoryPlan
    graphc_violations: int  # the checker on graphc's own plans (0 expected)

    @property
    def safe(self) -> bool:
        """Proven safe by the checker, and no stale read seen while ggml ran."""
        return not self.violations and not self.capture.findings

    def to_dict(self) -> dict[str, object]:
        """The figures as JSON-ready data."""
        cap = self.capture
        return {
            "graph": self.label, "source": cap.source, "nodes": len(cap.order),
            "tensors": len(cap.tensors), "graphc_nodes": len(self.imported.graph),
            "compute_buffer_bytes": cap.compute_bytes(), "ggml_span_bytes": self.ggml_span,
            "graphc_greedy_bytes": self.greedy.arena_bytes,
            "graphc_best_bytes": self.best.arena_bytes,
            "graphc_best_certificate": self.best.certificate,
            "max_live_bound_bytes": self.best.lower_bound_bytes,
            "violations": self.violations, "dynamic_checked": cap.checked,
            "dynamic_findings": [f.detail for f in cap.findings],
            "verdict": "proven safe" if self.safe else "unsafe",
        }

    def lines(self) -> list[str]:
        """The human-readable report."""
        cap, imp = self.capture, self.imported
        d = self.to_dict()
        bufs = ", ".join(f"{b.name} ({b.usage}) {b.size:,} B" for b in cap.buffers)
        out = [
            f"{self.label}: {cap.source}",
            f"  nodes {len(cap.order)}, tensors {len(cap.tensors)} "
            f"(graphc graph: {len(imp.graph)} nodes); buffers: {bufs}",
            f"  llama.cpp compute buffer {cap.compute_bytes():,} B; this graph's placement "
            f"reaches {self.ggml_span:,} B of it",
            f"  graphc plan of the same graph: greedy-by-size {self.greedy.arena_bytes:,} B, "
            f"best ({self.best.strategy}) {self.best.arena_bytes:,} B; max-live bound "
            f"{self.best.lower_bound_bytes:,} B"
            + (f" ({self.best.certificate})" if self.best.certificate else ""),
        ]
        if self.graphc_violations:
            out.append(f"  WARNING: graphc's own plans have {self.graphc_violations} "
                       "violation(s)")
        if cap.checked:
            out.append(f"  dynamic check while ggml ran: {len(cap.findings)} stale read(s)")
            out += [f"    - {f.detail}" for f in cap.findings]
        if self.violations:
            out.append(f"  verdict: UNSAFE, {len(self.violations)} violation(s) in ggml's plan:")
            out += [f"    - {v}" for v in self.violations]
        else:
            out.append(f"  verdict: {d['verdict']}: no tensor still read (by a later node, "
                       "the caller, or the next run) shares bytes with a later write")
        return out


def judge(cap: Capture, label: str = "graph", time_limit: float = 2.0) -> Verdict:
    """Import ``cap``, check ggml's plan, plan the same graph with graphc (greedy-by-size
    and auto, in ggml's order and alignment) and check those too."""
    imp = import_capture(cap)
    found = [imp.explain(v) for v in check_import(imp)]
    reads = list(imp.reads)
    order = list(imp.plan.order)
    span = max((p.offset + p.nbytes for p in imp.plan.placements.values()
                if p.region == "arena"), default=0)
    greedy = plan_memory(imp.graph, order, reads, "greedy-by-size",
                         alignment=imp.plan.alignment)
    best = plan_memory(imp.graph, order, reads, "auto", alignment=imp.plan.alignment,
                       time_limit=time_limit)
    if greedy.arena_bytes < best.arena_bytes:
        best = greedy
    own = len(check_aliasing(imp.graph, greedy, reads)) + len(
        check_aliasing(imp.graph, best, reads))
    return Verdict(label, cap, imp, found, span, greedy, best, own)
