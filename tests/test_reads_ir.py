"""Which rows a caller reads is part of the IR: the builder, the text format and JSON carry
it, the passes act on it, and any pipeline gives the same values for the rows read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import graphc as gc
from graphc.examples.quickstart import build_toy
from graphc.passes import PassManager, dead_outputs, prune_rows
from graphc.testing.data import random_feeds
from graphc.testing.strategies import ALL_FAMILIES, graphs, reads_for

PIPELINES = [None, "none", "default", "prune-rows", "prune-rows{reads=logits[0,3]}",
             "cse,dce", "fold", "prune-rows,fold,cse,dce"]


def _toy_data() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return ({"w": (rng.standard_normal((64, 64)) / 8).astype(np.float32)},
            {"x": rng.standard_normal((8, 64)).astype(np.float32)})


def test_rows_in_the_builder_text_and_json() -> None:
    g = gc.Graph("t")
    x = g.input("x", (4, 3))
    g.set_output(g.tanh(x), "y", rows=[-1, 0])
    g.set_output(x, "x")
    assert g.output_rows("y") == (3, 0) and g.output_rows("x") is None
    text = gc.to_text(g)
    assert 'output %0 as "y" rows [3, 0]' in text and 'output %x as "x"\n' in text
    assert gc.to_text(gc.parse_text(text)) == text
    assert gc.to_text(gc.from_json(gc.to_json(g))) == text
    g.set_output_rows("y", None)
    assert g.output_rows("y") is None and "rows" not in gc.to_text(g)
    for bad, message in (("rows [9]", "out of range: it has 4 rows"), ("rows []", "no rows"),
                         ("rows 3", "a list of rows")):
        with pytest.raises(gc.GraphError, match=message) as info:
            gc.parse_text(text.replace("rows [3, 0]", bad))
        assert info.value.line == 4


@pytest.mark.parametrize("backend", ["reference", "arena", "jax"])
def test_any_pipeline_gives_the_rows_read(backend: str) -> None:
    """The issue's case: a custom pipeline used to read stale rows (IndexError)."""
    g = build_toy()
    params, feeds = _toy_data()
    want = gc.compile(g, params=params).run(feeds)["logits"][[0, 3]]
    for pipeline in PIPELINES:
        exe = gc.compile(g, params=params, reads={"logits": [0, 3]}, backend=backend,
                         pipeline=pipeline)
        out = exe.run(feeds)
        assert list(out) == ["logits"], pipeline
        np.testing.assert_allclose(out["logits"], want, rtol=2e-5, atol=2e-5,
                                   err_msg=str(pipeline))
        ran = exe.report().passes
        if pipeline == "none" or (pipeline is None and backend != "jax"):
            assert ran == []
        else:  # the call's reads are recorded first; the report lists what really ran
            assert ran[0] == "dead-outputs{reads=logits[0,3]}", ran
            if pipeline not in (None, "none", "default"):
                assert ran[1:] == [p.spec() for p in PassManager(pipeline).passes]


def test_the_default_pipeline_is_pipeline_text() -> None:
    g = build_toy()
    exe = gc.compile(g, params=_toy_data()[0], reads={"logits": [-1]}, backend="reference",
                     pipeline="default")
    assert exe.report().passes == ["dead-outputs{reads=logits[7]}", "prune-rows", "fold",
                                   "cse", "dce"]
    assert exe.graph.outputs["logits"].shape == (1, 64), "only the row read is computed"


def test_passes_act_on_the_rows_in_the_ir() -> None:
    g = build_toy()
    marked = dead_outputs(g, {"logits": [-1]})
    assert list(marked.outputs) == ["logits"] and marked.output_rows("logits") == (7,)
    pruned = prune_rows(marked)
    assert pruned.output_rows("logits") is None
    assert pruned.outputs["logits"].shape == (1, 64)
    assert list(g.outputs) == ["logits", "h_pre_norm"], "the input graph is unchanged"


@given(g=graphs(max_nodes=8, max_rank=3, states=True, families=ALL_FAMILIES), data=st.data())
def test_generated_reads_survive_every_pipeline(g: gc.Graph, data: st.DataObject) -> None:
    reads = data.draw(reads_for(g))
    note(gc.to_text(g))
    note(f"reads = {reads}")
    inputs, params, states = random_feeds(g, 0)
    ref = gc.compile(g, params=params, states=states, reads=reads)
    want = ref.run(inputs)
    pipeline = data.draw(st.sampled_from(PIPELINES[2:4] + PIPELINES[5:]))
    exe = gc.compile(g, params=params, states=states, reads=reads, pipeline=pipeline)
    got = exe.run(inputs)
    assert set(got) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
    for name, value in ref.state.items():
        np.testing.assert_allclose(exe.state[name], value, rtol=1e-5, atol=1e-5)


def test_a_pipeline_that_reads_other_rows_is_refused() -> None:
    g = gc.Graph("g")
    g.set_output(g.exp(g.input("x", (4, 4))), "y")
    for pipeline in ("dead-outputs{reads=y[2]}", "prune-rows{reads=y[2]}"):
        with pytest.raises(gc.GraphError, match="reads other rows than this call"):
            gc.compile(g, reads={"y": [0, 1]}, pipeline=pipeline)
    gc.compile(g, reads={"y": [0, 1]}, pipeline="prune-rows{reads=y[0,1]}")  # the same: fine


@pytest.mark.parametrize("pipeline", ["none", "fold", "cse,dce", "default"])
def test_passes_keep_a_forced_inplace_write_legal(pipeline: str) -> None:
    """fold turned exp(scale(x, 1), inplace) into an in-place write over the input x, and
    cse merged a node written in place with another that was still read (found in review)."""
    g = gc.Graph("forced")
    x = g.input("x", (2, 2))
    g.set_output(g.add(g.exp(g.scale(x, 1.0), inplace=True), x), "y")
    a1, a2 = g.exp(x), g.exp(x)
    g.set_output(g.neg(a1, inplace=True), "n")
    g.set_output(g.relu(a2), "r")
    feeds = {"x": np.full((2, 2), 1.0, np.float32)}
    want = gc.compile(g).run(feeds)
    for backend in ("reference", "arena", "jax"):
        got = gc.compile(g, backend=backend, pipeline=pipeline).run(feeds)
        for name, value in want.items():
            np.testing.assert_allclose(np.asarray(got[name]), value, rtol=2e-5, err_msg=name)
