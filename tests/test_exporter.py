"""The guard's own endpoints: metric names and values, probes, status JSON, binding and closing."""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from vllm_guard.advice import CONDITIONS
from vllm_guard.exporter import PHASES, Exporter, GuardMetrics
from vllm_guard.redact import Redactor

pytestmark = pytest.mark.timeout(30)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


def labelled(text: str, name: str, label: str) -> dict[str, float]:
    return {dict(key)[label]: v for (n, key), v in samples(text).items() if n == name}


def exposition(metrics: GuardMetrics) -> str:
    return metrics.render()[0].decode()


# -- GuardMetrics -------------------------------------------------------------------------------


def test_the_metrics_before_any_attempt() -> None:
    text = exposition(GuardMetrics())
    assert labelled(text, "vllm_guard_phase", "phase") == {
        p: (1.0 if p == "preflight" else 0.0) for p in PHASES
    }
    assert value(text, "vllm_guard_attempts_total") == 0
    assert value(text, "vllm_guard_ready") == 0
    assert value(text, "vllm_guard_degraded") == 0
    assert value(text, "vllm_guard_attempt") == 0
    assert labelled(text, "vllm_guard_degradation_info", "step") == {"": 1.0}
    assert labelled(text, "vllm_guard_restarts_total", "kind") == {}
    assert labelled(text, "vllm_guard_last_failure_info", "kind") == {}


def a_degraded_ready_guard() -> GuardMetrics:
    metrics = GuardMetrics()
    metrics.attempt_started(1, None, degraded=False)
    metrics.failed("oom_kv_cache")
    metrics.set_phase("backoff")
    metrics.attempt_started(2, "set --gpu-memory-utilization 0.95", degraded=True)
    metrics.ready(12.5)
    return metrics


def test_the_metrics_after_a_failure_and_a_degraded_relaunch_that_got_ready() -> None:
    text = exposition(a_degraded_ready_guard())
    assert value(text, "vllm_guard_attempts_total") == 2
    assert labelled(text, "vllm_guard_restarts_total", "kind") == {"oom_kv_cache": 1.0}
    assert labelled(text, "vllm_guard_phase", "phase") == {p: (1.0 if p == "ready" else 0.0) for p in PHASES}
    assert value(text, "vllm_guard_ready") == 1
    assert value(text, "vllm_guard_degraded") == 1
    assert labelled(text, "vllm_guard_degradation_info", "step") == {"set --gpu-memory-utilization 0.95": 1.0}
    assert value(text, "vllm_guard_time_to_ready_seconds") == 12.5
    assert labelled(text, "vllm_guard_last_failure_info", "kind") == {"oom_kv_cache": 1.0}
    assert value(text, "vllm_guard_attempt") == 2


def test_only_the_last_failure_kind_is_set_and_restarts_count_by_kind() -> None:
    metrics = GuardMetrics()
    for kind in ("oom_kv_cache", "hung", "oom_kv_cache"):
        metrics.attempt_started(1, None, degraded=False)
        metrics.failed(kind)
    text = exposition(metrics)
    assert labelled(text, "vllm_guard_last_failure_info", "kind") == {"oom_kv_cache": 1.0}
    assert labelled(text, "vllm_guard_restarts_total", "kind") == {"oom_kv_cache": 2.0, "hung": 1.0}
    assert value(text, "vllm_guard_ready") == 0
    assert metrics.status()["restarts_by_kind"] == {"oom_kv_cache": 2, "hung": 1}


def test_a_failure_after_ready_clears_ready_and_a_plain_relaunch_clears_the_step() -> None:
    metrics = a_degraded_ready_guard()
    metrics.failed("hung")
    metrics.attempt_started(3, None, degraded=True)
    text = exposition(metrics)
    assert value(text, "vllm_guard_ready") == 0
    assert labelled(text, "vllm_guard_degradation_info", "step") == {"": 1.0}
    assert value(text, "vllm_guard_time_to_ready_seconds") == 12.5  # the last attempt that got ready


def test_exactly_one_phase_is_set_and_unknown_phases_are_refused() -> None:
    metrics = GuardMetrics()
    for phase in PHASES:
        metrics.set_phase(phase)
        assert labelled(exposition(metrics), "vllm_guard_phase", "phase") == {
            p: (1.0 if p == phase else 0.0) for p in PHASES
        }
    with pytest.raises(ValueError, match="unknown phase 'running'"):
        metrics.set_phase("running")


def test_leaving_the_ready_phase_clears_ready() -> None:
    metrics = a_degraded_ready_guard()
    metrics.set_phase("stopping")
    assert value(exposition(metrics), "vllm_guard_ready") == 0


def test_status_is_json_able_state() -> None:
    assert a_degraded_ready_guard().status() == {
        "phase": "ready",
        "ready": True,
        "attempt": 2,
        "step": "set --gpu-memory-utilization 0.95",
        "degraded": True,
        "last_failure": "oom_kv_cache",
        "time_to_ready_s": 12.5,
        "restarts_by_kind": {"oom_kv_cache": 1},
        "engine_retries": {"recovered": 0, "failed": 0},
        "advice": [],
    }


def test_each_guard_has_its_own_registry() -> None:
    first, second = GuardMetrics(), GuardMetrics()  # would raise "Duplicated timeseries" if shared
    first.attempt_started(1, None, degraded=False)
    assert value(exposition(second), "vllm_guard_attempts_total") == 0
    assert REGISTRY.get_sample_value("vllm_guard_attempts_total") is None


def test_steps_and_status_go_through_the_redactor() -> None:
    token = "hf_" + "a" * 34
    metrics = GuardMetrics(redactor=Redactor(["s3cr3t-key"]))
    metrics.attempt_started(2, f"set --hf-token {token}", degraded=True)
    status = metrics.status({"vllm_args": ["--api-key", "s3cr3t-key"], "note": {"env": f"HF_TOKEN={token}"}})
    text = exposition(metrics)
    assert token not in text and token not in str(status) and "s3cr3t-key" not in str(status)
    assert labelled(text, "vllm_guard_degradation_info", "step") == {"set --hf-token hf_***": 1.0}
    assert status["vllm_args"] == ["--api-key", "***"]


def test_a_scrape_never_sees_two_phases_at_once() -> None:
    metrics = GuardMetrics()
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            for phase in PHASES:
                metrics.set_phase(phase)

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        for _ in range(200):
            assert sum(labelled(exposition(metrics), "vllm_guard_phase", "phase").values()) == 1
    finally:
        stop.set()
        thread.join()


# -- Exporter -------------------------------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as http:
        yield http


def started(metrics: GuardMetrics, **kwargs: object) -> Exporter:
    exporter = Exporter(metrics, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]
    exporter.start()
    return exporter


def test_the_endpoints_follow_the_guard(client: httpx.Client) -> None:
    metrics = GuardMetrics()
    exporter = started(metrics)
    try:
        url = f"http://127.0.0.1:{exporter.port}"
        assert exporter.port != 0
        assert client.get(url + "/readyz").status_code == 503
        assert client.get(url + "/livez").status_code == 200
        metrics.attempt_started(1, None, degraded=False)
        metrics.failed("oom_kv_cache")
        metrics.attempt_started(2, "set --quantization fp8", degraded=True)
        assert client.get(url + "/readyz").text == "not ready (phase starting)\n"
        metrics.ready(12.5)
        assert client.get(url + "/readyz").status_code == 200

        response = client.get(url + "/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        text = response.text
        assert value(text, "vllm_guard_attempts_total") == 2
        assert value(text, "vllm_guard_restarts_total", kind="oom_kv_cache") == 1
        assert value(text, "vllm_guard_phase", phase="ready") == 1
        assert value(text, "vllm_guard_ready") == 1
        assert value(text, "vllm_guard_degraded") == 1
        assert value(text, "vllm_guard_degradation_info", step="set --quantization fp8") == 1
        assert value(text, "vllm_guard_time_to_ready_seconds") == 12.5
        assert value(text, "vllm_guard_last_failure_info", kind="oom_kv_cache") == 1
        assert value(text, "vllm_guard_attempt") == 2

        status = client.get(url + "/status")
        assert status.headers["content-type"] == "application/json"
        assert status.json()["phase"] == "ready"
        assert status.json()["restarts_by_kind"] == {"oom_kv_cache": 1}
    finally:
        exporter.close()


def test_livez_is_503_when_the_loop_is_not_alive(client: httpx.Client) -> None:
    alive = [True]

    def broken() -> bool:
        raise RuntimeError("heartbeat check failed")

    exporter = started(GuardMetrics(), alive=lambda: alive[0])
    broken_exporter = started(GuardMetrics(), alive=broken)
    try:
        url = f"http://127.0.0.1:{exporter.port}/livez"
        assert client.get(url).status_code == 200
        alive[0] = False
        assert client.get(url).status_code == 503
        assert client.get(f"http://127.0.0.1:{broken_exporter.port}/livez").status_code == 503
    finally:
        exporter.close()
        broken_exporter.close()


def test_status_carries_the_callers_extra_fields(client: httpx.Client) -> None:
    exporter = started(GuardMetrics(), extra=lambda: {"vllm_pid": 4242, "log_file": "/var/log/vllm.log"})
    try:
        status = client.get(f"http://127.0.0.1:{exporter.port}/status").json()
        assert status["vllm_pid"] == 4242 and status["log_file"] == "/var/log/vllm.log"
        assert status["phase"] == "preflight"
    finally:
        exporter.close()


def test_a_failing_extra_still_answers_with_the_guards_state(client: httpx.Client) -> None:
    def extra() -> dict[str, object]:
        raise KeyError("pid")

    exporter = started(GuardMetrics(), extra=extra)
    try:
        status = client.get(f"http://127.0.0.1:{exporter.port}/status").json()
        assert status["phase"] == "preflight" and status["extra_error"] == "KeyError: 'pid'"
    finally:
        exporter.close()


def test_unknown_paths_are_404_and_only_get_and_head_are_served(client: httpx.Client) -> None:
    exporter = started(GuardMetrics())
    try:
        url = f"http://127.0.0.1:{exporter.port}"
        assert client.get(url + "/nope").status_code == 404
        assert client.get(url + "/metrics/").status_code == 404
        head = client.head(url + "/metrics")
        assert head.status_code == 200 and head.content == b"" and int(head.headers["content-length"]) > 0
        assert client.get(url + "/readyz?verbose=1").status_code == 503
        refused = client.post(url + "/metrics")
        assert refused.status_code == 405 and refused.headers["allow"] == "GET, HEAD"
    finally:
        exporter.close()


def test_close_frees_the_port(client: httpx.Client) -> None:
    exporter = started(GuardMetrics())
    port = exporter.port
    exporter.close()
    exporter.close()  # twice is harmless
    with pytest.raises(httpx.ConnectError):
        client.get(f"http://127.0.0.1:{port}/livez")
    again = Exporter(GuardMetrics(), "127.0.0.1", port)
    again.start()
    try:
        assert client.get(f"http://127.0.0.1:{port}/livez").status_code == 200
    finally:
        again.close()


def test_a_port_in_use_is_an_address_in_use_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        exporter = Exporter(GuardMetrics(), "127.0.0.1", holder.getsockname()[1])
        with pytest.raises(OSError) as caught:
            exporter.start()
        assert caught.value.errno == errno.EADDRINUSE
        exporter.close()  # nothing was started: nothing to do


def test_openmetrics_when_the_scraper_asks_for_it(client: httpx.Client) -> None:
    exporter = started(GuardMetrics())
    try:
        response = client.get(
            f"http://127.0.0.1:{exporter.port}/metrics", headers={"Accept": "application/openmetrics-text"}
        )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.endswith("# EOF\n")
    finally:
        exporter.close()


def test_ipv6_loopback(client: httpx.Client) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    exporter = Exporter(GuardMetrics(), "::1", 0)
    try:
        exporter.start()
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        assert client.get(f"http://[::1]:{exporter.port}/livez").status_code == 200
    finally:
        exporter.close()


def test_retries_in_place_are_counted_by_outcome() -> None:
    metrics = a_degraded_ready_guard()
    metrics.set_phase("retrying")
    assert value(exposition(metrics), "vllm_guard_ready") == 0
    metrics.engine_retried(True)
    metrics.engine_retried(False)
    metrics.engine_retried(True)
    metrics.set_phase("ready")  # serving again after the retry, as the supervisor says it
    text = exposition(metrics)
    assert labelled(text, "vllm_guard_engine_retries_total", "outcome") == {"recovered": 2.0, "failed": 1.0}
    assert value(text, "vllm_guard_ready") == 1
    assert metrics.status()["engine_retries"] == {"recovered": 2, "failed": 1}


def test_the_advice_gauge_has_every_condition_and_says_which_hold() -> None:
    metrics = GuardMetrics()
    held = {"condition": "kv_cache_full", "evidence": "e", "fix": "f"}
    metrics.advice([held])
    gauges = labelled(exposition(metrics), "vllm_guard_advice", "condition")
    assert gauges["kv_cache_full"] == 1.0 and sum(gauges.values()) == 1.0
    assert set(gauges) == {c.name for c in CONDITIONS}
    assert metrics.status()["advice"] == [held]
    metrics.advice([])
    assert sum(labelled(exposition(metrics), "vllm_guard_advice", "condition").values()) == 0
