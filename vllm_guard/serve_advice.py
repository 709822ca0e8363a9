"""The advisor while vLLM serves under the guard: each reading of its /metrics (every few seconds,
with the stall check's) goes into the windows, the conditions are judged, and a condition's
start and its clear are each said once: a guard line, a journal event, the exporter's
`vllm_guard_advice{condition}` and /status. Advice never restarts vLLM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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
        self._refused: list[tuple[float, dict[str, int]]] = []  # (when, the refusals so far)

    def attempt(self, number: int, serving: Serving) -> None:
        """A new launch: its windows start empty, and nothing holds yet."""
        self._attempt, self._serving = number, serving
        self._history = History(keep_s=self._long_s * 1.2)
        self._tracker = Tracker()
        self._busy = []
        self._refused = []
        self._reporter.advice([])

    @property
    def current(self) -> list[Finding]:
        return list(self._tracker.current.values())

    def observe(
        self,
        now: float,
        reading: Reading,
        refused: Mapping[str, int] | None = None,
        refused_last: Mapping[str, tuple[str, ...]] | None = None,
    ) -> None:
        """One reading of vLLM's /metrics; `refused`: the requests its log said it refused so far,
        by kind (AttemptOutput.refused), and the last of each."""
        self._history.add(now, reading)
        self._refused.append((now, dict(refused or {})))
        older = [entry for entry in self._refused if entry[0] < now - self._long_s][-1:]
        self._refused = older + [(at, counts) for at, counts in self._refused if at >= now - self._long_s]
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
            refused=self._refused_within(now - self._short_s),
            refused_last=dict(refused_last or {}),
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

    def _refused_within(self, since: float) -> dict[str, int]:
        """How many requests of each kind were refused since `since`: from the newest count no
        later than it (none yet: from the attempt's start; the counts only grow)."""
        start = next((counts for at, counts in reversed(self._refused) if at <= since), {})
        end = self._refused[-1][1] if self._refused else {}
        return {kind: n - start.get(kind, 0) for kind, n in end.items() if n > start.get(kind, 0)}

    def _read_gpu(self, now: float) -> None:
        probe = self._gpu()
        if probe is None:
            return
        values = probe.utilization()
        if values:
            self._busy.append((now, sum(values) / len(values)))
            self._busy = [(at, u) for at, u in self._busy if at >= now - self._long_s]
