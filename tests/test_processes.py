"""The real process code against small scripts: spawning, relaying, and killing whole trees."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psutil
import pytest

from vllm_guard import processes
from vllm_guard.errors import GuardError
from vllm_guard.output import AttemptOutput, CappedLog
from vllm_guard.printer import Printer
from vllm_guard.processes import ProcessLauncher, Reaper, VllmProcess, resolve_command
from vllm_guard.redact import Redactor

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def printer() -> Iterator[Printer]:
    devnull = os.open(os.devnull, os.O_WRONLY)
    printer = Printer(stdout_fd=devnull, stderr_fd=devnull)
    yield printer
    printer.close()
    os.close(devnull)


@pytest.fixture
async def launcher(printer: Printer) -> AsyncIterator[Harness]:
    reaper = Reaper(orphan_interval_s=0.05)
    reaper.install(asyncio.get_running_loop())
    yield Harness(reaper, printer)
    reaper.uninstall()


class Harness(ProcessLauncher):
    """The real launcher, with the printer its attempts write to."""

    def __init__(self, reaper: Reaper, printer: Printer) -> None:
        super().__init__(reaper, kill_timeout_s=5.0)
        self.printer = printer


async def start(launcher: Harness, tmp_path: Path, script: str) -> VllmProcess:
    out = AttemptOutput(launcher.printer, Redactor(), CappedLog(tmp_path / "attempt.log", 1 << 20))
    code = textwrap.dedent(script)
    return await launcher.launch([sys.executable, "-c", code], {"PATH": "/usr/bin:/bin"}, out)


async def wait_for_line(proc: VllmProcess, text: str, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not any(text in line for line in proc.output.tail()):
            await asyncio.sleep(0.02)


GRANDCHILD_SCRIPT = """
    import os, signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             start_new_session={leave_group})
    signal.signal(signal.SIGTERM, {on_term})  # before "engine": a stop may follow that line at once
    print("engine", child.pid, flush=True)
    time.sleep(60)
"""


async def test_output_and_exit_status_are_collected(launcher: Harness, tmp_path: Path) -> None:
    proc = await start(
        launcher, tmp_path, "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    )
    assert await asyncio.wait_for(proc.exit_status, 10) == 3
    await asyncio.wait_for(proc.pipes_closed.wait(), 10)
    assert sorted(proc.output.tail()) == ["err", "out"]
    assert (tmp_path / "attempt.log").read_bytes().count(b"\n") == 2


async def test_sigterm_that_is_honoured_needs_no_escalation(launcher: Harness, tmp_path: Path) -> None:
    proc = await start(launcher, tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    await wait_for_line(proc, "up")
    report = await launcher.stop(proc, 5.0, asyncio.Event())
    assert not report.escalated
    assert proc.exit_status.result() == -signal.SIGTERM


async def test_a_tree_that_ignores_sigterm_is_killed_after_the_grace(
    launcher: Harness, tmp_path: Path
) -> None:
    proc = await start(
        launcher, tmp_path, GRANDCHILD_SCRIPT.format(leave_group=False, on_term="signal.SIG_IGN")
    )
    await wait_for_line(proc, "engine")
    engine = int(next(line for line in proc.output.tail() if "engine" in line).split()[1])
    report = await launcher.stop(proc, 0.3, asyncio.Event())
    assert report.escalated
    assert not psutil.pid_exists(engine) or psutil.Process(engine).status() == psutil.STATUS_ZOMBIE
    assert proc.exit_status.result() == -signal.SIGKILL


async def test_skip_grace_cuts_the_wait_short(launcher: Harness, tmp_path: Path) -> None:
    proc = await start(
        launcher,
        tmp_path,
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)",
    )
    await wait_for_line(proc, "up")
    skip = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, skip.set)
    report = await asyncio.wait_for(launcher.stop(proc, 30.0, skip), 10)
    assert report.escalated


async def test_orphans_that_left_the_group_are_found_and_killed(launcher: Harness, tmp_path: Path) -> None:
    # The API server dies by SIGKILL; its engine, in a session of its own, lives on (vLLM #55510).
    proc = await start(
        launcher, tmp_path, GRANDCHILD_SCRIPT.format(leave_group=True, on_term="signal.SIG_DFL")
    )
    await wait_for_line(proc, "engine")
    engine = int(next(line for line in proc.output.tail() if "engine" in line).split()[1])
    proc.remember_tree()
    psutil.Process(proc.pid).kill()
    await asyncio.wait_for(proc.exit_status, 10)
    assert psutil.Process(engine).is_running()
    report = await launcher.clear(proc)
    assert any(str(engine) in k for k in report.killed)
    assert not report.survivors


def test_a_missing_vllm_command_is_a_usage_error() -> None:
    with pytest.raises(GuardError) as error:
        resolve_command("no-such-vllm-here --flag", {"PATH": "/nonexistent"})
    assert "not found" in error.value.message
    assert resolve_command("sh -c 'echo a b'", {"PATH": "/bin:/usr/bin"})[1:] == ["-c", "echo a b"]


def test_an_unsplittable_command_is_a_usage_error() -> None:
    with pytest.raises(GuardError):
        resolve_command("vllm 'unclosed", {"PATH": "/bin"})


def test_recorded_processes_are_removed_only_where_pid_and_start_time_match() -> None:
    from vllm_guard.processes import create_time, remove_recorded  # noqa: PLC0415

    argv = [sys.executable, "-c", "import time; time.sleep(60)"]
    # raw pids, as a previous guard's would be: no Popen object here to reap them behind our back
    left, recycled = (os.posix_spawn(argv[0], argv, dict(os.environ)) for _ in range(2))
    try:
        record = [(left, create_time(left)), (recycled, create_time(recycled) - 5.0)]
        killed = remove_recorded(record, timeout_s=10)
        assert len(killed) == 1 and killed[0].startswith(f"{left} (")
        assert not psutil.pid_exists(left) or psutil.Process(left).status() == psutil.STATUS_ZOMBIE
        assert psutil.Process(recycled).is_running()  # same pid, another start time: left alone
    finally:
        for pid in (left, recycled):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


async def test_a_status_kept_for_a_recycled_pid_never_makes_a_new_child_look_dead(
    launcher: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    real_spawn = processes.spawn

    def spawn_over_a_stale_status(argv: list[str], env: dict[str, str]) -> processes.Spawned:
        spawned = real_spawn(argv, env)
        # an orphan that once had this pid was reaped long ago, and nobody claimed its status
        launcher._reaper._unclaimed[spawned.pid] = -9
        return spawned

    monkeypatch.setattr(processes, "spawn", spawn_over_a_stale_status)
    proc = await start(launcher, tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    await wait_for_line(proc, "up")
    assert proc.running and psutil.Process(proc.pid).is_running()
    await launcher.stop(proc, 5.0, asyncio.Event())
    assert proc.exit_status.result() == -signal.SIGTERM  # its own status, not the stale one


async def test_a_stopped_api_server_is_killed_at_once_not_after_the_grace(
    launcher: Harness, tmp_path: Path
) -> None:
    proc = await start(launcher, tmp_path, "import time; print('up', flush=True); time.sleep(60)")
    await wait_for_line(proc, "up")
    os.kill(proc.pid, signal.SIGSTOP)  # state T: it acts on no SIGTERM until continued
    async with asyncio.timeout(10):
        while psutil.Process(proc.pid).status() != psutil.STATUS_STOPPED:
            await asyncio.sleep(0.01)
    report = await asyncio.wait_for(launcher.stop(proc, 600.0, asyncio.Event()), 30)
    assert report.frozen and report.escalated
    assert proc.exit_status.result() == -signal.SIGKILL


# An API server that exits on SIGTERM at once, leaving a helper in its process group that goes
# by itself a moment after it (as Python's resource tracker does, removing /dev/shm segments).
TRACKER_SCRIPT = """
    import os, subprocess, sys, time
    helper = (
        "import os, sys, time\\n"
        "parent = int(sys.argv[2])\\n"
        "while os.getppid() == parent:\\n"
        "    time.sleep(0.02)\\n"
        "time.sleep({helper_s})\\n"
        "open(sys.argv[1], 'w').write('cleaned up')\\n"
    )
    child = subprocess.Popen([sys.executable, "-c", helper, {marker!r}, str(os.getpid())])
    print("helper", child.pid, flush=True)
    time.sleep(60)
"""


async def test_a_clean_exit_gives_the_group_a_moment_and_is_no_escalation(
    launcher: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "tracker-done"
    proc = await start(launcher, tmp_path, TRACKER_SCRIPT.format(helper_s=0.2, marker=str(marker)))
    await wait_for_line(proc, "helper")
    report = await launcher.stop(proc, 30.0, asyncio.Event())
    assert proc.exit_status.result() == -signal.SIGTERM
    assert marker.read_text() == "cleaned up"  # not SIGKILLed in the middle of its cleanup
    assert not report.escalated and not report.killed


async def test_what_a_clean_exit_leaves_for_good_is_killed_and_still_no_escalation(
    launcher: Harness, tmp_path: Path
) -> None:
    marker = tmp_path / "never"
    proc = await start(launcher, tmp_path, TRACKER_SCRIPT.format(helper_s=600, marker=str(marker)))
    await wait_for_line(proc, "helper")
    helper = int(next(line for line in proc.output.tail() if "helper" in line).split()[1])
    report = await launcher.stop(proc, 30.0, asyncio.Event())
    assert not report.escalated  # the API server went on SIGTERM, within the grace
    assert any(k.startswith(f"{helper} (") for k in report.killed)
    assert not psutil.pid_exists(helper) or psutil.Process(helper).status() == psutil.STATUS_ZOMBIE


MAPS_SEGMENT = """
    import mmap, os, sys, time
    fd = os.open({path!r}, os.O_RDWR)
    view = mmap.mmap(fd, 4096)
    os.close(fd)
    print("mapped", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def segment() -> Iterator[Path]:
    """A multiprocessing-named segment in /dev/shm, as vLLM's message queues make them."""
    path = Path("/dev/shm") / f"psm_vllmguardtest{os.getpid()}{uuid.uuid4().hex[:8]}"
    path.write_bytes(b"\0" * 4096)
    yield path
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def test_the_segments_a_tree_maps_are_removed_once_nobody_uses_them(
    launcher: Harness, tmp_path: Path, segment: Path
) -> None:
    from vllm_guard.processes import remove_unused_shm  # noqa: PLC0415

    user = await start(launcher, tmp_path, MAPS_SEGMENT.format(path=str(segment)))
    await wait_for_line(user, "mapped")
    assert segment.name in user.remember_shm()
    assert remove_unused_shm([segment.name], since=user.started_at) == []  # mapped by a live process
    os.kill(user.pid, signal.SIGKILL)  # and its resource tracker with it: nobody removes it
    await asyncio.wait_for(user.exit_status, 10)
    report = await launcher.clear(user)
    assert not report.survivors
    assert not segment.exists()


async def test_a_segment_only_a_dead_process_mapped_is_removed_though_no_record_saw_it(
    launcher: Harness, tmp_path: Path
) -> None:
    """Real vLLM after a crash left a sem.mp-* segment no record had seen (only the killed API
    server had mapped it): what the attempt's time made, and nobody uses, goes with it."""
    name = f"sem.mp-vllmguardtest{uuid.uuid4().hex[:8]}"
    make = f"open('/dev/shm/{name}', 'wb').write(bytes(4096))\n"
    script = make + textwrap.dedent(MAPS_SEGMENT.format(path=f"/dev/shm/{name}"))
    try:
        user = await start(launcher, tmp_path, script)
        await wait_for_line(user, "mapped")
        os.kill(user.pid, signal.SIGKILL)  # before any record read its maps
        await asyncio.wait_for(user.exit_status, 10)
        assert name not in user.shm
        report = await launcher.clear(user)
        assert not report.survivors
        assert not (Path("/dev/shm") / name).exists()
    finally:
        with contextlib.suppress(FileNotFoundError):
            (Path("/dev/shm") / name).unlink()


def test_a_semaphore_its_maker_maps_under_another_name_is_never_removed() -> None:
    """glibc's sem_open maps a temporary file, then links it to its name: the maker's maps say
    `sem.XXXXXX (deleted)`. A name search took a live vLLM's new semaphore for unused, and its
    worker died in SemLock._rebuild (FileNotFoundError)."""
    from vllm_guard.processes import made_since, remove_unused_shm  # noqa: PLC0415

    since = time.time() - 1.0
    maker = subprocess.Popen(
        [sys.executable, "-c", "import multiprocessing as mp, time\n"
         "lock = mp.get_context('spawn').Lock()\n"
         "print(lock._semlock.name, flush=True)\n"
         "time.sleep(60)"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert maker.stdout is not None
        name = "sem." + maker.stdout.readline().decode().strip().lstrip("/")
        assert name in made_since(since)
        assert remove_unused_shm([name], since) == []
        assert (Path("/dev/shm") / name).exists()
    finally:
        maker.kill()
        maker.wait(10)
        if maker.stdout is not None:
            maker.stdout.close()
    assert remove_unused_shm([name], since) == [name]


async def test_a_segment_another_process_still_maps_is_never_removed(
    launcher: Harness, tmp_path: Path, segment: Path
) -> None:
    from vllm_guard.processes import remove_unused_shm  # noqa: PLC0415

    since = time.time() - 1.0
    other = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(MAPS_SEGMENT.format(path=str(segment)))],
        stdout=subprocess.PIPE,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == b"mapped"
        assert remove_unused_shm([segment.name, "not-a-multiprocessing-name"], since) == []
        assert segment.exists()
    finally:
        other.kill()
        other.wait(10)
        if other.stdout is not None:
            other.stdout.close()
    assert remove_unused_shm([segment.name], since) == [segment.name]


def test_the_next_serve_removes_the_segments_a_killed_guard_recorded(tmp_path: Path, segment: Path) -> None:
    from vllm_guard.settings import GuardSettings  # noqa: PLC0415
    from vllm_guard.startup import _remove_previous  # noqa: PLC0415
    from vllm_guard.state import StateDir  # noqa: PLC0415

    kept = segment.with_name(segment.name + "kept")
    kept.write_bytes(b"\0" * 4096)
    other = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(MAPS_SEGMENT.format(path=str(kept)))], stdout=subprocess.PIPE
    )
    state = StateDir(tmp_path / "state")
    state.open()
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == b"mapped"
        # what a guard killed outright left: its vLLM (long gone) and the segments it used
        state.record_processes({2**22 + 1: time.time() - 1.0}, {segment.name, kept.name})
        settings = GuardSettings.model_validate({"state_dir": tmp_path / "state", "kill_timeout_s": 5})
        _remove_previous(state, settings)
        assert not segment.exists()
        assert kept.exists()  # another live process maps it
        assert state.recorded_processes() == []
    finally:
        state.close()
        other.kill()
        other.wait(10)
        if other.stdout is not None:
            other.stdout.close()
        kept.unlink()
