"""Taps are read after the state updates (issue 20, item 7).

A tap (a tensor ``reads`` names that is not an output) is read by the caller once
``run()`` has returned, after every state update. The planner keeps a tap's bytes apart
from the states the run reassigns (a view of such a state gets bytes of its own), and the
static checker and the sanitizer both judge taps as read after the updates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import find, given, note
from hypothesis import strategies as st

import graphc as gc
from graphc.backends.sanitizer import SanitizedArenaExecutable, sanitize
from graphc.passes.aliasing import check_aliasing
from graphc.passes.memory import MemoryPlan, late_taps, plan_memory
from graphc.reads import Reads
from graphc.testing.data import random_feeds
from graphc.testing.mutations import moved
from graphc.testing.soundness import judge, reference_taps
from graphc.testing.strategies import ALL_FAMILIES, graphs, reads_for

S0 = {"s": np.full(4, 10, np.float32)}
X = {"x": np.arange(1, 5, dtype=np.float32)}
GREEDY = ("greedy-by-size", "exact", "auto")  # the strategies that are told the taps


def _issue() -> tuple[gc.Graph, gc.Tensor, gc.Tensor, dict[Any, object]]:
    """The issue's example: tap = slice(s, 0, 0, 2), assign s <- s + x."""
    g = gc.Graph("tap_after_update")
    s = g.state("s", (4,))
    x = g.input("x", (4,))
    tap = g.slice(s, 0, 0, 2)
    new = g.add(s, x)
    g.assign(s, new)
    g.set_output(g.neg(x), "y")
    return g, tap, new, {"y": "all", tap: "all"}


def _window_onto_state(g: gc.Graph, plan: MemoryPlan, tap: gc.Tensor) -> MemoryPlan:
    """``plan`` with ``tap`` placed as the window onto state s that slice(s, 0, 0, 2) is."""
    s = g.states["s"]
    return moved(plan, tap, region="state", offset=plan.placements[s].offset, view_of=s,
                 strides=(1,), nbytes=tap.nbytes)


def test_the_planner_copies_a_tap_on_a_reassigned_state() -> None:
    g, tap, _, reads = _issue()
    for strategy in GREEDY:
        plan = plan_memory(g, reads=reads, strategy=strategy)
        p = plan.placements[tap]
        assert p.view_of is None and p.region == "arena", "the tap owns its bytes"
        assert check_aliasing(g, plan, reads) == []
        exe = gc.compile(g, backend="arena", plan=plan, states=S0)
        exe.run(X)
        np.testing.assert_array_equal(exe.read_buffer(tap), [10, 10])  # not [11, 12]
        np.testing.assert_array_equal(exe.state["s"], [11, 12, 13, 14])
        exe.run(X)
        np.testing.assert_array_equal(exe.read_buffer(tap), [11, 12])
        result = sanitize(g, plan, {}, X, states=S0, reads=reads)
        assert result.ok, result.violation
        assert [r[tap].tolist() for r in result.taps] == [[10, 10], [11, 12]]
        assert judge(g, plan, reads, feeds=(X, {}, S0)).outcome == "safe"
    # told nothing about the tap, the planner keeps the free window (nobody reads it late)
    assert plan_memory(g).placements[tap].view_of is g.states["s"]


def test_a_window_onto_the_reassigned_state_is_refused_by_the_checker_and_the_sanitizer(
) -> None:
    g, tap, new, reads = _issue()
    # the plan the old planner made: the tap a window onto s, s + x in the arena
    bad = _window_onto_state(g, plan_memory(g, reads=reads, inplace=False), tap)
    exe = gc.compile(g, backend="arena", plan=bad, check=False, states=S0)
    exe.run(X)
    np.testing.assert_array_equal(exe.read_buffer(tap), [11, 12])  # the hazard is real

    (v,) = check_aliasing(g, bad, reads)
    assert (v.kind, v.tensor, v.clobbered_by) == ("unmarked-tap", tap, new)
    assert "state 's'" in v.detail and "after the run" in v.detail
    assert "bytes of its own" in v.fix and "output" in v.fix
    sanitized = SanitizedArenaExecutable(g, {}, Reads({"y": "all"}), S0, bad, taps=[tap])
    with pytest.raises(gc.AliasError, match="unmarked-tap"):
        sanitized.run(X)

    result = sanitize(g, bad, {}, X, states=S0, reads=reads)
    d = result.violation
    assert d is not None and (d.kind, d.tensor, d.clobbered_by) == ("unmarked-tap", tap, new)
    assert "state 's'" in d.detail
    j = judge(g, bad, reads, feeds=(X, {}, S0))
    assert j.outcome == "caught", j.describe()


def test_a_non_state_tap_placed_over_a_reassigned_state_is_refused() -> None:
    g = gc.Graph("tap_in_state_region")
    s = g.state("s", (4,))
    x = g.input("x", (4,))
    tap = g.exp(x)
    new = g.add(s, x)
    g.assign(s, new)
    g.set_output(g.neg(x), "y")
    reads: dict[Any, object] = {"y": "all", tap: "all"}
    order = [s, x, new, tap, *[t for t in g.nodes if t.op == "neg"]]  # s's last read first
    plan = plan_memory(g, order=order, reads=reads, inplace=False)
    bad = moved(plan, tap, region="state", offset=plan.placements[s].offset)
    found = check_aliasing(g, bad, reads)
    assert [(v.kind, v.tensor, v.clobbered_by) for v in found] == [("unmarked-tap", tap, new)]
    result = sanitize(g, bad, {}, X, states=S0, reads=reads)
    assert result.violation is not None
    assert (result.violation.kind, result.violation.tensor) == ("unmarked-tap", tap)
    assert judge(g, bad, reads, feeds=(X, {}, S0)).outcome == "caught"
    # not read by the caller, the same placement is harmless: s's old value is dead there
    assert check_aliasing(g, bad, {"y": "all"}) == []
    assert sanitize(g, bad, {}, X, states=S0).ok


def test_a_tap_on_the_new_value_written_in_place_is_safe() -> None:
    g = gc.Graph("tap_new_value")
    s = g.state("s", (2, 4))
    x = g.input("x", (1, 4))
    idx = g.input("idx", (1,), "i32")
    new = g.set_rows(s, idx, x)
    g.assign(s, new)
    row = g.slice(new, 0, 0, 1)  # a view of the new value: what the state now holds
    g.set_output(g.neg(x), "y")
    reads: dict[Any, object] = {"y": "all", new: "all", row: "all"}
    plan = plan_memory(g, reads=reads)
    assert plan.placements[new].inplace_of is s and plan.placements[row].view_of is new
    assert check_aliasing(g, plan, reads) == []
    feeds = ({"x": np.ones((1, 4), np.float32), "idx": np.array([0], np.int32)}, {},
             {"s": np.zeros((2, 4), np.float32)})
    assert judge(g, plan, reads, feeds=feeds).outcome == "safe"


def test_a_tap_on_a_value_forced_in_place_over_a_reassigned_state_is_copied() -> None:
    g = gc.Graph("forced")
    s = g.state("s", (4,))
    x = g.input("x", (4,))
    y = g.neg(s, inplace=True)  # in s's bytes, which the update of s then overwrites
    tap = g.slice(y, 0, 0, 2)
    g.assign(s, g.exp(x))
    g.set_output(g.add(y, x), "out")
    reads: dict[Any, object] = {"out": "all", tap: "all"}
    feeds = ({"x": np.ones(4, np.float32)}, {}, {"s": np.full(4, 3, np.float32)})
    for strategy in GREEDY:
        plan = plan_memory(g, reads=reads, strategy=strategy)
        assert plan.placements[y].region == "state" and plan.placements[tap].view_of is None
        assert check_aliasing(g, plan, reads) == []
        assert judge(g, plan, reads, feeds=feeds).outcome == "safe"
    bad = moved(plan, tap, region="state", offset=plan.placements[s].offset, view_of=y,
                strides=(1,))
    assert [v.kind for v in check_aliasing(g, bad, reads)] == ["unmarked-tap"]
    assert judge(g, bad, reads, feeds=feeds).outcome == "caught"


def test_a_tap_that_is_a_reassigned_state_is_refused_with_the_fix() -> None:
    g, _, new, _ = _issue()
    s = g.states["s"]
    with pytest.raises(gc.GraphError, match="tap %s is state 's'") as info:
        plan_memory(g, reads={"y": "all", s: "all"})
    assert info.value.fix is not None and "exe.state['s']" in info.value.fix
    plan = plan_memory(g, inplace=False)  # s + x in the arena: s is intact to the end
    (v,) = check_aliasing(g, plan, {"y": "all", s: "all"})
    assert (v.kind, v.tensor, v.clobbered_by) == ("unmarked-tap", s, new)
    assert "exe.state['s']" in v.fix
    result = sanitize(g, plan, {}, X, states=S0, reads={"y": "all", s: "all"})
    assert result.violation is not None and result.violation.kind == "unmarked-tap"
    # ggml's allocator knows no taps: it plans as if the tap were not there
    assert plan_memory(g, reads={"y": "all", s: "all"}, strategy="best-fit-in-order")


def test_taps_on_states_that_keep_or_swap_their_values() -> None:
    g = gc.Graph("keep_and_swap")
    a, b, c = g.state("a", (3,)), g.state("b", (3,)), g.state("c", (3,))
    g.assign(a, b)
    g.assign(b, a)
    g.assign(c, c)  # keeps its bytes: a window onto it stays right after the updates
    ta, tc = g.slice(a, 0, 0, 2), g.slice(c, 0, 1, 3)
    g.set_output(g.add(a, b), "y")
    reads: dict[Any, object] = {"y": "all", ta: "all", tc: "all"}
    assert late_taps(g, reads) == {ta, tc}
    plan = plan_memory(g, reads=reads)
    assert plan.placements[ta].view_of is None and plan.placements[tc].view_of is c
    assert check_aliasing(g, plan, reads) == []
    states = {"a": np.array([1, 2, 3], np.float32), "b": np.array([4, 5, 6], np.float32),
              "c": np.array([7, 8, 9], np.float32)}
    result = sanitize(g, plan, {}, {}, states=states, reads=reads)
    assert result.ok, result.violation
    assert [r[ta].tolist() for r in result.taps] == [[1, 2], [4, 5]]
    assert [r[tc].tolist() for r in result.taps] == [[8, 9], [8, 9]]
    # the swapped state's window is refused by both, the kept state's window is not
    bad = moved(plan, ta, region="state", offset=plan.placements[a].offset, view_of=a,
                strides=(1,))
    assert [(v.kind, v.tensor) for v in check_aliasing(g, bad, reads)] == [("unmarked-tap", ta)]
    assert judge(g, bad, reads, feeds=({}, {}, states)).outcome == "caught"


# ----------------------------------------------------------------------------- generated

def _forced(g: gc.Graph) -> bool:
    return any(t.inplace for t in g.nodes)


def test_the_generator_draws_taps_on_reassigned_states() -> None:
    def late(ex: tuple[gc.Graph, dict[Any, object]]) -> bool:
        g, reads = ex
        taps = {t for t in reads if isinstance(t, gc.Tensor)}
        return any(t in late_taps(g, reads) and t.op in ("slice", "reshape", "transpose")
                   and t.inputs[0].op == "state" and t.inputs[0] in g.assigns
                   for t in taps)

    pairs = st.shared(graphs(max_nodes=6, states=True), key="g").flatmap(
        lambda g: st.tuples(st.just(g), reads_for(g, taps=True)))
    _, reads = find(pairs, late)
    assert any(isinstance(t, gc.Tensor) for t in reads)


@given(g=graphs(max_nodes=8, inplace=True, max_rank=3, states=True, families=ALL_FAMILIES),
       data=st.data(), seed=st.integers(0, 2**16), strategy=st.sampled_from(GREEDY),
       inplace=st.booleans())
def test_read_buffer_of_every_tap_equals_the_reference(g: gc.Graph, data: st.DataObject,
                                                       seed: int, strategy: str,
                                                       inplace: bool) -> None:
    """For generated graphs and taps (views of reassigned states among them), the
    planner's plan is proven safe, and after each run on the arena backend every tap's
    bytes hold the value the reference backend computed in that run."""
    note(gc.to_text(g))
    reads = data.draw(reads_for(g, taps=True))
    taps = [t for t in reads if isinstance(t, gc.Tensor)]
    note(f"taps: {[(t.op, t.shape) for t in taps]}")
    plan = plan_memory(g, reads=reads, strategy=strategy, inplace=inplace)
    found = check_aliasing(g, plan, reads)
    if found and _forced(g):
        return  # an inplace=True the graph forces, which the checker rightly refuses
    assert found == [], [str(v) for v in found]
    feeds = random_feeds(g, seed)
    inputs, params, states = feeds
    exe = gc.compile(g, params=params, states=states, backend="arena", plan=plan)
    want = reference_taps(g, feeds, taps)
    for run in want:
        exe.run(inputs)
        for t, value in run.items():
            np.testing.assert_allclose(exe.read_buffer(t), value, rtol=1e-5, atol=1e-5,
                                       err_msg=f"tap {t.op} after the run")
