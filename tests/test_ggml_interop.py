"""ggml and llama.cpp interoperation: capture, import, and graphc's checker judged against
ggml's real memory (the seed bug on ggml's own allocator; every node of a real ggml graph
moved onto every other tensor's bytes, computed by ggml, compared with a clean run;
llama.cpp's own decode graphs watched read by read)."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

import graphc as gc
from graphc.cli import main
from graphc.interop import ggml_abi
from graphc.interop.capture import Capture, capture_cgraph
from graphc.interop.ggml_abi import TYPE_F32, InitParams, lib
from graphc.interop.ggml_import import check_import, import_capture
from graphc.interop.ggml_oracle import move_every_node
from graphc.interop.llama_check import judge
from graphc.interop.llama_run import Mode, capture_llama
from graphc.interop.seed import TAP, seed_graph
from graphc.interop.tiny_models import write_qwen3, write_qwen35_mtp

PROMPT = list(b"graphc!!")


# ---------------------------------------------------------------- the seed bug
def test_seed_bug_on_ggmls_allocator_is_reported_by_its_ggml_name() -> None:
    run = seed_graph(mark_tap=False)
    # ggml's allocator put rms_norm over the tap: the caller reads post-norm values
    assert np.allclose(run.tap_after_run, run.post_norm, atol=1e-5)
    assert not np.allclose(run.tap_after_run, run.pre_norm, atol=1e-3)
    imp = import_capture(run.capture)
    found = check_import(imp)
    assert [v.kind for v in found] == ["unmarked-tap"]
    line = imp.explain(found[0])
    assert line.startswith(f"unmarked-tap: {TAP} (ADD") and "h_post_norm (RMS_NORM" in line


def test_seed_graph_with_the_output_flag_is_proven_safe() -> None:
    run = seed_graph(mark_tap=True)
    assert np.allclose(run.tap_after_run, run.pre_norm, atol=1e-6)
    imp = import_capture(run.capture)
    assert check_import(imp) == []
    # ggml ops with a graphc meaning are imported as graphc ops, the rest stay opaque
    g = imp.graph
    assert [t.op for t in g.nodes if not t.is_leaf] == ["add", "rms_norm", "opaque"]


# ---------------------------------------------------------------- real memory as the oracle
def test_checker_never_misses_a_clobber_ggml_really_computes() -> None:
    """Every node moved onto every aligned start of ggml's real compute buffer, computed
    by ggml: whenever what the caller reads really changed, the checker said so."""
    counts = move_every_node()
    assert counts.tap_reported  # the unmarked tap is reported in the plan as ggml made it
    assert counts.missed == 0
    assert counts.broke >= 100  # the oracle really saw clobbers
    assert counts.flagged_harmless <= counts.broke // 10  # few flags where bytes coincided


# ---------------------------------------------------------------- llama.cpp
@pytest.fixture(scope="module")
def qwen3_run(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = write_qwen3(tmp_path_factory.mktemp("m") / "tiny-qwen3.gguf")
    return capture_llama(path, PROMPT)


@pytest.fixture(scope="module")
def qwen35_run(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = write_qwen35_mtp(tmp_path_factory.mktemp("m") / "tiny-qwen35.gguf")
    return capture_llama(path, PROMPT, Mode(mtp=True))


@pytest.mark.parametrize(("which", "label", "nodes"), [
    ("qwen3_run", "prompt", 86), ("qwen3_run", "decode", 86),
    ("qwen35_run", "prompt", 116), ("qwen35_run", "decode", 116), ("qwen35_run", "mtp", 55)])
def test_llama_cpp_plans_are_proven_safe_and_ran_clean(
        which: str, label: str, nodes: int, request: pytest.FixtureRequest) -> None:
    run = request.getfixturevalue(which)
    cap = run.captures[label]
    assert len(cap.order) == nodes  # the node counts ../shared/notes/llama-cpp.md saw
    assert cap.checked and cap.findings == []  # every read saw its writer's bytes
    v = judge(cap, label)
    assert v.violations == [] and v.safe and v.graphc_violations == 0
    assert v.best.lower_bound_bytes <= v.best.arena_bytes <= v.greedy.arena_bytes
    assert v.best.arena_bytes <= v.ggml_span <= cap.compute_bytes()
    # the KV cache (and the recurrent state) written in place is read by the next run
    g = v.imported.graph
    assert g.assigns and all(s.op == "state" for s in g.assigns)


def test_llama_cpp_defaults_f16_cache_and_flash_attention_are_proven_safe(
        tmp_path: Path) -> None:
    """The graphs llama.cpp's own default context runs (F16 KV cache written by SET_ROWS
    from F32, flash attention) import and are proven safe too."""
    path = write_qwen35_mtp(tmp_path / "tiny-qwen35.gguf")
    run = capture_llama(path, PROMPT, Mode(mtp=True, kv_type="f16", flash_attn=True))
    for label, cap in run.captures.items():
        assert any(t.op == "FLASH_ATTN_EXT" for t in cap.tensors), label
        assert any(t.type == "f16" and t.op == "NONE" for t in cap.tensors), label
        v = judge(cap, label)
        assert v.safe and v.violations == [] and cap.findings == [], label


def test_mtp_hidden_state_is_read_after_the_run(qwen35_run: object) -> None:
    cap = qwen35_run.captures["prompt"]  # type: ignore[attr-defined]
    # observed: llama.cpp copied the logits and the hidden rows out of the compute buffer
    assert [cap.tensors[h.tensor].name for h in cap.host_reads] == ["result_output", "h_nextn"]
    rec = cap.by_name("h_nextn")
    assert "OUTPUT" in rec.flag_names and rec.op == "MUL"


def test_a_moved_node_in_a_saved_capture_is_refused_with_ggml_names(
        qwen3_run: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap: Capture = qwen3_run.captures["prompt"]  # type: ignore[attr-defined]
    path = tmp_path / "prompt.json"
    cap.save(path)
    assert Capture.load(path) == cap
    assert main(["check", str(path)]) == 0
    assert "verdict: proven safe" in capsys.readouterr().out
    # put ffn_inp-0 over the bytes of the embeddings, which the layer's residual still reads
    data = json.loads(path.read_text())
    by_name = {t["name"]: t for t in data["tensors"]}
    by_name["attn_norm-0"]["offset"] = by_name["embd"]["offset"]
    path.write_text(json.dumps(data))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "verdict: UNSAFE" in out and "embd (GET_ROWS" in out and "attn_norm-0 (MUL" in out


def test_llama_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llama-check", "--tiny", "qwen3", "--json", "--save", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["graph"] for r in rows] == ["prompt", "decode"]
    assert all(r["verdict"] == "proven safe" and r["violations"] == [] for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["decode.json", "prompt.json"]
    assert main(["llama-check"]) == 2
    assert "not both or neither" in capsys.readouterr().err
    assert main(["llama-check", str(tmp_path / "missing.gguf")]) == 2
    assert "no such model file" in capsys.readouterr().err


def test_without_the_extra_the_commands_say_how_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(ggml_abi, "available", lambda: False)
    assert main(["llama-check", "--tiny", "qwen3"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "graphc[llama]"' in err and "Traceback" not in err


def test_bad_capture_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text('{"source": "x", "tensors": [{"id": 0}], "order": [], "buffers": []}')
    with pytest.raises(gc.GraphError, match=r"c\.json: not a ggml capture: tensors\.0\.name"):
        Capture.load(bad)
    bad.write_text("{")
    with pytest.raises(gc.GraphError, match=r"c\.json:1:2: not JSON"):
        Capture.load(bad)


def test_an_unallocated_graph_is_refused() -> None:
    b = lib().base
    ctx = b.ggml_init(InitParams(1 << 20, None, True))
    try:
        x = b.ggml_new_tensor_2d(ctx, TYPE_F32, 4, 2)
        b.ggml_set_name(x, b"x")
        graph = b.ggml_new_graph(ctx)
        b.ggml_build_forward_expand(graph, b.ggml_scale(ctx, x, ctypes.c_float(2.0)))
        cap = capture_cgraph(graph)
    finally:
        b.ggml_free(ctx)
    with pytest.raises(gc.GraphError, match="has no buffer: the graph was not allocated"):
        import_capture(cap)


def test_capture_needs_nothing_but_graphc() -> None:
    """A saved capture is checked without llama.cpp: the import touches no C library."""
    code = ("import sys; sys.modules['llama_cpp'] = None\n"
            "from graphc.interop.ggml_import import import_capture\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "ok"
