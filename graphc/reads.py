"""What a caller reads after a run: which outputs, and which rows of each.

``reads`` is given as ``None`` (every output, every row), as a mapping
``{"logits": [-1], "h_pre_norm": "all"}`` (keys may also be tensors), or as text
``"logits[-1]+h_pre_norm"`` (used by pipelines and the command line).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from graphc.errors import GraphError
from graphc.graph import Graph, check_rows
from graphc.naming import describe, label
from graphc.tensor import Tensor

RowSel = Literal["all"] | tuple[int, ...]
ReadsArg = (None | str | Mapping[str, object] | Mapping[Tensor, object]
            | Mapping[str | Tensor, object] | Sequence[str | Tensor] | Sequence[str]
            | Sequence[Tensor])


@dataclass(frozen=True)
class Reads:
    """Normalized reads: output name -> ``"all"`` or a tuple of non-negative row indices."""

    rows: Mapping[str, RowSel]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __contains__(self, name: object) -> bool:
        return name in self.rows

    @classmethod
    def of_graph(cls, g: Graph) -> Reads:
        """What a caller reads from ``g`` as its IR says: every output, with its rows."""
        out: dict[str, RowSel] = {}
        for name in g.outputs:
            rows = g.output_rows(name)
            out[name] = "all" if rows is None else rows
        return cls(out)

    def to_text(self) -> str:
        """The text form, e.g. ``logits[7]+h_pre_norm``."""
        parts = []
        for name, sel in self.rows.items():
            parts.append(name if sel == "all" else f"{name}[{','.join(map(str, sel))}]")
        return "+".join(parts)


_ITEM_RE = re.compile(r"^\s*([^\[\]+;\s]+)\s*(?:\[\s*([^\]]*)\])?\s*$")


def parse_reads(spec: str) -> dict[str, object]:
    """Parse ``"logits[-1]+h_pre_norm"`` (``+`` or ``;`` between items) into a mapping.

    Rows inside brackets are comma-separated integers; ``[:]`` or no brackets means every
    row. Raises GraphError on anything else.
    """
    out: dict[str, object] = {}
    for item in re.split(r"[+;]", spec):
        if not item.strip():
            continue
        m = _ITEM_RE.match(item)
        if not m:
            raise GraphError(f"bad read {item.strip()!r}",
                             fix='write reads like "logits[-1]+h_pre_norm"')
        name, rows = m.group(1), m.group(2)
        if rows is None or rows.strip() in (":", "all"):
            out[name] = "all"
            continue
        try:
            out[name] = [int(r) for r in rows.split(",") if r.strip()]
        except ValueError:
            raise GraphError(f"bad row list [{rows}] in read {item.strip()!r}",
                             fix="rows are integers, e.g. logits[-1] or logits[0,3]") from None
    if not out:
        raise GraphError("empty reads", fix='name at least one output, e.g. "logits[-1]"')
    return out


def _rows(name: str, t: Tensor, sel: object) -> RowSel:
    if sel is None or (isinstance(sel, str) and sel in ("all", ":")):
        return "all"
    if isinstance(sel, bool) or not isinstance(sel, int | Sequence) or isinstance(sel, str):
        raise GraphError(f"rows for output {name!r} must be 'all', an int or a list of ints, "
                         f"got {sel!r}")
    return check_rows(name, t, [sel] if isinstance(sel, int) else list(sel))


def normalize_reads(
    g: Graph, reads: ReadsArg = None, taps: Literal["error", "protect"] = "error"
) -> tuple[Graph, Reads]:
    """Check ``reads`` against ``g`` and return (graph, Reads).

    A read may name an output or pass a tensor. A tensor that is not an output is an
    error telling to mark it with ``set_output`` -- unless ``taps="protect"``, which marks
    it (as an output named after the tensor) in a copy of ``g``, returned instead of
    ``g``: the caller's graph never changes. ``reads=None`` reads what the graph says:
    every output, with the rows its IR selects.
    """
    if taps not in ("error", "protect"):
        raise GraphError(f"taps must be 'error' or 'protect', got {taps!r}")
    if reads is None:
        return g, Reads.of_graph(g)
    if isinstance(reads, str):
        reads = parse_reads(reads)
    items = reads.items() if isinstance(reads, Mapping) else [(k, "all") for k in reads]
    out: dict[str, RowSel] = {}
    outputs = g.outputs
    by_tensor = {t: n for n, t in outputs.items()}
    caller = g
    copied: dict[Tensor, Tensor] | None = None
    for key, sel in items:
        if isinstance(key, Tensor):
            if key.graph is not caller:
                raise GraphError(f"read {key!r} is a tensor of another graph @{key.graph.name}")
            if key in by_tensor:
                name = by_tensor[key]
            elif taps == "protect":
                if copied is None:  # mark taps on a copy: the caller's graph stays as it is
                    g, copied = caller.clone_with_map()
                base = key.name or "tap"
                name, k = base, 1
                while name in outputs:
                    name, k = f"{base}_{k}", k + 1
                g.set_output(copied[key], name)
                outputs = g.outputs
                by_tensor[key] = name
            else:
                raise GraphError(
                    f"tensor {label(key)} ({key.op}) is read after the run but is not an "
                    f"output, so its buffer may be reused before you read it",
                    node=key,
                    ir_line=describe(key),
                    fix=f'mark it with g.set_output(t, "{key.name or "name"}"), or pass '
                        f'taps="protect" to mark it for you',
                )
        elif isinstance(key, str):
            if key not in outputs:
                raise GraphError(
                    f"read {key!r} is not an output of @{g.name}",
                    fix=f"outputs are {sorted(outputs)}; mark the tensor you read with "
                        f"g.set_output(t, {key!r})",
                )
            name = key
        else:
            raise GraphError(f"a read must be an output name or a Tensor, got {key!r}")
        out[name] = _rows(name, outputs[name], sel)
    return g, Reads(out)
