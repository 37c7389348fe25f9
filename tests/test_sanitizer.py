"""The sanitizer: memory plans run with shadow memory (the dynamic ground truth)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import graphc as gc
from graphc.backends.arena import ArenaExecutable
from graphc.backends.sanitizer import SanitizedArenaExecutable, SanitizeResult, sanitize
from graphc.models.qwen import QwenConfig, build_main, init_params
from graphc.passes.aliasing import Violation
from graphc.passes.memory import MemoryPlan, Placement, plan_memory
from graphc.reads import Reads
from graphc.testing.mutations import moved

CFG = QwenConfig(vocab=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
                 max_ctx=16)

ISSUE = (Path(__file__).parent / "corpus" / "state_value_reused.gc").read_text()

RNG = np.random.default_rng(0)


def _f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _node(g: gc.Graph, name: str) -> gc.Tensor:
    return next(t for t in g.nodes if t.name == name)


def _reference(g: gc.Graph, params: dict[str, Any], feeds: list[dict[str, Any]],
               states: dict[str, Any] | None = None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    exe = gc.compile(g, params=params, states=states)
    outs, sts = [], []
    for f in feeds:
        outs.append(exe.run(f))
        sts.append({k: np.array(v) for k, v in exe.state.items()})
    return outs, sts


def _assert_same(res: SanitizeResult, ref: tuple[list[dict[str, Any]], list[dict[str, Any]]]
                 ) -> None:
    assert res.violation is None, str(res.violation)
    outs, sts = ref
    assert len(res.outputs) == len(outs) and len(res.states) == len(sts)
    for got, want in zip(res.outputs + res.states, outs + sts, strict=True):
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-6, err_msg=k)


def _issue() -> tuple[gc.Graph, dict[str, np.ndarray], dict[str, np.ndarray]]:
    g = gc.parse_text(ISSUE)
    return g, {"w": _f32(16, 64), "w2": _f32(64, 16)}, {"x": _f32(4, 16)}


# ------------------------------------------------------------------------ safe plans run clean

def _small() -> gc.Graph:
    g = gc.Graph("small")
    x = g.input("x", (4, 8))
    idx = g.input("idx", (4,), "i32")
    w = g.param("w", (4, 8))
    s = g.state("s", (6, 8))
    xt = g.transpose(x, (1, 0), name="xt")  # a view
    m = g.matmul(xt, w, name="m")
    e = g.tanh(m, inplace=True, name="e")  # in place over m
    u = g.set_rows(s, idx, x, inplace=True, name="u")  # the state, updated in place
    y = g.add(e, g.sum(u, axis=0, keepdims=True), name="y")
    g.set_output(y, "y")
    g.set_output(xt, "xt")  # an output that is a view
    g.assign(s, u)
    return g


def test_safe_small_graph_matches_reference() -> None:
    g = _small()
    plan = plan_memory(g)
    assert any(p.view_of is not None for p in plan.placements.values())
    assert _node(g, "e") in dict(plan.inplace_pairs)
    assert plan.placements[_node(g, "u")].inplace_of is g.states["s"]
    params = {"w": _f32(4, 8)}
    states = {"s": _f32(6, 8)}
    feeds = [{"x": _f32(4, 8), "idx": np.array([5, 0, 2, 3], np.int32)},
             {"x": _f32(4, 8), "idx": np.array([1, 4, 3, 0], np.int32)}]
    res = sanitize(g, plan, params, feeds, states=states)
    _assert_same(res, _reference(g, params, feeds, states))
    # the same inputs twice (the default: runs=2)
    res = sanitize(g, plan, params, feeds[0], states=states)
    _assert_same(res, _reference(g, params, [feeds[0]] * 2, states))


@pytest.mark.parametrize("strategy", ["greedy-by-size", "best-fit-in-order"])
def test_qwen_runs_clean_and_matches_reference(strategy: str) -> None:
    g = build_main(CFG, 4)
    params = init_params(CFG, seed=1)
    feeds = [{"tokens": np.arange(4, dtype=np.int32) * 3, "pos": np.arange(4, dtype=np.int32)},
             {"tokens": np.arange(4, dtype=np.int32) + 7,
              "pos": np.arange(4, 8, dtype=np.int32)}]
    res = sanitize(g, plan_memory(g, strategy=strategy), params, feeds)
    _assert_same(res, _reference(g, params, feeds))
    assert any(np.any(v != 0) for v in res.states[1].values())  # the KV cache was written


def test_compile_sanitize_plans_proves_and_runs() -> None:
    g = _small()
    params, states = {"w": _f32(4, 8)}, {"s": _f32(6, 8)}
    feeds = {"x": _f32(4, 8), "idx": np.array([5, 0, 2, 3], np.int32)}
    exe = gc.compile(g, params, backend="arena", states=states, sanitize=True)
    assert isinstance(exe, SanitizedArenaExecutable) and exe.sanitized
    ref = gc.compile(g, params, states=states)
    for _ in range(2):
        got, want = exe.run(feeds), ref.run(feeds)
        for k in want:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
        np.testing.assert_allclose(exe.state["s"], ref.state["s"])
    assert exe.violation is None


# ------------------------------------------------------------ the issue: a stale state update

def _stale_issue_plan(g: gc.Graph, plan: MemoryPlan) -> MemoryPlan:
    """``plan`` with a value computed after %v put onto %v's bytes."""
    v, c = _node(g, "v"), _node(g, "c")
    end = plan.arena_bytes
    plan = moved(plan, v, offset=end)  # fresh bytes for %v, shared with nothing...
    plan = moved(plan, c, offset=end)  # ...but %c, computed later
    return dataclasses.replace(plan, arena_bytes=end + v.nbytes)


def test_issue_stale_state_update_is_caught() -> None:
    g, params, feeds = _issue()
    v = _node(g, "v")
    plan = plan_memory(g, inplace=False)
    res = sanitize(g, plan, params, feeds)
    if res.violation is None:  # the planner is right: make the bug by hand
        plan = _stale_issue_plan(g, plan)
        res = sanitize(g, plan, params, feeds)
    bad = res.violation
    assert isinstance(bad, Violation)
    assert bad.kind == "clobbered-read" and bad.tensor is v
    assert bad.step == len(plan.order)  # read after the run, by the state update
    assert bad.clobbered_by is not None and bad.clobbered_by is not v
    assert "'s'" in bad.detail and "after the run" in bad.detail
    assert bad.fix and "\n" not in bad.fix
    assert res.outputs == [] and res.states == []


def test_issue_plan_from_planner_is_clean_or_caught() -> None:
    g, params, feeds = _issue()
    plan = plan_memory(g, inplace=False)
    res = sanitize(g, plan, params, feeds)
    if res.violation is None:
        _assert_same(res, _reference(g, params, [feeds, feeds]))
    else:
        assert res.violation.tensor is _node(g, "v")


def test_compile_unchecked_bad_plan_raises_alias_error() -> None:
    g, params, feeds = _issue()
    plan = _stale_issue_plan(g, plan_memory(g, inplace=False))
    exe = gc.compile(g, params, backend="arena", plan=plan, check=False, sanitize=True)
    with pytest.raises(gc.AliasError) as info:
        exe.run(feeds)
    bad = info.value.violations[0]
    assert isinstance(bad, Violation)
    assert bad.kind == "clobbered-read" and bad.tensor is _node(g, "v")
    assert bad.clobbered_by is _node(g, "c")
    assert "sanitizer" in str(info.value)
    # the plain arena backend silently stores the wrong state
    plain = gc.compile(g, params, backend="arena", plan=plan, check=False)
    plain.run(feeds)
    ref = gc.compile(g, params)
    ref.run(feeds)
    assert not np.allclose(plain.state["s"], ref.state["s"])


# ------------------------------------------------------------------------ params, views, in place

def test_intermediate_on_a_weight_is_param_written() -> None:
    g, params, feeds = _issue()
    plan = plan_memory(g, inplace=False)
    a, w = _node(g, "a"), g.params["w"]
    bad = sanitize(g, moved(plan, a, region="param", offset=plan.placements[w].offset),
                   params, feeds).violation
    assert bad is not None and bad.kind == "param-written"
    assert bad.tensor is w and bad.clobbered_by is a


def _viewgraph() -> gc.Graph:
    g = gc.Graph("views")
    x = g.input("x", (4, 8))
    e = g.exp(x, name="e")
    t = g.transpose(e, (1, 0), name="t")
    sl = g.slice(e, axis=0, start=1, stop=3, name="sl")
    m = g.matmul(t, g.neg(e, name="n"), name="m")
    g.set_output(m, "m")
    g.set_output(g.tanh(sl, name="th"), "th")
    return g


def test_views_run_clean() -> None:
    g = _viewgraph()
    plan = plan_memory(g)
    e = _node(g, "e")
    assert plan.placements[_node(g, "t")].view_of is e
    assert plan.placements[_node(g, "sl")].view_of is e
    feeds = {"x": _f32(4, 8)}
    _assert_same(sanitize(g, plan, {}, feeds), _reference(g, {}, [feeds, feeds]))


@pytest.mark.parametrize("case", ["slice-offset", "transpose-strides", "slice-outside",
                                  "not-a-view"])
def test_bad_views(case: str) -> None:
    g = _viewgraph()
    plan = plan_memory(g)
    e, t, sl = _node(g, "e"), _node(g, "t"), _node(g, "sl")
    if case == "slice-offset":  # inside its source, same owner, wrong elements
        bad_plan = moved(plan, sl, offset=plan.placements[e].offset)
        culprit = sl
    elif case == "transpose-strides":  # dense strides: e's bytes, in the wrong order
        bad_plan = moved(plan, t, strides=None)
        culprit = t
    elif case == "slice-outside":
        bad_plan = moved(plan, sl, offset=plan.placements[e].offset + 3 * 8 * 4)
        culprit = sl
    else:  # a non-view op placed as a view
        n = _node(g, "n")
        bad_plan = moved(plan, n, view_of=e, offset=plan.placements[e].offset)
        culprit = n
    bad = sanitize(g, bad_plan, {}, {"x": _f32(4, 8)}).violation
    assert bad is not None and bad.kind == "bad-view", str(bad)
    assert bad.tensor is culprit


def test_non_view_with_strides_is_bad_layout() -> None:
    g = _viewgraph()
    plan = plan_memory(g)
    n = _node(g, "n")  # f32[4, 8], dense
    bad = sanitize(g, moved(plan, n, strides=(1, 4)), {}, {"x": _f32(4, 8)}).violation
    assert bad is not None and bad.kind == "bad-layout" and bad.tensor is n


def _chain() -> gc.Graph:
    g = gc.Graph("chain")
    x = g.input("x", (4, 16))
    w = g.param("w", (16, 16))
    a = g.exp(x, name="a")
    b = g.tanh(a, name="b")
    c = g.matmul(b, w, name="c")
    d = g.add(c, b, name="d")
    g.set_output(g.sub(d, a, name="y"), "y")
    return g


def test_matmul_over_its_operand_is_bad_inplace() -> None:
    g = _chain()
    plan = plan_memory(g, inplace=False)
    b, c = _node(g, "b"), _node(g, "c")
    bad = sanitize(g, moved(plan, c, offset=plan.placements[b].offset), {"w": _f32(16, 16)},
                   {"x": _f32(4, 16)}).violation
    assert bad is not None and bad.kind == "bad-inplace"
    assert bad.tensor is b and bad.clobbered_by is c


def _share(plan: MemoryPlan, first: gc.Tensor, second: gc.Tensor, shift: int = 0
           ) -> MemoryPlan:
    """``plan`` with ``first`` moved to fresh bytes past the arena and ``second`` on them
    (``shift`` bytes further)."""
    end = plan.arena_bytes
    plan = moved(moved(plan, first, offset=end), second, offset=end + shift)
    return dataclasses.replace(plan, arena_bytes=end + first.nbytes + shift)


def test_inplace_rules() -> None:
    g = gc.Graph("ip")
    x = g.input("x", (4, 16))
    a = g.exp(x, name="a")
    b = g.tanh(a, name="b")
    h = g.neg(x, name="h")
    c = g.add(h, b, name="c")
    g.set_output(c, "y")
    plan = plan_memory(g, inplace=False)
    feeds = {"x": _f32(4, 16)}
    ref = _reference(g, {}, [feeds, feeds])
    assert sanitize(g, plan, {}, feeds).violation is None
    # exact in place into operand 0 of an elementwise op: legal
    _assert_same(sanitize(g, _share(plan, a, b), {}, feeds), ref)
    _assert_same(sanitize(g, _share(plan, h, c), {}, feeds), ref)
    # over operand 1: not what an in-place kernel does
    bad = sanitize(g, _share(plan, b, c), {}, feeds).violation
    assert bad is not None and bad.kind == "bad-inplace" and bad.tensor is b
    # shifted by one element: overlapping but not the same bytes
    bad = sanitize(g, _share(plan, h, c, shift=4), {}, feeds).violation
    assert bad is not None and bad.kind == "bad-inplace" and bad.tensor is h
    # a matmul may not write in place at all, even over exactly its operand's bytes
    g2 = gc.Graph("mm")
    x2 = g2.input("x", (4, 4))
    e2 = g2.exp(x2, name="e")
    m2 = g2.matmul(e2, x2, name="m")
    g2.set_output(m2, "m")
    bad = sanitize(g2, _share(plan_memory(g2, inplace=False), e2, m2), {},
                   {"x": _f32(4, 4)}).violation
    assert bad is not None and bad.kind == "bad-inplace" and bad.tensor is e2


# ------------------------------------------------------------------------ states

def test_state_swap_runs_clean_and_swaps() -> None:
    g = gc.Graph("swap")
    a = g.state("a", (4,))
    b = g.state("b", (4,))
    g.set_output(g.add(a, b, name="ab"), "ab")
    g.assign(a, b)
    g.assign(b, a)
    a0, b0 = np.arange(4, dtype=np.float32), 10 + np.arange(4, dtype=np.float32)
    states = {"a": a0, "b": b0}
    plan = plan_memory(g)
    res = sanitize(g, plan, {}, {}, states=states, runs=3)
    _assert_same(res, _reference(g, {}, [{}] * 3, states))
    np.testing.assert_array_equal(res.states[0]["a"], b0)
    np.testing.assert_array_equal(res.states[0]["b"], a0)
    np.testing.assert_array_equal(res.states[1]["a"], a0)
    # both states on the same bytes: the second write clobbers the first
    bad = sanitize(g, moved(plan, b, offset=plan.placements[a].offset), {}, {},
                   states=states).violation
    assert bad is not None and bad.kind == "clobbered-read"
    assert bad.tensor is a and bad.clobbered_by is b


def test_state_overwritten_by_a_scratch_value_is_misassigned() -> None:
    g = gc.Graph("keep")
    x = g.input("x", (4,))
    s = g.state("s", (4,))  # read, never assigned: keeps its value
    y = g.add(x, s, name="y")
    z = g.exp(y, name="z")
    g.set_output(g.neg(z, name="o"), "o")
    plan = plan_memory(g)
    z_on_s = moved(plan, z, region="state", offset=plan.placements[s].offset)
    bad = sanitize(g, z_on_s, {}, {"x": _f32(4)}).violation
    assert bad is not None and bad.kind == "state-misassigned"
    assert bad.tensor is s and bad.clobbered_by is z


def test_output_clobbered_and_unmarked_tap() -> None:
    g, params, feeds = _issue()
    plan = plan_memory(g, inplace=False)
    v, a = _node(g, "v"), _node(g, "a")
    # an extra output, %v, on the same bytes as a value computed later
    early = moved(plan, v, offset=plan.arena_bytes)
    early = moved(early, a, offset=plan.arena_bytes)
    early = dataclasses.replace(early, arena_bytes=plan.arena_bytes + v.nbytes)
    g.set_output(v, "v")
    bad = sanitize(g, early, params, feeds).violation
    assert bad is not None and bad.kind == "output-clobbered" and bad.tensor is v
    assert bad.clobbered_by is a and "poison" in bad.detail  # %a died there
    # the MTP tap under the ggml-style allocator, which knows nothing about taps
    q = build_main(CFG, 8)
    q.unset_output("h_post_norm")
    q.unset_output("h_pre_norm")
    tap = _node(q, f"l{CFG.n_layers - 1}.h_out")
    qfeeds = {"tokens": np.arange(8, dtype=np.int32) * 3, "pos": np.arange(8, dtype=np.int32)}
    qplan = plan_memory(q, strategy="best-fit-in-order")
    params_q = init_params(CFG, seed=1)
    assert sanitize(q, qplan, params_q, qfeeds).violation is None  # without the tap: fine
    bad = sanitize(q, qplan, params_q, qfeeds, reads={"logits": "all", tap: "all"}).violation
    assert bad is not None and bad.kind == "unmarked-tap" and bad.tensor is tap
    assert bad.clobbered_by is not None


# ------------------------------------------------------------------------ poison

def test_poison_shows_in_the_numbers() -> None:
    g = gc.Graph("poison")
    x = g.input("x", (4, 16))
    a = g.exp(x, name="a")
    b = g.neg(x, name="b")
    c = g.tanh(b, name="c")  # b's last reader: b dies here
    d = g.add(a, c, name="d")
    g.set_output(d, "y")
    plan = plan_memory(g, inplace=False)
    stale = moved(plan, b, offset=plan.placements[a].offset)  # b overwrites a, then dies
    feeds = {"x": _f32(4, 16)}
    exe = SanitizedArenaExecutable(g, {}, Reads({"y": "all"}), None, stale)
    with pytest.raises(gc.AliasError) as info:
        exe.run(feeds)
    bad = info.value.violations[0]
    assert bad.kind == "clobbered-read" and bad.tensor is a and bad.clobbered_by is b
    assert "poison" in bad.detail and "%b's bytes died" in bad.detail
    assert np.isnan(exe.read_buffer(a)).all()  # what %d would have read
    # the plain arena backend reads neg(x) where exp(x) belongs, and says nothing
    plain = ArenaExecutable(g, {}, Reads({"y": "all"}), None, stale).run(feeds)["y"]
    want = gc.compile(g).run(feeds)["y"]
    assert not np.allclose(plain, want)
    np.testing.assert_allclose(plain, -feeds["x"] + np.tanh(-feeds["x"]), rtol=1e-6)


# ------------------------------------------------------------------------ malformed plans

@pytest.mark.parametrize("case,kind", [("past-end", "out-of-bounds"),
                                       ("negative", "out-of-bounds"),
                                       ("region", "out-of-bounds"),
                                       ("misaligned", "misaligned"),
                                       ("missing", "missing-placement"),
                                       ("missing-param", "missing-placement"),
                                       ("param-oob", "out-of-bounds")])
def test_malformed_plans_become_violations(case: str, kind: str) -> None:
    g, params, feeds = _issue()
    plan = plan_memory(g, inplace=False)
    L = _node(g, "L")
    if case == "past-end":
        bad_plan = moved(plan, L, offset=plan.arena_bytes - 64)
    elif case == "negative":
        bad_plan = moved(plan, L, offset=-256)
    elif case == "region":
        bad_plan = moved(plan, L, region="gpu")  # type: ignore[arg-type]
    elif case == "misaligned":
        bad_plan = moved(plan, L, offset=plan.placements[L].offset + 2)
    elif case in ("missing", "missing-param"):
        gone = L if case == "missing" else g.params["w2"]
        placements: dict[gc.Tensor, Placement] = dict(plan.placements)
        del placements[gone]
        bad_plan = dataclasses.replace(plan, placements=placements)
        L = gone
    else:
        L = g.params["w2"]
        bad_plan = moved(plan, L, offset=plan.param_bytes)
    res = sanitize(g, bad_plan, params, feeds)
    assert res.violation is not None and res.violation.kind == kind, str(res.violation)
    assert res.violation.tensor is L
    assert res.violation.fix


def test_order_that_reads_before_writing() -> None:
    g, params, feeds = _issue()
    plan = plan_memory(g, inplace=False)
    order = list(plan.order)
    a, L = _node(g, "a"), _node(g, "L")
    i, j = order.index(a), order.index(L)
    order[i], order[j] = L, a
    bad = sanitize(g, dataclasses.replace(plan, order=order), params, feeds).violation
    assert bad is not None and bad.kind == "clobbered-read" and bad.tensor is a
    assert "order" in bad.fix
