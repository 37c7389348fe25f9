"""interleaved_medians: every function is warmed up, then timed in turn, with sync applied
inside the timed region. (No wall-clock limits: only counts and order are checked.)"""

from __future__ import annotations

from graphc.timing import interleaved_medians


def test_calls_in_turn_with_warmup_and_sync() -> None:
    calls: list[str] = []
    synced: list[object] = []

    def make(name: str):  # type: ignore[no-untyped-def]
        def fn() -> str:
            calls.append(name)
            return name
        return fn

    medians = interleaved_medians([make("a"), make("b")], repeats=3, warmup=2,
                                  sync=synced.append)
    assert len(medians) == 2 and all(m >= 0 for m in medians)
    assert calls == ["a", "b"] * 5
    assert synced == ["a", "b"] * 5
