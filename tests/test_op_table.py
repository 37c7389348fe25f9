"""One op, one place: every op of the op table has every rule graphc needs, and adding an
op is one ``register`` call plus its backend rules (STYLE.md item 9)."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, settings

import graphc as gc
from graphc.backends.reference import RULES
from graphc.ops import (
    FREE,
    OP_TABLE,
    Cost,
    Kind,
    OpDef,
    OpError,
    RuleTable,
    elementwise_rows,
    register,
    unregister,
)
from graphc.passes.cost import cost, node_bytes, node_flops
from graphc.passes.row_pruning import prune_rows
from graphc.tensor import Shape
from graphc.testing.strategies import FAMILY_OPS, graphs
from tests.test_ops import CASES

jax_lowering: ModuleType | None
try:
    from graphc.backends import jax_lowering
except ImportError:  # no JAX installed: the lowering checks are skipped
    jax_lowering = None

KINDS = frozenset(typing.get_args(Kind))
SEARCH = settings(max_examples=200, database=None, derandomize=True, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), deadline=None)


def _missing(name: str, op: OpDef) -> list[str]:
    """What ``op`` lacks, one line each (empty: complete)."""
    out: list[str] = []
    if not callable(op.infer):
        out.append("shape rule")
    if op.kind not in KINDS:
        out.append(f"kind ({op.kind!r} is not one of {sorted(KINDS)})")
    if (op.kind == "view") != op.is_view or op.is_view != (op.view is not None):
        out.append("view layout (kind 'view' exactly when view= is given)")
    if op.rows is not None and not callable(op.rows):
        out.append("row rule (a rule, or None for none)")
    if not isinstance(op.cost, Cost) or not callable(op.cost.flops) \
            or not callable(op.cost.moved):
        out.append("cost rule")
    elif op.is_view and op.cost is not FREE:
        out.append("cost rule (a view must be FREE)")
    if op.family not in FAMILY_OPS:  # each family is one builder of graphs()
        out.append(f"generator family ({op.family!r} is not one of {list(FAMILY_OPS)})")
    if op.kind != "leaf":
        if name not in RULES:
            out.append("reference rule (graphc.backends.reference.RULES)")
        if jax_lowering is not None and name not in jax_lowering.LOWERINGS:
            out.append("JAX lowering (graphc.backends.jax_lowering.LOWERINGS)")
    return [f"{name}: no {what}" for what in out]


def test_every_op_has_every_rule() -> None:
    assert OP_TABLE, "empty op table"
    problems = [p for name, op in OP_TABLE.items() for p in _missing(name, op)]
    assert not problems, "\n".join(problems)
    for name, op in OP_TABLE.items():
        assert op.name == name
        assert name in FAMILY_OPS[op.family]
    assert not set(RULES) - set(OP_TABLE), "reference rules for unknown ops"
    if jax_lowering is not None:
        assert not set(jax_lowering.LOWERINGS) - set(OP_TABLE), "lowerings for unknown ops"


def test_ops_without_a_row_rule_say_so() -> None:
    assert {n for n, o in OP_TABLE.items() if o.rows is None} == {
        "set_rows", "full", "const", "as_strided", "opaque", "opaque_inplace"}


def test_the_completeness_check_catches_a_gap() -> None:
    good = OP_TABLE["exp"]
    gaps = [
        OpDef("gap", 1, good.infer, "elementwise", rows=None, cost=good.cost, family="nope"),
        OpDef("gap", 1, good.infer, "view", rows=None, cost=good.cost, family="unary"),
        OpDef("gap", 1, good.infer, "elementwise", rows=None, cost=None,  # type: ignore[arg-type]
              family="unary"),
    ]
    for gap in gaps:
        assert _missing("gap", gap), gap
    assert any("reference rule" in p for p in _missing("gap", OpDef(
        "gap", 1, good.infer, "elementwise", rows=None, cost=good.cost, family="unary")))
    with pytest.raises(TypeError, match="rows"):  # the row rule, cost and family are required
        OpDef("gap", 1, good.infer, "elementwise")  # type: ignore[call-arg]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_row_and_cost_rules_run_on_every_op(case: Any) -> None:
    name, build, arrays, _ = case
    g = gc.Graph(name)
    leaves = [g.input(f"a{i}", a.shape, "i32" if a.dtype == np.int32 else "f32")
              for i, a in enumerate(arrays)]
    build(g, *leaves)
    for t in g.nodes:
        if t.is_leaf:
            continue
        op = OP_TABLE[t.op]
        if op.rows is not None:
            modes = op.rows(t)
            assert modes is None or (len(modes) == len(t.inputs)
                                     and set(modes) <= {"rows", "all"}), (t.op, modes)
        flops, (read, written) = node_flops(t), node_bytes(t)
        assert all(isinstance(v, int) and v >= 0 for v in (flops, read, written)), t.op
        if op.is_view:
            assert (flops, read, written) == (0, 0, 0)


def test_register_refuses_inconsistent_definitions() -> None:
    exp = OP_TABLE["exp"]
    with pytest.raises(ValueError, match="already registered"):
        register(exp)
    with pytest.raises(ValueError, match="needs view="):
        register(OpDef("bad", 1, exp.infer, "view", rows=None, cost=FREE, family="view"))
    with pytest.raises(ValueError, match="must be FREE"):
        register(OpDef("bad", 1, exp.infer, "view", view=OP_TABLE["slice"].view, rows=None,
                       cost=exp.cost, family="view"))
    with pytest.raises(ValueError, match="generator family"):
        register(OpDef("bad", 1, exp.infer, "elementwise", rows=None, cost=exp.cost,
                       family=""))
    assert "bad" not in OP_TABLE


def test_rule_tables_are_keyed_by_the_op_table() -> None:
    with pytest.raises(ValueError, match="'nope' is not an op"):
        RULES["nope"] = RULES["exp"]
    with pytest.raises(ValueError, match="'input' is not an op"):
        RULES.update({"input": RULES["exp"]})
    with pytest.raises(ValueError, match=r"no rule for op.*exp"):
        RuleTable("a test backend", {n: None for n in OP_TABLE if n != "exp"})
    assert "nope" not in RULES and "input" not in RULES
    g = gc.Graph("missing")
    g.set_output(g.exp(g.input("x", (2,))), "y")
    saved = RULES.pop("exp")
    try:
        with pytest.raises(gc.GraphError, match="no rule for op 'exp'"):
            gc.compile(g).run({"x": np.zeros(2, np.float32)})
    finally:
        RULES["exp"] = saved


# ----------------------------------------------------------------------------- a new op


def _infer_square(shapes: list[Shape], dtypes: list[str], attrs: dict[str, Any]
                  ) -> tuple[Shape, str]:
    if dtypes[0] not in ("f32", "f16", "bf16"):
        raise OpError(f"square needs a float operand, got {dtypes[0]}")
    return shapes[0], dtypes[0]


@pytest.fixture
def square() -> Iterator[str]:
    """A throwaway elementwise op: one table entry plus its two backend rules."""
    register(OpDef("square", 1, _infer_square, "elementwise", inplace=True,
                   doc="x * x (a test op).", rows=elementwise_rows,
                   cost=Cost.per_element(1), family="unary"))
    RULES["square"] = lambda x, a, t: x[0] * x[0]
    if jax_lowering is not None:
        jax_lowering.LOWERINGS["square"] = lambda x, a, t: x[0] * x[0]
    try:
        yield "square"
    finally:
        unregister("square")
    assert "square" not in OP_TABLE and "square" not in RULES
    assert jax_lowering is None or "square" not in jax_lowering.LOWERINGS
    assert "square" not in FAMILY_OPS["unary"]
    gone = gc.Graph("gone")
    with pytest.raises(gc.GraphError, match="unknown op 'square'"):
        gone.apply("square", [gone.input("x", (2,))])


def test_a_new_op_is_one_entry_plus_its_rules(square: str) -> None:
    g = gc.Graph("sq")
    x = g.input("x", (4, 3))
    w = g.param("w", (3, 2))
    y = g.apply(square, [x])
    g.set_output(g.matmul(y, w), "logits")
    gc.verify(g)
    text = gc.to_text(g)
    assert f"= {square}(%x)" in text and gc.to_text(gc.parse_text(text)) == text

    # cost: one FLOP per element, operand read once, result written once
    assert (node_flops(y), node_bytes(y)) == (12, (48, 48))
    assert cost(g).flops == 12 + 2 * 4 * 2 * 3

    # row pruning moves a row selection through it
    pruned = prune_rows(g, {"logits": [-1]})
    (sq,) = [t for t in pruned.nodes if t.op == square]
    assert sq.shape == (1, 3)

    # the reference backend (and JAX) compute it, before and after pruning
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (4, 3)).astype(np.float32)
    W = rng.uniform(-2, 2, (3, 2)).astype(np.float32)
    want = (X.astype(np.float64) ** 2) @ W
    got = gc.compile(g, params={"w": W}).run({"x": X})["logits"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    got = gc.compile(pruned, params={"w": W}).run({"x": X})["logits"]
    np.testing.assert_allclose(got, want[-1:], rtol=1e-5, atol=1e-5)
    if jax_lowering is not None:
        outs, _ = jax_lowering.lower(g)({"w": W}, {}, {"x": X})
        np.testing.assert_allclose(np.asarray(outs["logits"]), want, rtol=1e-4, atol=1e-4)

    # the fuzzer's unary family draws it
    assert square in FAMILY_OPS["unary"]
    drawn = find(graphs(max_nodes=4, families=("unary",)),
                 lambda h: any(t.op == square for t in h.nodes), settings=SEARCH)
    gc.verify(drawn)
