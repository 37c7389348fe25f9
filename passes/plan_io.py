"""Memory plans as JSON files, so a plan made by one process or tool can be checked by
another (``graphc check FILE --plan plan.json``).

Tensors are named by their text-format names (``%h`` is ``"h"``, unnamed nodes by number),
the same names ``graphc fmt`` prints. The file carries the graph's structural
fingerprint, which does not depend on the process, so loading checks that the plan was
made for this version of the graph. The schema is a pydantic model
(:func:`plan_json_schema`); ``schema_version`` changes with any incompatible change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from graphc.errors import GraphError
from graphc.fileio import atomic_write_text
from graphc.graph import Graph
from graphc.naming import ssa_names
from graphc.passes.memory import MemoryPlan, Placement, fingerprint
from graphc.tensor import Tensor

PLAN_SCHEMA_VERSION: Literal[1] = 1


class PlacementModel(BaseModel):
    """Where one tensor's bytes are (see :class:`graphc.passes.memory.Placement`)."""

    model_config = ConfigDict(extra="forbid")
    region: Literal["arena", "state", "param"]
    offset: int
    nbytes: int = Field(ge=0)
    view_of: str | None = None
    inplace_of: str | None = None
    strides: list[int] | None = None


class PlanModel(BaseModel):
    """A whole memory plan, tensors named by their text-format names."""

    model_config = ConfigDict(extra="forbid")
    schema_version: Literal[1] = PLAN_SCHEMA_VERSION
    graph: str
    fingerprint: str
    strategy: str = "custom"
    alignment: int = Field(default=64, ge=1)
    arena_bytes: int = Field(ge=0)
    state_bytes: int = Field(ge=0)
    param_bytes: int = Field(ge=0)
    lower_bound_bytes: int = Field(default=0, ge=0)
    order: list[str]
    placements: dict[str, PlacementModel]
    kept: list[str] = Field(default_factory=list)
    certificate: str = ""


def plan_json_schema() -> dict[str, object]:
    """The JSON schema of plan files."""
    return PlanModel.model_json_schema()


def plan_to_json(plan: MemoryPlan, g: Graph) -> str:
    """``plan`` (made for ``g``) as JSON text."""
    names = ssa_names(g)

    def name(t: Tensor) -> str:
        if t not in names:
            raise GraphError(f"the plan holds {t!r}, which is not a node of @{g.name}",
                             fix="save a plan with the graph it was made for")
        return names[t]

    model = PlanModel(
        graph=plan.graph_name, fingerprint=plan.fingerprint, strategy=plan.strategy,
        alignment=plan.alignment, arena_bytes=plan.arena_bytes, state_bytes=plan.state_bytes,
        param_bytes=plan.param_bytes, lower_bound_bytes=plan.lower_bound_bytes,
        order=[name(t) for t in plan.order],
        placements={name(t): PlacementModel(
            region=p.region, offset=p.offset, nbytes=p.nbytes,
            view_of=None if p.view_of is None else name(p.view_of),
            inplace_of=None if p.inplace_of is None else name(p.inplace_of),
            strides=None if p.strides is None else list(p.strides))
            for t, p in plan.placements.items()},
        kept=sorted(name(t) for t in plan.kept), certificate=plan.certificate,
    )
    return model.model_dump_json(indent=1, exclude_defaults=False) + "\n"


def plan_from_json(text: str, g: Graph, source: str = "<plan>") -> MemoryPlan:
    """The plan in ``text``, its names resolved against ``g``.

    Raises GraphError (naming ``source`` and the entry at fault) for text that is not
    JSON, does not match the schema, names a tensor ``g`` does not have, or was made for
    another graph or version of it (its fingerprint is not ``g``'s).
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise GraphError(f"{source}:{e.lineno}:{e.colno}: not JSON: {e.msg}",
                         fix="write the plan with graphc plan FILE -o plan.json") from None
    try:
        model = PlanModel.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise GraphError(f"{source}: not a graphc plan: {where}: {err['msg']}",
                         fix="see graphc.passes.plan_io.plan_json_schema() for the format"
                         ) from None
    if model.graph != g.name or model.fingerprint != fingerprint(g):
        raise GraphError(
            f"{source}: the plan was made for @{model.graph} (fingerprint "
            f"{model.fingerprint[:12]}...), not this version of @{g.name} "
            f"({fingerprint(g)[:12]}...)",
            fix="plan this graph again: graphc plan FILE -o plan.json")
    by_name = {n: t for t, n in ssa_names(g).items()}

    def tensor(name: str, where: str) -> Tensor:
        try:
            return by_name[name]
        except KeyError:
            raise GraphError(f"{source}: {where} names %{name}, which @{g.name} does not have",
                             fix="save the plan from the same graph file") from None

    placements = {}
    for name, p in model.placements.items():
        t = tensor(name, "placements")
        if p.strides is not None and len(p.strides) != t.ndim:
            raise GraphError(f"{source}: %{name} has {len(p.strides)} strides, but its type "
                             f"{t.type_str} has {t.ndim} axes",
                             fix="give one stride per axis, or leave strides out (dense)")
        placements[t] = Placement(
            p.region, p.offset, p.nbytes,
            view_of=None if p.view_of is None else tensor(p.view_of, f"%{name}.view_of"),
            inplace_of=None if p.inplace_of is None else tensor(p.inplace_of,
                                                                f"%{name}.inplace_of"),
            strides=None if p.strides is None else tuple(p.strides))
    return MemoryPlan(
        graph_name=model.graph, order=[tensor(n, "order") for n in model.order],
        placements=placements, arena_bytes=model.arena_bytes, state_bytes=model.state_bytes,
        param_bytes=model.param_bytes, lower_bound_bytes=model.lower_bound_bytes,
        fingerprint=model.fingerprint, strategy=model.strategy, alignment=model.alignment,
        kept=frozenset(tensor(n, "kept") for n in model.kept), certificate=model.certificate)


def save_plan(plan: MemoryPlan, g: Graph, path: str | Path) -> None:
    """Write ``plan`` (made for ``g``) to ``path`` as JSON, atomically."""
    atomic_write_text(path, plan_to_json(plan, g))


def load_plan(path: str | Path, g: Graph) -> MemoryPlan:
    """Read a plan file written by :func:`save_plan` (or any tool) for ``g``; GraphError
    for a file that cannot be read or does not belong to ``g``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GraphError(f"cannot read plan file {path}: {e}",
                         fix="check the path; write plans with graphc plan FILE -o "
                             "plan.json") from None
    return plan_from_json(text, g, str(path))


__all__ = ["PLAN_SCHEMA_VERSION", "load_plan", "plan_from_json", "plan_json_schema",
           "plan_to_json", "save_plan"]
