"""The injected faults: a hang, a stall, a runtime OOM, an ignored SIGTERM, a flood, an orphan."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from vllm_guard.sim import messages

from .procs import Launcher, get, poll
from .test_process import SMALL, gone

pytestmark = pytest.mark.timeout(60)


def unanswered(port: int, timeout_s: float = 0.5) -> bool:
    """The connection is accepted, but no answer comes within TIMEOUT_S."""
    with socket.create_connection(("127.0.0.1", port), 2) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(timeout_s)
        try:
            return sock.recv(1) == b""
        except TimeoutError:
            return True


def test_hang_after_stops_answering_and_ignores_sigterm(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="hang_after=0.3")
    server.wait_healthy()
    poll(lambda: unanswered(server.port), 10.0, "/health to stop answering")
    server.signal(signal.SIGTERM)  # a wedged event loop never runs its handler
    with pytest.raises(subprocess.TimeoutExpired):
        server.wait(0.5)
    engine = server.engine()
    os.killpg(server.proc.pid, signal.SIGKILL)  # what a supervisor has to do
    server.wait(10)
    poll(lambda: gone(engine), 5.0, "the engine to go")


def test_stall_after_keeps_health_but_never_finishes_a_request(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="stall_after=0")
    server.wait_healthy()
    with pytest.raises(TimeoutError):
        server.post("/v1/completions", {"prompt": "hello there", "max_tokens": 4}, timeout_s=0.5)
    assert get(server.url + "/health")[0] == 200
    metrics = get(server.url + "/metrics")[1].decode()
    assert f'vllm:num_requests_running{{engine="0",model_name="{SMALL}"}} 1.0' in metrics
    assert f'vllm:generation_tokens_total{{engine="0",model_name="{SMALL}"}} 0.0' in metrics
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_shutdown_timeout_drains_in_flight_requests_for_that_long(sim: Launcher) -> None:
    server = sim(SMALL, "--shutdown-timeout", "1", VLLM_GUARD_SIM_FAULTS="stall_after=0")
    server.wait_healthy()
    with pytest.raises(TimeoutError):
        server.post("/v1/completions", {"prompt": "stuck"}, timeout_s=0.3)
    began = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert time.monotonic() - began >= 0.9  # the stuck request was waited for, up to the timeout
    assert "[shutdown] API server: stopping engine client mode=drain timeout=1s" in server.stdout()
    assert "force killing" not in server.stdout()


def test_oom_after_requests_kills_the_engine_with_vllms_runtime_output(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="oom_after_requests=2")
    server.wait_healthy()
    engine = server.engine()
    assert server.post("/v1/completions", {"prompt": "one"})[0] == 200
    status, body = server.post("/v1/completions", {"prompt": "two"})
    assert (status, json.loads(body)) == (500, messages.ENGINE_DEAD_BODY)
    assert get(server.url + "/health")[0] == 503  # before the server goes, /health says the engine is dead
    assert server.wait(10) == 1
    assert gone(engine)
    out = server.stdout()
    order = [
        f"(EngineCore pid={engine.pid}) ERROR",
        "EngineCore encountered a fatal error.",
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate",
        "[shutdown] MPClient: engine core exited unexpectedly; starting cleanup",
        "AsyncLLM output_handler failed.",
        "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue.",
    ]
    positions = [out.index(text) for text in order]
    assert positions == sorted(positions)
    assert "INFO:     Application shutdown complete." in server.stderr()


def test_exit0_on_death_hides_the_death_in_the_exit_status(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="oom_after_requests=1,exit0_on_death")
    server.wait_healthy()
    assert server.post("/v1/completions", {"prompt": "one"})[0] == 500
    assert server.wait(10) == 0
    assert "EngineDeadError" in server.stdout()


def test_a_killed_engine_ends_the_server(sim: Launcher) -> None:
    server = sim(SMALL)
    server.wait_healthy()
    server.engine().kill()
    assert server.wait(10) == 1
    assert "[shutdown] MPClient: engine core exited unexpectedly; starting cleanup" in server.stdout()


def test_ignore_sigterm_ignores_it_and_sigint_still_stops(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="ignore_sigterm")
    server.wait_healthy()
    server.signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        server.wait(0.5)
    assert server.healthy()
    server.signal(signal.SIGINT)
    assert server.wait(10) == 0


def test_flood_prints_the_lines_and_keeps_serving(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="flood_lines=20000,flood_line_bytes=120")
    server.wait_healthy()

    def flooded() -> list[str]:
        return [line for line in server.stdout().splitlines() if "vllm_guard.sim flood line" in line]

    poll(lambda: len(flooded()) == 20000, 20.0, "20000 flood lines")
    lines = flooded()
    assert all(len(line) + 1 == 120 for line in lines[:100])
    assert lines[-1].split("flood line ")[1].startswith("20000/20000")
    assert server.healthy()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_orphan_engine_survives_its_servers_sigkill(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="orphan_engine")
    server.wait_healthy()
    engine = server.engine()
    server.proc.kill()
    server.wait(10)
    assert engine.is_running() and not gone(engine)
    assert engine.ppid() != server.proc.pid  # re-parented, still holding its (simulated) memory
    assert engine.name() == "VLLM::EngineCore"
    with pytest.raises(psutil.TimeoutExpired):
        engine.wait(0.3)
    engine.kill()
    engine.wait(5)


def test_orphan_engine_survives_a_clean_stop_too(sim: Launcher) -> None:
    server = sim(SMALL, VLLM_GUARD_SIM_FAULTS="orphan_engine")
    server.wait_healthy()
    engine = server.engine()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert not gone(engine)
    engine.kill()
    engine.wait(5)


def test_once_faults_hit_the_first_launch_of_a_run_only(sim: Launcher, tmp_path: Path) -> None:
    env = {"VLLM_GUARD_SIM_FAULTS": "once:oom_after_requests=1", "VLLM_GUARD_SIM_STATE": str(tmp_path / "n")}
    first = sim(SMALL, env=env)
    first.wait_healthy()
    assert first.post("/v1/completions", {"prompt": "x"})[0] == 500
    assert first.wait(10) == 1
    second = sim(SMALL, port=first.port, env=env)
    second.wait_healthy()
    assert second.post("/v1/completions", {"prompt": "x"})[0] == 200
    second.signal(signal.SIGTERM)
    assert second.wait(10) == 0
    assert (tmp_path / "n").read_text().strip() == "2"


def test_an_engine_left_holding_memory_makes_the_next_start_fail(sim: Launcher, tmp_path: Path) -> None:
    ledger = {"VLLM_GUARD_SIM_GPU_LEDGER": str(tmp_path / "gpu")}
    first = sim(SMALL, env=ledger, VLLM_GUARD_SIM_FAULTS="orphan_engine")
    first.wait_healthy()
    orphan = first.engine()
    first.proc.kill()
    first.wait(10)
    second = sim(SMALL, port=first.port, env=ledger)
    assert second.wait(15) == 1
    # the orphan holds what it held: its budget (22.08 GiB), CUDA graphs included
    assert "ValueError: Free memory on device cuda:0 (1.92/24.0 GiB) on startup" in second.stdout()
    orphan.kill()
    orphan.wait(5)
    third = sim(SMALL, port=first.port, env=ledger)
    third.wait_healthy()
    third.signal(signal.SIGTERM)
    assert third.wait(10) == 0
