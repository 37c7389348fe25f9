"""Exact buffer placement: MiniMalloc's "challenging" instances and planted ones.

Run: python benchmarks/bench_exact.py [--time-limit S] [--data DIR] [--cp-sat]
         [--planted N] [--sizes 100,300,500] [--seed-base B] [--minimalloc BIN] [--quick]

Real instances: for each ``*.CAPACITY.csv`` in DIR (default ``$GRAPHC_MINIMALLOC`` or
../shared/data/minimalloc beside the repository) prints the buffers, the max-live bound,
greedy by size (height / bound, whether it fits) and :func:`graphc.passes.exact.solve`
asked to fit the capacity: height / bound, status, wall seconds.

Planted instances (:func:`graphc.passes.planted.planted`, optimum = capacity = bound):
``--planted N`` instances per size, seeds ``seed-base + 1000 * size + k``. The default
base, 2_000_000, was never used while the solver was tuned (tuning used seeds 10_000 +
k). Prints, per size and per method, how many were placed within the capacity and the
median and worst seconds (an instance not placed counts at the time limit).

Methods: greedy by size, the search, CP-SAT (``--cp-sat``, when ``ortools`` is installed),
and MiniMalloc (``--minimalloc PATH``, its binary built from google/minimalloc, run with
``--timeout``). Every placement graphc prints was checked by
:func:`graphc.passes.intervals.check_solution`. The time limit (default 10 s, the CLI's
default) is per instance and method.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from graphc.passes.exact import Solution, greedy_by_size, solve
from graphc.passes.intervals import (
    Buffer,
    check_solution,
    height,
    max_live,
    read_intervals,
    write_intervals,
)
from graphc.passes.planted import planted

DEFAULT_DATA = Path(os.environ.get(
    "GRAPHC_MINIMALLOC", Path(__file__).resolve().parents[2] / "shared" / "data" / "minimalloc"))
DEFAULT_LIMIT = 10.0
"""Seconds per instance and method: the default of ``graphc plan --time-limit``."""


def _checked(sol: Solution, bufs: Sequence[Buffer], capacity: int | None) -> Solution:
    problems = check_solution(sol.buffers, capacity if sol.fits else None)
    if problems:
        raise SystemExit(f"invalid placement: {problems[:3]}")
    assert sol.height == height(sol.buffers) and sol.lower_bound >= max_live(bufs)
    return sol


def _minimalloc(binary: Path, bufs: Sequence[Buffer], capacity: int, limit: float
                ) -> tuple[bool, float]:
    """Run MiniMalloc's binary; (placed within capacity and checked, wall seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        write_intervals(src, bufs)
        start = time.monotonic()
        subprocess.run([str(binary), f"--capacity={capacity}", f"--input={src}",
                        f"--output={out}", f"--timeout={limit}s"], capture_output=True,
                       check=False, timeout=limit + 30)
        seconds = time.monotonic() - start
        if not out.exists() or not out.read_text().strip():
            return False, seconds
        placed = read_intervals(out)
        ok = (len(placed) == len(bufs) and all(p.offset is not None for p in placed)
              and not check_solution(placed, capacity))
        return ok, seconds


def _real(args: argparse.Namespace, limit: float) -> None:
    files = sorted(args.data.glob("*.*.csv"))
    if not files:
        print(f"no instances in {args.data}", file=sys.stderr)
        return
    head = (f"{'instance':<9} {'bufs':>5} {'bound/cap':>9} {'greedy':>7} | "
            f"{'search: h/bound status time':>30}"
            + (f" | {'cp-sat: h/bound status time':>30}" if args.cp_sat else "")
            + (f" | {'minimalloc':>12}" if args.minimalloc else ""))
    print(head)
    print("-" * len(head))
    for path in files:
        bufs = read_intervals(path)
        capacity = int(path.name.split(".")[1])
        bound = max_live(bufs)
        greedy = height(greedy_by_size(bufs))
        fit = _checked(solve(bufs, capacity=capacity, time_limit=limit), bufs, capacity)
        row = (f"{path.name.split('.')[0]:<9} {len(bufs):>5} {bound / capacity:>9.3f} "
               f"{greedy / bound:>7.3f} | {fit.height / bound:>6.3f} {fit.status:>10} "
               f"{fit.seconds:>6.2f}s    ")
        if args.cp_sat:
            cp = _checked(solve(bufs, capacity=capacity, time_limit=limit, method="cp-sat"),
                          bufs, capacity)
            row += f" | {cp.height / bound:>6.3f} {cp.status:>10} {cp.seconds:>6.2f}s    "
        if args.minimalloc:
            ok, sec = _minimalloc(args.minimalloc, bufs, capacity, limit)
            row += f" | {'fits' if ok else 'no':>4} {sec:>6.2f}s"
        print(row, flush=True)


def _planted(args: argparse.Namespace, limit: float) -> None:
    methods: dict[str, Callable[[Sequence[Buffer], int], tuple[bool, float]]] = {}

    def greedy(bufs: Sequence[Buffer], cap: int) -> tuple[bool, float]:
        start = time.monotonic()
        placed = greedy_by_size(bufs)
        return height(placed) <= cap, time.monotonic() - start

    def search(bufs: Sequence[Buffer], cap: int) -> tuple[bool, float]:
        sol = _checked(solve(bufs, capacity=cap, time_limit=limit), bufs, cap)
        return sol.fits, sol.seconds if sol.fits else limit

    def cp_sat(bufs: Sequence[Buffer], cap: int) -> tuple[bool, float]:
        sol = _checked(solve(bufs, capacity=cap, time_limit=limit, method="cp-sat"), bufs,
                       cap)
        return sol.fits, sol.seconds if sol.fits else limit

    def minimalloc(bufs: Sequence[Buffer], cap: int) -> tuple[bool, float]:
        assert args.minimalloc is not None
        ok, sec = _minimalloc(args.minimalloc, bufs, cap, limit)
        return ok, sec if ok else limit

    methods["greedy"] = greedy
    methods["search"] = search
    if args.cp_sat:
        methods["cp-sat"] = cp_sat
    if args.minimalloc:
        methods["minimalloc"] = minimalloc
    print(f"planted instances: {args.planted} per size, seeds {args.seed_base} + 1000 * size"
          f" + k; capacity = bound = optimum")
    head = f"{'size':>5} {'method':<11} {'placed':>8} {'median s':>9} {'worst s':>8}"
    print(head)
    print("-" * len(head))
    for n in args.sizes:
        insts = [planted(n, args.seed_base + 1000 * n + k) for k in range(args.planted)]
        for name, fn in methods.items():
            results = [fn(inst.buffers, inst.capacity) for inst in insts]
            ok = sum(r[0] for r in results)
            secs = [r[1] for r in results]
            print(f"{n:>5} {name:<11} {100 * ok / len(insts):>7.0f}% "
                  f"{statistics.median(secs):>9.2f} {max(secs):>8.2f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=DEFAULT_LIMIT,
                        help="seconds per instance and method (default 10, the CLI's)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--cp-sat", action="store_true", help="also run CP-SAT (ortools)")
    parser.add_argument("--minimalloc", type=Path, default=None,
                        help="also run MiniMalloc's binary (built from google/minimalloc)")
    parser.add_argument("--planted", type=int, default=100,
                        help="planted instances per size (0: none; default 100)")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[100, 300, 500])
    parser.add_argument("--seed-base", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true",
                        help="the real instances and 5 planted ones per size")
    args = parser.parse_args(argv)
    if args.quick:
        args.planted = min(args.planted, 5)
    limit = args.time_limit
    print(f"time limit {limit:g} s per instance and method; heights / the max-live bound")
    _real(args, limit)
    if args.planted > 0:
        print()
        _planted(args, limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
