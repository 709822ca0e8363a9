"""What the next attempt runs: a decision made from the history of attempts, as a value.

This issue's policy restarts with the same flags, with exponential backoff and jitter (tenacity's
wait strategies, fed an injected random source), within a restart budget; permanent failure kinds
end the run at once. The decision types are what the supervisor carries out.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from vllm_guard.errors import ExitCode
from vllm_guard.failures import Failure


@dataclass(frozen=True, slots=True)
class Attempt:
    """One launch of vLLM as the policy sees it. Times are seconds on the supervisor's clock."""

    number: int
    vllm_args: tuple[str, ...]
    started_at: float
    ended_at: float
    ready_at: float | None
    exit_status: int | None  # None when the guard had to kill it
    failure: Failure
    last_line: str = ""  # what vLLM printed last: context when the failure has no evidence

    @property
    def healthy_for_s(self) -> float:
        return 0.0 if self.ready_at is None else self.ended_at - self.ready_at


@dataclass(frozen=True, slots=True)
class Discipline:
    """Restart discipline: how often, how fast, and when to stop trying."""

    max_restarts: int
    window_s: float
    backoff_initial_s: float
    backoff_max_s: float
    backoff_jitter_s: float
    healthy_reset_s: float


@dataclass(frozen=True, slots=True)
class Relaunch:
    vllm_args: tuple[str, ...]
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class GiveUp:
    exit_code: ExitCode
    reason: str


Decision = Relaunch | GiveUp


def backoff_s(discipline: Discipline, failures_in_a_row: int, rng: random.Random) -> float:
    """The delay before same-flag restart number `failures_in_a_row` (1 for the first):
    tenacity's exponential wait, plus jitter drawn from the injected random source (tenacity's
    own jitter strategies draw from the global one)."""
    # Imported here: nothing needs it until an attempt has failed, and `serve` starts vLLM sooner.
    import tenacity  # noqa: PLC0415

    wait = tenacity.wait_exponential(multiplier=discipline.backoff_initial_s, max=discipline.backoff_max_s)
    state = tenacity.RetryCallState(cast(Any, None), None, (), {})
    state.attempt_number = max(failures_in_a_row, 1)
    jitter = rng.uniform(0, discipline.backoff_jitter_s) if discipline.backoff_jitter_s > 0 else 0.0
    return float(wait(state)) + jitter


def failures_in_a_row(history: Sequence[Attempt], discipline: Discipline) -> int:
    """Trailing attempts that failed without a healthy stretch long enough to reset the backoff."""
    count = 0
    for attempt in reversed(history):
        if attempt.healthy_for_s >= discipline.healthy_reset_s:
            break
        count += 1
    return count


def decide(history: Sequence[Attempt], discipline: Discipline, now: float, rng: random.Random) -> Decision:
    """What to do after the last attempt in `history` failed."""
    last = history[-1]
    if last.failure.permanent:
        return GiveUp(
            ExitCode.PERMANENT,
            f"{last.failure.kind.value} is a permanent failure: no restart can fix it",
        )
    restarts = sum(1 for a in history[1:] if a.started_at >= now - discipline.window_s)
    if restarts >= discipline.max_restarts:
        return GiveUp(
            ExitCode.GAVE_UP,
            f"the restart budget is spent: {restarts} restarts within "
            f"{discipline.window_s:g} s (--max-restarts {discipline.max_restarts})",
        )
    delay = backoff_s(discipline, failures_in_a_row(history, discipline), rng)
    return Relaunch(last.vllm_args, delay, f"{last.failure.kind.value}: same flags")
