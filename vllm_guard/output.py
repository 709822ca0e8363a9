"""One attempt's output: vLLM's stdout and stderr cut into whole lines, masked, written to the
attempt's size-capped log file, kept as a tail for diagnosis, and handed to the printer.

Work is done per chunk, not per line, so a log flood costs a few C-level passes over the bytes.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

from vllm_guard import milestones
from vllm_guard.printer import STDERR, STDOUT, Printer
from vllm_guard.redact import Redactor

# A line longer than this is passed on in pieces; a secret is never split because the cut is made
# at whitespace (tokens contain none) when there is any.
MAX_LINE_BYTES = 1024 * 1024
# Lines kept for diagnosis, and the longest piece of one line that is kept. The tail is kept as
# whole chunks, trimmed by size (lines are only counted when someone reads the tail): at least
# TAIL_LINES lines or the last TAIL_KEEP_BYTES of output, whichever is less.
TAIL_LINES = 400
TAIL_LINE_BYTES = 8 * 1024
TAIL_KEEP_BYTES = 2 * 1024 * 1024
# The start of the output, kept for what vLLM says once at startup (its version banner).
HEAD_KEEP_BYTES = 64 * 1024
# Output searched for startup milestones per refill (the supervisor refills it at each poll): a
# normal start prints far less, and a log flood must not cost the relay its throughput.
SCAN_BUDGET_BYTES = 256 * 1024


class CappedLog:
    """A log file that never outgrows `max_bytes`: at half of it the file moves to `NAME.1`,
    so the newest output (where the root cause is) is always there."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self._half = max(max_bytes // 2, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._size = 0

    def write(self, data: bytes) -> None:
        if self._fd < 0:
            return
        if self._size + len(data) > self._half and self._size > 0:
            os.close(self._fd)
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            self._size = 0
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class AttemptOutput:
    def __init__(self, printer: Printer, redactor: Redactor, log: CappedLog) -> None:
        self._printer = printer
        self._redactor = redactor
        self.log = log
        self._carry = {STDOUT: b"", STDERR: b""}
        self._tail: collections.deque[bytes] = collections.deque()  # newest chunks, in order
        self._tail_bytes = 0
        self._head = bytearray()
        # Startup progress, read until vLLM is ready (then the scan stops costing anything).
        self.watching = True
        self.scan_budget = SCAN_BUDGET_BYTES
        self.progress = 0  # how many chunks showed progress: the supervisor notices it change
        self.milestone: milestones.Milestone | None = None

    def feed(self, stream: int, data: bytes) -> None:
        buf = self._carry[stream] + data if self._carry[stream] else data
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            if len(buf) < MAX_LINE_BYTES:
                self._carry[stream] = buf
                return
            cut = _safe_cut(buf)
        self._carry[stream] = buf[cut:]
        self._emit(stream, buf[:cut])

    def close(self) -> None:
        """End of both pipes: pass on what is left without a newline."""
        for stream, rest in self._carry.items():
            if rest:
                self._carry[stream] = b""
                self._emit(stream, rest)
        self.log.close()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last `lines` lines of stdout and stderr together, in arrival order, decoded."""
        out: list[str] = []
        for chunk in reversed(self._tail):
            pieces = chunk.split(b"\n")
            if pieces and pieces[-1] == b"":
                pieces.pop()
            for piece in reversed(pieces):
                out.append(piece[:TAIL_LINE_BYTES].decode(errors="replace").rstrip("\r"))
                if len(out) >= lines:
                    return out[::-1]
        return out[::-1]

    def head(self) -> str:
        """The first lines of output (up to HEAD_KEEP_BYTES), decoded."""
        return self._head.decode(errors="replace")

    def _emit(self, stream: int, chunk: bytes) -> None:
        clean = self._redactor.data(chunk)
        if len(self._head) < HEAD_KEEP_BYTES:
            self._head += clean[: HEAD_KEEP_BYTES - len(self._head)]
        if self.watching and self.scan_budget > 0:
            piece = clean[: self.scan_budget]
            self.scan_budget -= len(piece)
            found, progressed = milestones.scan(piece)
            if found:
                self.milestone = found[-1]
            self.progress += progressed
        self.log.write(clean)
        self._tail.append(clean)
        self._tail_bytes += len(clean)
        while self._tail_bytes - len(self._tail[0]) >= TAIL_KEEP_BYTES:
            self._tail_bytes -= len(self._tail.popleft())
        self._printer.relay(stream, clean)


def _safe_cut(buf: bytes) -> int:
    """Where to cut a line too long to keep whole: after the last whitespace, if any."""
    limit = len(buf) - 256
    space = max(buf.rfind(b" ", 0, limit), buf.rfind(b"\t", 0, limit))
    return space + 1 if space > 0 else limit
