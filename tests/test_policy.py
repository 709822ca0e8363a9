from __future__ import annotations

import random

from vllm_guard.errors import ExitCode
from vllm_guard.failures import Failure, FailureKind
from vllm_guard.policy import Attempt, Discipline, GiveUp, Relaunch, backoff_s, decide

DISCIPLINE = Discipline(
    max_restarts=3,
    window_s=600.0,
    backoff_initial_s=2.0,
    backoff_max_s=30.0,
    backoff_jitter_s=0.0,
    healthy_reset_s=300.0,
)
ARGS = ("--max-model-len", "4096")


def attempt(
    number: int,
    start: float,
    *,
    lasted: float = 5.0,
    healthy_for: float | None = None,
    kind: FailureKind = FailureKind.UNKNOWN,
) -> Attempt:
    ready = None if healthy_for is None else start + lasted - healthy_for
    return Attempt(number, ARGS, start, start + lasted, ready, 1, Failure(kind, "line"))


def test_a_failure_restarts_with_the_same_flags_after_the_first_backoff() -> None:
    decision = decide([attempt(1, 0.0)], DISCIPLINE, now=5.0, rng=random.Random(0))
    assert decision == Relaunch(ARGS, 2.0, "unknown: same flags")


def test_backoff_doubles_and_is_capped() -> None:
    history = [attempt(n, n * 10.0) for n in range(1, 4)]
    delays = [decide(history[:n], DISCIPLINE, now=100.0, rng=random.Random(0)) for n in range(1, 4)]
    assert [d.delay_s for d in delays if isinstance(d, Relaunch)] == [2.0, 4.0, 8.0]
    assert backoff_s(DISCIPLINE, 10, random.Random(0)) == 30.0


def test_jitter_comes_from_the_injected_random_source() -> None:
    jittery = Discipline(3, 600.0, 2.0, 30.0, 1.0, 300.0)
    a = backoff_s(jittery, 1, random.Random(42))
    b = backoff_s(jittery, 1, random.Random(42))
    assert a == b
    assert 2.0 <= a <= 3.0


def test_a_long_healthy_stretch_resets_the_backoff() -> None:
    history = [attempt(1, 0.0), attempt(2, 10.0), attempt(3, 20.0, lasted=1000.0, healthy_for=900.0)]
    decision = decide(history, DISCIPLINE, now=1020.0, rng=random.Random(0))
    assert isinstance(decision, Relaunch)
    assert decision.delay_s == 2.0


def test_the_budget_counts_restarts_in_the_window() -> None:
    history = [attempt(n, n * 10.0) for n in range(1, 5)]  # 3 restarts
    decision = decide(history, DISCIPLINE, now=50.0, rng=random.Random(0))
    assert isinstance(decision, GiveUp)
    assert decision.exit_code == ExitCode.GAVE_UP
    assert "3 restarts" in decision.reason


def test_restarts_older_than_the_window_do_not_count() -> None:
    history = [attempt(n, n * 1000.0) for n in range(1, 5)]
    assert isinstance(decide(history, DISCIPLINE, now=4010.0, rng=random.Random(0)), Relaunch)


def test_a_permanent_kind_ends_the_run_at_once() -> None:
    decision = decide(
        [attempt(1, 0.0, kind=FailureKind.MODEL_NOT_FOUND)], DISCIPLINE, now=5.0, rng=random.Random(0)
    )
    assert isinstance(decision, GiveUp)
    assert decision.exit_code == ExitCode.PERMANENT
    assert decision.reason.startswith("model_not_found is a permanent failure: There is no such model")


def test_zero_restarts_allowed_gives_up_after_the_first_failure() -> None:
    strict = Discipline(0, 600.0, 2.0, 30.0, 0.0, 300.0)
    assert isinstance(decide([attempt(1, 0.0)], strict, now=5.0, rng=random.Random(0)), GiveUp)
