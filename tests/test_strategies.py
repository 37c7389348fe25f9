"""The test generators themselves: graphs(), random data, and plan mutations."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

import graphc as gc
import graphc.testing.mutations as mutations_module
from graphc.graph import Graph
from graphc.models.qwen import QwenConfig, build_main
from graphc.ops import OP_TABLE
from graphc.passes.memory import MemoryPlan, plan_memory
from graphc.testing import strategies
from graphc.testing.data import index_bounds, random_feeds
from graphc.testing.mutations import MUTATIONS, Mutant, mutate_plan
from graphc.testing.strategies import ALL_FAMILIES, FAMILY_OPS, PLAN_ONLY_FAMILIES, graphs

VIEW_OPS = frozenset(n for n, o in OP_TABLE.items() if o.kind == "view")
RICH = graphs(max_nodes=12, families=ALL_FAMILIES, inplace=True, max_rank=4, states=True)
SEARCH = settings(max_examples=400, database=None, derandomize=True, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), deadline=None)


def _check_feeds(g: Graph, inputs: dict[str, Any]) -> None:
    """Index inputs are in range for every use; set_rows indices are distinct."""
    for t in g.nodes:
        if t.op in ("get_rows", "set_rows", "attention"):
            idx = t.inputs[3] if t.op == "attention" else t.inputs[1]
            rows = t.inputs[1].shape[0] if t.op == "attention" else t.inputs[0].shape[0]
            assert idx.op == "input", gc.to_text(g)
            vals = inputs[idx.name]
            assert ((vals >= 0) & (vals < rows)).all(), (t.op, vals, rows)
            if t.op == "set_rows":
                assert len(set(vals.tolist())) == len(vals), vals


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(g=RICH, seed=st.integers(0, 2**16))
def test_generated_graphs_verify_round_trip_and_run_finite(g: Graph, seed: int) -> None:
    gc.verify(g)
    text = gc.to_text(g)
    assert gc.to_text(gc.parse_text(text)) == text
    inputs, params, states = random_feeds(g, seed)
    assert set(states) == set(g.states)
    _check_feeds(g, inputs)
    exe = gc.compile(g, params=params, states=states)
    for _ in range(2):
        out = exe.run(inputs)
        assert set(out) == set(g.outputs)
        for name, v in out.items():
            assert np.isfinite(np.asarray(v, dtype=np.float64)).all(), (name, text)
        for name, v in exe.state.items():
            assert np.isfinite(np.asarray(v, dtype=np.float64)).all(), (name, text)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(g=graphs())
def test_default_graphs_still_valid(g: Graph) -> None:
    gc.verify(g)
    assert g.outputs and not g.states
    assert {t.op for t in g.nodes} <= {"input", "param"} | set().union(
        *(FAMILY_OPS[f] for f in strategies.DEFAULT_FAMILIES))


def _swap(g: Graph) -> bool:
    a = g.assigns
    return any(a.get(v) is s for s, v in a.items() if v is not s)


def _inplace_cache_write(g: Graph) -> bool:
    return any(v.op == "set_rows" and v.inputs[0] is s and v.inplace for s, v in g.assigns.items())


def _old_state_read_after_write(g: Graph) -> bool:
    pos = {t: i for i, t in enumerate(g.nodes)}
    return any(v.op == "set_rows" and v.inputs[0] is s and any(
        s in t.inputs and pos[t] > pos[v] for t in g.nodes) for s, v in g.assigns.items())


def _view_of_view(g: Graph) -> bool:
    return any(t.op in VIEW_OPS and t.inputs[0].op in VIEW_OPS for t in g.nodes)


def _real_permutation(g: Graph) -> bool:
    return any(t.op == "transpose" and t.ndim >= 3
               and list(t.attrs["perm"]) not in (list(range(t.ndim)), list(range(t.ndim))[::-1])
               for t in g.nodes)


def _rank4_permutation(g: Graph) -> bool:
    return any(t.op == "transpose" and t.ndim == 4 for t in g.nodes)


FEATURES: dict[str, Callable[[Graph], bool]] = {
    "state": lambda g: bool(g.states),
    "assign": lambda g: bool(g.assigns),
    "unassigned-state": lambda g: any(s not in g.assigns for s in g.states.values()),
    "swap": _swap,
    "inplace-cache-write": _inplace_cache_write,
    "old-state-read-after-write": _old_state_read_after_write,
    "attention-over-cache": lambda g: any(
        t.op == "attention" and t.inputs[1] in g.assigns.values() for t in g.nodes),
    "state-output": lambda g: any(t.op == "state" for t in g.outputs.values()),
    "early-assign": lambda g: any(v.op == "add" and v.inputs[0].op == "exp"
                                  for v in g.assigns.values()),
    "attention": lambda g: any(t.op == "attention" for t in g.nodes),
    "rope": lambda g: any(t.op == "rope" for t in g.nodes),
    "view-of-view": _view_of_view,
    "rank3-permutation": _real_permutation,
    "rank4-permutation": _rank4_permutation,
    "concat3": lambda g: any(t.op == "concat" and len(t.inputs) == 3 for t in g.nodes),
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_generator_reaches(feature: str) -> None:
    g = find(RICH, FEATURES[feature], settings=SEARCH)
    gc.verify(g)


def test_families_cover_the_op_table() -> None:
    ops = {n for n, o in OP_TABLE.items() if o.kind != "leaf"}
    assert ops, "empty op table"
    drawn = set().union(*(FAMILY_OPS[f] for f in (*ALL_FAMILIES, *PLAN_ONLY_FAMILIES)))
    assert not ops - drawn, f"ops no family draws: {sorted(ops - drawn)}"
    assert set(ALL_FAMILIES) | set(PLAN_ONLY_FAMILIES) == set(FAMILY_OPS)
    assert not drawn - set(OP_TABLE), f"families name unknown ops: {sorted(drawn - set(OP_TABLE))}"


@pytest.mark.parametrize("family", (*ALL_FAMILIES, *PLAN_ONLY_FAMILIES))
def test_each_family_draws_the_ops_it_claims(family: str) -> None:
    want = FAMILY_OPS[family]
    seen: set[str] = set()

    def all_seen(g: Graph) -> bool:
        seen.update(t.op for t in g.nodes)
        return want <= seen

    try:
        find(graphs(max_nodes=4, families=(family,)), all_seen, settings=SEARCH)
    except Exception:  # hypothesis.errors.NoSuchExample: report what was missing
        pytest.fail(f"family {family} never drew {sorted(want - seen)}")


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown families"):
        find(graphs(families=("nope",)), lambda g: True, settings=SEARCH)


# ----------------------------------------------------------------------------- mutations


@pytest.fixture(scope="module")
def qwen() -> tuple[Graph, MemoryPlan]:
    cfg = QwenConfig(vocab=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
                     max_ctx=16)
    g = build_main(cfg, 4)
    return g, plan_memory(g)


def _snapshot(plan: MemoryPlan) -> dict[str, Any]:
    snap = {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}
    snap["placements"] = dict(plan.placements)
    snap["order"] = list(plan.order)
    return snap


@pytest.mark.parametrize("fault", list(MUTATIONS))
def test_each_mutation_applies_changes_and_copies(qwen: tuple[Graph, MemoryPlan],
                                                  fault: str) -> None:
    g, plan = qwen
    before = _snapshot(plan)
    mutants = [m for seed in range(20) if (m := mutate_plan(g, plan, fault, seed)) is not None]
    assert mutants, f"{fault} never applies to a transformer plan"
    for m in mutants:
        assert isinstance(m, Mutant) and m.fault == fault and m.detail
        assert m.plan is not plan and m.plan.placements is not plan.placements
        assert m.plan.order is not plan.order
        assert m.plan != plan, f"{fault} changed nothing: {m.detail}"
    assert _snapshot(plan) == before, f"{fault} modified its input plan"
    assert {m.detail for m in mutants} != {""}


def test_mutate_plan_random_and_errors(qwen: tuple[Graph, MemoryPlan]) -> None:
    g, plan = qwen
    faults = {m.fault for seed in range(40) if (m := mutate_plan(g, plan, None, seed))}
    assert len(faults) > 3
    stale = mutate_plan(g, plan, "stale", 0)
    assert isinstance(stale, Mutant) and stale.fault == "stale"
    with pytest.raises(ValueError, match="unknown mutation"):
        mutate_plan(g, plan, "no-such-fault")


def test_mutations_share_no_liveness_with_the_planner_or_checker() -> None:
    source = Path(mutations_module.__file__).read_text()
    tree = ast.parse(source)
    forbidden = {"lifetimes", "external_reads"}
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert imports, "no imports found: wrong file?"
    for node in imports:
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith(("graphc.passes.memory",
                                                  "graphc.passes.aliasing")), alias.name
            continue
        module = node.module or ""
        names = {a.name for a in node.names}
        assert not module.startswith("graphc.passes.aliasing"), module
        assert not (module == "graphc.passes" and names & {"aliasing", "memory"}), names
        assert not names & forbidden, (module, names)
        if module == "graphc.passes.memory":
            assert names <= {"MemoryPlan", "Placement"}, names
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not used & forbidden


def test_index_bounds_cover_positions() -> None:
    g = Graph("pos")
    q = g.input("q", (3, 2, 4))
    k = g.input("k", (5, 1, 4))
    pos = g.input("pos", (3,), "i32")
    rp = g.input("rp", (3,), "i32")
    g.set_output(g.attention(g.rope(q, rp), k, k, pos), "o")
    assert index_bounds(g) == {"pos": 5}
    inputs, _, _ = random_feeds(g, 0)
    assert (inputs["pos"] < 5).all() and (inputs["rp"] >= 0).all()
