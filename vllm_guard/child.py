"""The vLLM process tree: spawning it in its own session, reading its pipes, reaping everything
that comes back to the guard, and killing the whole tree when it must go."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import fcntl
import functools
import os
import shlex
import shutil
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.output import AttemptOutput
from vllm_guard.printer import STDERR, STDOUT

if TYPE_CHECKING:
    import psutil

_PR_SET_CHILD_SUBREAPER = 36
PIPE_BYTES = 1024 * 1024
_UNCLAIMED_KEPT = 64
READ_CHUNK = PIPE_BYTES


# What stops the guard in order (vLLM first). SIGHUP too: a closed terminal must not kill the
# guard and leave vLLM, in a session of its own, running unwatched.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def become_subreaper() -> bool:
    """Make orphaned descendants (vLLM's EngineCore and Workers when the API server dies) our
    children instead of PID 1's, so they can be found, killed and reaped. Linux only."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def resolve_command(command: str, env: Mapping[str, str]) -> list[str]:
    """`--vllm-command` split like a shell (never run through one), its program found on PATH."""
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise GuardError(f"--vllm-command {command!r} cannot be split: {exc}") from None
    if not words:
        raise GuardError("--vllm-command is empty")
    program = shutil.which(words[0], path=env.get("PATH", os.defpath))
    if program is None and "/" in words[0] and os.path.exists(words[0]):
        why = "is a directory" if os.path.isdir(words[0]) else "is not executable"
        raise GuardError(
            f"the vLLM command {words[0]!r} {why}",
            ExitCode.USAGE,
            hint="point --vllm-command at vLLM's executable (e.g. /opt/venv/bin/vllm)",
        )
    if program is None:
        raise GuardError(
            f"the vLLM command {words[0]!r} was not found on PATH",
            ExitCode.USAGE,
            hint="install vllm, or point --vllm-command at it (e.g. /opt/venv/bin/vllm)",
        )
    return [program, *words[1:]]


class Reaper:
    """Collects the exit status of every child of the guard.

    As a subreaper the guard inherits orphans it never started; their statuses are discarded,
    the statuses of processes it started are handed to whoever waits for them. uvloop keeps
    SIGCHLD for itself, so a pidfd tells when a watched child exits, and a slow timer reaps the
    orphans (a dead orphan costs nothing but a process-table entry until then).
    """

    def __init__(self, orphan_interval_s: float = 1.0) -> None:
        self._waiting: dict[int, asyncio.Future[int]] = {}
        # Statuses reaped before anyone watched for them: mostly orphans, but the first attempt
        # is spawned before the reaper exists and can exit before it is watched.
        self._unclaimed: collections.OrderedDict[int, int] = collections.OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._interval = orphan_interval_s

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tick()

    def uninstall(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = None

    def watch(self, pid: int) -> asyncio.Future[int]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        if pid in self._unclaimed:
            future.set_result(self._unclaimed.pop(pid))
            return future
        self._waiting[pid] = future
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            pidfd = -1  # an old kernel: the timer finds the exit, a little later
        if pidfd >= 0:

            def exited() -> None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                self.reap()

            loop.add_reader(pidfd, exited)
        self.reap()  # it may have exited before we started watching
        return future

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            future = self._waiting.pop(pid, None)
            if future is None:
                self._unclaimed[pid] = code
                while len(self._unclaimed) > _UNCLAIMED_KEPT:
                    self._unclaimed.popitem(last=False)
            elif not future.done():
                future.set_result(code)

    def _tick(self) -> None:
        self.reap()
        if self._loop is not None:
            self._timer = self._loop.call_later(self._interval, self._tick)


@dataclass(frozen=True, slots=True)
class Spawned:
    """A vLLM process just started, with the read ends of its stdout and stderr pipes."""

    pid: int
    argv: tuple[str, ...]
    stdout_fd: int
    stderr_fd: int
    started_at: float  # wall clock, to tell our descendants from older processes


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> Spawned:
    """Start vLLM in a session of its own with piped output. Synchronous and cheap, so `serve`
    can start vLLM before it builds its event loop and loads the rest of the guard."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    program, launch = argv[0], list(argv)
    setpriv = _setpriv()
    if setpriv is not None:
        # A guard killed outright cannot stop vLLM: the kernel does it for us (the parent-death
        # signal, which posix_spawn cannot set itself, so util-linux's setpriv sets it and execs
        # vLLM). What vLLM's own children leave is removed by the next serve (processes.json).
        program, launch = setpriv, [setpriv, "--pdeathsig", "KILL", "--", *argv]
    try:
        # posix_spawn (vfork + exec) keeps the launch cheap even with a large guard process;
        # setsid puts vLLM in a session and process group of its own, so a terminal's Ctrl-C
        # reaches only the guard, which then stops vLLM in order.
        pid = os.posix_spawn(
            program,
            launch,
            dict(env),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, out_w, 1),
                (os.POSIX_SPAWN_DUP2, err_w, 2),
            ],
            setsid=True,
        )
    except OSError as exc:
        for fd in (out_r, err_r):
            os.close(fd)
        raise GuardError(f"cannot start {argv[0]}: {exc.strerror}") from None
    finally:
        os.close(out_w)
        os.close(err_w)
    for fd in (out_r, err_r):
        _widen_pipe(fd)
    return Spawned(pid, tuple(argv), out_r, err_r, time.time())


@functools.cache
def _setpriv() -> str | None:
    for folder in ("/usr/bin", "/bin", "/usr/local/bin"):
        path = os.path.join(folder, "setpriv")
        if os.access(path, os.X_OK):
            return path
    return None


def kill_spawned(spawned: Spawned) -> None:
    """Undo a spawn() whose supervision never started (the guard failed in between)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(spawned.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(spawned.pid, 0)
    for fd in (spawned.stdout_fd, spawned.stderr_fd):
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StopReport:
    """How a stop went: whether SIGKILL was needed, and what it killed."""

    escalated: bool
    killed: tuple[str, ...]
    survivors: tuple[str, ...] = ()


@dataclass(slots=True)
class VllmProcess:
    """A running vLLM API server and everything it started."""

    pid: int
    argv: tuple[str, ...]
    started_at: float  # wall clock, to tell our descendants from older processes
    output: AttemptOutput
    exit_status: asyncio.Future[int]
    pipes_closed: asyncio.Event
    known: dict[int, float] = field(default_factory=dict)  # pid → create time, every one seen
    created: float = 0.0  # the API server's own create time, once read

    @property
    def running(self) -> bool:
        return not self.exit_status.done()

    def tree(self) -> dict[int, float]:
        """The attempt's processes as the state directory records them: pid → start time."""
        self.remember_tree()
        if not self.created:
            self.created = create_time(self.pid)
        return {self.pid: self.created, **self.known} if self.created else dict(self.known)

    def remember_tree(self) -> None:
        """Note every descendant now alive, so it can be found after it leaves the group."""
        import psutil  # noqa: PLC0415

        try:
            for proc in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.known.setdefault(proc.pid, proc.create_time())
        except psutil.Error:
            pass


class Launcher(Protocol):
    async def launch(
        self, argv: Sequence[str], env: Mapping[str, str], output: AttemptOutput
    ) -> VllmProcess: ...

    async def stop(self, proc: VllmProcess, grace_s: float, skip_grace: asyncio.Event) -> StopReport: ...

    async def clear(self, proc: VllmProcess) -> StopReport: ...


class ProcessLauncher:
    """Starts vLLM for real and takes its tree down for real."""

    def __init__(
        self, reaper: Reaper, *, kill_timeout_s: float = 30.0, started: Spawned | None = None
    ) -> None:
        self._reaper = reaper
        self._kill_timeout_s = kill_timeout_s
        # The first attempt may have been spawned before the event loop existed (see spawn()).
        self._started = started

    async def launch(self, argv: Sequence[str], env: Mapping[str, str], output: AttemptOutput) -> VllmProcess:
        loop = asyncio.get_running_loop()
        started = self._started if self._started and self._started.argv == tuple(argv) else None
        self._started = None
        spawned = started or spawn(argv, env)
        pid, out_r, err_r = spawned.pid, spawned.stdout_fd, spawned.stderr_fd
        proc = VllmProcess(
            pid=pid,
            argv=tuple(argv),
            started_at=spawned.started_at,
            output=output,
            exit_status=self._reaper.watch(pid),
            pipes_closed=asyncio.Event(),
        )
        proc.known[pid] = create_time(pid)
        open_pipes = {out_r, err_r}

        def on_readable(fd: int, stream: int) -> None:
            try:
                data = os.read(fd, READ_CHUNK)
            except BlockingIOError:
                return
            if data:
                output.feed(stream, data)
                return
            loop.remove_reader(fd)
            os.close(fd)
            open_pipes.discard(fd)
            if not open_pipes:
                output.close()
                proc.pipes_closed.set()

        for fd, stream in ((out_r, STDOUT), (err_r, STDERR)):
            os.set_blocking(fd, False)
            loop.add_reader(fd, on_readable, fd, stream)
        return proc

    async def stop(self, proc: VllmProcess, grace_s: float, skip_grace: asyncio.Event) -> StopReport:
        """SIGTERM to the API server (vLLM stops its own engine), then after `grace_s` or when
        `skip_grace` is set, SIGKILL to everything of the tree that is left."""
        proc.remember_tree()
        if proc.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            skip = asyncio.ensure_future(skip_grace.wait())
            waiting: list[asyncio.Future[Any]] = [proc.exit_status, skip]
            try:
                await asyncio.wait(waiting, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                skip.cancel()
        escalated = proc.running
        report = await self.clear(proc)
        return StopReport(escalated or bool(report.killed), report.killed, report.survivors)

    async def clear(self, proc: VllmProcess) -> StopReport:
        """Kill whatever is left of the attempt's tree, reap it, and wait until it is gone."""
        import psutil  # noqa: PLC0415

        proc.remember_tree()
        targets = self._leftovers(proc)
        # Names first: a killed process's name shrinks to the kernel's 15 characters
        # ("VLLM::EngineCor") once its command line is gone.
        killed = [f"{p.pid} ({_name(p)})" for p in targets]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        for p in targets:
            with contextlib.suppress(psutil.Error):
                p.kill()
        deadline = time.monotonic() + self._kill_timeout_s
        alive = targets
        while True:
            self._reaper.reap()
            alive = [p for p in alive if _alive(p)]
            if not alive and not proc.running:
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.pipes_closed.wait(), 1.0)
        survivors = tuple(f"{p.pid} ({_name(p)})" for p in alive)
        return StopReport(bool(killed), tuple(killed), survivors)

    def _leftovers(self, proc: VllmProcess) -> list[psutil.Process]:
        """The attempt's processes still alive: every one remembered, anything in its process
        group, and any descendant of the guard started since the attempt began (orphans that
        left the group come back to the guard as subreaper)."""
        import psutil  # noqa: PLC0415

        found: dict[int, psutil.Process] = {}
        for pid, created in proc.known.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.create_time() == created and _alive(p):
                    found[pid] = p
        for p in _processes_in_group(proc.pid):
            found.setdefault(p.pid, p)
        with contextlib.suppress(psutil.Error):
            for p in psutil.Process().children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if p.create_time() >= proc.started_at - 1.0 and _alive(p):
                        found.setdefault(p.pid, p)
        found.pop(os.getpid(), None)
        return list(found.values())


def remove_recorded(recorded: Sequence[tuple[int, float]], timeout_s: float) -> list[str]:
    """Kill what a previous guard recorded of vLLM's tree and left alive (it was killed itself):
    only a process whose pid *and* start time match the record, so a recycled pid is never hit.
    Returns the processes killed, as "pid (name)"."""
    import psutil  # noqa: PLC0415

    targets: list[psutil.Process] = []
    for pid, started in recorded:
        if pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if abs(proc.create_time() - started) < 0.01 and _alive(proc):
                targets.append(proc)
    killed = [f"{p.pid} ({_name(p)})" for p in targets]
    for proc in targets:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    # Not our children: whoever reaps them (init, a subreaper) may take its time; a zombie
    # holds no memory, so it counts as gone.
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in targets) and time.monotonic() < deadline:
        time.sleep(0.01)
    return killed


# psutil is imported where it is used: `serve` starts vLLM before it needs it (bench/startup.py).


def _widen_pipe(fd: int) -> None:
    """A 1 MiB pipe lets a log flood arrive in fewer, larger reads (Linux allows this up to
    /proc/sys/fs/pipe-max-size without privileges)."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _processes_in_group(pgid: int) -> Iterable[psutil.Process]:
    import psutil  # noqa: PLC0415

    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and _alive(p):
                yield p
        except (ProcessLookupError, psutil.Error):
            continue


def _alive(p: psutil.Process) -> bool:
    import psutil  # noqa: PLC0415

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _name(p: psutil.Process) -> str:
    import psutil  # noqa: PLC0415

    try:
        return p.name()
    except psutil.Error:
        return "?"


def create_time(pid: int) -> float:
    import psutil  # noqa: PLC0415

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0
