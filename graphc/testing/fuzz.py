"""``graphc fuzz``: generated graphs through the pipeline and every backend.

Each example draws a graph and what the caller reads, then checks:

1. the pipeline's result against the reference backend on every backend (mismatch);
2. every planner strategy's plan: proven safe, and the arena executor agrees (unsafe);
3. checker mutation testing: one injected fault, which must be caught (missed);

and counts anything raised along the way (crash). Hypothesis shrinks a failure, and the
smallest failing graph is written as a ``.gc`` file with the reads and the message.
Examples run in batches, so ``time_limit`` is honoured between batches.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FuzzReport:
    """Counts of one fuzzing run."""

    examples: int = 0
    mismatches: int = 0
    crashes: int = 0
    unsafe_plans: int = 0
    mutations: int = 0
    mutations_caught: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when anything went wrong."""
        return bool(self.mismatches or self.crashes or self.unsafe_plans
                    or self.mutations_caught < self.mutations)

    @property
    def catch_rate(self) -> float:
        """Injected faults caught over faults injected."""
        return self.mutations_caught / self.mutations if self.mutations else 1.0

    @property
    def per_second(self) -> float:
        """Examples per second."""
        return self.examples / self.seconds if self.seconds else 0.0


class _Failure(AssertionError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def check_example(g: Any, reads: dict[Any, object], seed: int, pipeline: str,
                  backends: Sequence[str], report: FuzzReport) -> None:
    """Run every check on one graph; raise _Failure on the first problem."""
    import graphc as gc
    from graphc.passes import PassManager, check_aliasing, optimize_for_reads, plan_memory
    from graphc.passes.memory import STRATEGIES
    from graphc.reads import normalize_reads
    from graphc.testing.data import random_feeds
    from graphc.testing.mutations import mutate_plan
    from graphc.testing.oracles import first_mismatch

    inputs, params, states = random_feeds(g, seed)
    _, rd = normalize_reads(g, reads)
    want = gc.compile(g, params=params, states=states).run(inputs)
    # 1. the pipeline on every backend
    if pipeline == "default":
        after, rd_after = optimize_for_reads(g, reads)
        after_reads: Any = dict(rd_after.rows)
    else:
        after = PassManager(pipeline).run(g)
        after_reads = {n: list(s) if s != "all" else "all" for n, s in rd.rows.items()}
    for backend in backends:
        try:
            exe = gc.compile(after, params=params, states=states, reads=after_reads,
                             backend=backend, pipeline="none")
        except gc.AliasError:
            if any(t.inplace for t in after.nodes):
                continue  # a forced inplace=True the checker rightly refused
            raise
        problem = first_mismatch(want, exe.run(inputs), rd.rows, 2e-5)
        if problem is not None:
            raise _Failure("mismatch", f"{backend} {problem} from the reference")
    # 2. every planner strategy
    forced = any(t.inplace for t in g.nodes)
    for strategy in STRATEGIES:
        plan = plan_memory(g, strategy=strategy)
        found = check_aliasing(g, plan)
        if found and not forced:
            raise _Failure("unsafe", f"{strategy} plan: {found[0]}")
        if not found:
            got = gc.compile(g, params=params, states=states, backend="arena", plan=plan
                             ).run(inputs)
            problem = first_mismatch(want, got, {n: "all" for n in want}, 1e-5)
            if problem is not None:
                raise _Failure("unsafe", f"{strategy} plan proven safe, but the arena "
                                         f"executor's {problem}")
        # 3. one injected fault
        mutant = mutate_plan(g, plan, None, seed)
        if mutant is not None and not found:
            report.mutations += 1
            kinds = {v.kind for v in check_aliasing(g, mutant.plan)}
            if not kinds & mutant.expect:
                raise _Failure("missed", f"{mutant.fault} not caught: {mutant.detail}")
            report.mutations_caught += 1


def run_fuzz(examples: int = 200, seed: int = 0, pipeline: str = "default",
             backends: Sequence[str] = ("reference", "arena", "jax"),
             time_limit: float | None = None, out_dir: str = "fuzz-failures",
             max_nodes: int = 10, on_example: Callable[[int], None] | None = None,
             batch: int = 25) -> FuzzReport:
    """Fuzz; return the report. A failure is shrunk and written under ``out_dir``."""
    from hypothesis import HealthCheck, Phase, given, note, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    from graphc.testing.strategies import graphs, reads_for
    from graphc.text import to_text

    report = FuzzReport()
    start = time.perf_counter()
    last: dict[str, Any] = {}

    def one(data: st.DataObject) -> None:
        g = data.draw(graphs(max_nodes=max_nodes, inplace=True, max_rank=3))
        reads = data.draw(reads_for(g))
        ex_seed = data.draw(st.integers(0, 2**16))
        last.update(graph=to_text(g), reads=reads, seed=ex_seed)
        note(to_text(g))
        try:
            check_example(g, reads, ex_seed, pipeline, backends, report)
        except _Failure as f:
            last["kind"], last["message"] = f.kind, str(f)
            raise
        except Exception as e:
            last["kind"] = "crash"
            last["message"] = "".join(traceback.format_exception_only(type(e), e)).strip()
            raise
        finally:
            report.examples += 1
            if on_example is not None:
                on_example(report.examples)

    b = 0
    while report.examples < examples:
        if time_limit is not None and time.perf_counter() - start > time_limit:
            break
        size = min(batch, examples - report.examples)
        test = settings(max_examples=size, deadline=None, database=None,
                        suppress_health_check=list(HealthCheck),
                        phases=[Phase.generate, Phase.shrink])(given(data=st.data())(one))
        try:
            hseed(seed * 1_000_003 + b)(test)()
        except Exception:
            kind = last.get("kind", "crash")
            if kind == "mismatch":
                report.mismatches += 1
            elif kind == "unsafe":
                report.unsafe_plans += 1
            elif kind == "missed":
                report.mutations += 1
            else:
                report.crashes += 1
            report.failures.append(last.get("message", "unknown failure"))
            report.files.append(_write_failure(out_dir, last, seed, b))
            break
        b += 1
    report.seconds = time.perf_counter() - start
    return report


def _write_failure(out_dir: str, last: dict[str, Any], seed: int, batch: int) -> str:
    from graphc.fileio import atomic_write_text

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = Path(out_dir) / f"failure-seed{seed}-batch{batch}.gc"
    reads = {getattr(k, "name", k): v for k, v in last.get("reads", {}).items()}
    header = (f"// graphc fuzz: {last.get('message', '')}\n"
              f"// reads: {reads}\n// data seed: {last.get('seed')}\n")
    atomic_write_text(path, header + last.get("graph", ""))
    return str(path)
