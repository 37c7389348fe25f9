"""Drive llama.cpp on a GGUF file and capture the graphs it runs.

:func:`capture_llama` loads a model, processes a prompt and decodes one more token, with a
:class:`graphc.interop.capture.Recorder` as the scheduler's eval callback, and returns a
capture of each of those graphs (the dynamic read check included). With ``mtp=True`` (a
``qwen35`` model with a ``nextn`` block) it also runs the MTP context on the prompt's
hidden rows and captures that graph.

What the caller reads after each decode, besides OUTPUT-flagged nodes, is what llama.cpp's
API copies out of the graph: ``result_output`` (logits), ``result_norm`` (embeddings) and,
with next-token embeddings on, ``h_nextn`` (:data:`API_READS`).

One thread, and by default an F32 KV cache and no flash attention: the logits then match
a NumPy model of the weights (``../shared/notes/llama-cpp.md``); ``kv_type="f16"`` and
``flash_attn=True`` capture the graphs llama.cpp's own defaults run. On two cores more
threads only slow a tiny model down.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from graphc.interop.capture import Capture, Recorder
from graphc.interop.ggml_abi import TYPE_F16, TYPE_F32, need_llama

from graphc.errors import GraphError

API_READS = ("result_output", "result_norm", "h_nextn")
"""Graph results llama.cpp's API copies out after a decode (``t_logits``, ``t_embd``,
``t_h_nextn``): read after the run whether or not they carry the OUTPUT flag."""

_LOG_ERROR = 4


@contextmanager
def quiet_log(llama_cpp: Any) -> Iterator[list[str]]:
    """Route llama.cpp's log into the yielded list while the block runs, then restore the
    previous log callback."""
    lines: list[str] = []

    def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level >= _LOG_ERROR and text:
            lines.append(text.decode(errors="replace").rstrip())

    sink = llama_cpp.llama_log_callback(keep)  # kept alive until restored below
    prev = llama_cpp.llama_log_callback()
    prev_data = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(prev), ctypes.byref(prev_data))
    llama_cpp.llama_log_set(sink, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(prev, prev_data)


@dataclass
class LlamaRun:
    """Captures of one llama.cpp session: ``captures`` by label (``prompt``, ``decode``,
    ``mtp``), the model file, the prompt, and the logits llama.cpp returned for the last
    position of each (``logits``)."""

    model: Path
    tokens: list[int]
    captures: dict[str, Capture] = field(default_factory=dict)
    logits: dict[str, np.ndarray] = field(default_factory=dict)


def _llama() -> Any:
    need_llama()
    import llama_cpp

    return llama_cpp


KV_TYPES = {"f32": TYPE_F32, "f16": TYPE_F16}


def capture_llama(model_path: str | Path, tokens: Sequence[int], *, mtp: bool = False,
                  n_ctx: int = 64, check: bool = True, kv_type: str = "f32",
                  flash_attn: bool = False) -> LlamaRun:
    """Run llama.cpp on ``model_path``: the prompt ``tokens`` as one batch, then one decode
    step with the argmax token; with ``mtp``, the MTP context on the prompt's hidden rows.
    ``kv_type`` (``f32`` or llama.cpp's default ``f16``) and ``flash_attn`` choose the
    context's KV-cache type and attention kernel. GraphError naming the file for what
    llama.cpp refuses."""
    if kv_type not in KV_TYPES:
        raise GraphError(f"unknown KV-cache type {kv_type!r}", fix="use f32 or f16")
    L = _llama()
    path = Path(model_path)
    ids = [int(t) for t in tokens]
    if not ids:
        raise GraphError("the prompt is empty", fix="give at least one token")
    if len(ids) + 1 > n_ctx:
        raise GraphError(f"the prompt has {len(ids)} tokens but n_ctx is {n_ctx}",
                         fix="shorten the prompt or raise n_ctx")
    if not path.is_file():
        raise GraphError(f"{path}: no such model file")
    run = LlamaRun(path, ids)
    rec = Recorder(check=check)
    callback = L.ggml_backend_sched_eval_callback(rec.on_eval)
    with quiet_log(L) as log:
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.load_mtp = mtp
        model = L.llama_model_load_from_file(str(path).encode(), mp)
        if not model:
            raise GraphError(f"{path}: llama.cpp cannot load it: "
                             + ("; ".join(log) or "no reason given"),
                             fix="check the file is a GGUF model this llama.cpp supports")
        contexts: list[Any] = []
        try:
            vocab = L.llama_model_get_vocab(model)
            n_vocab = int(L.llama_vocab_n_tokens(vocab))
            bad = [t for t in ids if not 0 <= t < n_vocab]
            if bad:
                raise GraphError(f"token {bad[0]} is outside the vocabulary of {n_vocab}")
            if mtp and int(L.llama_model_n_layer_nextn(model)) < 1:
                raise GraphError(f"{path}: the model has no MTP (nextn) block",
                                 fix="drop --mtp, or use a qwen35 model with nextn layers")
            ctx = _context(L, model, n_ctx, callback, KV_TYPES[kv_type], flash_attn)
            contexts.append(ctx)
            if mtp:
                from llama_cpp import llama_cpp_ext

                llama_cpp_ext.llama_set_embeddings_nextn(ctx, True, False)
            arr = (L.llama_token * len(ids))(*ids)
            rec.reset()
            _check_rc(L.llama_decode(ctx, L.llama_batch_get_one(arr, len(ids))), "prompt", log)
            run.captures["prompt"] = rec.finish(f"llama.cpp prompt of {len(ids)} tokens, "
                                                f"{path.name}", _reads(mtp))
            run.logits["prompt"] = _last_logits(L, ctx, n_vocab)
            hidden = _nextn_rows(ctx, len(ids), int(L.llama_model_n_embd(model))) if mtp \
                else None
            nxt = int(np.argmax(run.logits["prompt"]))
            one = (L.llama_token * 1)(nxt)
            rec.reset()
            _check_rc(L.llama_decode(ctx, L.llama_batch_get_one(one, 1)), "decode", log)
            run.captures["decode"] = rec.finish(f"llama.cpp decode of 1 token after "
                                                f"{len(ids)}, {path.name}", _reads(mtp))
            run.logits["decode"] = _last_logits(L, ctx, n_vocab)
            if mtp and hidden is not None:
                ctx_mtp = _context(L, model, n_ctx, callback, KV_TYPES[kv_type], flash_attn,
                                   other=ctx)
                contexts.append(ctx_mtp)
                rec.reset()
                _run_mtp(L, ctx_mtp, ids, hidden, log)
                run.captures["mtp"] = rec.finish(
                    f"llama.cpp MTP head over {len(ids) - 1} positions, {path.name}",
                    _reads(True))
                run.logits["mtp"] = _last_logits(L, ctx_mtp, n_vocab)
        finally:
            for c in reversed(contexts):
                L.llama_free(c)
            L.llama_model_free(model)
    return run


def _reads(mtp: bool) -> list[str]:
    return list(API_READS) if mtp else list(API_READS[:2])


def _context(L: Any, model: Any, n_ctx: int, callback: Any, kv_type: int, flash_attn: bool,
             other: Any = None) -> Any:
    cp = L.llama_context_default_params()
    cp.n_ctx = cp.n_batch = cp.n_ubatch = n_ctx
    cp.n_threads = cp.n_threads_batch = 1
    cp.type_k = cp.type_v = kv_type
    cp.flash_attn_type = 1 if flash_attn else 0  # enum llama_flash_attn_type: 0 off, 1 on
    cp.cb_eval = callback
    cp.cb_eval_user_data = None
    if other is not None:
        cp.ctx_type = L.LLAMA_CONTEXT_TYPE_MTP
        cp.ctx_other = other
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        raise GraphError("llama.cpp could not create a context",
                         fix="lower n_ctx, or check the model file")
    return ctx


def _check_rc(rc: int, what: str, log: list[str]) -> None:
    if rc != 0:
        raise GraphError(f"llama.cpp's {what} failed with status {rc}: "
                         + ("; ".join(log) or "no reason given"))


def _last_logits(L: Any, ctx: Any, n_vocab: int) -> np.ndarray:
    ptr = L.llama_get_logits_ith(ctx, -1)
    if not ptr:
        raise GraphError("llama.cpp returned no logits for the last position")
    return np.ctypeslib.as_array(ptr, shape=(n_vocab,)).copy()


def _nextn_rows(ctx: Any, n: int, d: int) -> np.ndarray:
    from llama_cpp import llama_cpp_ext

    rows = []
    for i in range(n):
        ptr = llama_cpp_ext.llama_get_embeddings_nextn_ith(ctx, i)
        if not ptr:
            raise GraphError(f"llama.cpp kept no next-token hidden row {i}")
        rows.append(np.ctypeslib.as_array(ptr, shape=(d,)).copy())
    return np.stack(rows).astype(np.float32)


def _run_mtp(L: Any, ctx_mtp: Any, ids: list[int], hidden: np.ndarray, log: list[str]) -> None:
    """The MTP head over the prompt: position i+1's token with position i's hidden row."""
    batch = L.llama_batch_ext_init(ctx_mtp)
    if not batch:
        raise GraphError("llama.cpp could not make a batch for the MTP context")
    try:
        keep = []
        for i in range(len(ids) - 1):
            idx = L.llama_batch_ext_add_token(batch, 0, ids[i + 1])
            pos = ctypes.c_int(i + 1)
            L.llama_batch_ext_set_pos(batch, idx, ctypes.byref(pos))
            row = np.ascontiguousarray(hidden[i], np.float32)
            keep.append(row)
            embd = L.llama_embd(row.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 1,
                                row.shape[0])
            if not L.llama_batch_ext_set_embd_token(batch, idx, embd):
                raise GraphError("llama.cpp refused the MTP head's hidden row")
            L.llama_batch_ext_set_output_logits(batch, idx, i == len(ids) - 2)
        _check_rc(L.llama_process(ctx_mtp, 1, batch), "MTP head", log)
    finally:
        L.llama_batch_ext_free(batch)
