"""Printable SSA names and text-format lines for the nodes of a graph: what the text and
JSON formats print and what error messages name."""

from __future__ import annotations

import json
import re
from typing import Any

from graphc.graph import Graph, valid_name
from graphc.tensor import Tensor

_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.]")


def _sanitize(name: str) -> str:
    s = _BAD_CHARS.sub("_", name)
    return s if valid_name(s) else f"_{s}"


def ssa_names(g: Graph) -> dict[Tensor, str]:
    """Give every node a unique name (without ``%``).

    Named nodes keep their name (made printable and unique with a ``_N`` suffix); unnamed
    non-leaf nodes are numbered by their position among the non-leaf nodes, so printing,
    parsing and printing again yields the same names.
    """
    names: dict[Tensor, str] = {}
    used: set[str] = set()
    counter = 0
    for t in g.nodes:
        if t.name is not None:
            base = _sanitize(t.name)
            cand, k = base, 1
            while cand in used:
                cand, k = f"{base}_{k}", k + 1
        else:
            cand = str(counter)
        if not t.is_leaf:
            counter += 1
        used.add(cand)
        names[t] = cand
    return names


def format_literal(value: Any) -> str:
    """Print an attribute value as a text-format literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_literal(v) for v in value) + "]"
    raise TypeError(f"not a literal: {value!r}")


def node_lines(g: Graph, names: dict[Tensor, str] | None = None) -> dict[Tensor, str]:
    """The text-format line of every node (without indentation)."""
    names = names or ssa_names(g)
    lines: dict[Tensor, str] = {}
    for t in g.nodes:
        lhs = f"%{names[t]}"
        if t.is_leaf:
            lines[t] = f"{lhs} = {t.op} {json.dumps(t.name)} : {t.type_str}"
            continue
        args = ", ".join(f"%{names.get(i, '?')}" for i in t.inputs)
        attrs = ""
        if t.attrs:
            attrs = " {" + ", ".join(f"{k} = {format_literal(v)}" for k, v in t.attrs.items()) + "}"
        lines[t] = f"{lhs} = {t.op}({args}){attrs} : {t.type_str}"
    return lines


def describe(t: Tensor) -> str:
    """One line naming a node for error messages: its text-format line."""
    return node_lines(t.graph).get(t, repr(t))


def label(t: Tensor) -> str:
    """The node's printed name, e.g. ``%2`` or ``%h``."""
    return f"%{ssa_names(t.graph).get(t, t.name or '?')}"
