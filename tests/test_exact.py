"""Exact buffer placement: the interval file format, the validator, and the solver against
an exhaustive search on small instances."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from graphc.errors import GraphError
from graphc.passes.exact import Solution, greedy_by_size, solve
from graphc.passes.intervals import (
    Buffer,
    check_solution,
    height,
    max_live,
    read_intervals,
    write_intervals,
)

# the shared data sits beside the repository
MINIMALLOC = Path(__file__).resolve().parents[2] / "shared" / "data" / "minimalloc"


def _random(rng: random.Random, n: int, horizon: int = 12, max_size: int = 8) -> list[Buffer]:
    out = []
    for i in range(n):
        lower = rng.randrange(horizon)
        out.append(Buffer(i, lower, lower + rng.randint(1, horizon // 2),
                          rng.randint(1, max_size)))
    return out


def _brute_force(buffers: list[Buffer], alignment: int = 1) -> int:
    """The lowest height over every canonical placement: buffers taken in every order
    whose offsets do not decrease, each on top of (rounded up to the alignment) the highest
    earlier buffer live with it. Every compact placement arises so (take its buffers by
    offset), and some optimal one is compact. Branch and bound on the height."""
    n = len(buffers)
    live_with = [[j for j in range(n) if j != i and buffers[i].overlaps_in_time(buffers[j])]
                 for i in range(n)]
    top = [0] * n
    placed = [False] * n
    best = sum(-(-b.size // alignment) * alignment for b in buffers)

    def extend(count: int, reached: int, last: int) -> None:
        nonlocal best
        if count == n:
            best = min(best, reached)
            return
        for i in range(n):
            if placed[i]:
                continue
            under = max((top[j] for j in live_with[i] if placed[j]), default=0)
            offset = -(-under // alignment) * alignment
            if offset < last or max(reached, offset + buffers[i].size) >= best:
                continue
            top[i] = offset + buffers[i].size
            placed[i] = True
            extend(count + 1, max(reached, top[i]), offset)
            placed[i] = False

    extend(0, 0, 0)
    return best


# ------------------------------------------------------------------------------ the format


def test_round_trip_with_and_without_offsets(tmp_path: Path) -> None:
    bufs = [Buffer(0, 0, 4, 16), Buffer(7, 2, 9, 8), Buffer(3, 4, 5, 0)]
    path = tmp_path / "in.csv"
    write_intervals(path, bufs)
    assert path.read_text().splitlines()[0] == "id,lower,upper,size"
    assert read_intervals(path) == bufs
    placed = [Buffer(0, 0, 4, 16, 0), Buffer(7, 2, 9, 8, 16), Buffer(3, 4, 5, 0, None)]
    write_intervals(path, placed)
    assert path.read_text().splitlines()[0] == "id,lower,upper,size,offset"
    assert read_intervals(path) == placed


def test_columns_in_any_order_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("size,upper,id,lower\n16,4,0,0\n\n8,9,1,2\n")
    assert read_intervals(path) == [Buffer(0, 0, 4, 16), Buffer(1, 2, 9, 8)]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("", 1, "empty"),
    ("id,lower,size\n0,0,4\n", 1, "missing column 'upper'"),
    ("id,lower,upper,size\n0,0,4\n", 2, "3 field(s)"),
    ("id,lower,upper,size\n0,0,4,16\n1,0,x,16\n", 3, "'upper' is 'x', not an integer"),
    ("id,lower,upper,size\n0,0,4,1.5\n", 2, "not an integer"),
    ("id,lower,upper,size\n0,0,4,-16\n", 2, "negative size"),
    ("id,lower,upper,size\n0,4,4,16\n", 2, "upper 4 <= lower 4"),
    ("id,lower,upper,size\n0,5,4,16\n", 2, "upper 4 <= lower 5"),
    ("id,lower,upper,size\n0,0,4,16\n0,1,4,16\n", 3, "duplicate id 0 (first on line 2)"),
    ("id,lower,upper,size,offset\n0,0,4,16,-1\n", 2, "negative offset"),
])
def test_bad_files_are_refused_with_file_and_line(tmp_path: Path, text: str, line: int,
                                                  words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(GraphError) as err:
        read_intervals(path)
    assert err.value.line == line
    assert f"{path}:{line}:" in str(err.value)
    assert words in str(err.value)


def test_missing_file_is_a_graph_error(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match="cannot read"):
        read_intervals(tmp_path / "nope.csv")


# ------------------------------------------------------------------- bound and validator


def test_max_live_counts_half_open_intervals() -> None:
    assert max_live([]) == 0
    assert max_live([Buffer(0, 0, 4, 10), Buffer(1, 4, 8, 20)]) == 20  # touching
    assert max_live([Buffer(0, 0, 5, 10), Buffer(1, 4, 8, 20), Buffer(2, 4, 5, 1)]) == 31


def test_check_solution_rejects_a_hand_made_overlap() -> None:
    bufs = [Buffer(0, 0, 10, 8, 0), Buffer(1, 5, 15, 8, 4), Buffer(2, 10, 20, 8, 12)]
    problems = check_solution(bufs, capacity=20)
    assert len(problems) == 1
    assert "buffers 0 and 1" in problems[0] and "[5, 10)" in problems[0]
    assert "[4, 8)" in problems[0]


def test_check_solution_accepts_touching_and_reports_every_kind() -> None:
    assert check_solution([Buffer(0, 0, 4, 8, 0), Buffer(1, 4, 8, 8, 0),
                           Buffer(2, 0, 8, 8, 8), Buffer(3, 0, 8, 0, 3)], capacity=16) == []
    problems = check_solution([Buffer(0, 0, 4, 8, 12), Buffer(1, 0, 4, 8, None),
                               Buffer(2, 5, 6, 4, 3), Buffer(3, 7, 8, 4, -4)],
                              capacity=16, alignment=4)
    text = "\n".join(problems)
    assert "buffer 0 ends at 20 > capacity 16" in text
    assert "buffer 1 has no offset" in text
    assert "buffer 2 offset 3 is not a multiple of 4" in text
    assert "buffer 3 has a negative offset" in text


def test_greedy_by_size_is_valid() -> None:
    rng = random.Random(5)
    for _ in range(20):
        bufs = _random(rng, 30)
        for alignment in (1, 4):
            placed = greedy_by_size(bufs, alignment)
            assert check_solution(placed, alignment=alignment) == []
            assert height(placed) >= max_live(bufs)


# ---------------------------------------------------------------------------- the solver


def _assert_valid(sol: Solution, bufs: list[Buffer], alignment: int = 1) -> None:
    assert [b.id for b in sol.buffers] == [b.id for b in bufs]
    assert check_solution(sol.buffers, alignment=alignment) == []
    assert sol.height == height(sol.buffers)
    assert max_live(bufs) <= sol.lower_bound <= sol.height


@pytest.mark.parametrize("seed", range(12))
def test_minimal_height_equals_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    bufs = _random(rng, rng.randint(8, 11))
    best = _brute_force(bufs)
    sol = solve(bufs, time_limit=20)
    _assert_valid(sol, bufs)
    assert sol.height == best
    assert sol.status == "optimal" and sol.lower_bound == best


@pytest.mark.parametrize("seed", range(4))
def test_aligned_minimum_equals_brute_force(seed: int) -> None:
    rng = random.Random(100 + seed)
    bufs = _random(rng, 8, max_size=10)
    best = _brute_force(bufs, alignment=4)
    sol = solve(bufs, time_limit=20, alignment=4)
    _assert_valid(sol, bufs, alignment=4)
    assert sol.height == best and sol.status == "optimal"


@pytest.mark.parametrize("seed", range(6))
def test_capacity_at_and_below_the_optimum(seed: int) -> None:
    rng = random.Random(200 + seed)
    bufs = _random(rng, 9)
    best = _brute_force(bufs)
    at = solve(bufs, capacity=best, time_limit=20)
    _assert_valid(at, bufs)
    assert at.fits and at.height <= best and not at.infeasible
    assert at.status in ("optimal", "fits")
    below = solve(bufs, capacity=best - 1, time_limit=20)
    _assert_valid(below, bufs)  # still a placement, just not within the capacity
    assert below.status == "best-found" and not below.fits and below.infeasible
    assert below.lower_bound >= best


def test_decomposition_into_partitions_and_spanning_buffers() -> None:
    # A buffer live throughout, then two partitions that share no time.
    bufs = [Buffer(0, 0, 100, 5), Buffer(1, 0, 50, 7), Buffer(2, 10, 40, 3),
            Buffer(3, 20, 50, 4), Buffer(4, 50, 100, 6), Buffer(5, 60, 90, 6),
            Buffer(6, 50, 70, 2), Buffer(7, 0, 30, 1)]
    sol = solve(bufs, time_limit=10)
    _assert_valid(sol, bufs)
    assert sol.height == _brute_force(bufs) and sol.status == "optimal"


def test_edge_cases() -> None:
    assert solve([]).height == 0
    zero = [Buffer(0, 0, 4, 0), Buffer(1, 0, 4, 0)]
    assert solve(zero).height == 0 and check_solution(solve(zero).buffers) == []
    one = [Buffer(9, 3, 4, 12)]
    sol = solve(one, capacity=12)
    assert sol.height == 12 and sol.status == "optimal" and sol.buffers[0].offset == 0
    with pytest.raises(GraphError, match="alignment"):
        solve(one, alignment=0)
    with pytest.raises(GraphError, match="capacity"):
        solve(one, capacity=-1)
    with pytest.raises(GraphError, match="upper"):
        solve([Buffer(0, 4, 4, 1)])


def test_time_limit_returns_a_valid_placement() -> None:
    rng = random.Random(7)
    bufs = _random(rng, 400, horizon=200, max_size=64)
    sol = solve(bufs, time_limit=0.5)
    _assert_valid(sol, bufs)
    assert sol.height <= height(greedy_by_size(bufs))


@pytest.mark.skipif(not (MINIMALLOC / "A.1048576.csv").exists(),
                    reason="MiniMalloc instances not present")
def test_minimalloc_instance_a_fits_the_bound() -> None:
    bufs = read_intervals(MINIMALLOC / "A.1048576.csv")
    sol = solve(bufs, capacity=1_048_576, time_limit=20)
    assert check_solution(sol.buffers, capacity=1_048_576) == []
    assert sol.status == "optimal" and sol.height == max_live(bufs) == 1_048_576


def test_cp_sat_without_ortools_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ortools", None)
    with pytest.raises(GraphError, match="pip install ortools"):
        solve([Buffer(0, 0, 4, 8)], method="cp-sat")


def test_cp_sat_matches_brute_force() -> None:
    pytest.importorskip("ortools")
    rng = random.Random(3)
    bufs = _random(rng, 8)
    sol = solve(bufs, time_limit=10, method="cp-sat")
    _assert_valid(sol, bufs)
    assert sol.height == _brute_force(bufs) and sol.method == "cp-sat"
    fit = solve(bufs, capacity=sol.height, time_limit=10, method="cp-sat")
    _assert_valid(fit, bufs)
    assert fit.fits
