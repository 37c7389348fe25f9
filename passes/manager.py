"""`PassManager`: runs a pipeline of passes, verifying the IR after each one."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.passes.base import Pass, make_pass
from graphc.passes.rewrite import gc_paused
from graphc.reads import Reads, parse_reads
from graphc.text import to_text
from graphc.verifier import verify


class PassError(GraphError):
    """A pass failed or produced an invalid graph; names the pass and its position."""

    def __init__(self, message: str, *, pass_name: str, position: int, total: int,
                 fix: str | None = None, internal: bool = True) -> None:
        self.pass_name = pass_name
        self.position = position
        self.total = total
        self.internal = internal  # False: the input or the options were at fault
        super().__init__(f"pass '{pass_name}' ({position} of {total}): {message}", fix=fix)


def fingerprint(g: Graph) -> tuple[object, ...]:
    """What identifies ``g``'s contents: its nodes (by identity: tensors are immutable),
    outputs with their rows, and state updates. Equal before and after a pass unless the
    pass changed its input."""
    outputs = g.outputs
    return (g.name, tuple(map(id, g.node_view)),
            tuple((n, id(t), g.output_rows(n)) for n, t in outputs.items()),
            tuple((id(s), id(v)) for s, v in g.assigns.items()))


def parse_pipeline(text: str) -> list[Pass]:
    """Parse ``"dce,dead-outputs{reads=logits[-1]},cse"`` into pass objects.

    Passes are separated by commas; options go in braces as ``key=value`` separated by
    commas. Brackets in values (``logits[0,3]``) are kept whole.
    """
    items: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth < 0:
                raise GraphError(f"unbalanced {ch!r} at column {i + 1} of pipeline {text!r}")
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise GraphError(f"unclosed brace or bracket in pipeline {text!r}")
    items.append(text[start:])
    passes: list[Pass] = []
    for item in (s.strip() for s in items):
        if not item:
            if text.strip():
                raise GraphError(f"empty pass name in pipeline {text!r}")
            continue
        name, _, rest = item.partition("{")
        options: dict[str, str] = {}
        if rest:
            if not rest.endswith("}"):
                raise GraphError(f"options of pass {name.strip()!r} must end with '}}'")
            body, depth, start = rest[:-1], 0, 0
            parts: list[str] = []
            for i, ch in enumerate(body):
                depth += ch in "[{"
                depth -= ch in "]}"
                if ch == "," and depth == 0:
                    parts.append(body[start:i])
                    start = i + 1
            parts.append(body[start:])
            for part in (p.strip() for p in parts):
                if not part:
                    continue
                key, eq, value = part.partition("=")
                if not eq:
                    raise GraphError(f"option {part!r} of pass {name.strip()!r} needs "
                                     f"key=value")
                options[key.strip()] = value.strip()
        passes.append(make_pass(name.strip(), options))
    return passes


@dataclass
class PassManager:
    """Runs passes in order and verifies the graph after each.

    ``pipeline``: text or pass objects. ``print_ir_before`` / ``print_ir_after``: pass
    names, or ``"all"``, whose IR is printed to ``out``. ``time_passes`` records
    ``timings`` (name, seconds). ``stop_after``: the name of the last pass to run. An
    exception in a pass, an invalid result, or (with ``verify_each``) a pass that changed
    its input graph raises :class:`PassError` naming the pass and its position.
    """

    pipeline: str | Sequence[Pass]
    verify_each: bool = True
    print_ir_before: Sequence[str] | str = ()
    print_ir_after: Sequence[str] | str = ()
    time_passes: bool = False
    stop_after: str | None = None
    out: TextIO = field(default_factory=lambda: sys.stderr)
    timings: list[tuple[str, float]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.passes: list[Pass] = (parse_pipeline(self.pipeline)
                                   if isinstance(self.pipeline, str) else list(self.pipeline))
        names = {p.name for p in self.passes}
        for wanted in ([self.stop_after] if self.stop_after else []) + [
                n for sel in (self.print_ir_before, self.print_ir_after)
                if sel != "all" for n in sel]:
            if wanted not in names:
                raise GraphError(f"pass {wanted!r} is not in the pipeline",
                                 fix="pipeline passes: " + ", ".join(p.name for p in self.passes))

    def _wants(self, sel: Sequence[str] | str, name: str) -> bool:
        return sel == "all" or name in sel

    def run(self, g: Graph) -> Graph:
        """Run the pipeline on ``g`` and return the result (``g`` is not changed)."""
        self.timings = []
        total = len(self.passes)
        for k, p in enumerate(self.passes, 1):
            if self._wants(self.print_ir_before, p.name):
                print(f"// ----- IR before {p.spec()} ({k} of {total})", file=self.out)
                print(to_text(g), end="", file=self.out)
            before = fingerprint(g) if self.verify_each else None
            t0 = time.perf_counter()
            try:
                with gc_paused():
                    result = p.run(g)
            except PassError:
                raise
            except GraphError as e:
                raise PassError(e.message, pass_name=p.name, position=k, total=total,
                                fix=e.fix, internal=False) from e
            except Exception as e:
                raise PassError(f"{type(e).__name__}: {e}", pass_name=p.name, position=k,
                                total=total) from e
            elapsed = time.perf_counter() - t0
            if not isinstance(result, Graph):
                raise PassError(f"returned {type(result).__name__}, not a Graph",
                                pass_name=p.name, position=k, total=total)
            if self.verify_each:
                try:
                    with gc_paused():
                        verify(result)
                except GraphError as e:
                    raise PassError(f"produced an invalid graph: {e.message}",
                                    pass_name=p.name, position=k, total=total,
                                    fix=e.ir_line and f"at {e.ir_line}") from e
            if before is not None and fingerprint(g) != before:
                raise PassError("changed its input graph (a pass returns a new graph and "
                                "leaves its input as it was)", pass_name=p.name, position=k,
                                total=total, fix="build the result with Rebuilder(g) or "
                                "g.clone() and change that")
            self.timings.append((p.name, elapsed))
            if self._wants(self.print_ir_after, p.name):
                print(f"// ----- IR after {p.spec()} ({k} of {total})", file=self.out)
                print(to_text(result), end="", file=self.out)
            g = result
            if self.stop_after == p.name:
                break
        if self.time_passes:
            print(self.timing_report(), file=self.out)
        return g

    def timing_report(self) -> str:
        """A table of the last run's pass times."""
        total = sum(s for _, s in self.timings) or 1e-12
        lines = ["// ----- pass timings", f"//   {'seconds':>9}  {'share':>6}  pass"]
        for name, s in self.timings:
            lines.append(f"//   {s:9.4f}  {100 * s / total:5.1f}%  {name}")
        lines.append(f"//   {total:9.4f}  100.0%  total")
        return "\n".join(lines)


OUTPUT_DRIVEN = "prune-rows,fold,cse,dce"
"""What the default pipeline runs after ``dead-outputs`` has recorded the call's reads."""


def pipeline_for(rd: Reads, pipeline: str) -> str:
    """The pipeline text ``compile`` runs for reads ``rd``: ``"none"`` runs nothing;
    ``"default"`` and any custom pipeline start with ``dead-outputs`` recording ``rd`` in
    the IR, so every pass after it sees what the caller reads."""
    if pipeline in ("none", ""):
        return ""
    text = rd.to_text()
    if parse_reads(text) != {n: "all" if s == "all" else list(s) for n, s in rd.rows.items()}:
        raise GraphError(f"the reads {dict(rd.rows)} cannot be written as pipeline text",
                         fix="give outputs names of letters, digits, '_' and '.'")
    head = f"dead-outputs{{reads={text}}}"
    return f"{head},{OUTPUT_DRIVEN if pipeline == 'default' else pipeline}"
