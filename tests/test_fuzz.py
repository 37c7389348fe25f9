"""The fuzzing toolkit: oracles, strategies, the pytest plugin and ``graphc fuzz``,
including that it finds a planted bug and writes the shrunk graph."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import graphc as gc
from graphc.cli import main
from graphc.passes import Pass, check_aliasing, cse, dce, fold, register_pass
from graphc.passes.rewrite import Rebuilder
from graphc.testing.fuzz import replay, run_fuzz
from graphc.testing.oracles import assert_equivalent, assert_pass_preserves
from graphc.testing.strategies import graphs, plans, reads_for


@register_pass
@dataclass
class SwapAddSub(Pass):
    """A planted bug: rewrites every add into a sub."""

    name = "test-swap-add-sub"
    summary = "wrong on purpose"

    def run(self, g: gc.Graph) -> gc.Graph:
        rb = Rebuilder(g)
        for t in g.nodes:
            if t.is_leaf:
                continue
            ins = [rb[i] for i in t.inputs]
            rb.map[t] = rb.dst.sub(*ins) if t.op == "add" else rb.copy(t, ins)
        return rb.finish()


def _toy() -> gc.Graph:
    g = gc.Graph("t")
    x = g.input("x", (3, 4))
    g.set_output(g.add(g.tanh(x), x), "y")
    return g


def test_assert_equivalent_accepts_and_rejects() -> None:
    g = _toy()
    assert_equivalent(g, cse(g))
    with pytest.raises(AssertionError) as info:
        assert_equivalent(g, SwapAddSub().run(g), backends=("reference",))
    assert "reference: output 'y' differs" in str(info.value)
    assert "--- after ---" in str(info.value) and "sub(" in str(info.value)


test_cse_preserves = assert_pass_preserves(cse)
test_fold_preserves = assert_pass_preserves(fold)
test_dce_pipeline_preserves = assert_pass_preserves("fold,cse,dce")


def test_assert_pass_preserves_finds_a_bug_and_shrinks_it() -> None:
    check = settings(max_examples=200, database=None)(assert_pass_preserves(SwapAddSub(),
                                                                           backends=("reference",)))
    with pytest.raises(AssertionError) as info:
        check()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "generated graph:" in notes and "add(" in notes


@given(data=st.data())
def test_reads_and_plans_strategies(data: st.DataObject) -> None:
    g = data.draw(graphs(max_rank=3))
    reads = data.draw(reads_for(g, taps=True))
    assert reads
    plan = data.draw(plans(g, reads))
    assert check_aliasing(g, plan, reads) == [] or plan.strategy == "best-fit-in-order"


def test_plugin_profiles_and_fixtures(graphc_feeds, graphc_assert_equivalent) -> None:  # type: ignore[no-untyped-def]
    assert settings.get_profile("graphc-fuzz").max_examples == 5000
    assert settings.get_profile("graphc-ci").max_examples == 60
    from graphc.testing.pytest_plugin import profile_name

    assert profile_name("ci") == "graphc-ci" and profile_name("mine") == "mine"
    inputs, params, states = graphc_feeds(_toy(), 3)
    assert set(inputs) == {"x"} and params == {} and states == {}
    graphc_assert_equivalent(_toy(), dce(_toy()))


def test_fuzz_clean_run() -> None:
    report = run_fuzz(examples=30, seed=3, backends=("reference", "arena"))
    assert report.examples == 30 and not report.failed
    assert report.mutations > 0 and report.catch_rate == 1.0


def test_fuzz_finds_the_planted_bug(tmp_path: Path) -> None:
    report = run_fuzz(examples=300, seed=1, pipeline="test-swap-add-sub",
                      backends=("reference",), out_dir=str(tmp_path))
    assert report.failed and report.mismatches == 1
    assert report.examples == report.first_failure_examples, "shrink steps counted apart"
    (path,) = report.files
    assert Path(path).name.startswith("test-swap-add-sub-seed1-")
    text = Path(path).read_text()
    assert text.startswith("// graphc fuzz: mismatch")
    case = json.loads(next(ln for ln in text.splitlines() if ln.startswith("// case: "))[9:])
    assert case["pipeline"] == "test-swap-add-sub" and case["seed"] == 1
    assert case["backends"] == ["reference"] and case["reads"]
    assert replay(path) is not None and replay(path).startswith("mismatch")
    g = gc.parse_text(text)  # the comments are skipped: it pastes into a golden test
    assert any(t.op == "add" for t in g.nodes)
    assert len([t for t in g.nodes if not t.is_leaf]) <= 3, "shrunk to a few nodes"


def test_fuzz_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fuzz", "--examples", "12", "--backends", "reference,arena"]) == 0
    out = capsys.readouterr().out
    assert "catch rate" in out and "100.0%" in out
    assert main(["fuzz", "--examples", "300", "--backends", "reference", "--pipeline",
                 "test-swap-add-sub", "--out-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: mismatch" in out and "graphc fuzz --replay" in out
    assert out.count("graph @gen {") == 1, "the shrunk graph is printed once"
    (path,) = tmp_path.iterdir()
    assert main(["fuzz", "--replay", str(path)]) == 1
    assert "FAILED: mismatch" in capsys.readouterr().out
    assert main(["fuzz", "--backends", "tpu"]) == 2
    assert main(["fuzz", "--examples", "1000000", "--time-limit", "0.5", "--backends",
                 "reference"]) == 0
