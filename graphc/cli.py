"""The ``graphc`` command line. Exit codes: 0 ok, 1 the check found problems, 2 bad input
or usage. A bad file gets its diagnostic, never a Python traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from graphc.errors import GraphError

EXIT_OK, EXIT_PROBLEMS, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
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


def _cmd_fmt(args: argparse.Namespace) -> int:
    from graphc.fileio import atomic_write_text, read_graph
    from graphc.jsonio import to_json
    from graphc.text import to_text

    try:
        g = read_graph(args.file)
    except GraphError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    text = to_json(g) + "\n" if args.json else to_text(g)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _stats_table(before: object, after: object, title: str) -> object:
    from rich.table import Table

    from graphc.passes.cost import human

    table = Table(title=title)
    for col in ("", "before", "after", "after/before"):
        table.add_column(col, justify="right")
    rows = [("nodes", len(before.nodes), len(after.nodes)),  # type: ignore[attr-defined]
            ("FLOPs", before.flops, after.flops),  # type: ignore[attr-defined]
            ("bytes read", before.bytes_read, after.bytes_read),  # type: ignore[attr-defined]
            ("bytes written", before.bytes_written,  # type: ignore[attr-defined]
             after.bytes_written)]  # type: ignore[attr-defined]
    for label, b, a in rows:
        table.add_row(label, human(b), human(a), f"{a / b:.4f}" if b else "-")
    return table


def _cmd_opt(args: argparse.Namespace) -> int:
    from rich.console import Console

    from graphc.fileio import atomic_write_text, read_graph
    from graphc.jsonio import to_json
    from graphc.passes import PassError, PassManager, cost
    from graphc.text import to_text

    try:
        g = read_graph(args.file)
    except GraphError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
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
    text = to_json(result) + "\n" if args.json else to_text(result)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from graphc.demo import run_demo

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
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    o.add_argument("-o", "--output", help="write here (atomically) instead of stdout")
    o.set_defaults(func=_cmd_opt)

    d = sub.add_parser("demo", help="build, check and run the quickstart graph")
    d.add_argument("--seed", type=int, default=0)
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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
