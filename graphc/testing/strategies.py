"""Hypothesis strategies that generate valid graphs, reads, data and memory plans.

``graphs()`` builds graphs op by op from a pool of existing tensors, so every generated
graph is valid by construction and shrinks toward few, small nodes (print a failing one
with ``graphc.to_text``: it pastes straight into a golden test). ``reads_for(g)`` draws
what a caller reads (outputs, row subsets, and optionally taps); ``inputs_for`` /
``params_for`` draw small values, so the ops generated (no exp/log/div) stay finite;
``plans(g)`` draws a safe plan from any planner strategy and order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from graphc.graph import Graph
from graphc.tensor import Tensor
from graphc.testing.data import index_bounds, random_array

UNARY = ("neg", "relu", "tanh", "sigmoid", "silu", "gelu")
BINARY = ("add", "sub", "mul", "maximum")
ROWWISE = ("rms_norm", "layer_norm", "softmax")
REDUCE = ("sum", "mean", "max")
VIEWS = ("transpose", "reshape", "slice")
DEFAULT_FAMILIES = ("unary", "binary", "scale", "rowwise", "matmul", "reduce", "view",
                    "concat", "get_rows", "set_rows")



def _float_pool(pool: list[Tensor], min_rank: int = 1) -> list[Tensor]:
    return [t for t in pool if t.dtype == "f32" and t.ndim >= min_rank]


@st.composite
def graphs(
    draw: st.DrawFn,
    max_nodes: int = 10,
    families: Sequence[str] = DEFAULT_FAMILIES,
    max_outputs: int = 3,
    inplace: bool = False,
    max_rank: int = 2,
    max_dim: int = 5,
) -> Graph:
    """A valid graph of up to ``max_nodes`` op nodes drawn from ``families``.

    Leaves are f32 inputs of rank 2 to ``max_rank`` with dimensions up to ``max_dim``,
    and params (plus an i32 index input when the gather/scatter families are used); at
    least one node is an output. With ``inplace=True`` some nodes carry ``inplace=True``.
    """
    g = Graph("gen")
    pool: list[Tensor] = []
    n_in = draw(st.integers(1, 3))
    dim = st.integers(min_value=1, max_value=max_dim)
    rank = draw(st.integers(2, max(2, max_rank)))
    base = tuple(draw(dim) for _ in range(rank))
    for i in range(n_in):
        shape = base if i == 0 or draw(st.booleans()) else tuple(draw(dim) for _ in range(rank))
        pool.append(g.input(f"x{i}", shape))
    n_params = 0

    def new_param(shape: tuple[int, ...]) -> Tensor:
        nonlocal n_params
        n_params += 1
        return g.param(f"w{n_params - 1}", shape)

    idx: Tensor | None = None
    n_nodes = draw(st.integers(1, max_nodes))
    builders: dict[str, Callable[[], Tensor | None]] = {}

    def pick(cands: list[Tensor]) -> Tensor:
        return draw(st.sampled_from(cands))

    def unary() -> Tensor:
        x = pick(_float_pool(pool, 0))
        flag = inplace and draw(st.booleans())
        return g.apply(draw(st.sampled_from(UNARY)), (x,), {"inplace": flag})

    def binary() -> Tensor:
        a = pick(_float_pool(pool, 0))
        same = [t for t in _float_pool(pool, 0) if t.shape == a.shape]
        b = pick(same)
        if draw(st.booleans()) and a.ndim >= 1:
            # a broadcast partner: a row vector over the last axis
            b = g.apply("slice", (b,), {"axis": 0, "start": 0, "stop": 1}) if b.ndim >= 2 else b
        flag = inplace and b.shape == a.shape and draw(st.booleans())
        return g.apply(draw(st.sampled_from(BINARY)), (a, b), {"inplace": flag})

    def scale() -> Tensor:
        s = draw(st.sampled_from([0.5, 1.0, 2.0, -1.0]))
        return g.scale(pick(_float_pool(pool, 0)), s)

    def rowwise() -> Tensor:
        return g.apply(draw(st.sampled_from(ROWWISE)), (pick(_float_pool(pool, 1)),), {})

    def matmul() -> Tensor | None:
        cands = _float_pool(pool, 2)
        if not cands:
            return None
        a = pick(cands)
        return g.matmul(a, new_param((a.shape[-1], draw(dim))))

    def reduce() -> Tensor:
        x = pick(_float_pool(pool, 1))
        axis = draw(st.integers(0, x.ndim - 1))
        return g.apply(draw(st.sampled_from(REDUCE)), (x,),
                       {"axis": axis, "keepdims": draw(st.booleans())})

    def view() -> Tensor | None:
        x = pick(_float_pool(pool, 1))
        kind = draw(st.sampled_from(VIEWS))
        if kind == "transpose":
            return g.transpose(x) if x.ndim >= 2 else None
        if kind == "reshape":
            return g.reshape(x, (x.size,) if x.ndim > 1 else (1, x.size))
        if kind == "transpose" and x.ndim > 2:
            perm = draw(st.permutations(list(range(x.ndim))))
            return g.transpose(x, perm)
        axis = draw(st.integers(0, x.ndim - 1))
        start = draw(st.integers(0, x.shape[axis] - 1))
        stop = draw(st.integers(start + 1, x.shape[axis]))
        return g.slice(x, axis, start, stop)

    def concat() -> Tensor | None:
        x = pick(_float_pool(pool, 1))
        partners = [t for t in _float_pool(pool, 1) if t.shape[1:] == x.shape[1:]]
        return g.concat([x, pick(partners)], axis=0)

    def index() -> Tensor:
        nonlocal idx
        if idx is None:
            idx = g.input("idx", (draw(st.integers(1, 3)),), "i32")
        return idx

    def get_rows() -> Tensor:
        x = pick(_float_pool(pool, 1))
        return g.get_rows(x, index())

    def set_rows() -> Tensor | None:
        i = index()
        dst = pick(_float_pool(pool, 1))
        srcs = [t for t in _float_pool(pool, 1) if t.shape == (i.shape[0], *dst.shape[1:])]
        if not srcs:
            return None
        flag = inplace and draw(st.booleans())
        return g.set_rows(dst, i, pick(srcs), inplace=flag)

    builders.update(unary=unary, binary=binary, scale=scale, rowwise=rowwise, matmul=matmul,
                    reduce=reduce, view=view, concat=concat, get_rows=get_rows,
                    set_rows=set_rows)
    made: list[Tensor] = []
    for _ in range(n_nodes):
        family = draw(st.sampled_from(list(families)))
        t = builders[family]()
        if t is not None:
            pool.append(t)
            made.append(t)
    if not made:
        made.append(g.neg(pool[0]))
    outs = {made[-1]} | set(draw(st.lists(st.sampled_from(made), max_size=max_outputs - 1)))
    for k, t in enumerate(sorted(outs, key=made.index)):
        g.set_output(t, f"out{k}")
    return g


@st.composite
def inputs_for(draw: st.DrawFn, g: Graph) -> dict[str, Any]:
    """Arrays for every input of ``g``; i32 index inputs stay in range of every source."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    bounds = index_bounds(g)
    return {n: random_array(t, rng, bounds.get(n)) for n, t in g.inputs.items()}


@st.composite
def params_for(draw: st.DrawFn, g: Graph) -> dict[str, Any]:
    """Arrays for every param of ``g``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return {n: random_array(t, rng) for n, t in g.params.items()}


@st.composite
def reads_for(draw: st.DrawFn, g: Graph, taps: bool = False) -> dict[Any, object]:
    """What a caller reads from ``g``: some outputs, each whole or a few rows (negative
    indices included); with ``taps``, sometimes also a tensor that is not an output."""
    names = draw(st.lists(st.sampled_from(sorted(g.outputs)), min_size=1, unique=True))
    reads: dict[Any, object] = {}
    for n in names:
        t = g.outputs[n]
        if t.ndim and draw(st.booleans()):
            reads[n] = draw(st.lists(st.integers(-t.shape[0], t.shape[0] - 1), min_size=1,
                                     max_size=3))
        else:
            reads[n] = "all"
    if taps:
        marked = set(g.outputs.values())
        others = [t for t in g.nodes if not t.is_leaf and t not in marked]
        if others and draw(st.booleans()):
            reads[draw(st.sampled_from(others))] = "all"
    return reads


@st.composite
def plans(draw: st.DrawFn, g: Graph, reads: Any = None) -> Any:
    """A memory plan of ``g`` from any planner strategy over any scheduling order."""
    from graphc.passes.memory import STRATEGIES, plan_memory
    from graphc.passes.schedule import SCHEDULES, schedule

    order = schedule(g, draw(st.sampled_from(SCHEDULES)), reads=reads)
    return plan_memory(g, order=order, reads=reads, strategy=draw(st.sampled_from(STRATEGIES)),
                       inplace=draw(st.booleans()))


def mutate_plan(g: Graph, plan: Any, fault: str | None = None, seed: int = 0) -> Any:
    """One known fault injected into ``plan`` (see :mod:`graphc.testing.mutations`)."""
    from graphc.testing.mutations import mutate_plan as mutate

    return mutate(g, plan, fault, seed)
