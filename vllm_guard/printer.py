"""The one voice: every line the user sees, the guard's own and vLLM's relayed, goes through here.

Each output stream is written by a thread of its own, so a slow terminal or journal never blocks
the event loop that reads vLLM's pipes (a blocked pipe would stall vLLM itself), and a stuck stdout
never holds back the guard's own lines on stderr. Relayed output that does not fit in a stream's
bounded queue is dropped and counted (the count is told before the guard's next line, at the
latest at close); the guard's own lines are never dropped, and each starts a line of its own.
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


class _Sink:
    """One file descriptor, its queue, and the thread that writes it."""

    def __init__(self, fd: int, capacity: int, name: str) -> None:
        self.fd = fd
        self.capacity = capacity
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.cond = threading.Condition()
        self.closing = False
        self.broken = False
        self.dropped_lines = 0  # since the last note about it
        # The last bytes queued left a line open (vLLM's last words often have no \n, a tqdm bar
        # ends in \r): a line of the guard's own must not be glued to it.
        self.mid_line = False
        self.thread = threading.Thread(target=self._write_loop, name=name, daemon=True)
        self.thread.start()

    def put(self, data: bytes, *, droppable: bool) -> bool:
        """Queue relayed output (`droppable`) or whole lines of the guard's own."""
        with self.cond:
            if droppable and self.queued_bytes + len(data) > self.capacity:
                self.dropped_lines += data.count(b"\n") or 1
                return False
            if not droppable:
                data = b"\n" + data if self.mid_line else data
                self.mid_line = False
            else:
                self.mid_line = _leaves_line_open(data, self.mid_line)
            self.queue.append(data)
            self.queued_bytes += len(data)
            self.cond.notify_all()
            return True

    def take_dropped(self) -> int:
        with self.cond:
            dropped, self.dropped_lines = self.dropped_lines, 0
            return dropped

    def flush(self, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: not self.queue, timeout_s)

    def close(self, timeout_s: float) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.thread.join(timeout_s)

    def _write_loop(self) -> None:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: self.queue or self.closing)
                if not self.queue:
                    return
                data = self.queue[0]
            self._write(data)
            with self.cond:
                self.queue.popleft()
                self.queued_bytes -= len(data)
                self.cond.notify_all()

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                # Someone handed us a non-blocking stdout; wait until it drains.
                select.select([], [self.fd], [], 1.0)
                continue
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.EBADF, errno.EIO):
                    # The reader went away (`| head`, a closed terminal): keep supervising.
                    self.broken = True
                    return
                raise
            view = view[written:]


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
        self._sinks = {
            STDOUT: _Sink(stdout_fd, queue_bytes, "printer-stdout"),
            STDERR: _Sink(stderr_fd, queue_bytes, "printer-stderr"),
        }
        self.dropped_total = 0
        self.full_log_hint = "the attempt's log file in the state directory"

    def guard(self, message: str, *, level: str = "info", **fields: object) -> None:
        """One line of the guard's own, never dropped, on stderr, on a line of its own, after the
        note of any relayed lines dropped before it."""
        self._note_dropped()
        self._guard(message, level, fields)

    def relay(self, stream: int, data: bytes) -> None:
        """vLLM's output in whole records, already masked, passed through unchanged unless the
        sink is behind."""
        sink = self._sinks[stream]
        if sink.put(data, droppable=True) and sink.dropped_lines:
            self._note_dropped()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything queued is written; False if a sink stayed stuck."""
        return all(sink.flush(timeout_s) for sink in self._sinks.values())

    def close(self, timeout_s: float = 5.0) -> None:
        self._note_dropped()  # a flood that ends with vLLM's death is announced too
        for sink in self._sinks.values():
            sink.close(timeout_s)

    def _note_dropped(self) -> None:
        # Each count is taken before its note is printed, so the note's own guard() finds none.
        for stream, sink in self._sinks.items():
            dropped = sink.take_dropped()
            if not dropped:
                continue
            self.dropped_total += dropped
            name = "stdout" if stream == STDOUT else "stderr"
            self.guard(
                f"{dropped} lines of vLLM's {name} were not shown here because this terminal or "
                f"journal was slower than vLLM; {self.full_log_hint} has all of them",
                level="warning",
            )

    def _guard(self, message: str, level: str, fields: dict[str, object]) -> None:
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
        self._sinks[STDERR].put((line + "\n").encode(errors="replace"), droppable=False)


def _leaves_line_open(data: bytes, was_open: bool) -> bool:
    """Whether a terminal's cursor is left after text on its line: a \r (a bar's redraw) moves
    the cursor back but leaves the text there; \r alone on an empty line leaves it empty."""
    end = len(data)
    while end and data[end - 1] == 0x0D:
        end -= 1
    return data[end - 1] != 0x0A if end else was_open


def _json_safe(redactor: Redactor, value: object) -> object:
    if isinstance(value, str):
        return redactor.text(value)
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(redactor, v) for v in value]
    return redactor.text(str(value))
