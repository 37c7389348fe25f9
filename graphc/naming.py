"""Printable SSA names for the nodes of a graph, shared by the text and JSON formats."""

from __future__ import annotations

import re

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
