"""Buffers live on time intervals: the data of the static buffer-placement problem.

A :class:`Buffer` needs ``size`` bytes while it is live, on the half-open interval
``[lower, upper)``. A placement gives every buffer an ``offset``; it is valid when no two
buffers live at the same time overlap in ``[offset, offset + size)`` and every buffer ends at
or below the capacity. Two buffers with ``a.upper == b.lower`` are never live together.

The file format is MiniMalloc's CSV: a header ``id,lower,upper,size`` (in any order, extra
columns ignored) and one row per buffer; a solution adds an ``offset`` column. The id is a
name, as in MiniMalloc (``b1``, ``7``, ``007`` are three ids), written back as given; the
other fields are integers.
:func:`read_intervals` refuses a bad file with a :class:`~graphc.errors.GraphError` naming
``file:line``.

:func:`max_live` is the lower bound on any placement's height and :func:`check_solution`
an independent validator (a sweep over time, comparing each starting buffer with every
buffer live then) that the exact solver's tests rely on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from graphc.errors import GraphError

LIMIT = 1 << 62
"""Every integer in an interval file, and the sum of the sizes, must be below this (the
solvers compute in 64-bit integers; a height is at most the sum of the sizes)."""

COLUMNS: tuple[str, ...] = ("id", "lower", "upper", "size")
"""The columns every interval file must have; ``offset`` is optional."""

BufferId = int | str
"""A buffer's id: an ``int`` when made in code (and when read as canonical base-10 text, such
as ``7`` or ``-3``), else the ``str`` of the file (``b1``, ``007``, ``+7``). ``str(id)`` is
always the text written to and read from a file, so no two ids in a file share it."""


@dataclass(frozen=True, slots=True)
class Buffer:
    """``size`` bytes live on ``[lower, upper)``; ``offset`` is where it is placed, if it is.

    Contract (checked by :func:`read_intervals`, assumed elsewhere): ``upper > lower``,
    ``size >= 0`` and, when set, ``offset >= 0``. ``id`` is a :data:`BufferId`, unique
    within a problem by its text ``str(id)``.
    """

    id: BufferId
    lower: int
    upper: int
    size: int
    offset: int | None = None

    @property
    def top(self) -> int:
        """``offset + size``; raises ``ValueError`` when the buffer is not placed."""
        if self.offset is None:
            raise ValueError(f"buffer {self.id} has no offset")
        return self.offset + self.size

    def overlaps_in_time(self, other: Buffer) -> bool:
        """Whether the two buffers are live at some common time (half-open intervals)."""
        return self.lower < other.upper and other.lower < self.upper


@dataclass(frozen=True)
class _Where:
    """A place in an interval file, to build located errors."""

    file: str
    line: int
    source_line: str | None

    def error(self, message: str, fix: str | None = None) -> GraphError:
        return GraphError(message, fix=fix, file=self.file, line=self.line, col=1,
                          source_line=self.source_line)

    def integer(self, text: str, column: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise self.error(f"column {column!r} is {text!r}, not an integer",
                             fix="every field but the id must be a base-10 integer") from None
        if not -LIMIT < value < LIMIT:
            raise self.error(f"column {column!r} is {value}, too large for 64-bit arithmetic",
                             fix=f"every integer must be below 2**62 = {LIMIT} in magnitude "
                                 "(scale sizes to a coarser unit)")
        return value

    def ident(self, text: str) -> BufferId:
        """The id field (a comma-free piece of one line): any non-empty text, surrounding
        spaces dropped; an ``int`` when it is canonical base-10 text (the text ``str`` gives
        back), so that ``7`` reads as ``7`` and ``007`` stays ``'007'``."""
        name = text.strip()
        if not name:
            raise self.error("column 'id' is empty",
                             fix="every buffer needs a non-empty id (a name or a number)")
        try:
            number = int(name)
        except ValueError:
            return name
        return number if str(number) == name else name


def read_intervals(path: str | Path) -> list[Buffer]:
    """Read a MiniMalloc CSV file (``id,lower,upper,size[,offset]``) into buffers.

    Returns the buffers in file order; ``offset`` is ``None`` when the column is absent or
    the field is empty. Raises :class:`GraphError` with ``file`` and ``line`` set for an
    empty file, bytes that are not UTF-8, a missing column, a row with too few fields, a
    non-integer, an integer (or a sum of sizes) of 2**62 or more, a negative size or
    offset, ``upper <= lower``, an empty id and a duplicate id. An id is kept as written
    (see :data:`BufferId`).
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise GraphError(f"cannot read {source}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise GraphError(f"byte {data[e.start]:#04x} is not UTF-8 text",
                         fix="an interval file is UTF-8 (or ASCII) CSV text",
                         file=source, line=line, col=e.start - data.rfind(b"\n", 0, e.start),
                         source_line=data.split(b"\n")[line - 1].decode("utf-8", "replace")
                         ) from None
    return parse_intervals(text, source)


def parse_intervals(text: str, source: str = "<text>") -> list[Buffer]:
    """Parse the text of an interval CSV file; see :func:`read_intervals` for the contract.

    ``source`` names the file in errors. A line is split at every comma, as MiniMalloc
    does (no quoting), so an id is any text without a comma and is kept as written.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    rows = [line.split(",") for line in lines]

    def where(lineno: int) -> _Where:
        return _Where(source, lineno, lines[lineno - 1] if 0 < lineno <= len(lines) else None)

    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(f.strip() for f in r)]
    if not numbered:
        raise where(1).error("empty interval file: expected a header 'id,lower,upper,size'")
    header_line, header = numbered[0]
    names = [h.strip().lower() for h in header]
    for col in COLUMNS:
        if col not in names:
            raise where(header_line).error(
                f"missing column {col!r} in the header",
                fix="the header must name id,lower,upper,size (offset optional)")
    index = {name: names.index(name) for name in (*COLUMNS, "offset") if name in names}
    buffers: list[Buffer] = []
    seen: dict[str, int] = {}  # an id's text -> the line it is first on
    total = 0
    for lineno, row in numbered[1:]:
        loc = where(lineno)
        if len(row) < len(header):
            raise loc.error(f"{len(row)} field(s), the header has {len(header)}")
        ident = loc.ident(row[index["id"]])
        lower = loc.integer(row[index["lower"]], "lower")
        upper = loc.integer(row[index["upper"]], "upper")
        size = loc.integer(row[index["size"]], "size")
        offset: int | None = None
        if "offset" in index and row[index["offset"]].strip():
            offset = loc.integer(row[index["offset"]], "offset")
            if offset < 0:
                raise loc.error(f"buffer {ident} has a negative offset {offset}")
        if size < 0:
            raise loc.error(f"buffer {ident} has a negative size {size}")
        if upper <= lower:
            raise loc.error(f"buffer {ident} has upper {upper} <= lower {lower}",
                            fix="a buffer is live on [lower, upper), which must not be empty")
        if str(ident) in seen:
            raise loc.error(f"duplicate id {ident} (first on line {seen[str(ident)]})",
                            fix="ids are compared as written: give every buffer its own")
        seen[str(ident)] = lineno
        total += size
        if total >= LIMIT:
            raise loc.error(f"the sizes add up to {total}, too large for 64-bit arithmetic",
                            fix=f"the sum of the sizes must be below 2**62 = {LIMIT} "
                                "(scale sizes to a coarser unit)")
        buffers.append(Buffer(ident, lower, upper, size, offset))
    return buffers


def write_intervals(path: str | Path, buffers: Iterable[Buffer]) -> None:
    """Write buffers as CSV; the ``offset`` column is written when any buffer has one
    (empty for those without). Ids are written as ``str(id)``, unquoted, as MiniMalloc
    does. :func:`read_intervals` reads the file back unchanged. Raises ``ValueError`` for
    an id that could not be read back: empty, with a comma or a line break, or with
    surrounding spaces."""
    bufs = list(buffers)
    for b in bufs:
        text = str(b.id)
        if not text or text != text.strip() or any(c in text for c in ",\r\n"):
            raise ValueError(f"buffer id {text!r} cannot be written to an interval file")
    with_offset = any(b.offset is not None for b in bufs)
    lines = [",".join([*COLUMNS, "offset"] if with_offset else COLUMNS)]
    for b in bufs:
        row = [str(b.id), str(b.lower), str(b.upper), str(b.size)]
        if with_offset:
            row.append("" if b.offset is None else str(b.offset))
        lines.append(",".join(row))
    Path(path).write_text("".join(line + "\n" for line in lines))


def _events(buffers: Sequence[Buffer]) -> list[tuple[int, int, int]]:
    """(time, kind, index) with ends (kind 0) before starts (kind 1) at equal times."""
    ev = [(b.lower, 1, i) for i, b in enumerate(buffers)]
    ev += [(b.upper, 0, i) for i, b in enumerate(buffers)]
    ev.sort()
    return ev


def max_live(buffers: Sequence[Buffer]) -> int:
    """The largest total size of buffers live at one time (0 for no buffers).

    No placement of the buffers can be lower than this, so it is the lower bound that an
    optimal placement is certified against.
    """
    live = best = 0
    for _, kind, i in _events(buffers):
        live += buffers[i].size if kind else -buffers[i].size
        best = max(best, live)
    return best


def height(buffers: Sequence[Buffer]) -> int:
    """The highest ``offset + size`` of placed buffers (0 when none is placed)."""
    return max((b.offset + b.size for b in buffers if b.offset is not None), default=0)


def check_solution(
    buffers: Sequence[Buffer], capacity: int | None = None, alignment: int | None = None
) -> list[str]:
    """Every problem with a placement, as readable lines; ``[]`` when it is valid.

    Reports a buffer without an offset, a negative offset, a buffer ending above
    ``capacity`` (when given), an offset not a multiple of ``alignment`` (when given), and
    every pair of buffers live at a common time whose byte ranges overlap. Zero-size
    buffers overlap nothing. Independent of the solver: a sweep over time that compares
    each starting buffer with every buffer live at that moment. A pair is named in input order.
    """
    problems: list[str] = []
    for b in buffers:
        if b.offset is None:
            problems.append(f"buffer {b.id} has no offset")
            continue
        if b.offset < 0:
            problems.append(f"buffer {b.id} has a negative offset {b.offset}")
        if capacity is not None and b.offset + b.size > capacity:
            problems.append(f"buffer {b.id} ends at {b.offset + b.size} > capacity {capacity}")
        if alignment is not None and alignment > 1 and b.offset % alignment:
            problems.append(f"buffer {b.id} offset {b.offset} is not a multiple of {alignment}")
    placed = [b for b in buffers if b.offset is not None and b.size > 0]
    live: set[int] = set()
    for _, kind, i in _events(placed):
        if not kind:
            live.discard(i)
            continue
        a = placed[i]
        assert a.offset is not None
        for j in sorted(live):
            b = placed[j]
            assert b.offset is not None
            if a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                first, second = (a, b) if i < j else (b, a)  # input order: ids may mix
                problems.append(
                    f"buffers {first.id} and {second.id} are live together on "
                    f"[{max(a.lower, b.lower)}, {min(a.upper, b.upper)}) and overlap in "
                    f"[{max(a.offset, b.offset)}, "
                    f"{min(a.offset + a.size, b.offset + b.size)})")
        live.add(i)
    return problems
