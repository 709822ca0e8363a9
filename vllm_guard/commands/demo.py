"""`vllm-guard demo`: the whole loop in under a minute, against the bundled simulator.

A simulated vLLM becomes ready, crashes at runtime on its first request (a CUDA out-of-memory, the
way vLLM reports one), the guard restarts it, it is ready again, and SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from vllm_guard import policy_file
from vllm_guard import settings as settings_module
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.policy import Policy
from vllm_guard.processes import resolve_command
from vllm_guard.serve import real_world
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir
from vllm_guard.supervisor import Supervisor

MODEL = "Qwen/Qwen2.5-7B-Instruct"
STEP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run(cli_values: dict[str, Any]) -> ExitCode:
    with tempfile.TemporaryDirectory(prefix="vllm-guard-demo-") as tmp:
        return await _demo(Path(tmp), cli_values)


async def _demo(tmp: Path, cli_values: dict[str, Any]) -> ExitCode:
    defaults: dict[str, Any] = {
        "vllm_command": f"{shlex.quote(sys.executable)} -m vllm_guard.sim",
        "state_dir": str(tmp / "state"),
        "backoff_initial_s": 1.0,
        "backoff_jitter_s": 0.5,
        "health_interval_s": 0.25,
        "grace_period_s": 10.0,
    }
    settings, policy = policy_file.effective(settings_module.load({**defaults, **cli_values}))
    port = free_port()
    env = dict(os.environ)
    env.update(
        {
            # The first launch runs out of GPU memory on its first request; later ones do not.
            "VLLM_GUARD_SIM_FAULTS": "once:oom_after_requests=1",
            "VLLM_GUARD_SIM_STATE": str(tmp / "sim-launches"),
            "VLLM_GUARD_SIM_GPU_MEMORY_GIB": "24",
            "VLLM_GUARD_SIM_LOAD_S": "1",
        }
    )
    program = resolve_command(settings.vllm_command, env)
    began = time.monotonic()
    state = StateDir(settings.state_dir, f"port {port}")
    state.open(MODEL)
    try:
        return await _story(
            settings, state=state, program=program, env=env, port=port, began=began, policy=policy
        )
    finally:
        state.close()


async def _story(
    settings: GuardSettings,
    *,
    state: StateDir,
    program: list[str],
    env: dict[str, str],
    port: int,
    began: float,
    policy: Policy,
) -> ExitCode:
    args = ["--host", "127.0.0.1", "--port", str(port), "--max-model-len", "8192"]
    # As a user would (vLLM 0.16+): keep the guard's frequent /health polls out of the access log.
    args += ["--disable-access-log-for-endpoints", "/health"]
    async with real_world(settings, state) as world:
        say = world.printer.guard
        say(
            f"demo: supervising a simulated vLLM serving {MODEL} on a simulated 24 GiB GPU; "
            "its first launch will run out of GPU memory on its first request"
        )
        supervisor = Supervisor(
            settings, program=program, model=MODEL, user_args=args, env=env, world=world, policy=policy
        )
        run = asyncio.ensure_future(supervisor.run())
        try:
            await _until(supervisor.ready_event(1), run, "vLLM to become ready")
            say("demo: sending a completion request")
            async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
                reply = await client.post(
                    f"http://127.0.0.1:{port}/v1/completions",
                    json={"model": MODEL, "prompt": "The guard", "max_tokens": 8},
                )
            say(f"demo: the request got HTTP {reply.status_code}; now vLLM crashes and the guard acts")
            await _until(supervisor.ready_event(2), run, "the restarted vLLM to become ready")
            say("demo: sending SIGTERM to the guard, as systemd does on `systemctl stop`")
            os.kill(os.getpid(), signal.SIGTERM)
            code = await asyncio.wait_for(run, STEP_TIMEOUT_S)
        finally:
            if not run.done():
                supervisor.request_stop(signal.SIGINT)
                supervisor.request_stop(signal.SIGINT)
                await run
        say(
            f"demo: done in {time.monotonic() - began:.1f} s: ready, crashed, relaunched with safer "
            f"flags, ready, stopped; exit status {int(code)}"
        )
        return code


async def _until(event: asyncio.Event, run: asyncio.Future[ExitCode], what: str) -> None:
    waiter = asyncio.ensure_future(event.wait())
    waiting: set[asyncio.Future[Any]] = {waiter, run}
    done, _ = await asyncio.wait(waiting, timeout=STEP_TIMEOUT_S, return_when="FIRST_COMPLETED")
    waiter.cancel()
    if run in done:
        raise GuardError(f"demo: the guard ended (exit {run.result()}) while waiting for {what}")
    if waiter not in done:
        raise GuardError(f"demo: waited {STEP_TIMEOUT_S:g} s for {what}", ExitCode.GAVE_UP)
