"""The verifier: each rule, on graphs put together without the checking builder (the way a
buggy pass or tool could produce them)."""

from __future__ import annotations

import pytest

import graphc as gc
from graphc.tensor import Tensor
from graphc.verifier import problems


def _raw(g: gc.Graph, op: str, inputs: tuple[Tensor, ...], attrs: dict, shape: tuple,
         dtype: str = "f32", name: str | None = None) -> Tensor:
    t = Tensor(g, op, inputs, attrs, shape, dtype, name)
    g._nodes.append(t)
    return t


def _base() -> tuple[gc.Graph, Tensor]:
    g = gc.Graph("v")
    return g, g.input("x", (2, 3))


def _expect(g: gc.Graph, message: str) -> gc.GraphError:
    with pytest.raises(gc.GraphError) as info:
        gc.verify(g)
    assert message in str(info.value)
    return info.value


def test_valid_graph_passes() -> None:
    g, x = _base()
    g.set_output(g.softmax(g.exp(x)), "y")
    gc.verify(g)
    assert problems(g) == []


def test_error_names_the_node_and_prints_its_line() -> None:
    g, x = _base()
    bad = _raw(g, "neg", (x,), {}, (3, 2), name="oops")
    err = _expect(g, "claims type f32[3, 2] but neg gives f32[2, 3]")
    assert err.node is bad
    assert "at: %oops = neg(%x) : f32[3, 2]" in str(err)


def test_use_before_definition() -> None:
    g, x = _base()
    a = Tensor(g, "neg", (x,), {}, (2, 3), "f32")
    _raw(g, "neg", (a,), {}, (2, 3))
    g._nodes.append(a)
    _expect(g, "used before its definition")


def test_cycle() -> None:
    g, x = _base()
    a = _raw(g, "add", (x, x), {}, (2, 3), name="a")
    b = _raw(g, "neg", (a,), {}, (2, 3), name="b")
    object.__setattr__(a, "inputs", (x, b))
    _expect(g, "cycle: %a -> %b")


def test_operand_outside_graph() -> None:
    g, _x = _base()
    other = gc.Graph("o")
    y = other.input("y", (2, 3))
    _raw(g, "neg", (y,), {}, (2, 3))
    _expect(g, "not a node of this graph")


def test_unknown_op_and_arity() -> None:
    g, x = _base()
    _raw(g, "frob", (x,), {}, (2, 3))
    _expect(g, "unknown op 'frob'")
    g, x = _base()
    _raw(g, "add", (x,), {}, (2, 3))
    _expect(g, "add takes 2 operand(s), got 1")


def test_bad_attribute() -> None:
    g, x = _base()
    _raw(g, "scale", (x,), {"s": "big"}, (2, 3))
    _expect(g, "attribute 's' of scale: expected a float")
    g, x = _base()
    _raw(g, "softmax", (x,), {"axis": -1}, (2, 3))
    _expect(g, "not canonical")


def test_view_region_out_of_bounds() -> None:
    g, x = _base()
    _raw(g, "slice", (x,), {"axis": 1, "start": 2, "stop": 5}, (2, 3))
    _expect(g, "out of bounds")


def test_duplicate_leaf_names() -> None:
    g, _x = _base()
    _raw(g, "param", (), {}, (1,), name="x")
    _expect(g, "also used by another leaf")


def test_absurd_leaf_shape() -> None:
    g, _x = _base()
    _raw(g, "input", (), {}, (2**21, 2**21), name="big")
    _expect(g, "more than the limit 2**40")


def test_assign_rules() -> None:
    g, x = _base()
    s = g.state("s", (2, 3))
    g._assigns[s] = _raw(g, "sum", (x,), {"axis": 1, "keepdims": False}, (2,))
    _expect(g, "assign to state 's' of type f32[2, 3] from a value of type f32[2]")
    g, x = _base()
    g._assigns[x] = g.neg(x)
    _expect(g, "assign target is a input, not a state")


def test_inplace_rules() -> None:
    g, x = _base()
    w = g.param("w", (3, 3))
    _raw(g, "matmul", (x, w), {"inplace": True}, (2, 3))
    _expect(g, "matmul cannot write in place")
    g, x = _base()
    row = g.slice(x, 0, 0, 1)
    _raw(g, "add", (row, x), {"inplace": True}, (2, 3))
    _expect(g, "must produce operand 0's type")


def test_output_outside_graph() -> None:
    g, _x = _base()
    other = gc.Graph("o")
    g._outputs["y"] = other.input("y", (1,))
    _expect(g, "output 'y' is not a node of this graph")


def test_several_problems_are_counted() -> None:
    g, x = _base()
    _raw(g, "frob", (x,), {}, (2, 3))
    _raw(g, "frob2", (x,), {}, (2, 3))
    _expect(g, "(and 1 more problem(s))")
    assert len(problems(g)) == 2
