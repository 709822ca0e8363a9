"""The one voice: every line the user sees, the guard's own and vLLM's relayed, goes through here.

Writes happen on a thread of their own, so a slow terminal or journal never blocks the event loop
that reads vLLM's pipes (a blocked pipe would stall vLLM itself). Relayed output that does not fit in
the bounded queue is dropped and counted; the guard's own lines are never dropped.
"""

from __future__ import annotations

import collections
import datetime
import errno
import json
import os
import select
import threading
from typing import Literal

from vllm_guard.redact import Redactor

PREFIX = "vllm-guard: "
STDOUT = 1
STDERR = 2


class Printer:
    def __init__(
        self,
        *,
        redactor: Redactor | None = None,
        log_format: Literal["text", "json"] = "text",
        stdout_fd: int = STDOUT,
        stderr_fd: int = STDERR,
        queue_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.redactor = redactor or Redactor()
        self._format = log_format
        self._fds = {STDOUT: stdout_fd, STDERR: stderr_fd}
        self._capacity = queue_bytes
        self._queue: collections.deque[tuple[int, bytes]] = collections.deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._closing = False
        self._broken: set[int] = set()
        self._dropped_lines = 0
        self.dropped_total = 0
        self.full_log_hint = "the attempt's log file in the state directory"
        self._thread = threading.Thread(target=self._write_loop, name="printer", daemon=True)
        self._thread.start()

    def guard(self, message: str, *, level: str = "info", **fields: object) -> None:
        """One line of the guard's own, never dropped, on stderr."""
        message = self.redactor.text(message)
        if self._format == "json":
            record: dict[str, object] = {
                "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
                "level": level,
                "logger": "vllm-guard",
                "message": message,
            }
            record.update({k: _json_safe(self.redactor, v) for k, v in fields.items()})
            line = json.dumps(record, ensure_ascii=False)
        else:
            line = PREFIX + message
        with self._cond:
            self._enqueue(STDERR, (line + "\n").encode(errors="replace"))

    def relay(self, stream: int, data: bytes) -> None:
        """vLLM's output in whole lines, already masked, passed through unchanged unless the
        sink is behind."""
        with self._cond:
            if self._queued_bytes + len(data) > self._capacity:
                lines = data.count(b"\n") or 1
                self._dropped_lines += lines
                self.dropped_total += lines
                return
            if self._dropped_lines:
                note = (
                    f"{self._dropped_lines} lines of vLLM output were not shown here because "
                    f"this terminal or journal was slower than vLLM; {self.full_log_hint} "
                    "has all of them"
                )
                self._dropped_lines = 0
                self._enqueue(STDERR, (PREFIX + note + "\n").encode())
            self._enqueue(stream, data)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything queued is written; False if the sink stayed stuck."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _enqueue(self, stream: int, data: bytes) -> None:
        self._queue.append((stream, data))
        self._queued_bytes += len(data)
        self._cond.notify_all()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                stream, data = self._queue[0]
            self._write(self._fds[stream], data)
            with self._cond:
                self._queue.popleft()
                self._queued_bytes -= len(data)
                self._cond.notify_all()

    def _write(self, fd: int, data: bytes) -> None:
        if fd in self._broken:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except BlockingIOError:
                # Someone handed us a non-blocking stdout; wait until it drains.
                select.select([], [fd], [], 1.0)
                continue
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EBADF, errno.EIO):
                    # The reader went away (`| head`, a closed terminal): keep supervising.
                    self._broken.add(fd)
                    return
                raise
            view = view[written:]


def _json_safe(redactor: Redactor, value: object) -> object:
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(redactor, v) for v in value]
    return redactor.text(str(value))
