"""Passes: golden FileCheck tests, semantic checks on the reference backend, Hypothesis
properties over generated graphs, the pass manager and ``graphc opt``."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

import graphc as gc
from graphc.cli import main
from graphc.models.qwen import QwenConfig, build_main
from graphc.passes import (
    PASSES,
    Pass,
    PassError,
    PassManager,
    cost,
    cse,
    dce,
    dead_outputs,
    fold,
    optimize_for_reads,
    parse_pipeline,
    prune_rows,
    register_pass,
)
from graphc.testing.data import random_feeds
from graphc.testing.strategies import graphs

GOLDEN = sorted((Path(__file__).parent / "golden").glob("*.gc"))


def _filecheck(check_file: Path, text: str) -> None:
    exe = shutil.which("filecheck")
    cmd = [exe] if exe else [sys.executable, "-m", "filecheck"]
    proc = subprocess.run([*cmd, str(check_file)], input=text, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, f"FileCheck failed:\n{proc.stderr}\n--- input ---\n{text}"


def _run_all(g: gc.Graph, feeds: tuple[dict, dict, dict]) -> dict[str, np.ndarray]:
    inputs, params, states = feeds
    return gc.compile(g, params=params, states=states).run(inputs)


def assert_same_reads(before: gc.Graph, after: gc.Graph, reads: object = None,
                      seed: int = 0) -> None:
    """Run both graphs on the same random data; every output of ``after`` must equal the
    rows ``reads`` selects from ``before``'s output of that name."""
    rd = gc.reads.normalize_reads(before, reads)[1]  # type: ignore[arg-type]
    feeds = random_feeds(before, seed)  # passes keep every leaf: the same data fits both
    want = _run_all(before, feeds)
    got = _run_all(after, feeds)
    assert set(got) <= set(want)
    for name, value in got.items():
        sel = rd.rows.get(name, "all")
        expected = want[name] if sel == "all" else want[name][list(sel)]
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-5, err_msg=name)


def _reads_of(pipeline: str) -> str | None:
    found = [p.options()["reads"] for p in parse_pipeline(pipeline) if "reads" in p.options()]
    return found[-1] if found else None


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_golden(path: Path) -> None:
    text = path.read_text()
    g = gc.parse_text(text, str(path))
    m = re.search(r"^// RUN(-ERROR)?: (.*)$", text, re.MULTILINE)
    assert m, f"{path.name} has no RUN line"
    pipeline = m.group(2)
    if m.group(1):
        with pytest.raises(gc.GraphError) as info:
            PassManager(pipeline).run(g)
        _filecheck(path, str(info.value))
        return
    after = PassManager(pipeline).run(g)
    _filecheck(path, gc.to_text(after))
    assert_same_reads(g, after, _reads_of(pipeline))


def test_golden_corpus_covers_every_pass() -> None:
    runs = " ".join(re.findall(r"^// RUN(?:-ERROR)?: (.*)$", p.read_text(), re.MULTILINE)[0]
                    for p in GOLDEN)
    builtin = [n for n, cls in PASSES.items() if cls.__module__.startswith("graphc.passes")]
    assert len(builtin) >= 5
    for name in builtin:
        assert name in runs, f"no golden test runs {name}"


# ----------------------------------------------------------------------------- transformer

CFG = QwenConfig(vocab=96, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
                 max_ctx=32)


def _matmuls_with(g: gc.Graph, param: str) -> list[gc.Tensor]:
    return [t for t in g.nodes if t.op == "matmul" and t.inputs[1].name == param]


def test_mtp_prefill_has_no_lm_head() -> None:
    g = build_main(CFG, 12)
    opt, rd = optimize_for_reads(g, {"h_pre_norm": "all"})
    assert _matmuls_with(opt, "lm_head") == []
    assert not any(t.name == "h_post" for t in opt.nodes)
    assert list(opt.outputs) == ["h_pre_norm"] and dict(rd.rows) == {"h_pre_norm": "all"}
    assert len(opt.assigns) == 2 * CFG.n_layers, "KV-cache writes stay"
    assert_same_reads(g, opt, {"h_pre_norm": "all"})
    assert cost(opt).flops < cost(g).flops


def test_sampling_runs_lm_head_on_one_row() -> None:
    g = build_main(CFG, 12)
    opt, _rd = optimize_for_reads(g, {"logits": [-1]})
    (lm,) = _matmuls_with(opt, "lm_head")
    assert lm.shape == (1, CFG.vocab)
    last_attention = [t for t in opt.nodes if t.op == "attention"][-1]
    assert last_attention.shape[0] == 1, "queries of the last layer are pruned"
    assert last_attention.inputs[1].shape[0] == CFG.max_ctx, "keys keep every row"
    assert_same_reads(g, opt, {"logits": [-1]})


def test_prefill_for_mtp_and_sampling_together() -> None:
    g = build_main(CFG, 12)
    reads = {"logits": [-1], "h_pre_norm": "all"}
    opt, _ = optimize_for_reads(g, reads)
    (lm,) = _matmuls_with(opt, "lm_head")
    assert lm.shape == (1, CFG.vocab)
    assert_same_reads(g, opt, reads)


# ----------------------------------------------------------------------------- properties

PASS_FUNCTIONS = {"dce": dce, "cse": cse, "fold": fold}


@pytest.mark.parametrize("name", sorted(PASS_FUNCTIONS))
@given(g=graphs(inplace=True), seed=st.integers(0, 1000))
def test_pass_preserves_values_verifies_and_is_idempotent(name: str, g: gc.Graph,
                                                          seed: int) -> None:
    note(gc.to_text(g))
    fn = PASS_FUNCTIONS[name]
    once = fn(g)
    gc.verify(once)
    assert gc.to_text(fn(once)) == gc.to_text(once)
    assert_same_reads(g, once, None, seed)


def _random_reads(g: gc.Graph, data: st.DataObject) -> dict[str, object]:
    names = data.draw(st.lists(st.sampled_from(sorted(g.outputs)), min_size=1, unique=True))
    reads: dict[str, object] = {}
    for n in names:
        t = g.outputs[n]
        if t.ndim and data.draw(st.booleans()):
            reads[n] = data.draw(st.lists(st.integers(-t.shape[0], t.shape[0] - 1),
                                          min_size=1, max_size=3))
        else:
            reads[n] = "all"
    return reads


@given(g=graphs(), data=st.data())
def test_output_driven_pipeline_preserves_read_values(g: gc.Graph, data: st.DataObject
                                                      ) -> None:
    note(gc.to_text(g))
    reads = _random_reads(g, data)
    note(f"reads = {reads}")
    once, rd = optimize_for_reads(g, reads)
    gc.verify(once)
    assert set(once.outputs) == set(reads)
    assert_same_reads(g, once, reads, data.draw(st.integers(0, 1000)))
    twice, _ = optimize_for_reads(once, dict(rd.rows))
    assert gc.to_text(twice) == gc.to_text(once)
    assert cost(once).flops <= cost(g).flops


@given(g=graphs(), data=st.data())
def test_dead_outputs_and_prune_rows_each_idempotent(g: gc.Graph, data: st.DataObject
                                                     ) -> None:
    note(gc.to_text(g))
    reads = _random_reads(g, data)
    note(f"reads = {reads}")
    d1 = dead_outputs(g, reads)
    assert gc.to_text(dead_outputs(d1, reads)) == gc.to_text(d1)
    p1 = prune_rows(g, reads)
    assert all(p1.output_rows(n) is None for n in p1.outputs), "pruned outputs are read whole"
    assert gc.to_text(prune_rows(p1)) == gc.to_text(p1)
    assert_same_reads(g, p1, reads)


# ----------------------------------------------------------------------------- pass manager

def _toy() -> gc.Graph:
    from tests.test_formats import TOY

    return gc.parse_text(TOY)


def test_pipeline_text_and_objects_agree() -> None:
    text = "dead-outputs{reads=logits[-1]},prune-rows{reads=logits[-1]},cse,dce"
    passes = parse_pipeline(text)
    assert [p.spec() for p in passes] == ["dead-outputs{reads=logits[-1]}",
                                          "prune-rows{reads=logits[-1]}", "cse", "dce"]
    a = PassManager(text).run(_toy())
    b = PassManager(passes).run(_toy())
    assert gc.to_text(a) == gc.to_text(b)
    assert parse_pipeline("dead-outputs{reads=logits[0,3]+h_pre_norm, taps=protect}")[0] \
        .options() == {"reads": "logits[0,3]+h_pre_norm", "taps": "protect"}


@register_pass
class NeedsOption(Pass):
    """A pass with a required option, for the pipeline parser's error."""

    name = "test-needs-option"
    summary = "returns its input"
    level: int

    def run(self, g: gc.Graph) -> gc.Graph:
        return g


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ("frob", "unknown pass 'frob'"),
        ("cse{level=3}", "pass 'cse' has no option 'level'"),
        ("test-needs-option", "needs the option 'level'"),
        ("dce,,cse", "empty pass name"),
        ("dce{", "unclosed brace"),
        ("dce}", "unbalanced '}'"),
        ("prune-rows{reads}", "needs key=value"),
    ],
)
def test_bad_pipelines(pipeline: str, message: str) -> None:
    with pytest.raises(gc.GraphError) as info:
        PassManager(pipeline)
    assert message in str(info.value)
    if "unknown pass" in message:
        assert "cse, dce, dead-outputs, fold, prune-rows" in str(info.value)


def test_print_time_and_stop_after() -> None:
    buf = io.StringIO()
    pm = PassManager("fold,cse,dce", print_ir_after=["cse"], print_ir_before="all",
                     time_passes=True, stop_after="cse", out=buf)
    pm.run(_toy())
    log = buf.getvalue()
    assert log.count("// ----- IR before") == 2 and "IR before dce" not in log
    assert "// ----- IR after cse (2 of 3)" in log
    assert [n for n, _ in pm.timings] == ["fold", "cse"]
    assert "pass timings" in log and "total" in log
    with pytest.raises(gc.GraphError, match="'nope' is not in the pipeline"):
        PassManager("dce", stop_after="nope")


@register_pass
class _Crash(Pass):
    name = "test-crash"
    summary = "raises"

    def run(self, g: gc.Graph) -> gc.Graph:
        raise ZeroDivisionError("boom")


@register_pass
class _Breaker(Pass):
    name = "test-break"
    summary = "returns an invalid graph"

    def run(self, g: gc.Graph) -> gc.Graph:
        from graphc.tensor import Tensor

        x = next(iter(g.inputs.values()))
        g._nodes.append(Tensor(g, "neg", (x,), {}, (1,), "f32"))
        return g


def test_pass_failures_name_the_pass_and_position() -> None:
    with pytest.raises(PassError) as info:
        PassManager("dce,test-crash,cse").run(_toy())
    assert "pass 'test-crash' (2 of 3): ZeroDivisionError: boom" in str(info.value)
    assert info.value.internal and isinstance(info.value.__cause__, ZeroDivisionError)
    with pytest.raises(PassError) as info:
        PassManager("test-break").run(_toy())
    assert "pass 'test-break' (1 of 1): produced an invalid graph" in str(info.value)


# ----------------------------------------------------------------------------- graphc opt

@pytest.fixture
def toy_file(tmp_path: Path) -> Path:
    from tests.test_formats import TOY

    p = tmp_path / "toy.gc"
    p.write_text(TOY)
    return p


def test_opt_cli(toy_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pipe = "dead-outputs{reads=logits[-1]},prune-rows{reads=logits[-1]},dce"
    assert main(["opt", str(toy_file), "-p", pipe, "--stats", "--time-passes",
                 "--print-ir-after", "dce"]) == 0
    out, err = capsys.readouterr()
    assert "matmul(%4, %w) : f32[1, 64]" in out
    assert "FLOPs" in err and "0.1250" in err and "pass timings" in err
    assert "IR after dce" in err


def test_opt_cli_exit_codes_and_atomic_output(toy_file: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.gc"
    out.write_text("precious\n")
    assert main(["opt", str(toy_file), "-p", "dead-outputs{reads=nope}", "-o", str(out)]) == 2
    assert main(["opt", str(toy_file), "-p", "frob", "-o", str(out)]) == 2
    assert main(["opt", str(toy_file), "-p", "test-crash", "-o", str(out)]) == 1
    assert out.read_text() == "precious\n"
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unknown pass 'frob'" in err
    assert main(["opt", str(toy_file), "-p", "dce", "--json", "-o", str(out)]) == 0
    assert gc.to_text(gc.from_json(out.read_text())) == toy_file.read_text()
