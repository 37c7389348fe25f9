"""What the host reads after a ggml graph is observed, never listed by name.

The oracle is ggml's real memory: graphs built with ggml's API, allocated by ``ggml_gallocr``
(or llama.cpp's scheduler), computed by ggml's CPU backend, read back with
``ggml_backend_tensor_get`` as a host does, and compared with NumPy. graphc learns what was
read only by watching those copies (``watch_cgraph``, ``Recorder``).
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp")

from graphc.cli import main
from graphc.interop.capture import Capture, Recorder, capture_cgraph, watch_cgraph
from graphc.interop.ggml_abi import TYPE_F32, InitParams, lib, library_paths, mapped_library
from graphc.interop.ggml_import import check_import, import_capture
from graphc.interop.llama_check import judge
from graphc.interop.llama_run import Mode, capture_llama
from graphc.interop.seed import seed_graph
from graphc.interop.tiny_models import TINY, write_llama, write_qwen3

PROMPT = list(b"graphc!!")
P = ctypes.c_void_p


# ---------------------------------------------------------------- ggml's own allocator
@pytest.mark.parametrize("name", ["h_pre_norm", "h_nextn", "zq_hidden_7", ""])
def test_the_seed_bug_is_caught_under_any_name(name: str) -> None:
    run = seed_graph(mark_tap=False, tap_name=name)
    # judged without graphc: the host really got the post-norm values
    assert np.allclose(run.tap_after_run, run.post_norm, atol=1e-5)
    assert not np.allclose(run.tap_after_run, run.pre_norm, atol=1e-3)
    imp = import_capture(run.capture)
    found = check_import(imp)
    assert [v.kind for v in found] == ["unmarked-tap"]
    line = imp.explain(found[0])
    assert (name or "node_0") in line and "h_post_norm (RMS_NORM" in line
    assert "ggml_set_output" in line
    fixed = seed_graph(mark_tap=True, tap_name=name)
    assert np.allclose(fixed.tap_after_run, fixed.pre_norm, atol=1e-6)
    assert check_import(import_capture(fixed.capture)) == []


class _Ggml:
    """A ggml context, the CPU backend and a gallocr, freed by :meth:`free`."""

    def __init__(self) -> None:
        self.b = lib().base
        self.ctx = int(self.b.ggml_init(InitParams(64 * int(self.b.ggml_tensor_overhead())
                                                   + (1 << 20), None, True)))
        self.backend = int(lib().cpu.ggml_backend_cpu_init())
        lib().cpu.ggml_backend_cpu_set_n_threads(self.backend, 1)
        self.gallocr = int(self.b.ggml_gallocr_new(
            self.b.ggml_backend_get_default_buffer_type(self.backend)))
        self.rng = np.random.default_rng(0)
        self.values: dict[int, np.ndarray] = {}

    def leaf(self, name: str, cols: int, rows: int) -> int:
        t = int(self.b.ggml_new_tensor_2d(self.ctx, TYPE_F32, cols, rows))
        self.b.ggml_set_name(t, name.encode())
        self.b.ggml_set_input(t)
        self.values[t] = self.rng.standard_normal((rows, cols)).astype(np.float32)
        return t

    def graph(self, *outs: int) -> int:
        g = int(self.b.ggml_new_graph(self.ctx))
        for o in outs:
            self.b.ggml_build_forward_expand(g, o)
        assert self.b.ggml_gallocr_alloc_graph(self.gallocr, g)
        for t, a in self.values.items():
            self.b.ggml_backend_tensor_set(t, a.ctypes.data, 0, a.nbytes)
        return g

    def get(self, t: int, shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty(shape, np.float32)
        self.b.ggml_backend_tensor_get(t, out.ctypes.data, 0, out.nbytes)
        return out

    def run_recorded(self, rec: Recorder, sched: int, g: int, out: int,
                     shape: tuple[int, ...]) -> tuple[np.ndarray, Capture]:
        """Set the inputs, compute ``g`` through ``sched`` with ``rec`` watching, read
        ``out`` back as the host does; what was read and the one capture."""
        for t, a in self.values.items():
            self.b.ggml_backend_tensor_set(t, a.ctypes.data, 0, a.nbytes)
        with rec:
            rec.reset()
            assert self.b.ggml_backend_sched_graph_compute(sched, g) == 0
            got = self.get(out, shape)
            (cap,) = rec.finish("run")
        return got, cap

    def free(self) -> None:
        self.b.ggml_gallocr_free(self.gallocr)
        self.b.ggml_backend_free(self.backend)
        self.b.ggml_free(self.ctx)


@pytest.fixture
def gg() -> Iterator[_Ggml]:
    g = _Ggml()
    try:
        yield g
    finally:
        g.free()


def test_a_read_the_placement_spared_is_still_a_violation(gg: _Ggml) -> None:
    """The contract rule: the host reads ``tap`` without the flag, and only a matmul of
    another shape follows, so ggml happened to leave its bytes alone -- the values are
    right (checked against NumPy), and graphc still refuses it, naming the flag to set."""
    b = gg.b
    x, y, w = gg.leaf("x", 8, 4), gg.leaf("y", 8, 4), gg.leaf("w", 8, 3)
    tap = int(b.ggml_add(gg.ctx, x, y))
    b.ggml_set_name(tap, b"mystery_state")
    out = int(b.ggml_mul_mat(gg.ctx, w, tap))
    b.ggml_set_name(out, b"out")
    b.ggml_set_output(out)
    g = gg.graph(out)
    with watch_cgraph(g) as watch:
        assert b.ggml_backend_graph_compute(gg.backend, g) == 0
        got = gg.get(tap, (4, 8))
        gg.get(out, (4, 3))
    assert np.allclose(got, gg.values[x] + gg.values[y])  # right, by accident
    cap = capture_cgraph(g, "spared", watch=watch)
    assert [cap.tensors[h.tensor].name for h in cap.host_reads] == ["mystery_state", "out"]
    imp = import_capture(cap)
    found = check_import(imp)
    assert [(v.kind, v.clobbered_by) for v in found] == [("unmarked-tap", None)]
    line = imp.explain(found[0])
    assert "mystery_state" in line and "no OUTPUT flag" in line and "by accident" in line
    assert "last reader inside the graph is node 1, out (MUL_MAT" in line


def test_a_partial_copy_is_a_read_of_those_bytes(gg: _Ggml) -> None:
    """A host copy of one row of a flagged output is a window of its bytes; a copy of one
    row of an unflagged tensor is the contract violation, whatever the row."""
    b = gg.b
    x, y = gg.leaf("x", 8, 4), gg.leaf("y", 8, 4)
    s = int(b.ggml_add(gg.ctx, x, y))
    b.ggml_set_name(s, b"s")
    b.ggml_set_output(s)
    g = gg.graph(s)
    with watch_cgraph(g) as watch:
        assert b.ggml_backend_graph_compute(gg.backend, g) == 0
        row = np.empty(8, np.float32)
        b.ggml_backend_tensor_get(s, row.ctypes.data, 32, 32)
    assert np.allclose(row, (gg.values[x] + gg.values[y])[1])
    cap = capture_cgraph(g, "row", watch=watch)
    assert [(h.offset, h.size) for h in cap.host_reads] == [(32, 32)]
    imp = import_capture(cap)
    assert check_import(imp) == []
    (_, window), = imp.host
    assert window.op == "as_strided" and window.shape == (8,)


def _sched(gg: _Ggml, rec: Recorder) -> int:
    b = gg.b
    backends = (P * 1)(gg.backend)
    sched = int(b.ggml_backend_sched_new(backends, None, 1, 256, False, False))
    b.ggml_backend_sched_set_eval_callback(sched, ctypes.cast(rec.callback, P), None)
    return sched


@pytest.mark.parametrize("flag", [False, True])
def test_the_recorder_sees_the_host_get_bytes_the_graph_did_not_leave(
        gg: _Ggml, flag: bool) -> None:
    """Through ggml's scheduler with the Recorder as eval callback: the host's copy of an
    unflagged tap is compared with what the tap's node wrote, at the moment of the copy."""
    b = gg.b
    x, y = gg.leaf("x", 16, 4), gg.leaf("y", 16, 4)
    tap = int(b.ggml_add(gg.ctx, x, y))
    b.ggml_set_name(tap, b"t")
    if flag:
        b.ggml_set_output(tap)
    norm = int(b.ggml_rms_norm(gg.ctx, tap, ctypes.c_float(1e-6)))
    b.ggml_set_output(norm)
    rec = Recorder()
    sched = _sched(gg, rec)
    try:
        g = int(b.ggml_new_graph(gg.ctx))
        b.ggml_build_forward_expand(g, norm)
        assert b.ggml_backend_sched_alloc_graph(sched, g)
        got, cap = gg.run_recorded(rec, sched, g, tap, (4, 16))
    finally:
        b.ggml_backend_sched_free(sched)
    right = np.allclose(got, gg.values[x] + gg.values[y])
    assert right == flag  # judged without graphc
    assert [cap.tensors[h.tensor].name for h in cap.host_reads] == ["t"]
    assert bool(cap.findings) == (not flag)
    if not flag:
        assert "the host copied bytes 0..256 of t (ADD" in cap.findings[0].detail
    assert judge(cap).safe == flag


# ---------------------------------------------------------------- llama.cpp's modes
@pytest.fixture(scope="module")
def llama_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llama(tmp_path_factory.mktemp("m") / "tiny-llama.gguf")


def _names(cap: object) -> list[str]:
    c = cap  # a Capture
    return [c.tensors[h.tensor].name for h in c.host_reads]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("mode", "step", "reads"), [
    (Mode(), "prompt", ["result_output"]),
    (Mode(layer_inputs=True), "prompt", ["result_output", "embd", "l_out-0"]),
    (Mode(embeddings="mean"), "decode", ["result_output", "result_embd_pooled"]),
    (Mode(backend_sampling=True), "prompt",
     ["dist_sampled_token", "top_k_rows", "dist_probs", "top_k"]),
])
def test_what_llama_cpp_copies_out_is_observed_in_every_mode(
        llama_path: Path, mode: Mode, step: str, reads: list[str]) -> None:
    run = capture_llama(llama_path, PROMPT, mode)
    cap = run.captures[step]
    assert _names(cap) == reads
    for h in cap.host_reads:  # every tensor llama.cpp copies out carries the flag
        assert "OUTPUT" in cap.tensors[h.tensor].flag_names
    for label, c in run.captures.items():
        v = judge(c, label)
        assert v.safe and c.findings == [], (label, v.violations)


def test_layer_inputs_are_the_values_the_api_returns(llama_path: Path) -> None:
    """The bytes the Recorder saw copied out are what ``llama_get_embeddings_layer_inp``
    hands back (the last token's row of each layer's input)."""
    run = capture_llama(llama_path, PROMPT, Mode(layer_inputs=True))
    got = run.results["prompt"]["layer_inputs"]
    assert got.shape == (TINY.n_layers, TINY.d_model) and np.isfinite(got).all()
    assert not np.allclose(got[0], got[1])


def test_a_batch_split_into_ubatches_is_one_capture_per_graph(llama_path: Path) -> None:
    run = capture_llama(llama_path, PROMPT, Mode(logits="all", n_ubatch=4))
    assert [k for k in run.captures if k.startswith("prompt")] == ["prompt.1", "prompt.2"]
    for k in ("prompt.1", "prompt.2"):
        (h,) = run.captures[k].host_reads  # each ubatch's 4 logits rows, copied after it
        assert h.size == 4 * 256 * 4
        assert judge(run.captures[k], k).safe


def test_a_quantized_kv_cache_is_imported_at_byte_granularity(tmp_path: Path) -> None:
    """q8_0 / q4_0 rows are 34 / 18 bytes: views start inside 4-byte words."""
    from graphc.models.qwen import QwenConfig

    path = write_qwen3(tmp_path / "h32.gguf", QwenConfig(vocab=256, max_ctx=256, n_heads=2,
                                                         n_kv_heads=1))
    for kv in ("q8_0", "q4_0"):
        run = capture_llama(path, PROMPT, Mode(kv_type=kv, flash_attn=True))
        for label, cap in run.captures.items():
            assert any(t.type == kv for t in cap.tensors)
            v = judge(cap, label)
            assert v.safe, (kv, label, v.violations)
            g = v.imported.graph
            # the cache is raw bytes, written in place by SET_ROWS through views
            assert {t.op for t in g.nodes if t.dtype == "u8"} == {"state", "opaque_inplace"}


# ---------------------------------------------------------------- one ggml
def test_the_ggml_read_is_the_copy_llama_cpp_loaded(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /a/lib/libggml-base.so\n"
                    "7f02-7f03 r-xp 00000000 08:01 2 /b/build/bin/libggml-base.so.0.9\n"
                    "7f04-7f05 r-xp 00000000 08:01 3 /b/build/bin/libggml-cpu.so\n")
    assert mapped_library("libggml-base", str(maps)) == Path("/b/build/bin/libggml-base.so.0.9")
    assert mapped_library("libggml-cpu", str(maps)) == Path("/b/build/bin/libggml-cpu.so")
    assert mapped_library("libllama", str(maps)) is None
    mapped = mapped_library("libggml-base")
    assert mapped is not None and library_paths()["libggml-base"] == mapped


# ---------------------------------------------------------------- the command
def test_llama_check_modes_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llama-check", "--tiny", "llama", "--layer-inputs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["graph"] for r in rows] == ["prompt", "decode"]
    assert [h["tensor"] for h in rows[0]["host_reads"]] == ["result_output", "embd",
                                                             "l_out-0"]
    # a mode the model lacks: llama.cpp aborts the child process, one clear line here
    assert main(["llama-check", "--tiny", "gemma3", "--layer-inputs"]) == 2
    err = capsys.readouterr().err
    assert "aborted" in err and "t_layer_inp" in err and "Traceback" not in err
    assert main(["llama-check", "--tiny", "qwen3", "--mtp"]) == 2
    assert "no MTP (nextn) block" in capsys.readouterr().err
    assert main(["llama-check", "--tiny", "qwen3", "--kv-type", "q8_0", "--flash-attn"]) == 2
    assert "does not divide" in capsys.readouterr().err
    assert main(["llama-check", "--tiny", "qwen3", "--logits", "x"]) == 2
    assert "not last, all, none or row numbers" in capsys.readouterr().err


def test_no_false_alarm_when_the_next_ubatchs_inputs_lie_over_an_unread_output(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Found by review: the MTP context split into ubatches puts ``h_nextn`` (OUTPUT, not
    read between ubatches) under the next ubatch's inputs; the host writing them is not a
    stale read. Only the host's own copies are judged between graphs."""
    assert main(["llama-check", "--tiny", "qwen35", "--mtp", "--n-ubatch", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["graph"] for r in rows][-3:] == ["mtp.1", "mtp.2", "mtp.3"]
    assert all(r["verdict"] == "proven safe" for r in rows)
    assert main(["llama-check", "--tiny", "qwen3", "--tokens", "a,b"]) == 2
    assert "not a list of token ids" in capsys.readouterr().err


# ---------------------------------------------------------------- inside a node
@pytest.mark.parametrize(("second", "shift", "legal"), [
    ("mul_mat", 0, False),  # #28448: a matmul over its own operand
    ("add", 32, False),  # an add written over its operand from 32 bytes in
    ("add", 0, True),  # an exact in-place add: ggml's own in-place reuse, legal
])
def test_the_recorder_sees_a_node_written_over_an_operand_it_reads(
        gg: _Ggml, second: str, shift: int, legal: bool) -> None:
    """The damage happens inside the node and no later read sees it. The Recorder
    reports the placement when the node is asked for (both names, ggml node indices) and,
    where the values really changed, the recomputation from the operands' bytes as they
    were before the node ran. Judged without graphc: NumPy."""
    from graphc.interop.ggml_abi import tensor_at

    b = gg.b
    x, w = gg.leaf("x", 64, 4), gg.leaf("w", 64, 64)
    p1 = int(b.ggml_mul_mat(gg.ctx, w, x))
    b.ggml_set_name(p1, b"p1")
    X, W = gg.values[x], gg.values[w]
    if second == "add":
        y = gg.leaf("y", 64, 4)
        p2 = int(b.ggml_add(gg.ctx, y, p1))  # reads p1 (operand 1) element by element
        want = gg.values[y] + X @ W.T
    else:
        p2 = int(b.ggml_mul_mat(gg.ctx, w, p1))
        want = (X @ W.T) @ W.T
    b.ggml_set_name(p2, b"p2")
    b.ggml_set_output(p2)
    rec = Recorder()
    sched = _sched(gg, rec)
    runs = []
    try:
        g = int(b.ggml_new_graph(gg.ctx))
        b.ggml_build_forward_expand(g, p2)
        assert b.ggml_backend_sched_alloc_graph(sched, g)
        for tamper in (False, True):
            if tamper:  # p2 written over p1, `shift` bytes apart, inside the buffer
                t1 = tensor_at(p1)
                base = int(b.ggml_backend_buffer_get_base(t1.buffer))
                size = int(b.ggml_backend_buffer_get_size(t1.buffer))
                room = base + size - (t1.data + shift + int(b.ggml_nbytes(p2)))
                tensor_at(p2).data = t1.data + (shift if room >= 0 else -shift)
            got, cap = gg.run_recorded(rec, sched, g, p2, (4, 64))
            runs.append((float(np.abs(got - want).max()), cap))
    finally:
        b.ggml_backend_sched_free(sched)
    (clean_err, clean), (err, cap) = runs
    assert clean_err < 1e-3 and clean.findings == [] and clean.recomputed == 2
    details = [f.detail for f in cap.findings]
    placed = [d for d in details if f"node 1, p2 ({second.upper()}" in d
              and "over its operand node 0, p1 (MUL_MAT" in d]
    assert bool(placed) == (not legal), details
    wrong = err > 1e-2 * (1 + np.abs(want).max())  # judged without graphc
    if second == "mul_mat":
        assert wrong  # ggml's kernel really read bytes it had already written
    assert any("holds other values than its operands give" in d for d in details) == wrong
    if legal:
        assert not wrong and details == []


# ---------------------------------------------------------------- one numbering, one cause
def test_a_stale_plan_report_uses_ggml_node_indices_and_puts_the_cause_first(
        gg: _Ggml) -> None:
    """A on a gallocr, then B of other dependencies on the same gallocr (#28448): every
    message names ggml node indices (never graphc's steps, which count leaves), the
    clobbered reads come first with the bad-inplace that follows from them under one, and
    the stale plan -- read from the allocator's own record, found without being named --
    last, with its fix."""
    b = gg.b
    x, y, z = gg.leaf("x", 8, 4), gg.leaf("y", 8, 4), gg.leaf("z", 8, 4)
    X, Y, Z = gg.values[x], gg.values[y], gg.values[z]

    def build(fan: bool) -> tuple[int, int]:
        t1 = int(b.ggml_add(gg.ctx, x, y))
        t2 = int(b.ggml_mul(gg.ctx, x, z) if fan else b.ggml_mul(gg.ctx, t1, z))
        out = int(b.ggml_add(gg.ctx, t2, t1) if fan else b.ggml_add(gg.ctx, t2, x))
        for t, n in ((t1, b"t1"), (t2, b"t2"), (out, b"out")):
            b.ggml_set_name(t, n)
        b.ggml_set_output(out)
        g = int(b.ggml_new_graph(gg.ctx))
        b.ggml_build_forward_expand(g, out)
        return g, out

    reports = []
    for fan in (False, True):
        g, out = build(fan)
        assert b.ggml_gallocr_alloc_graph(gg.gallocr, g)
        for t, a in gg.values.items():
            b.ggml_backend_tensor_set(t, a.ctypes.data, 0, a.nbytes)
        with watch_cgraph(g) as w:
            assert b.ggml_backend_graph_compute(gg.backend, g) == 0
            got = gg.get(out, (4, 8))
        want = X * Z + (X + Y) if fan else (X + Y) * Z + X
        # no allocator named: graphc saw which gallocr placed the graph (its ggml handle)
        reports.append((float(np.abs(got - want).max()), judge(capture_cgraph(
            g, "B" if fan else "A", watch=w))))
    (err_a, a), (err_b, v) = reports
    assert err_a < 1e-5 and a.safe
    assert err_b > 0.1  # the stale plan really corrupted B
    kinds = [line.split(":")[0].strip() for line in v.violations]
    assert kinds == ["clobbered-read", "clobbered-read", "also", "stale-plan"], v.violations
    assert all("step" not in line for line in v.violations)
    assert "at node 0 of ggml's graph" in v.violations[0] and "read at node 1" in v.violations[0]
    assert "ggml_gallocr_reserve" in v.violations[-1]


def test_a_wrong_allocator_is_refused_not_believed(gg: _Ggml) -> None:
    """Found by review: a pointer that is not the allocator that placed the graph is a
    GraphError (unreadable memory, another node count, a record that places the graph's
    results elsewhere), never an empty record that silently turns the stale check off."""
    import graphc as gc

    b = gg.b
    x, y = gg.leaf("x", 8, 4), gg.leaf("y", 8, 4)
    out = int(b.ggml_add(gg.ctx, b.ggml_mul(gg.ctx, x, y), x))
    b.ggml_set_output(out)
    g = gg.graph(out)
    assert capture_cgraph(g, gallocr=gg.gallocr).planned is not None
    fresh = int(b.ggml_gallocr_new(b.ggml_backend_get_default_buffer_type(gg.backend)))
    try:
        for wrong, why in ((0x10, "not readable memory"), (fresh, "last planned 0 nodes"),
                           (x, "did not place this graph")):
            with pytest.raises(gc.GraphError, match=why):
                capture_cgraph(g, gallocr=wrong)
    finally:
        b.ggml_gallocr_free(fresh)
