"""``graphc fuzz``: generated graphs through the pipeline and every backend.

Each example draws a graph (states, swaps and in-place cache updates included) and what
the caller reads, then checks:

1. the pipeline's result against the reference backend on every backend, outputs and
   states over two runs (mismatch);
2. every planner strategy's plan, judged twice: by the static checker and by the
   sanitizer running it (a plan the planner made but the checker refuses is ``unsafe``;
   a plan proven safe that the sanitizer catches is ``missed``; a refusal the sanitizer
   cannot confirm and no conservative rule explains is ``false-alarm``);
3. one random mutation of a plan, chosen without any liveness: when the sanitizer shows
   it unsafe, the static checker must have refused it (``missed`` otherwise);

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

import numpy as np
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import seed as hseed
from hypothesis import strategies as st

import graphc as gc
from graphc.fileio import atomic_write_text
from graphc.passes.memory import STRATEGIES, plan_memory
from graphc.reads import normalize_reads
from graphc.testing.data import random_feeds
from graphc.testing.mutations import MUTATIONS, mutate_plan
from graphc.testing.oracles import TOLERANCE, first_mismatch
from graphc.testing.soundness import judge, reference_runs
from graphc.testing.strategies import ALL_FAMILIES, graphs, reads_for
from graphc.text import to_text


@dataclass
class FuzzReport:
    """Counts of one fuzzing run."""

    examples: int = 0
    mismatches: int = 0
    crashes: int = 0
    unsafe_plans: int = 0
    missed: int = 0
    false_alarms: int = 0
    mutations: int = 0  # mutants the sanitizer showed unsafe
    mutations_caught: int = 0  # ... that the static checker refused
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when anything went wrong."""
        return bool(self.mismatches or self.crashes or self.unsafe_plans or self.missed
                    or self.false_alarms or self.mutations_caught < self.mutations)

    @property
    def catch_rate(self) -> float:
        """Unsafe mutants (by the sanitizer) that the static checker caught."""
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
                  backends: Sequence[str], report: FuzzReport, runs: int = 2) -> None:
    """Run every check on one graph; raise _Failure on the first problem."""
    feeds = random_feeds(g, seed)
    inputs, params, states = feeds
    _, rd = normalize_reads(g, reads)
    truth = reference_runs(g, feeds, runs)
    forced = any(t.inplace for t in g.nodes)
    # 1. the pipeline on every backend, two runs, outputs and states
    for backend in backends:
        try:
            exe = gc.compile(g, params=params, states=states, reads=reads, backend=backend,
                             pipeline=pipeline)
        except gc.AliasError:
            if forced:
                continue  # a forced inplace=True the checker rightly refused
            raise
        tol = TOLERANCE.get(backend, 1e-5)
        for k, (want, want_state) in enumerate(truth):
            problem = first_mismatch(want, exe.run(inputs), rd.rows, tol) or first_mismatch(
                want_state, {n: np.asarray(v) for n, v in exe.state.items()},
                {n: "all" for n in want_state}, tol)
            if problem is not None:
                raise _Failure("mismatch", f"{backend} run {k + 1}: {problem} from the "
                                           f"reference")
    # 2. every planner strategy, judged statically and by the sanitizer
    rng = np.random.default_rng(seed)
    for strategy in STRATEGIES:
        plan = plan_memory(g, strategy=strategy)
        j = judge(g, plan, feeds=feeds, truth=truth, runs=runs)
        if j.outcome == "missed":
            raise _Failure("missed", f"{strategy} plan: {j.describe()}")
        if j.outcome == "false-alarm":
            raise _Failure("false-alarm", f"{strategy} plan: {j.describe()}")
        if j.static and not forced:
            raise _Failure("unsafe", f"{strategy} made an unsafe plan: {j.static[0]}")
        # 3. one random mutation, judged by the sanitizer
        names = sorted(MUTATIONS)
        mutant = mutate_plan(g, plan, names[int(rng.integers(len(names)))],
                             int(rng.integers(2**31)))
        if mutant is None:
            continue
        mj = judge(g, mutant.plan, feeds=feeds, truth=truth, runs=runs)
        if mj.outcome == "false-alarm":
            raise _Failure("false-alarm", f"{mutant.fault} ({mutant.detail}): "
                                          f"{mj.describe()}")
        if mj.unsafe_at_run:
            report.mutations += 1
            if mj.outcome == "missed":
                raise _Failure("missed", f"{mutant.fault} not caught ({mutant.detail}): "
                                         f"{mj.describe()}")
            report.mutations_caught += 1


def run_fuzz(examples: int = 200, seed: int = 0, pipeline: str = "default",
             backends: Sequence[str] = ("reference", "arena", "jax"),
             time_limit: float | None = None, out_dir: str = "fuzz-failures",
             max_nodes: int = 10, on_example: Callable[[int], None] | None = None,
             batch: int = 25) -> FuzzReport:
    """Fuzz; return the report. A failure is shrunk and written under ``out_dir``."""
    report = FuzzReport()
    start = time.perf_counter()
    last: dict[str, Any] = {}

    def one(data: st.DataObject) -> None:
        g = data.draw(graphs(max_nodes=max_nodes, inplace=True, max_rank=3, states=True,
                             families=ALL_FAMILIES))
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
                report.missed += 1
            elif kind == "false-alarm":
                report.false_alarms += 1
            else:
                report.crashes += 1
            report.failures.append(last.get("message", "unknown failure"))
            report.files.append(_write_failure(out_dir, last, seed, b))
            break
        b += 1
    report.seconds = time.perf_counter() - start
    return report


def _write_failure(out_dir: str, last: dict[str, Any], seed: int, batch: int) -> str:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    path = Path(out_dir) / f"failure-seed{seed}-batch{batch}.gc"
    reads = {getattr(k, "name", k): v for k, v in last.get("reads", {}).items()}
    header = (f"// graphc fuzz: {last.get('message', '')}\n"
              f"// reads: {reads}\n// data seed: {last.get('seed')}\n")
    atomic_write_text(path, header + last.get("graph", ""))
    return str(path)
