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

from dataclasses import dataclass

from graphc.graph import Graph
from graphc.ops import OP_TABLE, Mode
from graphc.passes.base import Pass, register_pass
from graphc.passes.rewrite import Rebuilder
from graphc.reads import Reads, ReadsArg, normalize_reads
from graphc.tensor import Tensor

# For a node whose rows S are wanted, its op's row rule (``OpDef.rows``, see graphc.ops)
# says for each operand "rows" (take the operand's rows S) or "all" (the operand is needed
# whole), or None when the node mixes rows; ops with ``rows=None`` (set_rows, full, const)
# have no rule: their rows are selected after the fact.

FULL = None  # a request for the whole tensor


def prune_rows(g: Graph, reads: ReadsArg = None) -> Graph:
    """Rewrite ``g`` so outputs read by rows compute only those rows.

    The rows read are the IR's (``g.set_output(t, name, rows=...)``); ``reads`` first
    records rows for the outputs it names, as ``dead-outputs`` does, without unmarking
    the others. In the result a pruned output holds exactly the rows read, in the order
    read, and is read whole. Outputs read whole and state updates are untouched. Nodes
    no longer needed are dropped.
    """
    if reads is not None:
        g, given = normalize_reads(g, reads)
        g = g.clone()
        for name, sel in given.rows.items():
            g.set_output_rows(name, None if sel == "all" else sel)
    rd = Reads.of_graph(g)
    outputs = g.outputs
    requests: dict[Tensor, list[tuple[int, ...] | None]] = {t: [] for t in g.nodes}
    for name, t in outputs.items():
        sel = rd.rows.get(name, "all")
        # prune only when fewer rows than the whole are wanted ([0, 0] of 1 row is not)
        whole = sel == "all" or len(sel) >= t.shape[0]
        requests[t].append(FULL if whole else tuple(sel))  # type: ignore[arg-type]  # sentinel
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
        op = OP_TABLE.get(t.op)  # leaves are not ops: they have no rule
        rule = op.rows if op is not None else None
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

    for name, t in outputs.items():  # every output of the result is read whole
        sel = rd.rows[name]
        if sel == "all" or list(sel) == list(range(t.shape[0])):
            rb.dst.set_output(full[t], name)
        else:
            rb.dst.set_output(rows_of(t, tuple(sel)), name)
    for s, v in g.assigns.items():
        rb.dst.assign(rb.map[s], full[v])
    return rb.dst


@register_pass
@dataclass
class PruneRows(Pass):
    """Compute only the rows the IR says are read; ``reads=logits[-1]`` first records
    those rows (see :func:`prune_rows`)."""

    name = "prune-rows"
    summary = "move row selections up through row-wise ops so only read rows are computed"
    reads: str = ""

    def run(self, g: Graph) -> Graph:
        return prune_rows(g, self.reads or None)
