"""`compile`: verify a graph, settle what the caller reads, hand it to a backend."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from graphc.executable import Executable
from graphc.graph import Graph
from graphc.reads import ReadsArg, normalize_reads
from graphc.verifier import verify


def compile(
    g: Graph,
    params: Mapping[str, Any] | None = None,
    reads: ReadsArg = None,
    backend: str = "reference",
    *,
    states: Mapping[str, Any] | None = None,
    taps: Literal["error", "protect"] = "error",
    **options: Any,
) -> Executable:
    """Compile ``g`` for ``backend`` with ``params`` bound; return an :class:`Executable`.

    ``reads`` says which outputs (and rows) each run returns (default: all of them).
    ``states`` seeds persistent buffers (default: zeros). ``taps="protect"`` marks a
    tensor read without being an output instead of refusing it. Raises GraphError for an
    invalid graph, unknown or missing params, or an unknown backend.
    """
    from graphc.backends import get_backend

    verify(g)
    g, rd = normalize_reads(g, reads, taps)
    build = get_backend(backend)
    return build(g, params, rd, states, **options)  # type: ignore[no-any-return]
