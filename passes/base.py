"""`Pass`: a named, typed ``Graph -> Graph`` transformation, and the registry of passes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast, get_type_hints

from graphc.errors import GraphError
from graphc.graph import Graph


class Pass:
    """A compiler pass: ``run(g)`` returns a new graph and never changes ``g``.

    Subclasses are dataclasses whose fields are the pass's options (typed: str, int,
    float, bool), with a kebab-case ``name`` and a one-line ``summary``. Register them
    with :func:`register_pass` so pipelines can name them.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def run(self, g: Graph) -> Graph:
        """Return the transformed graph."""
        raise NotImplementedError(f"pass {self.name!r} does not implement run()")

    def __call__(self, g: Graph) -> Graph:
        return self.run(g)

    def options(self) -> dict[str, Any]:
        """The option values of this pass object."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]  # a dataclass

    def spec(self) -> str:
        """The pipeline text of this pass with non-default options, e.g. ``cse`` or
        ``dead-outputs{reads=logits[-1]}``."""
        changed = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # subclasses are dataclasses
            value = getattr(self, f.name)
            if f.default is dataclasses.MISSING or value != f.default:
                text = str(value).lower() if isinstance(value, bool) else str(value)
                changed.append(f"{f.name}={text}")
        return self.name + ("{" + ", ".join(changed) + "}" if changed else "")


PASSES: dict[str, type[Pass]] = {}

P = TypeVar("P", bound=type[Pass])


def register_pass(cls: P) -> P:
    """Class decorator: make the pass available to pipelines under ``cls.name``."""
    if not cls.name or cls.name in PASSES:
        raise ValueError(f"pass name {cls.name!r} is empty or already registered")
    if not dataclasses.is_dataclass(cls):
        cls = cast(P, dataclasses.dataclass(cls))  # options are the fields; none is fine
    PASSES[cls.name] = cls
    return cls


def _convert(pass_name: str, key: str, text: str, kind: Any) -> Any:
    try:
        if kind is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        raise GraphError(f"option {key}={text!r} of pass {pass_name!r} is not a valid "
                         f"{getattr(kind, '__name__', kind)}") from None


def make_pass(name: str, options: dict[str, str | Any] | None = None) -> Pass:
    """Instantiate the registered pass ``name`` with options (text values are converted
    to the option's type). Unknown passes and options are errors listing what exists."""
    if name not in PASSES:
        raise GraphError(f"unknown pass {name!r}", fix="passes: " + ", ".join(sorted(PASSES)))
    cls = PASSES[name]
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]  # registered as one
    kwargs: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise GraphError(f"pass {name!r} has no option {key!r}", fix=f"options: {known}")
        kind = hints.get(key, str)
        kwargs[key] = _convert(name, key, value, kind) if isinstance(value, str) else value
    missing = [k for k, f in fields.items() if f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING and k not in kwargs]
    if missing:
        raise GraphError(f"pass {name!r} needs the option {missing[0]!r}",
                         fix=f"write {name}{{{missing[0]}=...}}")
    return cls(**kwargs)


def function_pass(name: str, summary: str
                  ) -> Callable[[Callable[[Graph], Graph]], Callable[[Graph], Graph]]:
    """Decorator registering an option-less ``Graph -> Graph`` function as the pass
    ``name``; the function itself is returned unchanged."""

    def wrap(fn: Callable[[Graph], Graph]) -> Callable[[Graph], Graph]:
        cls: type[Pass] = dataclasses.dataclass(type(
            fn.__name__.title().replace("_", "") + "Pass", (Pass,),
            {"name": name, "summary": summary, "run": lambda self, g: fn(g),
             "__doc__": fn.__doc__, "__module__": fn.__module__},
        ))
        register_pass(cls)
        return fn

    return wrap
