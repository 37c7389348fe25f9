"""Drive llama.cpp on a GGUF file and capture the graphs it runs, and what it reads after.

:func:`capture_llama` loads a model, processes a prompt and decodes one more token, with a
:class:`graphc.interop.capture.Recorder` as the scheduler's eval callback, and returns a
capture of each graph it ran (the dynamic check included): one per ubatch. A
:class:`Mode` says how llama.cpp is asked to hand results to the host -- which logits rows,
embeddings with a pooling, the MTP context's next-token hidden rows, every layer's input
(as EAGLE-3 reads them), samplers on the graph, several sequences, ubatches smaller than
the batch, the KV-cache type, flash attention.

What the host reads after each graph is not listed here: the Recorder watches every copy
llama.cpp makes out of ggml's buffers and maps it to the node whose bytes it copies.

One thread, and by default an F32 KV cache and no flash attention: the logits then match
a NumPy model of the weights (``../shared/notes/llama-cpp.md``). On two cores more
threads only slow a tiny model down. A GGML_ASSERT in llama.cpp (a mode the model does not
support) ends the whole process; :func:`capture_llama_isolated` runs the capture in a child
process and turns that into a GraphError.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graphc.errors import GraphError
from graphc.interop.capture import Capture, Recorder
from graphc.interop.ggml_abi import need_llama

KV_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}
"""KV-cache types ``--kv-type`` takes: ``enum ggml_type`` values."""

POOLINGS = {"none": 0, "mean": 1, "cls": 2, "last": 3}
"""``enum llama_pooling_type`` values ``--embeddings`` takes."""

_LAYER_INP_SET = "_Z30llama_set_embeddings_layer_inpP13llama_contextjb"
_LAYER_INP_GET = "_Z30llama_get_embeddings_layer_inpP13llama_contextj"
"""``llama_set_embeddings_layer_inp`` / ``llama_get_embeddings_layer_inp`` (src/llama-ext.h):
C++ functions, exported by libllama only under these mangled names."""


@dataclass(frozen=True)
class Mode:
    """How llama.cpp is asked to hand results to the host after each decode.

    ``logits``: ``last`` (the last token of each sequence), ``all``, ``none``, or row
    numbers ``"0,3"`` (positions within each sequence); ``embeddings``: a pooling (``none``,
    ``mean``, ``cls``, ``last``) or None; ``mtp``: next-token hidden rows kept and the MTP
    context run on them; ``layer_inputs``: every layer's input read; ``backend_sampling``: a
    top-k + dist sampler chain on the graph for each sequence; ``seqs``: sequences in the
    batch (each the prompt, rotated); ``n_ubatch``: ubatch size (None: the whole batch);
    ``kv_type`` (:data:`KV_TYPES`) and ``flash_attn``."""

    logits: str = "last"
    embeddings: str | None = None
    mtp: bool = False
    layer_inputs: bool = False
    backend_sampling: bool = False
    seqs: int = 1
    n_ubatch: int | None = None
    kv_type: str = "f32"
    flash_attn: bool = False

    def __post_init__(self) -> None:
        if self.kv_type not in KV_TYPES:
            raise GraphError(f"unknown KV-cache type {self.kv_type!r}",
                             fix="use one of " + ", ".join(KV_TYPES))
        if self.embeddings is not None and self.embeddings not in POOLINGS:
            raise GraphError(f"unknown pooling {self.embeddings!r}",
                             fix="use one of " + ", ".join(POOLINGS))
        if self.logits not in ("last", "all", "none"):
            try:
                rows = [int(r) for r in self.logits.split(",")]
            except ValueError:
                raise GraphError(f"logits rows {self.logits!r} are not last, all, none or "
                                 "row numbers", fix='write e.g. --logits 0,3') from None
            if any(r < 0 for r in rows):
                raise GraphError(f"logits rows {self.logits!r}: rows count from 0")
        if self.seqs < 1 or (self.n_ubatch is not None and self.n_ubatch < 1):
            raise GraphError("seqs and n_ubatch must be at least 1")
        if self.mtp and self.seqs > 1:
            raise GraphError("the MTP context is checked on one sequence",
                             fix="drop --seqs with --mtp")

    def label(self) -> str:
        """A short name for tables: the settings that differ from the defaults."""
        parts = [f"{k}={v}" if not isinstance(v, bool) else k
                 for k, v in asdict(self).items()
                 if v != getattr(Mode, k) and v is not None and v is not False]
        return " ".join(parts) or "logits=last"

    def rows(self, n: int) -> list[int]:
        """The positions (of ``n`` in a sequence) whose results are asked for."""
        if self.logits == "all":
            return list(range(n))
        if self.logits == "last":
            return [n - 1]
        if self.logits == "none":
            return []
        return sorted({int(r) for r in self.logits.split(",")})


_LOG_ERROR, _LOG_CONT = 4, 5  # enum ggml_log_level: a CONT line continues the last one


@contextmanager
def quiet_log(llama_cpp: Any) -> Iterator[list[str]]:
    """Route llama.cpp's log into the yielded list while the block runs, then restore the
    previous log callback."""
    lines: list[str] = []

    last = [0]

    def keep(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level != _LOG_CONT:
            last[0] = level
        line = text.decode(errors="replace").strip() if text else ""
        if last[0] == _LOG_ERROR and line.strip(". "):
            lines.append(line)

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
    ``mtp``; ``prompt.1``, ``prompt.2``, ... when a step ran several graphs), the model
    file, the prompt, the mode, and what llama.cpp's API returned after each step
    (``results``: ``logits`` of the last asked row, ``embeddings``, ``layer_inputs``,
    ``sampled``, as arrays)."""

    model: Path
    tokens: list[int]
    mode: Mode = Mode()
    captures: dict[str, Capture] = field(default_factory=dict)
    results: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def _llama() -> Any:
    need_llama()
    import llama_cpp

    return llama_cpp


class _Session:
    """One model and its contexts, torn down in reverse order."""

    def __init__(self, L: Any, path: Path, mode: Mode, n_ctx: int, rec: Recorder,
                 log: list[str]) -> None:
        self.L, self.path, self.mode, self.n_ctx, self.rec, self.log = L, path, mode, n_ctx, \
            rec, log
        self.callback = L.ggml_backend_sched_eval_callback(rec.on_eval)
        self.contexts: list[Any] = []
        self.samplers: list[Any] = []
        self.keep: list[Any] = []  # ctypes arrays llama.cpp holds pointers into
        mp = L.llama_model_default_params()
        mp.load_mtp = mode.mtp
        self.model = L.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise GraphError(f"{path}: llama.cpp cannot load it: "
                             + ("; ".join(log) or "no reason given"),
                             fix="check the file is a GGUF model this llama.cpp supports")
        vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = int(L.llama_vocab_n_tokens(vocab))
        self.n_embd = int(L.llama_model_n_embd(self.model))
        self.n_layer = int(L.llama_model_n_layer(self.model))

    def close(self) -> None:
        for c in reversed(self.contexts):
            self.L.llama_free(c)
        for s in self.samplers:
            self.L.llama_sampler_free(s)
        self.L.llama_model_free(self.model)

    def context(self, n_tokens: int, other: Any = None) -> Any:
        L, mode = self.L, self.mode
        cp = L.llama_context_default_params()
        cp.n_ctx = max(self.n_ctx, mode.seqs * (n_tokens + 2))
        cp.n_batch = max(n_tokens * mode.seqs, 1)
        cp.n_ubatch = min(mode.n_ubatch or cp.n_batch, cp.n_batch)
        cp.n_seq_max = mode.seqs
        cp.kv_unified = True
        cp.n_threads = cp.n_threads_batch = 1
        cp.type_k = cp.type_v = KV_TYPES[mode.kv_type]
        cp.flash_attn_type = 1 if mode.flash_attn else 0  # enum llama_flash_attn_type
        if mode.embeddings is not None and other is None:
            cp.embeddings = True
            cp.pooling_type = POOLINGS[mode.embeddings]
        cp.cb_eval = self.callback
        cp.cb_eval_user_data = None
        if mode.backend_sampling and other is None:
            configs = (L.llama_sampler_seq_config * mode.seqs)()
            for s in range(mode.seqs):
                chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(8))
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(1234 + s))
                self.samplers.append(chain)
                configs[s].seq_id = s
                configs[s].sampler = ctypes.cast(chain, ctypes.c_void_p)
            self.keep.append(configs)
            cp.samplers = configs
            cp.n_samplers = mode.seqs
        if other is not None:
            cp.ctx_type = L.LLAMA_CONTEXT_TYPE_MTP
            cp.ctx_other = other
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            raise GraphError("llama.cpp could not create a context: "
                             + ("; ".join(self.log) or "no reason given"),
                             fix="lower n_ctx, or choose a KV type / mode this model and "
                                 "build support")
        self.contexts.append(ctx)
        return ctx

    def layer_inputs(self, ctx: Any) -> None:
        """Ask for every layer's input (as EAGLE-3 does)."""
        fn = self._ext(_LAYER_INP_SET, None, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_bool])
        for il in range(self.n_layer):
            fn(ctx, il, True)

    def _ext(self, symbol: str, restype: Any, argtypes: list[Any]) -> Any:
        import llama_cpp.llama_cpp as raw

        fn = getattr(raw._lib, symbol, None)
        if fn is None:
            raise GraphError("this libllama has no layer-input reads "
                             "(llama_set_embeddings_layer_inp)",
                             fix="use a llama.cpp build that exports it, or drop --layer-inputs")
        fn.restype, fn.argtypes = restype, argtypes
        return fn

    def decode(self, ctx: Any, step: str, seqs: list[list[int]], start: int,
               rows: list[int]) -> dict[str, np.ndarray]:
        """One batch: ``seqs[s]`` at positions ``start..``, results asked for ``rows`` (of
        each sequence); the graphs it ran are captured as ``step``. Returns what the API
        hands back."""
        L = self.L
        n = len(seqs[0])
        total = n * len(seqs)
        batch = L.llama_batch_init(total, 0, 1)
        try:
            asked: list[int] = []
            for s, ids in enumerate(seqs):
                for i, tok in enumerate(ids):
                    k = s * n + i
                    batch.token[k] = tok
                    batch.pos[k] = start + i
                    batch.n_seq_id[k] = 1
                    batch.seq_id[k][0] = s
                    batch.logits[k] = i in rows
                    if i in rows:
                        asked.append(k)
            batch.n_tokens = total
            self.rec.reset()
            rc = L.llama_decode(ctx, batch)
            if rc != 0:
                raise GraphError(f"llama.cpp's {step} failed with status {rc}: "
                                 + ("; ".join(self.log) or "no reason given"))
        finally:
            L.llama_batch_free(batch)
        return self.results(ctx, asked, len(seqs))

    def results(self, ctx: Any, asked: list[int], n_seqs: int) -> dict[str, np.ndarray]:
        """What llama.cpp's API returns after a decode for the rows asked."""
        L, mode, out = self.L, self.mode, {}
        if asked and mode.embeddings is None:
            ptr = L.llama_get_logits_ith(ctx, asked[-1])
            if ptr:
                out["logits"] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
        if mode.embeddings == "none" and asked:
            out["embeddings"] = np.stack([self._floats(L.llama_get_embeddings_ith(ctx, k),
                                                       self.n_embd) for k in asked])
        elif mode.embeddings is not None:
            out["embeddings"] = np.stack([self._floats(L.llama_get_embeddings_seq(ctx, s),
                                                       self.n_embd) for s in range(n_seqs)])
        if mode.layer_inputs:
            get = self._ext(_LAYER_INP_GET, ctypes.POINTER(ctypes.c_float),
                            [ctypes.c_void_p, ctypes.c_uint32])
            out["layer_inputs"] = np.stack([self._floats(get(ctx, il), self.n_embd)
                                            for il in range(self.n_layer)])
        if mode.backend_sampling and asked:
            out["sampled"] = np.array([int(L.llama_get_sampled_token_ith(ctx, k))
                                       for k in asked], np.int64)
        return out

    @staticmethod
    def _floats(ptr: Any, n: int) -> np.ndarray:
        if not ptr:
            raise GraphError("llama.cpp returned no values for a result it was asked for")
        return np.ctypeslib.as_array(ptr, shape=(n,)).copy()


def capture_llama(model_path: str | Path, tokens: Sequence[int], mode: Mode | None = None,
                  *, n_ctx: int = 64, check: bool = True) -> LlamaRun:
    """Run llama.cpp on ``model_path`` in ``mode``: the prompt ``tokens`` as one batch (in
    each of ``mode.seqs`` sequences), then one decode step per sequence with its argmax
    token (token 0 when no logits were asked); with ``mode.mtp``, the MTP context on the
    prompt's hidden rows. Every graph run is captured with the host's copies after it.
    GraphError naming the file for what llama.cpp refuses."""
    mode = mode or Mode()
    L = _llama()
    path = Path(model_path)
    ids = [int(t) for t in tokens]
    if not ids:
        raise GraphError("the prompt is empty", fix="give at least one token")
    if len(ids) + 1 > n_ctx:
        raise GraphError(f"the prompt has {len(ids)} tokens but n_ctx is {n_ctx}",
                         fix="shorten the prompt or raise n_ctx")
    rows = mode.rows(len(ids))
    if rows and rows[-1] >= len(ids):
        raise GraphError(f"logits row {rows[-1]} is past the prompt's {len(ids)} tokens")
    if not path.is_file():
        raise GraphError(f"{path}: no such model file")
    run = LlamaRun(path, ids, mode)
    rec = Recorder(check=check)
    with quiet_log(L) as log, rec:
        L.llama_backend_init()
        sess = _Session(L, path, mode, n_ctx, rec, log)
        try:
            bad = [t for t in ids if not 0 <= t < sess.n_vocab]
            if bad:
                raise GraphError(f"token {bad[0]} is outside the vocabulary of {sess.n_vocab}")
            if mode.mtp and int(L.llama_model_n_layer_nextn(sess.model)) < 1:
                raise GraphError(f"{path}: the model has no MTP (nextn) block",
                                 fix="drop --mtp, or use a qwen35 model with nextn layers")
            ctx = sess.context(len(ids))
            if mode.mtp:
                from llama_cpp import llama_cpp_ext

                llama_cpp_ext.llama_set_embeddings_nextn(ctx, True, False)
            if mode.layer_inputs:
                sess.layer_inputs(ctx)
            seqs = [ids[s % len(ids):] + ids[:s % len(ids)] for s in range(mode.seqs)]
            rows_asked = rows or ([len(ids) - 1] if mode.embeddings or mode.mtp else [])
            run.results["prompt"] = sess.decode(ctx, "prompt", seqs, 0, rows_asked)
            _keep(run, "prompt", rec.finish(f"llama.cpp prompt of {len(ids)} tokens x "
                                            f"{mode.seqs}, {path.name}"))
            hidden = _nextn_rows(ctx, len(ids), sess.n_embd) if mode.mtp else None
            logits = run.results["prompt"].get("logits")
            nxt = int(np.argmax(logits)) if logits is not None else 0
            last = [0] if rows_asked else []
            run.results["decode"] = sess.decode(ctx, "decode", [[nxt]] * mode.seqs, len(ids),
                                                last)
            _keep(run, "decode", rec.finish(f"llama.cpp decode of 1 token after {len(ids)} "
                                            f"x {mode.seqs}, {path.name}"))
            if mode.mtp and hidden is not None:
                ctx_mtp = sess.context(len(ids), other=ctx)
                rec.reset()
                _run_mtp(L, ctx_mtp, ids, hidden, log)
                _keep(run, "mtp", rec.finish(f"llama.cpp MTP head over {len(ids) - 1} "
                                             f"positions, {path.name}"))
                run.results["mtp"] = {"logits": _last_logits(L, ctx_mtp, sess.n_vocab)}
        finally:
            sess.close()
    return run


def _keep(run: LlamaRun, step: str, caps: list[Capture]) -> None:
    if len(caps) == 1:
        run.captures[step] = caps[0]
    else:
        for i, cap in enumerate(caps):
            run.captures[f"{step}.{i + 1}"] = cap


def capture_llama_isolated(model_path: str | Path, tokens: Sequence[int],
                           mode: Mode | None = None, *, n_ctx: int = 64,
                           timeout: float = 300.0) -> LlamaRun:
    """:func:`capture_llama` in a child process, so that a GGML_ASSERT in llama.cpp (a mode
    the model or build does not support) is a GraphError quoting llama.cpp's message, not
    the end of this process. The child inherits the environment (``LLAMA_CPP_LIB_PATH``
    included)."""
    mode = mode or Mode()
    with tempfile.TemporaryDirectory() as tmp:
        job = {"model": str(model_path), "tokens": [int(t) for t in tokens],
               "mode": asdict(mode), "n_ctx": n_ctx, "out": tmp}
        try:
            proc = subprocess.run([sys.executable, "-m", "graphc.interop.llama_run"],
                                  input=json.dumps(job), capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise GraphError(f"llama.cpp did not finish {mode.label()} within {timeout:.0f} s"
                             ) from None
        if proc.returncode == 2:
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
            raise GraphError(last.removeprefix("error: ") or "llama.cpp refused the run")
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            why = next((ln for ln in lines if "GGML_ASSERT" in ln or "error" in ln.lower()),
                       lines[-1] if lines else f"exit status {proc.returncode}")
            raise GraphError(f"llama.cpp aborted in mode {mode.label()}: {why.strip()}",
                             fix="this model or llama.cpp build does not support that mode; "
                                 "drop it")
        meta = json.loads((Path(tmp) / "run.json").read_text())
        run = LlamaRun(Path(model_path), list(tokens), mode)
        for label in meta["captures"]:
            run.captures[label] = Capture.load(Path(tmp) / f"{label}.json")
        with np.load(Path(tmp) / "results.npz") as z:
            for key in z.files:
                step, name = key.split("/", 1)
                run.results.setdefault(step, {})[name] = z[key]
    return run


def _child() -> int:
    """The child side of :func:`capture_llama_isolated`: a job as JSON on stdin."""
    job = json.loads(sys.stdin.read())
    try:
        run = capture_llama(job["model"], job["tokens"], Mode(**job["mode"]),
                            n_ctx=job["n_ctx"])
    except GraphError as e:
        print(str(e).splitlines()[0], file=sys.stderr)
        return 2
    out = Path(job["out"])
    for label, cap in run.captures.items():
        cap.save(out / f"{label}.json")
    arrays: dict[str, Any] = {f"{step}/{k}": v for step, r in run.results.items()
                              for k, v in r.items()}
    np.savez(out / "results.npz", **arrays)
    (out / "run.json").write_text(json.dumps({"captures": list(run.captures)}))
    return 0


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
        rc = L.llama_process(ctx_mtp, 1, batch)
        if rc != 0:
            raise GraphError(f"llama.cpp's MTP head failed with status {rc}: "
                             + ("; ".join(log) or "no reason given"))
    finally:
        L.llama_batch_ext_free(batch)


if __name__ == "__main__":
    sys.exit(_child())
