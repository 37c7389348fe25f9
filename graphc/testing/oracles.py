"""Oracles for pass authors: is ``after`` the same program as ``before`` for what the
caller reads, on every backend?"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import graphc as gc
from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.passes import PassManager
from graphc.reads import ReadsArg, normalize_reads
from graphc.testing.data import random_feeds
from graphc.testing.strategies import DEFAULT_FAMILIES, graphs
from graphc.text import to_text
from graphc.verifier import verify

TOLERANCE = {"reference": 1e-5, "arena": 1e-5, "jax": 2e-5}


Feeds = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def _run(g: Graph, backend: str, feeds: Feeds, reads: ReadsArg) -> dict[str, np.ndarray]:
    inputs, params, states = feeds
    exe = gc.compile(g, params=params, states=states, reads=reads, backend=backend,
                     pipeline="none")
    return {k: np.asarray(v) for k, v in exe.run(inputs).items()}


def first_mismatch(want: dict[str, np.ndarray], got: dict[str, Any], rows: Any,
                   tol: float) -> str | None:
    """The first read output of ``got`` that differs from ``want`` on the rows read
    (``rows``: output name -> "all" or row indices), described; None when all agree."""
    for name, sel in rows.items():
        expect = want[name] if sel == "all" else want[name][list(sel)]
        if name not in got:
            return f"output {name!r} is gone"
        value = np.asarray(got[name])
        if value.shape != expect.shape:
            return f"output {name!r} has shape {value.shape}, expected {expect.shape}"
        if not np.allclose(value, expect, rtol=tol, atol=tol, equal_nan=True):
            diff = float(np.max(np.abs(value.astype(np.float64) - expect)))
            return f"output {name!r} differs (max |diff| {diff:.3g})"
    return None


def assert_equivalent(before: Graph, after: Graph, reads: ReadsArg = None,
                      backends: Sequence[str] = ("reference", "arena", "jax"),
                      seed: int = 0, after_reads: ReadsArg = "same") -> None:
    """Raise AssertionError unless ``after`` gives, on every backend, the values the
    reference backend gives for ``before`` on the rows ``reads`` selects.

    Both graphs get the same random data (passes keep every leaf). ``after_reads``: what
    to read from ``after`` (default: the same reads; pass None when a pass such as row
    pruning already narrowed the outputs to the rows read). The message names the
    backend, the output and the largest difference, and carries both graphs as text.
    """
    _, rd = normalize_reads(before, reads)
    feeds = random_feeds(before, seed)
    want = _run(before, "reference", feeds, None)
    rd_after: ReadsArg = {n: list(s) if s != "all" else "all" for n, s in rd.rows.items()} \
        if after_reads == "same" else after_reads
    for backend in backends:
        try:
            got = _run(after, backend, feeds, rd_after)
        except GraphError as e:
            raise AssertionError(f"{backend} refused the transformed graph: {e}\n"
                                 f"--- after ---\n{to_text(after)}") from e
        problem = first_mismatch(want, got, rd.rows, TOLERANCE.get(backend, 1e-5))
        if problem is not None:
            raise AssertionError(f"{backend}: {problem}\n--- before ---\n{to_text(before)}"
                                 f"--- after ---\n{to_text(after)}")


def assert_pass_preserves(pass_or_pipeline: Any, max_nodes: int = 10,
                          backends: Sequence[str] = ("reference", "arena"),
                          families: Sequence[str] | None = None,
                          idempotent: bool = True) -> Callable[..., None]:
    """A ready Hypothesis test: for generated graphs and reads, the pass (a Pass object,
    a ``Graph -> Graph`` function, or pipeline text) keeps every read value, yields a
    valid graph, and (with ``idempotent``) changes nothing when run a second time.

    Use it as a test function::

        test_my_pass = assert_pass_preserves(MyPass())
    """
    if isinstance(pass_or_pipeline, str):
        pm = PassManager(pass_or_pipeline)
        apply: Callable[[Graph], Graph] = pm.run
    else:
        apply = pass_or_pipeline if callable(pass_or_pipeline) else pass_or_pipeline.run

    @given(g=graphs(max_nodes=max_nodes, families=families or DEFAULT_FAMILIES),
           seed=st.integers(0, 2**16))
    def check(g: Graph, seed: int) -> None:
        note(f"generated graph:\n{to_text(g)}")
        after = apply(g)
        note(f"after the pass:\n{to_text(after)}")
        verify(after)
        assert_equivalent(g, after, None, backends=backends, seed=seed)
        if idempotent:
            again = apply(after)
            assert to_text(again) == to_text(after), "running the pass twice changed the graph"

    return check
