"""`CompileReport`: what ``graphc.compile`` did, for ``exe.report()``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CompileReport:
    """Passes run, FLOPs before and after, planned memory, times, and (for JAX) the
    compiled executable's own memory analysis."""

    backend: str
    pipeline: str
    passes: list[str] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    flops_before: int = 0
    flops_after: int = 0
    arena_bytes: int | None = None
    lower_bound_bytes: int | None = None
    plan_strategy: str | None = None
    plan_certificate: str = ""
    state_bytes: int | None = None
    passes_seconds: float = 0.0
    plan_seconds: float = 0.0
    trace_seconds: float | None = None
    compile_seconds: float | None = None
    memory_analysis: dict[str, int] | None = None
    devices: list[str] = field(default_factory=list)
    split: str | None = None
    placement: dict[str, Any] = field(default_factory=dict)

    def record_plan(self, plan: Any, seconds: float) -> None:
        """Note the memory plan made for this compile and the time it took."""
        self.arena_bytes, self.lower_bound_bytes = plan.arena_bytes, plan.lower_bound_bytes
        self.plan_strategy, self.plan_certificate = plan.strategy, plan.certificate
        self.state_bytes = plan.state_bytes
        self.plan_seconds = seconds

    @property
    def graphc_share(self) -> float | None:
        """graphc's own time (passes + planning) over JAX's trace + compile time."""
        if not self.trace_seconds and not self.compile_seconds:
            return None
        jax_time = (self.trace_seconds or 0.0) + (self.compile_seconds or 0.0)
        return (self.passes_seconds + self.plan_seconds) / jax_time

    def __str__(self) -> str:
        lines = [f"backend {self.backend}, pipeline {self.pipeline!r}: "
                 f"{', '.join(self.passes) or 'no passes'}",
                 f"nodes {self.nodes_before} -> {self.nodes_after}; FLOPs "
                 f"{self.flops_before:,} -> {self.flops_after:,}"
                 + (f" ({self.flops_after / self.flops_before:.3f}x)" if self.flops_before
                    else "")]
        if self.arena_bytes is not None:
            lines.append(f"planned arena {self.arena_bytes:,} B (lower bound "
                         f"{self.lower_bound_bytes:,} B, {self.plan_strategy}"
                         + (f": {self.plan_certificate}" if self.plan_certificate else "")
                         + f"), state {self.state_bytes:,} B")
        times = f"graphc passes {self.passes_seconds:.4f} s, planning {self.plan_seconds:.4f} s"
        if self.trace_seconds is not None:
            times += (f"; JAX trace {self.trace_seconds:.4f} s, compile "
                      f"{self.compile_seconds or 0:.4f} s")
        lines.append(times)
        if self.memory_analysis:
            lines.append("XLA memory analysis: " + ", ".join(
                f"{k} {v:,} B" for k, v in self.memory_analysis.items()))
        if self.devices:
            lines.append(f"devices {self.devices}" + (f", split {self.split}" if self.split
                                                      else ""))
        return "\n".join(lines)
