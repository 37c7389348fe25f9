"""The pre-norm / post-norm study: what the silent aliasing bug cost, measured.

On held-out text, with greedy decoding and draft lengths k = 1..4, it measures the MTP
head's acceptance rate and the tokens per main-model call in three cases:

(a) the head trained on the pre-norm hidden state, reading the pre-norm state;
(b) the same head reading the post-norm state instead -- what the aliasing bug silently
    handed it;
(c) a head trained on the post-norm state, reading the post-norm state.

Every speculative output is checked against plain greedy decoding, token for token.
Speculative decoding runs one compiled graph per round (:mod:`graphc.models.speculative`),
so each call is one main-model pass: tokens per call are tokens per main-model call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import graphc as gc
from graphc.models.qwen import QwenConfig, build_main
from graphc.models.speculative import Runner, greedy_generate, speculative_generate

CASES = {
    "a": ("pre-norm head, reads pre-norm (as trained)", "mtp.", "pre_norm"),
    "b": ("pre-norm head, reads post-norm (the aliasing bug)", "mtp.", "post_norm"),
    "c": ("post-norm head, reads post-norm", "mtp_post.", "post_norm"),
}


@dataclass
class StudyRow:
    """One case at one draft length, summed over the prompts."""

    case: str
    k: int
    drafted: int
    accepted: int
    tokens: int
    main_calls: int
    identical: bool

    @property
    def acceptance(self) -> float:
        """Accepted drafts over proposed drafts."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_call(self) -> float:
        """Generated tokens per main-model call."""
        return self.tokens / self.main_calls if self.main_calls else 0.0


def head_params(params: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The checkpoint's weights with the MTP head ``prefix`` (``mtp.`` or ``mtp_post.``)
    in the ``mtp.*`` slots the MTP graph reads."""
    base = {k: v for k, v in params.items() if not k.startswith(("mtp.", "mtp_post."))}
    head = {"mtp." + k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    if not head:
        raise KeyError(f"the checkpoint has no MTP head {prefix}*")
    return base | head


def held_out_prompts(n: int = 8, length: int = 64, seed: int = 0) -> list[list[int]]:
    """``n`` prompts of ``length`` bytes from the held-out files, each starting at a line."""
    from graphc.models.train_tiny import corpus  # heavy: it imports JAX for training

    _, held, _, _ = corpus()
    starts = np.flatnonzero(held[:-length] == ord("\n")) + 1
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(starts, size=n, replace=False))
    return [held[s:s + length].tolist() for s in picks]


def input_similarity(cfg: QwenConfig, params: dict[str, np.ndarray],
                     prompts: Sequence[list[int]]) -> float:
    """Mean cosine similarity, over the prompts' positions, between what the head sees in
    case (a) and in case (b): the RMS-normalized pre-norm and post-norm hidden states. The
    head normalizes its input first, so the bug changes its input only through the final
    norm's weights; a value near 1 means the bug costs little for this model."""
    sims = []
    for p in prompts:
        g = build_main(cfg, len(p))
        out = gc.compile(g, params={k: v for k, v in params.items() if k in g.params}).run(
            {"tokens": np.asarray(p, np.int32), "pos": np.arange(len(p), dtype=np.int32)})
        a, b = out["h_pre_norm"], out["h_post_norm"]
        a = a / np.linalg.norm(a, axis=-1, keepdims=True)
        b = b / np.linalg.norm(b, axis=-1, keepdims=True)
        sims.append(np.sum(a * b, axis=-1))
    return float(np.mean(np.concatenate(sims)))


def run_study(cfg: QwenConfig, params: dict[str, np.ndarray], prompts: Sequence[list[int]],
              n_new: int = 48, ks: Sequence[int] = (1, 2, 3, 4), backend: str = "jax",
              on_step: Callable[[str], None] | None = None) -> list[StudyRow]:
    """Run every case at every draft length; return the rows."""
    base = Runner(cfg, head_params(params, "mtp."), backend=backend)
    base.prepare(len(prompts[0]), None)
    greedy = []
    for p in prompts:
        greedy.append(greedy_generate(base, p, n_new)[0])
    rows: list[StudyRow] = []
    for case, (label, prefix, source) in CASES.items():
        runner = Runner(cfg, head_params(params, prefix), backend=backend, mtp_source=source)
        for k in ks:
            runner.prepare(len(prompts[0]), k, greedy=False)
            if on_step:
                on_step(f"({case}) {label}, k={k}")
            row = StudyRow(case, k, 0, 0, 0, 0, True)
            for p, want in zip(prompts, greedy, strict=True):
                got, st = speculative_generate(runner, p, n_new, k)
                row.drafted += st.drafted
                row.accepted += st.accepted
                row.tokens += st.tokens
                row.main_calls += st.calls
                row.identical &= got == want
            rows.append(row)
    return rows
