"""vLLM's /metrics over time: one reading parsed whole, and the windows the advisor judges (the
counters' and histograms' increase between two readings, the gauges' mean over the readings in
between). Pure: text and times in, numbers out.

Label sets are folded as the advisor needs them: over `engine` (data-parallel ranks) and
`model_name` (one vLLM serves one model), a counter or a histogram bucket is summed, a gauge is
summed (requests) or its largest kept (KV cache usage: a fraction per engine).
"""

from __future__ import annotations

import bisect
import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Labels that only say which engine or model a sample belongs to.
FOLDED = frozenset({"engine", "model_name"})

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Reading:
    """One /metrics body: each sample by name and its other labels, summed and at its largest
    over the folded ones; `info` the label sets of the `..._info` gauges."""

    sums: Mapping[tuple[str, Labels], float]
    peaks: Mapping[tuple[str, Labels], float]
    info: Mapping[str, tuple[Mapping[str, str], ...]] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return any(key[0] == name for key in self.sums)

    def total(self, name: str, **labels: str) -> float | None:
        """The sum of `name` over every label set that has `labels`; None where none has."""
        want = set(labels.items())
        values = [v for (n, ls), v in self.sums.items() if n == name and want <= set(ls)]
        return sum(values) if values else None

    def peak(self, name: str) -> float | None:
        values = [v for (n, _), v in self.peaks.items() if n == name]
        return max(values) if values else None

    def buckets(self, name: str) -> list[tuple[float, float]]:
        """A histogram's cumulative buckets (upper bound, count), over every label set."""
        out: dict[float, float] = {}
        for (n, labels), value in self.sums.items():
            if n != f"{name}_bucket":
                continue
            le = dict(labels).get("le")
            if le is not None:
                bound = math.inf if le == "+Inf" else float(le)
                out[bound] = out.get(bound, 0.0) + value
        return sorted(out.items())


# One sample line of the text exposition format: a name, optional {labels}, a value, an optional
# timestamp (https://prometheus.io/docs/instrumenting/exposition_formats/).
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text: str) -> Reading:
    """A /metrics body (Prometheus' text format, as vLLM's prometheus_client writes it); ValueError
    (a short reason) for one that is not. Read here, not with prometheus_client's parser: that
    package's import brings in its HTTP server, and this module is the pure core's."""
    sums: dict[tuple[str, Labels], float] = {}
    peaks: dict[tuple[str, Labels], float] = {}
    info: dict[str, list[dict[str, str]]] = {}
    seen = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"not Prometheus text: line {number}: {line[:60]}")
        name, label_text, value_text = match.groups()
        labels = _labels(label_text or "", number)
        try:
            value = float(value_text)
        except ValueError:
            raise ValueError(f"not Prometheus text: line {number}: value {value_text[:20]!r}") from None
        seen += 1
        if math.isnan(value):
            continue
        if name.endswith("_info"):
            info.setdefault(name, []).append(labels)
        kept = tuple(sorted((k, v) for k, v in labels.items() if k not in FOLDED))
        key = (name, kept)
        sums[key] = sums.get(key, 0.0) + value
        peaks[key] = max(peaks.get(key, -math.inf), value)
    if not seen:
        raise ValueError("no samples in the body")
    return Reading(sums, peaks, {name: tuple(sets) for name, sets in info.items()})


def _labels(text: str, number: int) -> dict[str, str]:
    labels: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _LABEL.match(text, position)
        if match is None:
            raise ValueError(f"not Prometheus text: line {number}: labels {text[:60]}")
        value = re.sub(r"\\[\\\"n]", lambda m: _ESCAPES[m.group(0)], match.group(2))
        labels[match.group(1)] = value
        position = match.end()
    return labels


@dataclass(frozen=True, slots=True)
class Window:
    """The readings of a stretch of time, oldest first (at least two)."""

    times: tuple[float, ...]
    readings: tuple[Reading, ...]

    @property
    def seconds(self) -> float:
        return self.times[-1] - self.times[0]

    @property
    def last(self) -> Reading:
        return self.readings[-1]

    def increase(self, name: str, **labels: str) -> float | None:
        """How much a counter grew over the window (a counter that went down restarted: its
        value now is what it grew by since)."""
        first, last = self.readings[0].total(name, **labels), self.last.total(name, **labels)
        if last is None:
            return None
        if first is None or last < first:
            return last
        return last - first

    def mean(self, name: str) -> float | None:
        """A gauge's mean over the window's readings (summed over engines)."""
        values = [v for r in self.readings if (v := r.total(name)) is not None]
        return sum(values) / len(values) if values else None

    def mean_peak(self, name: str) -> float | None:
        """A per-engine fraction's mean over the readings, the fullest engine's at each."""
        values = [v for r in self.readings if (v := r.peak(name)) is not None]
        return sum(values) / len(values) if values else None

    def median(self, name: str) -> float | None:
        """A gauge's median over the window's readings (summed over engines): where it stood
        most of the time, one reading caught between two steps aside."""
        values = sorted(v for r in self.readings if (v := r.total(name)) is not None)
        if not values:
            return None
        middle = len(values) // 2
        return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    def highest(self, name: str) -> float | None:
        values = [v for r in self.readings if (v := r.total(name)) is not None]
        return max(values) if values else None

    def observed(self, name: str) -> float:
        """How many observations a histogram took in the window."""
        return self.increase(f"{name}_count") or 0.0

    def average(self, name: str) -> float | None:
        """A histogram's mean observation in the window."""
        count, total = self.increase(f"{name}_count"), self.increase(f"{name}_sum")
        if not count or total is None:
            return None
        return total / count

    def quantile(self, q: float, name: str) -> float | None:
        """A histogram's q-quantile over the window, as Prometheus' histogram_quantile computes
        it from the buckets' increase (linear within a bucket; the top finite bound for a rank
        in +Inf)."""
        before = dict(self.readings[0].buckets(name))
        now = self.last.buckets(name)
        grown = [(le, count - before.get(le, 0.0)) for le, count in now]
        if not grown or any(count < 0 for _, count in grown):  # restarted: the buckets as they are
            grown = now
        if not grown or grown[-1][1] <= 0:
            return None
        rank = q * grown[-1][1]
        bounds = [le for le, _ in grown]
        counts = [count for _, count in grown]
        index = bisect.bisect_left(counts, rank)
        index = min(index, len(grown) - 1)
        if math.isinf(bounds[index]):
            finite = [le for le in bounds if not math.isinf(le)]
            return finite[-1] if finite else None
        lower = bounds[index - 1] if index > 0 else 0.0
        below = counts[index - 1] if index > 0 else 0.0
        inside = counts[index] - below
        if inside <= 0:
            return bounds[index]
        return lower + (bounds[index] - lower) * (rank - below) / inside


class History:
    """The readings of the last `keep_s` seconds, and windows over them."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self._readings: deque[tuple[float, Reading]] = deque()

    def add(self, at: float, reading: Reading) -> None:
        self._readings.append((at, reading))
        while self._readings and self._readings[0][0] < at - self.keep_s:
            self._readings.popleft()

    def window(self, seconds: float, now: float) -> Window | None:
        """The readings of the last `seconds` (from the newest one older than that, so a window
        spans all of it when it can); None until two readings span at least half of it."""
        kept = list(self._readings)
        start = next((i for i in range(len(kept) - 1, -1, -1) if kept[i][0] <= now - seconds), 0)
        chosen = kept[start:]
        if len(chosen) < 2 or chosen[-1][0] - chosen[0][0] < seconds / 2:
            return None
        return Window(tuple(t for t, _ in chosen), tuple(r for _, r in chosen))


def readings(items: Iterable[tuple[float, str]]) -> History:
    """A History of (time, /metrics body) pairs, for tests and recorded samples."""
    history = History(math.inf)
    for at, text in items:
        history.add(at, parse(text))
    return history
