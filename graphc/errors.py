"""The two error types users catch: a bad graph or file, and an unsafe memory plan."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphc.tensor import Tensor


class GraphError(ValueError):
    """A graph, a file or a call that graphc cannot accept.

    Carries what a person needs to act: the message, the node (``node``) when one is to
    blame, the place in a text file (``file``, ``line``, ``col``, ``source_line``) when
    the graph came from text, the IR line of the node (``ir_line``) otherwise, and a
    one-line ``fix`` when there is an obvious one.
    """

    def __init__(
        self,
        message: str,
        *,
        node: Tensor | None = None,
        fix: str | None = None,
        file: str | None = None,
        line: int | None = None,
        col: int | None = None,
        source_line: str | None = None,
        ir_line: str | None = None,
    ) -> None:
        self.message = message
        self.node = node
        self.fix = fix
        self.file = file
        self.line = line
        self.col = col
        self.source_line = source_line
        self.ir_line = ir_line
        super().__init__(str(self))

    def located(
        self, *, file: str | None, line: int, col: int, source_line: str | None
    ) -> GraphError:
        """Return a copy of this error placed at ``file:line:col``."""
        return GraphError(
            self.message,
            node=self.node,
            fix=self.fix,
            file=file,
            line=line,
            col=col,
            source_line=source_line,
        )

    def __str__(self) -> str:
        parts: list[str] = []
        if self.line is not None:
            where = f"{self.file or '<text>'}:{self.line}:{self.col or 1}"
            parts.append(f"{where}: error: {self.message}")
            if self.source_line is not None:
                parts.append(f"  {self.source_line}")
                parts.append("  " + " " * max((self.col or 1) - 1, 0) + "^")
        else:
            parts.append(f"error: {self.message}")
            if self.ir_line is not None:
                parts.append(f"  at: {self.ir_line}")
        if self.fix:
            parts.append(f"  fix: {self.fix}")
        return "\n".join(parts)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_graph_error, (self.message, self.fix, self.file, self.line, self.col,
                                       self.source_line, self.ir_line))


def _rebuild_graph_error(
    message: str,
    fix: str | None,
    file: str | None,
    line: int | None,
    col: int | None,
    source_line: str | None,
    ir_line: str | None,
) -> GraphError:
    return GraphError(message, fix=fix, file=file, line=line, col=col,
                      source_line=source_line, ir_line=ir_line)


class AliasError(RuntimeError):
    """A memory plan that is not proven safe; ``violations`` lists every problem found."""

    def __init__(self, violations: Sequence[Any], header: str | None = None) -> None:
        self.violations = list(violations)
        head = header or f"memory plan is not safe: {len(self.violations)} violation(s)"
        body = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(f"{head}\n{body}" if body else head)
