"""The text format: ``to_text`` prints a graph, ``parse_text`` reads one back.

Printing then parsing then printing gives the same text. The parser is a small
hand-written tokenizer and recursive-descent reader: attribute values are literals
(numbers, strings, booleans, lists) and nothing in a file is ever evaluated as code.
Every error is a :class:`GraphError` at ``file:line:col`` with the line and a caret.

Grammar (``//`` starts a comment)::

    file   := "graph" "@" NAME "{" stmt* "}"
    stmt   := "%" NAME "=" (LEAF STRING | OP "(" [operand {"," operand}] ")" [attrs]) ":" type
            | "output" "%" NAME "as" STRING ["rows" "[" INT {"," INT} "]"]
            | "assign" "%" NAME "," "%" NAME
    attrs  := "{" [NAME "=" literal {"," NAME "=" literal}] "}"
    type   := DTYPE "[" [INT {"," INT}] "]"
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import networkx as nx

from graphc.dtypes import DTYPES
from graphc.errors import GraphError
from graphc.graph import DeclaredTypeError, Graph, valid_name
from graphc.naming import node_lines, ssa_names
from graphc.ops import OpError, check_shape
from graphc.tensor import LEAF_OPS, Tensor
from graphc.verifier import verify

# ------------------------------------------------------------------------------ printing


def _graph_label(name: str) -> str:
    return name if valid_name(name) else json.dumps(name)


def to_text(g: Graph) -> str:
    """Print ``g`` in the text format (ends with a newline)."""
    names = ssa_names(g)
    lines = node_lines(g, names)
    out = [f"graph @{_graph_label(g.name)} {{"]
    out += [f"  {lines[t]}" for t in g.nodes]
    for n, t in g.outputs.items():
        rows = g.output_rows(n)
        sel = "" if rows is None else f" rows [{', '.join(map(str, rows))}]"
        out.append(f"  output %{names[t]} as {json.dumps(n)}{sel}")
    out += [f"  assign %{names[s]}, %{names[v]}" for s, v in g.assigns.items()]
    out.append("}")
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ tokens

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>[ \t\r]+|//[^\n]*)
  | (?P<nl>\n)
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<graph>@(?:[A-Za-z_][A-Za-z0-9_.]*|"(?:[^"\\\n]|\\.)*"))
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[=(){}\[\],:])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    """One token with its 1-based place in the source."""

    kind: str
    text: str
    line: int
    col: int


class _Source:
    def __init__(self, text: str, filename: str | None) -> None:
        self.text = text
        self.filename = filename
        self.lines = text.split("\n")

    def error(self, message: str, line: int, col: int, fix: str | None = None,
              node: Tensor | None = None) -> GraphError:
        src = self.lines[line - 1] if 0 < line <= len(self.lines) else None
        return GraphError(message, fix=fix, node=node, file=self.filename, line=line,
                          col=col, source_line=src)


def tokenize(text: str, filename: str | None = None) -> list[Token]:
    """Split text into tokens, ending with an ``eof`` token.

    At an unknown character the list ends with an ``error`` token carrying the message
    there, so the parser reports it only if it gets that far.
    """
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            what = "an unterminated string" if ch == '"' else f"unexpected character {ch!r}"
            tokens.append(Token("error", what, line, pos - line_start + 1))
            return tokens
        kind = m.lastgroup or ""
        if kind == "nl":
            line, line_start = line + 1, m.end()
        elif kind != "ws":
            tokens.append(Token(kind, m.group(), line, pos - line_start + 1))
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1))
    return tokens


# ------------------------------------------------------------------------------ parsing

_DEF_RE = re.compile(r"^\s*%([A-Za-z0-9_.]+)\s*=\s*[A-Za-z_]\w*\s*\(([^)]*)\)", re.MULTILINE)


class _Parser:
    def __init__(self, text: str, filename: str | None) -> None:
        self.src = _Source(text, filename)
        self.tokens = tokenize(text, filename)
        self.i = 0
        self.values: dict[str, tuple[Tensor, int]] = {}
        self.g = Graph()
        self.defining: str | None = None

    # -- token helpers
    @property
    def tok(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind == "error":
            raise self.src.error(tok.text, tok.line, tok.col)
        return tok

    def error(self, message: str, tok: Token | None = None, fix: str | None = None
              ) -> GraphError:
        t = tok or self.tok
        return self.src.error(message, t.line, t.col, fix)

    def _what(self, tok: Token) -> str:
        return "end of input" if tok.kind == "eof" else repr(tok.text)

    def expect(self, text: str) -> Token:
        tok = self.tok
        if tok.text != text or tok.kind in ("string", "eof"):
            raise self.error(f"expected {text!r}, found {self._what(tok)}")
        self.i += 1
        return tok

    def expect_kind(self, kind: str, what: str) -> Token:
        tok = self.tok
        if tok.kind != kind:
            raise self.error(f"expected {what}, found {self._what(tok)}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind not in ("string", "eof"):
            self.i += 1
            return True
        return False

    def string(self, tok: Token) -> str:
        try:
            text: str = json.loads(tok.text)  # the token is a JSON string literal
            return text
        except json.JSONDecodeError as e:
            raise self.error(f"bad string literal: {e.msg}", tok) from None

    # -- grammar
    def parse(self) -> Graph:
        self.expect("graph")
        gtok = self.expect_kind("graph", "a graph name like @main")
        label = gtok.text[1:]
        self.g.name = self.string(Token("string", label, gtok.line, gtok.col)) if label.startswith(
            '"') else label
        self.expect("{")
        while not self.accept("}"):
            tok = self.tok
            if tok.kind == "eof":
                raise self.error("unexpected end of input: the graph is not closed with '}'")
            if tok.kind == "value":
                self.definition()
            elif tok.text == "output":
                self.output()
            elif tok.text == "assign":
                self.assign()
            else:
                raise self.error(f"expected a statement (%name = ..., output, assign), "
                                 f"found {self._what(tok)}")
        if self.tok.kind != "eof":
            raise self.error(f"unexpected {self._what(self.tok)} after the end of the graph")
        return self.g

    def use(self, tok: Token) -> Tensor:
        name = tok.text[1:]
        if name in self.values:
            return self.values[name][0]
        later = [m for m in _DEF_RE.finditer(self.src.text) if m.group(1) == name]
        if later or re.search(rf"^\s*%{re.escape(name)}\s*=", self.src.text, re.MULTILINE):
            cycle = self._cycle_through(self.defining or name)
            if cycle:
                raise self.error("cycle: " + " -> ".join(f"%{n}" for n in cycle), tok,
                                 fix="a value cannot depend on itself; break the loop")
            raise self.error(f"%{name} is used before its definition", tok,
                             fix="define every value before the line that uses it")
        raise self.error(f"undefined value %{name}", tok,
                         fix="define it first, e.g. as an input or param")

    def _cycle_through(self, name: str) -> list[str]:
        dg: nx.DiGraph = nx.DiGraph()
        for m in _DEF_RE.finditer(self.src.text):
            for arg in re.findall(r"%([A-Za-z0-9_.]+)", m.group(2)):
                dg.add_edge(arg, m.group(1))
        if name not in dg:
            return []
        try:
            edges = nx.find_cycle(dg, source=name)
        except nx.NetworkXNoCycle:
            return []
        return [u for u, _ in edges] + [edges[0][0]]

    def definition(self) -> None:
        vtok = self.expect_kind("value", "a %name")
        name = vtok.text[1:]
        self.defining = name
        if name in self.values:
            first = self.values[name][1]
            raise self.error(f"%{name} is defined twice (first on line {first})", vtok,
                             fix="give each value its own name")
        self.expect("=")
        optok = self.expect_kind("ident", "an op name")
        op = optok.text
        if op in LEAF_OPS:
            stok = self.expect_kind("string", f'the {op} name in quotes, e.g. "x"')
            key = self.string(stok)
            self.expect(":")
            shape, dtype, ttok = self.type()
            try:
                t = self.g.declare(op, (), {}, key, shape, dtype)
            except GraphError as e:
                raise e.located(file=self.src.filename, line=stok.line, col=stok.col,
                                source_line=self.src.lines[stok.line - 1]) from None
        else:
            self.expect("(")
            operands: list[Tensor] = []
            if not self.accept(")"):
                while True:
                    operands.append(self.use(self.expect_kind("value", "an operand like %x")))
                    if self.accept(")"):
                        break
                    self.expect(",")
            attrs = self.attrs() if self.tok.text == "{" else {}
            self.expect(":")
            shape, dtype, ttok = self.type()
            node_name = None if name.isdigit() else name
            try:
                t = self.g.declare(op, operands, attrs, node_name, shape, dtype)
            except DeclaredTypeError as e:
                raise self.error(e.message, ttok, fix=e.fix) from None
            except GraphError as e:
                raise e.located(file=self.src.filename, line=optok.line, col=optok.col,
                                source_line=self.src.lines[optok.line - 1]) from None
        self.values[name] = (t, vtok.line)
        self.defining = None

    def type(self) -> tuple[tuple[int, ...], str, Token]:
        ttok = self.expect_kind("ident", "a type like f32[8, 64]")
        if ttok.text not in DTYPES:
            raise self.error(f"unknown dtype {ttok.text!r}", ttok,
                             fix=f"use one of {', '.join(DTYPES)}")
        self.expect("[")
        dims: list[int] = []
        if not self.accept("]"):
            while True:
                dtok = self.tok
                if dtok.kind != "number" or not re.fullmatch(r"-?\d+", dtok.text):
                    raise self.error(f"expected a dimension (an integer), found "
                                     f"{self._what(dtok)}")
                self.i += 1
                dims.append(int(dtok.text))
                if self.accept("]"):
                    break
                self.expect(",")
        try:
            shape = check_shape(dims, "type")
        except OpError as e:
            raise self.error(e.message, ttok, fix=e.fix) from None
        return shape, ttok.text, ttok

    def attrs(self) -> dict[str, Any]:
        self.expect("{")
        out: dict[str, Any] = {}
        if self.accept("}"):
            return out
        while True:
            ktok = self.expect_kind("ident", "an attribute name")
            if ktok.text in out:
                raise self.error(f"attribute {ktok.text!r} is given twice", ktok)
            self.expect("=")
            out[ktok.text] = self.literal()
            if self.accept("}"):
                return out
            self.expect(",")

    def literal(self) -> Any:
        tok = self.tok
        self.i += 1
        if tok.kind == "number":
            if re.fullmatch(r"-?\d+", tok.text):
                return int(tok.text)
            return float(tok.text)
        if tok.kind == "string":
            return self.string(tok)
        if tok.kind == "ident":
            named = {"true": True, "false": False, "inf": math.inf, "-inf": -math.inf,
                     "nan": math.nan}
            if tok.text in named:
                return named[tok.text]
        if tok.text == "[" and tok.kind == "punct":
            items: list[Any] = []
            if self.accept("]"):
                return items
            while True:
                items.append(self.literal())
                if self.accept("]"):
                    return items
                self.expect(",")
        self.i -= 1
        raise self.error(f"expected a literal (number, string, true/false, list), found "
                         f"{self._what(tok)}", fix="attributes are literals, never expressions")

    def output(self) -> None:
        self.expect("output")
        vtok = self.expect_kind("value", "the %value to output")
        t = self.use(vtok)
        self.expect("as")
        ntok = self.expect_kind("string", 'the output name in quotes, e.g. "logits"')
        rows: list[Any] | None = None
        rtok = self.tok
        if self.accept("rows"):
            rows = self.literal()
            if not isinstance(rows, list):
                raise self.error("expected a list of rows, e.g. rows [-1]", rtok)
        try:
            self.g.set_output(t, self.string(ntok), rows)
        except GraphError as e:
            raise self.error(e.message, rtok if rows is not None else ntok, fix=e.fix) from None

    def assign(self) -> None:
        atok = self.expect("assign")
        state = self.use(self.expect_kind("value", "the %state to assign"))
        self.expect(",")
        value = self.use(self.expect_kind("value", "the %value to assign"))
        try:
            self.g.assign(state, value)
        except GraphError as e:
            raise self.error(e.message, atok, fix=e.fix) from None


def parse_text(text: str, filename: str | None = None) -> Graph:
    """Parse the text format into a verified Graph; raises a located GraphError."""
    if not isinstance(text, str):
        raise GraphError(f"parse_text needs a str, got {type(text).__name__}")
    g = _Parser(text, filename).parse()
    verify(g)
    return g
