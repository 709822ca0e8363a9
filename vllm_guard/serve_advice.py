"""The advisor while vLLM serves under the guard: each reading of its /metrics (every few seconds,
with the stall check's) goes into the windows, the conditions are judged, and a condition's
start and its clear are each said once: a guard line, a journal event, the exporter's
`vllm_guard_advice{condition}` and /status. Advice never restarts vLLM.
"""

from __future__ import annotations

from collections.abc import Callable

from vllm_guard import advice, journal
from vllm_guard.advice import Finding, Serving, Thresholds, Tracker
from vllm_guard.gpu import GpuProbe
from vllm_guard.metric_window import History, Reading
from vllm_guard.reporter import Reporter


class LiveAdvice:
    def __init__(
        self,
        thresholds: Thresholds,
        *,
        window_s: float = advice.SHORT_S,
        say: Callable[[str], None],
        record: Callable[[journal.Event], None],
        reporter: Reporter,
        gpu: Callable[[], GpuProbe | None],
    ) -> None:
        self._thresholds = thresholds
        self._say = say
        self._record = record
        self._reporter = reporter
        self._gpu = gpu
        self._short_s, self._long_s = window_s, window_s * advice.LONG_S / advice.SHORT_S
        self._attempt = 0
        self._serving = Serving()
        self._history = History(keep_s=self._long_s * 1.2)
        self._tracker = Tracker()
        self._busy: list[tuple[float, float]] = []  # (when, the GPUs' mean utilization)

    def attempt(self, number: int, serving: Serving) -> None:
        """A new launch: its windows start empty, and nothing holds yet."""
        self._attempt, self._serving = number, serving
        self._history = History(keep_s=self._long_s * 1.2)
        self._tracker = Tracker()
        self._busy = []
        self._reporter.advice([])

    @property
    def current(self) -> list[Finding]:
        return list(self._tracker.current.values())

    def observe(self, now: float, reading: Reading) -> None:
        self._history.add(now, reading)
        self._read_gpu(now)
        short = self._history.window(self._short_s, now)
        if short is None:
            return
        long = self._history.window(self._long_s, now)
        recent = [u for at, u in self._busy if at >= now - self._short_s]
        situation = advice.Situation(
            short,
            long if long is not None and long.seconds >= self._long_s * 0.9 else None,
            self._serving,
            self._thresholds,
            gpu_utilization=sum(recent) / len(recent) if recent else None,
        )
        started, cleared = self._tracker.update(advice.advise(situation))
        for finding in started:
            self._say(f"advice: {finding.condition}: {finding.evidence}; {finding.cause}; fix: {finding.fix}")
            self._record(
                journal.AdviceChanged(self._attempt, finding.condition, True, finding.evidence, finding.fix)
            )
        for condition in cleared:
            self._say(f"advice: {condition} no longer holds")
            self._record(journal.AdviceChanged(self._attempt, condition, False, "", ""))
        if started or cleared:
            self._reporter.advice([f.as_json() for f in self.current])

    def _read_gpu(self, now: float) -> None:
        probe = self._gpu()
        if probe is None:
            return
        values = probe.utilization()
        if values:
            self._busy.append((now, sum(values) / len(values)))
            self._busy = [(at, u) for at, u in self._busy if at >= now - self._long_s]
