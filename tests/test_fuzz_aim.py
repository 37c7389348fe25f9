"""Aimed generation, coverage, oracles with rows and taps, input mutation, the plugin's
profiles, and the seeded wrong passes (a few of them: the whole table is
benchmarks/bench_fuzz.py)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import graphc as gc
from graphc.cli import main
from graphc.passes import PassError, PassManager, cse
from graphc.testing import wrong_passes
from graphc.testing.data import domain_feeds
from graphc.testing.fuzz import run_fuzz
from graphc.testing.oracles import assert_equivalent, assert_pass_preserves, pipeline_ops
from graphc.testing.strategies import ALL_FAMILIES, graphs

QUICK = settings(max_examples=40, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


def test_aimed_graphs_contain_the_op_and_its_edges() -> None:
    seen: Counter[str] = Counter()

    @QUICK
    @given(graphs(families=ALL_FAMILIES, ops=("sub", "transpose"), max_rank=3))
    def check(g: gc.Graph) -> None:
        gc.verify(g)
        ops = {t.op for t in g.nodes}
        assert ops & {"sub", "transpose"}, "the first step is aimed"
        seen.update(ops)
        for t in g.nodes:
            if t.op == "transpose":
                assert list(t.attrs["perm"]) != sorted(t.attrs["perm"])

    check()
    assert seen["sub"] and seen["transpose"]


def test_aim_refuses_an_op_it_cannot_build() -> None:
    with pytest.raises(ValueError, match="cannot aim at op 'opaque'"):
        graphs(ops=("opaque",)).validate()
        QUICK(given(graphs(ops=("opaque",)))(lambda g: None))()


def test_states_without_inplace_force_nothing() -> None:
    @QUICK
    @given(graphs(states=True, inplace=False, families=ALL_FAMILIES))
    def check(g: gc.Graph) -> None:
        assert not any(t.inplace for t in g.nodes)

    check()


def test_pipeline_ops_reads_the_patterns() -> None:
    assert pipeline_ops("wrong-broadcast-sum") == ["sum", "add"]
    assert {"scale", "transpose", "neg"} <= set(pipeline_ops("fold"))
    assert pipeline_ops("cse") == []


def test_assert_equivalent_with_rows_and_taps() -> None:
    g = gc.Graph("t")
    x = g.input("x", (3, 4))
    h = g.tanh(x)
    g.set_output(g.neg(h), "y", rows=[-1])
    assert_equivalent(g, g, backends=("reference", "arena"))  # rows in the IR
    assert_equivalent(g, cse, {"y": [0, 2], h: "all"}, backends=("reference",))
    with pytest.raises(AssertionError, match="pass the pass itself"):
        assert_equivalent(g, cse(g), {h: "all"}, backends=("reference",))


def test_domain_feeds_have_zeros_negatives_and_ties() -> None:
    g = gc.Graph("t")
    g.set_output(g.neg(g.input("x", (8, 8))), "y")
    (x,) = domain_feeds(g, 0)[0].values()
    assert (x == 0).any() and (x < 0).any() and len(set(x.ravel().tolist())) < 16


def test_pass_manager_and_preserves_catch_a_pass_that_mutates_its_input() -> None:
    g = gc.Graph("t")
    g.set_output(g.neg(g.input("x", (2, 2))), "y")
    with pytest.raises(PassError, match="changed its input graph"):
        PassManager("wrong-mutates-input").run(g)
    check = settings(max_examples=20, database=None, report_multiple_bugs=False)(
        assert_pass_preserves(wrong_passes.MutatesInput(), backends=("reference",)))
    with pytest.raises(AssertionError, match="changed its input graph"):
        check()


def test_preserves_aims_at_the_patterns_and_shows_the_graph_once() -> None:
    check = settings(max_examples=100, database=None, report_multiple_bugs=False)(
        assert_pass_preserves("wrong-sub-to-add", backends=("reference",)))
    with pytest.raises(AssertionError) as info:
        check()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert notes.count("generated graph:") == 1 and "sub(" in notes
    assert "--- before ---" not in str(info.value)


@pytest.mark.parametrize("name", ["wrong-sub-to-add", "wrong-swap-concat", "wrong-cse-leaves",
                                  "wrong-dce-assigns", "wrong-mutates-input"])
def test_fuzz_catches_wrong_passes(name: str, tmp_path: Path) -> None:
    r = run_fuzz(examples=200, seed=0, pipeline=name, backends=("reference",),
                 out_dir=str(tmp_path))
    assert r.failed, f"{name} not caught"
    assert len(r.files) == 1 and Path(r.files[0]).exists()


def test_fuzz_control_reports_coverage() -> None:
    r = run_fuzz(examples=40, seed=2, pipeline="fold", backends=("reference",))
    assert not r.failed and r.coverage_problem is None
    assert r.aimed and r.changed and sum(r.fired.values()) > 0


def test_fuzz_cli_coverage_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--examples", "20", "--backends", "reference", "--pipeline",
                 "dce"]) == 1
    err = capsys.readouterr().err
    assert "never changed an example" in err and "--ops" in err
    assert main(["fuzz", "--examples", "20", "--backends", "reference", "--pipeline",
                 "fold", "--ops", "neg", "--families", "view"]) == 0
    assert "patterns fired:" in capsys.readouterr().out
    assert main(["fuzz", "--ops", "nope", "--backends", "reference"]) == 2
    assert main(["fuzz", "--families", "nope", "--backends", "reference"]) == 2


def test_fuzz_examples_count_no_shrink_steps() -> None:
    r = run_fuzz(examples=30, seed=4, backends=("reference",))
    assert r.examples == 30 and r.shrink_steps == 0


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path), *args], capture_output=True, text=True,
                          cwd=tmp_path, check=False)


def test_plugin_profiles_change_graphc_tests_only(tmp_path: Path) -> None:
    (tmp_path / "test_user.py").write_text(
        "from hypothesis import given, strategies as st\n"
        "from graphc.testing import assert_pass_preserves\n"
        "N = [0]\n"
        "@given(st.integers())\n"
        "def test_mine(x):\n    N[0] += 1\n"
        "def test_count():\n    assert N[0] == 100, N\n"
        "test_cse = assert_pass_preserves('cse', backends=('reference',))\n"
        "def test_profile():\n"
        "    assert test_cse._hypothesis_internal_use_settings.max_examples == 60\n")
    done = _pytest(tmp_path, "--graphc-profile", "ci")
    assert done.returncode == 0, done.stdout + done.stderr
    bad = _pytest(tmp_path, "--graphc-profile", "nope")
    assert bad.returncode != 0 and "INTERNALERROR" not in bad.stdout + bad.stderr
    assert "no such Hypothesis profile" in bad.stdout + bad.stderr


def test_a_pass_without_patterns_is_aimed_at_the_ops_it_is_seen_to_change() -> None:
    """prune-rows has no rewrite patterns to read: what it rewrites is observed by running
    it on broad graphs (the row-wise ops it narrows to the rows read); dce rewrites
    nothing it keeps; a pass turning every sub into an add is seen rewriting sub."""
    from graphc.testing.fuzz import aim_for, probe_ops

    seen = probe_ops("prune-rows", examples=100)
    assert "matmul" in seen, seen
    assert probe_ops("dce", examples=100) == []
    import graphc.testing.wrong_passes  # noqa: F401  (registers wrong-sub-to-add)

    assert probe_ops("wrong-sub-to-add", examples=100)[:1] == ["sub"]
    assert aim_for("prune-rows") == probe_ops("prune-rows")
