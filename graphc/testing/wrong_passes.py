"""Passes that are wrong on purpose, of the kinds compilers really have, and the correct
passes that serve as controls: what ``benchmarks/bench_fuzz.py`` and the tests measure
``graphc fuzz`` against. Importing this module registers every pass (names
``wrong-*`` and ``right-*``); :data:`WRONG` and :data:`CONTROLS` list them.

Each wrong pass is written as a pass author would write it, against the README's
rewrite API (:func:`~graphc.passes.rewrite_pattern`, :class:`~graphc.passes.Rebuilder`),
or as a one-line mutant of graphc's own ``fold``, ``cse``, ``dce`` and ``prune-rows``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from graphc.graph import Graph
from graphc.ops import OP_TABLE
from graphc.passes import Pass, Rebuilder, pattern_pass, register_pass, rewrite_pattern
from graphc.passes.fold import PATTERNS as FOLD_PATTERNS
from graphc.passes.rewrite import live_nodes
from graphc.passes.row_pruning import prune_rows
from graphc.tensor import Tensor

FLOATS = ("f32", "f16", "bf16")


def _is_const(t: Tensor) -> bool:
    return t.op in ("full", "const")


# ----------------------------------------------------------------------------- patterns

@rewrite_pattern("sub")
def sub_to_add(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """sub(a, b) -> add(a, b)  (wrong: a sign)"""
    return rw.dst.add(*node.inputs)


@rewrite_pattern("scale")
def scale_sum(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """scale(scale(x, a), b) -> scale(x, a + b)  (wrong constant fold: a * b)"""
    (x,) = node.inputs
    if x.op != "scale" or node.inplace:
        return None
    return rw.dst.scale(x.inputs[0], x.attrs["s"] + node.attrs["s"])


@rewrite_pattern("div")
def div_by_const(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """div(x, c) -> x for any constant c  (wrong: only for c == 1)"""
    a, b = node.inputs
    return a if _is_const(b) and a.shape == node.shape else None


@rewrite_pattern("sub")
def sub_swap(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """sub(a, b) -> sub(b, a) to canonicalize operand order  (wrong: sub does not commute)"""
    a, b = node.inputs
    return rw.dst.sub(b, a) if a.uid > b.uid else None


@rewrite_pattern("concat")
def concat_sorted(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """concat(parts) -> concat(parts in operand order)  (wrong: concat is ordered)"""
    ins = list(node.inputs)
    order = sorted(ins, key=lambda t: t.uid)
    return None if order == ins else rw.dst.concat(order, axis=node.attrs["axis"])


@rewrite_pattern("sum")
def sum_of_add(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """sum(a + b) -> sum(a) + sum(b)  (wrong when b is broadcast along the axis summed)"""
    (x,) = node.inputs
    if x.op != "add":
        return None
    a, b = x.inputs
    if a.ndim != b.ndim:
        return None
    ax, keep = node.attrs["axis"], node.attrs["keepdims"]
    out = rw.dst.add(rw.dst.sum(a, ax, True), rw.dst.sum(b, ax, True))
    if not keep:
        out = rw.dst.reshape(out, node.shape)
    return out if out.shape == node.shape else None


@rewrite_pattern("softmax")
def softmax_through_transpose(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """softmax(transpose(x, p), axis) -> transpose(softmax(x, axis), p)  (wrong axis: p[axis])"""
    (x,) = node.inputs
    if x.op != "transpose":
        return None
    axis = node.attrs["axis"] % node.ndim
    return rw.dst.transpose(rw.dst.softmax(x.inputs[0], axis=axis), x.attrs["perm"])


@rewrite_pattern("transpose")
def transpose_compose(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """transpose(transpose(x, p), q) -> transpose(x, q[p])  (wrong order: p[q])"""
    (x,) = node.inputs
    if x.op != "transpose":
        return None
    inner, perm = x.attrs["perm"], node.attrs["perm"]
    return rw.dst.transpose(x.inputs[0], tuple(perm[i] for i in inner))


@rewrite_pattern("sqrt")
def sqrt_of_square(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """sqrt(x * x) -> x  (wrong for negative x: |x|)"""
    (x,) = node.inputs
    if x.op == "mul" and x.inputs[0] is x.inputs[1] and x.inputs[0].shape == node.shape:
        return x.inputs[0]
    return None


@rewrite_pattern("log")
def log_of_mul(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """log(a * b) -> log(a) + log(b)  (wrong unless a and b are positive)"""
    (x,) = node.inputs
    if x.op != "mul" or x.inputs[0].shape != x.inputs[1].shape:
        return None
    return rw.dst.add(rw.dst.log(x.inputs[0]), rw.dst.log(x.inputs[1]))


@rewrite_pattern("argmax")
def argmax_ramp(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """argmax(x) -> argmax(x + tiny ramp)  (wrong on ties: picks the last)"""
    (x,) = node.inputs
    if x.op == "add" or x.dtype != "f32":
        return None
    axis = node.attrs["axis"] % x.ndim
    n = x.shape[axis]
    shape = [1] * x.ndim
    shape[axis] = n
    ramp = rw.dst.const([1e-6 * i for i in range(n)], tuple(shape))
    return rw.dst.argmax(rw.dst.add(x, ramp), axis, node.attrs["keepdims"])


@rewrite_pattern("mean")
def mean_as_sum(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """mean(x, axis) -> sum(x, axis) / x.shape[0]  (wrong axis: x.shape[axis])"""
    (x,) = node.inputs
    s = rw.dst.sum(x, node.attrs["axis"], node.attrs["keepdims"])
    return rw.dst.scale(s, 1.0 / x.shape[0])


@rewrite_pattern("sub")
def sub_zero_commutes(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """fold mutant: 0 - x -> x  (sub's identity taken as commuting)"""
    a, b = node.inputs
    for c, x in ((b, a), (a, b)):
        if _is_const(c) and all(float(v) == 0.0 for v in _values(c)) and x.shape == node.shape:
            return x
    return None


@rewrite_pattern("neg")
def neg_neg_half(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """fold mutant: neg(neg(x)) -> neg(x)  (returns the operand, not its operand)"""
    (x,) = node.inputs
    return x if x.op == "neg" else None


@rewrite_pattern("cast")
def cast_round_trip(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """fold mutant: cast(cast(x, lower), x.dtype) -> x  (drops the rounding)"""
    (x,) = node.inputs
    if x.op == "cast" and x.inputs[0].dtype == node.dtype:
        return x.inputs[0]
    return None


def _values(c: Tensor) -> list[Any]:
    return [c.attrs["value"]] if c.op == "full" else list(c.attrs["values"])


pattern_pass("wrong-sub-to-add", "sub -> add", [sub_to_add])
pattern_pass("wrong-fold-scale", "scale(scale(x,a),b) -> scale(x,a+b)", [scale_sum])
pattern_pass("wrong-fold-div", "x / c -> x", [div_by_const])
pattern_pass("wrong-swap-sub", "sub(a,b) -> sub(b,a)", [sub_swap])
pattern_pass("wrong-swap-concat", "concat parts reordered", [concat_sorted])
pattern_pass("wrong-broadcast-sum", "sum(a+b) -> sum a + sum b", [sum_of_add])
pattern_pass("wrong-axis-softmax", "softmax through a transpose", [softmax_through_transpose])
pattern_pass("wrong-perm-compose", "transpose chain composed the wrong way",
             [transpose_compose])
pattern_pass("wrong-sqrt-square", "sqrt(x*x) -> x", [sqrt_of_square])
pattern_pass("wrong-log-mul", "log(a*b) -> log a + log b", [log_of_mul])
pattern_pass("wrong-argmax-ties", "argmax with a tie-breaking ramp", [argmax_ramp])
pattern_pass("wrong-axis-mean", "mean -> sum / rows", [mean_as_sum])
pattern_pass("wrong-fold-zero-sub", "fold with 0 - x -> x",
             [*FOLD_PATTERNS, sub_zero_commutes])
pattern_pass("wrong-fold-neg", "fold with neg(neg(x)) -> neg(x)",
             [p for p in FOLD_PATTERNS if p.label != "neg_of_neg"] + [neg_neg_half])
pattern_pass("wrong-fold-cast", "fold with cast round trips dropped",
             [cast_round_trip, *FOLD_PATTERNS])


# ----------------------------------------------------------------------------- Rebuilder passes

@register_pass
@dataclass
class DropLastOutput(Pass):
    """Drops the last output when there are several (a pass that forgets one)."""

    name = "wrong-drop-output"
    summary = "forgets the last output"

    def run(self, g: Graph) -> Graph:
        outs = dict(g.outputs)
        if len(outs) >= 2:
            outs.pop(list(outs)[-1])
        rb = Rebuilder(g)
        for t in g.nodes:
            if not t.is_leaf:
                rb.copy(t)
        return rb.finish(outputs=outs)


def _cse(g: Graph, key_attrs: bool = True, merge_leaves: bool = False) -> Graph:
    rb = Rebuilder(g)
    seen: dict[Any, Tensor] = {}
    if merge_leaves:  # a leaf's users read the first leaf of its type
        first: dict[Any, Tensor] = {}
        for t in g.nodes:
            if t.op == "input":
                rb.map[t] = first.setdefault((t.shape, t.dtype), rb.map[t])
    overwritten = {t.inputs[0] for t in g.nodes if t.inplace and t.inputs}
    for t in g.nodes:
        if t.is_leaf:
            continue
        ins = tuple(rb.map[i] for i in t.inputs)
        if t.inplace or t in overwritten:
            rb.map[t] = rb.copy(t, ins)
            continue
        attrs = repr(sorted(t.attrs.items())) if key_attrs else ""
        key = (t.op, tuple(id(i) for i in ins), attrs, t.shape, t.dtype)
        if key not in seen:
            seen[key] = rb.copy(t, ins)
        rb.map[t] = seen[key]
    return rb.finish()


@register_pass
@dataclass
class CseNoAttrs(Pass):
    """cse mutant: the key leaves out the attributes (scale by 2 merged with scale by 0.5)."""

    name = "wrong-cse-attrs"
    summary = "cse keyed without attributes"

    def run(self, g: Graph) -> Graph:
        return _cse(g, key_attrs=False)


@register_pass
@dataclass
class CseLeaves(Pass):
    """cse mutant: inputs of one type merged as if equal."""

    name = "wrong-cse-leaves"
    summary = "cse merges inputs"

    def run(self, g: Graph) -> Graph:
        return _cse(g, merge_leaves=True)


@register_pass
@dataclass
class DceNoAssigns(Pass):
    """dce mutant: state updates are not roots, so they are dropped."""

    name = "wrong-dce-assigns"
    summary = "dce forgets state updates"

    def run(self, g: Graph) -> Graph:
        live = live_nodes(g, list(g.outputs.values()))
        rb = Rebuilder(g)
        for t in g.nodes:
            if not t.is_leaf and t in live:
                rb.copy(t)
        return rb.finish(assigns=[(s, v) for s, v in g.assigns.items() if v in live or
                                  v.is_leaf])


@register_pass
@dataclass
class DceLeafOutputs(Pass):
    """dce mutant: an output that is a leaf (a state read back) is taken for dead."""

    name = "wrong-dce-leaf-outputs"
    summary = "dce drops outputs that are leaves"

    def run(self, g: Graph) -> Graph:
        outs = {n: t for n, t in g.outputs.items() if not t.is_leaf}
        if not outs:
            return _copy(g)
        live = live_nodes(g, [*outs.values(), *g.assigns.values()])
        rb = Rebuilder(g)
        for t in g.nodes:
            if not t.is_leaf and t in live:
                rb.copy(t)
        return rb.finish(outputs=outs)


def _copy(g: Graph) -> Graph:
    rb = Rebuilder(g)
    for t in g.nodes:
        if not t.is_leaf:
            rb.copy(t)
    return rb.finish()


@contextmanager
def _reductions_rowwise() -> Iterator[None]:
    """The prune-rows mutant's op table: a reduction is row-wise whatever its axis."""
    saved = {n: OP_TABLE[n] for n in ("sum", "mean", "max")}
    try:
        for n, d in saved.items():
            OP_TABLE[n] = dataclasses.replace(d, rows=lambda t: ["rows"] if t.ndim >= 1
                                              else None)
        yield
    finally:
        OP_TABLE.update(saved)


@register_pass
@dataclass
class PruneRowsAnyAxis(Pass):
    """prune-rows mutant: reductions pass the row selection through on any axis (the
    ``axis != 0`` test forgotten)."""

    name = "wrong-prune-axis"
    summary = "prune-rows through reductions over rows"

    def run(self, g: Graph) -> Graph:
        with _reductions_rowwise():
            return prune_rows(g)


@register_pass
@dataclass
class PruneRowsSorted(Pass):
    """prune-rows mutant: computes the rows read sorted and without repeats, not in the
    order read."""

    name = "wrong-prune-sorted"
    summary = "prune-rows with the rows sorted"

    def run(self, g: Graph) -> Graph:
        g2 = g.clone()
        for name in g2.outputs:
            rows = g2.output_rows(name)
            if rows is not None:
                g2.set_output_rows(name, sorted(set(rows)))
        return prune_rows(g2)


@register_pass
@dataclass
class MutatesInput(Pass):
    """Right result, but it marks a debugging output on the graph it was given (the
    habit of passes that edit their input in place)."""

    name = "wrong-mutates-input"
    summary = "changes its input graph"

    def run(self, g: Graph) -> Graph:
        out = _copy(g)
        made = [t for t in g.nodes if not t.is_leaf]
        if made and "debug" not in g.outputs:
            g.set_output(made[-1], "debug")
        return out


# ----------------------------------------------------------------------------- controls

@rewrite_pattern("neg")
def neg_of_neg(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """neg(neg(x)) -> x"""
    (x,) = node.inputs
    return x.inputs[0] if x.op == "neg" else None


@rewrite_pattern("add")
def add_self(node: Tensor, rw: Rebuilder) -> Tensor | None:
    """add(x, x) -> scale(x, 2)"""
    a, b = node.inputs
    if a is not b or a.dtype not in FLOATS:
        return None
    return rw.dst.scale(a, 2.0, name=node.name)


pattern_pass("right-simplify-negs", "the README's example pass", [neg_of_neg, add_self])

WRONG: dict[str, str] = {
    "wrong-sub-to-add": "sub(a, b) -> add(a, b)",
    "wrong-fold-scale": "wrong constant fold: scale(scale(x, a), b) -> scale(x, a + b)",
    "wrong-fold-div": "wrong constant fold: x / c -> x for any constant c",
    "wrong-swap-sub": "operand swap: sub(a, b) -> sub(b, a)",
    "wrong-swap-concat": "operand swap: concat parts reordered",
    "wrong-broadcast-sum": "dropped broadcast: sum(a + b) -> sum(a) + sum(b)",
    "wrong-axis-softmax": "wrong axis: softmax moved through a transpose",
    "wrong-axis-mean": "wrong axis: mean(x, k) -> sum(x, k) / x.shape[0]",
    "wrong-perm-compose": "permutation composed the wrong way (transpose chains)",
    "wrong-sqrt-square": "positive-only: sqrt(x * x) -> x",
    "wrong-log-mul": "positive-only: log(a * b) -> log(a) + log(b)",
    "wrong-argmax-ties": "ties: argmax with a tie-breaking ramp",
    "wrong-drop-output": "dropped output",
    "wrong-mutates-input": "right result, changes its input graph",
    "wrong-fold-zero-sub": "fold mutant: 0 - x -> x",
    "wrong-fold-neg": "fold mutant: neg(neg(x)) -> neg(x)",
    "wrong-fold-cast": "fold mutant: cast round trip dropped",
    "wrong-cse-attrs": "cse mutant: key without attributes",
    "wrong-cse-leaves": "cse mutant: merges inputs of one type",
    "wrong-dce-assigns": "dce mutant: drops state updates",
    "wrong-dce-leaf-outputs": "dce mutant: drops outputs that are leaves",
    "wrong-prune-axis": "prune-rows mutant: through reductions on any axis",
    "wrong-prune-sorted": "prune-rows mutant: rows sorted, not in the order read",
}
"""Wrong pass name -> the bug it has."""

CONTROLS: dict[str, str] = {
    "fold": "graphc's fold",
    "cse": "graphc's cse",
    "dce": "graphc's dce",
    "prune-rows": "graphc's prune-rows",
    "fold,cse,dce": "graphc's fold, cse and dce",
    "right-simplify-negs": "the README's simplify-negs",
}
"""Correct pipelines: a failure on one of them is a false alarm."""
