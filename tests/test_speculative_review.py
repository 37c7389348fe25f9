"""Review of ``graphc.models.speculative``: cases an independent review built against
its claims. The room rule was too strict (fixed); the near-tie divergence is inherent to
verifying k+1 rows in one pass, so the claim now says "up to float32 near-ties" and the
test checks that a divergence is exactly such a tie."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.models.qwen import QwenConfig, build_main, init_params, param_shapes
from graphc.models.speculative import Runner, greedy_generate, speculative_generate


def _h_post(cfg: QwenConfig, params: dict[str, np.ndarray], backend: str, k: int
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """h_post_norm of: position 0 (prompt [1]); position 1 fed token 2 alone (what a
    greedy step computes); position 1 fed token 2 as row 0 of k+1 rows (what a round's
    verification pass computes). None of the three depends on ``lm_head``."""
    main = {n: v for n, v in params.items() if n in param_shapes(cfg)}
    reads = {"h_post_norm": "all"}
    one = gc.compile(build_main(cfg, 1), params=main, reads=reads, backend=backend)
    h0 = np.asarray(one.run({"tokens": np.array([1], np.int32),
                             "pos": np.array([0], np.int32)})["h_post_norm"])[0]
    cache = {n: np.array(v) for n, v in one.state.items()}
    h1_step = np.asarray(one.run({"tokens": np.array([2], np.int32),
                                  "pos": np.array([1], np.int32)})["h_post_norm"])[0]
    many = gc.compile(build_main(cfg, k + 1), params=main, reads=reads, backend=backend)
    many.state = cache
    h1_round = np.asarray(many.run({"tokens": np.array([2] + [0] * k, np.int32),
                                    "pos": np.arange(1, k + 2, dtype=np.int32)}
                                   )["h_post_norm"])[0]
    return h0, h1_step, h1_round


@pytest.mark.parametrize(("backend", "d_model"), [("reference", 64), ("arena", 64),
                                                  ("jax", 32)])
def test_verification_pass_rounds_differently_from_greedy_steps(backend: str,
                                                                d_model: int) -> None:
    """Identical to greedy only up to float32 near-ties of the argmax.

    The round verifies k+1 tokens in one batched pass (matmuls with k+1 rows), greedy
    decodes one token per pass (1 row). In float32 the two give hidden states that differ
    in the last bits (here ~1e-7 at position 1, on every backend: BLAS/XLA pick other
    kernels / sum orders for other row counts). With an ``lm_head`` whose two best logits
    at that position are closer than that difference, the round's ``choices[0]`` and
    greedy's choice are different tokens, and the speculative output differs from greedy
    decoding (k=1, n_new=2, prompt [1]; here greedy gives [2, 1], speculative [2, 0]).

    The lm_head is built from the hidden states (which do not depend on it): column 2
    wins decisively at position 0 (so both emit token 2 first), column 0 is zero, column
    1 is the direction in which the step's and the round's states differ, orthogonal to
    their mean, so its logit is > 0 for one and < 0 for the other.

    Likely fix: none cheap in the graph; make the verification rows bitwise equal to
    single-row decoding (row-independent kernels / fixed reduction order for matmul,
    norms and attention, on every backend), or weaken the claim to "equal up to
    floating-point near-ties" and test it with margins.
    """
    k = 1
    cfg = QwenConfig(vocab=4, d_model=d_model, n_layers=1, n_heads=2, n_kv_heads=1,
                     d_ffn=32, max_ctx=16)
    mismatches = []
    for seed in range(4):
        params = init_params(cfg, seed, mtp=True)
        h0, h_step, h_round = _h_post(cfg, params, backend, k)
        delta = h_step - h_round
        if not delta.any():
            continue  # bitwise equal here: no near-tie to exploit for this seed
        mean = (h_step + h_round) / 2
        w = delta - (delta @ mean) / (mean @ mean) * mean
        alpha = (h0 @ h_step + 1) / (h_step @ h_step)
        lm_head = np.zeros((d_model, cfg.vocab), np.float32)
        lm_head[:, 1] = w / np.abs(w).max()
        lm_head[:, 2] = h0 - alpha * h_step  # > 0 at position 0, -1 at position 1
        params["lm_head"] = lm_head
        runner = Runner(cfg, params, backend=backend)
        plain, _ = greedy_generate(runner, [1], 2)
        spec, _ = speculative_generate(runner, [1], 2, k)
        if spec != plain:
            # greedy's own logits at the divergence: the two tokens tie within rounding
            logits = h_step @ lm_head
            gap = abs(float(logits[plain[1]] - logits[spec[1]]))
            mismatches.append((seed, plain, spec, gap, float(np.abs(logits).max())))
    assert mismatches, "the constructed near-tie no longer diverges: drop this caveat"
    for seed, plain, spec, gap, scale in mismatches:
        assert plain[0] == spec[0] and gap <= 1e-5 * max(scale, 1.0), (seed, plain, spec, gap)


def test_room_rule_refuses_generations_that_fit_the_cache() -> None:
    """Found in review: ``_check_room`` demanded ``len(prompt) + n_new + 2k <= max_ctx``,
    2 slots stricter than needed (fixed).

    The last round starts at most at ``len(prompt) + n_new - 2``; it writes main-cache
    slots up to ``start + k`` and MTP-cache slots up to ``start + a + k - 1 <= start +
    2k - 1``, i.e. ``len(prompt) + n_new + 2k - 3 < max_ctx`` at most. So the exact
    rule is ``len(prompt) + n_new + 2k - 2 <= max_ctx``; with k=1 that is exactly
    greedy's own rule. Yet speculative decoding with k=1 refuses a generation that
    greedy decoding does with the same cache (prompt of 1, 15 new tokens, max_ctx 16).
    (Checked during the review: with the rule relaxed to ``+ 2k - 2``, every boundary
    case k=1,2,3,5 still equals greedy on the reference backend, whose ``set_rows``
    raises on an out-of-range slot, and the arena backend under the sanitizer.)

    Likely fix: ``len(prompt) + n_new + max(2 * k - 2, 0) > cfg.max_ctx`` in
    ``_check_room`` (and ``start + 2k - 1 <= max_ctx`` in ``build_round``'s docstring).
    """
    cfg = QwenConfig(vocab=16, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ffn=32,
                     max_ctx=16)
    runner = Runner(cfg, init_params(cfg, 0, mtp=True), backend="reference")
    plain, _ = greedy_generate(runner, [1], 15)
    spec, _ = speculative_generate(runner, [1], 15, 1)
    assert spec == plain
    for k in (2, 3):  # the rule's exact edge: fits at n_new = 16 - (2k - 2) - 1, not beyond
        n = cfg.max_ctx - (2 * k - 2) - 1
        assert speculative_generate(runner, [1], n, k)[0] == greedy_generate(runner, [1], n)[0]
        with pytest.raises(gc.GraphError, match="exceed the KV cache"):
            speculative_generate(runner, [1], n + 1, k)
