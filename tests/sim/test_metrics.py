"""The /metrics text: vLLM's names, labels and number format (real-cpu metrics_sample.txt)."""

from __future__ import annotations

from pathlib import Path

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
    metrics.set_load(running=1, waiting=3, kv_in_use=10)
    running = metrics.render()
    assert 'vllm:num_requests_running{engine="0",model_name="m"} 1.0' in running
    assert 'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0' in running
    assert 'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.01' in running
    metrics.set_load(running=0, waiting=0, kv_in_use=0)
    metrics.queued(0.4)
    metrics.first_token(0.02)
    metrics.token_gap(0.03)
    metrics.finished(10, 5, 0.05)
    text = metrics.render()
    assert 'vllm:prompt_tokens_total{engine="0",model_name="m"} 10.0' in text
    assert 'vllm:generation_tokens_total{engine="0",model_name="m"} 5.0' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 1.0' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 0.0' in text
    assert 'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.02",model_name="m"} 1.0' in text
    assert 'vllm:inter_token_latency_seconds_bucket{engine="0",le="0.05",model_name="m"} 1.0' in text
    assert 'vllm:request_queue_time_seconds_bucket{engine="0",le="0.5",model_name="m"} 1.0' in text
    assert 'vllm:request_prompt_tokens_bucket{engine="0",le="10.0",model_name="m"} 1.0' in text
    assert 'vllm:request_prompt_tokens_bucket{engine="0",le="1000.0",model_name="m"} 1.0' in text
    assert 'vllm:e2e_request_latency_seconds_count{engine="0",model_name="m"} 1.0' in text
    assert 'vllm:cache_config_info{block_size="16",engine="0"} 1.0' in text
    assert "# TYPE vllm:prompt_tokens_created gauge" in text
    assert 'vllm:num_requests_running{engine="0",model_name="m"} 0.0' in text
    assert "spec_decode" not in text  # only where vLLM drafts


def test_the_series_names_and_bucket_bounds_are_those_of_real_vllm() -> None:
    real = (Path(__file__).parents[1] / "data" / "vllm_0.32.0_cpu_metrics.txt").read_text()
    text = Metrics("m", 1000, {}, enabled=True, max_model_len=1024, speculative=True).render()
    for line in text.splitlines():
        if line.startswith("vllm:") and "_bucket" in line:
            name = line.split("{")[0]
            le = line.split('le="')[1].split('"')[0]
            if "spec_decode" not in name:
                assert f'{name}{{engine="0",le="{le}",model_name=' in real, line
        if line.startswith("# HELP vllm:") and "spec_decode" not in line:
            assert line in real, line
    assert "vllm:spec_decode_num_accepted_tokens_total" in text


def test_disable_log_stats_leaves_no_vllm_series() -> None:
    text = Metrics("m", 1000, {}, enabled=False).render()
    assert "process_start_time_seconds" in text
    assert "vllm:" not in text
