"""Greedy decoding and speculative decoding with the MTP head, one compiled graph per call.

Greedy decoding makes one call per token: the main model over the newest token, and the
argmax of its logits computed in the graph.

Speculative decoding makes one call for the prompt and then one call per *round*, each a
single graph compiled once (fixed shapes, whatever the round accepts):

- **prompt** (:func:`build_prefill`): the main model over the prompt gives the first new
  token; the MTP head is fed every prompt position (hidden state at t, token at t+1) and
  chains k drafts after the first token (argmax, embedding lookup, head, argmax...).
- **round** (:func:`build_round`), fed the last emitted token and the k drafts at
  positions ``start..start+k``:

  1. the main model verifies them in one pass: its greedy choice after each of them;
  2. the number of drafts accepted, ``a``, is the length of the prefix where every draft
     equals the main model's choice before it (``equal``, then the first mismatch found by
     ``argmax``); the round emits the choices ``0..a``, every one the main model's argmax
     given the tokens before it, so the output equals greedy decoding;
  3. the MTP head is fed all k+1 (hidden state, choice) pairs; row ``a`` (``get_rows``
     with the in-graph index) is the last accepted pair, and the next k drafts are
     chained from it, at cache slots computed from ``start + a``.

  The KV caches are states updated in place (``set_rows``). Rejected positions are
  "rolled back" by position alone: the next round writes its keys from the first
  rejected slot on before any query reads them, and the causal mask hides every slot
  past a query's position. The round also computes the next round's tokens and start,
  so they go straight back in: the host dispatches the fewest rounds that could finish
  the generation, then reads their choices and accepted counts (greedy decoding gets the
  same treatment: each step's choice is the next step's token, read at the end).

The MTP head's cache slot for a (hidden state at t, token at t+1) pair is t, as in
training (``examples/train_tiny.py``).

With a cacheless head (``head="light"``, :class:`~graphc.models.qwen.LightMtpHead`, or
``head="mlp"``, :class:`~graphc.models.qwen.MlpMtpHead`: no attention, no KV cache)
there is nothing to keep in step: the prompt graph is written row by row and read at its
last row, so row pruning applies the head to the last pair only (the last prompt
position's hidden state, the first new token), and a round applies it to the last
accepted pair only (row ``a`` of the hidden states and of the choices, by ``get_rows``),
each then chaining k-1 more drafts. Neither graph has an MTP cache state.

"Equals greedy decoding" holds up to float32 near-ties: a round computes k+1 rows in one
pass and a greedy step one row, and the kernels may round the two differently in the last
bits. Where the main model's two best logits lie within that rounding of each other, the
two may pick different tokens -- each an argmax within the rounding
(``tests/test_speculative_review.py`` builds such a case).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import graphc as gc
from graphc.models.qwen import (
    LightMtpHead,
    MlpMtpHead,
    MtpHead,
    QwenConfig,
    build_main,
    light_param_shapes,
    main_forward,
    mlp_param_shapes,
    mtp_param_shapes,
    param_shapes,
)

SOURCES = {"pre_norm": "h_pre_norm", "post_norm": "h_post_norm"}
"""Which main-model hidden state feeds the MTP head -> the name of that output."""

HEADS = ("block", "light", "mlp")
"""The MTP head kinds: ``block`` (:class:`~graphc.models.qwen.MtpHead`, params
``mtp.*``, a transformer block with a KV cache), ``light``
(:class:`~graphc.models.qwen.LightMtpHead`, params ``mtpl.*``, no cache) and ``mlp``
(:class:`~graphc.models.qwen.MlpMtpHead`, params ``mtpm.*``, one hidden layer, no
cache)."""

HEAD_SOURCES = {"block": ("pre_norm", "post_norm"), "light": ("pre_norm",),
                "mlp": (MlpMtpHead.SOURCE,)}
"""The hidden states each head kind may be fed, its default first: the block head has a
checkpoint trained on each (``mtp.*`` and ``mtp_post.*``, see
:mod:`graphc.models.study`); the light head was trained on the pre-norm state and the
MLP head on the post-norm one, and feeding either the other state is the very bug this
project exists to catch, so it is refused."""

CACHELESS = ("light", "mlp")
"""Heads without attention or a KV cache: applied to the pairs whose drafts are used."""

ROUND_READS = {"choices": "all", "accepted": "all", "next_tokens": "all", "next_start": "all"}
"""What a round returns: the host reads ``choices`` and ``accepted``; ``next_tokens`` and
``next_start`` go straight back into the next round (the prompt call returns
``next_tokens`` too, with ``first``)."""


@dataclass
class SpecStats:
    """What a generation did. ``calls`` counts compiled-graph calls (each one dispatch and
    one host round trip, each one main-model pass); ``seconds`` is the whole generation's
    wall time, ``prompt_seconds`` its prompt call's (until the first token is on the
    host)."""

    tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    calls: int = 0
    seconds: float = 0.0
    prompt_seconds: float = 0.0
    accepted_per_round: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Accepted drafts over proposed drafts."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_call(self) -> float:
        """Tokens generated per call (1.0 for plain greedy decoding)."""
        return self.tokens / self.calls if self.calls else 0.0

    @property
    def calls_per_token(self) -> float:
        """Calls per generated token (1.0 for plain greedy decoding)."""
        return self.calls / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Tokens generated per second of wall time (the prompt call included)."""
        return self.tokens / self.seconds if self.seconds else 0.0

    @property
    def decode_tokens_per_second(self) -> float:
        """Tokens after the first per second after the prompt call: decoding speed, the
        prompt's processing left out (``prompt_seconds`` runs until the first token is
        on the host)."""
        decode = self.seconds - self.prompt_seconds
        return (self.tokens - 1) / decode if decode > 0 and self.tokens > 1 else 0.0


def build_greedy(cfg: QwenConfig, n_tokens: int) -> gc.Graph:
    """The main model (:func:`build_main`) with two more outputs: ``choice`` i32[n], the
    argmax of each row's logits, and ``next_pos`` i32[n], each row's position + 1 (a
    greedy step reads their last rows: the next step's token and position, fed straight
    back in)."""
    g = build_main(cfg, n_tokens, name=f"greedy_{n_tokens}")
    g.set_output(g.argmax(g.outputs["logits"], axis=-1), "choice")
    pos = g.leaf("pos")
    assert pos is not None
    g.set_output(g.add(pos, g.full((n_tokens,), 1, "i32")), "next_pos")
    return g


GREEDY_READS = {"choice": [-1], "next_pos": [-1]}
"""What greedy decoding reads from :func:`build_greedy`'s graph: the last row of each."""


def _chain(g: gc.Graph, head: MtpHead, m: gc.Tensor, slot: gc.Tensor, k: int) -> gc.Tensor:
    """k chained drafts i32[k] from the head's hidden state ``m`` [1, d] (the pair at cache
    slot ``slot`` i32[1]): each draft is the argmax of the head's logits, and the next pair
    (the head's own hidden state, that draft) goes in the next slot. Assigns the head's
    cache."""
    drafts = [g.argmax(head.logits(m), axis=-1)]
    one = g.full((1,), 1, "i32")
    for _ in range(1, k):
        slot = g.add(slot, one)
        m = head.step(m, drafts[-1], slot)
        drafts.append(g.argmax(head.logits(m), axis=-1))
    head.finish()
    return drafts[0] if k == 1 else g.concat(drafts, axis=0)


def _check_head(head: str) -> None:
    if head not in HEADS:
        raise gc.GraphError(f"the MTP head must be one of {list(HEADS)}, got {head!r}")


def head_source(head: str, source: str | None = None) -> str:
    """The hidden state (a key of :data:`SOURCES`) the ``head`` kind reads: ``source``, or
    the head's default when None. A GraphError when the head was not trained on it."""
    _check_head(head)
    allowed = HEAD_SOURCES[head]
    if source is None:
        return allowed[0]
    if source not in SOURCES:
        raise gc.GraphError(f"mtp_source must be one of {sorted(SOURCES)}, got {source!r}")
    if source not in allowed:
        raise gc.GraphError(f"the {head} head was trained on the {allowed[0]} hidden state; "
                            f"feeding it {source} is the silent pre-/post-norm mix-up",
                            fix=f"pass mtp_source={allowed[0]!r} or leave it out")
    return source


def _cacheless_drafts(g: gc.Graph, cfg: QwenConfig, head: str, hidden: gc.Tensor,
                      token: gc.Tensor, k: int) -> gc.Tensor:
    """Drafts i32[n, k] from a cacheless head (``light`` or ``mlp``) applied to n pairs
    (``hidden`` [n, d], ``token`` i32[n]) and chained k-1 times; row i depends on row i
    of the inputs only, so a caller that reads one row gets the rest pruned."""
    n = token.shape[0]
    Step = Callable[[gc.Tensor, gc.Tensor], gc.Tensor]
    first: Step
    chain: Step
    logits: Callable[[gc.Tensor], gc.Tensor]
    if head == "light":  # the same step from the main model's state and from its own
        light = LightMtpHead(g, cfg)
        first, chain, logits = light.step, light.step, light.logits
    else:
        mlp = MlpMtpHead(g, cfg)
        first, chain, logits = mlp.first, mlp.chain, mlp.logits
    state = first(hidden, token)
    drafts = [g.argmax(logits(state), axis=-1, keepdims=True)]
    for _ in range(1, k):
        state = chain(state, g.reshape(drafts[-1], (n,)))
        drafts.append(g.argmax(logits(state), axis=-1, keepdims=True))
    return drafts[0] if k == 1 else g.concat(drafts, axis=1)


def build_prefill(cfg: QwenConfig, n_prompt: int, k: int, source: str | None = None,
                  head: str = "block") -> gc.Graph:
    """Speculative prompt processing as one graph.

    Inputs: ``tokens`` i32[n] (the prompt), ``pos`` i32[n] (0..n-1). States: the main
    model's KV caches (written at 0..n-1) and, for the ``block`` head, the MTP head's
    (written at 0..n-1, and at n..n+k-2 by the chain). Outputs: ``first`` (the first new
    token, at position n) and ``next_tokens`` (``first``, then the drafts for positions
    n+1..n+k: the first round's ``tokens``).

    With the ``block`` head, ``first`` is i32[1] and ``next_tokens`` i32[k+1]. A cacheless
    head (``light``, ``mlp``) needs only the last pair, so its graph is written row by
    row instead: ``first`` i32[n] and ``next_tokens`` i32[n, k+1] hold, in row i, what
    the prompt's first i+1 tokens would give. The caller reads the last row
    (:data:`PREFILL_READS`) and row pruning computes nothing else past the KV-cache
    writes, just as for greedy decoding's prompt call.
    """
    if k < 1 or n_prompt < 1:
        raise gc.GraphError(f"need a prompt and at least one draft, got n={n_prompt}, k={k}")
    source = head_source(head, source)
    g = gc.Graph(f"spec_prefill_{n_prompt}_k{k}" + ("" if head == "block" else f"_{head}"))
    tokens = g.input("tokens", (n_prompt,), "i32")
    pos = g.input("pos", (n_prompt,), "i32")
    h_pre, h_post = main_forward(g, cfg, tokens, pos)
    lm_head = g.leaf("lm_head")
    assert lm_head is not None
    hidden = h_pre if SOURCES[source] == "h_pre_norm" else h_post
    if head in CACHELESS:
        choice = g.argmax(h_post @ lm_head, axis=-1, keepdims=True)  # [n, 1]
        drafts = _cacheless_drafts(g, cfg, head, hidden, g.reshape(choice, (n_prompt,)), k)
        g.set_output(g.reshape(choice, (n_prompt,)), "first")
        g.set_output(g.concat([choice, drafts], axis=1), "next_tokens")
        return g
    first = g.argmax(g.slice(h_post, 0, n_prompt - 1, n_prompt) @ lm_head, axis=-1)
    # the head sees (h_t, x_{t+1}) for every prompt position t; the last pair's token is
    # the first new one
    nxt = first if n_prompt == 1 else g.concat([g.slice(tokens, 0, 1, n_prompt), first])
    block_head = MtpHead(g, cfg)
    mx = block_head.step(hidden, nxt, pos)
    last = g.slice(pos, 0, n_prompt - 1, n_prompt)
    drafts = _chain(g, block_head, g.slice(mx, 0, n_prompt - 1, n_prompt), last, k)
    g.set_output(first, "first")
    g.set_output(g.concat([first, drafts]), "next_tokens")
    return g


def prefill_reads(head: str) -> dict[str, object]:
    """What speculative decoding reads from :func:`build_prefill`'s graph: everything
    for the ``block`` head, the last row for a cacheless one."""
    _check_head(head)
    sel: object = [-1] if head in CACHELESS else "all"
    return {"first": sel, "next_tokens": sel}


def build_round(cfg: QwenConfig, k: int, source: str | None = None, head: str = "block"
                ) -> gc.Graph:
    """One speculative round as one graph (see the module docstring).

    Inputs: ``tokens`` i32[k+1] (the last emitted token, then k drafts), ``start`` i32[1]
    (the position of ``tokens[0]``). States: the main model's KV caches and, for the
    ``block`` head, the MTP head's, updated in place; the caller guarantees
    ``start + 2k - 1 <= max_ctx`` (``start + k + 1 <= max_ctx`` for a cacheless head,
    which is applied to the last accepted pair only). Outputs:
    ``choices`` i32[k+1] (the main model's argmax after each fed token), ``accepted``
    i32[1] (``a``: drafts 0..a-1 equal choices 0..a-1, so choices 0..a are emitted),
    ``next_tokens`` i32[k+1] (choice ``a``, then the next round's k drafts, for positions
    start+a+1..start+a+k+1) and ``next_start`` i32[1] (start+a+1): the next round's
    inputs, so they never need to visit the host.
    """
    if k < 1:
        raise gc.GraphError(f"the draft length must be at least 1, got {k}")
    source = head_source(head, source)
    g = gc.Graph(f"spec_round_k{k}" + ("" if head == "block" else f"_{head}"))
    tokens = g.input("tokens", (k + 1,), "i32")
    start = g.input("start", (1,), "i32")
    pos = g.add(start, g.const(list(range(k + 1)), dtype="i32"), name="pos")
    h_pre, h_post = main_forward(g, cfg, tokens, pos)
    lm_head = g.leaf("lm_head")
    assert lm_head is not None
    choices = g.argmax(h_post @ lm_head, axis=-1, name="choices")
    match = g.equal(g.slice(tokens, 0, 1, k + 1), g.slice(choices, 0, 0, k))
    miss = g.sub(g.full((k,), 1, "i32"), g.cast(match, "i32"))
    # the first mismatch (argmax returns the first maximum), or k when every draft matched
    accepted = g.argmax(g.concat([miss, g.const([1], dtype="i32")]), axis=0, keepdims=True,
                        name="accepted")
    hidden = h_pre if SOURCES[source] == "h_pre_norm" else h_post
    if head in CACHELESS:  # the last accepted pair only
        drafts = g.reshape(_cacheless_drafts(g, cfg, head, g.get_rows(hidden, accepted),
                                             g.get_rows(choices, accepted), k), (k,))
    else:
        block_head = MtpHead(g, cfg)
        # rows past `accepted` are overwritten next round
        mx = block_head.step(hidden, choices, pos)
        drafts = _chain(g, block_head, g.get_rows(mx, accepted), g.add(start, accepted), k)
    g.set_output(choices, "choices")
    g.set_output(accepted, "accepted")
    g.set_output(g.concat([g.get_rows(choices, accepted), drafts]), "next_tokens")
    g.set_output(g.add(g.add(start, accepted), g.full((1,), 1, "i32")), "next_start")
    return g


def rigged_params(cfg: QwenConfig) -> dict[str, np.ndarray]:
    """Weights under which the next token is always (token + 1) % vocab and every MTP head
    (``mtp.*``, the light ``mtpl.*`` and the MLP ``mtpm.*``) drafts (token + 1) % vocab from
    the token it is given, so every draft is right (needs ``d_model >= vocab``). Every
    matrix keeps its full size, so calls cost what a model of these sizes costs."""
    v, d = cfg.vocab, cfg.d_model
    if d < v:
        raise gc.GraphError(f"rigged weights need d_model >= vocab, got {d} < {v}")
    p = {k: np.zeros(s, np.float32) for k, s in (param_shapes(cfg) | mtp_param_shapes(cfg)
                                                  | light_param_shapes(cfg)
                                                  | mlp_param_shapes(cfg)).items()}
    for name, value in p.items():
        if name.endswith("norm"):
            p[name] = np.ones_like(value)
    p["embed"][np.arange(v), np.arange(v)] = 1.0  # one-hot embeddings
    p["lm_head"][np.arange(v), (np.arange(v) + 1) % v] = 1.0  # e_i -> logit peak at i+1
    p["mtp.proj"][d + np.arange(d), np.arange(d)] = 1.0  # keep the embedding half
    p["mtpl.proj"][d + np.arange(d), np.arange(d)] = 1.0
    # the MLP head's state is silu(10) on the token's own unit (its hidden input and its
    # previous state weigh nothing), and that unit's logit peaks at token + 1
    p["mtpm.b"][np.arange(v), np.arange(v)] = 10.0
    p["mtpm.w"][np.arange(v), (np.arange(v) + 1) % v] = 1.0
    return p


class Runner:
    """Compiles and caches one model's graphs (per kind, prompt length and draft length)
    for one backend. ``head`` picks the MTP head speculative decoding drafts with (one of
    :data:`HEADS`), ``mtp_source`` the hidden state it reads (default: the one the head
    was trained on, :func:`head_source`). ``compile_seconds`` sums the time spent
    compiling."""

    def __init__(self, cfg: QwenConfig, params: Mapping[str, np.ndarray],
                 backend: str = "jax", mtp_source: str | None = None,
                 compile_options: Mapping[str, Any] | None = None, head: str = "block"
                 ) -> None:
        mtp_source = head_source(head, mtp_source)
        self.head = head
        self.cfg = cfg
        self.params = dict(params)
        self.backend = backend
        self.mtp_source = mtp_source
        self.options = dict(compile_options or {})
        self._exes: dict[tuple[str, int, int], gc.Executable] = {}
        self.compile_seconds = 0.0

    def _exe(self, key: tuple[str, int, int], build: Callable[[], gc.Graph],
             reads: Mapping[str, object]) -> gc.Executable:
        if key not in self._exes:
            t0 = time.perf_counter()
            g = build()
            params = {n: v for n, v in self.params.items() if n in g.params}
            self._exes[key] = gc.compile(g, params=params, reads=dict(reads),
                                         backend=self.backend, **self.options)
            self.compile_seconds += time.perf_counter() - t0
        return self._exes[key]

    def greedy(self, prompt_len: int) -> tuple[gc.Executable, gc.Executable]:
        """(prompt processing, one decode step) for greedy decoding; each reads the last
        row of ``choice`` and ``next_pos`` (:data:`GREEDY_READS`; a step has one row)."""
        cfg = self.cfg
        return (self._exe(("greedy", prompt_len, 0), lambda: build_greedy(cfg, prompt_len),
                          GREEDY_READS),
                self._exe(("greedy", 1, 0), lambda: build_greedy(cfg, 1),
                          {n: "all" for n in GREEDY_READS}))

    def speculative(self, prompt_len: int, k: int) -> tuple[gc.Executable, gc.Executable]:
        """(prompt processing, one round) for speculative decoding with ``k`` drafts."""
        cfg, src, head = self.cfg, self.mtp_source, self.head
        return (self._exe(("prefill", prompt_len, k),
                          lambda: build_prefill(cfg, prompt_len, k, src, head),
                          prefill_reads(head)),
                self._exe(("round", 0, k), lambda: build_round(cfg, k, src, head),
                          ROUND_READS))

    def prepare(self, prompt_len: int, k: int | None = None, greedy: bool = True) -> None:
        """Compile, ahead of timing, the executables generation will use."""
        if greedy:
            self.greedy(prompt_len)
        if k is not None:
            self.speculative(prompt_len, k)


def _check_room(cfg: QwenConfig, prompt: list[int], n_new: int, k: int = 0,
                head: str = "block") -> None:
    if not prompt:
        raise gc.GraphError("the prompt is empty", fix="give at least one token")
    if n_new < 1:
        raise gc.GraphError(f"generate at least one token, got {n_new}")
    # the last round starts at len(prompt) + n_new - 2 at the latest; the main model
    # writes k slots past it, the block head's chain up to 2k - 1
    slack = max(2 * k - 2 if head == "block" else k - 1, 0)
    if len(prompt) + n_new + slack > cfg.max_ctx:
        raise gc.GraphError(f"prompt ({len(prompt)}) + new tokens ({n_new})"
                            + (f" + {slack} slots for the drafts" if slack else "")
                            + f" exceed the KV cache of {cfg.max_ctx}",
                            fix="generate fewer tokens or raise max_ctx")
    bad = [t for t in prompt if not 0 <= t < cfg.vocab]
    if bad:
        raise gc.GraphError(f"token {bad[0]} is outside the vocabulary of {cfg.vocab}")


def greedy_generate(runner: Runner, prompt: list[int], n_new: int, *, stream: bool = False
                    ) -> tuple[list[int], SpecStats]:
    """Plain greedy decoding: one call per token. Each step's ``choice`` and ``next_pos``
    go straight back in as the next step's token and position (on the JAX backend they
    stay on the device), and the
    host reads the tokens at the end: no decode step waits for the host. (The first
    token, the prompt call's, is read when that call returns, which times the prompt
    apart from decoding: ``prompt_seconds``.) ``stream``: read
    each token as soon as its call returns (what printing tokens as they come, or
    stopping at an end token, needs), before the next call."""
    _check_room(runner.cfg, prompt, n_new)
    pre, step = runner.greedy(len(prompt))
    stats = SpecStats()
    t0 = time.perf_counter()
    pre.reset_state()
    out = pre.run({"tokens": np.asarray(prompt, np.int32),
                   "pos": np.arange(len(prompt), dtype=np.int32)})
    stats.calls += 1
    chosen = [np.asarray(out["choice"])]  # the prompt call reads its last row: shape [1]
    stats.prompt_seconds = time.perf_counter() - t0
    step.state = pre.state
    for _ in range(1, n_new):
        # the device arrays go back in; the host reads its copy, if at all, beside them
        out = step.run({"tokens": out["choice"], "pos": out["next_pos"]})
        stats.calls += 1
        chosen.append(np.asarray(out["choice"]) if stream else out["choice"])
    tokens = [int(np.asarray(c)[-1]) for c in chosen]  # host arrays: read once, at the end
    stats.seconds = time.perf_counter() - t0
    stats.tokens = len(tokens)
    return tokens, stats


def speculative_generate(runner: Runner, prompt: list[int], n_new: int, k: int = 3, *,
                         stream: bool = False) -> tuple[list[int], SpecStats]:
    """Speculative decoding with ``k`` drafts per round from the runner's MTP head (one
    of :data:`HEADS`): one call for the prompt, then one call per round (see the module
    docstring). Equal to greedy decoding. The first token is read when the prompt call
    returns (``prompt_seconds``, as in :func:`greedy_generate`), the rounds' tokens at
    the end. ``stream``: read each round's tokens as soon as it returns, before the next
    call."""
    if k < 1:
        raise gc.GraphError(f"the draft length must be at least 1, got {k}")
    _check_room(runner.cfg, prompt, n_new, k, runner.head)
    pre, rnd = runner.speculative(len(prompt), k)
    stats = SpecStats()
    t0 = time.perf_counter()
    pre.reset_state()
    out = pre.run({"tokens": np.asarray(prompt, np.int32),
                   "pos": np.arange(len(prompt), dtype=np.int32)})
    stats.calls += 1
    first = np.asarray(out["first"])
    stats.prompt_seconds = time.perf_counter() - t0
    tokens: list[int] = []  # after the first
    # a cacheless head's prompt call returns its last row, [1, k+1]
    feed: dict[str, Any] = {"tokens": out["next_tokens"].reshape(k + 1),
                            "start": np.array([len(prompt)], np.int32)}
    rnd.state = pre.state
    while 1 + len(tokens) < n_new:
        # a round emits at most k+1 tokens: run the fewest rounds that could finish,
        # feeding each its inputs from the one before (no host round trip), then read
        rounds = []
        for _ in range(1 if stream else -(-(n_new - 1 - len(tokens)) // (k + 1))):
            out = rnd.run(feed)
            stats.calls += 1
            rounds.append((out["choices"], out["accepted"]))
            feed = {"tokens": out["next_tokens"], "start": out["next_start"]}
        for choices, accepted in rounds:
            a = int(np.asarray(accepted)[0])
            tokens.extend(np.asarray(choices, np.int32)[: a + 1].tolist())
            stats.drafted += k
            stats.accepted += a
            stats.accepted_per_round.append(a)
    tokens = [int(first.reshape(-1)[0]), *tokens][:n_new]
    stats.seconds = time.perf_counter() - t0
    stats.tokens = len(tokens)
    return tokens, stats
