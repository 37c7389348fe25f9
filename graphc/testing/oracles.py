"""Oracles for pass authors: is ``after`` the same program as ``before`` for what the
caller reads (outputs, the rows read, taps), on every backend?"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import given, note
from hypothesis import strategies as st

import graphc as gc
from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.ops import OP_TABLE
from graphc.passes import Pass, PassManager, parse_pipeline
from graphc.passes.manager import fingerprint
from graphc.passes.rewrite import RewritePattern
from graphc.reads import ReadsArg, normalize_reads
from graphc.tensor import LEAF_OPS
from graphc.testing.data import FEEDS
from graphc.testing.strategies import ALL_FAMILIES, DEFAULT_FAMILIES, graphs
from graphc.text import to_text
from graphc.verifier import verify

TOLERANCE = {"reference": 1e-5, "arena": 1e-5, "jax": 2e-5}
"""Relative and absolute tolerance per backend, for f32 values."""

DTYPE_TOLERANCE = {"f16": 2e-3, "bf16": 1.6e-2, "i32": 0.0, "bool": 0.0, "u8": 0.0}
"""Tolerance by the dtype of the value compared: low-precision floats are compared to
their precision, integers and booleans exactly (an argmax off by one tie is a bug)."""


Feeds = tuple[dict[str, Any], dict[str, Any], dict[str, Any]]


def tolerance(tol: float, dtype: Any) -> float:
    """The tolerance for a value of ``dtype`` (NumPy or graphc name) given the backend's
    f32 tolerance ``tol``."""
    name = str(dtype)
    name = {"float16": "f16", "bfloat16": "bf16", "int32": "i32", "uint8": "u8"}.get(name,
                                                                                   name)
    if name in ("i32", "bool", "u8", "int64"):
        return 0.0
    return max(tol, DTYPE_TOLERANCE.get(name, 0.0))


def _run(g: Graph, backend: str, feeds: Feeds, reads: ReadsArg) -> dict[str, np.ndarray]:
    inputs, params, states = feeds
    exe = gc.compile(g, params=params, states=states, reads=reads, backend=backend,
                     pipeline="none")
    return {k: np.asarray(v) for k, v in exe.run(inputs).items()}


def first_mismatch(want: dict[str, np.ndarray], got: dict[str, Any], rows: Any,
                   tol: float) -> str | None:
    """The first read output of ``got`` that differs from ``want`` on the rows read
    (``rows``: output name -> "all" or row indices of ``want[name]``), described; None
    when all agree. ``tol`` is the f32 tolerance; other dtypes follow
    :func:`tolerance`. nan equals nan (a pass may keep a nan the reference computes)."""
    for name, sel in rows.items():
        expect = want[name] if sel == "all" else want[name][list(sel)]
        if name not in got:
            return f"output {name!r} is gone"
        value = np.asarray(got[name])
        if value.shape != expect.shape:
            return f"output {name!r} has shape {value.shape}, expected {expect.shape}"
        t = tolerance(tol, expect.dtype)
        if expect.dtype == bool or value.dtype == bool:
            same = bool(np.array_equal(value, expect))
        else:
            same = bool(np.allclose(value, expect, rtol=t, atol=t, equal_nan=True))
        if not same:
            with np.errstate(all="ignore"):
                diff = np.abs(value.astype(np.float64) - expect.astype(np.float64))
            worst = float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")
            return f"output {name!r} differs (max |diff| {worst:.3g})"
    return None


def assert_equivalent(before: Graph, after: Graph | Callable[[Graph], Graph],
                      reads: ReadsArg = None,
                      backends: Sequence[str] = ("reference", "arena", "jax"),
                      seed: int = 0, after_reads: ReadsArg = "same", *,
                      data: str = "uniform", show_graphs: bool = True) -> None:
    """Raise AssertionError unless ``after`` gives, on every backend, the values the
    reference backend gives for ``before`` for what ``reads`` reads.

    ``reads`` as in :func:`graphc.compile`: None reads what ``before``'s IR says (every
    output, with the rows its outputs record), a mapping may select rows and name taps
    (tensors of ``before`` that are not outputs). ``after`` is the transformed graph, or
    the pass itself (a ``Graph -> Graph`` callable), which is then run on ``before`` with
    the taps marked as outputs: a tap can only be found in a graph the pass made from
    one where it is marked. Both graphs get the same data (passes keep every leaf):
    ``data`` is ``"uniform"`` (floats in [-2, 2)) or ``"domain"`` (zeros, signs, tiny
    values and ties, see :func:`graphc.testing.data.domain_feeds`). ``after_reads``: what
    to read from ``after`` (default: the same; None when a pass such as row pruning
    already narrowed the outputs to the rows read). Tolerances follow the backend and
    the dtype. The message names the backend, the output and the largest difference,
    and (with ``show_graphs``) carries both graphs as text.
    """
    marked, rd = normalize_reads(before, reads, taps="protect")
    feeds = FEEDS[data](before, seed)
    read_rows: dict[str, object] = {n: "all" if s == "all" else list(s)
                                    for n, s in rd.rows.items()}
    want = _run(marked, "reference", feeds, read_rows)
    if callable(after) and not isinstance(after, Graph):
        after = after(marked)
    elif marked is not before:
        missing = [n for n in rd.rows if n not in after.outputs]
        if missing:
            raise AssertionError(f"the reads name taps {missing}, which are not outputs of "
                                 f"the transformed graph: pass the pass itself as `after`, "
                                 f"so it runs with the taps marked")
    rd_after: ReadsArg = read_rows if after_reads == "same" else after_reads

    def shown() -> str:
        return (f"\n--- before ---\n{to_text(marked)}--- after ---\n{to_text(after)}"
                if show_graphs else "")

    for backend in backends:
        try:
            got = _run(after, backend, feeds, rd_after)
        except GraphError as e:
            raise AssertionError(f"{backend} refused the transformed graph: {e}"
                                 f"{shown()}") from e
        problem = first_mismatch(want, got, {n: "all" for n in want},
                                 TOLERANCE.get(backend, 1e-5))
        if problem is not None:
            raise AssertionError(f"{backend}: {problem} ({data} data, seed {seed})"
                                 f"{shown()}")


def pass_patterns(p: Any) -> list[RewritePattern]:
    """The rewrite patterns a pass applies, as far as they can be found without running
    it: a ``pattern_pass``'s own, else every pattern defined at the top level of the
    module that defines the pass or its function (tuples and lists of patterns included).
    Empty for a pass written without patterns."""
    own = getattr(p, "patterns", None)
    if own:
        return [q for q in own if isinstance(q, RewritePattern)]
    module = sys.modules.get(getattr(p, "__module__", "") or type(p).__module__)
    found: list[RewritePattern] = []
    for value in vars(module).values() if module is not None else ():
        items = value if isinstance(value, (tuple, list)) else (value,)
        for q in items:
            if isinstance(q, RewritePattern) and q not in found:
                found.append(q)
    return found


def _named_ops(code: Any, seen: set[int] | None = None) -> list[str]:
    """Op names a function's code compares with (``x.op == "add"``): string constants
    that name ops of the op table, nested functions included."""
    seen = set() if seen is None else seen
    if id(code) in seen:
        return []
    seen.add(id(code))
    out: list[str] = []
    for c in getattr(code, "co_consts", ()):
        if isinstance(c, str) and c in OP_TABLE and c not in LEAF_OPS:
            out.append(c)
        elif hasattr(c, "co_consts"):
            out += _named_ops(c, seen)
    return out


def pattern_ops(q: RewritePattern) -> list[str]:
    """The op a pattern is registered on, then the ops its code names (the operands it
    looks for: ``x.op == "add"``), in order."""
    fn = getattr(q, "fn", None) or type(q).match_and_rewrite
    ops = [q.op]
    for o in _named_ops(getattr(fn, "__code__", None)):
        if o not in ops:
            ops.append(o)
    return ops


def pipeline_ops(pipeline: str | Any) -> list[str]:
    """What ``graphc fuzz`` aims at for a pipeline (text or a pass object): the ops its
    passes' rewrite patterns are registered on and the operand ops they name, in
    first-seen order, those :func:`~graphc.testing.strategies.graphs` can build."""
    passes = parse_pipeline(pipeline) if isinstance(pipeline, str) else [pipeline]
    ops: list[str] = []
    for p in passes:
        for q in pass_patterns(p):
            ops += [o for o in pattern_ops(q) if o not in ops
                    and OP_TABLE[o].family in ALL_FAMILIES]
    return ops


def assert_pass_preserves(pass_or_pipeline: Any, max_nodes: int = 10,
                          backends: Sequence[str] = ("reference", "arena"),
                          families: Sequence[str] | None = None,
                          idempotent: bool = True, ops: Sequence[str] | None = None
                          ) -> Callable[..., None]:
    """A ready Hypothesis test: for generated graphs (outputs that record rows included),
    the pass (a Pass object, a ``Graph -> Graph`` function, or pipeline text) leaves its
    input graph as it was, yields a valid graph, keeps every read value on uniform and
    domain data, and (with ``idempotent``) changes nothing when run a second time.

    Half the graphs are aimed at ``ops`` (default: the ops the pass's rewrite patterns
    are registered on, see :func:`pipeline_ops`), the others draw from ``families``
    (default: :data:`~graphc.testing.strategies.DEFAULT_FAMILIES`). A failure shows the
    shrunk graph once, and what the pass made of it. Use it as a test function::

        test_my_pass = assert_pass_preserves(MyPass())
    """
    if isinstance(pass_or_pipeline, str):
        pm = PassManager(pass_or_pipeline)
        apply: Callable[[Graph], Graph] = pm.run
        aim = list(ops) if ops is not None else pipeline_ops(pass_or_pipeline)
    else:
        apply = pass_or_pipeline if not isinstance(pass_or_pipeline, Pass) \
            else pass_or_pipeline.run
        aim = list(ops) if ops is not None else (
            pipeline_ops(pass_or_pipeline) if isinstance(pass_or_pipeline, Pass) else [
                q.op for q in pass_patterns(pass_or_pipeline)])
    fams = tuple(families or DEFAULT_FAMILIES)
    broad = graphs(max_nodes=max_nodes, families=fams, rows=True)
    strategy = broad if not aim else st.one_of(
        broad, graphs(max_nodes=max_nodes, families=ALL_FAMILIES, ops=aim, rows=True,
                      max_rank=3))

    @given(g=strategy, seed=st.integers(0, 2**16), data=st.sampled_from(sorted(FEEDS)))
    def check(g: Graph, seed: int, data: str) -> None:
        note(f"generated graph:\n{to_text(g)}")
        stamp = fingerprint(g)
        after = apply(g)
        assert fingerprint(g) == stamp, "the pass changed its input graph (a pass " \
                                        "returns a new graph and leaves its input as it was)"
        note(f"after the pass:\n{to_text(after)}")
        verify(after)
        assert_equivalent(g, after, None, backends=backends, seed=seed, after_reads=None,
                          data=data, show_graphs=False)  # after's IR says what is read
        if idempotent:
            again = apply(after)
            assert to_text(again) == to_text(after), "running the pass twice changed the graph"

    check._graphc_property = True  # type: ignore[attr-defined]  # the plugin's profiles
    return check
