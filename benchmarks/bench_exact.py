"""Exact buffer placement on MiniMalloc's "challenging" instances.

Run: python benchmarks/bench_exact.py [--quick] [--time-limit S] [--data DIR] [--cp-sat]

For each instance ``*.CAPACITY.csv`` in DIR (default ``$GRAPHC_MINIMALLOC`` or
../shared/data/minimalloc beside the repository) prints the buffers, the max-live lower
bound, greedy by size
(height / bound and whether it fits the capacity), then :func:`graphc.passes.exact.solve`
twice: asked to fit the capacity, and asked for the lowest height it can find, each with
height / bound, status and wall time (at most the time limit, 60 s by default; 10 s with
``--quick``, which also skips the minimisation). Every placement printed was checked by
:func:`graphc.passes.intervals.check_solution`. ``--cp-sat`` adds OR-tools' CP-SAT on the
capacity problem for comparison (when installed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from graphc.passes.exact import Solution, greedy_by_size, solve
from graphc.passes.intervals import Buffer, check_solution, height, max_live, read_intervals

DEFAULT_DATA = Path(os.environ.get(
    "GRAPHC_MINIMALLOC", Path(__file__).resolve().parents[2] / "shared" / "data" / "minimalloc"))


def _checked(sol: Solution, bufs: list[Buffer], capacity: int | None) -> Solution:
    problems = check_solution(sol.buffers, capacity if sol.fits else None)
    if problems:
        raise SystemExit(f"invalid placement: {problems[:3]}")
    assert sol.height == height(sol.buffers) and sol.lower_bound >= max_live(bufs)
    return sol


def _cell(sol: Solution, bound: int) -> str:
    return f"{sol.height / bound:>6.3f} {sol.status:>10} {sol.seconds:>7.2f}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 s limit, no minimisation")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per instance and run (default 60, 10 with --quick)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cp-sat", action="store_true", help="also run CP-SAT (ortools)")
    args = parser.parse_args(argv)
    limit = args.time_limit if args.time_limit is not None else 10.0 if args.quick else 60.0
    files = sorted(args.data.glob("*.*.csv"))
    if not files:
        print(f"no instances in {args.data}", file=sys.stderr)
        return 1
    print(f"time limit {limit:g} s per run; heights as a ratio of the max-live bound")
    head = (f"{'instance':<10} {'bufs':>5} {'capacity':>10} {'bound':>10} "
            f"{'greedy':>7} {'fits':>4} | {'fit capacity: h/bound, status, time':>36} | "
            f"{'minimise: h/bound, status, time':>33}")
    print(head)
    print("-" * len(head))
    for path in files:
        bufs = read_intervals(path)
        capacity = int(path.name.split(".")[1])
        bound = max_live(bufs)
        greedy = height(greedy_by_size(bufs))
        fit = _checked(solve(bufs, capacity=capacity, time_limit=limit), bufs, capacity)
        low = "" if args.quick else _cell(
            _checked(solve(bufs, time_limit=limit), bufs, None), bound)
        print(f"{path.name.split('.')[0]:<10} {len(bufs):>5} {capacity:>10,} {bound:>10,} "
              f"{greedy / bound:>7.3f} {'yes' if greedy <= capacity else 'no':>4} | "
              f"{_cell(fit, bound):>36} | {low:>33}", flush=True)
        if args.cp_sat:
            cp = _checked(solve(bufs, capacity=capacity, time_limit=limit, method="cp-sat"),
                          bufs, capacity)
            print(f"{'  cp-sat':<46} | {_cell(cp, bound):>36} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
