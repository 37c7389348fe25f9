"""The planted-instance generator, and the exact planner on what it was not tuned on:
planted instances (optimum known), the search run as plain Python, Ctrl-C, and the
interval file's refusals of bytes and numbers the solvers cannot take."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from graphc.cli import main
from graphc.errors import GraphError
from graphc.passes.exact import Progress, solve
from graphc.passes.intervals import check_solution, max_live, read_intervals
from graphc.passes.planted import planted


@pytest.mark.parametrize("n", [1, 7, 100, 300])
def test_planted_packing_is_perfect(n: int) -> None:
    inst = planted(n, seed=n)
    assert len(inst.buffers) == n and all(b.offset is None for b in inst.buffers)
    assert check_solution(inst.planted, capacity=inst.capacity) == []
    assert max_live(inst.buffers) == inst.capacity
    assert [(b.id, b.lower, b.upper, b.size) for b in inst.buffers] == [
        (b.id, b.lower, b.upper, b.size) for b in inst.planted]
    assert planted(n, seed=n) == inst and planted(n, seed=n + 1) != inst


def test_planted_refuses_bad_arguments() -> None:
    for kwargs in ({"n": 0}, {"n": 5, "capacity": 10}, {"n": 5, "fill": 0.0}):
        with pytest.raises(GraphError):
            planted(seed=0, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [5, 6, 7, 8])
def test_small_planted_instances_are_solved_to_the_bound(seed: int) -> None:
    inst = planted(40, seed, capacity=1 << 14, quantum=64)
    sol = solve(inst.buffers, capacity=inst.capacity, time_limit=60)
    assert check_solution(sol.buffers, capacity=inst.capacity) == []
    assert sol.status == "optimal" and sol.height == sol.lower_bound == inst.capacity


def test_infeasible_capacity_is_proven_and_the_placement_stays_valid() -> None:
    inst = planted(30, 11, capacity=1 << 12, quantum=64)
    sol = solve(inst.buffers, capacity=inst.capacity - 64, time_limit=60)
    assert not sol.fits and sol.infeasible and sol.status == "best-found"
    assert check_solution(sol.buffers) == [] and sol.lower_bound <= sol.height


def test_ctrl_c_keeps_the_best_placement() -> None:
    inst = planted(300, 3)
    seen: list[Progress] = []

    def interrupt(p: Progress) -> None:
        seen.append(p)
        if len(seen) == 2:
            raise KeyboardInterrupt

    sol = solve(inst.buffers, time_limit=60, progress=interrupt)
    assert check_solution(sol.buffers) == [] and sol.lower_bound <= sol.height
    assert all(p.lower_bound <= p.height for p in seen)
    if sol.status != "optimal":  # else the bound was met before the second look
        assert sol.interrupted and len(seen) == 2


def test_the_search_as_plain_python_agrees() -> None:
    """Without numba the same kernel runs as Python: same answers on small instances."""
    script = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None
        from graphc.passes import canonical
        from graphc.passes.exact import solve
        from graphc.passes.planted import planted
        assert not canonical.COMPILED
        for seed in range(3):
            inst = planted(25, seed, capacity=1 << 12, quantum=64)
            sol = solve(inst.buffers, capacity=inst.capacity, time_limit=60)
            print(sol.status, sol.height == inst.capacity)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:3] == ["optimal True"] * 3
    for seed in range(3):
        inst = planted(25, seed, capacity=1 << 12, quantum=64)
        assert solve(inst.buffers, capacity=inst.capacity, time_limit=60).status == "optimal"


@pytest.mark.parametrize(("data", "line", "message"), [
    (b"id,lower,upper,size\n0,0,4,8\n1,0,4,\xff\xfe\n", 3, "not UTF-8"),
    (b"id,lower,upper,size\n0,0,4,99999999999999999999\n", 2, "too large"),
    (b"id,lower,upper,size\n0,0,4,4000000000000000000\n1,0,4,4000000000000000000\n", 3,
     "add up to"),
])
def test_bytes_and_numbers_the_solver_cannot_take(tmp_path: Path, data: bytes, line: int,
                                                   message: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(data)
    with pytest.raises(GraphError, match=message) as info:
        read_intervals(path)
    assert info.value.line == line and info.value.fix
    assert main(["plan", "--intervals", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"bad.csv:{line}:" in err and "fix:" in err


def test_capacity_too_large_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    path = tmp_path / "ok.csv"
    path.write_text("id,lower,upper,size\n0,0,4,8\n")
    assert main(["plan", "--intervals", str(path), "--capacity", str(1 << 70)]) == 2
    assert "2**62" in capsys.readouterr().err
