"""Interval-file ids are names, as in MiniMalloc (issue 27): any non-empty text without a
comma, written back exactly as given; every other check of the file stays."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from graphc.cli import main
from graphc.errors import GraphError
from graphc.passes.exact import greedy_by_size, solve
from graphc.passes.intervals import (
    Buffer,
    check_solution,
    height,
    max_live,
    read_intervals,
    write_intervals,
)

# MiniMalloc's README example, benchmarks/examples/input.12.csv in its repository
EXAMPLE = """id,lower,upper,size
b1,0,3,4
b2,3,9,4
b3,0,9,4
b4,9,21,4
b5,0,21,4
"""


def _example(tmp_path: Path) -> Path:
    path = tmp_path / "input.12.csv"
    path.write_text(EXAMPLE)
    return path


def _brute_force_fits(buffers: list[Buffer], capacity: int) -> bool:
    """Whether some placement within ``capacity`` exists: every offset of every buffer,
    checked pair by pair with nothing of the solver or the validator."""
    ranges = [range(capacity - b.size + 1) for b in buffers]
    for offsets in itertools.product(*ranges):
        pairs = itertools.combinations(zip(buffers, offsets, strict=True), 2)
        if all(not (a.lower < b.upper and b.lower < a.upper)
               or oa + a.size <= ob or ob + b.size <= oa for (a, oa), (b, ob) in pairs):
            return True
    return False


def _own_check(buffers: list[Buffer], capacity: int) -> None:
    """A placement checked by hand: every buffer placed within capacity, and no two live
    at a common time share a byte."""
    for b in buffers:
        assert b.offset is not None and b.offset >= 0 and b.offset + b.size <= capacity
    for a, b in itertools.combinations(buffers, 2):
        assert a.offset is not None and b.offset is not None
        if a.lower < b.upper and b.lower < a.upper:
            assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)


def test_minimalloc_readme_example_is_read_with_string_ids(tmp_path: Path) -> None:
    bufs = read_intervals(_example(tmp_path))
    assert [b.id for b in bufs] == ["b1", "b2", "b3", "b4", "b5"]
    assert bufs[0] == Buffer("b1", 0, 3, 4)
    assert max_live(bufs) == 12
    assert _brute_force_fits(bufs, 12)
    assert not _brute_force_fits(bufs, 11)


def test_minimalloc_readme_example_is_placed_within_12(tmp_path: Path) -> None:
    bufs = read_intervals(_example(tmp_path))
    sol = solve(bufs, 12)
    assert sol.fits and sol.height <= 12
    assert [b.id for b in sol.buffers] == [b.id for b in bufs]
    assert check_solution(sol.buffers, capacity=12) == []
    _own_check(list(sol.buffers), 12)
    greedy = greedy_by_size(bufs)
    assert check_solution(greedy) == []
    assert height(greedy) >= 12


def test_cli_places_the_example_and_writes_the_ids_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "solution.csv"
    assert main(["plan", "--intervals", str(_example(tmp_path)), "--capacity", "12",
                 "-o", str(out)]) == 0
    assert "5 buffers" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0] == "id,lower,upper,size,offset"
    source = EXAMPLE.splitlines()[1:]
    assert [line.rsplit(",", 1)[0] for line in lines[1:]] == source
    placed = read_intervals(out)
    assert check_solution(placed, capacity=12) == []
    _own_check(placed, 12)


def test_numeric_and_named_ids_are_distinct_and_written_back_exactly(tmp_path: Path
                                                                       ) -> None:
    text = ("id,lower,upper,size\n7,0,4,8\nb1,0,4,8\n007,2,6,4\n-3,4,8,4\n+7,6,9,2\n"
            "a\"b,0,2,1\nx y,5,6,1\n")
    path = tmp_path / "mixed.csv"
    path.write_text(text)
    bufs = read_intervals(path)
    assert [b.id for b in bufs] == [7, "b1", "007", -3, "+7", 'a"b', "x y"]
    out = tmp_path / "out.csv"
    write_intervals(out, bufs)
    assert out.read_text() == text
    sol = solve(bufs)
    assert check_solution(sol.buffers) == []
    write_intervals(out, sol.buffers)
    assert [line.rsplit(",", 1)[0] for line in out.read_text().splitlines()] == \
        ["id,lower,upper,size", *text.splitlines()[1:]]
    assert read_intervals(out) == list(sol.buffers)


def test_spaces_around_an_id_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "spaced.csv"
    path.write_text("id, lower, upper, size\n b1 , 0, 3, 4\n 7,0,3,4\n")
    assert [b.id for b in read_intervals(path)] == ["b1", 7]


def test_check_solution_names_mixed_ids_in_input_order() -> None:
    problems = check_solution([Buffer("b1", 0, 4, 8, 0), Buffer(2, 2, 6, 8, 4)])
    assert len(problems) == 1 and "buffers b1 and 2" in problems[0]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("id,lower,upper,size\nb1,0,3,4\n,3,9,4\n", 3, "column 'id' is empty"),
    ("id,lower,upper,size\nb1,0,3,4\n  ,3,9,4\n", 3, "column 'id' is empty"),
    ("id,lower,upper,size\nb1,0,3,4\nb2,3,9,4\nb1,0,9,4\n", 4,
     "duplicate id b1 (first on line 2)"),
    ("id,lower,upper,size\n7,0,3,4\n 7,3,9,4\n", 3, "duplicate id 7 (first on line 2)"),
    ("id,lower,upper,size\nb1,0,x,4\n", 2, "'upper' is 'x', not an integer"),
    ("id,lower,upper,size\nb1,3,3,4\n", 2, "buffer b1 has upper 3 <= lower 3"),
    ("id,lower,upper,size\nb1,0,3,-4\n", 2, "buffer b1 has a negative size"),
    ("id,lower,upper,size\nb1,0,3\n", 2, "3 field(s)"),
])
def test_bad_ids_and_rows_are_refused_with_file_and_line(tmp_path: Path, text: str,
                                                         line: int, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(GraphError) as err:
        read_intervals(path)
    assert err.value.line == line
    assert f"{path}:{line}:" in str(err.value)
    assert words in str(err.value)


def test_cli_refuses_an_empty_id_with_exit_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,lower,upper,size\nb1,0,3,4\n,3,9,4\n")
    assert main(["plan", "--intervals", str(path), "--capacity", "12"]) == 2
    assert f"{path}:3:1: error: column 'id' is empty" in capsys.readouterr().err


@pytest.mark.parametrize("ident", ["", "a,b", "a\nb", " b1"])
def test_an_id_that_cannot_be_read_back_is_not_written(tmp_path: Path, ident: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        write_intervals(tmp_path / "out.csv", [Buffer(ident, 0, 1, 1)])
