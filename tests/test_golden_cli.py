"""FileCheck goldens for the ``graphc`` command line: ``plan`` and ``check`` output (every
violation kind the CLI can show from files), the sanitizer's verdict, and the diagnostics
for bad input files.

A golden is a graph file (``tests/golden_cli/*.gc``, ``tests/golden_diag/*.gc``) whose
``//`` comments say how to run it and what to expect:

``// RUN: graphc ARGS``
    run in-process through ``graphc.cli.main(ARGS)``; stdout is checked and stderr must be
    empty, unless the line ends in ``2>&1``: then both streams are checked, interleaved.
    A file may have several RUN lines; their outputs are concatenated, in order.
``// RUN: cat PATH``
    add a file's text to the output (e.g. a plan written with ``graphc plan ... -o``).
``// EXIT: N``
    the exit code every ``graphc`` RUN line must give (default 0).
``// CHECK:`` (``CHECK-NEXT``, ``CHECK-SAME``, ``CHECK-NOT``, ...)
    matched against the output by the ``filecheck`` package, as ``tests/golden`` is.

In RUN lines ``%s`` is the golden file, ``%S`` its folder and ``%t`` a fresh temporary
folder. Hand-made plan files (``*.plan.json``) sit next to the goldens that load them;
JSON has no comments, so the golden that loads a plan says what was edited in it. They
were made with ``graphc plan FILE -o x.plan.json`` and edited by hand. A plan file holds
its graph's fingerprint; when the fingerprint's definition changes, refresh them all with
``python tests/test_golden_cli.py --update-fingerprints`` (a deliberately stale one,
holding :data:`STALE`, is left alone).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from graphc.cli import main
from graphc.fileio import read_graph
from graphc.passes.aliasing import KINDS
from graphc.passes.memory import fingerprint

HERE = Path(__file__).parent
GOLDEN_DIRS = (HERE / "golden_cli", HERE / "golden_diag")
GOLDEN = sorted(p for d in GOLDEN_DIRS for p in d.glob("*.gc"))

# Violation kinds that no graph file or plan file given to the CLI can produce:
NOT_FROM_FILES = {
    # A plan file names the fingerprint it was made for, and load_plan refuses a stale one
    # (exit 2, covered by golden_cli/plan_file_stale_fingerprint.gc) before the checker
    # runs; the checker's own stale-plan kind needs a plan object held in Python for
    # another graph object or version (tests/test_memory.py covers it).
    "stale-plan",
}

STALE = "0123456789abcdef0123456789abcdef"  # the fingerprint of a plan that is stale on purpose
FINGERPRINT = re.compile(r'("fingerprint":\s*")([0-9a-f]*)(")')

DIRECTIVE = re.compile(r"^// (CHECK(?:-NEXT|-SAME|-NOT|-EMPTY|-LABEL|-DAG)?|RUN|EXIT): ")
CHECK_LINE = re.compile(r"^\s*// CHECK(-NEXT|-SAME|-NOT|-EMPTY|-LABEL|-DAG)?: ?(.*)$")


def _filecheck(check_file: Path, text: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("filecheck")
    cmd = [exe] if exe else [sys.executable, "-m", "filecheck"]
    return subprocess.run([*cmd, str(check_file)], input=text, capture_output=True,
                          text=True, check=False)


def _directives(text: str, name: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"^\s*// {name}: (.*?)\s*$", text, re.MULTILINE)]


def _run_graphc(argv: list[str], merge: bool) -> tuple[int, str, str]:
    """Run ``graphc argv`` in-process; (exit code, checked output, unchecked stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out if merge else err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse: usage errors and --help
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def run_golden(path: Path, tmp: Path) -> tuple[str, list[str]]:
    """Run every RUN line of ``path``; (the output to check, problems with exit codes or
    stray stderr)."""
    text = path.read_text()
    runs = _directives(text, "RUN")
    assert runs, f"{path.name} has no RUN line"
    exits = _directives(text, "EXIT")
    assert len(exits) <= 1, f"{path.name} has more than one EXIT line"
    want = int(exits[0]) if exits else 0
    output, problems = [], []
    for line in runs:
        line = line.replace("%s", str(path)).replace("%S", str(path.parent)) \
            .replace("%t", str(tmp))
        argv = shlex.split(line)
        merge = argv[-1:] == ["2>&1"]
        if merge:
            argv = argv[:-1]
        if argv[0] == "cat":
            output.append("".join(Path(a).read_text() for a in argv[1:]))
            continue
        assert argv[0] == "graphc", f"{path.name}: a RUN line runs graphc or cat: {line}"
        code, out, err = _run_graphc(argv[1:], merge)
        output.append(out)
        if code != want:
            problems.append(f"`{line}` exited {code}, expected {want}")
        if err:
            problems.append(f"`{line}` wrote to stderr (add 2>&1 to check it):\n{err}")
    return "".join(output), problems


@pytest.fixture(autouse=True)
def _plain_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich tables at a fixed width, without colour, whatever the terminal."""
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("NO_COLOR", "1")
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_cli(path: Path, tmp_path: Path) -> None:
    output, problems = run_golden(path, tmp_path)
    proc = _filecheck(path, output)
    assert proc.returncode == 0, f"FileCheck failed:\n{proc.stderr}\n--- output ---\n{output}"
    assert not problems, "\n".join(problems) + f"\n--- output ---\n{output}"

    # The golden can fail: its last positive CHECK line, made wrong, no longer matches.
    lines = path.read_text().splitlines(keepends=True)
    last = max(i for i, ln in enumerate(lines)
               if (m := CHECK_LINE.match(ln)) and m.group(1) not in ("-NOT", "-EMPTY"))
    lines[last] = lines[last].rstrip("\n") + " <not in any output>\n"
    mutant = tmp_path / path.name
    mutant.write_text("".join(lines))
    assert _filecheck(mutant, output).returncode != 0, \
        f"{path.name}: a wrong CHECK line on line {last + 1} still passes"


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_cli_directives_are_well_formed(path: Path) -> None:
    """A typo such as ``// CHEKC:`` or ``//CHECK:`` would silently check nothing."""
    text = path.read_text()
    assert any(CHECK_LINE.match(ln) for ln in text.splitlines()), f"{path.name}: no CHECK"
    for n, ln in enumerate(text.splitlines(), 1):
        s = ln.strip()
        if re.match(r"//\s*([A-Z][A-Z-]*\s*:|CHE|CHK|RUN|EXIT)", s):
            assert DIRECTIVE.match(s), f"{path.name}:{n}: malformed directive: {s}"


def test_golden_cli_covers_every_violation_kind() -> None:
    """Each kind the checker can report from files appears in some golden's CHECK lines."""
    assert set(KINDS) > NOT_FROM_FILES
    checked = "\n".join(m.group(2) for p in GOLDEN for ln in p.read_text().splitlines()
                        if (m := CHECK_LINE.match(ln)) and m.group(1) != "-NOT")
    shown = {k for k in KINDS if re.search(rf"(?<![\w-]){re.escape(k)}:", checked)}
    assert shown == set(KINDS) - NOT_FROM_FILES, (
        f"kinds without a golden: {sorted(set(KINDS) - NOT_FROM_FILES - shown)}; "
        f"in NOT_FROM_FILES but checked: {sorted(shown & NOT_FROM_FILES)}")


def _plan_files() -> dict[Path, Path]:
    """Each plan file a golden's RUN lines load (existing or not) -> that golden."""
    return {p.parent / m.group(1): p for p in GOLDEN for run in _directives(p.read_text(), "RUN")
            for m in re.finditer(r"%S/(\S+\.json)", run)}


def update_fingerprints() -> None:
    """Write each plan file's graph's current fingerprint into it (text edit, so a plan
    file that is not JSON on purpose keeps its fault; STALE is left alone)."""
    for plan, golden in sorted(_plan_files().items()):
        if plan.exists():
            fp = fingerprint(read_graph(str(golden)))
            text = plan.read_text()
            new = FINGERPRINT.sub(lambda m, fp=fp: m.group(0) if m.group(2) == STALE
                                  else m.group(1) + fp + m.group(3), text)
            if new != text:
                plan.write_text(new)
                print(f"updated {plan.relative_to(HERE)}")


def test_golden_cli_plan_files_are_used() -> None:
    """Every hand-made plan file is loaded by some golden (none left behind)."""
    used = set(_plan_files())
    for d in GOLDEN_DIRS:
        for plan in d.glob("*.json"):
            assert plan in used, f"{d.name}/{plan.name} is not used by a golden"


def test_golden_cli_plan_files_match_their_graphs() -> None:
    """A plan file made for its golden's graph holds that graph's fingerprint, so its
    golden checks the hand edit, not a stale plan (the one STALE plan aside)."""
    stale = []
    for plan, golden in sorted(_plan_files().items()):
        m = FINGERPRINT.search(plan.read_text()) if plan.exists() else None
        if m and m.group(2) != STALE and m.group(2) != fingerprint(read_graph(str(golden))):
            stale.append(plan.name)
    assert not stale, (f"plan files made for an older fingerprint: {stale}; if the "
                       f"fingerprint's definition changed on purpose, run "
                       f"python tests/test_golden_cli.py --update-fingerprints")


def test_python_m_graphc_cli_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "graphc.cli", "--help"], capture_output=True,
                          text=True, check=False, cwd=HERE.parent)
    assert proc.returncode == 0 and "check" in proc.stdout and "plan" in proc.stdout


if __name__ == "__main__":
    if sys.argv[1:] != ["--update-fingerprints"]:
        raise SystemExit("usage: python tests/test_golden_cli.py --update-fingerprints")
    update_fingerprints()
