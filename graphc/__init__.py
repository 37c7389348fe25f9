"""graphc: a compute-graph compiler and scheduler for tensor programs.

Author a graph with :class:`Graph`, mark what callers read with ``set_output``, check it
with :func:`verify`, save it with :func:`to_text` / :func:`to_json`, and run it with
:func:`compile`.
"""

from graphc.driver import compile
from graphc.errors import AliasError, GraphError
from graphc.executable import Executable
from graphc.graph import Graph
from graphc.jsonio import from_json, graph_json_schema, to_json
from graphc.ops import OP_TABLE
from graphc.reads import Reads, parse_reads
from graphc.tensor import Tensor
from graphc.text import parse_text, to_text
from graphc.verifier import verify

__all__ = [
    "OP_TABLE",
    "AliasError",
    "Executable",
    "Graph",
    "GraphError",
    "Reads",
    "Tensor",
    "compile",
    "from_json",
    "graph_json_schema",
    "parse_reads",
    "parse_text",
    "to_json",
    "to_text",
    "verify",
]
__version__ = "0.1.0"
