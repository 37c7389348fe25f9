"""Differential soundness: the static aliasing checker judged by the sanitizer.

For one (graph, plan) the static verdict is ``check_aliasing``; the dynamic verdict comes
from running the plan twice under the sanitizer (shadow memory checks every read) and
comparing every output and every state with the reference backend, and every tap (a
tensor ``reads`` names that is not an output) as the caller reads it once the run has
returned, after the state updates (``read_buffer``), with the reference's value of it. The
two share no liveness code, so they can disagree, and each disagreement is classified:

- ``safe``: both say safe and the values equal the reference;
- ``caught``: the static checker reports a violation and the run shows a stale read (or
  wrong values);
- ``missed``: the static checker says safe but the run shows a stale read or wrong
  values -- a soundness bug, never acceptable;
- ``conservative``: the static checker refuses a plan that ran correctly, and at least one
  reported kind is in :data:`graphc.passes.aliasing.CONSERVATIVE_KINDS` (a deliberate rule);
- ``false-alarm``: the static checker refuses a plan that ran correctly with only hazard
  kinds -- an unexplained false alarm, to be removed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

import graphc as gc
from graphc.backends.reference import evaluate
from graphc.backends.sanitizer import sanitize
from graphc.graph import Graph
from graphc.naming import label
from graphc.passes.aliasing import CONSERVATIVE_KINDS, Violation, check_aliasing
from graphc.passes.memory import STRATEGIES, MemoryPlan, plan_memory
from graphc.passes.schedule import schedule
from graphc.tensor import Tensor
from graphc.testing.data import random_feeds
from graphc.testing.mutations import MUTATIONS, mutate_plan
from graphc.testing.oracles import first_mismatch
from graphc.text import to_text

Outcome = Literal["safe", "caught", "missed", "conservative", "false-alarm"]
OUTCOMES: tuple[Outcome, ...] = ("safe", "caught", "missed", "conservative", "false-alarm")
TOLERANCE = 1e-5

Feeds = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]
Truth = list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]]


@dataclass(frozen=True)
class Judgement:
    """The static and the dynamic verdict on one plan."""

    static: list[Violation]
    dynamic: Violation | None
    mismatch: str | None  # the run had no stale read, but a value differs from the reference

    @property
    def unsafe_at_run(self) -> bool:
        """True when running the plan showed a stale read or a wrong value."""
        return self.dynamic is not None or self.mismatch is not None

    @property
    def outcome(self) -> Outcome:
        """How the two verdicts relate (see the module doc)."""
        if not self.static:
            return "missed" if self.unsafe_at_run else "safe"
        if self.unsafe_at_run:
            return "caught"
        if any(v.kind in CONSERVATIVE_KINDS for v in self.static):
            return "conservative"
        return "false-alarm"

    def describe(self) -> str:
        """One paragraph for a failure message."""
        static = "; ".join(str(v) for v in self.static) or "proven safe"
        dynamic = str(self.dynamic) if self.dynamic else (self.mismatch or "clean")
        return f"{self.outcome}: static: {static}\n  sanitizer: {dynamic}"


def reference_runs(g: Graph, feeds: Feeds, runs: int = 2, reads: Any = None) -> Truth:
    """(outputs, states) after each of ``runs`` runs of ``g`` on the reference backend;
    the outputs (and rows) ``reads`` reads, as :func:`graphc.compile` takes it (None: what
    the IR says)."""
    inputs, params, states = feeds
    exe = gc.compile(g, params=params, states=states, reads=reads)
    out: Truth = []
    for _ in range(runs):
        outputs = exe.run(inputs)
        out.append(({n: np.asarray(v) for n, v in outputs.items()},
                    {n: np.asarray(v).copy() for n, v in exe.state.items()}))
    return out


def reference_taps(g: Graph, feeds: Feeds, taps: Iterable[Tensor], runs: int = 2
                   ) -> list[dict[Tensor, np.ndarray]]:
    """The value of each tap (any tensor of ``g``) in each of ``runs`` runs on the
    reference backend: what the run computed, whatever the state updates do after it."""
    inputs, params, states = feeds
    taps = list(taps)
    exe = gc.compile(g, params=params, states=states)  # carries the states between runs
    out = []
    for _ in range(runs):
        env = evaluate(g, inputs, exe.params, exe.state)
        out.append({t: np.asarray(env[t]).copy() for t in taps})
        exe.run(inputs)
    return out


def _tap_mismatch(want: Mapping[Tensor, np.ndarray], got: Mapping[Tensor, np.ndarray]
                  ) -> str | None:
    """The first tap whose bytes after the run differ from the reference, described."""
    for t, expect in want.items():
        if not np.allclose(got[t], expect, rtol=TOLERANCE, atol=TOLERANCE, equal_nan=True):
            return (f"tap {label(t)} ({t.op}) read after the run is {got[t].ravel()[:4]}..., "
                    f"the reference computed {expect.ravel()[:4]}...")
    return None


def judge(g: Graph, plan: MemoryPlan, reads: Any = None, *, feeds: Feeds | None = None,
          truth: Truth | None = None, runs: int = 2, seed: int = 0) -> Judgement:
    """Judge ``plan`` statically and by ``runs`` sanitized runs on the same data (from
    ``seed`` unless ``feeds`` is given); ``truth``: the reference runs, if computed.
    The taps of ``reads`` are read after each run, as ``read_buffer`` shows them."""
    static = check_aliasing(g, plan, reads)
    feeds = feeds if feeds is not None else random_feeds(g, seed)
    inputs, params, states = feeds
    result = sanitize(g, plan, params, inputs, states=states, reads=reads, runs=runs)
    if result.violation is not None:
        return Judgement(static, result.violation, None)
    truth = truth if truth is not None else reference_runs(g, feeds, runs)
    for k, (want_out, want_state) in enumerate(truth):
        problem = (first_mismatch(want_out, result.outputs[k], {n: "all" for n in want_out},
                                  TOLERANCE)
                   or first_mismatch(want_state, result.states[k],
                                     {n: "all" for n in want_state}, TOLERANCE))
        if problem is not None:
            return Judgement(static, None, f"run {k + 1}: {problem}")
    if result.taps and result.taps[0]:
        want_taps = reference_taps(g, feeds, result.taps[0], runs)
        for k, (want, got) in enumerate(zip(want_taps, result.taps, strict=True)):
            problem = _tap_mismatch(want, got)
            if problem is not None:
                return Judgement(static, None, f"run {k + 1}: {problem}")
    return Judgement(static, None, None)


def plans_of(g: Graph, reads: Any = None) -> list[tuple[str, MemoryPlan]]:
    """Every planner strategy, with and without planner-chosen in-place writes, over the
    input order and the memory schedule, each told ``reads`` (taps included): (label,
    plan) pairs."""
    out = []
    for order_name in ("input", "memory"):
        order = schedule(g, order_name, reads=reads)
        for strategy in STRATEGIES:
            for inplace in (True, False):
                out.append((f"{strategy}/{order_name}/{'inplace' if inplace else 'copy'}",
                            plan_memory(g, order=order, reads=reads, strategy=strategy,
                                        inplace=inplace)))
    return out


@dataclass
class Tally:
    """Outcomes per mutation (``"none"``: the planner's own plans), and the first few
    disagreements for a report."""

    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    conservative_kinds: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, mutation: str, j: Judgement, context: str) -> None:
        """Count one judgement; keep the text of a missed plan or a false alarm."""
        self.counts[mutation][j.outcome] += 1
        if j.outcome == "conservative":
            self.conservative_kinds.update({v.kind for v in j.static} & CONSERVATIVE_KINDS)
        if j.outcome in ("missed", "false-alarm") and len(self.failures) < 20:
            self.failures.append(f"[{mutation}] {context}\n  {j.describe()}")

    @property
    def total(self) -> int:
        """Triples judged."""
        return sum(sum(c.values()) for c in self.counts.values())

    def outcome_total(self, outcome: Outcome) -> int:
        """How many triples had ``outcome``."""
        return sum(c[outcome] for c in self.counts.values())


def differential(g: Graph, tally: Tally, seed: int = 0, mutations: Iterable[str] | None = None,
                 reads: Mapping[Any, object] | None = None) -> None:
    """Judge every planner's plan of ``g`` for ``reads`` (taps included) and, for each
    plan judged safe, one mutant per mutation kind, counting the outcomes in ``tally``."""
    feeds = random_feeds(g, seed)
    truth = reference_runs(g, feeds)
    names = list(mutations) if mutations is not None else sorted(MUTATIONS)
    for k, (name, plan) in enumerate(plans_of(g, reads)):
        context = f"{name} plan of\n{to_text(g)}"
        base = judge(g, plan, reads, feeds=feeds, truth=truth)
        tally.add("none", base, context)
        if base.outcome != "safe":
            continue  # mutate only plans known good, so each mutant's verdict is its own
        for name in names:
            mutant = mutate_plan(g, plan, name, seed * 7919 + k)
            if mutant is not None:
                tally.add(name, judge(g, mutant.plan, reads, feeds=feeds, truth=truth),
                          f"{mutant.detail}; {context}")


__all__ = ["OUTCOMES", "Judgement", "Tally", "differential", "judge", "plans_of",
           "reference_runs", "reference_taps"]
