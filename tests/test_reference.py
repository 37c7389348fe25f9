"""compile() with the reference backend: running, reads, state, and errors on bad feeds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphc as gc
from graphc.testing.strategies import graphs, inputs_for, params_for


def _toy() -> tuple[gc.Graph, dict[str, np.ndarray], dict[str, np.ndarray]]:
    g = gc.Graph("toy")
    x = g.input("x", (8, 16))
    w = g.param("w", (16, 16))
    h = g.add(g.matmul(x, w), x, name="h")
    g.set_output(g.matmul(g.rms_norm(h), w), "logits")
    g.set_output(h, "h_pre_norm")
    rng = np.random.default_rng(1)
    return g, {"x": rng.standard_normal((8, 16), dtype=np.float32)}, {
        "w": rng.standard_normal((16, 16), dtype=np.float32)}


def test_toy_equals_numpy() -> None:
    g, feeds, params = _toy()
    out = gc.compile(g, params=params).run(feeds)
    x, w = feeds["x"], params["w"]
    h = x @ w + x
    logits = (h / np.sqrt((h * h).mean(-1, keepdims=True) + 1e-6)) @ w
    np.testing.assert_allclose(out["h_pre_norm"], h, rtol=1e-6)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)


def test_reads_select_outputs_and_rows() -> None:
    g, feeds, params = _toy()
    full = gc.compile(g, params=params).run(feeds)
    out = gc.compile(g, params=params, reads={"logits": [-1, 0]}).run(feeds)
    assert list(out) == ["logits"]
    np.testing.assert_array_equal(out["logits"], full["logits"][[7, 0]])
    out = gc.compile(g, params=params, reads="logits[-1]+h_pre_norm").run(feeds)
    assert out["logits"].shape == (1, 16) and out["h_pre_norm"].shape == (8, 16)
    h = g.outputs["h_pre_norm"]
    out = gc.compile(g, params=params, reads=[h]).run(feeds)
    assert list(out) == ["h_pre_norm"]


def test_reading_a_non_output_is_refused_unless_protected() -> None:
    g, feeds, params = _toy()
    norm = next(t for t in g.nodes if t.op == "rms_norm")
    with pytest.raises(gc.GraphError) as info:
        gc.compile(g, params=params, reads={norm: "all"})
    assert "is not an output" in str(info.value) and "set_output" in str(info.value)
    assert "%2 = rms_norm(%h)" in str(info.value)
    exe = gc.compile(g, params=params, reads={norm: "all"}, taps="protect")
    assert exe.run(feeds)["tap"].shape == (8, 16)
    assert "tap" not in g.outputs, "taps='protect' marks a copy, never the caller's graph"
    assert exe.graph is not g and exe.graph.outputs["tap"].op == "rms_norm"
    with pytest.raises(gc.GraphError, match="is not an output of @toy"):
        gc.compile(g, params=params, reads={"nope": "all"})
    with pytest.raises(gc.GraphError, match="out of range: it has 8 rows"):
        gc.compile(g, params=params, reads={"logits": [8]})


def test_state_persists_between_runs() -> None:
    g = gc.Graph("counter")
    step = g.input("step", (1, 2))
    pos = g.input("pos", (1,), "i32")
    acc = g.state("acc", (4, 2))
    new = g.set_rows(acc, pos, step)
    g.assign(acc, new)
    g.set_output(g.sum(new, axis=0), "total")
    exe = gc.compile(g)
    for i in range(3):
        out = exe.run({"step": np.full((1, 2), i + 1, np.float32), "pos": np.array([i], np.int32)})
    np.testing.assert_array_equal(out["total"], [6.0, 6.0])
    np.testing.assert_array_equal(exe.state["acc"][:, 0], [1, 2, 3, 0])
    seeded = gc.compile(g, states={"acc": np.ones((4, 2), np.float32)})
    out = seeded.run({"step": np.zeros((1, 2), np.float32), "pos": np.array([3], np.int32)})
    np.testing.assert_array_equal(out["total"], [3.0, 3.0])


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "missing input 'x' (f32[8, 16])"),
        ({"x": np.zeros((8, 16), np.float32), "y": 1}, "unknown input 'y'"),
        ({"x": np.zeros((8, 15), np.float32)}, "input 'x' has shape [8, 15], expected [8, 16]"),
        ({"x": np.zeros((8, 16), np.float64)}, "input 'x' has dtype float64, expected f32"),
        ({"x": "text"}, "input 'x' cannot be converted to f32"),
    ],
)
def test_bad_feeds_name_the_input(feeds: dict, message: str) -> None:
    g, _, params = _toy()
    exe = gc.compile(g, params=params)
    with pytest.raises(gc.GraphError) as info:
        exe.run(feeds)
    assert message in str(info.value)


def test_bad_params_and_backend() -> None:
    g, _, params = _toy()
    with pytest.raises(gc.GraphError, match="missing param 'w'"):
        gc.compile(g)
    with pytest.raises(gc.GraphError, match="unknown param 'v'"):
        gc.compile(g, params={**params, "v": params["w"]})
    with pytest.raises(gc.GraphError, match="unknown backend 'tpu'"):
        gc.compile(g, params=params, backend="tpu")
    with pytest.raises(gc.GraphError, match="index 9 is out of bounds"):
        h = gc.Graph()
        x = h.input("x", (2, 2))
        i = h.input("i", (1,), "i32")
        h.set_output(h.get_rows(x, i), "y")
        gc.compile(h).run({"x": np.zeros((2, 2), np.float32), "i": [9]})


def test_lists_are_converted_to_the_declared_dtype() -> None:
    g = gc.Graph()
    i = g.input("i", (2,), "i32")
    g.set_output(g.cast(i, "f32"), "y")
    np.testing.assert_array_equal(gc.compile(g).run({"i": [3, 4]})["y"], [3.0, 4.0])


@given(graphs(), st.data())
def test_generated_graphs_run_and_stay_finite(g: gc.Graph, data: st.DataObject) -> None:
    exe = gc.compile(g, params=data.draw(params_for(g)))
    out = exe.run(data.draw(inputs_for(g)))
    assert set(out) == set(g.outputs)
    for name, value in out.items():
        assert value.shape == g.outputs[name].shape
        assert np.all(np.isfinite(value))
