"""Text and JSON formats: the golden toy graph, exact round trips, literals, schema."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import graphc as gc
from graphc.examples.quickstart import build_toy
from graphc.testing.strategies import graphs

TOY = """\
graph @toy {
  %x = input "x" : f32[8, 64]
  %w = param "w" : f32[64, 64]
  %0 = matmul(%x, %w) : f32[8, 64]
  %h = add(%0, %x) : f32[8, 64]
  %2 = rms_norm(%h) {eps = 1e-06} : f32[8, 64]
  %3 = matmul(%2, %w) : f32[8, 64]
  output %3 as "logits"
  output %h as "h_pre_norm"
}
"""


def test_toy_prints_as_in_the_design() -> None:
    assert gc.to_text(build_toy()) == TOY
    assert str(build_toy()) == TOY


def test_toy_round_trips() -> None:
    g = gc.parse_text(TOY)
    assert gc.to_text(g) == TOY
    assert list(g.outputs) == ["logits", "h_pre_norm"]
    assert g.outputs["h_pre_norm"].name == "h"


def test_states_assigns_and_literals_round_trip() -> None:
    g = gc.Graph("kv cache")  # a name that needs quoting
    pos = g.input("pos", (2,), "i32")
    k = g.input("k new", (2, 1, 4))  # a feed name that is not an identifier
    cache = g.state("cache", (8, 1, 4), "f32")
    upd = g.set_rows(cache, pos, k, inplace=True)
    g.assign(cache, upd)
    flags = g.full((2,), 1.0, "bool")
    g.set_output(flags, 'odd "name"')
    g.set_output(g.slice(g.transpose(upd, (1, 0, 2)), axis=2, start=1), "v")
    text = gc.to_text(g)
    assert 'graph @"kv cache" {' in text
    assert '%k_new = input "k new"' in text
    assert "{inplace = true}" in text
    assert "assign %cache, %0" in text
    assert 'output %1 as "odd \\"name\\""' in text
    assert gc.to_text(gc.parse_text(text)) == text
    assert gc.to_text(gc.from_json(gc.to_json(g))) == text


def test_comments_and_free_layout_parse_to_canonical_text() -> None:
    messy = """
    // a comment line
    graph @toy { %x = input "x" : f32[8, 64]   // trailing comment
    %w = param "w":f32[64,64]
    %0 = matmul(%x,%w):f32[8,64] %h = add(%0, %x) : f32[8, 64]
    %2 = rms_norm(%h) {eps = 0.000001} : f32[8, 64]
    %3 = matmul(%2, %w) : f32[8, 64]
    output %3 as "logits" output %h as "h_pre_norm" }
    """
    assert gc.to_text(gc.parse_text(messy)) == TOY


def test_attribute_defaults_and_order_are_canonicalized() -> None:
    text = """graph @g {
  %x = input "x" : f32[2, 3]
  %0 = sum(%x) {keepdims = false} : f32[2]
  %1 = softmax(%x) {axis = -1} : f32[2, 3]
  %2 = scale(%x) {s = 2} : f32[2, 3]
}
"""
    out = gc.to_text(gc.parse_text(text))
    assert "%0 = sum(%x) {axis = 1, keepdims = false} : f32[2]" in out
    assert "%1 = softmax(%x) {axis = 1} : f32[2, 3]" in out
    assert "%2 = scale(%x) {s = 2.0} : f32[2, 3]" in out


@pytest.mark.parametrize("value", [0.1, -2.5e-300, 1e300, math.inf, -math.inf, 3.0])
def test_float_literals_round_trip(value: float) -> None:
    g = gc.Graph()
    x = g.input("x", (2,))
    g.set_output(g.scale(x, value), "y")
    back = gc.parse_text(gc.to_text(g))
    assert back.outputs["y"].attrs["s"] == value
    back = gc.from_json(gc.to_json(g))
    assert back.outputs["y"].attrs["s"] == value


def test_json_document_shape_and_schema() -> None:
    doc = json.loads(gc.to_json(build_toy()))
    assert doc["schema_version"] == 1
    assert [n["id"] for n in doc["nodes"]] == ["x", "w", "0", "h", "2", "3"]
    assert doc["outputs"] == [{"name": "logits", "id": "3"}, {"name": "h_pre_norm", "id": "h"}]
    schema = gc.graph_json_schema()
    assert schema["title"] == "GraphModel"
    assert "schema_version" in schema["required"]


def test_json_rejects_bool_as_number() -> None:
    doc = json.loads(gc.to_json(build_toy()))
    doc["nodes"][4]["attrs"]["eps"] = True
    with pytest.raises(gc.GraphError, match="expected a float"):
        gc.from_json(json.dumps(doc))


@given(graphs(inplace=True))
def test_text_round_trip_property(g: gc.Graph) -> None:
    text = gc.to_text(g)
    back = gc.parse_text(text)
    assert gc.to_text(back) == text
    assert len(back) == len(g)


@given(graphs(inplace=True))
def test_json_round_trip_property(g: gc.Graph) -> None:
    text = gc.to_text(g)
    assert gc.to_text(gc.from_json(gc.to_json(g))) == text


@given(graphs(max_nodes=6), st.data())
def test_parser_only_raises_graph_error_on_mutated_text(g: gc.Graph, data: st.DataObject) -> None:
    text = gc.to_text(g)
    pos = data.draw(st.integers(0, len(text) - 1))
    kind = data.draw(st.sampled_from(["delete", "insert", "replace", "truncate"]))
    junk = data.draw(st.sampled_from([*list('%@{}()[],:="-0123456789ax \n'), "inf", "//"]))
    mutated = {
        "delete": text[:pos] + text[pos + 1:],
        "insert": text[:pos] + junk + text[pos:],
        "replace": text[:pos] + junk + text[pos + 1:],
        "truncate": text[:pos],
    }[kind]
    try:
        gc.parse_text(mutated)
    except gc.GraphError as e:
        # anything else escaping (IndexError, RecursionError, ...) fails the test
        assert str(e).startswith(("<text>:", "error:"))
