"""The benchmark scripts run (in their --quick mode) and print sane figures: every number
parses, is finite, and sits where its meaning puts it (an arena is never below its lower
bound, a pass never adds FLOPs, printed ratios agree with the figures they divide).
Nothing here bounds a time: timings vary, so they are only checked to be positive."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "benchmarks"

# a printed number, with thousands separators; nan and inf match too, so that they fail
# the finiteness check instead of silently not matching
N = r"([-+]?(?:nan|inf|\d[\d,]*(?:\.\d*)?(?:[eE][-+]?\d+)?))"
UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}


def _num(text: str) -> float:
    value = float(text.replace(",", ""))
    assert math.isfinite(value), f"not a finite number: {text!r}"
    return value


def _rows(pattern: str, out: str, count: int | None = None) -> list[tuple[float, ...]]:
    """Every match of ``pattern`` (``{N}`` stands for a number) in ``out``, numbers parsed
    and checked finite; at least one match, or exactly ``count``."""
    found = re.findall(pattern.replace("{N}", N), out, re.MULTILINE)
    assert found, f"no line matches {pattern!r} in:\n{out}"
    if count is not None:
        assert len(found) == count, f"{len(found)} lines match {pattern!r}, expected {count}"
    return [tuple(_num(x) for x in ((m,) if isinstance(m, str) else m)) for m in found]


def _one(pattern: str, out: str) -> tuple[float, ...]:
    return _rows(pattern, out, count=1)[0]


def _check_passes(out: str) -> None:
    table = _rows(r"^\s*{N}\s+{N}\s+{N}\s+{N}$", out, count=2)  # two sizes in --quick
    sizes = [int(r[0]) for r in table]
    assert sizes == sorted(sizes) and sizes[0] > 0 and len(set(sizes)) == 2
    for n, t_fn, t_pm, us in table:
        assert t_fn > 0 and t_pm > 0 and us > 0
        # the columns agree, up to the printed rounding (0.0005 s, 0.05 us)
        assert us == pytest.approx(1e6 * t_pm / n, abs=1e6 * 0.0005 / n + 0.06)
    for label in ("functions", "PassManager+verify"):
        (k,) = _one(rf"^fitted scaling exponent \({re.escape(label)}\): {{N}}", out)
        assert k > 0, "ten times the nodes took no longer"
    n, t = _one(r"^largest graph: {N} nodes in {N} s", out)
    assert n == sizes[-1] and t == pytest.approx(table[-1][2], abs=0.006)
    flops = {label.strip(): (_num(f) * UNITS[u], _num(r), _num(x)) for label, f, u, r, x in
             re.findall(rf"^(.+?)\s+{N}(?: ([kMGTP]))?\s+{N}\s+{N}x$", out, re.MULTILINE)}
    assert set(flops) == {"everything (no pass)", "logits[-1] (sampling)",
                          "h_pre_norm (MTP prefill)", "logits[-1] + h_pre_norm"}
    base = flops.pop("everything (no pass)")
    assert base[0] > 0 and base[1:] == (1.0, 1.0)
    for label, (f, after, speedup) in flops.items():
        assert 0 < after <= 1.0, f"{label}: the passes never add FLOPs"
        assert f == pytest.approx(after * base[0], rel=0.015), label  # 3 digits printed
        assert speedup == pytest.approx(1 / after, rel=0.01), label
    both = flops["logits[-1] + h_pre_norm"][1]
    assert both >= flops["logits[-1] (sampling)"][1]
    assert both >= flops["h_pre_norm (MTP prefill)"][1], "reading more costs no less"


def _check_memory(out: str) -> None:
    table = re.findall(rf"^(\S.*?)\s+{N}\s+{N}\s+{N}\s+{N}\s+{N}\s+{N}\s+{N}\s+(\w+)$", out,
                       re.MULTILINE)
    assert len(table) == 9, out  # 3 transformer graphs, 3 seeds each of 2 DAG families
    for name, *nums, safe in table:
        nodes, lb, greedy, ratio, bf, bf_ratio, g_bf = (_num(x) for x in nums)
        assert nodes > 0 and lb > 0 and safe == "True", name
        assert greedy >= lb and bf > 0, f"{name}: an arena below the lower bound"
        # best-fit's ratio is over its own lower bound (its buffers differ), not the column
        assert ratio >= 1.0 and bf_ratio >= 1.0, name
        assert ratio == pytest.approx(greedy / lb, abs=6e-4), name
        assert g_bf == pytest.approx(greedy / bf, abs=6e-4), name
    fams = _rows(r"^greedy-by-size / lower bound, .+: max {N}, mean {N}$", out, count=3)
    for mx, mean in fams:
        assert mx >= mean >= 1.0
    (n_dags,) = _one(r"^memory scheduler on {N} random branchy DAGs", out)
    assert n_dags == 5
    for base in ("breadth-first", "depth-first", "input"):
        mean, mn, mx = _one(rf"vs {base}:\s+mean {{N}}x, min {{N}}x, max {{N}}x", out)
        assert 1.0 <= mn <= mean <= mx, f"the memory order never peaks above {base}"
    inp, mem = _one(r"transformer prefill: input {N} B, memory {N} B", out)
    assert 0 < mem <= inp
    nodes, p, c, total, ratio = _one(
        r"^plan \+ check on {N} nodes: plan {N} s \+ check {N} s = {N} s .*ratio {N}$", out)
    assert nodes > 1000 and p >= 0 and c >= 0  # printed to 0.01 s: a fast run shows 0.00
    assert total == pytest.approx(p + c, abs=0.011)
    assert ratio >= 1.0


def _check_jax(out: str) -> None:
    for label in ("prefill, all logits", "prefill, logits[-1]", "prefill, no passes",
                  "decode, 1 token"):
        t_g, t_h, ratio, own, share = _one(
            rf"^{re.escape(label)}\s+graphc\s+{{N}} ms\s+hand-written\s+{{N}} ms\s+ratio\s+"
            rf"{{N}}\s+graphc passes\+planning\s+{{N}} ms =\s+{{N}}% of JAX trace\+compile$",
            out)
        assert t_g > 0 and t_h > 0 and own > 0, label
        assert ratio > 0, label
        # the ratio is of the unrounded medians; the ms are printed to 0.0005
        slack = ratio * (0.0005 / t_g + 0.0005 / t_h) + 0.0006
        assert ratio == pytest.approx(t_g / t_h, abs=slack), label
        assert share > 0, f"{label}: JAX trace and compile times were not recorded"
    prefill, decode, gain = _one(r"^lowering efficiency \(the same work on both sides\): "
                                 r"prefill {N}, decode {N}; the passes on logits\[-1\]: {N}x",
                                 out)
    assert prefill > 0 and decode > 0 and gain > 0


def _check_prefill(out: str) -> None:
    blocks = re.split(r"^vocab ", out, flags=re.MULTILINE)[1:]
    assert len(blocks) == 2, out  # two vocabularies in --quick
    predicted: list[dict[str, float]] = []
    for block in blocks:
        rows = {label: tuple(_num(x) for x in nums) for label, *nums in re.findall(
            rf"^  (\S.*?)\s+{N} ms\s+{N} ms\s+{N}x\s+{N}x\s+{N}x$", block, re.MULTILINE)}
        assert set(rows) == {"every output", "h_pre_norm only", "logits[-1] + h_pre_norm"}
        every = rows["every output"]
        assert every[4] == 1.0, "nothing is removed when every output is read"
        for label, (t_none, t_pass, vs_all, over_xla, _) in rows.items():
            assert t_none > 0 and t_pass > 0 and vs_all > 0 and over_xla > 0, label
            # the printed ratios are of the unrounded medians; the ms are rounded to 0.005
            assert over_xla == pytest.approx(t_none / t_pass, rel=0.05, abs=0.02), label
        pred = {label: r[4] for label, r in rows.items()}
        assert pred["h_pre_norm only"] >= pred["logits[-1] + h_pre_norm"] > 1.0, \
            "dead-output elimination removes FLOPs, and reading less removes more"
        predicted.append(pred)
    assert predicted[1]["h_pre_norm only"] > predicted[0]["h_pre_norm only"], \
        "a larger vocabulary gives a larger saving when the logits are not read"


def _check_speculative(out: str) -> None:
    rows = re.findall(rf"^(\S.*?)\s+(\d)\s+{N}\s+{N}\s+{N}x\s+{N}x\s+{N}\s+{N}%\s+{N}\s+{N}"
                      rf"\s+{N}x\s+{N}\s+{N}x$", out, re.MULTILINE)
    models = list(dict.fromkeys(r[0] for r in rows))
    assert models[:3] == ["demo checkpoint", "demo checkpoint, light head",
                          "demo checkpoint, MLP head"], models
    assert len(models) == 5, models
    assert len(rows) == 2 * len(models), "k = 1, 2 for every model in --quick"
    for model, k, *nums in rows:
        (greedy, spec, speedup, decode, per_call, accept, measured, predicted, pred_speedup,
         predicted_ops, pred_speedup_ops) = map(_num, nums)
        assert greedy > 0 and spec > 0 and measured > 0 and predicted > 0 and pred_speedup > 0
        assert decode > 0
        assert predicted_ops > 1 and pred_speedup_ops > 0  # a round computes more than a step
        # the printed speed-up is the ratio of the (rounded) tokens/s beside it
        assert speedup == pytest.approx(spec / greedy, rel=0.02, abs=0.01), model
        assert 0 <= accept <= 100 and 1.0 <= per_call <= int(k) + 1, model
        if "rigged" in model:
            assert accept == 100.0, "rigged weights: every draft is right"
    for model in models:
        (_, best), = [(m, b) for m, b in re.findall(r"^best k for (.+): (\d) ", out,
                                                    re.MULTILINE) if m == model]
        assert best in ("1", "2"), model


def _check_soundness(out: str) -> None:
    (graphs, triples), = _rows(r"^{N} generated graphs, {N} \(graph, plan, mutation\) triples",
                               out, 1)
    assert graphs > 0 and triples > graphs
    rows = re.findall(rf"^(\S+)\s+{N}\s+{N}\s+{N}\s+{N}\s+{N}\s+{N}\s+(\S+)$", out,
                      re.MULTILINE)
    counts = {name: [_num(x) for x in nums] for name, *nums, _ in rows}
    assert "all" in counts and "none" in counts and len(counts) > 3
    for name, (safe, caught, missed, cons, false, unsafe) in counts.items():
        assert unsafe == caught + missed, name
        assert min(safe, caught, missed, cons, false) >= 0, name
    total = [sum(c[k] for n, c in counts.items() if n != "all") for k in range(6)]
    assert total == counts["all"], "the 'all' row is the sum of the others"
    assert sum(counts["all"][:5]) == triples
    missed, false = _one(r"^disagreements: missed unsafe plans {N}, unexplained false alarms "
                         r"{N};", out)
    assert (missed, false) == (counts["all"][2], counts["all"][4])
    assert missed == 0 and false == 0, "the checker and the sanitizer disagree"
    for _, plain, checked, ratio in re.findall(rf"^(demo \S+ \S+ tok)\s+{N}\s+{N}\s+{N}x$",
                                               out, re.MULTILINE):
        assert _num(plain) > 0 and _num(checked) > 0 and _num(ratio) > 0


def _check_llama(out: str) -> None:
    rows = _rows(r"^(?:qwen\S+), \w+\s+{N}\s+{N}\s+{N}\s+{N}\s+{N}\s+{N}  proven safe, "
                 r"0 stale reads$", out, count=5)  # qwen3 prompt/decode, qwen35 + mtp
    for nodes, buf, reach, greedy, best, bound in rows:
        assert nodes > 0 and bound <= best <= greedy and best <= reach <= buf
    assert "tap unmarked: violations ['unmarked-tap: h_pre_norm']" in out
    assert "hold the post-norm values" in out and "hold the pre-norm values" in out
    moves, broke, flagged, harmless, missed = _one(
        r"^real memory as the oracle: {N} moves, {N} broke an output, {N} flagged \({N} "
        r"where the outputs came out equal\), {N} missed$", out)
    assert missed == 0 and broke <= flagged <= moves and flagged - harmless == broke


@pytest.mark.parametrize(("script", "expect", "check"), [
    ("bench_passes.py", ["fitted scaling exponent", "logits[-1] (sampling)"], _check_passes),
    ("bench_memory.py", ["greedy-by-size / lower bound", "vs breadth-first", "plan + check"],
     _check_memory),
    ("bench_jax.py", ["prefill, all logits", "decode, 1 token", "of JAX trace+compile"],
     _check_jax),
    ("bench_prefill.py", ["h_pre_norm only", "passes over XLA", "predicted (FLOPs)"],
     _check_prefill),
    ("bench_soundness.py", ["static checker vs sanitizer", "sanitizer cost"],
     _check_soundness),
    pytest.param("bench_llama.py", ["seed bug", "real memory as the oracle"], _check_llama,
                 marks=pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                          reason="needs the llama extra")),
    ("bench_speculative.py", ["demo checkpoint", "pred. speed-up", "t_call"],
     _check_speculative),
])
def test_benchmark_quick_mode(script: str, expect: list[str],
                              check: Callable[[str], None]) -> None:
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True,
                          text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in expect:
        assert line in proc.stdout
    check(proc.stdout)


def test_speculative_benchmark_json() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "bench_speculative.py"), "--quick",
                           "--json"], capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert rows[0]["model"] == "demo checkpoint" and [r["k"] for r in rows[:2]] == [1, 2]
    assert [(r["model"], r["k"]) for r in rows[2:6]] == [
        ("demo checkpoint, light head", 1), ("demo checkpoint, light head", 2),
        ("demo checkpoint, MLP head", 1), ("demo checkpoint, MLP head", 2)]
    for r in rows:
        assert {"k", "greedy_tokens_per_s", "speculative_tokens_per_s", "tokens_per_call",
                "acceptance", "greedy_decode_tokens_per_s", "speculative_decode_tokens_per_s",
                "decode_speedup"} <= set(r)
        assert r["decode_speedup"] == pytest.approx(
            r["speculative_decode_tokens_per_s"] / r["greedy_decode_tokens_per_s"])
        assert r["greedy_tokens_per_s"] > 0 and r["speculative_tokens_per_s"] > 0
        assert 0.0 <= r["acceptance"] <= 1.0 and 1.0 <= r["tokens_per_call"] <= r["k"] + 1
        assert r["speedup"] == pytest.approx(
            r["speculative_tokens_per_s"] / r["greedy_tokens_per_s"])


def test_gpu_check_refuses_without_a_gpu() -> None:
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py")], capture_output=True,
                          text=True, check=False, timeout=120)
    assert proc.returncode == 2 and "no GPU visible" in proc.stdout


def test_speculative_benchmark_held_out() -> None:
    """``--held-out --quick``: every head at k = 1 and 4, speed-ups ordered lowest <=
    median <= highest, outputs checked equal to greedy inside the script."""
    proc = subprocess.run([sys.executable, str(BENCH / "bench_speculative.py"), "--quick",
                           "--held-out"], capture_output=True, text=True, check=False,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "held-out prompts: 2 of 64 bytes" in proc.stdout
    rows = re.findall(rf"^(block|light|mlp)\s+(\d)\s+{N}x\s+{N}x\s+{N}x\s+{N}x\s+{N}%$",
                      proc.stdout, re.MULTILINE)
    assert [(h, k) for h, k, *_ in rows] == [(h, k) for h in ("block", "light", "mlp")
                                             for k in ("1", "4")]
    for _, _, median, low, high, decode, accept in rows:
        assert 0 < _num(low) <= _num(median) <= _num(high) and _num(decode) > 0
        assert 0 <= _num(accept) <= 100
