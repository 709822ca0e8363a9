"""The /metrics text: vLLM's names, labels and number format (real-cpu metrics_sample.txt)."""

from __future__ import annotations

from vllm_guard.sim.metrics import Metrics, go_float


def test_numbers_are_printed_as_prometheus_client_prints_them() -> None:
    # as in the real sample: `0.0`, `2.0`, `1.7957564623842328e+09`, `+Inf`
    assert [go_float(0), go_float(2), go_float(1795756462.3842328), go_float(float("inf"))] == [
        "0.0",
        "2.0",
        "1.7957564623842328e+09",
        "+Inf",
    ]


def test_requests_are_counted_into_vllms_series() -> None:
    metrics = Metrics("m", kv_tokens=1000, cache_info={"block_size": "16"}, enabled=True, clock=lambda: 1.0)
    metrics.begin(10)
    running = metrics.render()
    assert 'vllm:num_requests_running{engine="0",model_name="m"} 1.0' in running
    assert 'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.01' in running
    metrics.finish(10, 5, "length", 0.02, 0.05)
    text = metrics.render()
    assert 'vllm:prompt_tokens_total{engine="0",model_name="m"} 10.0' in text
    assert 'vllm:generation_tokens_total{engine="0",model_name="m"} 5.0' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 1.0' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 0.0' in text
    assert 'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.02",model_name="m"} 1.0' in text
    assert 'vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 1.0' in text
    assert 'vllm:cache_config_info{block_size="16",engine="0"} 1.0' in text
    assert "# TYPE vllm:prompt_tokens_created gauge" in text
    assert 'vllm:num_requests_running{engine="0",model_name="m"} 0.0' in text


def test_disable_log_stats_leaves_no_vllm_series() -> None:
    text = Metrics("m", 1000, {}, enabled=False).render()
    assert "process_start_time_seconds" in text
    assert "vllm:" not in text
