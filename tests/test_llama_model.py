"""graphc's Qwen example exported to GGUF computes what llama.cpp computes.

On random weights (several shapes) and on the trained checkpoint, llama.cpp's logits
(F32 weights and KV cache, no flash attention) equal graphc's reference backend to 1e-4
over every prompt position and decode step, and greedy generations are identical. Export
errors name the weight and the fix, and a failed export leaves an earlier file intact.
Skipped when the ``graphc[llama]`` extra is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

llama_cpp = pytest.importorskip("llama_cpp")
gguf = pytest.importorskip("gguf")

import graphc as gc  # noqa: E402
from graphc.interop.gguf_export import export_gguf, gguf_tensors  # noqa: E402
from graphc.interop.llama_compare import compare_with_llama  # noqa: E402
from graphc.models.qwen import QwenConfig, init_params, load_weights  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = ROOT / "graphc" / "models" / "tiny_mtp.npz"
TOL = 1e-4


def _random_norms(params: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """``params`` with every norm weight random (init_params makes them 1, which would
    hide a norm weight written to the wrong place)."""
    rng = np.random.default_rng(seed)
    return {k: (1 + 0.5 * rng.standard_normal(v.shape)).astype(np.float32) if v.ndim == 1
            else v for k, v in params.items()}


def _check(params: dict[str, np.ndarray], cfg: QwenConfig, prompt: list[int],
           n_generate: int = 8) -> None:
    r = compare_with_llama(params, cfg, prompt, n_generate)
    assert r.prompt_len == len(prompt)
    assert r.max_logit_diff < TOL, r
    assert r.tokens_match, r
    assert r.n_compared == n_generate and r.n_matching == n_generate
    assert r.max_decode_diff < TOL, r  # decode steps through both KV caches
    assert r.prompt_argmax_match
    assert r.max_abs_logit > 100 * TOL  # the logits are not all ~0


def test_random_weights_default_config() -> None:
    cfg = QwenConfig()
    prompt = [int(t) for t in np.random.default_rng(0).integers(0, cfg.vocab, 12)]
    _check(init_params(cfg, seed=0), cfg, prompt)


@pytest.mark.parametrize("cfg", [
    # multi-head (no grouping), eps and RoPE base other than the defaults, random norms
    QwenConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, d_ffn=48, eps=1e-5,
               rope_theta=500000.0, max_ctx=32),
    # multi-query (one KV head for 8 query heads), 3 layers
    QwenConfig(d_model=64, n_layers=3, n_heads=8, n_kv_heads=1, d_ffn=80, max_ctx=32),
    # a vocabulary that is not 256 bytes (written with tokenizer model "none")
    QwenConfig(vocab=1000, d_model=48, n_layers=2, n_heads=6, n_kv_heads=3, d_ffn=64,
               max_ctx=32),
    QwenConfig(vocab=100, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ffn=64,
               max_ctx=32),
], ids=["mha-eps-theta", "mqa-3-layers", "vocab-1000", "vocab-100"])
def test_random_weights_other_shapes(cfg: QwenConfig) -> None:
    prompt = [int(t) for t in np.random.default_rng(1).integers(0, cfg.vocab, 16)]
    _check(_random_norms(init_params(cfg, seed=3), seed=4), cfg, prompt)


def test_trained_checkpoint() -> None:
    params, cfg = load_weights(str(CHECKPOINT))
    assert cfg is not None
    _check(params, cfg, list(b"def __init__(sel"))  # 16 byte tokens


# ------------------------------------------------------------------------------ the file


def test_file_layout(tmp_path: Path) -> None:
    """ggml ne = [d_in, d_out] for every matrix (graphc's W is (d_in, d_out)), all F32,
    zero q/k/v biases, and the hyperparameters qwen2 reads."""
    cfg = QwenConfig(vocab=256, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ffn=48,
                     eps=1e-5, rope_theta=1e6, max_ctx=64)
    params = init_params(cfg, seed=0)
    path = export_gguf(params, cfg, tmp_path / "m.gguf")
    assert path == tmp_path / "m.gguf"
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    ne = {name: [int(x) for x in t.shape] for name, t in tensors.items()}
    assert ne["token_embd.weight"] == [32, 256]
    assert ne["output.weight"] == [32, 256]
    assert ne["blk.0.attn_q.weight"] == [32, 32]
    assert ne["blk.0.attn_k.weight"] == [32, 16]
    assert ne["blk.0.attn_output.weight"] == [32, 32]
    assert ne["blk.0.ffn_gate.weight"] == [32, 48]
    assert ne["blk.0.ffn_down.weight"] == [48, 32]
    assert ne["blk.0.attn_v.bias"] == [16]
    assert all(t.tensor_type == gguf.GGMLQuantizationType.F32 for t in tensors.values())
    k = np.asarray(tensors["blk.0.attn_k.weight"].data).reshape(16, 32)
    np.testing.assert_array_equal(k, params["l0.wk"].T)
    assert not np.asarray(tensors["blk.0.attn_q.bias"].data).any()

    def field(key: str) -> object:
        f = reader.fields[key]
        return f.contents()

    assert field("general.architecture") == "qwen2"
    assert field("qwen2.attention.head_count_kv") == 2
    assert field("qwen2.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert field("qwen2.rope.freq_base") == pytest.approx(1e6)
    assert field("qwen2.context_length") == 64
    assert field("tokenizer.ggml.model") == "llama"


def test_byte_vocabulary_detokenizes(tmp_path: Path) -> None:
    params, cfg = load_weights(str(CHECKPOINT))
    assert cfg is not None
    path = export_gguf(params, cfg, tmp_path / "tiny.gguf")
    model = llama_cpp.Llama(str(path), n_ctx=64, n_threads=1, n_threads_batch=1,
                            verbose=False)
    try:
        assert model.n_vocab() == 256
        assert model.detokenize(list(b"self.x\n")) == b"self.x\n"
    finally:
        model.close()


def test_compare_keeps_llama_log_quiet(capfd: pytest.CaptureFixture[str]) -> None:
    cfg = QwenConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ffn=32, max_ctx=16)
    compare_with_llama(init_params(cfg), cfg, [1, 2, 3], 2)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ----------------------------------------------------------------------------- errors

SMALL = QwenConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ffn=32, max_ctx=16)


def test_missing_weight_is_named(tmp_path: Path) -> None:
    params = init_params(SMALL)
    del params["l0.w_up"]
    with pytest.raises(gc.GraphError, match=r"'l0\.w_up'.*missing") as e:
        export_gguf(params, SMALL, tmp_path / "m.gguf")
    assert e.value.fix and "param_shapes" in e.value.fix
    assert not (tmp_path / "m.gguf").exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_shape_is_named() -> None:
    params = init_params(SMALL)
    params["l0.wk"] = np.ascontiguousarray(params["l0.wk"].T)
    with pytest.raises(gc.GraphError, match=r"'l0\.wk' has shape \[16, 32\].*\[32, 16\]"
                       r".*transposed") as e:
        gguf_tensors(params, SMALL)
    assert e.value.fix and "'l0.wk'" in e.value.fix
    params = init_params(SMALL)
    params["final_norm"] = np.ones(31, np.float32)
    with pytest.raises(gc.GraphError, match=r"'final_norm' has shape \[31\]"):
        gguf_tensors(params, SMALL)
    params = init_params(SMALL)
    params["embed"] = params["embed"].astype(ml_dtypes.bfloat16)  # accepted, made F32
    assert gguf_tensors(params, SMALL)["token_embd.weight"].dtype == np.float32
    params["embed"] = params["embed"].astype(np.complex64)
    with pytest.raises(gc.GraphError, match=r"'embed' has dtype complex64"):
        gguf_tensors(params, SMALL)


def test_only_qwen2_is_equivalent() -> None:
    with pytest.raises(gc.GraphError, match=r"qwen3.*RMSNorm") as e:
        gguf_tensors(init_params(SMALL), SMALL, arch="qwen3")
    assert e.value.fix == 'use arch="qwen2"'


def test_failed_export_leaves_the_earlier_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.gguf"
    export_gguf(init_params(SMALL, seed=0), SMALL, path)
    before = path.read_bytes()
    bad = init_params(SMALL, seed=1)
    del bad["lm_head"]
    with pytest.raises(gc.GraphError, match="'lm_head'"):
        export_gguf(bad, SMALL, path)
    assert path.read_bytes() == before

    def broken(self: object, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", broken)
    with pytest.raises(gc.GraphError, match="No space left") as e:
        export_gguf(init_params(SMALL, seed=1), SMALL, path)
    assert e.value.fix
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]  # no temporary file left


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(gc.GraphError, match="does not exist"):
        export_gguf(init_params(SMALL), SMALL, tmp_path / "nowhere" / "m.gguf")


def test_without_gguf_says_how_to_install(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)  # makes `import gguf` fail
    with pytest.raises(gc.GraphError, match="gguf") as e:
        export_gguf(init_params(SMALL), SMALL, tmp_path / "m.gguf")
    assert e.value.fix == 'pip install "graphc[llama]"'


def test_bad_tokens() -> None:
    params = init_params(SMALL)
    with pytest.raises(gc.GraphError, match="token 256 is outside"):
        compare_with_llama(params, SMALL, [1, 256], 2)
    with pytest.raises(gc.GraphError, match="exceed the KV cache of 16"):
        compare_with_llama(params, SMALL, list(range(10)), 7)
    with pytest.raises(gc.GraphError, match="empty"):
        compare_with_llama(params, SMALL, [], 2)


def test_unloadable_file_quotes_llama(tmp_path: Path) -> None:
    from graphc.interop.llama_compare import llama_generate

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(gc.GraphError, match=r"llama\.cpp could not load .*bad\.gguf: .+"):
        llama_generate(bad, [1, 2], 2, n_ctx=16)


def test_benchmark_quick_json() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_llama_match.py"),
                          "--quick", "--json"], capture_output=True, text=True, timeout=120,
                         check=True).stdout
    rows = json.loads(out)
    assert [r["model"].split(" ")[0] for r in rows] == ["random", "trained", "random"]
    for r in rows:
        assert r["tokens_match"] and r["tokens_compared"] == 8
        assert 0 <= r["max_logit_diff"] < TOL and r["prompt_len"] >= 8
