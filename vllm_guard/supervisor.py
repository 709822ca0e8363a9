"""The supervision loop: launch vLLM, watch it, carry out the policy's decisions, stop on request.

The only place where the pure core (policy, flags) and the shell (processes, HTTP, NVML, state)
meet. Signal handlers only record the signal and set an event, as in uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vllm_guard import (
    advice,
    fault_tolerance,
    flag_edits,
    gpu,
    journal,
    measured,
    vllm_args,
    vllm_config,
    vllm_profile,
    vllm_version,
)
from vllm_guard.attempt_watch import AttemptWatch, Hung, ReadMetrics, Ready
from vllm_guard.errors import ExitCode
from vllm_guard.exporter import GuardMetrics
from vllm_guard.failures import Failure, FailureKind, classify
from vllm_guard.group_link import FollowerSeat, LeaderSeat
from vllm_guard.health import HealthProbe, Polls
from vllm_guard.milestones import Milestone
from vllm_guard.notify import Notifier
from vllm_guard.output import SCAN_BUDGET_BYTES, AttemptOutput, CappedLog
from vllm_guard.policy import (
    Attempt,
    Decision,
    Facts,
    GiveUp,
    Policy,
    Relaunch,
    decide,
    restarts_in_window,
)
from vllm_guard.policy import as_json as decision_json
from vllm_guard.printer import Printer
from vllm_guard.processes import Launcher, VllmProcess, stop_signals
from vllm_guard.redact import Redactor
from vllm_guard.reporter import Reporter
from vllm_guard.serve_advice import LiveAdvice
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir
from vllm_guard.vllm_args import changes

# How long a hung vLLM gets between SIGTERM and SIGKILL.
HUNG_GRACE_S = 5.0
# How long a vLLM that is not ready yet gets between SIGTERM and SIGKILL (see _stop_on_request).
STARTING_GRACE_S = 3.0
# How often the record of vLLM's processes in the state directory is brought up to date.
RECORD_INTERVAL_S = 0.5
# The guard's own heartbeat (systemd's watchdog pings at least this often when it asks for them).
HEARTBEAT_S = 5.0
# How soon a READY=1 or STOPPING=1 that systemd's socket refused is sent again.
NOTIFY_RETRY_S = 0.5
# Added to vLLM's own --shutdown-timeout (it drains requests that long) before SIGKILL.
SHUTDOWN_MARGIN_S = 10.0
# How long an engine asked to retry (fault tolerance) may take to say it is healthy again: the
# retry only synchronises the device and drops the requests' state (0.34's data-parallel rounds
# give each rank 10 s to check in), so one that has not within this will not.
RETRY_WAIT_S = 30.0
# How often the engine's status is read while a retry is under way.
RETRY_POLL_S = 0.5
# Status reads that fail in a row, with vLLM otherwise healthy, before the guard stops asking
# (a vLLM with the flag but without the route): the stall check still covers a paused engine.
STATUS_MISSES = 5


@dataclass(frozen=True, slots=True)
class Stopped:
    """The attempt was stopped on request, and vLLM is gone."""


@dataclass(frozen=True, slots=True)
class Failed:
    """vLLM ended (or hung) without being asked to: the policy decides what follows."""

    attempt: Attempt
    flags: vllm_args.EffectiveFlags  # as vLLM read them, its --config file included
    by_group: bool = False  # stopped because its group's generation ended, not on a failure of its own


@dataclass(frozen=True, slots=True)
class Fatal:
    """The guard cannot go on (processes survive SIGKILL): it ends with this code."""

    code: ExitCode


Outcome = Stopped | Failed | Fatal


@dataclass(frozen=True, slots=True)
class Watched:
    """How watching an attempt ended: when it became ready, why it counts as hung, and the
    failure its paused engine (fault tolerance) was stopped on."""

    ready_at: float | None
    hung: str | None = None
    paused: Failure | None = None
    group: Failure | None = None  # the group's generation ended elsewhere (group_link.py)


@dataclass(slots=True)
class Launch:
    """One launch of vLLM being watched. `since`, `ready_at` and `step` are those of its
    current stretch: from the launch, or from its engine's last retry in place (a restart, so
    the stretch after it has no step, as a same-flags restart has none)."""

    number: int
    proc: VllmProcess
    flags: vllm_args.EffectiveFlags
    since: float
    step: str | None
    ready_at: float | None = None
    launched: float = 0.0
    resumed: bool = False  # the engine retried in place at least once
    # failed reads of the engine's status in a row; None: fault tolerance is off, or it has
    # no status to read
    status_misses: int | None = None

    def attempt(self, ended_at: float, exit_status: int | None, failure: Failure, last_line: str) -> Attempt:
        """The current stretch as the policy sees it."""
        args = tuple(self.flags.args)
        return Attempt(
            self.number, args, self.since, ended_at, self.ready_at, exit_status, failure, last_line, self.step
        )


@dataclass(slots=True)
class World:
    """The shell the supervisor acts through; tests replace any part of it."""

    launcher: Launcher
    probe_for: Callable[[vllm_args.EffectiveFlags], HealthProbe]
    state: StateDir
    printer: Printer
    gpu_probe: Callable[[], gpu.GpuProbe | None] = lambda: None  # opened only when needed
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    rng: random.Random = field(default_factory=random.Random)
    notifier: Notifier | None = None  # systemd's notify socket, when systemd gave one
    metrics: GuardMetrics | None = None  # what the exporter serves, when --metrics-port is set


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
        learned_elsewhere: str | None = None,
        facts: Facts | None = None,
        group: LeaderSeat | FollowerSeat | None = None,
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
        self._learned_elsewhere = learned_elsewhere
        self._group = group  # this node's seat in a group of vLLM processes on several nodes
        self._vllm_version = vllm_version
        self._facts = facts or Facts()  # the GPUs preflight read, for the policy (fp8 needs 7.5)
        self._printed_version: str | None = None  # what vLLM's banner said, when metadata did not
        self._print = world.printer.guard
        self._stop = asyncio.Event()
        self._skip_grace = asyncio.Event()
        self._ready: dict[int, asyncio.Event] = {}
        self._exited_wall: dict[int, float] = {}  # when each attempt's vLLM was seen gone
        self._recorded: dict[int, float] = {}  # the processes last written to the state directory
        self._recorded_shm: frozenset[str] = frozenset()  # and their /dev/shm segments
        self.reporter = Reporter(
            world.notifier,
            world.metrics,
            world.clock,
            startup_timeout_s=settings.startup_timeout_s,
            stop_timeout_s=settings.grace_period_s + settings.kill_timeout_s + 10,
        )
        self.beat_at = world.clock()
        self.history: list[Attempt] = []
        self.advice = LiveAdvice(
            self._policy.advice,
            window_s=settings.advice_window_s,
            say=self._print,
            record=world.state.record,
            reporter=self.reporter,
            gpu=world.gpu_probe,
        )

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
        armed = stop_signals()  # as startup armed them: SIGHUP stays ignored under nohup
        for signum in armed:
            loop.add_signal_handler(signum, self.request_stop, signum)
        for early in early_signals:
            self.request_stop(early)
        beating = asyncio.ensure_future(self._heartbeat())
        try:
            return await self._loop()
        finally:
            beating.cancel()
            for signum in armed:
                loop.remove_signal_handler(signum)

    async def _heartbeat(self) -> None:
        """The guard's own liveness: systemd's watchdog and the exporter's /livez follow this
        loop, never vLLM's health, so a long load or a relaunch can never trip them (catching a
        hung vLLM is the guard's job)."""
        watchdog_s = self.reporter.watchdog_interval_s
        interval = min(HEARTBEAT_S, watchdog_s or HEARTBEAT_S)
        # READY=1 and STOPPING=1 are state changes: one refused (systemd's queue was full) is
        # sent again, soon, until one goes through; STATUS= and WATCHDOG= may be dropped.
        step = min(interval, NOTIFY_RETRY_S) if self.reporter.notifies else interval
        while True:
            self.beat_at = self._world.clock()
            self.reporter.watchdog()
            for _ in range(max(1, round(interval / step))):
                await asyncio.sleep(step)
                self.reporter.tell_state()

    def alive(self) -> bool:
        """For /livez: the event loop has ticked recently."""
        return self._world.clock() - self.beat_at < 3 * HEARTBEAT_S

    def _say_start(self) -> None:
        for warning in self._world.state.warnings:
            self._print(warning, level="warning")
        if self._vllm_version:
            self._print(f"vLLM {self._vllm_version} (from its package metadata)")
        remembered = self._remembered_args
        if remembered is not None and remembered != self._user_args:
            edits = changes(self._user_args, remembered)
            where = self._learned_elsewhere
            self._print(
                (
                    f"starting from the flags another guard learned {where} ({edits})"
                    if where
                    else f"starting from the flags that reached ready last time ({edits})"
                )
                + f"; `vllm-guard forget {self._model}` drops them"
            )
        if self._group is not None:
            self._print(f"this node is {self._group.role.describe()}")

    async def _loop(self) -> ExitCode:
        self._say_start()
        args = self._start_args
        step: str | None = None
        number = 0
        envs: dict[int, dict[str, str]] = {}
        while True:
            number += 1
            if self._group is not None:
                planned = await self._group_launch(number, args)
                if not isinstance(planned, tuple):
                    return planned
                args = planned
            envs[number] = dict(self._env)  # what an undo of the next step restores
            self.reporter.attempt_started(number, step, degraded=args != self._user_args)
            outcome = await self._attempt(number, args, step)
            if isinstance(outcome, Stopped):
                self.reporter.phase_is("stopped", "stopped on request")
                await self._group_stopped()
                return ExitCode.STOPPED
            if isinstance(outcome, Fatal):
                self.reporter.phase_is("gave_up", f"ended with exit {int(outcome.code)}")
                await self._group_stopped()
                return outcome.code
            ended = outcome.attempt
            if isinstance(self._group, FollowerSeat):
                self._follower_ended(self._group, outcome)
                step = None
                continue
            if isinstance(self._group, LeaderSeat):
                ended = await self._group.root(ended, self._stop, own=not outcome.by_group)
            self.history.append(ended)
            self.reporter.failed(ended.failure.kind.value)
            decision = self._decide(self.history, outcome.flags)
            self._record_end(ended, decision)
            if isinstance(decision, GiveUp):
                self.reporter.phase_is("gave_up", f"gave up: {decision.reason}")
                self._report(decision)
                await self._group_decided(decision)
                return decision.exit_code
            if decision.how == "undo":
                self._env = dict(envs.get(number - 1, self._env))  # the refused step's env goes too
            self._env.update(decision.env)
            self._say_decision(number, ended, args, decision)
            await self._group_decided(decision)
            if decision.delay_s > 0:
                self.reporter.phase_is("backoff", f"attempt {number} failed ({ended.failure.kind.value}); "
                            f"restarting in {decision.delay_s:.0f} s")  # fmt: skip
                if await self._sleep_unless_stopped(decision.delay_s):
                    self._print("stopped during the restart delay; vLLM is not running")
                    self.reporter.phase_is("stopped", "stopped during the restart delay")
                    return ExitCode.STOPPED
            args = self._carry_advice(decision.vllm_args, outcome.flags)
            step = decision.step

    def _say_decision(self, number: int, ended: Attempt, args: tuple[str, ...], decision: Relaunch) -> None:
        what = f"attempt {number} failed: {ended.failure.kind.value}"
        restart = restarts_in_window(self.history, self._settings.discipline(), self._world.clock()) + 1
        if decision.how == "step":
            changed = changes(args, decision.vllm_args)
            env = " ".join(f"{k}={v}" for k, v in decision.env)
            self._print(
                f"{what}; policy {self._policy.name} step: {decision.step}; "
                f"{changed}{'; env ' + env if env else ''}; relaunching now"
            )
        elif decision.how == "undo":
            self._print(
                f"{what}; {decision.reason}: relaunching now with "
                f"{changes(args, decision.vllm_args)} (restart {restart} of at most "
                f"{self._settings.max_restarts})"
            )
        else:
            self._print(
                f"{what}; restarting with the same flags in {decision.delay_s:.1f} s "
                f"({decision.reason}; restart {restart} of at most {self._settings.max_restarts})"
            )

    def _follower_ended(self, seat: FollowerSeat, outcome: Failed) -> None:
        """A follower's vLLM ended: the leader's guard decides for the group, so its end is
        reported there, and kept here."""
        ended = outcome.attempt
        seat.ended(ended, own=not outcome.by_group)
        if not outcome.by_group:
            kind = ended.failure.kind.value
            self._print(f"attempt {ended.number} failed: {kind}; the group's leader decides what follows")
        self.history.append(ended)
        self.reporter.failed(ended.failure.kind.value)
        self._record_end(ended, None)

    async def _group_launch(self, number: int, args: tuple[str, ...]) -> tuple[str, ...] | ExitCode:
        """In a group, the flags this node launches with, once the group lets it: the leader's
        once every node has stopped the last generation, a follower's as the leader's
        generation says. An exit code when the group gave up or a stop was asked for."""
        seat = self._group
        assert seat is not None
        self.reporter.phase_is("starting", f"attempt {number}: waiting for the group")
        planned = await seat.before_launch(number, args, self._stop)
        if planned is None:
            self._print("stopped while waiting for the group; vLLM is not running")
            self.reporter.phase_is("stopped", "stopped while waiting for the group")
            return ExitCode.STOPPED
        if isinstance(planned, GiveUp):
            self._print(planned.reason, level="error")
            self.reporter.phase_is("gave_up", planned.reason)
            if isinstance(seat, FollowerSeat):
                await seat.link.flush()  # the leader waits to hear that its followers end too
            return planned.exit_code
        if number > 1 and isinstance(seat, FollowerSeat) and planned != args:
            self._print(
                f"the group's generation {seat.running[1] if seat.running else '?'} changes this node's "
                f"flags: {changes(args, planned)}"
            )
        return planned

    async def _group_decided(self, decision: Decision) -> None:
        """The leader's decision becomes the group's next generation (or its end, heard by the
        followers before the leader's guard exits)."""
        if isinstance(self._group, LeaderSeat):
            self._group.decided(decision)
            if isinstance(decision, GiveUp):
                await self._group.linger(self._skip_grace)

    async def _group_stopped(self) -> None:
        """The leader stopped (or ended): its followers stop their vLLM too and wait for it. A
        follower stopped says so to the leader before its guard exits."""
        if isinstance(self._group, FollowerSeat):
            self._group.link.tell(phase="stopped")
            await self._group.link.flush()
        if isinstance(self._group, LeaderSeat):
            self._group.desk.move(lambda book: book.halt())
            await self._group.linger(self._skip_grace)

    async def _attempt(self, number: int, args: tuple[str, ...], step: str | None = None) -> Outcome:
        """Run one attempt, to how it ended."""
        world = self._world
        flags = vllm_config.flags(args, self._version())  # read once: health, grace and policy agree
        redactor = Redactor.for_launch(self._env, args)
        world.printer.redactor = redactor
        log = CappedLog(world.state.attempt_log(number), self._settings.log_max_bytes)
        world.printer.full_log_hint = str(log.path)
        output = AttemptOutput(world.printer, redactor, log)
        argv = [*self._program, "serve", self._model, *args]
        # quoted as a shell would need it: pasting the line runs what the guard ran, nothing else
        self._print(f"starting vLLM (attempt {number}): {shlex.join(redactor.argv(argv))}")
        started = world.clock()
        proc = await world.launcher.launch(argv, self._env, output)
        world.state.record(
            journal.AttemptStarted(
                attempt=number,
                argv=redactor.argv(argv),
                started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                launched_at_s=round(time.time(), 4),
                step=step,
                log=str(log.path),
                group=self._group.launching() if self._group is not None else None,
            )
        )
        self._record_tree(proc)
        recording = asyncio.ensure_future(self._keep_recording(number, proc))
        probe = self._probe(flags)
        self.advice.attempt(number, advice.serving_from_flags(flags, self._batch_defaults()))
        launch = Launch(number, proc, flags, started, step, launched=started)
        launch.status_misses = 0 if fault_tolerance.enabled(flags) else None
        try:
            watched = await self._watch(launch, probe)
        finally:
            recording.cancel()
            await probe.aclose()
        ready_at, hung, paused = watched.ready_at, watched.hung, watched.paused or watched.group
        if self._stop.is_set() and not hung and not paused and proc.running:
            return await self._stop_on_request(number, proc, started, ready_at)
        if hung or paused:
            await self._stop_stuck(proc, flags, hung, watched.group)
        else:
            await proc.exit_status
        self._exited_wall[number] = time.time()
        cleared = await self._clear(number, proc)
        if cleared is not None:
            return Fatal(cleared)
        ended_at = world.clock()
        status = proc.exit_status.result()
        if hung:
            failure = Failure(FailureKind.HUNG, hung)
        elif paused is not None:
            failure = paused
        else:
            failure = classify(
                output.tail(),
                exit_status=status,
                ready=ready_at is not None,
                milestone=output.milestone.name if output.milestone is not None else None,
            )
            self._print(
                f"vLLM exited with status {_status_text(status)} after {ended_at - started:.1f} s "
                f"without being asked to stop (attempt {number}): {failure.kind.value}"
                + (f": {failure.evidence}" if failure.evidence else ""),
                level="error",
            )
        last_line = next((line.strip() for line in reversed(output.tail(20)) if line.strip()), "")
        if self._vllm_version is None and self._printed_version is None:
            self._printed_version = vllm_version.from_output(output.head())
        attempt = launch.attempt(ended_at, None if hung or paused else status, failure, last_line)
        if self._stop.is_set():
            self._record_end(attempt, None)
            return Stopped()
        return Failed(attempt, flags, by_group=watched.group is not None)

    def _probe(self, flags: vllm_args.EffectiveFlags) -> HealthProbe:
        """What tells whether this attempt's vLLM is up: its /health, or for a headless node
        (which answers none) its group's leader."""
        seat = self._group
        if isinstance(seat, FollowerSeat) and flags.is_on("--headless"):
            return seat.probe()
        return self._world.probe_for(flags)

    async def _stop_stuck(
        self,
        proc: VllmProcess,
        flags: vllm_args.EffectiveFlags,
        hung: str | None,
        group: Failure | None = None,
    ) -> None:
        """Stop a hung vLLM, or one whose paused engine no retry will help. One that cannot
        answer /health will hardly shut down in order, and a paused engine has aborted every
        request: a short grace, not the full one, before its tree is killed (a merely slow one
        still gets to go)."""
        grace = min(self._grace_s(flags), HUNG_GRACE_S)
        if hung:
            self._print(
                f"vLLM hung ({hung}); stopping its process tree (SIGKILL after {grace:g} s)", level="warning"
            )
        elif group is not None:
            self._print(f"stopping this node's vLLM: {group.evidence}", level="warning")
        self._record_tree(proc)
        report = await self._world.launcher.stop(proc, grace, self._skip_grace)
        if report.frozen:
            self._print("vLLM's API server was stopped (state T): killed its tree at once, no grace")

    async def _watch(self, launch: Launch, probe: HealthProbe) -> Watched:
        """Poll /health until vLLM exits, a stop is requested, or it hangs (the AttemptWatch
        judges); with fault tolerance on, read the engine's status at each healthy poll too."""
        clock = self._world.clock
        proc = launch.proc
        watch = AttemptWatch(
            launch.since,
            startup_timeout_s=self._settings.startup_timeout_s,
            health_failures=self._settings.health_failures,
            stall_s=self._settings.stall_s,
        )
        output = proc.output
        progress_seen = output.progress
        stop = asyncio.ensure_future(self._stop.wait())
        polls = Polls(probe, self._settings.health_interval_s, self._settings.health_failures)
        # the group's generation ending elsewhere ends this attempt too
        peer = asyncio.ensure_future(self._group.interrupt()) if self._group is not None else None
        try:
            while True:
                waiting: list[asyncio.Future[Any]] = [proc.exit_status, stop, *polls.oldest()]
                if peer is not None:
                    waiting.append(peer)
                await asyncio.wait(waiting, timeout=polls.wait_s(), return_when=asyncio.FIRST_COMPLETED)
                if stop.done() or not proc.running:
                    return Watched(watch.ready_at)
                if peer is not None and peer.done():
                    return Watched(watch.ready_at, group=peer.result())
                if polls.tick():
                    output.scan_budget = SCAN_BUDGET_BYTES
                    if output.progress != progress_seen:
                        progress_seen = output.progress
                        watch.progressed(clock())
                        if output.milestone is not None and watch.ready_at is None:
                            self.reporter.phase_is(
                                "starting", f"attempt {launch.number}: {output.milestone.text}", progress=True
                            )
                if (result := polls.answer()) is None:
                    continue
                if not proc.running:
                    return Watched(watch.ready_at)
                verdict = watch.answered(clock(), result.ok, result.detail)
                if isinstance(verdict, ReadMetrics):
                    snapshot = await probe.metrics()
                    verdict = watch.metrics(clock(), snapshot)
                    if snapshot is not None and snapshot.reading is not None:
                        self.advice.observe(clock(), snapshot.reading, output.refused, output.refused_last)
                if isinstance(verdict, Ready):
                    launch.ready_at = clock()
                    self._became_ready(launch.number, proc, verdict.after_s)
                elif isinstance(verdict, Hung):
                    return Watched(watch.ready_at, hung=verdict.reason)
                if result.ok and watch.ready_at is not None and launch.status_misses is not None:
                    resumed = launch.resumed
                    paused = await self._read_engines(launch, probe)
                    if paused is not None:
                        return Watched(watch.ready_at, paused=paused)
                    if launch.resumed and (not resumed or launch.ready_at == clock()):
                        watch.resumed()
        finally:
            stop.cancel()
            if peer is not None:
                peer.cancel()
            await polls.aclose()

    async def _read_engines(self, launch: Launch, probe: HealthProbe) -> Failure | None:
        """/health says 200 while a paused engine waits for an instruction: only its status
        tells (fault_tolerance.py). The failure to stop the tree on, or None to go on."""
        engines = await probe.engine_status()
        if engines is None:
            misses = (launch.status_misses or 0) + 1
            launch.status_misses = misses if misses < STATUS_MISSES else None
            if launch.status_misses is None:
                self._print(
                    f"vLLM runs with {fault_tolerance.FLAG} but its engine status could not be read "
                    f"{STATUS_MISSES} times in a row; a paused engine is left to the stall check and "
                    "to vLLM's own recovery timeout",
                    level="warning",
                )
            return None
        launch.status_misses = 0
        if not engines.paused and not engines.dead:
            return None
        return await self._engine_paused(launch, probe, engines)

    async def _engine_paused(
        self, launch: Launch, probe: HealthProbe, engines: fault_tolerance.EngineStatus
    ) -> Failure | None:
        """vLLM's engine paused on an error and waits for an instruction. Where the policy would
        restart with the same flags, vLLM's own retry is that restart without a relaunch: ask
        once, and count it against the restart budget like any restart. Otherwise (a ladder step
        changes the flags, the budget is spent, a worker died) there is no point in waiting out
        vLLM's recovery timeout: the failure is returned, and the tree is stopped on it."""
        clock, proc, number = self._world.clock, launch.proc, launch.number
        failure = classify(fault_tolerance.since_recovery(proc.output.tail()), ready=True)
        what = failure.kind.value + (f" ({failure.evidence})" if failure.evidence else "")
        if engines.dead:
            self._print(
                f"vLLM's engine stopped on {what} and a worker process of it is dead: vLLM cannot "
                "retry that; stopping its process tree",
                level="warning",
            )
            return failure
        last_line = next((line.strip() for line in reversed(proc.output.tail(20)) if line.strip()), "")
        ended = replace(launch.attempt(clock(), None, failure, last_line), retried=True)
        decision = self._decide([*self.history, ended], launch.flags)
        if not (isinstance(decision, Relaunch) and decision.how == "same"):
            why = (
                decision.reason
                if isinstance(decision, GiveUp)
                else f"the policy's next step: {decision.reason}"
            )
            self._print(
                f"vLLM's engine paused on {what}; not asking it to retry ({why}); stopping its process tree",
                level="warning",
            )
            return failure
        restart = restarts_in_window(self.history, self._settings.discipline(), clock()) + 1
        self.history.append(ended)
        self.reporter.failed(failure.kind.value)
        self.reporter.phase_is("retrying", f"attempt {number}: vLLM's engine paused; asked it to retry")
        self._print(
            f"vLLM's engine paused on {what} and waits for an instruction ({fault_tolerance.FLAG}): "
            f"asked it to retry in place (restart {restart} of at most {self._settings.max_restarts})",
            level="warning",
        )
        request_id = f"vllm-guard-{uuid.uuid4()}"
        asked = clock()
        request_id, why_not = await self._retry(launch, probe, request_id)
        took = clock() - asked
        self.reporter.engine_retried(recovered=why_not is None)
        redactor = self._world.printer.redactor
        self._world.state.record(
            journal.EngineRetried(
                attempt=number,
                after_s=round(asked - launch.launched, 3),
                kind=failure.kind.value,
                evidence=redactor.text(failure.evidence or last_line),
                numbers=dict(failure.numbers),
                request_id=request_id,
                recovered=why_not is None,
                outcome=f"serving again after {took:.1f} s" if why_not is None else redactor.text(why_not),
            )
        )
        launch.since, launch.ready_at, launch.step, launch.resumed = asked, None, None, True
        if why_not is None:
            launch.ready_at = clock()
            self._print(f"vLLM's engine is serving again {took:.1f} s after the retry (attempt {number})")
            self.reporter.phase_is("ready", f"ready (attempt {number}, after a retry in place)")
            return None
        if self._stop.is_set():
            return None  # the watch ends on the stop: vLLM is stopped as asked, not as failed
        self._print(
            f"the retry did not bring vLLM's engine back: {why_not}; stopping its process tree",
            level="warning",
        )
        return failure

    async def _retry(self, launch: Launch, probe: HealthProbe, request_id: str) -> tuple[str, str | None]:
        """Ask for the retry and wait for its outcome: the request's id as vLLM names it, and
        None when the engine is healthy again, else why it is not. vLLM answers 202 at once and
        retries in the background."""
        clock = self._world.clock
        asked = clock()
        # within vLLM's own wait (a pause seen a poll late leaves a little less of it)
        deadline = asked + min(RETRY_WAIT_S, fault_tolerance.recovery_timeout_s(launch.flags))
        request_id, why_not = await probe.retry(request_id)
        while why_not is None:
            status = await probe.engine_status()
            if status is not None and status.healthy:
                return request_id, None
            if status is not None and (status.dead or status.refused(request_id)):
                why_not = status.refused(request_id) or "a worker process of it died"
            elif not launch.proc.running:
                why_not = "vLLM exited meanwhile"
            elif clock() >= deadline:
                why_not = f"its status did not say healthy within {deadline - asked:.0f} s"
            elif await self._sleep_unless_stopped(RETRY_POLL_S):
                why_not = "a stop was asked for meanwhile"
        return request_id, why_not

    def _carry_advice(self, args: tuple[str, ...], flags: vllm_args.EffectiveFlags) -> tuple[str, ...]:
        """The relaunch's flags with the edits of the advice that held when vLLM ended, where
        the policy says so (advice: apply_on_relaunch), each through the one door."""
        if not self._policy.carry_advice or not self.advice.current:
            return args
        rules = flag_edits.Rules(
            self._user_args,
            self._policy.pinned,
            self._version(),
            flags.config,
            self._facts.compute_capability,
        )
        carried, said = advice.carried(self.advice.current, args, rules)
        for line in said:
            self._print(line)
        return carried

    def _batch_defaults(self) -> tuple[int, int] | None:
        """vLLM's (max_num_seqs, max_num_batched_tokens) defaults on these GPUs, where known."""
        facts = self._facts
        if facts.gpu_name is None or not facts.cuda_total_bytes:
            return None
        gpu = vllm_profile.Gpu(facts.cuda_total_bytes, facts.gpu_name, facts.compute_capability)
        return vllm_profile.serve_batch_defaults(self._version(), gpu)

    def _decide(self, history: Sequence[Attempt], flags: vllm_args.EffectiveFlags) -> Decision:
        """The policy's decision after the last attempt in `history`, with this guard's facts."""
        return decide(
            history,
            self._settings.discipline(),
            self._world.clock(),
            self._world.rng,
            policy=self._policy,
            facts=replace(self._facts, vllm_version=self._version()),
            config=flags.config,
            user_args=self._user_args,
        )

    def _became_ready(self, number: int, proc: VllmProcess, after_s: float) -> None:
        proc.output.watching = False
        self._record_tree(proc)  # before anyone hears "ready": the whole tree is up by now
        self._print(f"vLLM is ready (attempt {number}): /health answered 200 {after_s:.1f} s after launch")
        self.reporter.phase_is("ready", f"ready (attempt {number})", ready_after_s=after_s)
        self.ready_event(number).set()
        if self._group is not None:
            self._group.ready()
        args = tuple(proc.argv[len(self._program) + 2 :])
        self._remember(args)
        self._keep_measured(proc.output.reached, args, proc.output.head())

    def status(self) -> dict[str, object]:
        """What /status adds to the exporter's own: the guard's phase line and the flags."""
        redactor = self._world.printer.redactor
        status: dict[str, object] = {
            "status": self.reporter.status_text,
            "model": self._model,
            "user_argv": redactor.argv(self._user_args),
        }
        if self._group is not None:
            status["group"] = self._group.status()
        return status

    def _record_tree(self, proc: VllmProcess, *, shm_too: bool = True) -> None:
        """Keep the state directory's record of vLLM's processes current, so that if this guard
        is killed the next `serve` finds and removes what it leaves (its /dev/shm segments too)."""
        tree = proc.tree()
        shm = frozenset(proc.remember_shm() if shm_too else proc.shm)
        if tree and (tree != self._recorded or shm != self._recorded_shm):
            self._world.state.record_processes(tree, shm)
            self._recorded, self._recorded_shm = tree, shm

    async def _keep_recording(self, number: int, proc: VllmProcess) -> None:
        """The record follows the tree on a timer of its own, not the /health polls: a guard
        killed outright (the OOM killer, kill -9) a moment after vLLM started a process must
        still leave that process on record."""
        while proc.running:
            await asyncio.sleep(RECORD_INTERVAL_S)
            # vLLM makes its /dev/shm segments while its engine starts; reading every process's
            # memory maps twice a second while it serves would cost more than it finds
            self._record_tree(proc, shm_too=not self.ready_event(number).is_set())

    def _remember(self, args: tuple[str, ...]) -> None:
        """Keep the flags that reached ready for the next start, or forget them when the user's
        own flags work again."""
        if self._known_good_key is None:
            return
        if args == self._user_args:
            with contextlib.suppress(OSError):  # the shared state's copy, left for its next reader
                self._world.state.remember(self._known_good_key, None)
            return
        redactor = Redactor.for_launch(self._env, self._user_args)
        record = {
            "model": self._model,
            "user_argv": redactor.argv(self._user_args),
            "argv": redactor.argv(args),
            "edits": vllm_args.edits(self._user_args, args),
            "vllm_version": self._vllm_version,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        try:
            self._world.state.remember(self._known_good_key, record)
        except OSError as exc:  # the shared state's: this directory's own was written first
            self._print(f"could not keep these flags in the shared state: {exc}", level="warning")
        self._print(f"remembered these flags for the next start ({changes(self._user_args, args)})")

    def _keep_measured(self, reached: Sequence[Milestone], args: tuple[str, ...], head: str) -> None:
        """Keep what vLLM measured of its memory at this start, for the next preflight of the
        same model on these GPUs (measured.py): only where the GPUs were read, not planned. A
        failure to keep it is said and costs nothing else: vLLM is ready."""
        facts = self._facts
        if facts.gpu_name is None or not facts.gpu_count or not facts.cuda_total_bytes:
            return
        version = self._version() or vllm_version.from_output(head)  # the banner, before it ends
        flags = vllm_config.flags(args, version)
        redactor = Redactor.for_launch(self._env, self._user_args)
        memory = measured.memory_flags(redactor.argv(flags.seen), version, self._env)
        if vllm_profile.extensible_kv_cache(version, memory):
            return  # 0.34 sizes its cache after warm-up: not what a plan here can reuse
        start = measured.from_milestones(
            reached,
            measured.Setup(self._model, facts.gpu_name, facts.gpu_count, version),
            memory,
            total_bytes=facts.cuda_total_bytes,
            at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        if start is None:
            return
        try:
            self._world.state.remember_start(start)
        except (OSError, ValueError, TypeError) as exc:
            self._print(f"could not keep what vLLM measured at this start: {exc}", level="warning")

    async def _stop_on_request(
        self, number: int, proc: VllmProcess, started: float, ready_at: float | None
    ) -> Stopped | Fatal:
        grace = self._grace_s(vllm_config.flags(proc.argv[len(self._program) + 2 :], self._version()))
        why = ""
        if ready_at is None:
            # Before /health answers there is no request to drain, and vLLM is known to ignore
            # SIGTERM (or hang on it) while its engine starts (real-cpu f2b-f2d: hung 110 s,
            # ignored at 15 s and 24 s); SIGTERM during its imports kills it at once (f2a). So a
            # SIGTERM that has not worked within a few seconds will not: no point in the full grace.
            grace = min(grace, STARTING_GRACE_S)
            why = " (not ready yet: vLLM ignores SIGTERM while its engine starts)"
        self.reporter.phase_is("stopping", "stopping vLLM")
        self._print(f"stopping vLLM: SIGTERM, then SIGKILL of its whole tree after {grace:g} s{why}")
        self._record_tree(proc)
        report = await self._world.launcher.stop(proc, grace, self._skip_grace)
        status = proc.exit_status.result() if not proc.running else None
        if report.survivors:
            self._print(f"processes of vLLM survive SIGKILL: {', '.join(report.survivors)}", level="error")
            return Fatal(ExitCode.GAVE_UP)
        if report.frozen:
            killed = ", ".join(report.killed)
            self._print(f"vLLM's API server was stopped (state T): killed its tree at once ({killed})")
        elif report.escalated:
            skipped = self._skip_grace.is_set()
            self._print(
                f"vLLM did not stop in time; killed its tree: {', '.join(report.killed)} "
                + ("(a second Ctrl-C cut the grace short)" if skipped else f"(the {grace:g} s grace ran out)")
            )
        elif report.killed:
            self._print(f"vLLM exited; killed what it left running: {', '.join(report.killed)}")
        self._world.state.clear_processes()
        self._print(f"vLLM stopped (status {_status_text(status)}); nothing of it is left")
        self._world.state.record(
            journal.AttemptStopped(
                attempt=number,
                lasted_s=round(self._world.clock() - started, 3),
                ready_after_s=None if ready_at is None else round(ready_at - started, 3),
                exit_status=status,
                escalated=report.escalated,
                killed=list(report.killed),
            )
        )
        return Stopped()

    def _record_end(self, attempt: Attempt, decision: Decision | None) -> None:
        redactor = self._world.printer.redactor
        self._world.state.record(
            journal.AttemptEnded(
                attempt=attempt.number,
                lasted_s=round(attempt.ended_at - attempt.started_at, 3),
                ready_after_s=None
                if attempt.ready_at is None
                else round(attempt.ready_at - attempt.started_at, 3),
                exit_status=attempt.exit_status,
                exited_at_s=round(self._exited_wall.get(attempt.number, 0.0), 4),
                kind=attempt.failure.kind.value,
                evidence=redactor.text(attempt.failure.evidence or attempt.last_line),
                numbers=dict(attempt.failure.numbers),
                decision=None if decision is None else decision_json(decision, redactor.argv),
            )
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
        self._recorded, self._recorded_shm = {}, frozenset()
        probe = self._world.gpu_probe()
        if probe is not None:
            # vLLM is gone already; a stop asked for meanwhile is heard at once, not after the
            # wait (Docker's default stop timeout is shorter than --gpu-release-timeout-s).
            waiting = asyncio.ensure_future(
                gpu.wait_for_release(probe, proc.known.keys(), self._settings.gpu_release_timeout_s)
            )
            stop = asyncio.ensure_future(self._stop.wait())
            try:
                await asyncio.wait([waiting, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                waiting.cancel()
            released = waiting.done() and not waiting.cancelled() and waiting.result()
            if not released and not self._stop.is_set():
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

    def _version(self) -> str | None:
        """vLLM's version: from its package metadata, else from its banner once it printed one."""
        return self._vllm_version or self._printed_version

    def _grace_s(self, flags: vllm_args.EffectiveFlags) -> float:
        """At least vLLM's own --shutdown-timeout (it drains requests that long) plus a margin;
        read as vLLM reads it, from its --config file too."""
        try:
            drain = float(flags.get("--shutdown-timeout") or 0)
        except ValueError:
            drain = 0.0
        return max(self._settings.grace_period_s, drain + SHUTDOWN_MARGIN_S if drain else 0.0)

    def _report(self, decision: GiveUp) -> None:
        """One table of attempts, so nobody has to dig through scrollback to learn why."""
        self._print(f"gave up: {decision.reason}", level="error")
        rows = [
            (
                str(a.number),
                f"{a.ended_at - a.started_at:.1f}s",
                "yes" if a.ready_at is not None else "no",
                "paused, retried"
                if a.retried
                else ("killed (hung)" if a.failure.kind is FailureKind.HUNG else "killed")
                if a.exit_status is None
                else f"status {_status_text(a.exit_status)}",
                a.failure.kind.value,
                (a.failure.evidence or a.last_line)[:160],
            )
            for a in self.history
        ]
        # each column as wide as its widest cell, so that the columns line up whatever the kinds
        head = ("#", "lasted", "ready", "ended", "kind", "evidence")
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(5)]
        for row in [head, *rows]:
            cells = [row[i].rjust(widths[i]) if i < 3 else row[i].ljust(widths[i]) for i in range(5)]
            self._print("  " + "  ".join([*cells, row[5]]).rstrip())


def _status_text(status: int | None) -> str:
    if status is None:
        return "unknown"
    if status < 0:
        with contextlib.suppress(ValueError):
            return f"{status} ({signal.Signals(-status).name})"
    return str(status)
