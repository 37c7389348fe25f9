"""Writing transforming passes: copy a graph node by node with :class:`Rebuilder`, or
rewrite it with local patterns (:class:`RewritePattern`, :func:`rewrite_pattern`) applied
to a fixpoint by :func:`apply_patterns`; :func:`pattern_pass` registers such a pass.

A transforming pass is a ``Graph -> Graph`` function that never changes its input. The
usual shape, by hand::

    rb = Rebuilder(g)                      # leaves are copied already
    for t in g.nodes:
        if t.is_leaf:
            continue
        x = rb.operands(t)                 # t's operands, already rebuilt
        if t.op == "neg" and x[0].op == "neg":
            rb.replace(t, x[0].inputs[0])  # users, outputs and assigns of t follow
        else:
            rb.copy(t)
    return rb.finish(verify=True)

or, the same with a pattern::

    @rewrite_pattern("neg")
    def neg_neg(node: Tensor, rw: Rebuilder) -> Tensor | None:
        (x,) = node.inputs                 # already rewritten
        return x.inputs[0] if x.op == "neg" else None  # neg(neg(x)) -> x

    return apply_patterns(g, [neg_neg])
"""

from __future__ import annotations

import dataclasses
import difflib
import gc
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.ops import OP_TABLE
from graphc.passes.base import Pass, register_pass
from graphc.tensor import LEAF_OPS, Tensor
from graphc.verifier import verify as verify_graph


def without_inplace(t: Tensor) -> dict[str, Any]:
    """``t``'s attributes without ``inplace``: what a pass gives a node whose operand 0 it
    replaced by another value, since a forced in-place write was asked for over the
    operand the user wrote (writing over the new one may clobber a value still read)."""
    return {k: v for k, v in t.attrs.items() if k != "inplace"}


class Rebuilder:
    """Builds a new graph :attr:`dst` from :attr:`src`, keeping :attr:`map` from each
    tensor of ``src`` to the tensor of ``dst`` that stands for it (its *image*).

    Contract:

    - Every leaf (input, param, state) is copied at construction, in order and with its
      name, so callers feed and bind the same names before and after.
    - Walk ``src.nodes`` in order; for each non-leaf node either :meth:`copy` it (over
      its rebuilt operands by default) or :meth:`replace` it by a value of ``dst``. Build
      extra nodes with ``rb.dst``'s builder methods (``rb.dst.scale(...)``).
    - :meth:`finish` marks ``src``'s outputs (with the rows read) and state updates on the
      images of their tensors, so a replaced node's outputs and assigns follow it.
    - The map is public: ``rb[t]`` / ``rb.map[t]`` read it; ``rb.map[t] = v`` is
      :meth:`replace` without its checks (for hot loops of built-in passes).
    """

    src: Graph
    """The graph being rebuilt; never changed."""
    dst: Graph
    """The graph being built."""
    map: dict[Tensor, Tensor]
    """Tensor of ``src`` -> its image in ``dst``."""

    def __init__(self, src: Graph) -> None:
        self.src = src
        self.dst = Graph(src.name)
        self.map = {}
        self._leaves: dict[Tensor, Tensor] = {}  # the copies themselves, kept if replaced
        self._replaced: set[Tensor] = set()  # src tensors whose image is another value
        nodes, leaves = self.dst._nodes, self.dst._leaves
        for t in src._nodes:
            if t.op in LEAF_OPS:  # a valid leaf stays valid: copy it without re-checking
                new = Tensor._trusted(self.dst, t.op, (), t.attrs, t.shape, t.dtype, t.name)
                nodes.append(new)
                leaves[t.leaf_name] = new
                self.map[t] = self._leaves[t] = new

    def __getitem__(self, t: Tensor) -> Tensor:
        """The image of ``t`` (KeyError when ``t`` has none yet)."""
        return self.map[t]

    def __contains__(self, t: object) -> bool:
        """True when ``t`` has an image already."""
        return t in self.map

    def operands(self, t: Tensor) -> tuple[Tensor, ...]:
        """The images of ``t``'s operands (each must have one: walk in order)."""
        return tuple(self.map[i] for i in t.inputs)

    def copy(self, t: Tensor, inputs: Sequence[Tensor] | None = None,
             attrs: Mapping[str, Any] | None = None) -> Tensor:
        """Append a copy of ``t`` over ``inputs`` (default: :meth:`operands`) with
        ``attrs`` (default: t's), record it as t's image and return it.

        Same op over operands of the same types and the same attributes skips the shape
        rule (the old node was valid, so the copy is too); anything else goes through
        ``dst.apply`` and its checks (GraphError).
        """
        ins = tuple(self.map[i] for i in t.inputs) if inputs is None else tuple(inputs)
        if t.inplace and attrs is None and t.inputs[0] in self._replaced:
            attrs = without_inplace(t)  # inplace=True was about the operand replaced
        same = attrs is None and len(ins) == len(t.inputs)
        if same:
            dst = self.dst
            for a, b in zip(ins, t.inputs, strict=True):
                if a.graph is not dst or a.shape != b.shape or a.dtype != b.dtype:
                    same = False
                    break
        if same:  # same op over operands of the same types: the old checks still hold
            new = Tensor._trusted(self.dst, t.op, ins, t.attrs, t.shape, t.dtype, t.name)
            self.dst._nodes.append(new)
        else:
            new = self.dst.apply(t.op, ins, dict(t.attrs) if attrs is None else attrs, t.name)
        self.map[t] = new
        return new

    def replace(self, old: Tensor, new: Tensor) -> Tensor:
        """Make ``new`` (a tensor of :attr:`dst`) the image of ``old`` (a node of
        :attr:`src`) and return it: every user of ``old`` copied afterwards reads ``new``,
        and :meth:`finish` marks ``new`` under old's output names and as the new value of
        the states ``old`` was assigned to. (A replaced state leaf stays the target of
        its own update: only its uses follow.)

        Raises GraphError when ``old`` is not in ``src``, ``new`` is not in ``dst``, the
        types differ (a replacement keeps shape and dtype), or ``old``'s image already
        has users in ``dst`` (replace a node before copying its users).
        """
        if not isinstance(old, Tensor) or old.graph is not self.src:
            raise GraphError(f"replace: {old!r} is not a node of the source graph "
                             f"@{self.src.name}")
        if not isinstance(new, Tensor) or new.graph is not self.dst:
            raise GraphError(f"replace: the replacement {new!r} of {old!r} is not a tensor of "
                             f"the graph being built", node=old,
                             fix="build it with rb.dst methods over images (rb[t])")
        if (new.shape, new.dtype) != (old.shape, old.dtype):
            raise GraphError(f"replace: {old!r} is {old.type_str} but its replacement "
                             f"{new!r} is {new.type_str}", node=old,
                             fix="a replacement keeps the shape and dtype "
                                 "(reshape or cast it first)")
        prev = self.map.get(old)
        if prev is not None and prev is not new and any(
                prev in n.inputs for n in self.dst._nodes):
            raise GraphError(f"replace: {old!r} is already read in the graph being built, "
                             "so its users would not follow", node=old,
                             fix="replace a node before copying its users")
        self.map[old] = new
        self._replaced.add(old)
        return new

    def finish(self, outputs: Mapping[str, Tensor] | None = None,
               assigns: Iterable[tuple[Tensor, Tensor]] | None = None, *,
               verify: bool = False) -> Graph:
        """Mark outputs and state updates on :attr:`dst` and return it.

        ``outputs`` (name -> tensor of ``src``, default: ``src``'s outputs, each keeping
        the rows read from it) and ``assigns`` ((state, value) pairs of ``src``, default:
        ``src``'s) are marked on the images of their tensors. With ``verify`` the result
        is checked by :func:`graphc.verify` (GraphError); the default skips it because
        the pass manager verifies after every pass and built-in passes run in hot loops.
        """
        outs = self.src.outputs if outputs is None else outputs
        src_outputs = self.src.outputs
        for name, t in outs.items():  # an output keeps the rows read from it
            rows = self.src.output_rows(name) if src_outputs.get(name) is t else None
            self.dst.set_output(self.map[t], name, rows)
        for s, v in (self.src.assigns.items() if assigns is None else assigns):
            target = self._leaves.get(s)  # a replaced state still receives its update
            self.dst.assign(self.map[s] if target is None else target, self.map[v])
        if verify:
            verify_graph(self.dst)
        return self.dst


def live_nodes(g: Graph, roots: Iterable[Tensor]) -> set[Tensor]:
    """Every node some root depends on (roots included)."""
    live: set[Tensor] = set()
    stack = list(roots)
    while stack:
        t = stack.pop()
        if t in live:
            continue
        live.add(t)
        stack.extend(t.inputs)
    return live



@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a pass rebuilds a graph.

    Rebuilding allocates one object per node and frees little, which makes full
    collections run again and again over a growing heap (a third of the time at 100k
    nodes). Reference counting still frees acyclic garbage; the rest is collected when the
    collector resumes.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ----------------------------------------------------------------------------- patterns

PatternFn = Callable[[Tensor, Rebuilder], "Tensor | None"]
"""A rewrite function: ``(node, rewriter) -> replacement or None``."""

DEFAULT_MAX_ITERATIONS = 32
"""How many sweeps (and rewrites of one node in a row) :func:`apply_patterns` allows."""

_OBSERVERS: list[Counter[str]] = []


@contextmanager
def observe_patterns() -> Iterator[Counter[str]]:
    """Count, while the block runs, how often each pattern fired in every
    :func:`apply_patterns` call (pattern label -> rewrites): what ``graphc fuzz`` reports
    as a pass's coverage."""
    fired: Counter[str] = Counter()
    _OBSERVERS.append(fired)
    try:
        yield fired
    finally:
        _OBSERVERS.remove(fired)


class RewriteError(RuntimeError):
    """A pattern set misbehaved: it did not converge, or a pattern returned something
    that cannot replace its node. ``pattern`` names the pattern at fault (when one is),
    ``node`` is the node it was rewriting."""

    def __init__(self, message: str, *, pattern: str | None = None,
                 node: Tensor | None = None) -> None:
        self.pattern = pattern
        self.node = node
        super().__init__(message)


class RewritePattern:
    """One local rewrite for nodes of one op, applied by :func:`apply_patterns`.

    Subclass it, set ``op`` (the op name it looks at) and implement
    :meth:`match_and_rewrite`; or decorate a function with :func:`rewrite_pattern`.
    ``name`` (default: the class name) is what errors and :func:`pattern_pass` report.
    """

    op: str = ""
    """The op of the nodes this pattern is offered."""
    name: str = ""
    """The pattern's name in messages (empty: the class name)."""

    @property
    def label(self) -> str:
        """The name errors use: ``name`` or the class name."""
        return self.name or type(self).__name__

    def match_and_rewrite(self, node: Tensor, rewriter: Rebuilder) -> Tensor | None:
        """Return what to use instead of ``node``, or None to keep it.

        ``node`` is an ``op`` node of ``rewriter.dst`` whose operands (``node.inputs``)
        are already rewritten; attributes, type and name are the original's. It is not
        in the node list yet: it is added when kept, or when the replacement uses it.
        Return an existing tensor of ``rewriter.dst`` (e.g. an operand) or a node built
        with ``rewriter.dst`` methods; it must have node's shape and dtype. A pattern is a
        pure function of the node and what it reads (no other state), so that the driver
        can tell when nothing more applies.
        """
        raise NotImplementedError(f"pattern {self.label!r} does not implement "
                                  "match_and_rewrite()")

    def __repr__(self) -> str:
        return f"<pattern {self.label} on {self.op or '?'}>"


class FunctionPattern(RewritePattern):
    """A :class:`RewritePattern` made from a function by :func:`rewrite_pattern`; calling
    it calls the function."""

    def __init__(self, op: str, fn: PatternFn, name: str | None = None) -> None:
        self.op = op
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "") or "pattern"
        self.__doc__ = fn.__doc__

    def match_and_rewrite(self, node: Tensor, rewriter: Rebuilder) -> Tensor | None:
        return self.fn(node, rewriter)

    def __call__(self, node: Tensor, rewriter: Rebuilder) -> Tensor | None:
        return self.fn(node, rewriter)


def rewrite_pattern(op: str, *, name: str | None = None
                    ) -> Callable[[PatternFn], FunctionPattern]:
    """Decorator: make ``fn(node, rewriter) -> Tensor | None`` a pattern for ``op`` nodes
    (see :meth:`RewritePattern.match_and_rewrite`), named ``name`` or the function's name.
    """
    def wrap(fn: PatternFn) -> FunctionPattern:
        pattern = FunctionPattern(op, fn, name)
        _check_op(op, pattern.label)
        return pattern

    return wrap


def _check_op(op: object, label: str) -> None:
    """Raise GraphError unless ``op`` names a non-leaf op of the op table."""
    if isinstance(op, str) and op in OP_TABLE and op not in LEAF_OPS:
        return
    if isinstance(op, str) and op in LEAF_OPS:
        fix = "leaves (input, param, state) are never rewritten; match their users"
    else:
        near = difflib.get_close_matches(str(op), [o for o in OP_TABLE if o not in LEAF_OPS])
        fix = f"did you mean {near[0]!r}?" if near else "see graphc.OP_TABLE for the ops"
    raise GraphError(f"pattern {label!r} names op {op!r}, which patterns cannot rewrite",
                     fix=fix)


def _by_op(patterns: Iterable[RewritePattern]) -> dict[str, tuple[RewritePattern, ...]]:
    """op -> its patterns, in the order given (the first to return a value wins)."""
    table: dict[str, list[RewritePattern]] = {}
    for p in patterns:
        if not isinstance(p, RewritePattern):
            raise GraphError(f"{p!r} is not a RewritePattern",
                             fix="decorate the function with @rewrite_pattern(op)")
        _check_op(p.op, p.label)
        table.setdefault(p.op, []).append(p)
    return {op: tuple(ps) for op, ps in table.items()}


@dataclasses.dataclass
class _Sweep:
    """One forward pass of the patterns over a graph (see :func:`apply_patterns`)."""

    table: dict[str, tuple[RewritePattern, ...]]
    limit: int
    fired: Counter[str] = dataclasses.field(default_factory=Counter)
    settled: bool = True  # False: some node in the result may still match a pattern

    def run(self, src: Graph) -> Graph:
        rb = Rebuilder(src)
        dst, image, table = rb.dst, rb.map, self.table
        nodes = dst._nodes
        replaced: set[Tensor] = set()
        for t in src._nodes:
            if t.op in LEAF_OPS:
                continue
            attrs = t.attrs
            if t.inplace and t.inputs[0] in replaced:  # it asked to write over another value
                attrs = MappingProxyType(without_inplace(t))
            node = Tensor._trusted(dst, t.op, tuple(image[i] for i in t.inputs), attrs,
                                   t.shape, t.dtype, t.name)
            if t.op not in table:
                nodes.append(node)
                image[t] = node
                continue
            mark = len(nodes)
            value, settled = self._rewrite(node, rb)
            if value is node and len(nodes) == mark:  # kept, nothing built: the usual case
                nodes.append(node)
            else:
                self._keep_used(node, value, nodes, mark)
                self.settled &= settled
            image[t] = value
            if value is not node:
                replaced.add(t)
        return rb.finish()

    def _rewrite(self, node: Tensor, rb: Rebuilder) -> tuple[Tensor, bool]:
        """Offer ``node`` to its patterns, then each new node a pattern returns, until
        one is kept. Returns the value and whether every pattern declined it (False when
        it is a node some pattern rewrote, kept because another pattern returned it)."""
        current = node
        for _ in range(self.limit):
            for p in self.table.get(current.op, ()):
                value = p.match_and_rewrite(current, rb)
                if value is not None and value is not current:
                    break
            else:
                return current, True
            self._check(p, node, value, rb)
            self.fired[p.label] += 1
            if value.uid <= node.uid and value is not node:
                return value, True  # an earlier node: every pattern has seen it
            if value is node or value.op not in self.table:
                return value, value is not node
            current = value  # a new node of an op with patterns: offer it too
        raise RewriteError(
            f"pattern {p.label!r} did not converge on {node.op} node {_describe(node)}: "
            f"{self.limit} rewrites in a row (patterns that undo each other?)",
            pattern=p.label, node=node)

    def _check(self, p: RewritePattern, node: Tensor, value: object, rb: Rebuilder) -> None:
        """Raise RewriteError unless ``value`` can stand for ``node``."""
        where = f"pattern {p.label!r} on {node.op} node {_describe(node)}"
        if not isinstance(value, Tensor):
            raise RewriteError(f"{where} returned a {type(value).__name__}, not a Tensor or "
                               "None", pattern=p.label, node=node)
        if value.graph is not rb.dst:
            what = "the source graph" if value.graph is rb.src else f"graph @{value.graph.name}"
            raise RewriteError(f"{where} returned {value!r}, a tensor of {what}: node.inputs "
                               "are already rewritten; build new nodes with rewriter.dst",
                               pattern=p.label, node=node)
        if (value.shape, value.dtype) != (node.shape, node.dtype):
            raise RewriteError(f"{where} returned a {value.type_str} value for a "
                               f"{node.type_str} node: a replacement keeps shape and dtype",
                               pattern=p.label, node=node)

    def _keep_used(self, node: Tensor, value: Tensor, nodes: list[Tensor], mark: int) -> None:
        """Keep, of the nodes built while rewriting ``node`` (``nodes[mark:]``) and
        ``node`` itself, those ``value`` uses; drop the rest. Kept nodes other than
        ``value`` were not offered to the patterns with their final operands, so another
        sweep is needed."""
        built = nodes[mark:]
        step = {node, *built}
        used: set[Tensor] = set()
        stack = [value]
        while stack:
            t = stack.pop()
            if t in step and t not in used:
                used.add(t)
                stack.extend(t.inputs)
        if value.uid > node.uid and value not in step:
            raise RewriteError(f"a pattern returned {value!r} for {_describe(node)}, which was "
                               "never added to the graph: build nodes with rewriter.dst "
                               "methods, not the Tensor constructor", node=node)
        del nodes[mark:]
        if node in used:  # its operands are all older than anything built here
            nodes.append(node)
        nodes.extend(t for t in built if t in used)
        if used - {value}:
            self.settled = False


def _describe(t: Tensor) -> str:
    return f"%{t.name}" if t.name else f"{t.op} : {t.type_str}"


def _drop_dead(g: Graph) -> None:
    """Remove, in place, the non-leaf nodes of ``g`` (a graph this module just built)
    that no output and no state update needs."""
    live = live_nodes(g, [*g.outputs.values(), *g.assigns.values()])
    if len(live) < len(g._nodes):
        g._nodes[:] = [t for t in g._nodes if t.op in LEAF_OPS or t in live]


def apply_patterns(g: Graph, patterns: Iterable[RewritePattern], *,
                   max_iterations: int = DEFAULT_MAX_ITERATIONS, dce: bool = True,
                   verify: bool = True) -> Graph:
    """Rewrite ``g`` with ``patterns`` until none applies; return the new graph (``g`` is
    not changed).

    Nodes are visited in order; a node is offered to the patterns for its op (in the
    order given; the first to return a value wins) with its operands already rewritten,
    and a replacement that is a new node is offered in turn. A sweep that leaves no node
    a pattern has not declined is the fixpoint; otherwise another sweep runs, up to
    ``max_iterations`` sweeps (and as many rewrites of one node in a row), after which a
    :class:`RewriteError` names the patterns still firing. Uses, outputs (with their
    rows) and state updates of a replaced node follow its replacement. With ``dce``,
    nodes no output or state update needs are dropped at the end (leaves always stay).
    With ``verify``, the result is checked by :func:`graphc.verify`; an invalid result
    is a RewriteError naming the patterns that fired.
    """
    table = _by_op(patterns)
    if max_iterations < 1:
        raise GraphError(f"max_iterations must be at least 1, got {max_iterations}")
    current = g
    fired: Counter[str] = Counter()
    for _ in range(max_iterations):
        sweep = _Sweep(table, max_iterations)
        current = sweep.run(current)
        fired.update(sweep.fired)
        if sweep.settled:
            break
    else:
        last = sweep.fired.most_common()
        raise RewriteError(
            f"patterns did not converge in {max_iterations} sweeps; still firing in the "
            "last one: " + ", ".join(f"{name!r} ({n}x)" for name, n in last),
            pattern=last[0][0] if last else None)
    for observer in _OBSERVERS:
        observer.update(fired)
    if dce:
        _drop_dead(current)
    if verify:
        try:
            verify_graph(current)
        except GraphError as e:
            raise RewriteError("the patterns produced an invalid graph (fired: "
                               f"{', '.join(fired) or 'none'}): {e}") from e
    return current


def pattern_pass(name: str, summary: str, patterns: Iterable[RewritePattern], *,
                 dce: bool = True, max_iterations: int = DEFAULT_MAX_ITERATIONS
                 ) -> type[Pass]:
    """Register the pass ``name`` (kebab-case; no options) that runs
    :func:`apply_patterns` with ``patterns``, and return its class.

    ``summary`` is the one-line description pipelines list. The patterns are checked
    now (an unknown op is a GraphError). Afterwards ``PassManager("name")`` and
    ``graphc opt -p name`` (in a process that registered it) run it.
    """
    pats = tuple(patterns)
    _by_op(pats)

    def run(self: Pass, g: Graph) -> Graph:
        return apply_patterns(g, pats, dce=dce, max_iterations=max_iterations)

    caller = sys._getframe(1).f_globals.get("__name__", __name__)
    cls_name = "".join(part.title() for part in name.replace("_", "-").split("-")) + "Pass"
    doc = f"{summary}\n\nPatterns: " + ", ".join(p.label for p in pats) + "."
    cls: type[Pass] = dataclasses.dataclass(type(cls_name, (Pass,), {
        "name": name, "summary": summary, "run": run, "patterns": pats, "__doc__": doc,
        "__module__": caller}))
    return register_pass(cls)
