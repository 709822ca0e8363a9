"""The supervision loop: launch vLLM, watch it, carry out the policy's decisions, stop on request.

The only place where the pure core (policy, flags) and the shell (processes, HTTP, NVML, state)
meet. Signal handlers only record the signal and set an event, as in uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vllm_guard import gpu, vllm_args, vllm_config, vllm_version
from vllm_guard.child import Launcher, Spawned, VllmProcess
from vllm_guard.errors import ExitCode
from vllm_guard.failures import Failure, FailureKind, classify
from vllm_guard.health import HealthProbe
from vllm_guard.output import AttemptOutput, CappedLog
from vllm_guard.policy import Attempt, Decision, Facts, GiveUp, Policy, decide
from vllm_guard.policy import as_json as decision_json
from vllm_guard.printer import Printer
from vllm_guard.redact import Redactor
from vllm_guard.settings import GuardSettings
from vllm_guard.startup import Started
from vllm_guard.state import StateDir
from vllm_guard.vllm_args import changes

# How long a vLLM whose /health says 503 (engine dead) may take to exit by itself; it takes ~5 s.
DEAD_ENGINE_EXIT_S = 15.0
# Added to vLLM's own --shutdown-timeout (it drains requests that long) before SIGKILL.
SHUTDOWN_MARGIN_S = 10.0


@dataclass(slots=True)
class World:
    """The shell the supervisor acts through; tests replace any part of it."""

    launcher: Launcher
    probe_for: Callable[[Sequence[str]], HealthProbe]
    state: StateDir
    printer: Printer
    gpu_probe: Callable[[], gpu.GpuProbe | None] = lambda: None  # opened only when needed
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)


class Supervisor:
    def __init__(
        self,
        settings: GuardSettings,
        *,
        program: Sequence[str],
        model: str,
        user_args: Sequence[str],
        env: Mapping[str, str],
        world: World,
        policy: Policy | None = None,
        start_args: Sequence[str] | None = None,
        known_good_key: str | None = None,
        vllm_version: str | None = None,
        remembered_args: Sequence[str] | None = None,
    ) -> None:
        self._settings = settings
        self._program = tuple(program)
        self._model = model
        self._user_args = tuple(user_args)
        self._env = dict(env)
        self._world = world
        self._policy = policy or Policy()
        self._start_args = tuple(start_args) if start_args is not None else self._user_args
        self._known_good_key = known_good_key
        self._remembered_args = tuple(remembered_args) if remembered_args is not None else None
        self._vllm_version = vllm_version
        self._printed_version: str | None = None  # what vLLM's banner said, when metadata did not
        self._print = world.printer.guard
        self._stop = asyncio.Event()
        self._skip_grace = asyncio.Event()
        self._ready: dict[int, asyncio.Event] = {}
        self._exited_wall: dict[int, float] = {}  # when each attempt's vLLM was seen gone
        self._recorded: dict[int, float] = {}  # the processes last written to the state directory
        self.history: list[Attempt] = []

    # -- control from outside (signals, the demo, tests) --

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        if signum == signal.SIGINT and self._stop.is_set():
            self._skip_grace.set()  # a second Ctrl-C: no more waiting
        self._stop.set()

    def ready_event(self, attempt: int) -> asyncio.Event:
        return self._ready.setdefault(attempt, asyncio.Event())

    # -- the loop --

    async def run(self, early_signals: Sequence[int] = ()) -> ExitCode:
        """Supervise until stopped or given up. `early_signals`: stop requests noted before
        this loop took the signals over; read after it has, so none falls in between."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        for early in early_signals:
            self.request_stop(early)
        try:
            return await self._loop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def _loop(self) -> ExitCode:
        for warning in self._world.state.warnings:
            self._print(warning, level="warning")
        if self._vllm_version:
            self._print(f"vLLM {self._vllm_version} (from its package metadata)")
        args = self._start_args
        remembered = self._remembered_args
        if remembered is not None and remembered != self._user_args:
            edits = changes(self._user_args, remembered)
            self._print(
                f"starting from the flags that reached ready last time ({edits}); "
                f"`vllm-guard forget {self._model}` drops them"
            )
        step: str | None = None
        number = 0
        while True:
            number += 1
            ended = await self._attempt(number, args, step)
            if ended is None:
                return ExitCode.STOPPED
            if isinstance(ended, ExitCode):
                return ended
            self.history.append(ended)
            decision = decide(
                self.history,
                self._settings.discipline(),
                self._world.clock(),
                self._world.rng,
                policy=self._policy,
                facts=Facts(vllm_version=self._vllm_version or self._printed_version),
                config=vllm_config.read(ended.vllm_args),
            )
            self._record_end(ended, decision)
            if isinstance(decision, GiveUp):
                self._report(decision)
                return decision.exit_code
            self._env.update(decision.env)
            what = f"attempt {number} failed: {ended.failure.kind.value}"
            if decision.step is not None or decision.env:
                changed = changes(args, decision.vllm_args)
                env = " ".join(f"{k}={v}" for k, v in decision.env)
                self._print(
                    f"{what}; policy {self._policy.name} step: {decision.step or 'undo'}; "
                    f"{changed}{'; env ' + env if env else ''}; relaunching now"
                )
            else:
                self._print(
                    f"{what}; restarting with the same flags in {decision.delay_s:.1f} s "
                    f"({decision.reason}; restart {number} of at most {self._settings.max_restarts})"
                )
            if decision.delay_s > 0 and await self._sleep_unless_stopped(decision.delay_s):
                self._print("stopped during the restart delay; vLLM is not running")
                return ExitCode.STOPPED
            args = decision.vllm_args
            step = decision.step

    async def _attempt(
        self, number: int, args: tuple[str, ...], step: str | None = None
    ) -> Attempt | ExitCode | None:
        """Run one attempt: how it failed, None when it was stopped on request and vLLM is gone,
        or the exit code when the guard cannot go on."""
        world = self._world
        redactor = Redactor.for_launch(self._env, args)
        world.printer.redactor = redactor
        log = CappedLog(world.state.attempt_log(number), self._settings.log_max_bytes)
        world.printer.full_log_hint = str(log.path)
        output = AttemptOutput(world.printer, redactor, log)
        argv = [*self._program, "serve", self._model, *args]
        self._print(f"starting vLLM (attempt {number}): {' '.join(redactor.argv(argv))}")
        started = world.clock()
        proc = await world.launcher.launch(argv, self._env, output)
        world.state.record(
            {
                "event": "started",
                "attempt": number,
                "argv": redactor.argv(argv),
                "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "launched_at_s": round(time.time(), 4),  # wall clock, for relaunch latency
                "step": step,
                "log": str(log.path),
            }
        )
        self._record_tree(proc)
        probe = world.probe_for(args)
        ready_at: float | None = None
        hung = ""
        try:
            ready_at, hung = await self._watch(number, proc, probe, started)
        finally:
            await probe.aclose()
        if self._stop.is_set() and not hung and proc.running:
            return await self._stop_on_request(number, proc, started, ready_at)
        if hung:
            self._print(f"vLLM hung ({hung}); stopping its process tree", level="warning")
            await world.launcher.stop(proc, self._grace_s(args), self._skip_grace)
        else:
            await proc.exit_status
        self._exited_wall[number] = time.time()
        cleared = await self._clear(number, proc)
        if cleared is not None:
            return cleared
        ended_at = world.clock()
        status = proc.exit_status.result()
        if hung:
            failure = Failure(FailureKind.HUNG, hung)
        else:
            failure = classify(output.tail(), exit_status=status, ready=ready_at is not None)
            self._print(
                f"vLLM exited with status {_status_text(status)} after {ended_at - started:.1f} s "
                f"without being asked to stop (attempt {number}): {failure.kind.value}"
                + (f": {failure.evidence}" if failure.evidence else ""),
                level="error",
            )
        last_line = next((line.strip() for line in reversed(output.tail(20)) if line.strip()), "")
        if self._vllm_version is None and self._printed_version is None:
            self._printed_version = vllm_version.from_output(output.head())
        attempt = Attempt(
            number, args, started, ended_at, ready_at, None if hung else status, failure, last_line, step
        )
        if self._stop.is_set():
            self._record_end(attempt, None)
            return None
        return attempt

    async def _watch(
        self, number: int, proc: VllmProcess, probe: HealthProbe, started: float
    ) -> tuple[float | None, str]:
        """Poll /health until vLLM exits, a stop is requested, or it hangs.
        Returns when it became ready (or None) and why it counts as hung ("" if not)."""
        clock = self._world.clock
        ready_at: float | None = None
        dead_since: float | None = None
        failed_polls = 0
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                waiting: list[asyncio.Future[Any]] = [proc.exit_status, stop]
                await asyncio.wait(
                    waiting,
                    timeout=self._settings.health_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stop.done() or not proc.running:
                    return ready_at, ""
                self._record_tree(proc)
                result = await probe.check()
                if not proc.running:
                    return ready_at, ""
                if result.ok:
                    failed_polls = 0
                    if ready_at is None:
                        ready_at = clock()
                        proc.remember_tree()
                        self._print(
                            f"vLLM is ready (attempt {number}): /health answered 200 "
                            f"{ready_at - started:.1f} s after launch"
                        )
                        self.ready_event(number).set()
                        self._remember(tuple(proc.argv[len(self._program) + 2 :]))
                elif ready_at is None:
                    if clock() - started > self._settings.startup_timeout_s:
                        return None, (
                            f"no /health 200 within --startup-timeout-s {self._settings.startup_timeout_s:g}"
                        )
                elif result.detail == "503":
                    # vLLM answers 503 once its engine is dead and exits by itself a few seconds
                    # later (#21728), with the root cause in its output: let it, within bounds.
                    dead_since = dead_since if dead_since is not None else clock()
                    if clock() - dead_since > DEAD_ENGINE_EXIT_S:
                        return ready_at, (
                            f"/health has said 503 (engine dead) for {DEAD_ENGINE_EXIT_S:g} s "
                            "and vLLM has not exited"
                        )
                else:
                    failed_polls += 1
                    if failed_polls >= self._settings.health_failures:
                        return (
                            ready_at,
                            f"/health failed {failed_polls} times in a row ({result.detail})",
                        )
        finally:
            stop.cancel()

    def _record_tree(self, proc: VllmProcess) -> None:
        """Keep the state directory's record of vLLM's processes current, so that if this guard
        is killed the next `serve` finds and removes what it leaves."""
        tree = proc.tree()
        if tree and tree != self._recorded:
            self._world.state.record_processes(tree)
            self._recorded = tree

    def _remember(self, args: tuple[str, ...]) -> None:
        """Keep the flags that reached ready for the next start, or forget them when the user's
        own flags work again."""
        if self._known_good_key is None:
            return
        if args == self._user_args:
            self._world.state.remember(self._known_good_key, None)
            return
        redactor = Redactor.for_launch(self._env, self._user_args)
        self._world.state.remember(
            self._known_good_key,
            {
                "model": self._model,
                "user_argv": redactor.argv(self._user_args),
                "argv": redactor.argv(args),
                "edits": vllm_args.edits(self._user_args, args),
                "vllm_version": self._vllm_version,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        self._print(f"remembered these flags for the next start ({changes(self._user_args, args)})")

    async def _stop_on_request(
        self, number: int, proc: VllmProcess, started: float, ready_at: float | None
    ) -> ExitCode | None:
        grace = self._grace_s(tuple(proc.argv))
        self._print(f"stopping vLLM: SIGTERM, then SIGKILL of its whole tree after {grace:g} s")
        report = await self._world.launcher.stop(proc, grace, self._skip_grace)
        status = proc.exit_status.result() if not proc.running else None
        if report.survivors:
            self._print(f"processes of vLLM survive SIGKILL: {', '.join(report.survivors)}", level="error")
            return ExitCode.GAVE_UP
        if report.escalated:
            self._print(f"vLLM did not stop in time; killed its tree: {', '.join(report.killed)}")
        self._world.state.clear_processes()
        self._print(f"vLLM stopped (status {_status_text(status)}); nothing of it is left")
        self._world.state.record(
            {
                "event": "stopped",
                "attempt": number,
                "lasted_s": round(self._world.clock() - started, 3),
                "ready_after_s": None if ready_at is None else round(ready_at - started, 3),
                "exit_status": status,
                "escalated": report.escalated,
            }
        )
        return None

    def _record_end(self, attempt: Attempt, decision: Decision | None) -> None:
        redactor = self._world.printer.redactor
        self._world.state.record(
            {
                "event": "ended",
                "attempt": attempt.number,
                "lasted_s": round(attempt.ended_at - attempt.started_at, 3),
                "ready_after_s": None
                if attempt.ready_at is None
                else round(attempt.ready_at - attempt.started_at, 3),
                "exit_status": attempt.exit_status,
                "exited_at_s": round(self._exited_wall.get(attempt.number, 0.0), 4),
                "kind": attempt.failure.kind.value,
                "evidence": redactor.text(attempt.failure.evidence or attempt.last_line),
                "numbers": attempt.failure.numbers,
                "decision": None if decision is None else decision_json(decision, redactor.argv),
            }
        )

    async def _clear(self, number: int, proc: VllmProcess) -> ExitCode | None:
        """No process of an ended attempt may outlive it: kill leftovers, wait for GPU memory."""
        report = await self._world.launcher.clear(proc)
        if report.killed:
            self._print(
                f"killed what attempt {number} left behind: {', '.join(report.killed)}",
                level="warning",
            )
        if report.survivors:
            self._print(
                f"processes of attempt {number} survive SIGKILL ({', '.join(report.survivors)}); "
                "not relaunching beside them",
                level="error",
            )
            return ExitCode.GAVE_UP
        self._world.state.clear_processes()
        self._recorded = {}
        probe = self._world.gpu_probe()
        if probe is not None:
            released = await gpu.wait_for_release(
                probe, proc.known.keys(), self._settings.gpu_release_timeout_s
            )
            if not released:
                self._print(
                    f"GPU memory of attempt {number} was not back within "
                    f"{self._settings.gpu_release_timeout_s:g} s",
                    level="warning",
                )
        return None

    async def _sleep_unless_stopped(self, delay_s: float) -> bool:
        sleeper = asyncio.ensure_future(self._world.sleep(delay_s))
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            waiting: list[asyncio.Future[Any]] = [sleeper, stop]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            stop.cancel()
        return self._stop.is_set()

    def _grace_s(self, args: Sequence[str]) -> float:
        """At least vLLM's own --shutdown-timeout (it drains requests that long) plus a margin."""
        try:
            drain = float(vllm_args.get(args, "--shutdown-timeout") or 0)
        except ValueError:
            drain = 0.0
        return max(self._settings.grace_period_s, drain + SHUTDOWN_MARGIN_S if drain else 0.0)

    def _report(self, decision: GiveUp) -> None:
        """One table of attempts, so nobody has to dig through scrollback to learn why."""
        self._print(f"gave up: {decision.reason}", level="error")
        self._print(f"  {'#':>3}  {'lasted':>8}  {'ready':>5}  {'ended':<16}  {'kind':<10}  evidence")
        for a in self.history:
            ended = "killed (hung)" if a.exit_status is None else f"status {_status_text(a.exit_status)}"
            self._print(
                f"  {a.number:>3}  {a.ended_at - a.started_at:>7.1f}s  "
                f"{'yes' if a.ready_at is not None else 'no':>5}  {ended:<16}  "
                f"{a.failure.kind.value:<10}  {(a.failure.evidence or a.last_line)[:160]}"
            )


def _status_text(status: int | None) -> str:
    if status is None:
        return "unknown"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"{status} ({signal.Signals(-status).name})"
    return str(status)


@contextlib.asynccontextmanager
async def real_world(
    settings: GuardSettings, state: StateDir, started: Spawned | None = None
) -> AsyncIterator[World]:
    """The shell for real: processes, HTTP, NVML, the state directory, the terminal."""
    from vllm_guard.child import ProcessLauncher, Reaper  # noqa: PLC0415
    from vllm_guard.health import HttpHealthProbe, endpoint  # noqa: PLC0415

    printer = Printer(log_format=settings.log_format)
    reaper = Reaper()
    reaper.install(asyncio.get_running_loop())
    try:
        yield World(
            launcher=ProcessLauncher(reaper, kill_timeout_s=settings.kill_timeout_s, started=started),
            probe_for=lambda args: HttpHealthProbe(endpoint(args), settings.health_timeout_s),
            state=state,
            printer=printer,
            gpu_probe=gpu.Nvml.open,
        )
    finally:
        reaper.uninstall()
        printer.close()


async def serve(started: Started) -> ExitCode:
    """`vllm-guard serve`, from the moment its event loop runs."""
    try:
        from vllm_guard import policy_file  # noqa: PLC0415 - loaded once vLLM is already starting

        settings, policy = policy_file.effective(started.settings)
        async with real_world(settings, started.state, started.first) as world:
            supervisor = Supervisor(
                settings,
                program=started.program,
                model=started.model,
                user_args=started.user_args,
                env=started.env,
                world=world,
                policy=policy,
                start_args=started.first_args,
                remembered_args=started.remembered_args,
                known_good_key=started.known_good_key,
                vllm_version=started.vllm_version,
            )
            return await supervisor.run(started.early_signals)
    except BaseException:
        from vllm_guard.child import kill_spawned  # noqa: PLC0415

        # If the loop failed before the first attempt was adopted, it must not run unwatched.
        with contextlib.suppress(OSError):
            os.kill(started.first.pid, 0)
            kill_spawned(started.first)
        raise
    finally:
        started.state.close()
