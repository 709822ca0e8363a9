"""The guard as PID 1, as in a container started without --init: in a new PID namespace
(`unshare --pid --fork --mount-proc`) with the simulator as vLLM. Every orphan in the namespace
comes back to PID 1, and PID 1 gets no default action for a signal it does not handle."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.timeout(90)

SIM = f"{sys.executable} -m vllm_guard.sim"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def unshare_works() -> str | None:
    """None when a PID namespace can be made here (root, or user namespaces allowed), else why not."""
    try:
        done = subprocess.run([*UNSHARE, "true"], check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else done.stderr.strip() or f"exit {done.returncode}"


@dataclass
class Pid1Guard:
    unshare: subprocess.Popen[bytes]
    err: Path
    port: int

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.stderr():
                return
            if self.unshare.poll() is not None:
                break
            time.sleep(0.05)
        pytest.fail(f"no {text!r} from the guard; its stderr:\n{self.stderr()[-5000:]}")

    def guard(self) -> psutil.Process:
        """The guard: unshare's only child, PID 1 inside the namespace."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = psutil.Process(self.unshare.pid).children()
            if children:
                return children[0]
            time.sleep(0.05)
        raise AssertionError("unshare started no child")

    def namespace(self) -> list[psutil.Process]:
        """Every process in the namespace, zombies included (seen from outside, outer pids)."""
        guard = self.guard()
        return [guard, *guard.children(recursive=True)]

    def healthy(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            reply = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5, trust_env=False)
            return reply.status_code == 200
        return False


def ns_pid(p: psutil.Process) -> int:
    """The pid of `p` inside its own (innermost) PID namespace."""
    for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError("no NSpid line (a kernel older than 4.1)")


def zombies(processes: list[psutil.Process]) -> list[str]:
    found = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() == psutil.STATUS_ZOMBIE:
                found.append(f"{p.pid} {p.name()}")
    return found


def wait_until_no_zombies(pid1: Pid1Guard, timeout_s: float = 5.0) -> list[str]:
    # The guard reaps orphans on a one-second timer, so a zombie may live up to about a second.
    deadline = time.monotonic() + timeout_s
    left = zombies(pid1.namespace())
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = zombies(pid1.namespace())
    return left


def engine_of(api: psutil.Process) -> psutil.Process:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for p in api.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if p.name() == "VLLM::EngineCore":
                    return p
        time.sleep(0.05)
    raise AssertionError("no VLLM::EngineCore under the API server")


@pytest.fixture
def pid1(tmp_path: Path, port: int) -> Iterator[Pid1Guard]:
    why_not = unshare_works()
    if why_not is not None:
        pytest.skip(f"cannot make a PID namespace here: {why_not}")
    argv = [
        *UNSHARE,
        sys.executable, "-m", "vllm_guard",
        "--vllm-command", SIM,
        "--state-dir", str(tmp_path / "state"),
        "--health-interval-s", "0.1",
        "--backoff-initial-s", "0.1",
        "--backoff-jitter-s", "0",
        "--grace-period-s", "5",
        "serve", MODEL, "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "4K",
    ]  # fmt: skip
    env = {
        **os.environ,
        "VLLM_GUARD_SIM_LOAD_S": "0.05",
        "VLLM_GUARD_PREFLIGHT": "off",
        # The API server's death leaves its engine running, as real vLLM's does (#55510).
        "VLLM_GUARD_SIM_FAULTS": "orphan_engine",
        "VLLM_GUARD_SIM_STATE": str(tmp_path / "sim-launches"),
    }
    err = tmp_path / "guard.err"
    with err.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=sink, env=env)
    yield Pid1Guard(proc, err, port)
    if proc.poll() is None:
        # SIGKILL of a namespace's init kills every process in it: nothing can outlive this.
        with contextlib.suppress(psutil.NoSuchProcess):
            Pid1Guard(proc, err, port).guard().kill()
        proc.wait(30)


def test_as_pid_1_the_guard_relaunches_reaps_every_orphan_and_stops_on_sigterm(pid1: Pid1Guard) -> None:
    pid1.wait_for("vLLM is ready (attempt 1)")
    guard = pid1.guard()
    assert ns_pid(guard) == 1

    # vLLM's API server dies; its engine is re-parented to PID 1 (the guard), which must kill it,
    # reap it and relaunch.
    api = guard.children()[0]
    engine = engine_of(api)
    api.kill()
    pid1.wait_for("killed what attempt 1 left behind")
    pid1.wait_for("vLLM is ready (attempt 2)")
    assert wait_until_no_zombies(pid1) == []
    assert not engine.is_running()  # killed and reaped: a zombie would still be "running"

    # An orphan that is not vLLM's: a process entered into the namespace from outside, whose
    # parent exits at once. It is re-parented to the namespace's init and, when it exits, only
    # PID 1 can reap it; unreaped, each such exit would keep a zombie for the container's lifetime.
    subprocess.run(
        ["nsenter", "--target", str(guard.pid), "--pid", "--", "sh", "-c", "sleep 4 & exit 0"],
        check=True,
        timeout=10,
    )
    # long enough to be seen adopted on a loaded machine (CI runs the suite three times over)
    deadline = time.monotonic() + 3
    adopted_ones = [p for p in guard.children() if p.name() == "sleep"]
    while not adopted_ones and time.monotonic() < deadline:
        time.sleep(0.05)
        adopted_ones = [p for p in guard.children() if p.name() == "sleep"]
    (adopted,) = adopted_ones
    assert ns_pid(adopted) != 1
    # It exits after 4 s; reaped, it is gone (a zombie would still count as running).
    deadline = time.monotonic() + 15
    while adopted.is_running() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not adopted.is_running(), f"not reaped by PID 1: {adopted}"
    assert zombies(pid1.namespace()) == []

    # SIGTERM from outside the namespace reaches PID 1 only because the guard handles it.
    vllm_tree = guard.children(recursive=True)
    guard.send_signal(signal.SIGTERM)
    assert pid1.unshare.wait(30) == 0  # unshare --fork exits with the guard's status
    assert "vLLM stopped" in pid1.stderr()
    for p in [guard, *vllm_tree]:
        assert not p.is_running(), f"{p.pid} outlived the guard"


def test_as_pid_1_sigint_twice_stops_at_once(pid1: Pid1Guard) -> None:
    # docker stop sends STOPSIGNAL (SIGTERM); Ctrl-C on `docker run -it` sends SIGINT to PID 1,
    # and a second one skips the grace period.
    pid1.wait_for("vLLM is ready (attempt 1)")
    guard = pid1.guard()
    tree = guard.children(recursive=True)
    guard.send_signal(signal.SIGINT)
    guard.send_signal(signal.SIGINT)
    assert pid1.unshare.wait(30) == 0
    for p in [guard, *tree]:
        assert not p.is_running(), f"{p.pid} outlived the guard"
