"""The simulated engine's counters and their Prometheus text, with vLLM's metric names.

Names, HELP texts, label sets (`engine`, `model_name`, sorted as prometheus_client sorts them),
the `_created` samples and the histogram buckets are those of a real vLLM 0.32.0 scrape
(/work/shared/vllm/real-cpu/metrics_sample.txt). With `--disable-log-stats` vLLM exports no
`vllm:` metric at all (reference.md §2.2); only the process collector remains.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    640.0,
    2560.0,
)
E2E_BUCKETS = (
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    2.5,
    5.0,
    10.0,
    15.0,
    20.0,
    30.0,
    40.0,
    50.0,
    60.0,
    120.0,
    240.0,
    480.0,
    960.0,
    1920.0,
    7680.0,
)
ITL_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    20.0,
    40.0,
    80.0,
)
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
HELP = {
    "num_requests_running": "Number of requests in model execution batches.",
    "num_requests_waiting": "Number of requests waiting to be processed.",
    "kv_cache_usage_perc": "KV-cache usage. 1 means 100 percent usage.",
    "num_preemptions": "Cumulative number of preemption from the engine.",
    "prompt_tokens": "Number of prefill tokens processed.",
    "generation_tokens": "Number of generation tokens processed.",
    "request_success": "Count of successfully processed requests.",
    "time_to_first_token_seconds": "Histogram of time to first token in seconds.",
    "inter_token_latency_seconds": "Histogram of inter-token latency in seconds.",
    "request_queue_time_seconds": "Histogram of time spent in WAITING phase for request.",
    "request_prompt_tokens": "Number of prefill tokens processed.",
    "prefix_cache_queries": "Prefix cache queries, in terms of number of queried tokens.",
    "prefix_cache_hits": "Prefix cache hits, in terms of number of cached tokens.",
    "spec_decode_num_drafts": "Number of spec decoding drafts.",
    "spec_decode_num_draft_tokens": "Number of draft tokens.",
    "spec_decode_num_accepted_tokens": "Number of accepted tokens.",
    "e2e_request_latency_seconds": "Histogram of e2e request latency in seconds.",
    "cache_config_info": "Information of the LLMEngine CacheConfig",
}


def go_float(value: float) -> str:
    """prometheus_client's floatToGoString: `2.0`, `+Inf`, `1.7957564623842328e+09`."""
    if value == math.inf:
        return "+Inf"
    text = repr(float(value))
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1


def one_two_five(largest: int) -> tuple[float, ...]:
    """vLLM's build_1_2_5_buckets: 1, 2, 5, 10, 20, 50, ... up to `largest`."""
    out: list[float] = []
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale > largest:
                return tuple(out)
            out.append(float(step * scale))
        scale *= 10


class Metrics:
    def __init__(
        self,
        model_name: str,
        kv_tokens: int,
        cache_info: dict[str, str],
        enabled: bool,
        clock: Callable[[], float] = time.time,
        *,
        max_model_len: int = 1024,
        speculative: bool = False,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.created = clock()
        self.base = {"engine": "0", "model_name": model_name}
        self.kv_tokens = max(1, kv_tokens)
        self.cache_info = cache_info
        self.enabled = enabled
        self.speculative = speculative  # vLLM has its spec-decode counters only when it drafts
        self.running = 0
        self.waiting = 0
        self.kv_in_use = 0
        self.preemptions = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.prefix_queries = 0
        self.prefix_hits = 0
        self.drafts = 0
        self.draft_tokens = 0
        self.accepted_tokens = 0
        self.success = dict.fromkeys(FINISHED_REASONS, 0)
        self.prompt_lengths = Histogram(one_two_five(max_model_len))
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.queue = Histogram(E2E_BUCKETS)

    # what the scheduler tells, as it happens (scheduler.py)

    def set_load(self, *, running: int, waiting: int, kv_in_use: int) -> None:
        with self._lock:
            self.running, self.waiting, self.kv_in_use = running, waiting, kv_in_use

    def queued(self, seconds: float) -> None:
        with self._lock:
            self.queue.observe(seconds)

    def prefix(self, queried: int, hit: int) -> None:
        with self._lock:
            self.prefix_queries += queried
            self.prefix_hits += hit

    def preempted(self) -> None:
        with self._lock:
            self.preemptions += 1

    def drafted(self, tokens: int, accepted: int) -> None:
        with self._lock:
            self.drafts += 1
            self.draft_tokens += tokens
            self.accepted_tokens += accepted

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def token_gap(self, seconds: float) -> None:
        with self._lock:
            self.itl.observe(seconds)

    def finished(self, prompt: int, generated: int, e2e_s: float, reason: str = "length") -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.generation_tokens += generated
            self.success[reason] += 1
            self.prompt_lengths.observe(prompt)
            self.e2e.observe(e2e_s)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
                "# TYPE process_start_time_seconds gauge",
                f"process_start_time_seconds {go_float(self.created)}",
            ]
            if self.enabled:
                self._vllm(lines)
        return "\n".join(lines) + "\n"

    def _gauge(self, lines: list[str], name: str, value: float) -> None:
        lines += [
            f"# HELP vllm:{name} {HELP[name]}",
            f"# TYPE vllm:{name} gauge",
            f"vllm:{name}{_labels(self.base)} {go_float(value)}",
        ]

    def _counter(self, lines: list[str], name: str, values: dict[str, float], label: str = "") -> None:
        lines += [f"# HELP vllm:{name}_total {HELP[name]}", f"# TYPE vllm:{name}_total counter"]
        for key, value in values.items():
            extra = {label: key} if label else {}
            lines.append(f"vllm:{name}_total{_labels({**self.base, **extra})} {go_float(value)}")
        lines += [f"# HELP vllm:{name}_created {HELP[name]}", f"# TYPE vllm:{name}_created gauge"]
        for key in values:
            extra = {label: key} if label else {}
            lines.append(f"vllm:{name}_created{_labels({**self.base, **extra})} {go_float(self.created)}")

    def _histogram(self, lines: list[str], name: str, hist: Histogram) -> None:
        lines += [f"# HELP vllm:{name} {HELP[name]}", f"# TYPE vllm:{name} histogram"]
        for bound, count in zip(hist.buckets, hist.counts, strict=True):
            lines.append(
                f"vllm:{name}_bucket{_labels({**self.base, 'le': go_float(bound)})} {go_float(count)}"
            )
        lines.append(f"vllm:{name}_bucket{_labels({**self.base, 'le': '+Inf'})} {go_float(hist.count)}")
        lines.append(f"vllm:{name}_count{_labels(self.base)} {go_float(hist.count)}")
        lines.append(f"vllm:{name}_sum{_labels(self.base)} {go_float(hist.sum)}")
        lines += [
            f"# HELP vllm:{name}_created {HELP[name]}",
            f"# TYPE vllm:{name}_created gauge",
            f"vllm:{name}_created{_labels(self.base)} {go_float(self.created)}",
        ]

    def _vllm(self, lines: list[str]) -> None:
        self._gauge(lines, "num_requests_running", self.running)
        self._gauge(lines, "num_requests_waiting", self.waiting)
        self._gauge(lines, "kv_cache_usage_perc", min(1.0, self.kv_in_use / self.kv_tokens))
        self._counter(lines, "prefix_cache_queries", {"": self.prefix_queries})
        self._counter(lines, "prefix_cache_hits", {"": self.prefix_hits})
        self._counter(lines, "num_preemptions", {"": self.preemptions})
        self._counter(lines, "prompt_tokens", {"": self.prompt_tokens})
        self._counter(lines, "generation_tokens", {"": self.generation_tokens})
        self._counter(lines, "request_success", dict(self.success), label="finished_reason")
        self._histogram(lines, "request_prompt_tokens", self.prompt_lengths)
        self._histogram(lines, "time_to_first_token_seconds", self.ttft)
        self._histogram(lines, "inter_token_latency_seconds", self.itl)
        self._histogram(lines, "e2e_request_latency_seconds", self.e2e)
        self._histogram(lines, "request_queue_time_seconds", self.queue)
        info = {**self.cache_info, "engine": "0"}
        lines += [
            f"# HELP vllm:cache_config_info {HELP['cache_config_info']}",
            "# TYPE vllm:cache_config_info gauge",
            f"vllm:cache_config_info{_labels(info)} 1.0",
        ]
        if self.speculative:
            self._counter(lines, "spec_decode_num_drafts", {"": self.drafts})
            self._counter(lines, "spec_decode_num_draft_tokens", {"": self.draft_tokens})
            self._counter(lines, "spec_decode_num_accepted_tokens", {"": self.accepted_tokens})
