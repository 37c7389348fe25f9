"""The JSON interchange format: pydantic models, a published schema, ``schema_version``."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)
from typing_extensions import TypeAliasType

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.naming import ssa_names
from graphc.tensor import LEAF_OPS, Tensor
from graphc.verifier import verify

SCHEMA_VERSION: Literal[1] = 1

Literal_ = TypeAliasType(  # type: ignore[misc]  # mypy cannot follow this recursion
    "Literal_",  # a recursive alias pydantic can name in the schema
    StrictBool | StrictInt | StrictFloat | StrictStr | list["Literal_"],  # type: ignore[misc]
)


class NodeModel(BaseModel):
    """One node: ``id`` is its SSA name, ``inputs`` the ids of its operands."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")
    id: StrictStr
    op: StrictStr
    inputs: list[StrictStr] = Field(default_factory=list)
    attrs: dict[str, Literal_] = Field(default_factory=dict)
    shape: list[Annotated[StrictInt, Field(ge=0)]]
    dtype: Literal["f32", "f16", "bf16", "i32", "bool", "u8"]
    name: StrictStr | None = None


class OutputModel(BaseModel):
    """An output mark: the node ``id`` readable as ``name``; ``rows``: the rows the caller
    reads (absent: all of them)."""

    model_config = ConfigDict(extra="forbid")
    name: StrictStr
    id: StrictStr
    rows: list[StrictInt] | None = None


class AssignModel(BaseModel):
    """A state update: ``state`` takes ``value``'s content at the end of a run."""

    model_config = ConfigDict(extra="forbid")
    state: StrictStr
    value: StrictStr


class GraphModel(BaseModel):
    """A whole graph; ``schema_version`` must equal the version this graphc reads."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")
    schema_version: Literal[1]
    name: StrictStr
    nodes: list[NodeModel]
    outputs: list[OutputModel] = Field(default_factory=list)
    assigns: list[AssignModel] = Field(default_factory=list)


def graph_json_schema() -> dict[str, Any]:
    """The JSON schema of the interchange format."""
    return GraphModel.model_json_schema()


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple | list) else value


def _rows_list(rows: tuple[int, ...] | None) -> list[int] | None:
    return None if rows is None else list(rows)


def to_model(g: Graph) -> GraphModel:
    """The pydantic model of ``g``."""
    names = ssa_names(g)
    nodes = [
        NodeModel(
            id=names[t], op=t.op, inputs=[names[i] for i in t.inputs],
            attrs={k: _plain(v) for k, v in t.attrs.items()}, shape=list(t.shape),
            dtype=t.dtype,  # type: ignore[arg-type]  # a DTYPES name, checked by the graph
            name=t.name if (t.is_leaf or (t.name is not None and t.name != names[t])) else None,
        )
        for t in g.nodes
    ]
    return GraphModel(
        schema_version=SCHEMA_VERSION, name=g.name, nodes=nodes,
        outputs=[OutputModel(name=n, id=names[t], rows=_rows_list(g.output_rows(n)))
                 for n, t in g.outputs.items()],
        assigns=[AssignModel(state=names[s], value=names[v]) for s, v in g.assigns.items()],
    )


def to_json(g: Graph, indent: int | None = 2) -> str:
    """Serialize ``g`` to a JSON document."""
    return to_model(g).model_dump_json(indent=indent, exclude_none=True)


def _schema_error(e: ValidationError) -> GraphError:
    first = e.errors()[0]
    where = "/".join(str(p) for p in first["loc"])
    return GraphError(f"JSON document does not match the graph schema at {where}: "
                      f"{first['msg']}" + (f" ({e.error_count() - 1} more)"
                                            if e.error_count() > 1 else ""),
                      fix="compare with graphc.graph_json_schema()")


def from_json(text: str | bytes) -> Graph:
    """Read a JSON document into a verified Graph; every problem is a GraphError."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        msg = getattr(e, "msg", str(e))
        line = getattr(e, "lineno", None)
        col = getattr(e, "colno", None)
        raise GraphError(f"not valid JSON: {msg}", line=line, col=col, file="<json>") from None
    if isinstance(doc, dict) and doc.get("schema_version", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise GraphError(f"unsupported schema_version {doc.get('schema_version')!r}; this "
                         f"graphc reads version {SCHEMA_VERSION}",
                         fix="re-export the graph with this version of graphc")
    try:
        model = GraphModel.model_validate(doc)
    except ValidationError as e:
        raise _schema_error(e) from None
    return from_model(model)


def from_model(model: GraphModel) -> Graph:
    """Build a Graph from its pydantic model, checking every node as it is added."""
    g = Graph(model.name)
    ids: dict[str, Tensor] = {}

    def ref(node: str, what: str) -> Tensor:
        if node not in ids:
            raise GraphError(f"{what} refers to undefined node {node!r}",
                             fix="nodes must be listed after the nodes they use")
        return ids[node]

    for n in model.nodes:
        where = f"node {n.id!r}"
        if n.id in ids:
            raise GraphError(f"{where} is defined twice")
        ins = [ref(i, f"input of {where}") for i in n.inputs]
        leaf = n.op in LEAF_OPS
        name = n.name if n.name is not None else (n.id if leaf or not n.id.isdigit() else None)
        try:
            t = g.declare(n.op, ins, n.attrs, name, n.shape, n.dtype)
        except GraphError as e:
            raise GraphError(f"{where}: {e.message}", fix=e.fix) from None
        ids[n.id] = t
    for o in model.outputs:
        try:
            g.set_output(ref(o.id, f"output {o.name!r}"), o.name, o.rows)
        except GraphError as e:
            raise GraphError(f"output {o.name!r}: {e.message}", fix=e.fix) from None
    for a in model.assigns:
        g.assign(ref(a.state, "assign"), ref(a.value, "assign"))
    verify(g)
    return g
