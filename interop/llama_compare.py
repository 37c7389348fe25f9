"""Run graphc's Qwen example and llama.cpp on the same weights and tokens, and compare.

:func:`compare_with_llama` exports the weights with
:func:`graphc.interop.gguf_export.export_gguf` to a temporary GGUF file, runs llama.cpp
on it (``llama_cpp.Llama``: logits for every position, F32 KV cache, flash attention
off, one thread, token ids fed directly so no tokenizer is involved), runs graphc's model
on the same ids (a graphc backend, the NumPy ``reference`` one by default, decoding with
its KV cache), and reports the largest logit difference and both greedy generations.

Needs llama-cpp-python and gguf (``pip install "graphc[llama]"``).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import graphc as gc
from graphc.interop.gguf_export import export_gguf, gguf_tensors
from graphc.interop.llama_run import quiet_log
from graphc.models.qwen import QwenConfig, build_main, check_params, param_shapes

__all__ = ["LlamaMatch", "compare_with_llama", "graphc_generate", "llama_generate"]

_GGML_TYPE_F32 = 0  # enum ggml_type
_LOG_ERROR = 4  # enum ggml_log_level in this ggml: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4
_ALL: dict[str, object] = {"logits": "all"}


@dataclass(frozen=True)
class LlamaMatch:
    """What :func:`compare_with_llama` measured.

    ``max_logit_diff``: the largest ``|graphc - llama.cpp|`` over every logit of every
    prompt position. ``max_decode_diff``: the same over the logits of the decode steps
    (positions after the prompt) for as long as both generations agree (NaN when no
    step was compared). ``graphc_tokens`` / ``llama_tokens``: the greedy generations
    (argmax, the lowest id on a tie), ``n_generate`` tokens each. ``max_abs_logit``: the
    largest ``|logit|`` graphc produced over the prompt, the scale the differences are
    to be read against.
    """

    prompt_len: int
    max_logit_diff: float
    max_abs_logit: float
    max_decode_diff: float
    prompt_argmax_match: bool
    graphc_tokens: list[int]
    llama_tokens: list[int]

    @property
    def tokens_match(self) -> bool:
        """Whether both greedy generations are identical."""
        return self.graphc_tokens == self.llama_tokens

    @property
    def n_compared(self) -> int:
        """Generated tokens compared (per side)."""
        return len(self.graphc_tokens)

    @property
    def n_matching(self) -> int:
        """Length of the common prefix of the two generations."""
        n = 0
        for a, b in zip(self.graphc_tokens, self.llama_tokens, strict=False):
            if a != b:
                break
            n += 1
        return n


def _import_llama() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise gc.GraphError("running llama.cpp needs llama-cpp-python, which is not installed",
                            fix='pip install "graphc[llama]"') from None
    return llama_cpp


def _check_tokens(cfg: QwenConfig, tokens: Sequence[int], n_generate: int) -> list[int]:
    ids = [int(t) for t in tokens]
    if not ids:
        raise gc.GraphError("the prompt is empty", fix="give at least one token id")
    if n_generate < 0:
        raise gc.GraphError(f"n_generate must be at least 0, got {n_generate}")
    bad = [t for t in ids if not 0 <= t < cfg.vocab]
    if bad:
        raise gc.GraphError(f"token {bad[0]} is outside the vocabulary of {cfg.vocab}")
    if len(ids) + n_generate > cfg.max_ctx:
        raise gc.GraphError(f"prompt ({len(ids)}) + generated tokens ({n_generate}) exceed "
                            f"the KV cache of {cfg.max_ctx}",
                            fix="shorten the prompt, generate fewer tokens or raise max_ctx")
    return ids


def llama_generate(gguf_path: str | Path, tokens: Sequence[int], n_generate: int, *,
                   n_ctx: int, n_threads: int = 1) -> tuple[np.ndarray, list[int]]:
    """Run llama.cpp on ``gguf_path``: logits of every prompt position, then greedy
    decoding of ``n_generate`` tokens one at a time. Returns (logits ``[len(tokens) +
    max(n_generate - 1, 0), vocab]`` float32: the prompt rows then one row per decode
    step, the generated ids).

    F32 KV cache, flash attention off, ``n_threads`` threads; ids are fed directly. The
    log is kept off stderr; a load failure raises GraphError quoting llama.cpp's errors.
    """
    llama_cpp = _import_llama()
    ids = [int(t) for t in tokens]
    with quiet_log(llama_cpp) as log:
        try:
            model = llama_cpp.Llama(
                str(gguf_path), n_ctx=n_ctx, n_batch=max(len(ids), 1),
                n_ubatch=max(len(ids), 1), n_threads=n_threads, n_threads_batch=n_threads,
                logits_all=True, flash_attn=False, type_k=_GGML_TYPE_F32,
                type_v=_GGML_TYPE_F32, verbose=False)
        except (ValueError, RuntimeError) as e:
            detail = "; ".join(line for line in log if line) or str(e)
            raise gc.GraphError(f"llama.cpp could not load {gguf_path}: {detail}") from None
        try:
            model.eval(ids)
            rows = [np.array(model.scores[: len(ids)], np.float32)]
            out = [int(np.argmax(rows[0][-1]))] if n_generate else []
            while len(out) < n_generate:
                model.eval([out[-1]])
                step = np.array(model.scores[model.n_tokens - 1], np.float32)
                rows.append(step[None])
                out.append(int(np.argmax(step)))
        finally:
            model.close()
    return np.concatenate(rows), out


def graphc_generate(params: Mapping[str, np.ndarray], cfg: QwenConfig, tokens: Sequence[int],
                    n_generate: int, *, backend: str = "reference"
                    ) -> tuple[np.ndarray, list[int]]:
    """Run graphc's main model (:func:`~graphc.models.qwen.build_main`) on ``backend``:
    one call over the prompt, then greedy decoding one token per call through the KV
    cache. Returns the same (logits, generated ids) as :func:`llama_generate`. Raises
    GraphError for a missing or misshapen weight or bad token ids."""
    ids = _check_tokens(cfg, tokens, n_generate)
    check_params(cfg, dict(params), mtp=False)
    weights = {n: v for n, v in params.items() if n in param_shapes(cfg)}
    prompt = gc.compile(build_main(cfg, len(ids)), params=weights, reads=_ALL,
                        backend=backend)
    step = gc.compile(build_main(cfg, 1), params=weights, reads=_ALL, backend=backend)
    prompt.reset_state()
    rows = [np.asarray(prompt.run({"tokens": np.asarray(ids, np.int32),
                                   "pos": np.arange(len(ids), dtype=np.int32)})["logits"],
                       np.float32)]
    step.state = prompt.state
    out = [int(np.argmax(rows[0][-1]))] if n_generate else []
    while len(out) < n_generate:
        at = len(ids) + len(out) - 1
        logits = np.asarray(step.run({"tokens": np.asarray([out[-1]], np.int32),
                                      "pos": np.asarray([at], np.int32)})["logits"],
                            np.float32)
        rows.append(logits)
        out.append(int(np.argmax(logits[-1])))
    return np.concatenate(rows), out


def compare_with_llama(params: Mapping[str, np.ndarray], cfg: QwenConfig,
                       tokens: Sequence[int], n_generate: int, *, backend: str = "reference",
                       n_threads: int = 1, gguf_path: str | Path | None = None
                       ) -> LlamaMatch:
    """Export ``params`` to GGUF, run llama.cpp and graphc on the prompt ``tokens`` (ids),
    generate ``n_generate`` tokens greedily with each, and compare (see
    :class:`LlamaMatch`).

    The GGUF file goes to a temporary folder, removed afterwards, unless ``gguf_path``
    names where to keep it. Raises GraphError for bad weights (naming the weight), token
    ids outside the vocabulary, a prompt plus generation longer than ``cfg.max_ctx``, or
    a missing ``graphc[llama]`` extra.
    """
    ids = _check_tokens(cfg, tokens, n_generate)
    gguf_tensors(params, cfg)  # weight errors before any work
    with tempfile.TemporaryDirectory(prefix="graphc-gguf-") as tmp:
        path = Path(gguf_path) if gguf_path is not None else Path(tmp) / "model.gguf"
        export_gguf(params, cfg, path)
        ll_logits, ll_tokens = llama_generate(path, ids, n_generate, n_ctx=cfg.max_ctx,
                                              n_threads=n_threads)
    gc_logits, gc_tokens = graphc_generate(params, cfg, ids, n_generate, backend=backend)
    n = len(ids)
    diff = np.abs(gc_logits.astype(np.float64) - ll_logits.astype(np.float64))
    # decode row j (j >= 1) follows generated tokens 0..j-1: compare while those agree
    agree = 0
    while (agree < len(gc_tokens) - 1 and gc_tokens[agree] == ll_tokens[agree]):
        agree += 1
    decode = diff[n:n + agree]
    return LlamaMatch(
        prompt_len=n,
        max_logit_diff=float(diff[:n].max()),
        max_abs_logit=float(np.abs(gc_logits[:n]).max()),
        max_decode_diff=float(decode.max()) if decode.size else math.nan,
        prompt_argmax_match=bool(np.array_equal(gc_logits[:n].argmax(-1),
                                                ll_logits[:n].argmax(-1))),
        graphc_tokens=gc_tokens,
        llama_tokens=ll_tokens,
    )
