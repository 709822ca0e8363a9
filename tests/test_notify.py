"""The systemd notify protocol against real unix datagram sockets, in this process and across processes."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vllm_guard.notify import Notifier, scrubbed

pytestmark = pytest.mark.timeout(30)

RECV_TIMEOUT_S = 5.0  # an upper bound on waiting for a datagram, never a sleep


class Receiver:
    """The systemd side: a bound datagram socket and what `NOTIFY_SOCKET` would say about it."""

    def __init__(self, sock: socket.socket, notify_socket: str) -> None:
        self.sock = sock
        self.notify_socket = notify_socket

    def recv(self) -> str:
        return self.sock.recv(65536).decode()

    def nothing_queued(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(65536)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(RECV_TIMEOUT_S)
        return False


def _datagram_socket() -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(RECV_TIMEOUT_S)
    return sock


@pytest.fixture
def path_receiver(tmp_path: Path) -> Iterator[Receiver]:
    path = tmp_path / "notify.sock"
    assert len(os.fsencode(path)) < 108, "sun_path holds 108 bytes"
    sock = _datagram_socket()
    sock.bind(str(path))
    yield Receiver(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"vllm-guard-test-{uuid.uuid4().hex}"
    sock = _datagram_socket()
    sock.bind("\0" + name)
    yield Receiver(sock, "@" + name)
    sock.close()


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    fixture: Receiver = request.getfixturevalue(f"{request.param}_receiver")
    return fixture


@pytest.fixture
def notifier(receiver: Receiver) -> Iterator[Notifier]:
    found = Notifier.from_env({"NOTIFY_SOCKET": receiver.notify_socket})
    assert found is not None
    yield found
    found.close()


def test_each_message_is_one_exact_datagram(receiver: Receiver, notifier: Notifier) -> None:
    notifier.ready()
    assert receiver.recv() == "READY=1"
    notifier.ready("serving on :8000")
    assert receiver.recv() == "READY=1\nSTATUS=serving on :8000"
    notifier.status("loading weights")
    assert receiver.recv() == "STATUS=loading weights"
    notifier.extend_timeout(90)
    assert receiver.recv() == "EXTEND_TIMEOUT_USEC=90000000"
    notifier.extend_timeout(1.5)
    assert receiver.recv() == "EXTEND_TIMEOUT_USEC=1500000"
    notifier.watchdog()
    assert receiver.recv() == "WATCHDOG=1"
    notifier.stopping()
    assert receiver.recv() == "STOPPING=1"
    notifier.stopping("stopping vLLM (SIGTERM)")
    assert receiver.recv() == "STOPPING=1\nSTATUS=stopping vLLM (SIGTERM)"
    assert (notifier.sent, notifier.failed) == (8, 0)
    assert receiver.nothing_queued()


def test_status_is_one_line(receiver: Receiver, notifier: Notifier) -> None:
    notifier.status("oom_kv_cache:\nrelaunching with\r\n--max-model-len 27392\n")
    assert receiver.recv() == "STATUS=oom_kv_cache: relaunching with --max-model-len 27392"
    notifier.ready("a\nREADY=0")  # a newline cannot smuggle in another assignment
    assert receiver.recv() == "READY=1\nSTATUS=a READY=0"


def test_status_is_capped(receiver: Receiver, notifier: Notifier) -> None:
    notifier.status("x" * 100_000)
    assert receiver.recv() == "STATUS=" + "x" * 1024


def test_empty_status_sends_nothing(receiver: Receiver, notifier: Notifier) -> None:
    notifier.status("")
    notifier.status(" \n ")
    assert receiver.nothing_queued()
    assert notifier.sent == 0


def test_negative_extension_is_zero(receiver: Receiver, notifier: Notifier) -> None:
    notifier.extend_timeout(-3)
    assert receiver.recv() == "EXTEND_TIMEOUT_USEC=0"


@pytest.mark.parametrize("value", [None, "", "relative/notify.sock", "@", "vsock:2:1234"])
def test_no_usable_socket_means_no_notifier(value: str | None) -> None:
    environ = {} if value is None else {"NOTIFY_SOCKET": value}
    assert Notifier.from_env(environ) is None


@pytest.mark.parametrize(
    ("environ", "interval_s"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4242"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "4243"}, None),  # another process's watchdog
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": ""}, 30.0),
        ({"WATCHDOG_USEC": "1"}, 0.0000005),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_PID": "4242"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], interval_s: float | None) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", **environ}, pid=4242)
    assert notifier is not None
    with notifier:
        assert notifier.watchdog_interval_s == interval_s


def test_watchdog_pid_defaults_to_this_process() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "10000000"}
    ours = Notifier.from_env({**environ, "WATCHDOG_PID": str(os.getpid())})
    theirs = Notifier.from_env({**environ, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert ours is not None and theirs is not None
    assert ours.watchdog_interval_s == 5.0
    assert theirs.watchdog_interval_s is None
    ours.close()
    theirs.close()


def test_a_vanished_socket_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert notifier is not None
    sock.close()
    path.unlink()  # systemd went away
    notifier.ready("up")
    notifier.watchdog()
    notifier.stopping()
    assert (notifier.sent, notifier.failed) == (0, 3)
    assert notifier.last_error is not None and "FileNotFoundError" in notifier.last_error
    notifier.close()


def test_a_socket_nobody_reads_is_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()  # the path stays, nobody listens: ECONNREFUSED
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert notifier is not None
    notifier.watchdog()
    assert (notifier.sent, notifier.failed) == (0, 1)
    notifier.close()


def test_a_full_queue_never_blocks(path_receiver: Receiver) -> None:
    """systemd stuck: the queue fills and sending fails at once (non-blocking) instead of waiting."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_receiver.notify_socket})
    assert notifier is not None
    for _ in range(5000):
        notifier.status("x" * 1000)
        if notifier.failed:
            break
    assert notifier.failed == 1
    assert notifier.last_error is not None and "BlockingIOError" in notifier.last_error
    notifier.close()


def test_sending_after_close_is_ignored(path_receiver: Receiver) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_receiver.notify_socket})
    assert notifier is not None
    notifier.close()
    notifier.close()
    assert notifier.closed
    notifier.ready()
    assert notifier.failed == 1
    assert path_receiver.nothing_queued()


# A stand-in for vLLM that writes down what it was given of systemd's: the notify variables and any
# socket among its open descriptors (the guard's notify socket would show up as one), then fails.
RECORDER = """
import json, os, sys
fds = {}
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # the descriptor listdir itself had open
        pass
seen = {
    "env": sorted(k for k in os.environ if k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")),
    "sockets": sorted(fd for fd, target in fds.items() if target.startswith("socket:")),
}
with open(sys.argv[1], "a") as out:
    out.write(json.dumps(seen) + "\\n")
print("RuntimeError: recorded", file=sys.stderr)
sys.exit(1)
"""


def test_vllm_gets_neither_the_notify_variables_nor_the_guards_socket(
    path_receiver: Receiver, tmp_path: Path
) -> None:
    # Only the guard speaks for the unit: a vLLM that inherited NOTIFY_SOCKET (or the socket) could
    # send READY=1 for it. Two attempts: the second starts after the guard's notifier is open.
    script, record = tmp_path / "recorder.py", tmp_path / "seen.jsonl"
    script.write_text(RECORDER)
    env = {
        **os.environ,
        "NOTIFY_SOCKET": path_receiver.notify_socket,
        "WATCHDOG_USEC": "30000000",
        "VLLM_GUARD_BACKOFF_INITIAL_S": "0.05",
        "VLLM_GUARD_BACKOFF_JITTER_S": "0",
    }
    command = f"{sys.executable} {script} {record}"
    guard = [sys.executable, "-m", "vllm_guard", "--state-dir", str(tmp_path / "state")]
    done = subprocess.run(
        [*guard, "--vllm-command", command, "--max-restarts", "1", "serve", "m"],
        capture_output=True,
        text=True,
        timeout=25,
        env=env,
        check=False,
    )
    assert done.returncode == 4, done.stderr
    seen = [json.loads(line) for line in record.read_text().splitlines()]
    assert seen == [{"env": [], "sockets": []}] * 2, done.stderr
    assert path_receiver.recv().startswith("STATUS="), "the guard itself did speak on the socket"


def test_scrubbed_drops_only_the_notify_variables() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2", "PATH": "/bin", "HOME": "/h"}
    assert scrubbed(environ) == {"PATH": "/bin", "HOME": "/h"}


def _recv_with_sender_pid(sock: socket.socket) -> tuple[str, int]:
    """A datagram and the pid the kernel vouches sent it (SCM_CREDENTIALS, as systemd reads it)."""
    ucred = struct.Struct("iII")
    data, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_SPACE(ucred.size))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid, _uid, _gid = ucred.unpack(payload[: ucred.size])
            return data.decode(), pid
    raise AssertionError("no SCM_CREDENTIALS")


SENDER = """
import os, sys
from vllm_guard.notify import Notifier
n = Notifier.from_env(os.environ)
assert n is not None and n.watchdog_interval_s == 15.0, n
n.ready("ready from " + sys.argv[1])
n.watchdog()
n.close()
"""


def test_another_process_reaches_the_socket(path_receiver: Receiver) -> None:
    """End to end as under systemd: NOTIFY_SOCKET in a fresh interpreter's environment, and the
    sender's pid (what `NotifyAccess=main` checks) is that interpreter's own."""
    sock = path_receiver.sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    env = {**os.environ, "NOTIFY_SOCKET": path_receiver.notify_socket, "WATCHDOG_USEC": "30000000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-c", SENDER, "child"], env=env)
    try:
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _recv_with_sender_pid(sock) == ("READY=1\nSTATUS=ready from child", proc.pid)
    assert _recv_with_sender_pid(sock) == ("WATCHDOG=1", proc.pid)
    assert path_receiver.nothing_queued()


def test_ready_and_stopping_say_whether_they_were_sent(path_receiver: Receiver) -> None:
    """READY=1 and STOPPING=1 are state changes: the caller must know when one was refused."""
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path_receiver.notify_socket})
    assert notifier is not None
    while not notifier.failed:  # systemd is slow to read: its queue is full
        notifier.status("x" * 1000)
    assert notifier.ready("ready") is False
    assert notifier.stopping("stopping") is False
    while not path_receiver.nothing_queued():
        pass  # drain what systemd had not read
    assert notifier.ready("ready") is True
    assert path_receiver.recv() == "READY=1\nSTATUS=ready"
    notifier.close()
