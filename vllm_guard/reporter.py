"""Where the guard is, told to everyone who asks: systemd (STATUS=, READY=1, STOPPING=1, more
start or stop time, the watchdog), the exporter's metrics and /status. The supervisor says what
happened; only this talks to the notifier and the metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from vllm_guard.exporter import GuardMetrics
from vllm_guard.notify import Notifier

# systemd's start timeout is moved on at most this often while a load makes progress.
EXTEND_EVERY_S = 5.0


class Reporter:
    def __init__(
        self,
        notifier: Notifier | None,
        metrics: GuardMetrics | None,
        clock: Callable[[], float],
        *,
        startup_timeout_s: float,
        stop_timeout_s: float,
    ) -> None:
        self._notifier = notifier
        self._metrics = metrics
        self._clock = clock
        self._startup_timeout_s = startup_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self.phase = "starting"
        self.status_text = ""
        self._ready_told = False  # systemd took READY=1
        self._stopping_told = False  # systemd took STOPPING=1
        self._progress_told_at = -1e9

    def attempt_started(self, number: int, step: str | None, *, degraded: bool) -> None:
        if self._metrics is not None:
            self._metrics.attempt_started(number, step, degraded=degraded)
        self.phase_is("starting", f"starting vLLM (attempt {number})")

    def failed(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.failed(kind)

    def advice(self, findings: Sequence[Mapping[str, object]]) -> None:
        """The advisor's findings that hold now, for the exporter's gauge and /status."""
        if self._metrics is not None:
            self._metrics.advice(findings)

    def engine_retried(self, *, recovered: bool) -> None:
        if self._metrics is not None:
            self._metrics.engine_retried(recovered)

    def phase_is(
        self, phase: str, status: str, *, progress: bool = False, ready_after_s: float | None = None
    ) -> None:
        """The guard's phase and its one-line status; `progress`: a load moved on (a milestone);
        `ready_after_s`: vLLM became ready this long after its launch."""
        self.phase, self.status_text = phase, status
        if self._metrics is not None:
            if ready_after_s is not None:
                self._metrics.ready(ready_after_s)
            elif not progress:
                self._metrics.set_phase(phase)
        notifier = self._notifier
        if notifier is None:
            return
        if (phase == "ready" and not self._ready_told) or (phase == "stopping" and not self._stopping_told):
            self.tell_state()  # retried from the heartbeat while refused
        else:
            notifier.status(status)
        now = self._clock()
        if progress and not self._ready_told and now - self._progress_told_at >= EXTEND_EVERY_S:
            # systemd's start timeout is moved on while the load keeps moving; it stops being
            # extended when vLLM stops making progress, as the guard's own startup timeout does.
            notifier.extend_timeout(self._startup_timeout_s)
            self._progress_told_at = now

    def tell_state(self) -> None:
        """READY=1 or STOPPING=1 for the phase the guard is in, if systemd has not taken it yet:
        these are state changes, so one refused (its queue was full) is sent again."""
        notifier = self._notifier
        if notifier is None:
            return
        if self.phase == "ready" and not self._ready_told:
            self._ready_told = notifier.ready(self.status_text)
        elif self.phase == "stopping" and not self._stopping_told:
            self._stopping_told = notifier.stopping(self.status_text)
            if self._stopping_told:
                # the unit's TimeoutStopSec may be shorter than the grace and kill timeout asked for
                notifier.extend_timeout(self._stop_timeout_s)

    @property
    def notifies(self) -> bool:
        """Whether systemd gave a notify socket."""
        return self._notifier is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        return self._notifier.watchdog_interval_s if self._notifier is not None else None

    def watchdog(self) -> None:
        if self._notifier is not None and self._notifier.watchdog_interval_s is not None:
            self._notifier.watchdog()
