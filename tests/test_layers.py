"""The layers the folders show are enforced: ruff's banned-import rule refuses an import
that goes up the order core < passes < backends < models < interop, tools and the CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = [
    ("graphc/verifier.py", "from graphc.passes.cost import cost", True),
    ("graphc/graph.py", "import graphc.backends.reference", True),
    ("graphc/ops.py", "import matplotlib", True),
    ("passes/cse.py", "from graphc.backends.reference import evaluate_node", True),
    ("passes/cse.py", "from graphc.tools.plot import plot_plan", True),
    ("passes/cse.py", "import jax", True),
    ("backends/reference.py", "from graphc.models.qwen import build_main", True),
    ("backends/reference.py", "from graphc.passes.cost import cost", False),
    ("passes/cse.py", "from graphc.graph import Graph", False),
    ("tools/plot.py", "from graphc.backends.reference import evaluate_node", False),
    ("graphc/cli.py", "from graphc.passes import cost", False),
    ("graphc/graph.py", "from graphc.interop.capture import Capture", True),
    ("passes/memory.py", "import graphc.interop.ggml_import", True),
    ("backends/arena.py", "from graphc.interop.ggml_abi import lib", True),
    ("interop/ggml_import.py", "from graphc.passes.aliasing import check_aliasing", False),
    ("interop/capture.py", "from graphc.cli import main", True),
    ("graphc/models/qwen.py", "from graphc.examples.quickstart import build_toy", True),
    ("graphc/models/qwen.py", "from graphc.interop.gguf_export import write_gguf", True),
    ("graphc/models/qwen.py", "from graphc.backends.arena import ArenaExecutable", False),
    ("passes/cse.py", "from graphc.models.qwen import build_main", True),
    ("graphc/graph.py", "from graphc.models import CHECKPOINT", True),
    ("interop/gguf_export.py", "from graphc.models.qwen import QwenConfig", False),
    ("interop/gguf_export.py", "from graphc.examples import quickstart", True),
]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the dev extra")
@pytest.mark.parametrize(("path", "line", "banned"), CASES)
def test_imports_follow_the_layers(path: str, line: str, banned: bool) -> None:
    source = f"{line}  # noqa: F401\n"
    proc = subprocess.run(["ruff", "check", "--no-cache", "--select", "TID251",
                           "--stdin-filename", path, "-"], input=source, text=True,
                          capture_output=True, cwd=ROOT, check=False)
    assert ("TID251" in proc.stdout) is banned, proc.stdout + proc.stderr


PACKAGE_DIRS = ("graphc", "passes", "backends", "interop", "tools")


def test_nothing_in_the_package_imports_the_examples() -> None:
    """``examples/`` holds scripts for users to read; the package never imports them.

    The command line, the driver and the testing toolkit are exempt from the ruff layer
    rule, so this scan of every import statement covers them too.
    """
    import ast

    offenders = []
    for folder in PACKAGE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                              for name in names if name.startswith("graphc.examples")]
    assert offenders == []
