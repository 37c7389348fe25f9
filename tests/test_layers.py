"""The layers the folders show are enforced: ruff's banned-import rule refuses an import
that goes up the order core < passes < backends < tools (and examples, the CLI)."""

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
    ("backends/reference.py", "from graphc.examples.qwen import build_main", True),
    ("backends/reference.py", "from graphc.passes.cost import cost", False),
    ("passes/cse.py", "from graphc.graph import Graph", False),
    ("tools/plot.py", "from graphc.backends.reference import evaluate_node", False),
    ("graphc/cli.py", "from graphc.passes import cost", False),
    ("graphc/graph.py", "from graphc.interop.capture import Capture", True),
    ("passes/memory.py", "import graphc.interop.ggml_import", True),
    ("backends/arena.py", "from graphc.interop.ggml_abi import lib", True),
    ("interop/ggml_import.py", "from graphc.passes.aliasing import check_aliasing", False),
    ("interop/capture.py", "from graphc.cli import main", True),
]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the dev extra")
@pytest.mark.parametrize(("path", "line", "banned"), CASES)
def test_imports_follow_the_layers(path: str, line: str, banned: bool) -> None:
    source = f"{line}  # noqa: F401\n"
    proc = subprocess.run(["ruff", "check", "--no-cache", "--select", "TID251",
                           "--stdin-filename", path, "-"], input=source, text=True,
                          capture_output=True, cwd=ROOT, check=False)
    assert ("TID251" in proc.stdout) is banned, proc.stdout + proc.stderr
