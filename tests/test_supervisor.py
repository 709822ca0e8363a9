"""The supervisor loop with in-memory fakes: no process, no HTTP, and delays that take no time."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vllm_guard.child import StopReport, VllmProcess
from vllm_guard.errors import ExitCode
from vllm_guard.health import HealthResult
from vllm_guard.output import AttemptOutput
from vllm_guard.printer import Printer
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir
from vllm_guard.supervisor import Supervisor, World
from vllm_guard.vllm_metrics import Snapshot

pytestmark = pytest.mark.timeout(30)


@dataclass
class Script:
    """What one fake launch of vLLM does: become healthy after some polls, then exit or hang."""

    ready_after_polls: int | None = 1  # None: never healthy
    exit_after_polls: int | None = None  # exit on its own after this many polls
    exit_status: int = 1
    health_fails_after_polls: int | None = None
    ignores_sigterm: bool = False


@dataclass
class FakeLauncher:
    scripts: list[Script]
    launched: list[list[str]] = field(default_factory=list)
    stops: list[float] = field(default_factory=list)
    procs: list[VllmProcess] = field(default_factory=list)

    async def launch(self, argv: Sequence[str], env: Mapping[str, str], output: AttemptOutput) -> VllmProcess:
        self.launched.append(list(argv))
        output.feed(2, f"attempt {len(self.launched)} says goodbye\n".encode())
        proc = VllmProcess(
            pid=100000 + len(self.launched),
            argv=tuple(argv),
            started_at=0.0,
            output=output,
            exit_status=asyncio.get_running_loop().create_future(),
            pipes_closed=asyncio.Event(),
        )
        self.procs.append(proc)
        return proc

    async def stop(self, proc: VllmProcess, grace_s: float, skip_grace: asyncio.Event) -> StopReport:
        self.stops.append(grace_s)
        escalated = self.script(proc).ignores_sigterm
        if escalated and not skip_grace.is_set():
            await asyncio.wait_for(skip_grace.wait(), grace_s)
        if not proc.exit_status.done():
            proc.exit_status.set_result(-9 if escalated else 0)
        return StopReport(escalated, ("1 (VLLM::EngineCore)",) if escalated else ())

    async def clear(self, proc: VllmProcess) -> StopReport:
        return StopReport(False, ())

    def script(self, proc: VllmProcess) -> Script:
        return self.scripts[min(self.procs.index(proc), len(self.scripts) - 1)]


@dataclass
class FakeProbe:
    launcher: FakeLauncher
    proc: VllmProcess
    polls: int = 0

    async def check(self) -> HealthResult:
        self.polls += 1
        script = self.launcher.script(self.proc)
        if script.exit_after_polls is not None and self.polls >= script.exit_after_polls:
            if not self.proc.exit_status.done():
                self.proc.exit_status.set_result(script.exit_status)
            return HealthResult(False, "ConnectError")
        if script.health_fails_after_polls is not None and self.polls > script.health_fails_after_polls:
            return HealthResult(False, "ReadTimeout")
        if script.ready_after_polls is not None and self.polls >= script.ready_after_polls:
            return HealthResult(True, "200")
        return HealthResult(False, "ConnectError")

    async def metrics(self) -> Snapshot | None:
        return None

    async def aclose(self) -> None:
        pass


class RecordingPrinter(Printer):
    def __init__(self) -> None:
        self._devnull = os.open(os.devnull, os.O_WRONLY)
        super().__init__(stdout_fd=self._devnull, stderr_fd=self._devnull)
        self.lines: list[str] = []

    def guard(self, message: str, *, level: str = "info", **fields: object) -> None:
        self.lines.append(message)

    def close(self, timeout_s: float = 5.0) -> None:
        super().close(timeout_s)
        os.close(self._devnull)


@dataclass
class Harness:
    launcher: FakeLauncher
    printer: RecordingPrinter
    delays: list[float]
    state: StateDir

    def supervisor(self, args: Sequence[str] = ("--port", "8000"), **overrides: object) -> Supervisor:
        values: dict[str, object] = {
            "state_dir": self.state.path,
            "health_interval_s": 0.001,
            "backoff_jitter_s": 0.0,
            "max_restarts": 3,
            **overrides,
        }
        settings = GuardSettings(**values)  # type: ignore[arg-type]

        async def sleep(delay: float) -> None:
            self.delays.append(delay)

        def probe_for(_: Sequence[str]) -> FakeProbe:
            return FakeProbe(self.launcher, self.launcher.procs[-1])

        world = World(
            launcher=self.launcher,
            probe_for=probe_for,
            state=self.state,
            printer=self.printer,
            sleep=sleep,
            rng=random.Random(0),
        )
        return Supervisor(settings, program=["vllm"], model="m", user_args=args, env={}, world=world)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    state = StateDir(tmp_path)
    state.open()
    printer = RecordingPrinter()
    yield Harness(FakeLauncher([]), printer, [], state)
    printer.close()
    state.close()


async def test_crash_loop_backs_off_then_gives_up_with_a_table(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=2)]
    code = await harness.supervisor(max_restarts=3, backoff_initial_s=2.0).run()
    assert code == ExitCode.GAVE_UP
    assert len(harness.launcher.launched) == 4
    assert harness.delays == [2.0, 4.0, 8.0]
    assert any(line.startswith("gave up: the restart budget is spent") for line in harness.printer.lines)
    table = [line for line in harness.printer.lines if "attempt 4 says goodbye" in line]
    assert table, "the report names the last line of each attempt"


async def test_every_attempt_runs_vllm_serve_model_and_the_users_flags(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=1)]
    await harness.supervisor(["--max_model_len=4096", "--enforce-eager"], max_restarts=1).run()
    assert (
        harness.launcher.launched == [["vllm", "serve", "m", "--max_model_len=4096", "--enforce-eager"]] * 2
    )


async def test_exit_status_zero_without_a_stop_request_is_a_failure(harness: Harness) -> None:
    # vLLM #48966: the server can exit 0 after its engine died.
    harness.launcher.scripts = [Script(exit_after_polls=3, exit_status=0), Script()]
    sup = harness.supervisor()
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(2).wait(), 10)
    sup.request_stop()
    assert await run == ExitCode.STOPPED
    assert sup.history[0].exit_status == 0
    assert any("exited with status 0" in line for line in harness.printer.lines)


async def test_stop_request_when_ready_stops_vllm_and_exits_zero(harness: Harness) -> None:
    harness.launcher.scripts = [Script()]
    sup = harness.supervisor(["--shutdown-timeout", "45"], grace_period_s=30.0)
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(1).wait(), 10)
    os.kill(os.getpid(), signal.SIGTERM)  # the real signal path
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    # vLLM drains for --shutdown-timeout, so the grace is that plus a margin.
    assert harness.launcher.stops == [55.0]
    assert len(harness.launcher.launched) == 1


async def test_a_second_ctrl_c_skips_the_grace(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ignores_sigterm=True)]
    sup = harness.supervisor(grace_period_s=1000.0)
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(1).wait(), 10)
    sup.request_stop(signal.SIGINT)
    await asyncio.sleep(0.01)
    assert not run.done()
    sup.request_stop(signal.SIGINT)
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert any("killed its tree" in line for line in harness.printer.lines)


async def test_health_failing_after_ready_is_a_hang_and_restarts(harness: Harness) -> None:
    harness.launcher.scripts = [Script(health_fails_after_polls=2), Script()]
    sup = harness.supervisor(health_failures=3)
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(2).wait(), 10)
    sup.request_stop()
    await run
    assert sup.history[0].failure.kind.value == "hung"
    assert "/health failed 3 times in a row" in sup.history[0].failure.evidence
    assert len(harness.launcher.stops) == 2  # the hung one, then the requested stop


async def test_no_health_within_the_startup_timeout_is_a_hang(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None)]
    sup = harness.supervisor(startup_timeout_s=0.05, max_restarts=0)
    assert await sup.run() == ExitCode.GAVE_UP
    assert sup.history[0].failure.kind.value == "hung"
    assert "--startup-timeout-s" in sup.history[0].failure.evidence
    assert sup.history[0].exit_status is None


async def test_a_stop_during_the_restart_delay_ends_at_once(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=1)]
    sup = harness.supervisor()
    started = asyncio.Event()

    async def slow_sleep(delay: float) -> None:
        started.set()
        await asyncio.sleep(3600)

    sup._world.sleep = slow_sleep
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(started.wait(), 10)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert len(harness.launcher.launched) == 1


async def test_a_stop_between_the_kill_and_the_relaunch_relaunches_nothing(harness: Harness) -> None:
    # vLLM died; while the guard is still clearing its tree, a stop arrives: no next attempt.
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=1)]
    sup = harness.supervisor()
    clearing = asyncio.Event()
    original = harness.launcher.clear

    async def slow_clear(proc: VllmProcess) -> StopReport:
        clearing.set()
        await asyncio.sleep(0.2)
        return await original(proc)

    harness.launcher.clear = slow_clear  # type: ignore[method-assign]
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(clearing.wait(), 10)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert len(harness.launcher.launched) == 1


async def test_the_journal_records_each_attempt_without_secrets(harness: Harness, tmp_path: Path) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=1)]
    await harness.supervisor(["--api-key", "topsecret99"], max_restarts=0).run()
    journal = (tmp_path / "journal.jsonl").read_text()
    assert '"kind": "unknown"' in journal
    assert "topsecret99" not in journal
