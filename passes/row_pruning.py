"""Row pruning: compute only the rows of an output that the caller reads.

When a caller reads some rows of an output (``logits[-1]``), the row selection moves up
through row-wise ops (where row i of the result depends only on row i of some operands)
until it meets an op that mixes rows, or a tensor that someone needs whole. There a
``get_rows`` selects the rows. Attention is row-wise in its queries only, so the
selection enters the query side while keys, values and KV-cache writes keep every row.

The analysis runs backward: a node is computed on rows S only when *every* reader wants
exactly S, so pruning never computes anything twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from graphc.passes.base import Pass, register_pass
from graphc.passes.rewrite import Rebuilder

from graphc.graph import Graph
from graphc.reads import Reads, ReadsArg, normalize_reads
from graphc.tensor import Tensor

Mode = Literal["rows", "all"]
# For a node whose rows S are wanted: for each operand, "rows" (take the operand's rows
# S) or "all" (the operand is needed whole); None when the node mixes rows.
RowRule = Callable[[Tensor], list[Mode] | None]

FULL = None  # a request for the whole tensor


def _elementwise(t: Tensor) -> list[Mode] | None:
    if t.ndim == 0:
        return None
    modes: list[Mode] = []
    for o in t.inputs:
        if o.ndim == t.ndim and o.shape[0] == t.shape[0]:
            modes.append("rows")
        else:  # broadcast along axis 0 (lower rank, or a leading 1)
            modes.append("all")
    return modes


def _last_axis(t: Tensor) -> list[Mode] | None:
    return ["rows"] if t.ndim >= 2 else None  # normalizes each row along the last axis


def _off_axis0(t: Tensor) -> list[Mode] | None:
    return ["rows"] * len(t.inputs) if t.ndim >= 1 and t.attrs["axis"] != 0 else None


def _reduction(t: Tensor) -> list[Mode] | None:
    return ["rows"] if t.attrs["axis"] != 0 and t.ndim >= 1 else None


def _matmul(t: Tensor) -> list[Mode] | None:
    a, b = t.inputs
    if b.ndim == 2:  # per-row product by a weight: row i of a @ b needs row i of a
        return ["rows", "all"]
    modes: list[Mode] = []
    for o in (a, b):  # batched: axis 0 is a batch axis of one or both operands
        if o.ndim == t.ndim and o.shape[0] == t.shape[0]:
            modes.append("rows")
        elif o.ndim < t.ndim or o.shape[0] == 1:
            modes.append("all")
        else:
            return None
    return modes


def _reshape(t: Tensor) -> list[Mode] | None:
    x = t.inputs[0]
    return ["rows"] if t.ndim >= 1 and x.ndim >= 1 and x.shape[0] == t.shape[0] else None


ROW_RULES: dict[str, RowRule] = {
    **{op: _elementwise for op in ("add", "sub", "mul", "div", "maximum")},
    **{op: _elementwise for op in ("neg", "exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid",
                                   "relu", "gelu", "silu", "copy", "scale", "cast")},
    "rms_norm": _last_axis,
    "layer_norm": _last_axis,
    "softmax": _off_axis0,
    "rope": lambda t: ["rows", "rows"],  # token i rotated by position i
    "attention": lambda t: ["rows", "all", "all", "rows"],  # queries and their positions
    "get_rows": lambda t: ["all", "rows"],  # (x[idx])[S] == x[idx[S]]
    "matmul": _matmul,
    "reshape": _reshape,
    "transpose": lambda t: ["rows"] if t.attrs["perm"][0] == 0 else None,
    "slice": _off_axis0,
    "concat": _off_axis0,
    "sum": _reduction,
    "mean": _reduction,
    "max": _reduction,
    "argmax": _reduction,
    # set_rows, full and const have no rule: their rows are selected after the fact
}


def prune_rows(g: Graph, reads: ReadsArg) -> tuple[Graph, Reads]:
    """Rewrite ``g`` so outputs read by rows compute only those rows.

    Returns the new graph and the new reads: a pruned output holds exactly the rows read,
    in the order asked, so its read becomes ``"all"``. Outputs read whole, outputs not
    read, and state updates are untouched. Nodes no longer needed are dropped.
    """
    g, rd = normalize_reads(g, reads)
    outputs = g.outputs
    requests: dict[Tensor, list[tuple[int, ...] | None]] = {t: [] for t in g.nodes}
    for name, t in outputs.items():
        sel = rd.rows.get(name, "all")
        # prune only when fewer rows than the whole are wanted ([0, 0] of 1 row is not)
        whole = sel == "all" or len(sel) >= t.shape[0]
        requests[t].append(FULL if whole else tuple(sel))  # type: ignore[arg-type]
    for v in g.assigns.values():
        requests[v].append(FULL)

    # backward: decide for each node the rows it is computed on
    mode: dict[Tensor, tuple[int, ...] | None] = {}
    rowwise: dict[Tensor, list[Mode] | None] = {}
    for t in reversed(g.nodes):
        reqs = requests[t]
        if not reqs:
            continue  # dead
        first = reqs[0]
        rows = first if first is not FULL and all(r == first for r in reqs) else FULL
        mode[t] = rows
        rule = ROW_RULES.get(t.op)
        modes = rule(t) if (rows is not FULL and rule is not None) else None
        rowwise[t] = modes
        for j, o in enumerate(t.inputs):
            requests[o].append(rows if modes is not None and modes[j] == "rows" else FULL)

    # forward: build the pruned graph
    rb = Rebuilder(g)
    full: dict[Tensor, Tensor] = {}
    pruned: dict[Tensor, Tensor] = {}
    consts: dict[tuple[int, ...], Tensor] = {}
    selected: dict[tuple[Tensor, tuple[int, ...]], Tensor] = {}

    def index(rows: tuple[int, ...]) -> Tensor:
        if rows not in consts:
            consts[rows] = rb.dst.const(rows, dtype="i32")
        return consts[rows]

    def rows_of(o: Tensor, rows: tuple[int, ...]) -> Tensor:
        if mode.get(o) == rows and o in pruned:
            return pruned[o]
        key = (o, rows)
        if key not in selected:
            selected[key] = rb.dst.get_rows(full[o], index(rows))
        return selected[key]

    for t in g.nodes:
        if t not in mode:
            continue
        rows = mode[t]
        modes = rowwise.get(t)
        if t.is_leaf:
            full[t] = rb.map[t]
        elif rows is FULL or modes is None:
            full[t] = rb.copy(t, [full[i] for i in t.inputs])
        else:
            ins = [rows_of(i, rows) if m == "rows" else full[i]
                   for i, m in zip(t.inputs, modes, strict=True)]
            attrs = dict(t.attrs)
            if t.op == "reshape":
                attrs["shape"] = (len(rows), *t.attrs["shape"][1:])
            pruned[t] = rb.dst.apply(t.op, ins, attrs, t.name)
        if t in full:
            rb.map[t] = full[t]

    new_rows: dict[str, object] = {}
    for name, t in outputs.items():
        sel = rd.rows.get(name, "all")
        if sel == "all" or list(sel) == list(range(t.shape[0])):
            rb.dst.set_output(full[t], name)
        else:
            rb.dst.set_output(rows_of(t, tuple(sel)), name)
        if name in rd.rows:
            new_rows[name] = "all"
    for s, v in g.assigns.items():
        rb.dst.assign(rb.map[s], full[v])
    out = rb.dst
    return out, Reads({n: "all" for n in new_rows})  # type: ignore[misc]


@register_pass
@dataclass
class PruneRows(Pass):
    """Compute only the rows read (``reads=logits[-1]``); see :func:`prune_rows`."""

    name = "prune-rows"
    summary = "move row selections up through row-wise ops so only read rows are computed"
    reads: str

    def run(self, g: Graph) -> Graph:
        return prune_rows(g, self.reads)[0]
