"""Whether one attempt of vLLM is still starting, ready, or hung: a pure state machine fed the
time, its /health answers, the progress of its output and its metrics.

Before ready, the startup timeout counts from vLLM's last sign of progress (a milestone or a
progress bar in its output), so a long load that keeps moving is never cut short. After ready, a
hang is /health failing N times in a row, a 503 (engine dead) that vLLM does not exit after, or
requests waiting while no token is generated for --stall-s (a wedged engine can keep answering
200, vLLM #39863). The supervisor polls and carries the verdicts out; this decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vllm_guard.vllm_metrics import Snapshot

GENERATION_TOKENS = "vllm:generation_tokens_total"

# How long a vLLM whose /health says 503 (engine dead) may take to exit by itself; it takes ~5 s.
DEAD_ENGINE_EXIT_S = 15.0
# How often vLLM's /metrics is read once it is ready, for the stall check.
METRICS_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class Ready:
    """/health answered 200 for the first time, this long after the launch."""

    after_s: float


@dataclass(frozen=True, slots=True)
class Hung:
    """vLLM counts as hung, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class ReadMetrics:
    """Healthy, and a stall check is due: read vLLM's /metrics and hand them to `metrics()`."""


Verdict = Ready | Hung | ReadMetrics | None


class AttemptWatch:
    def __init__(
        self, started: float, *, startup_timeout_s: float, health_failures: int, stall_s: float
    ) -> None:
        self.started = started
        self.ready_at: float | None = None
        self._startup_timeout_s = startup_timeout_s
        self._health_failures = health_failures
        self._stall = StallWatch(stall_s)
        self._scrape_every_s = min(METRICS_INTERVAL_S, stall_s / 2)
        self._progress_at = started
        self._failed = 0
        self._dead_since: float | None = None
        self._next_scrape = 0.0

    def progressed(self, now: float) -> None:
        """vLLM's output moved on (a milestone, a bar): the startup timeout starts again."""
        self._progress_at = now

    def answered(self, now: float, ok: bool, detail: str) -> Verdict:
        """One /health answer: `ok` for a 200, `detail` the status or the error."""
        if ok:
            self._failed = 0
            self._dead_since = None
            if self.ready_at is None:
                self.ready_at = now
                return Ready(now - self.started)
            if now >= self._next_scrape:
                self._next_scrape = now + self._scrape_every_s
                return ReadMetrics()
            return None
        if self.ready_at is None:
            quiet = now - self._progress_at
            if quiet > self._startup_timeout_s:
                return Hung(
                    f"no /health 200 and no progress in vLLM's output for {quiet:.0f} s "
                    f"(--startup-timeout-s {self._startup_timeout_s:g})"
                )
            return None
        if detail == "503":
            # vLLM answers 503 once its engine is dead and exits by itself a few seconds later
            # (#21728), with the root cause in its output: let it, within bounds.
            self._dead_since = now if self._dead_since is None else self._dead_since
            if now - self._dead_since > DEAD_ENGINE_EXIT_S:
                return Hung(
                    f"/health has said 503 (engine dead) for {DEAD_ENGINE_EXIT_S:g} s and vLLM has not exited"
                )
            return None
        self._failed += 1
        if self._failed >= self._health_failures:
            return Hung(f"/health failed {self._failed} times in a row ({detail})")
        return None

    def resumed(self) -> None:
        """vLLM's engine retried in place (fault tolerance): the requests it held were aborted,
        so what the stall check saw before says nothing now."""
        self._stall.reset()

    def metrics(self, now: float, snapshot: Snapshot | None) -> Hung | None:
        """vLLM's /metrics, as asked for by ReadMetrics (None when they could not be read)."""
        stalled = self._stall.observe(now, snapshot) if snapshot is not None else None
        return Hung(stalled) if stalled else None


class StallWatch:
    """Says when requests are in flight but no token has been generated for `stall_s` seconds.

    Idle time never counts: the timer starts at the first busy observation and restarts whenever
    the token counter moves, the server goes idle, or the counter goes down (vLLM restarted).
    A snapshot without the numbers (no metrics) restarts it too: no evidence, no verdict.
    """

    def __init__(self, stall_s: float) -> None:
        if stall_s <= 0:
            raise ValueError(f"stall_s must be positive, not {stall_s}")
        self.stall_s = stall_s
        self._tokens: float | None = None
        self._since: float | None = None  # when the current busy, motionless stretch began

    def reset(self) -> None:
        self._tokens = None
        self._since = None

    def observe(self, now: float, snap: Snapshot) -> str | None:
        tokens = snap.generation_tokens
        running = snap.running or 0.0
        waiting = snap.waiting or 0.0
        if tokens is None or (snap.running is None and snap.waiting is None):
            self.reset()
            return None
        moved = self._tokens is None or tokens != self._tokens
        self._tokens = tokens
        if running + waiting <= 0:
            self._since = None
            return None
        if moved or self._since is None:
            self._since = now
            return None
        stood = now - self._since
        if stood < self.stall_s:
            return None
        return (
            f"{_count(running, 'request')} running, {_number(waiting)} waiting, and "
            f"{GENERATION_TOKENS} has stood at {_number(tokens)} for {stood:.0f} s"
        )


def _number(value: float) -> str:
    value = float(value)  # an int is a float to the type checker, but has no is_integer() before 3.12
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _count(value: float, noun: str) -> str:
    return f"{_number(value)} {noun}" + ("" if value == 1 else "s")
