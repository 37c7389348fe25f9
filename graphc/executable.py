"""`Executable`: what ``graphc.compile`` returns, the part every backend shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from graphc.binding import check_feeds
from graphc.dtypes import to_numpy
from graphc.graph import Graph
from graphc.reads import Reads


class Executable:
    """A compiled graph bound to its params, holding its states between runs.

    Subclasses implement :meth:`_execute`. :meth:`run` checks the inputs (every input
    present, none extra, right shape and dtype), runs the graph, applies the state
    updates, and returns the outputs named in ``reads`` with only the rows read.
    """

    backend: str = "?"
    compile_report: Any = None  # a graphc.report.CompileReport, set by graphc.compile

    def __init__(
        self,
        graph: Graph,
        params: Mapping[str, Any] | None,
        reads: Reads,
        states: Mapping[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.reads = reads
        self.params = check_feeds("param", graph.params, params)
        seeded = check_feeds("state", graph.states, states, allow_missing=True)
        self.state: dict[str, Any] = {**self._zero_state(), **seeded}

    def _zero_state(self) -> dict[str, Any]:
        return {n: np.zeros(t.shape, dtype=to_numpy(t.dtype))
                for n, t in self.graph.states.items()}

    def reset_state(self) -> None:
        """Set every state to zeros (a new sequence: an empty KV cache)."""
        self.state = self._zero_state()

    def _execute(
        self, inputs: dict[str, Any], state: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run once: return (every read output whole, the new value of every state)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _execute")

    def run(self, inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run the graph on ``inputs``; return ``{output name: array}`` for the reads.

        Only the rows read are returned (``reads={"logits": [-1]}`` gives shape
        ``(1, vocab)``). States are updated after the run, all at once.
        """
        feeds = check_feeds("input", self.graph.inputs, inputs)
        outputs, new_state = self._execute(feeds, self.state)
        self.state.update(new_state)
        result: dict[str, Any] = {}
        for name, sel in self.reads.rows.items():
            value = outputs[name]
            result[name] = value if sel == "all" else value[np.asarray(sel, dtype=np.int32)]
        return result

    def report(self) -> Any:
        """What compile did: passes, FLOPs before and after, memory, times
        (a :class:`graphc.report.CompileReport`; ``print`` it for a summary)."""
        return self.compile_report

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} @{self.graph.name} backend={self.backend} "
                f"reads={self.reads.to_text()}>")
