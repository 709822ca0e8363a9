"""The advisor while vLLM serves: a condition's start and clear are said once each, journaled,
exported; a new attempt starts over; what holds reaches `status`."""

from __future__ import annotations

from pathlib import Path

from vllm_exposition import body

from vllm_guard import journal
from vllm_guard.advice import Serving, Thresholds
from vllm_guard.exporter import GuardMetrics
from vllm_guard.gpu import DeviceMemory, GpuProbe
from vllm_guard.metric_window import Reading, parse
from vllm_guard.reporter import Reporter
from vllm_guard.serve_advice import LiveAdvice
from vllm_guard.state import StateDir, attempts


class Gpu:
    def __init__(self, busy: float) -> None:
        self.busy = busy

    def memory(self) -> list[DeviceMemory]:
        return []

    def utilization(self) -> list[float]:
        return [self.busy, self.busy]


def live(tmp_path: Path, gpu: GpuProbe | None = None) -> tuple[LiveAdvice, list[str], GuardMetrics, StateDir]:
    state = StateDir(tmp_path, "port 8000")
    state.open("m")
    metrics = GuardMetrics()
    reporter = Reporter(None, metrics, lambda: 0.0, startup_timeout_s=60, stop_timeout_s=60)
    said: list[str] = []
    advisor = LiveAdvice(
        Thresholds(), say=said.append, record=state.record, reporter=reporter, gpu=lambda: gpu
    )
    state.record(journal.AttemptStarted(1, ["vllm"], "T", 0.0, None, "log"))
    advisor.attempt(1, Serving(version="0.32.0", max_num_seqs=256, gpu_memory_utilization=0.92))
    return advisor, said, metrics, state


def reading(waiting: float, kv: float = 0.5, running: float = 256) -> Reading:
    return parse(
        body(
            gauges={
                "vllm:num_requests_waiting": waiting,
                "vllm:num_requests_running": running,
                "vllm:kv_cache_usage_perc": kv,
            }
        )
    )


def test_a_condition_is_said_once_when_it_starts_and_once_when_it_clears(tmp_path: Path) -> None:
    advisor, said, metrics, state = live(tmp_path)
    t = 0.0
    for _ in range(40):  # three minutes and more of queueing, read every 5 s
        advisor.observe(t, reading(waiting=100))
        t += 5
    assert [line.split(":")[1].strip() for line in said] == ["requests_queueing"]
    # said as soon as it held twice, over the half minute and more that the window had then
    assert said[0].startswith("advice: requests_queueing: 100 requests waiting on average over the last 35 s")
    assert "fix: raise --max-num-seqs (now 256)" in said[0]
    assert metrics.status()["advice"][0]["condition"] == "requests_queueing"  # type: ignore[index]
    [attempt] = attempts(state.journal_path)
    assert [a["condition"] for a in attempt["advice"]] == ["requests_queueing"]
    for _ in range(40):
        advisor.observe(t, reading(waiting=0))
        t += 5
    assert said[1:] == ["advice: requests_queueing no longer holds"]
    assert metrics.status()["advice"] == []
    assert attempts(state.journal_path)[0]["advice"] == []
    state.close()


def test_a_new_attempt_starts_with_empty_windows(tmp_path: Path) -> None:
    advisor, _, metrics, state = live(tmp_path)
    for t in range(0, 120, 5):
        advisor.observe(float(t), reading(waiting=100))
    assert advisor.current
    advisor.attempt(2, Serving(version="0.32.0"))
    assert advisor.current == [] and metrics.status()["advice"] == []
    advisor.observe(200.0, reading(waiting=100))
    assert advisor.current == []  # one reading is no window
    state.close()


def test_the_gpus_utilization_is_read_with_the_metrics(tmp_path: Path) -> None:
    advisor, said, _, state = live(tmp_path, Gpu(busy=0.2))
    for t in range(0, 120, 5):
        advisor.observe(float(t), reading(waiting=10, kv=0.3, running=20))
    assert any(line.startswith("advice: gpu_underutilized: GPU utilization 20%") for line in said)
    state.close()
