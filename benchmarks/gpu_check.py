"""GPU check: the JAX backend's parity tests and benchmark on a GPU, in one command.

Run on a machine whose JAX sees a GPU: python benchmarks/gpu_check.py [--quick]

1. Prints the devices JAX sees and refuses to go on (exit 2) when none is a GPU, unless
   ``--allow-cpu`` is given (for trying the script out).
2. Runs the JAX parity tests (every op in f32/f16/bf16, generated graphs, KV-cache decode
   with donated state, reads, gradients) against the NumPy reference: pytest on
   tests/test_jax.py, without the multi-device CPU subprocess test.
3. Runs benchmarks/bench_jax.py (graphc vs the same model written directly in JAX).

Exit status: 0 when the tests pass, 1 when they fail, 2 without a GPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Run the check; return the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the benchmark's small model")
    ap.add_argument("--allow-cpu", action="store_true", help="run even without a GPU")
    args = ap.parse_args()

    import jax

    devices = jax.devices()
    print(f"JAX {jax.__version__}; devices: {devices}")
    if not any(d.platform == "gpu" for d in devices) and not args.allow_cpu:
        print("no GPU visible to JAX: nothing to check here (use --allow-cpu to try anyway)")
        return 2
    t0 = time.perf_counter()
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_jax.py"), "-q",
         "-p", "no:cacheprovider", "-k", "not multi_device"],
        cwd=ROOT, check=False, capture_output=True, text=True)
    summary = [ln for ln in tests.stdout.splitlines() if " passed" in ln or " failed" in ln]
    result = summary[-1] if summary else tests.stdout[-500:]
    print(f"parity tests on {devices[0].platform}: {result} ({time.perf_counter() - t0:.1f} s)")
    if tests.returncode != 0:
        print(tests.stdout[-3000:], tests.stderr[-2000:])
    bench = [sys.executable, str(ROOT / "benchmarks" / "bench_jax.py")]
    subprocess.run(bench + (["--quick"] if args.quick else []), cwd=ROOT, check=False)
    return 0 if tests.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
