"""One attempt's output: vLLM's stdout and stderr cut into whole records, masked, written to the
attempt's size-capped log file, kept as a tail for diagnosis, and handed to the printer.

A record ends at `\n`, and at `\r` too: tqdm writing to a pipe redraws its bar with `\r<bar>` and
writes a `\n` only when the bar closes, so a bar that moves for half an hour is progress the whole
time (and a terminal renders the `\r`). The tail for diagnosis holds `\n` lines, a bar's last state.

Work is done per chunk, not per line, so a log flood costs a few C-level passes over the bytes.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import os
import threading
from pathlib import Path

from vllm_guard import milestones, request_log
from vllm_guard.printer import STDERR, STDOUT, Printer
from vllm_guard.redact import Redactor

# A line longer than this is passed on in pieces, cut where no secret straddles (Redactor.cut); the
# last CUT_CARRY_BYTES at least wait for the next read, where a secret may go on.
MAX_LINE_BYTES = 1024 * 1024
CUT_CARRY_BYTES = 256
# Lines kept for diagnosis, and the longest piece of one line that is kept. The tail is kept as
# whole chunks, trimmed by size (lines are only counted when someone reads the tail): at least
# TAIL_LINES lines or the last TAIL_KEEP_BYTES of output, whichever is less. A root cause printed
# once can be followed by every tensor-parallel worker's traceback of the wrapper (eight of about
# a hundred lines each); classify() reads 5,000 lines in about 60 ms (bench/classify.py).
TAIL_LINES = 5000
TAIL_LINE_BYTES = 8 * 1024
TAIL_KEEP_BYTES = 2 * 1024 * 1024
# The start of the output, kept for what vLLM says once at startup (its version banner).
HEAD_KEEP_BYTES = 64 * 1024
# Milestones kept per attempt: a few per rank on the largest machines, never a flood's worth.
MAX_REACHED = 1024
# Output searched for startup milestones per refill (the supervisor refills it at each poll): a
# normal start prints far less, and a log flood must not cost the relay its throughput.
SCAN_BUDGET_BYTES = 256 * 1024
# Output waiting for the log file's writer thread, at most.
LOG_QUEUE_BYTES = 8 * 1024 * 1024


class CappedLog:
    """A log file that never outgrows `max_bytes`: at half of it the file moves to `NAME.1`,
    so the newest output (where the root cause is) is always there.

    A thread of its own writes it: copying a flood into the page cache is the relay's largest cost
    (bench/RESULTS.md), and os.write releases the GIL, so it runs beside the masking."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self._half = max(max_bytes // 2, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self._size = 0
        self.error: OSError | None = None  # why the log stopped short (a full disk); the relay goes on
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._write_loop, name="attempt-log", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        with self._cond:
            # A disk slower than vLLM holds the relay back here, as a write of its own would.
            self._cond.wait_for(lambda: self._queued_bytes < LOG_QUEUE_BYTES or self._closing)
            if self._closing:
                return
            self._queue.append(data)
            self._queued_bytes += len(data)
            self._cond.notify_all()

    def close(self) -> None:
        """Write what is queued, then close the file."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    break
                data = self._queue.popleft()
            if self.error is None:
                try:
                    self._write(data)
                except OSError as exc:
                    self.error = exc
            with self._cond:
                self._queued_bytes -= len(data)
                self._cond.notify_all()
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _write(self, data: bytes) -> None:
        if self._size + len(data) > self._half and self._size > 0:
            os.close(self._fd)
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            self._size = 0
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        self._size += len(data)


class AttemptOutput:
    def __init__(self, printer: Printer, redactor: Redactor, log: CappedLog) -> None:
        self._printer = printer
        self._redactor = redactor
        self.log = log
        self._carry = {STDOUT: b"", STDERR: b""}  # not yet passed on: after the last \r or \n
        # Passed on but not yet in the tail: after the last \n (a bar's state, a line cut short),
        # and when each began, so that the tail keeps arrival order.
        self._open = {STDOUT: b"", STDERR: b""}
        self._open_since = {STDOUT: 0, STDERR: 0}
        self._opened = 0
        self._tail: collections.deque[bytes] = collections.deque()  # newest chunks, in order
        self._tail_bytes = 0
        self._head = bytearray()
        # Startup progress, read until vLLM is ready (then the scan stops costing anything).
        self.watching = True
        self.scan_budget = SCAN_BUDGET_BYTES
        self.progress = 0  # how many records showed progress: the supervisor notices it change
        self.milestone: milestones.Milestone | None = None
        # every milestone of this attempt until ready, each rank's line (measured.py reads them)
        self.reached: list[milestones.Milestone] = []
        # Once vLLM serves: the requests it refused, as its log tells (request_log.py), by kind,
        # and the last of each (the advisor names the model, the limit, ...).
        self.refused: collections.Counter[str] = collections.Counter()
        self.refused_last: dict[str, tuple[str, ...]] = {}
        self._told_log_error = False

    def feed(self, stream: int, data: bytes) -> None:
        buf = self._carry[stream] + data if self._carry[stream] else data
        end = buf.rfind(b"\n")
        # Only a \r after the last \n can end a later record; the search is that short.
        end = max(end, buf.rfind(b"\r", end + 1)) + 1
        if end == 0:
            if len(buf) < MAX_LINE_BYTES:
                self._carry[stream] = buf
                return
            end = self._redactor.cut(buf, len(buf) - CUT_CARRY_BYTES)
        if end == len(buf):
            self._carry[stream] = b""
            self._emit(stream, buf)
        else:
            self._carry[stream] = buf[end:]
            self._emit(stream, buf[:end])

    def close(self) -> None:
        """End of both pipes: pass on what is left without a newline."""
        for stream, rest in self._carry.items():
            if rest:
                self._carry[stream] = b""
                self._emit(stream, rest)
        for stream in sorted(self._open, key=self._open_since.__getitem__):
            if self._open[stream]:
                self._keep(self._open[stream])
                self._open[stream] = b""
        self.log.close()
        self._tell_log_error()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        """The last `lines` lines of stdout and stderr together, in arrival order, decoded."""
        out: list[str] = []
        unfinished = sorted((s for s in self._open if self._open[s]), key=self._open_since.__getitem__)
        newest_first = itertools.chain((self._open[s] for s in reversed(unfinished)), reversed(self._tail))
        for chunk in newest_first:
            pieces = chunk.split(b"\n")
            if pieces and pieces[-1] == b"":
                pieces.pop()
            for piece in reversed(pieces):
                out.append(_last_state(piece)[:TAIL_LINE_BYTES].decode(errors="replace"))
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
                if len(self.reached) < MAX_REACHED:
                    self.reached.extend(found[: MAX_REACHED - len(self.reached)])
            self.progress += progressed
        elif not self.watching:
            for event in request_log.scan(clean):
                self.refused[event.kind] += 1
                self.refused_last[event.kind] = event.detail
        self.log.write(clean)
        self._tell_log_error()
        self._printer.relay(stream, clean)
        lines = clean.rfind(b"\n") + 1
        if not lines:
            self._add_open(stream, clean)
            return
        opened = self._open[stream]
        self._open[stream] = b""
        if opened:
            self._keep(opened + clean[:lines])
        else:
            self._keep(clean if lines == len(clean) else clean[:lines])
        if lines < len(clean):
            self._add_open(stream, clean[lines:])

    def _tell_log_error(self) -> None:
        if self.log.error is not None and not self._told_log_error:
            self._told_log_error = True
            self._printer.guard(
                f"the attempt's log file {self.log.path} stopped short: {self.log.error}; "
                "vLLM's output is still relayed here",
                level="warning",
            )

    def _add_open(self, stream: int, piece: bytes) -> None:
        if not self._open[stream]:
            self._opened += 1
            self._open_since[stream] = self._opened
        line = self._open[stream] + piece
        if len(line) > TAIL_LINE_BYTES:
            # a bar redrawn for an hour is one line: keep its last state, not every state
            cr = line.rfind(b"\r", 0, len(line) - 1)
            line = line[max(cr, 0) :][:TAIL_LINE_BYTES]
        self._open[stream] = line

    def _keep(self, lines: bytes) -> None:
        self._tail.append(lines)
        self._tail_bytes += len(lines)
        while self._tail_bytes - len(self._tail[0]) >= TAIL_KEEP_BYTES:
            self._tail_bytes -= len(self._tail.popleft())


def _last_state(line: bytes) -> bytes:
    """What a terminal shows of a line redrawn with \r: its last state (tqdm pads each to cover
    the one before). vLLM ends each line of a multi-line record with \r\n (that \r goes first)."""
    line = line.rstrip(b"\r")
    return line[line.rfind(b"\r") + 1 :]
