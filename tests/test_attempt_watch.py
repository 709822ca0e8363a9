"""The attempt watcher on its own: time as numbers, no asyncio, no process."""

from __future__ import annotations

from vllm_guard.attempt_watch import DEAD_ENGINE_EXIT_S, AttemptWatch, Hung, ReadMetrics, Ready
from vllm_guard.vllm_metrics import Snapshot


def watch(**overrides: float) -> AttemptWatch:
    values = {"startup_timeout_s": 60.0, "health_failures": 3, "stall_s": 20.0, **overrides}
    return AttemptWatch(100.0, **values)  # type: ignore[arg-type]


def test_a_load_that_keeps_progressing_is_never_cut_short() -> None:
    w = watch()
    for now in range(110, 1000, 10):
        w.progressed(float(now))
        assert w.answered(float(now) + 5, False, "ConnectError") is None
    hung = w.answered(1060.0, False, "ConnectError")
    assert isinstance(hung, Hung) and "no progress in vLLM's output for 70 s" in hung.reason


def test_ready_is_the_first_200_and_said_once() -> None:
    w = watch()
    assert w.answered(130.0, True, "200") == Ready(30.0)
    assert w.ready_at == 130.0
    assert w.answered(131.0, True, "200") == ReadMetrics()  # the first stall check is due at once
    assert w.answered(132.0, True, "200") is None


def test_after_ready_n_failures_in_a_row_are_a_hang_and_a_200_between_resets_them() -> None:
    w = watch()
    w.answered(101.0, True, "200")
    assert w.answered(102.0, False, "ReadTimeout") is None
    assert w.answered(103.0, False, "ReadTimeout") is None
    w.answered(104.0, True, "200")
    assert w.answered(105.0, False, "ReadTimeout") is None
    assert w.answered(106.0, False, "ReadTimeout") is None
    assert w.answered(107.0, False, "ReadTimeout") == Hung("/health failed 3 times in a row (ReadTimeout)")


def test_a_dead_engine_gets_time_to_exit_by_itself() -> None:
    w = watch(health_failures=1)
    w.answered(101.0, True, "200")
    assert w.answered(102.0, False, "503") is None
    assert w.answered(102.0 + DEAD_ENGINE_EXIT_S, False, "503") is None
    hung = w.answered(103.0 + DEAD_ENGINE_EXIT_S, False, "503")
    assert isinstance(hung, Hung) and "503" in hung.reason


def test_requests_waiting_while_no_token_moves_is_a_hang() -> None:
    w = watch(stall_s=20.0)
    w.answered(101.0, True, "200")
    busy = Snapshot(
        running=2.0,
        waiting=5.0,
        generation_tokens=1000.0,
        prompt_tokens=None,
        kv_cache_usage=None,
        preemptions=None,
    )
    assert w.metrics(110.0, busy) is None
    assert w.metrics(125.0, busy) is None
    hung = w.metrics(131.0, busy)
    assert isinstance(hung, Hung) and "5 waiting" in hung.reason
    assert w.metrics(140.0, None) is None  # no metrics, no evidence: the stall timer starts over
