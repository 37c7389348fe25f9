"""Greedy decoding and speculative decoding with the MTP head, on any graphc backend.

Speculative decoding: after prompt processing, repeatedly

1. draft k tokens with the MTP head (chained: each draft feeds the head's own hidden
   state and the drafted token back in);
2. verify them with one main-model call over k+1 tokens (the last accepted token and the
   k drafts), which yields the main model's own greedy choice after each of them;
3. accept the longest prefix of drafts that matches those choices, plus the main model's
   next token; the KV caches are "rolled back" past rejected tokens simply by writing
   the next call at the first rejected position (the causal mask hides the rest);
4. feed the accepted positions through the MTP head to keep its cache in step.

Output equals plain greedy decoding token for token: every emitted token is the main
model's argmax given the tokens before it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from graphc.examples.qwen import QwenConfig, build_main, build_mtp

import graphc as gc

SOURCES = {"pre_norm": "h_pre_norm", "post_norm": "h_post_norm"}
# What each call reads (the executables are compiled for exactly these reads). "{src}" is
# the hidden state the MTP head is fed from.
READS: dict[str, dict[str, object]] = {
    "prompt": {"logits": [-1], "{src}": "all"},       # speculative prompt processing
    "verify": {"logits": "all", "{src}": "all"},      # k+1 tokens checked at once
    "greedy_prompt": {"logits": [-1]},
    "greedy_step": {"logits": "all"},
    "mtp_sync": {"logits": [-1], "mtp_hidden": [-1]},  # accepted pairs; draft from the last
    "mtp_chain": {"logits": "all", "mtp_hidden": "all"},  # one chained draft
}


@dataclass
class SpecStats:
    """What a generation did."""

    tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    main_calls: int = 0
    mtp_calls: int = 0
    seconds: float = 0.0
    accepted_per_round: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Accepted drafts over proposed drafts."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_call(self) -> float:
        """Tokens generated per main-model call (1.0 for plain greedy decoding)."""
        return self.tokens / self.main_calls if self.main_calls else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Tokens generated per second of wall time."""
        return self.tokens / self.seconds if self.seconds else 0.0


class Runner:
    """Compiles and caches the graphs of one model (per kind and token count) and carries
    the KV caches between them."""

    def __init__(self, cfg: QwenConfig, params: Mapping[str, np.ndarray],
                 backend: str = "jax", mtp_source: str = "pre_norm",
                 compile_options: Mapping[str, Any] | None = None) -> None:
        if mtp_source not in SOURCES:
            raise gc.GraphError(f"mtp_source must be one of {sorted(SOURCES)}, "
                                f"got {mtp_source!r}")
        self.cfg = cfg
        self.params = dict(params)
        self.backend = backend
        self.source = SOURCES[mtp_source]
        self.options = dict(compile_options or {})
        self._exes: dict[tuple[str, int, str], gc.Executable] = {}
        self.main_state: dict[str, Any] | None = None
        self.mtp_state: dict[str, Any] | None = None
        self.compile_seconds = 0.0

    def _exe(self, kind: str, n: int, reads: Mapping[str, object]) -> gc.Executable:
        key = (kind, n, repr(sorted(reads.items())))
        if key not in self._exes:
            t0 = time.perf_counter()
            g = build_main(self.cfg, n) if kind == "main" else build_mtp(self.cfg, n)
            params = {k: v for k, v in self.params.items() if k in g.params}
            self._exes[key] = gc.compile(g, params=params, reads=dict(reads),
                                         backend=self.backend, **self.options)
            self.compile_seconds += time.perf_counter() - t0
        return self._exes[key]

    def reads(self, call: str) -> dict[str, object]:
        """The reads of one kind of call (see READS), with the MTP source filled in."""
        return {self.source if k == "{src}" else k: v for k, v in READS[call].items()}

    def prepare(self, prompt_len: int, k: int | None = None, greedy: bool = True) -> None:
        """Compile, ahead of timing, every executable generation will use: prompt
        processing, and for draft length ``k`` the verify call and every MTP call size."""
        if greedy:
            self._exe("main", prompt_len, self.reads("greedy_prompt"))
            self._exe("main", 1, self.reads("greedy_step"))
        if k is not None:
            self._exe("main", prompt_len, self.reads("prompt"))
            self._exe("main", k + 1, self.reads("verify"))
            self._exe("mtp", prompt_len, self.reads("mtp_sync"))
            for n in range(1, k + 2):
                self._exe("mtp", n, self.reads("mtp_sync"))
            if k > 1:
                self._exe("mtp", 1, self.reads("mtp_chain"))

    def reset(self) -> None:
        """Empty KV caches (a new sequence)."""
        self.main_state = None
        self.mtp_state = None

    def _call(self, kind: str, feeds: dict[str, np.ndarray], reads: Mapping[str, object]
              ) -> dict[str, np.ndarray]:
        """Run graph ``kind`` on ``feeds`` with that model's KV caches, and keep the
        updated caches for the next call (zeros for a new sequence)."""
        exe = self._exe(kind, len(feeds["tokens"]), reads)
        state = self.main_state if kind == "main" else self.mtp_state
        if state is None:
            exe.reset_state()
        else:
            exe.state = state
        out = exe.run(feeds)
        if kind == "main":
            self.main_state = exe.state
        else:
            self.mtp_state = exe.state
        return {k: np.asarray(v) for k, v in out.items()}

    def main(self, tokens: list[int], start: int, reads: Mapping[str, object]
             ) -> dict[str, np.ndarray]:
        """Run the main model on ``tokens`` at positions ``start...``."""
        return self._call("main", {"tokens": np.asarray(tokens, np.int32),
                                   "pos": np.arange(start, start + len(tokens), dtype=np.int32)},
                          reads)

    def mtp(self, hidden: np.ndarray, tokens: list[int], start: int,
            reads: Mapping[str, object]) -> dict[str, np.ndarray]:
        """Run the MTP head on (hidden[i], tokens[i]) pairs at slots ``start...``."""
        return self._call("mtp", {"hidden": np.asarray(hidden, np.float32),
                                  "tokens": np.asarray(tokens, np.int32),
                                  "pos": np.arange(start, start + len(tokens), dtype=np.int32)},
                          reads)


def _check_room(cfg: QwenConfig, prompt: list[int], n_new: int, k: int = 0) -> None:
    if not prompt:
        raise gc.GraphError("the prompt is empty", fix="give at least one token")
    if len(prompt) + n_new + k + 1 > cfg.max_ctx:
        raise gc.GraphError(f"prompt ({len(prompt)}) + new tokens ({n_new}) + drafts ({k}) "
                            f"exceed the KV cache of {cfg.max_ctx}",
                            fix="generate fewer tokens or raise max_ctx")
    bad = [t for t in prompt if not 0 <= t < cfg.vocab]
    if bad:
        raise gc.GraphError(f"token {bad[0]} is outside the vocabulary of {cfg.vocab}")


def greedy_generate(runner: Runner, prompt: list[int], n_new: int
                    ) -> tuple[list[int], SpecStats]:
    """Plain greedy decoding: one main-model call per token."""
    _check_room(runner.cfg, prompt, n_new)
    runner.reset()
    stats = SpecStats()
    t0 = time.perf_counter()
    out = runner.main(prompt, 0, runner.reads("greedy_prompt"))
    stats.main_calls += 1
    tokens = [int(np.argmax(out["logits"][-1]))]
    while len(tokens) < n_new:
        out = runner.main([tokens[-1]], len(prompt) + len(tokens) - 1,
                          runner.reads("greedy_step"))
        stats.main_calls += 1
        tokens.append(int(np.argmax(out["logits"][-1])))
    stats.seconds = time.perf_counter() - t0
    stats.tokens = len(tokens)
    return tokens, stats


def speculative_generate(runner: Runner, prompt: list[int], n_new: int, k: int = 3
                         ) -> tuple[list[int], SpecStats]:
    """Speculative decoding with ``k`` MTP drafts per main-model call (see module doc)."""
    if k < 1:
        raise gc.GraphError(f"the draft length must be at least 1, got {k}")
    _check_room(runner.cfg, prompt, n_new, k)
    runner.reset()
    src = runner.source
    stats = SpecStats()
    t0 = time.perf_counter()
    n = len(prompt)
    out = runner.main(prompt, 0, runner.reads("prompt"))  # prompt processing
    stats.main_calls += 1
    tokens = [int(np.argmax(out["logits"][-1]))]
    # the head sees (h_i, x_{i+1}) for every prompt position: its cache fills up, and the
    # last pair drafts the token after the one just produced
    pairs = prompt[1:] + tokens
    m = runner.mtp(out[src], pairs, 1, runner.reads("mtp_sync"))
    stats.mtp_calls += 1
    while len(tokens) < n_new:
        last = n + len(tokens) - 1  # position of the newest token, already emitted
        drafts = [int(np.argmax(m["logits"][-1]))]
        mh = m["mtp_hidden"][-1:]
        for j in range(1, k):  # chain: feed the head its own hidden state and the draft
            m2 = runner.mtp(mh, [drafts[-1]], last + j + 1, runner.reads("mtp_chain"))
            stats.mtp_calls += 1
            drafts.append(int(np.argmax(m2["logits"][-1])))
            mh = m2["mtp_hidden"]
        ver = runner.main([tokens[-1], *drafts], last, runner.reads("verify"))
        stats.main_calls += 1
        choice = np.argmax(ver["logits"], axis=-1)
        a = 0
        while a < k and drafts[a] == int(choice[a]):
            a += 1
        new = [*drafts[:a], int(choice[a])]
        stats.drafted += k
        stats.accepted += a
        stats.accepted_per_round.append(a)
        tokens.extend(new)
        # keep the head's cache in step with the accepted positions
        hid = ver[src][: a + 1]
        m = runner.mtp(hid, new, last + 1, runner.reads("mtp_sync"))
        stats.mtp_calls += 1
    stats.seconds = time.perf_counter() - t0
    tokens = tokens[:n_new]
    stats.tokens = len(tokens)
    return tokens, stats
