"""The systemd notify socket: READY, STATUS, WATCHDOG, EXTEND_TIMEOUT_USEC and STOPPING.

The protocol is one datagram of newline-separated `KEY=VALUE` lines sent to the unix socket named
by `$NOTIFY_SOCKET`; no libsystemd is needed. Sending never raises: systemd may be gone (shutdown,
`systemctl daemon-reexec`) or the guard may run outside systemd, and neither is the guard's fault.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Self

# The variables systemd sets for the notify protocol. vLLM has no use for them, and a child that
# inherits NOTIFY_SOCKET could speak for the guard (sd_notify's `unset_environment` for the same
# reason), so the supervisor drops them from vLLM's environment: see `scrubbed`.
NOTIFY_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# A STATUS= line is for `systemctl status`, one line of it; a runaway text must not make the
# datagram fail to send (the limit for unix datagrams is far larger, but nothing reads that much).
MAX_STATUS_CHARS = 1024


def scrubbed(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without the notify-protocol variables: the environment to give a child."""
    return {k: v for k, v in environ.items() if k not in NOTIFY_VARIABLES}


def _one_line(text: str) -> str:
    line = " ".join(text.splitlines()).strip()
    return line[:MAX_STATUS_CHARS]


def _address(value: str) -> bytes | None:
    """A socket address from `$NOTIFY_SOCKET`: an absolute path, or `@name` in the abstract
    namespace. Anything else (a relative path, systemd's newer `vsock:` form) is not supported."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    if value.startswith("/"):
        return os.fsencode(value)
    return None


def _watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID unset or ours), like
    sd_watchdog_enabled()."""
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    watchdog_pid = environ.get("WATCHDOG_PID", "")
    if watchdog_pid:
        try:
            if int(watchdog_pid) != pid:
                return None
        except ValueError:
            return None
    return usec


class Notifier:
    """Talks to systemd over its notify socket. Build one with `from_env`; it is None outside systemd.

    Every message is one `sendto` on a non-blocking datagram socket created once. A message that
    cannot be sent is counted in `failed` (with the error in `last_error`) and otherwise ignored;
    `ready` and `stopping` also say whether they were sent, so that a state change can be retried.
    """

    def __init__(self, address: bytes, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None
        self._sock: socket.socket | None = None
        try:
            # Python's sockets are close-on-exec already: vLLM never inherits this one.
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._sock = sock
        except OSError as exc:
            self.last_error = f"socket: {exc.strerror or exc}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, pid: int | None = None) -> Notifier | None:
        """The notifier systemd asked for, or None when `NOTIFY_SOCKET` is unset, empty or unusable.

        `pid` (default: this process) is compared with `WATCHDOG_PID`: a watchdog meant for
        another process is not ours to feed.
        """
        address = _address(environ.get("NOTIFY_SOCKET", ""))
        if address is None:
            return None
        return cls(address, _watchdog_usec(environ, os.getpid() if pid is None else pid))

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send WATCHDOG=1: half the watchdog timeout, as sd_watchdog_enabled(3) advises;
        None when systemd set no watchdog for this process."""
        if self.watchdog_usec is None:
            return None
        return self.watchdog_usec / 2 / 1_000_000

    @property
    def closed(self) -> bool:
        return self._sock is None

    def ready(self, status: str = "") -> bool:
        """vLLM answers /health: the unit becomes active. False when the datagram could not be
        sent: a state change, which the caller sends again (unlike STATUS= or WATCHDOG=)."""
        return self._send("READY=1", status)

    def status(self, text: str) -> None:
        """The one line `systemctl status` shows."""
        self._send("", text)

    def extend_timeout(self, seconds: float) -> None:
        """Extend the current start (or stop) timeout to `seconds` from now; to keep extending,
        send again before that runs out."""
        self._send(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1_000_000))}")

    def watchdog(self) -> None:
        """The guard's loop is alive."""
        self._send("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        """The guard is stopping vLLM on request. False when not sent (see `ready`)."""
        return self._send("STOPPING=1", status)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _send(self, assignment: str, status: str = "") -> bool:
        lines = [assignment] if assignment else []
        if status.strip():
            lines.append("STATUS=" + _one_line(status))
        if not lines:
            return True
        if self._sock is None:
            self.failed += 1
            self.last_error = self.last_error or "closed"
            return False
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8", "replace"), self.address)
        except OSError as exc:
            # No such socket (systemd gone), refused, a full queue (EAGAIN: non-blocking, so the
            # guard's loop never waits on systemd): drop the message. Only the error's name is kept.
            self.failed += 1
            self.last_error = type(exc).__name__ + (f": {exc.strerror}" if exc.strerror else "")
            return False
        self.sent += 1
        return True
