"""The ``graphc`` command line. Exit codes: 0 ok, 1 the check found problems, 2 bad input
or usage. A bad file gets its diagnostic, never a Python traceback."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from graphc.errors import GraphError

if TYPE_CHECKING:
    from rich.table import Table

    from graphc.graph import Graph
    from graphc.interop.llama_check import ModeRow
    from graphc.interop.llama_run import Mode
    from graphc.passes.aliasing import Violation
    from graphc.passes.cost import CostReport
    from graphc.passes.memory import MemoryPlan, Peak

EXIT_OK, EXIT_PROBLEMS, EXIT_BAD_INPUT = 0, 1, 2


def _positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _cmd_verify(args: argparse.Namespace) -> int:
    from graphc.fileio import FileReadError, read_graph

    try:
        g = read_graph(args.file)
    except FileReadError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    except GraphError as e:
        print(e, file=sys.stderr)
        return EXIT_PROBLEMS
    print(f"ok: @{g.name}: {len(g)} nodes, {len(g.outputs)} outputs, "
          f"{len(g.assigns)} state updates")
    return EXIT_OK


def _emit(g: Graph, args: argparse.Namespace) -> None:
    """Print ``g`` as text (or JSON with --json), or write it atomically to -o."""
    from graphc.fileio import atomic_write_text
    from graphc.jsonio import to_json
    from graphc.text import to_text

    text = to_json(g) + "\n" if args.json else to_text(g)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)


def _cmd_fmt(args: argparse.Namespace) -> int:
    from graphc.fileio import read_graph

    _emit(read_graph(args.file), args)  # a bad file: main() prints it and exits 2
    return EXIT_OK


def _stats_table(before: CostReport, after: CostReport, title: str) -> Table:
    from rich.table import Table

    from graphc.passes.cost import human

    table = Table(title=title)
    for col in ("", "before", "after", "after/before"):
        table.add_column(col, justify="right")
    rows = [("nodes", len(before.nodes), len(after.nodes)),
            ("FLOPs", before.flops, after.flops),
            ("bytes read", before.bytes_read, after.bytes_read),
            ("bytes written", before.bytes_written, after.bytes_written)]
    for label, b, a in rows:
        table.add_row(label, human(b), human(a), f"{a / b:.4f}" if b else "-")
    return table


def _load_modules(names: Sequence[str]) -> None:
    """Import the user's modules named with --load (they register passes). The current
    folder is searched first, as ``python -m`` does. GraphError for one that fails."""
    import importlib

    if names and "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as e:  # the user's module: report whatever it raised
            raise GraphError(f"--load {name}: {type(e).__name__}: {e}",
                             fix="give the name of an importable module (my_passes for "
                                 "./my_passes.py) that registers passes") from None


def _cmd_opt(args: argparse.Namespace) -> int:
    from rich.console import Console

    from graphc.fileio import read_graph
    from graphc.passes import PassError, PassManager, cost

    _load_modules(args.load)
    g = read_graph(args.file)  # a bad file: main() prints it and exits 2
    after: list[str] | str = "all" if args.print_ir_after_all else (args.print_ir_after or [])
    before: list[str] | str = "all" if args.print_ir_before_all else (
        args.print_ir_before or [])
    try:
        pm = PassManager(args.pipeline, print_ir_before=before, print_ir_after=after,
                         time_passes=args.time_passes, stop_after=args.stop_after)
        result = pm.run(g)
    except PassError as e:
        print(e, file=sys.stderr)
        return EXIT_PROBLEMS if e.internal else EXIT_BAD_INPUT
    if args.stats:
        Console(stderr=True).print(_stats_table(cost(g), cost(result),
                                                f"cost of @{g.name}: {args.pipeline}"))
    _emit(result, args)
    return EXIT_OK


def _plan_and_check(args: argparse.Namespace
                    ) -> tuple[Graph, str | None, MemoryPlan, list[Violation]]:
    """Read the file, plan it as the check/plan options say (or load the plan file given
    with --plan), and check the plan. A bad file or option raises GraphError (main()
    prints it and exits 2)."""
    from graphc.fileio import read_graph
    from graphc.passes.aliasing import check_aliasing
    from graphc.passes.memory import plan_memory
    from graphc.passes.plan_io import load_plan
    from graphc.passes.schedule import schedule

    g = read_graph(args.file)
    reads = args.reads or None
    if reads:  # rows must exist, for outputs and taps alike
        from graphc.graph import check_rows
        from graphc.reads import parse_reads

        named = {t.name: t for t in g.nodes if t.name is not None} | g.outputs
        for name, sel in parse_reads(reads).items():
            if name not in named:
                raise GraphError(f"read {name!r} is neither an output nor a named tensor of "
                                 f"@{g.name}", fix=f"outputs are {sorted(g.outputs)}")
            if sel != "all":
                check_rows(name, named[name], sel)  # type: ignore[arg-type]  # a row list
    if getattr(args, "plan", None):
        plan = load_plan(args.plan, g)
    else:
        order = schedule(g, args.schedule, reads=reads)
        plan = plan_memory(g, order=order, reads=reads, strategy=args.strategy,
                           inplace=not args.no_inplace, time_limit=args.time_limit)
    return g, reads, plan, check_aliasing(g, plan, reads)


def _sanitized_run(g: Graph, plan: MemoryPlan, reads: str | None, runs: int, seed: int
                   ) -> int:
    """Run ``plan`` under the sanitizer on random data and compare every output and state
    with the reference backend; print the verdict and return the exit code."""
    import numpy as np

    import graphc as gc
    from graphc.backends.sanitizer import sanitize
    from graphc.testing.data import random_feeds
    from graphc.testing.oracles import first_mismatch

    inputs, params, states = random_feeds(g, seed)
    result = sanitize(g, plan, params, inputs, states=states, reads=reads, runs=runs)
    if result.violation is not None:
        print(f"sanitized run: stale read in run {len(result.outputs) + 1} of {runs}:")
        print(f"  - {result.violation}")
        return EXIT_PROBLEMS
    ref = gc.compile(g, params=params, states=states)
    for k in range(runs):
        want = ref.run(inputs)
        every = {n: "all" for n in want}
        problem = first_mismatch(want, result.outputs[k], every, 1e-5) or first_mismatch(
            {n: np.asarray(v) for n, v in ref.state.items()}, result.states[k],
            {n: "all" for n in ref.state}, 1e-5)
        if problem is not None:
            print(f"sanitized run {k + 1}: no stale read, but {problem} from the reference")
            return EXIT_PROBLEMS
    print(f"sanitized run: clean over {runs} runs (every read checked against shadow "
          f"memory; outputs and states equal the reference backend)")
    return EXIT_OK


def _is_capture(path: str) -> bool:
    """Whether ``path`` is a ggml capture (JSON with the capture's keys)."""
    if not path.endswith(".json"):
        return False
    try:
        with open(path) as f:
            head = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(head, dict) and {"tensors", "order", "buffers"} <= set(head)


def _cmd_check_capture(args: argparse.Namespace) -> int:
    """``graphc check CAPTURE.json``: ggml's plan of a captured graph, judged."""
    from graphc.interop.capture import Capture
    from graphc.interop.llama_check import judge

    verdict = judge(Capture.load(args.file), args.file)
    print("\n".join(verdict.lines()))
    return EXIT_OK if verdict.safe else EXIT_PROBLEMS


def _llama_mode(args: argparse.Namespace) -> Mode:
    from graphc.interop.llama_run import Mode

    return Mode(logits=args.logits, embeddings=args.embeddings,
                mtp=args.mtp or (args.tiny == "qwen35" and not args.all_modes
                                 and args.seqs == 1),
                layer_inputs=args.layer_inputs, backend_sampling=args.backend_sampling,
                seqs=args.seqs, n_ubatch=args.n_ubatch, kv_type=args.kv_type,
                flash_attn=args.flash_attn)


def _cmd_llama_check(args: argparse.Namespace) -> int:
    """``graphc llama-check MODEL.gguf``: capture llama.cpp's decode graphs, with what the
    host copies out after each, and judge them (``--all-modes``: every mode, one table)."""
    import tempfile

    from graphc.interop.ggml_abi import need_llama

    need_llama()
    from graphc.interop.llama_check import check_mode, check_modes, default_modes
    from graphc.interop.tiny_models import TINY_ARCHS

    if bool(args.model) == bool(args.tiny):
        raise GraphError("give a GGUF model file or --tiny ARCH, not both or neither",
                         fix="--tiny takes " + ", ".join(TINY_ARCHS))
    try:
        tokens = ([int(t) for t in args.tokens.split(",")] if args.tokens
                  else list(args.prompt.encode()))
    except ValueError:
        raise GraphError(f"--tokens {args.tokens!r} is not a list of token ids",
                         fix="write e.g. --tokens 1,2,3") from None
    mode = _llama_mode(args)  # checks the flags before anything runs
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.tiny:
            model = str(TINY_ARCHS[args.tiny](Path(tmp) / f"tiny-{args.tiny}.gguf"))
        elif not Path(model).is_file():
            raise GraphError(f"{model}: no such model file")
        if args.all_modes:
            rows = check_modes(model, tokens, default_modes(len(tokens)), n_ctx=args.n_ctx)
            return _print_modes(rows, args)
        row = check_mode(model, tokens, mode, n_ctx=args.n_ctx)
    if row.unsupported is not None:
        raise GraphError(row.unsupported)
    if row.error is not None:
        raise GraphError(row.error)
    verdicts = row.verdicts
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)
        for v in verdicts:
            v.capture.save(Path(args.save) / f"{v.label}.json")
    if args.json:
        print(json.dumps([v.to_dict() for v in verdicts], indent=1))
    else:
        print(f"mode: {mode.label()}")
        for v in verdicts:
            print("\n".join(v.lines()))
            if args.nodes:
                for k, rid in enumerate(v.capture.order):
                    rec = v.capture.tensors[rid]
                    print(f"    node {k:<4} {rec.describe():<60} {' '.join(rec.flag_names)}")
        if args.save:
            print(f"captures saved in {args.save}/ (graphc check {args.save}/prompt.json)")
    return EXIT_OK if all(v.safe for v in verdicts) else EXIT_PROBLEMS


def _print_modes(rows: list[ModeRow], args: argparse.Namespace) -> int:
    """The ``--all-modes`` table; exit 1 if any mode is unsafe, 2 if graphc could not
    judge one (a mode the model does not support is neither)."""
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="graphc llama-check --all-modes")
        for col in ("mode", "graphs", "nodes", "host reads observed", "verdict", "s"):
            t.add_column(col)
        for r in rows:
            names = [n for v in r.verdicts for n in v.read_names()]
            reads = ", ".join(f"{n} x{names.count(n)}" for n in dict.fromkeys(names))
            nodes = "+".join(str(len(v.capture.order)) for v in r.verdicts)
            t.add_row(r.mode.label(), str(len(r.verdicts)), nodes or "-", reads or "-",
                      r.verdict, f"{r.seconds:.1f}")
        Console(width=200).print(t)
    if any(r.error for r in rows):
        return EXIT_BAD_INPUT
    return EXIT_PROBLEMS if any(r.verdict.startswith("UNSAFE") for r in rows) else EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    if _is_capture(args.file):
        return _cmd_check_capture(args)
    g, reads, plan, found = _plan_and_check(args)
    print(plan.summary())
    if not found:
        print(f"proven safe: no value that is still read shares bytes with a later write "
              f"({len(plan.order)} nodes, reads: {reads or 'every output'})")
        code = EXIT_OK
    else:
        print(f"{len(found)} violation(s):")
        for v in found:
            print(f"  - {v}")
        code = EXIT_PROBLEMS
    if args.run:
        code = max(code, _sanitized_run(g, plan, reads, args.runs, args.seed))
    return code


def _cmd_intervals(args: argparse.Namespace) -> int:
    """``graphc plan --intervals FILE.csv``: place bare buffers (MiniMalloc's format).

    Shows the search's progress on a terminal; Ctrl-C stops it and keeps the best
    placement found so far (printed and written as usual)."""
    from rich.console import Console
    from rich.progress import Progress as Bar
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    from graphc.passes.exact import Progress, greedy_by_size, solve
    from graphc.passes.intervals import (
        LIMIT,
        check_solution,
        height,
        max_live,
        read_intervals,
        write_intervals,
    )

    buffers = read_intervals(args.intervals)
    if args.capacity is not None and not 1 <= args.capacity < LIMIT:
        raise GraphError(f"--capacity must be at least 1 and below 2**62, got {args.capacity}")
    bound = max_live(buffers)
    greedy = height(greedy_by_size(buffers))
    console = Console(stderr=True)
    with Bar(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
             console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("searching", total=None)

        def show(p: Progress) -> None:
            bar.update(task, description=(
                f"best {p.height:,} B ({p.height / max(bound, 1):.3f}x), bound "
                f"{p.lower_bound:,} B, looking for <= {p.target:,} B, {p.nodes:,} nodes, "
                f"limit {args.time_limit:g} s (Ctrl-C keeps the best)"))

        sol = solve(buffers, args.capacity, time_limit=args.time_limit, progress=show)
    assert not check_solution(sol.buffers, args.capacity if sol.fits else None)
    cap = f", capacity {args.capacity:,} B" if args.capacity is not None else ""
    print(f"{args.intervals}: {len(buffers)} buffers, max-live bound {bound:,} B{cap}")
    print(f"  greedy-by-size: {greedy:,} B ({greedy / max(bound, 1):.3f}x the bound)")
    print(f"  exact: {sol.height:,} B ({sol.height / max(bound, 1):.3f}x the bound), "
          f"{sol.status}{'' if sol.fits else ', does NOT fit the capacity'}, "
          f"{sol.seconds:.2f} s{', stopped by Ctrl-C' if sol.interrupted else ''}")
    if sol.status != "optimal":
        proof = "proven: none fits the capacity" if sol.infeasible else (
            f"proven lower bound {sol.lower_bound:,} B")
        print(f"  certificate: {proof}; {sol.nodes:,} search nodes "
              f"(time limit {args.time_limit:g} s)")
    if args.output:
        write_intervals(args.output, sol.buffers)
        print(f"wrote {args.output}")
    return EXIT_OK if sol.fits else EXIT_PROBLEMS


def _cmd_plan(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.intervals:
        if args.file:
            raise GraphError("give a graph file or --intervals, not both")
        return _cmd_intervals(args)
    if not args.file:
        raise GraphError("graphc plan needs a graph file (or --intervals FILE.csv)")
    g, _, plan, found = _plan_and_check(args)
    if args.peak and args.json:  # machine-readable: the peak alone
        from graphc.passes.memory import peak

        _print_peak(g, peak(g, plan.order, args.reads or None, inplace=not args.no_inplace),
                    True)
        return EXIT_OK if not found else EXIT_PROBLEMS
    table = Table(title=f"memory plan of @{g.name} ({plan.strategy}, {args.schedule} order)")
    for col in ("arena bytes", "lower bound", "ratio", "in-place writes", "state bytes",
                "param bytes", "violations"):
        table.add_column(col, justify="right")
    table.add_row(f"{plan.arena_bytes:,}", f"{plan.lower_bound_bytes:,}", f"{plan.ratio:.3f}",
                  str(len(plan.inplace_pairs)), f"{plan.state_bytes:,}",
                  f"{plan.param_bytes:,}", str(len(found)))
    Console().print(table)
    print(plan.summary())
    if args.output:
        from graphc.passes.plan_io import save_plan

        save_plan(plan, g, args.output)
        print(f"wrote {args.output}")
    if args.write_intervals:
        from graphc.passes.intervals import write_intervals
        from graphc.passes.memory import plan_intervals

        write_intervals(args.write_intervals, plan_intervals(
            g, plan, args.reads or None, inplace=not args.no_inplace))
        print(f"wrote {args.write_intervals}")
    top = None
    if args.peak or args.png:
        from graphc.passes.memory import peak

        top = peak(g, plan.order, args.reads or None, inplace=not args.no_inplace)
    if args.peak and top is not None:
        _print_peak(g, top, args.json)
    if args.png:
        from graphc.tools.plot import plot_plan

        plot_plan(g, plan, args.png, found, peak_step=top.step if top else None)
        print(f"wrote {args.png}")
    return EXIT_OK if not found else EXIT_PROBLEMS


def _print_peak(g: Graph, top: Peak, as_json: bool) -> None:
    """Print the buffers live at the peak step as a table, or as JSON."""
    import json

    from rich.console import Console
    from rich.table import Table

    from graphc.naming import label, ssa_names

    if as_json:
        print(json.dumps(top.to_dict(ssa_names(g)), indent=1))
        return
    table = Table(title=f"peak: {top.nbytes:,} B live at step {top.step}")
    for col, justify in (("buffer", "left"), ("op", "left"), ("bytes", "right"),
                         ("why it is live", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]  # a literal
    for e in top.entries:
        name = label(e.tensor) + (f" (+{len(e.members)} in place)" if e.members else "")
        table.add_row(name, e.tensor.op, f"{e.nbytes:,}", e.why)
    Console(width=120).print(table)
    print(f"peak: {top.nbytes:,} B at step {top.step}, {len(top.entries)} buffers live")


def _cmd_fuzz(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from graphc.backends import BACKENDS
    from graphc.testing.fuzz import aim_for, read_case, replay, run_fuzz
    from graphc.testing.strategies import ALL_FAMILIES, aim_families

    given = args.backends is not None
    backends = [b.strip() for b in (args.backends or "reference,arena,jax").split(",")
                if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        print(f"error: unknown backend {unknown[0]!r}; backends: {sorted(BACKENDS)}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.replay:
        _, case = read_case(args.replay)
        _load_modules([*case.get("load", []), *args.load])
        problem = replay(args.replay, backends if given else None)
        print(f"replay {args.replay}: pipeline {case['pipeline']!r}, seed {case['seed']}, "
              f"{case['data']} data (seed {case['data_seed']}), reads {case['reads']}")
        if problem is None:
            print("passes now (the failure is fixed, or it needs the original backends)")
            return EXIT_OK
        print(f"FAILED: {problem}")
        return EXIT_PROBLEMS
    _load_modules(args.load)
    ops = [o.strip() for o in (args.ops or "").split(",") if o.strip()]
    families = [f.strip() for f in (args.families or "").split(",") if f.strip()]
    bad = [f for f in families if f not in ALL_FAMILIES]
    if bad:
        print(f"error: unknown family {bad[0]!r}; families: {', '.join(ALL_FAMILIES)}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        aim_families(ops)
    except ValueError as e:
        print(f"error: --ops: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.pipeline != "default":
        from graphc.passes import parse_pipeline

        try:
            parse_pipeline(args.pipeline)
            aim_families(aim_for(args.pipeline, aim=not args.no_aim))
        except GraphError as e:
            print(e, file=sys.stderr)
            return EXIT_BAD_INPUT
        except ValueError:  # patterns on ops no backend runs: aim at the others
            pass
    console = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                  disable=not console.is_terminal) as progress:
        task = progress.add_task("fuzzing", total=args.examples)
        report = run_fuzz(examples=args.examples, seed=args.seed, pipeline=args.pipeline,
                          backends=backends, time_limit=args.time_limit, out_dir=args.out_dir,
                          max_nodes=args.max_nodes, ops=ops, families=families,
                          aim=not args.no_aim, min_changed=args.min_changed, load=args.load,
                          on_example=lambda n: progress.update(task, completed=n))
    table = Table(title=f"graphc fuzz (seed {args.seed}, pipeline {args.pipeline!r}, "
                        f"backends {','.join(backends)})")
    for col in ("examples", "per second", "aimed", "changed", "mismatches", "crashes",
                "unsafe plans", "missed", "false alarms", "unsafe mutants", "caught",
                "catch rate"):
        table.add_column(col, justify="right")
    table.add_row(str(report.examples), f"{report.per_second:.1f}", str(report.aimed),
                  str(report.changed), str(report.mismatches), str(report.crashes),
                  str(report.unsafe_plans), str(report.missed), str(report.false_alarms),
                  str(report.mutations), str(report.mutations_caught),
                  f"{100 * report.catch_rate:.1f}%")
    Console(width=140).print(table)
    shrink = f" (+{report.shrink_steps} shrink steps)" if report.shrink_steps else ""
    print(f"fuzz: {report.examples} examples{shrink} ({report.per_second:.1f}/s), mismatches "
          f"{report.mismatches}, crashes {report.crashes}, inputs mutated "
          f"{report.mutated_inputs}, unsafe plans {report.unsafe_plans}, "
          f"missed {report.missed}, false alarms {report.false_alarms}, unsafe mutants "
          f"caught {report.mutations_caught}/{report.mutations} (catch rate "
          f"{100 * report.catch_rate:.1f}%, judged by the sanitizer)")
    if args.pipeline != "default":
        fired = ", ".join(f"{n} {k}" for n, k in report.fired.most_common()) or "none"
        print(f"coverage: changed {report.changed} of {report.examples} examples; aimed "
              f"{report.aimed} at {', '.join(report.aim_ops) or 'nothing'}; patterns "
              f"fired: {fired}")
    for msg, path, text in zip(report.failures, report.files, report.graphs, strict=True):
        print(f"FAILED: {msg}\nshrunk graph (written to {path}; rerun it with "
              f"graphc fuzz --replay {path}):\n{text}", end="")
    if report.failed:
        return EXIT_PROBLEMS
    if report.coverage_problem:
        print(f"error: {report.coverage_problem}", file=sys.stderr)
        return EXIT_PROBLEMS
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from graphc.models.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphc`` command."""
    p = _Parser(prog="graphc", description="A compute-graph compiler for tensor programs.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    v = sub.add_parser("verify", help="check a graph file (text or .json); exit 1 if invalid")
    v.add_argument("file")
    v.set_defaults(func=_cmd_verify)

    f = sub.add_parser("fmt", help="print a graph file in canonical text (or JSON)")
    f.add_argument("file")
    f.add_argument("--json", action="store_true", help="print the JSON form instead")
    f.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    f.set_defaults(func=_cmd_fmt)

    o = sub.add_parser("opt", help="run a pass pipeline over a graph file and print the result")
    o.add_argument("file")
    o.add_argument("-p", "--pipeline", required=True,
                   help='e.g. "dead-outputs{reads=logits[-1]},prune-rows{reads=logits[-1]},'
                        'cse,dce"')
    o.add_argument("--print-ir-after-all", action="store_true")
    o.add_argument("--print-ir-after", action="append", metavar="PASS")
    o.add_argument("--print-ir-before-all", action="store_true")
    o.add_argument("--print-ir-before", action="append", metavar="PASS")
    o.add_argument("--time-passes", action="store_true", help="print each pass's time")
    o.add_argument("--stop-after", metavar="PASS", help="stop after this pass")
    o.add_argument("--stats", action="store_true",
                   help="print nodes, FLOPs and bytes before and after (cost model)")
    o.add_argument("--load", action="append", default=[], metavar="MODULE",
                   help="import this Python module first (it registers your passes); "
                        "repeatable")
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    o.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    o.set_defaults(func=_cmd_opt)

    for cmd, helptext, func in (
        ("check", "plan a graph and prove the plan safe; exit 1 with the violations if not",
         _cmd_check),
        ("plan", "print arena size, lower bound and ratio; --png draws the arena", _cmd_plan),
    ):
        c = sub.add_parser(cmd, help=helptext)
        c.add_argument("file", nargs="?" if cmd == "plan" else None)
        c.add_argument("--reads", help='what the caller reads after the run, e.g. '
                                       '"logits[-1]+h" (a non-output name is a tap)')
        c.add_argument("--strategy", default="greedy-by-size",
                       choices=["greedy-by-size", "best-fit-in-order", "exact", "auto"])
        c.add_argument("--time-limit", type=float, default=10.0,
                       help="seconds for the exact planner (strategies exact and auto, and "
                            "--intervals; default 10, the limit bench_exact.py measures at)")
        c.add_argument("--schedule", default="input",
                       choices=["input", "breadth-first", "depth-first", "memory"])
        c.add_argument("--no-inplace", action="store_true", help="no planner-chosen in-place")
        if cmd == "plan":
            c.add_argument("--png", help="write a picture of the arena here")
            c.add_argument("--peak", action="store_true",
                           help="list the buffers live at the peak step and why")
            c.add_argument("--json", action="store_true", help="with --peak: print JSON")
            c.add_argument("--intervals", metavar="CSV",
                           help="place bare buffers (id,lower,upper,size) instead of a graph")
            c.add_argument("--capacity", type=int, default=None,
                           help="with --intervals: the bytes the placement must fit in")
            c.add_argument("--write-intervals", metavar="CSV",
                           help="save the plan's arena as bare buffers (id,lower,upper,size,"
                                "offset)")
            c.add_argument("-o", "--output", help="save the plan here as JSON (atomically)")
        else:
            c.add_argument("--plan", help="check this plan file (JSON) instead of planning")
            c.add_argument("--run", action="store_true",
                           help="also run the plan under the sanitizer on random data, twice")
            c.add_argument("--runs", type=_positive, default=2,
                           help="runs for --run (default 2)")
            c.add_argument("--seed", type=int, default=0, help="data seed for --run")
        c.set_defaults(func=func)

    lc = sub.add_parser("llama-check", help="run llama.cpp on a prompt and a decode, watch "
                        "what the host copies out after each graph, and prove ggml's memory "
                        "plan safe or not")
    lc.add_argument("model", nargs="?", help="a GGUF model file")
    lc.add_argument("--tiny", choices=["qwen3", "qwen35", "llama", "gemma3", "qwen3moe",
                                       "deepseek2"],
                    help="write a tiny random model of this architecture and check it")
    lc.add_argument("--prompt", default="graphc!!", help="prompt text (its bytes as tokens)")
    lc.add_argument("--tokens", help="token ids instead of --prompt, e.g. 1,2,3")
    lc.add_argument("--logits", default="last", metavar="ROWS",
                    help="logits rows asked for: last (default), all, none, or rows 0,3")
    lc.add_argument("--embeddings", choices=["none", "mean", "cls", "last"],
                    help="ask for embeddings with this pooling")
    lc.add_argument("--mtp", action="store_true",
                    help="keep next-token hidden rows and run the MTP context (qwen35)")
    lc.add_argument("--layer-inputs", action="store_true",
                    help="read every layer's input after each graph, as EAGLE-3 does")
    lc.add_argument("--backend-sampling", action="store_true",
                    help="put a top-k + dist sampler chain on the graph")
    lc.add_argument("--seqs", type=_positive, default=1, help="sequences in the batch")
    lc.add_argument("--n-ubatch", type=_positive, default=None,
                    help="ubatch size (default: the whole batch in one graph)")
    lc.add_argument("--n-ctx", type=_positive, default=64, help="context size (default 64)")
    lc.add_argument("--kv-type", choices=["f32", "f16", "q8_0", "q4_0"], default="f32",
                    help="KV-cache type (f16 is llama.cpp's default; quantized V needs "
                         "--flash-attn)")
    lc.add_argument("--flash-attn", action="store_true", help="use flash attention")
    lc.add_argument("--all-modes", action="store_true",
                    help="run every mode the model supports and print one table")
    lc.add_argument("--nodes", action="store_true", help="list every captured node")
    lc.add_argument("--json", action="store_true", help="print the figures as JSON")
    lc.add_argument("--save", metavar="DIR", help="save each capture as DIR/<graph>.json")
    lc.set_defaults(func=_cmd_llama_check)

    z = sub.add_parser("fuzz", help="generated graphs through the pipeline, every backend, "
                       "every planner judged by the checker and the sanitizer, and plan mutations")
    z.add_argument("--examples", type=_positive, default=200)
    z.add_argument("--seed", type=int, default=0)
    z.add_argument("--pipeline", default="default",
                   help='"default" (the output-driven pipeline for each example\'s reads) '
                        "or pipeline text")
    z.add_argument("--backends", default=None,
                   help="comma-separated (default reference,arena,jax; with --replay: "
                        "the ones the file records)")
    z.add_argument("--load", action="append", default=[], metavar="MODULE",
                   help="import this Python module first (it registers your passes)")
    z.add_argument("--time-limit", type=float, default=None, help="seconds")
    z.add_argument("--max-nodes", type=_positive, default=10)
    z.add_argument("--out-dir", default="fuzz-failures",
                   help="where shrunk failing graphs are written")
    z.add_argument("--ops", metavar="OP,OP",
                   help="aim half the examples at these ops (besides those the pipeline's "
                        "rewrite patterns are registered on)")
    z.add_argument("--families", metavar="FAMILY,FAMILY",
                   help="aim at these families' ops and draw the broad half from them "
                        "(graphc.testing.strategies.ALL_FAMILIES, e.g. binary,view,reduce)")
    z.add_argument("--no-aim", action="store_true",
                   help="do not aim at the ops of the pipeline's rewrite patterns")
    z.add_argument("--min-changed", type=float, default=0.05, metavar="SHARE",
                   help="fail when the pipeline changes fewer than this share of the "
                        "examples (default 0.05; 0 accepts any)")
    z.add_argument("--replay", metavar="FILE",
                   help="rerun the case a failure file records, and nothing else")
    z.set_defaults(func=_cmd_fuzz)

    d = sub.add_parser("demo", help="the main job: dead outputs, memory plan, the MTP "
                       "aliasing bug, speculative decoding")
    from graphc.models.demo import add_arguments

    add_arguments(d)
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return func(args)
    except GraphError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader of our output went away (| head): nothing to say
        return EXIT_OK
    except OSError as e:  # a file we were asked to write (or read) cannot be
        where = f" {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}:{where}", file=sys.stderr)
        print("  fix: check that the folder exists and is writable", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
