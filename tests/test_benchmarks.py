"""The benchmark scripts run (in their --quick mode) and print their figures. Nothing
here measures time: that is what the scripts are for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "benchmarks"


@pytest.mark.parametrize(("script", "expect"), [
    ("bench_passes.py", ["fitted scaling exponent", "logits[-1] (sampling)"]),
    ("bench_memory.py", ["greedy-by-size / lower bound", "vs breadth-first", "plan + check"]),
    ("bench_jax.py", ["prefill, all logits", "decode, 1 token", "of JAX trace+compile"]),
    ("bench_prefill.py", ["h_pre_norm only", "predicted (FLOPs)"]),
])
def test_benchmark_quick_mode(script: str, expect: list[str]) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in expect:
        assert line in proc.stdout


def test_gpu_check_refuses_without_a_gpu() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py")], capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 2 and "no GPU visible" in proc.stdout
