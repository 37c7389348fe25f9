"""Judge a ggml capture: ggml's own plan under graphc's checker, graphc's plans of the
same graph, and what the dynamic check saw while ggml ran.

:func:`judge` is what ``graphc check CAPTURE.json`` and ``graphc llama-check`` print;
:func:`check_modes` runs llama.cpp in each :class:`~graphc.interop.llama_run.Mode` (in a
child process each) and judges every graph, for ``graphc llama-check --all-modes``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from graphc.errors import GraphError
from graphc.interop.capture import Capture, capture_cgraph
from graphc.interop.ggml_import import Imported, check_import, import_capture
from graphc.interop.host_reads import HostReadWatch
from graphc.interop.llama_run import Mode, capture_llama_isolated
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
            "host_reads": [{"tensor": cap.tensors[h.tensor].name, "offset": h.offset,
                            "bytes": h.size,
                            "output_flag": bool(cap.tensors[h.tensor].flags & 2)}
                           for h in cap.host_reads],
            "violations": self.violations, "dynamic_checked": cap.checked,
            "nodes_recomputed": cap.recomputed,
            "dynamic_findings": [f.detail for f in cap.findings],
            "verdict": "proven safe" if self.safe else "unsafe",
        }

    def read_names(self) -> list[str]:
        """Each host read's tensor by ggml name (or op and node index when unnamed)."""
        cap = self.capture
        out = []
        for hr in cap.host_reads:
            rec = cap.tensors[hr.tensor]
            where = f"node {cap.order.index(rec.id)}" if rec.id in cap.order else "not a node"
            out.append(rec.name or f"<{rec.op} {where}>")
        return out

    def reads_text(self) -> str:
        """The host's observed copies after the graph, by ggml name (or op and node)."""
        cap = self.capture
        if not cap.watched:
            return "not watched"
        parts = []
        for hr in cap.host_reads:
            rec = cap.tensors[hr.tensor]
            whole = hr.offset == 0 and hr.size == rec.nbytes
            what = rec.name or f"<{rec.op} node {cap.order.index(rec.id)}>" \
                if rec.id in cap.order else rec.name or f"<{rec.op}>"
            parts.append(what if whole else f"{what}[{hr.offset}:{hr.offset + hr.size}]")
        return ", ".join(parts) or "none"

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
        out.append(f"  host reads after the graph (observed): {self.reads_text()}")
        if cap.checked:
            out.append(f"  dynamic check while ggml ran: {len(cap.findings)} stale read(s); "
                       f"{cap.recomputed} of {len(cap.order)} nodes recomputed from their "
                       "operands' bytes")
            out += [f"    - {f.detail}" for f in cap.findings]
        if self.violations:
            out.append(f"  verdict: UNSAFE, {len(self.violations)} violation(s) in ggml's plan:")
            out += [f"    - {v}" for v in self.violations]
        elif cap.findings:
            out.append(f"  verdict: UNSAFE: the dynamic check saw {len(cap.findings)} stale "
                       "read(s) while ggml ran (above)")
        else:
            out.append(f"  verdict: {d['verdict']}: no tensor still read (by a later node, "
                       "the caller, or the next run) shares bytes with a later write")
        return out


def judge(cap: Capture, label: str = "graph", time_limit: float = 2.0) -> Verdict:
    """Import ``cap``, check ggml's plan, plan the same graph with graphc (greedy-by-size
    and auto, in ggml's order and alignment) and check those too."""
    imp = import_capture(cap)
    found = imp.report(check_import(imp))
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


def check_cgraph(cgraph: int, *, watch: HostReadWatch | None = None,
                 gallocr: int | None = None, sched: int | None = None,
                 reads: Sequence[str] = (), source: str = "ggml graph") -> Verdict:
    """The verdict on an allocated ``ggml_cgraph`` built with ggml's own API (no llama.cpp
    needed): ggml's placement checked, what the host read after it (``watch``: a
    :func:`~graphc.interop.capture.watch_cgraph` block around the compute and the reads;
    ``reads``: names you declare read besides), and, given the ``gallocr`` (or ``sched``)
    that placed it, whether the placement was planned for another graph (``stale-plan``,
    llama.cpp #28448). ``Verdict.safe`` and ``Verdict.lines()`` say the rest."""
    return judge(capture_cgraph(cgraph, source, reads=reads, watch=watch, gallocr=gallocr,
                                sched=sched), source)


def default_modes(n_tokens: int) -> list[Mode]:
    """Every host-read mode llama.cpp has, once each, and the combinations that change the
    graph's shape (several sequences, ubatches, KV types with flash attention). Which of
    them a model supports is found out by running it, not listed."""
    mid = f"0,{n_tokens // 2}"
    return [
        Mode(), Mode(logits="all"), Mode(logits=mid),
        *(Mode(embeddings=p) for p in ("none", "mean", "cls", "last")),
        Mode(seqs=2), Mode(seqs=2, embeddings="mean"),
        Mode(logits="all", n_ubatch=max(1, n_tokens // 2)),
        Mode(seqs=2, logits="all", n_ubatch=max(1, n_tokens // 2)),
        Mode(layer_inputs=True), Mode(backend_sampling=True),
        Mode(backend_sampling=True, seqs=2),
        Mode(mtp=True),
        Mode(kv_type="f16"), Mode(flash_attn=True), Mode(kv_type="f16", flash_attn=True),
        Mode(kv_type="q8_0", flash_attn=True), Mode(kv_type="q4_0", flash_attn=True),
        Mode(mtp=True, kv_type="f16", flash_attn=True),
    ]


@dataclass
class ModeRow:
    """One mode of ``--all-modes``: its verdicts, or why it could not run
    (``unsupported``: llama.cpp refused or aborted; ``error``: graphc could not judge)."""

    mode: Mode
    verdicts: list[Verdict] = field(default_factory=list)
    unsupported: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        """``proven safe``, ``UNSAFE (n)``, ``not supported: ...`` or ``error: ...``."""
        if self.unsupported is not None:
            return f"not supported: {self.unsupported}"
        if self.error is not None:
            return f"error: {self.error}"
        bad = sum(len(v.violations) + len(v.capture.findings) for v in self.verdicts)
        return "proven safe" if bad == 0 else f"UNSAFE ({bad})"

    def to_dict(self) -> dict[str, object]:
        """The row as JSON-ready data."""
        return {"mode": self.mode.label(), "verdict": self.verdict,
                "seconds": round(self.seconds, 2),
                "graphs": [v.to_dict() for v in self.verdicts]}


def check_mode(model: str | Path, tokens: Sequence[int], mode: Mode, n_ctx: int = 64
               ) -> ModeRow:
    """Run llama.cpp in ``mode`` in a child process and judge every graph it ran."""
    row = ModeRow(mode)
    t0 = time.perf_counter()
    try:
        run = capture_llama_isolated(model, tokens, mode, n_ctx=n_ctx)
    except GraphError as e:
        why = str(e).splitlines()[0].removeprefix("error: ")
        if why.startswith(("capturing the graph failed", "watching the host's reads")):
            row.error = why  # graphc's own capture failed: not the model's doing
        else:
            row.unsupported = why
        row.seconds = time.perf_counter() - t0
        return row
    try:
        row.verdicts = [judge(cap, label) for label, cap in run.captures.items()]
    except GraphError as e:
        row.error = str(e).splitlines()[0].removeprefix("error: ")
    row.seconds = time.perf_counter() - t0
    return row


def check_modes(model: str | Path, tokens: Sequence[int], modes: Sequence[Mode],
                n_ctx: int = 64) -> list[ModeRow]:
    """:func:`check_mode` for each of ``modes``, in order."""
    return [check_mode(model, tokens, m, n_ctx) for m in modes]
