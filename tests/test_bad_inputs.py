"""The bad-input corpus: every file must give one clear GraphError, located, no traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import graphc as gc
from graphc.cli import main
from graphc.fileio import read_graph

CORPUS = Path(__file__).parent / "corpus" / "bad"
TEXT_FILES = sorted(CORPUS.glob("*.gc"))
JSON_FILES = sorted(CORPUS.glob("*.json"))
JSON_EXPECT = json.loads((CORPUS / "EXPECTED.json").read_text())
JSON_FILES = [p for p in JSON_FILES if p.name != "EXPECTED.json"]


def _expectation(path: Path) -> tuple[int, int, str]:
    first = path.read_text().split("\n", 1)[0]
    m = re.match(r"// expect: (\d+):(\d+): (.*)$", first)
    assert m, f"{path.name} lacks an '// expect: line:col: message' header"
    return int(m.group(1)), int(m.group(2)), m.group(3)


def test_corpus_is_complete() -> None:
    assert len(TEXT_FILES) >= 24
    assert set(JSON_EXPECT) == {p.name for p in JSON_FILES}


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: p.name)
def test_text_corpus(path: Path) -> None:
    line, col, message = _expectation(path)
    with pytest.raises(gc.GraphError) as info:
        read_graph(path)
    err = info.value
    assert message in err.message
    assert (err.line, err.col) == (line, col)
    rendered = str(err)
    assert rendered.startswith(f"{path}:{line}:{col}: error: ")
    # the source line and a caret under the column follow
    lines = rendered.split("\n")
    assert lines[1] == "  " + path.read_text().split("\n")[line - 1]
    assert lines[2] == "  " + " " * (col - 1) + "^"


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name)
def test_json_corpus(path: Path) -> None:
    with pytest.raises(gc.GraphError) as info:
        read_graph(path)
    assert JSON_EXPECT[path.name] in str(info.value)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("path", TEXT_FILES + JSON_FILES, ids=lambda p: p.name)
def test_cli_reports_without_traceback(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    assert main(["fmt", str(path)]) == 2


def test_nothing_is_evaluated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.gc"
    path.write_text(
        'graph @t {\n  %x = input "x" : f32[2]\n'
        f'  %0 = scale(%x) {{s = open("{marker}", "w")}} : f32[2]\n}}\n'
    )
    assert main(["verify", str(path)]) == 1
    assert not marker.exists()
