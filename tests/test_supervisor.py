"""The supervisor loop with in-memory fakes: no process, no HTTP, and delays that take no time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vllm_guard.errors import ExitCode
from vllm_guard.fault_tolerance import Engine, EngineStatus
from vllm_guard.gpu import DeviceMemory
from vllm_guard.health import HealthResult
from vllm_guard.notify import Notifier
from vllm_guard.output import AttemptOutput
from vllm_guard.policy import Policy
from vllm_guard.printer import Printer
from vllm_guard.processes import StopReport, VllmProcess
from vllm_guard.reporter import Reporter
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir
from vllm_guard.supervisor import STARTING_GRACE_S, Supervisor, World
from vllm_guard.vllm_args import EffectiveFlags
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
    hangs_after_polls: int | None = None  # then each /health takes `hang_s` to fail, as a timeout
    hang_s: float = 0.0
    leftovers: tuple[str, ...] = ()  # what SIGKILL finds after the API server exited on SIGTERM
    clear_survivors: tuple[str, ...] = ()  # processes that survive SIGKILL when the tree is cleared
    # Fault tolerance: the polls at which the engine pauses (printing `pause_lines`), what a retry
    # does ("recovers", "fails": vLLM says why in ft_error, "ignored": it stays unhealthy), and
    # whether the status route exists at all.
    pauses_at_polls: tuple[int, ...] = ()
    pause_lines: tuple[str, ...] = ()
    retry: str = "recovers"
    dead_worker: bool = False
    status_route: bool = True


@dataclass
class FakeLauncher:
    scripts: list[Script]
    launched: list[list[str]] = field(default_factory=list)
    stops: list[float] = field(default_factory=list)
    procs: list[VllmProcess] = field(default_factory=list)
    in_flight: int = 0  # /health polls waiting for an answer now
    most_in_flight: int = 0
    retries: list[str] = field(default_factory=list)  # the request ids of the retries asked for

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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(skip_grace.wait(), grace_s)
        if not proc.exit_status.done():
            proc.exit_status.set_result(-9 if escalated else 0)
        return StopReport(escalated, ("1 (VLLM::EngineCore)",) if escalated else self.script(proc).leftovers)

    async def clear(self, proc: VllmProcess) -> StopReport:
        return StopReport(False, (), self.script(proc).clear_survivors)

    def script(self, proc: VllmProcess) -> Script:
        return self.scripts[min(self.procs.index(proc), len(self.scripts) - 1)]


@dataclass
class FakeProbe:
    launcher: FakeLauncher
    proc: VllmProcess
    polls: int = 0
    paused: bool = False
    pauses: int = 0
    failed_retry: str = ""

    async def engine_status(self) -> EngineStatus | None:
        script = self.launcher.script(self.proc)
        if not script.status_route:
            return None
        due = script.pauses_at_polls[self.pauses :]
        if not self.paused and due and self.polls >= due[0]:
            self.pauses += 1
            self.paused = True
            self.proc.output.feed(1, "".join(f"{line}\n" for line in script.pause_lines).encode())
        status = "healthy" if not self.paused else "dead" if script.dead_worker else "unhealthy"
        error = "CUDA error: an illegal memory access was encountered" if self.failed_retry else ""
        return EngineStatus((Engine(0, status, ft_error=error, last_request_id=self.failed_retry),))

    async def retry(self, request_id: str) -> tuple[str, str | None]:
        request_id = f"{request_id}-as-vllm-names-it"  # vLLM before 0.34 names it itself
        self.launcher.retries.append(request_id)
        outcome = self.launcher.script(self.proc).retry
        if outcome == "recovers":
            self.paused = False
            line = "(EngineCore pid=1) INFO 12-06 23:13:09 [engine_core_sentinel.py:132] [FT] Engine 0 status -> HEALTHY"
            self.proc.output.feed(1, f"{line}\n".encode())
        elif outcome == "fails":
            self.failed_retry = request_id
        return request_id, None

    async def check(self) -> HealthResult:
        self.polls += 1
        script = self.launcher.script(self.proc)
        if script.exit_after_polls is not None and self.polls >= script.exit_after_polls:
            if not self.proc.exit_status.done():
                self.proc.exit_status.set_result(script.exit_status)
            return HealthResult(False, "ConnectError")
        if script.health_fails_after_polls is not None and self.polls > script.health_fails_after_polls:
            return HealthResult(False, "ReadTimeout")
        if script.hangs_after_polls is not None and self.polls > script.hangs_after_polls:
            self.launcher.in_flight += 1
            self.launcher.most_in_flight = max(self.launcher.most_in_flight, self.launcher.in_flight)
            try:
                await asyncio.sleep(script.hang_s)
            finally:
                self.launcher.in_flight -= 1
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

    def supervisor(
        self,
        args: Sequence[str] = ("--port", "8000"),
        clock: Callable[[], float] = time.monotonic,
        policy: Policy | None = None,
        **overrides: object,
    ) -> Supervisor:
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

        def probe_for(_: EffectiveFlags) -> FakeProbe:
            return FakeProbe(self.launcher, self.launcher.procs[-1])

        world = World(
            launcher=self.launcher,
            probe_for=probe_for,
            state=self.state,
            printer=self.printer,
            sleep=sleep,
            rng=random.Random(0),
            clock=clock,
        )
        return Supervisor(
            settings, program=["vllm"], model="m", user_args=args, env={}, world=world, policy=policy
        )


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


class BusyGpu:
    """A GPU probe whose used memory keeps moving (a container, where NVML shows host pids, and
    another job is loading): the wait for a dead attempt's memory never sees it settle."""

    def __init__(self, settles: bool = False) -> None:
        self.read = asyncio.Event()
        self.reads = 0
        self._settles = settles

    def utilization(self) -> list[float]:
        return []

    def memory(self) -> list[DeviceMemory]:
        self.read.set()
        self.reads += 1
        moved = 0 if self._settles else self.reads * (128 << 20)
        return [DeviceMemory(0, 80 << 30, (60 << 30) - moved, ())]


async def test_a_stop_during_the_wait_for_gpu_memory_is_heard_at_once(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=1)]
    sup = harness.supervisor(gpu_release_timeout_s=3600.0)
    gpu = BusyGpu()
    sup._world.gpu_probe = lambda: gpu
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(gpu.read.wait(), 10)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert len(harness.launcher.launched) == 1


async def test_gpu_memory_is_waited_for_before_the_relaunch_and_a_timeout_is_said(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=1), Script()]
    sup = harness.supervisor(gpu_release_timeout_s=0.2)
    gpu = BusyGpu()
    sup._world.gpu_probe = lambda: gpu
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(2).wait(), 10)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert gpu.reads > 1
    assert any("GPU memory of attempt 1 was not back within 0.2 s" in line for line in harness.printer.lines)


async def test_gpu_memory_that_comes_back_lets_the_relaunch_go_without_a_warning(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ready_after_polls=None, exit_after_polls=1), Script()]
    sup = harness.supervisor(gpu_release_timeout_s=60.0)
    gpu = BusyGpu(settles=True)
    sup._world.gpu_probe = lambda: gpu
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(2).wait(), 20)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert not any("GPU memory" in line for line in harness.printer.lines)


async def test_processes_that_survive_sigkill_end_the_guard_instead_of_a_relaunch(harness: Harness) -> None:
    survivor = "4242 (VLLM::EngineCore)"
    harness.launcher.scripts = [
        Script(ready_after_polls=None, exit_after_polls=1, clear_survivors=(survivor,))
    ]
    sup = harness.supervisor()
    assert await asyncio.wait_for(sup.run(), 10) == ExitCode.GAVE_UP
    assert len(harness.launcher.launched) == 1  # never a second vLLM beside the first's processes
    assert any("survive SIGKILL" in line and survivor in line for line in harness.printer.lines)


async def test_a_stop_before_ready_waits_a_short_grace_not_the_whole(harness: Harness) -> None:
    # vLLM ignores SIGTERM while its engine starts (real-cpu f2b-f2d), and has nothing to drain.
    harness.launcher.scripts = [Script(ready_after_polls=None)]
    sup = harness.supervisor(grace_period_s=30.0)
    run = asyncio.ensure_future(sup.run())
    async with asyncio.timeout(10):
        while not harness.launcher.procs:
            await asyncio.sleep(0.001)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert harness.launcher.stops == [STARTING_GRACE_S]
    assert STARTING_GRACE_S < 30.0


async def test_a_clean_stop_that_leaves_something_is_not_called_a_stop_out_of_time(harness: Harness) -> None:
    harness.launcher.scripts = [Script(leftovers=("77 (python3)",))]
    sup = harness.supervisor(grace_period_s=30.0)
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(1).wait(), 10)
    sup.request_stop()
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert not any("did not stop in time" in line for line in harness.printer.lines)
    assert "vLLM exited; killed what it left running: 77 (python3)" in harness.printer.lines
    stopped = [json.loads(line) for line in (harness.state.path / "journal.jsonl").read_text().splitlines()]
    assert stopped[-1]["event"] == "stopped" and stopped[-1]["escalated"] is False


async def test_a_grace_cut_short_by_a_second_ctrl_c_says_so(harness: Harness) -> None:
    harness.launcher.scripts = [Script(ignores_sigterm=True)]
    sup = harness.supervisor(grace_period_s=1000.0)
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(1).wait(), 10)
    sup.request_stop(signal.SIGINT)
    sup.request_stop(signal.SIGINT)
    assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    assert any(
        "did not stop in time; killed its tree" in line and "a second Ctrl-C cut the grace short" in line
        for line in harness.printer.lines
    )


async def test_health_polls_go_on_while_one_waits_for_its_timeout(harness: Harness) -> None:
    # Each /health of a hung vLLM takes the whole timeout to fail: polled one after another, N
    # failures take N x (interval + timeout); started every interval, interval x N + one timeout.
    harness.launcher.scripts = [Script(hangs_after_polls=2, hang_s=1.0), Script()]
    sup = harness.supervisor(health_failures=3, health_interval_s=0.01)
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(2).wait(), 20)
    sup.request_stop()
    await asyncio.wait_for(run, 10)
    assert sup.history[0].failure.kind.value == "hung"
    assert "/health failed 3 times in a row (ReadTimeout)" in sup.history[0].failure.evidence
    assert harness.launcher.most_in_flight == 3  # never more than the failures that mean hung


async def test_a_refused_ready_is_sent_again_until_systemd_hears_it(harness: Harness, tmp_path: Path) -> None:
    systemd = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd.bind(str(tmp_path / "notify"))
    systemd.setblocking(False)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notifier is not None
    try:
        while not notifier.failed:  # systemd is slow to read: its queue is full
            notifier.status("x" * 1000)
        harness.launcher.scripts = [Script()]
        sup = harness.supervisor()
        sup.reporter = Reporter(notifier, None, sup._world.clock, startup_timeout_s=60, stop_timeout_s=60)
        run = asyncio.ensure_future(sup.run())
        await asyncio.wait_for(sup.ready_event(1).wait(), 10)
        refused = notifier.failed
        with contextlib.suppress(BlockingIOError):
            while True:
                systemd.recv(65536)  # systemd catches up
        loop = asyncio.get_running_loop()
        heard: list[str] = []
        async with asyncio.timeout(10):
            while not any(m.startswith("READY=1") for m in heard):
                heard.append((await loop.sock_recv(systemd, 65536)).decode())
        assert refused > 1  # READY=1 itself was refused once at least
        sup.request_stop()
        assert await asyncio.wait_for(run, 10) == ExitCode.STOPPED
    finally:
        notifier.close()
        systemd.close()
