"""``graphc fuzz``: generated graphs through the pipeline and every backend.

Each example draws a graph (states, swaps, in-place cache updates and outputs that record
rows included), what the caller reads, and its data (uniform floats, or domain values:
zeros, signs, tiny magnitudes and ties), then checks:

1. the pipeline's result against the reference backend on every backend, outputs and
   states over two runs (mismatch); the pipeline must leave the graph it is given as it
   was (mutated-input);
2. every planner strategy's plan, judged twice: by the static checker and by the
   sanitizer running it (a plan the planner made but the checker refuses is ``unsafe``;
   a plan proven safe that the sanitizer catches is ``missed``; a refusal the sanitizer
   cannot confirm and no conservative rule explains is ``false-alarm``);
3. one random mutation of a plan, chosen without any liveness: when the sanitizer shows
   it unsafe, the static checker must have refused it (``missed`` otherwise);

and counts anything raised along the way (crash).

Generation: with a pipeline of your passes, half the examples are *aimed* at the ops the
passes' rewrite patterns are registered on (and at ``ops`` / the ops of ``families``;
see :func:`graphc.testing.strategies.graphs`); the other half are broad, each drawing
from a random subset of the families (swarm testing). Coverage: each example runs the
pipeline once more on its own, counting the examples it changed and how often each
pattern fired; a run in which it changed fewer than ``min_changed`` of the examples is
reported (:attr:`FuzzReport.coverage_problem`).

Hypothesis shrinks a failure; the smallest failing graph is written to a ``.gc`` file
named by the pipeline, the seed and a hash of its content, with the case (pipeline,
seed, backends, reads, data) in a comment that :func:`replay` reruns. Examples run in
batches, so ``time_limit`` is honoured between batches; shrink steps are counted apart.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import traceback
from collections import Counter
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
from graphc.graph import Graph
from graphc.ops import OP_TABLE
from graphc.passes import PassError, PassManager
from graphc.passes.manager import fingerprint
from graphc.passes.memory import STRATEGIES, plan_memory
from graphc.passes.rewrite import observe_patterns
from graphc.reads import normalize_reads
from graphc.testing.data import FEEDS
from graphc.testing.mutations import MUTATIONS, mutate_plan
from graphc.testing.oracles import TOLERANCE, first_mismatch, pipeline_ops
from graphc.testing.soundness import judge, reference_runs
from graphc.testing.strategies import ALL_FAMILIES, family_ops, graphs, reads_for
from graphc.text import to_text

MIN_CHANGED = 0.05
"""The share of examples a pipeline under test must change (below it, the run says so)."""

BUILTIN = ("default", "none")
"""Pipelines that are graphc's own (no coverage is asked of them)."""


@dataclass
class FuzzReport:
    """Counts of one fuzzing run. ``examples`` are generated examples only; the steps
    Hypothesis took to shrink a failure are ``shrink_steps``."""

    examples: int = 0
    shrink_steps: int = 0
    aimed: int = 0  # examples aimed at the pipeline's ops
    changed: int = 0  # examples the pipeline (after dead-outputs) changed
    fired: Counter[str] = field(default_factory=Counter)  # pattern -> rewrites
    aim_ops: list[str] = field(default_factory=list)
    mismatches: int = 0
    crashes: int = 0
    mutated_inputs: int = 0
    unsafe_plans: int = 0
    missed: int = 0
    false_alarms: int = 0
    mutations: int = 0  # mutants the sanitizer showed unsafe
    mutations_caught: int = 0  # ... that the static checker refused
    seconds: float = 0.0
    first_failure_examples: int | None = None  # examples run when the first one failed
    first_failure_seconds: float | None = None
    coverage_problem: str | None = None
    failures: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    graphs: list[str] = field(default_factory=list)  # the shrunk graphs, as text

    @property
    def failed(self) -> bool:
        """True when anything went wrong (a coverage problem is reported apart)."""
        return bool(self.mismatches or self.crashes or self.mutated_inputs
                    or self.unsafe_plans or self.missed or self.false_alarms
                    or self.mutations_caught < self.mutations)

    @property
    def catch_rate(self) -> float:
        """Unsafe mutants (by the sanitizer) that the static checker caught."""
        return self.mutations_caught / self.mutations if self.mutations else 1.0

    @property
    def per_second(self) -> float:
        """Examples per second."""
        return self.examples / self.seconds if self.seconds else 0.0

    def merge(self, other: FuzzReport) -> None:
        """Add the per-example counts of ``other`` (one example's scratch report)."""
        self.changed += other.changed
        self.fired.update(other.fired)
        self.mutations += other.mutations
        self.mutations_caught += other.mutations_caught


class _Failure(AssertionError):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def _coverage(g: Graph, reads: dict[Any, object], pipeline: str, report: FuzzReport) -> None:
    """Run the pipeline alone after ``dead-outputs`` (as compile does) and count whether it
    changed the graph and which patterns fired; a pass that changed its input fails."""
    _, rd = normalize_reads(g, reads)
    head = PassManager(f"dead-outputs{{reads={rd.to_text()}}}").run(g)
    before = to_text(head)
    try:
        with observe_patterns() as fired:
            after = PassManager(pipeline).run(head)
    except PassError as e:
        if "changed its input graph" in str(e):
            raise _Failure("mutated-input", str(e)) from e
        raise
    report.fired.update(fired)
    report.changed += to_text(after) != before


def check_example(g: Graph, reads: dict[Any, object], seed: int, pipeline: str,
                  backends: Sequence[str], report: FuzzReport, runs: int = 2,
                  data: str = "uniform") -> None:
    """Run every check on one graph; raise _Failure on the first problem."""
    feeds = FEEDS[data](g, seed)
    inputs, params, states = feeds
    stamp = fingerprint(g)
    _, rd = normalize_reads(g, reads)
    read_rows = {n: "all" if s == "all" else list(s) for n, s in rd.rows.items()}
    if pipeline not in BUILTIN:
        _coverage(g, reads, pipeline, report)
    want_runs = reference_runs(g, feeds, runs, reads=read_rows)
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
        for k, (want, want_state) in enumerate(want_runs):
            problem = first_mismatch(want, exe.run(inputs), {n: "all" for n in want}, tol) \
                or first_mismatch(want_state, {n: np.asarray(v) for n, v in exe.state.items()},
                                  {n: "all" for n in want_state}, tol)
            if problem is not None:
                raise _Failure("mismatch", f"{backend} run {k + 1}: {problem} from the "
                                           f"reference ({data} data)")
    if fingerprint(g) != stamp:
        raise _Failure("mutated-input", f"compiling with pipeline {pipeline!r} changed the "
                                        "graph it was given")
    # 2. every planner strategy, judged statically and by the sanitizer
    truth = reference_runs(g, feeds, runs, reads={n: "all" for n in g.outputs})
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


def aim_for(pipeline: str, ops: Sequence[str] = (), families: Sequence[str] = (),
            aim: bool = True) -> list[str]:
    """The ops generation is aimed at: ``ops``, the ops of ``families``, and (with
    ``aim``) the ops the pipeline's rewrite patterns are registered on -- or, for a
    pipeline without patterns, the ops it is seen to change (:func:`probe_ops`)."""
    out = list(dict.fromkeys(ops))
    for f in families:
        out += [o for o in family_ops(f) if o not in out]
    if aim and pipeline not in BUILTIN:
        found = pipeline_ops(pipeline) or probe_ops(pipeline)
        out += [o for o in found if o not in out]
    return out


def _structure_keys(g: Graph) -> dict[Any, Any]:
    """A structural key for every node: op, attributes, type and the inputs' keys; leaves
    by name."""
    keys: dict[Any, Any] = {}
    for t in g.nodes:
        keys[t] = (t.op, t.name) if t.is_leaf else (
            t.op, repr(sorted(t.attrs.items())), t.shape, t.dtype,
            tuple(keys[i] for i in t.inputs))
    return keys


def probe_ops(pipeline: str, examples: int = 400, seed: int = 0, max_nodes: int = 10
              ) -> list[str]:
    """The ops a pipeline is seen to rewrite, most often first: it runs (after
    ``dead-outputs``, as compile does) on ``examples`` broad generated graphs with rows
    read, and every node of its input that the result no longer has, by structure, while
    it still has all of that node's inputs, counts for the node's op (the frontier of the
    rewrite, not what merely sits downstream of it). Observed from the pass itself, for
    passes with no rewrite patterns to read (``prune-rows``, a hand-written ``run``);
    errors while probing count nothing."""
    seen: Counter[str] = Counter()

    def one(data: st.DataObject) -> None:
        g = data.draw(graphs(max_nodes=max_nodes, max_rank=3, families=ALL_FAMILIES,
                             rows=True))
        reads = data.draw(reads_for(g))
        try:
            _, rd = normalize_reads(g, reads)
            head = PassManager(f"dead-outputs{{reads={rd.to_text()}}}").run(g)
            after = PassManager(pipeline).run(head)
        except Exception:
            return
        before = _structure_keys(head)
        kept = set(_structure_keys(after).values())
        seen.update(t.op for t in head.nodes if not t.is_leaf and before[t] not in kept
                    and all(i.is_leaf or before[i] in kept for i in t.inputs))

    test = settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.generate])(given(data=st.data())(one))
    hseed(seed)(test)()
    return [op for op, _ in seen.most_common() if op in OP_TABLE
            and OP_TABLE[op].family in ALL_FAMILIES]


_KINDS = {"mismatch": "mismatches", "unsafe": "unsafe_plans", "missed": "missed",
          "false-alarm": "false_alarms", "mutated-input": "mutated_inputs"}


def run_fuzz(examples: int = 200, seed: int = 0, pipeline: str = "default",
             backends: Sequence[str] = ("reference", "arena", "jax"),
             time_limit: float | None = None, out_dir: str = "fuzz-failures",
             max_nodes: int = 10, on_example: Callable[[int], None] | None = None,
             batch: int = 25, *, ops: Sequence[str] = (), families: Sequence[str] = (),
             aim: bool = True, min_changed: float = MIN_CHANGED,
             load: Sequence[str] = ()) -> FuzzReport:
    """Fuzz; return the report. A failure is shrunk and written under ``out_dir``.

    ``ops`` / ``families`` aim generation (and ``families`` limits the broad half);
    ``aim=False`` leaves out the ops found in the pipeline's patterns. ``load`` (the
    modules that registered the passes) is recorded in failure files for the replay.
    """
    report = FuzzReport()
    report.aim_ops = aim_for(pipeline, ops, families, aim)
    broad = tuple(families) or ALL_FAMILIES
    start = time.perf_counter()
    last: dict[str, Any] = {}
    state = {"failing": False}

    def one(data: st.DataObject) -> None:
        aimed = bool(report.aim_ops) and data.draw(st.booleans())
        if aimed:
            g = data.draw(graphs(max_nodes=max_nodes, inplace=True, max_rank=3, states=True,
                                 families=broad, ops=report.aim_ops, rows=True, twins=True))
        else:  # swarm: each example draws from its own subset of the families
            fams = [f for f in broad if data.draw(st.booleans())] or [
                data.draw(st.sampled_from(broad))]
            g = data.draw(graphs(max_nodes=max_nodes, inplace=True, max_rank=3, states=True,
                                 families=fams, rows=True, twins=True))
        reads = data.draw(reads_for(g))
        kind = data.draw(st.sampled_from(sorted(FEEDS)))
        ex_seed = data.draw(st.integers(0, 2**16))
        note(to_text(g))
        shrinking = state["failing"]
        scratch = FuzzReport()
        try:
            check_example(g, reads, ex_seed, pipeline, backends, scratch, data=kind)
        except Exception as e:
            if isinstance(e, _Failure):
                k, msg = e.kind, str(e)
            else:
                k = "crash"
                msg = "crash: " + "".join(traceback.format_exception_only(type(e), e)).strip()
            last.update(graph=to_text(g), reads=reads, seed=ex_seed, data=kind, kind=k,
                        message=msg)
            if not shrinking:
                state["failing"] = True
                report.first_failure_examples = report.examples + 1
                report.first_failure_seconds = time.perf_counter() - start
            raise
        finally:
            if shrinking:
                report.shrink_steps += 1
            else:
                report.examples += 1
                report.aimed += aimed
                report.merge(scratch)
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
            attr = _KINDS.get(kind, "crashes")
            setattr(report, attr, getattr(report, attr) + 1)
            report.failures.append(last.get("message", "unknown failure"))
            report.graphs.append(last.get("graph", ""))
            report.files.append(write_failure(out_dir, last, pipeline, seed, backends, load))
            break
        b += 1
    report.seconds = time.perf_counter() - start
    if pipeline not in BUILTIN and not report.failed and report.examples:
        share = report.changed / report.examples
        if share < min_changed:
            never = "never changed an example" if not report.changed else \
                f"changed only {report.changed} of {report.examples} examples " \
                f"({100 * share:.1f}%, under {100 * min_changed:.0f}%)"
            aimed = ", ".join(report.aim_ops) or "nothing"
            report.coverage_problem = (
                f"the pipeline {pipeline!r} {never}, so this run says little about it "
                f"(aimed at: {aimed}). Aim generation at the ops it rewrites with "
                "--ops OP,OP or --families FAMILY (graphc fuzz --help lists them), raise "
                "--max-nodes, or check that its patterns match graphs graphc generates; "
                "--min-changed 0 accepts the run.")
    return report


def _slug(pipeline: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", pipeline).strip("-")[:48] or "pipeline"


CASE = "// case: "
"""The comment line of a failure file that records the case as JSON."""


def write_failure(out_dir: str, last: dict[str, Any], pipeline: str, seed: int,
                  backends: Sequence[str], load: Sequence[str] = ()) -> str:
    """Write the failing example as ``<pipeline>-seed<S>-<hash>.gc`` under ``out_dir``
    (the hash is of the content, so no failure overwrites another) and return the path."""
    reads = {getattr(k, "name", k): v for k, v in last.get("reads", {}).items()}
    case = {"pipeline": pipeline, "seed": seed, "backends": list(backends), "reads": reads,
            "data": last.get("data", "uniform"), "data_seed": last.get("seed", 0),
            "kind": last.get("kind", "crash"), "load": list(load)}
    message = str(last.get("message", "")).replace("\n", "\n//   ")
    graph = str(last.get("graph", ""))
    body = (f"// graphc fuzz: {message}\n{CASE}{json.dumps(case, sort_keys=True)}\n")
    digest = hashlib.sha256((body + graph).encode()).hexdigest()[:10]
    path = Path(out_dir) / f"{_slug(pipeline)}-seed{seed}-{digest}.gc"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, body + f"// replay: graphc fuzz --replay {path}\n" + graph)
    return str(path)


def read_case(path: str) -> tuple[Graph, dict[str, Any]]:
    """The graph and the case (pipeline, seed, backends, reads, data, data_seed, load)
    recorded in a failure file (GraphError when the file has no case line)."""
    text = Path(path).read_text()
    line = next((ln for ln in text.splitlines() if ln.startswith(CASE)), None)
    if line is None:
        raise gc.GraphError(f"{path}: no '{CASE.strip()}' line: not a graphc fuzz failure file")
    return gc.parse_text(text, path), json.loads(line[len(CASE):])


def replay(path: str, backends: Sequence[str] | None = None) -> str | None:
    """Rerun the case a failure file records (its graph, reads, data and pipeline, on its
    backends unless ``backends`` is given); the failure message, or None when it passes.
    The passes the pipeline names must be registered (``case["load"]`` lists modules)."""
    g, case = read_case(path)
    try:
        check_example(g, case["reads"], int(case["data_seed"]), case["pipeline"],
                      list(backends or case["backends"]), FuzzReport(),
                      data=case.get("data", "uniform"))
    except _Failure as f:
        return str(f)
    except Exception as e:
        return "crash: " + "".join(traceback.format_exception_only(type(e), e)).strip()
    return None
