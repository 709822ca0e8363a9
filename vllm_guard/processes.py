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
# How long what is left of vLLM's process group may take to go by itself once the API server
# has exited, before SIGKILL (the resource tracker's /dev/shm cleanup takes a moment).
GROUP_SETTLE_S = 1.5
READ_CHUNK = PIPE_BYTES


# What stops the guard in order (vLLM first). SIGHUP too: a closed terminal must not kill the
# guard and leave vLLM, in a session of its own, running unwatched.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@functools.cache
def _hangup_ignored_at_start() -> bool:
    # Read once, before the guard installs any handler of its own: afterwards the disposition
    # is the guard's, no longer what it was started with.
    return signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that stop the guard. `nohup` (or a parent that ignores SIGHUP for it) asks
    for a process that outlives its terminal, as plain `vllm serve` does under nohup (uvicorn
    handles only SIGINT and SIGTERM): then SIGHUP stays ignored rather than becoming a stop."""
    if _hangup_ignored_at_start():
        return tuple(s for s in STOP_SIGNALS if s != signal.SIGHUP)
    return STOP_SIGNALS


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

    def forget(self, pid: int) -> None:
        """A process was just spawned with `pid`: any status kept for that pid belongs to an
        earlier process (an orphan reaped long ago) whose pid the kernel has recycled, and must
        not make the new one look dead."""
        self._unclaimed.pop(pid, None)

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
    """How a stop went: whether the grace ran out (`escalated`: the API server was still there,
    so its tree was SIGKILLed), what SIGKILL hit (after a clean exit too: what the API server
    left), what survived it, and whether the API server was stopped (state T) and so was
    killed without a grace."""

    escalated: bool
    killed: tuple[str, ...]
    survivors: tuple[str, ...] = ()
    frozen: bool = False


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
    shm: set[str] = field(default_factory=set)  # /dev/shm segments the tree was seen to use

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

    def remember_shm(self) -> set[str]:
        """Note the /dev/shm segments of vLLM's multiprocessing (`psm_*`, `sem.mp-*`) that the
        tree maps or holds open now: if they outlive it (its resource tracker was killed with
        it), they are known to be vLLM's, and can be removed once nobody uses them."""
        for pid, created in {self.pid: self.created, **self.known}.items():
            # only processes that are still the ones remembered: a recycled pid is another's
            if created and create_time(pid) == created:
                with contextlib.suppress(PermissionError):
                    self.shm |= shm_used_by(pid)
        return self.shm


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
        if started is None:
            # Spawned just now, with no await since: nothing reaped yet can be this process's.
            # (The first attempt, spawned before the reaper existed, may really have exited.)
            self._reaper.forget(pid)
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
        `skip_grace` is set, SIGKILL to everything of the tree that is left. `escalated` says
        that the grace ran out (or was skipped) with the API server still running, nothing else."""
        proc.remember_tree()
        frozen = proc.running and is_stopped(proc.pid)
        if proc.running and not frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            skip = asyncio.ensure_future(skip_grace.wait())
            waiting: list[asyncio.Future[Any]] = [proc.exit_status, skip]
            try:
                await asyncio.wait(waiting, timeout=grace_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                skip.cancel()
        # A stopped process (state T: SIGSTOP, a debugger) cannot act on SIGTERM until it is
        # continued, so waiting out the grace would only delay the SIGKILL that has to come.
        escalated = proc.running
        report = await self.clear(proc, settle_s=0.0 if escalated else GROUP_SETTLE_S)
        return StopReport(escalated, report.killed, report.survivors, frozen=frozen)

    async def clear(self, proc: VllmProcess, *, settle_s: float = GROUP_SETTLE_S) -> StopReport:
        """Kill whatever is left of the attempt's tree, reap it, and wait until it is gone.

        When the API server has exited, what is left of its group first gets `settle_s` to go by
        itself: Python's multiprocessing resource tracker is in that group and, once the API
        server is gone, removes the /dev/shm segments vLLM leaves it (`psm_*`, `sem.mp-*`); a
        SIGKILL at once would leave them behind. An orphaned EngineCore never goes by itself
        (vLLM #55510), so the wait is short and bounded."""
        import psutil  # noqa: PLC0415

        proc.remember_tree()
        proc.remember_shm()
        targets = self._leftovers(proc)
        if targets and not proc.running and settle_s > 0:
            deadline = time.monotonic() + settle_s
            while targets and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                self._reaper.reap()
                targets = [p for p in targets if _alive(p)]
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
        since = min([proc.started_at, *proc.known.values()])
        # A segment only a dead process mapped (the API server, killed) was never seen in a
        # live process's maps: those made since the attempt began count as its own too (real
        # vLLM after a crash left a sem.mp-* segment that no record had seen).
        segments = proc.shm | made_since(since)
        if not survivors and segments:
            remove_unused_shm(segments, since=since)
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
        with contextlib.suppress(psutil.Error, ValueError, OverflowError):  # a record's pid may be no pid
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

SHM_DIR = "/dev/shm"
# Python multiprocessing's names: SharedMemory segments and (spawn context) named semaphores,
# which vLLM uses for its message queues; the resource tracker removes them, unless it was
# killed along with the tree.
_SHM_PREFIXES = ("psm_", "sem.mp-")


def _shm_name(path: str) -> str | None:
    path = path.removesuffix(" (deleted)")
    if not path.startswith(SHM_DIR + "/"):
        return None
    name = path[len(SHM_DIR) + 1 :]
    return name if name.startswith(_SHM_PREFIXES) and "/" not in name else None


def shm_used_by(pid: int) -> set[str]:
    """The multiprocessing segments in /dev/shm that `pid` maps or holds open. Raises
    PermissionError when its maps cannot be read (another user's process); empty when gone."""
    names: set[str] = set()
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                if SHM_DIR in line:
                    parts = line.rstrip("\n").split(maxsplit=5)
                    name = _shm_name(parts[5]) if len(parts) == 6 else None
                    if name:
                        names.add(name)
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                name = _shm_name(os.readlink(f"/proc/{pid}/fd/{fd}"))
                if name:
                    names.add(name)
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return set()
    return names


def made_since(since: float) -> set[str]:
    """This user's multiprocessing segments in /dev/shm made at or after `since` (wall clock)."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir(SHM_DIR):
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if _shm_name(entry.path) and info.st_uid == os.getuid() and info.st_ctime >= since - 1.0:
                    found.add(entry.name)
    return found


def remove_unused_shm(names: Iterable[str], since: float) -> list[str]:
    """Remove those of the /dev/shm segments `names` (recorded as the segments of a vLLM tree
    that started at `since`, wall clock) that no live process maps or holds open. Conservative:
    a segment is also kept while a process we cannot look into might use it, that is one of the
    segment owner's that started after vLLM did (only vLLM hands its random names out, and only
    to its own children). Returns the names removed."""
    import psutil  # noqa: PLC0415

    present: dict[str, tuple[int, int]] = {}
    for name in set(names):
        if _shm_name(f"{SHM_DIR}/{name}") is None:
            continue  # not a name we record: never touched
        with contextlib.suppress(OSError):
            info = os.lstat(f"{SHM_DIR}/{name}")
            present[name] = (info.st_ino, info.st_uid)
    if not present:
        return []
    # By inode, not by name: glibc's sem_open maps a temporary file and only then links it to
    # its name, so the process that made a semaphore maps it as `sem.XXXXXX (deleted)`; a name
    # search would take a live vLLM's fresh semaphore for unused (seen: a worker then failed in
    # SemLock._rebuild with FileNotFoundError).
    in_use: set[int] = set()
    unknown_uids: set[int] = set()  # owners of processes that might use a segment unseen
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            in_use |= _shm_inodes_used_by(int(entry.name))
        except PermissionError:
            with contextlib.suppress(OSError, psutil.Error):
                if psutil.Process(int(entry.name)).create_time() >= since - 1.0:
                    unknown_uids.add(entry.stat().st_uid)
    removed = []
    for name, (inode, owner) in sorted(present.items()):
        if inode in in_use or owner in unknown_uids:
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{SHM_DIR}/{name}")
            removed.append(name)
    return removed


def _shm_inodes_used_by(pid: int) -> set[int]:
    """The inodes of /dev/shm files `pid` maps or holds open, under any name (deleted ones too).
    Raises PermissionError when they cannot be read; empty when the process is gone."""
    shm_dev = os.stat(SHM_DIR).st_dev
    inodes: set[int] = set()
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].startswith(SHM_DIR + "/"):
                    inodes.add(int(parts[4]))
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                info = os.stat(f"/proc/{pid}/fd/{fd}")
                if info.st_dev == shm_dev:
                    inodes.add(info.st_ino)
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return set()
    return inodes


def is_stopped(pid: int) -> bool:
    """The process is stopped (state T, SIGSTOP) or traced: it acts on no signal but SIGKILL."""
    import psutil  # noqa: PLC0415

    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


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
