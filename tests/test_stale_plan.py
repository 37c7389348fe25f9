"""llama.cpp issue #28448 on ggml's real allocator: a regression suite.

Each pair runs A then B on one allocator (a bare gallocr, and llama.cpp's path through
``ggml_backend_sched``). Whether B is corrupted is judged without graphc (NumPy and B on a
fresh gallocr); graphc's static verdict must refuse every corrupted B and find no hazard in
any correct one, A or fresh B; through the scheduler the dynamic check must see every
corruption at run time.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from graphc.errors import GraphError
from graphc.interop.stale_plan import (
    PAIRS,
    GraphSpec,
    Leaf,
    Node,
    PairRun,
    PairSpec,
    Via,
    fits,
    random_pair,
    restructured,
    run_pair,
)

VIAS: tuple[Via, ...] = ("gallocr", "sched")
SEEDS = range(30)
CORRUPTING = [n for n, p in PAIRS.items() if p.corrupts]
HARMLESS = [n for n, p in PAIRS.items() if not p.corrupts]
CAUSE = {  # the tensor overwritten while still read, and the node that overwrites it
    "chain-to-fan": ("n0", "n1"),
    "interleaved-matmuls": ("p1", "p2"),
    "router-other-expert": ("e1", "g"),
    "top2-gated-early": ("x", "g1"),
}


@functools.cache
def _run(name: str, via: Via) -> PairRun:
    return run_pair(name, via)


@functools.cache
def _random(seed: int, via: Via) -> PairRun:
    return run_pair(random_pair(seed), via, seed)


def test_the_seven_pairs_of_the_issue() -> None:
    assert len(PAIRS) == 7 and len(CORRUPTING) == 4 and set(CAUSE) == set(CORRUPTING)
    for p in PAIRS.values():
        assert p.doc and "\n" not in p.doc
        assert fits(p.a, p.b)  # ggml reuses A's plan for B
    # only the two harmless pairs of the same structure are not stale plans by structure
    assert {n for n, p in PAIRS.items() if not p.restructured} == {"other-experts",
                                                                  "fewer-tokens"}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("name", list(PAIRS))
def test_b_is_corrupted_exactly_where_the_issue_says(name: str, via: Via) -> None:
    """Judged without graphc: B's outputs against NumPy and against B on a fresh gallocr."""
    r = _run(name, via)
    assert r.plan_reused  # every node of B lies where A's node at its position lay
    assert r.corrupted == PAIRS[name].corrupts
    if r.corrupted:
        assert r.max_error > 0.5
    else:
        assert r.max_error < 1e-5


@pytest.mark.parametrize("name", list(PAIRS))
def test_the_scheduler_places_b_as_the_bare_gallocr_does(name: str) -> None:
    """llama.cpp's path gives the same offsets and the same wrong numbers."""
    g, s = _run(name, "gallocr"), _run(name, "sched")
    assert [g.capture.tensors[k].offset for k in g.capture.order] == \
        [s.capture.tensors[k].offset for k in s.capture.order]
    assert g.max_error == s.max_error


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("name", list(PAIRS))
def test_graphc_refuses_every_corrupted_b_and_no_correct_graph(name: str, via: Via) -> None:
    r = _run(name, via)
    assert r.verdict_a.safe, r.verdict_a.violations  # A, planned for itself
    assert r.verdict_fresh.safe, r.verdict_fresh.violations  # B on a fresh gallocr
    if r.corrupted:
        assert not r.verdict.safe and r.hazards, r.verdict.violations
        victim, writer = CAUSE[name]
        first = r.verdict.violations[0]  # the cause comes first
        assert first.split(": ")[1].startswith(f"{victim} (")
        assert f"overwritten by {writer} (" in first
    else:
        # no hazard; at most the stale-plan finding, which is true of a restructured B
        assert not r.hazards and set(r.kinds) <= {"stale-plan"}, r.verdict.violations
        assert r.verdict.safe == (not r.stale_flagged)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("name", list(PAIRS))
def test_a_plan_made_for_another_structure_is_reported_as_stale(name: str, via: Via) -> None:
    """Issue 26 item 2: ``stale-plan`` on every B whose nodes or sources differ from A's
    position by position, also where B happens to be correct (swapped-matmuls); never where
    only sizes shrank (fewer-tokens) or the structure is the same (other-experts)."""
    r = _run(name, via)
    assert r.stale_flagged == PAIRS[name].restructured, r.verdict.violations


@pytest.mark.parametrize("name", list(PAIRS))
def test_the_dynamic_check_sees_every_corruption_at_run_time(name: str) -> None:
    r = _run(name, "sched")
    assert r.findings_a == []  # A runs clean
    assert bool(r.findings) == r.corrupted, [f.detail for f in r.findings or []]


def test_the_dynamic_check_sees_a_matmul_written_over_its_own_operand() -> None:
    """The damage happens inside the node, so no later read sees it: the in-node check
    (the node's placement against its operands, and its recomputation from the operands'
    bytes as they were before it ran) must report it, naming both tensors."""
    r = _run("interleaved-matmuls", "sched")
    assert r.findings
    assert any("p2 (MUL_MAT" in f.detail and "p1 (MUL_MAT" in f.detail for f in r.findings)


def test_a_b_that_does_not_fit_is_planned_afresh() -> None:
    """More tokens than A made room for: ggml re-plans, B is correct, and graphc says
    proven safe with no stale-plan (the allocator's record is B's own plan)."""
    small = PAIRS["fewer-tokens"]
    spec = PairSpec("more-tokens", "B on more tokens than A", small.b, small.a, False, False)
    assert not fits(spec.a, spec.b)
    for via in VIAS:
        r = run_pair(spec, via)
        assert not r.plan_reused and not r.corrupted
        assert r.verdict.safe and r.kinds == [], r.verdict.violations


def test_fits_is_ggmls_rule() -> None:
    x, y, w = Leaf("x", 4, 2), Leaf("y", 4, 2), Leaf("w", 4, 4, weight=True)
    leaves = (x, y, w)

    def g(*nodes: tuple[str, str, tuple[str, ...]]) -> GraphSpec:
        return GraphSpec(leaves, tuple(Node(*n) for n in nodes), (nodes[-1][0],))

    unary = g(("a", "silu", ("x",)), ("b", "add", ("a", "y")))
    binary = g(("a", "add", ("x", "y")), ("b", "add", ("a", "y")))
    matmul = g(("a", "mul_mat", ("w", "x")), ("b", "add", ("a", "y")))
    assert not fits(unary, binary)  # a source slot A's plan has no room for
    assert fits(binary, unary) and restructured(binary, unary)
    assert fits(binary, matmul)  # a weight is not placed by the allocator
    assert not fits(matmul, binary)  # A's slot 0 held a weight: nothing planned there
    assert not restructured(binary, binary)


@functools.cache
def _random_runs() -> dict[Via, list[PairRun]]:
    return {via: [_random(s, via) for s in SEEDS] for via in VIAS}


@pytest.mark.parametrize("via", VIAS)
def test_random_pairs_no_miss_and_every_alarm_real(via: Via) -> None:
    """Drawn pairs: graphc never proves a corrupted B safe. A hazard found on a correct B
    (a false alarm) must be a real latent one: the same placement run node by node through
    the scheduler corrupts B. (On the bare gallocr ggml's CPU backend fuses RMS_NORM with
    the MUL after it and never writes the norm, so a norm placed over a tensor still read
    does no harm there; run node by node, as an eval callback makes the scheduler do, or on
    another backend, it does.)"""
    runs = _random_runs()[via]
    corrupted = [r for r in runs if r.corrupted]
    assert 0 < len(corrupted) < len(runs)  # the generator draws both kinds
    misses = [r.name for r in corrupted if r.verdict.safe or not r.hazards]
    assert misses == []
    for r in runs:
        assert r.plan_reused and r.verdict_a.safe and r.verdict_fresh.safe, r.name
    alarms = [k for k, r in zip(SEEDS, runs, strict=True) if not r.corrupted and r.hazards]
    if via == "sched":
        assert alarms == []
    for seed in alarms:
        assert _random(seed, "sched").corrupted, f"seed {seed}: a false alarm"
    for r in runs:  # a correct B with no hazard is at most a stale plan, by structure
        if not r.corrupted and not r.hazards:
            assert set(r.kinds) <= {"stale-plan"}
            assert r.stale_flagged


def test_random_pairs_the_dynamic_check_agrees() -> None:
    for r in _random_runs()["sched"]:
        assert r.findings_a == [], r.name
        assert bool(r.findings) == r.corrupted, (r.name, [f.detail for f in r.findings or []])


def test_random_pair_is_deterministic_and_fits() -> None:
    for seed in range(5):
        p = random_pair(seed)
        assert p == random_pair(seed) and fits(p.a, p.b) and p.a.nodes != p.b.nodes
        assert len(p.a.nodes) == len(p.b.nodes) and p.a.leaves == p.b.leaves


def test_an_unknown_way_is_refused() -> None:
    with pytest.raises(GraphError, match="via must be"):
        run_pair("chain-to-fan", "cuda")  # type: ignore[arg-type]


def test_the_benchmark_prints_the_table() -> None:
    bench = Path(__file__).parent.parent / "benchmarks" / "bench_stale_plan.py"
    proc = subprocess.run([sys.executable, str(bench), "--quick", "--json"],
                          capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(proc.stdout)
    assert [(r["pair"], r["via"]) for r in data["pairs"]] == [
        (n, v) for n in PAIRS for v in VIAS]
    assert all(s["misses"] == [] for s in data["random"])


def _spec(name: str, a: list[tuple[str, str, tuple[str, ...]]], b: list[tuple[str, str,
          tuple[str, ...]]], b_outputs: tuple[str, ...], leaves: tuple[str, ...]) -> PairSpec:
    acts = tuple(Leaf(n, 16, 8) for n in leaves)
    ga = GraphSpec(acts, tuple(Node(*n) for n in a), (a[-1][0],))
    gb = GraphSpec(acts, tuple(Node(*n) for n in b), b_outputs)
    assert fits(ga, gb)
    return PairSpec(name, name, ga, gb, None, restructured(ga, gb))


REVIEW_PAIRS = [  # found by review: restructured B's whose sources lie where A's plan had them
    _spec("same-offset-source",
          [("n0", "scale", ("x",)), ("n1", "scale", ("n0",)), ("n2", "add", ("n1", "x"))],
          [("n0", "scale", ("x",)), ("n1", "scale", ("n0",)), ("n2", "add", ("n0", "x"))],
          ("n1", "n2"), ("x",)),
    _spec("op-change-corrupt", [("n0", "add", ("x", "y")), ("n1", "add", ("n0", "y"))],
          [("n0", "add", ("x", "y")), ("n1", "mul_mat", ("n0", "y"))], ("n1",), ("x", "y")),
    _spec("op-change-harmless", [("n0", "add", ("x", "y")), ("n1", "silu", ("n0",))],
          [("n0", "mul", ("x", "y")), ("n1", "scale", ("n0",))], ("n1",), ("x", "y")),
]


@pytest.mark.parametrize("spec", REVIEW_PAIRS, ids=lambda s: s.name)
@pytest.mark.parametrize("via", VIAS)
def test_a_plan_for_other_ops_or_sources_is_stale_even_at_the_same_offsets(
        spec: PairSpec, via: Via) -> None:
    """The allocator's record holds offsets only; graphc also remembers the structure each
    plan was made for (seen through its ggml handle), so a B whose op or source changed is
    a stale plan even where every source lies where the plan put one."""
    r = run_pair(spec, via)
    assert r.plan_reused and r.stale_flagged, r.verdict.violations
    assert r.corrupted == bool(r.hazards) or (r.corrupted and not r.verdict.safe)
