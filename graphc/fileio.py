"""Reading graphs from files and writing files atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from graphc.errors import GraphError
from graphc.graph import Graph
from graphc.jsonio import from_json
from graphc.text import parse_text


class FileReadError(GraphError):
    """The file itself could not be read (missing, a directory, not UTF-8)."""


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Either the whole new content lands or the old file (if any) is left untouched.
    """
    target = Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(2, "no such folder", str(target.parent))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                               dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_graph(path: str | os.PathLike[str]) -> Graph:
    """Read a graph from a ``.json`` file or a text-format file (any other name).

    Raises GraphError for an unreadable file or a bad graph, located in the file.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileReadError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise FileReadError(f"{p}: is a directory, not a graph file") from None
    except UnicodeDecodeError as e:
        raise FileReadError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise FileReadError(f"{p}: cannot read: {e.strerror}") from None
    if p.suffix == ".json":
        try:
            return from_json(text)
        except GraphError as e:
            if e.line is not None:
                raise e.located(file=str(p), line=e.line, col=e.col or 1,
                                source_line=text.split("\n")[e.line - 1]) from None
            e.message = f"{p}: {e.message}"
            raise GraphError(e.message, fix=e.fix) from None
    return parse_text(text, str(p))
