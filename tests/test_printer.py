from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections.abc import Iterator

import pytest

from vllm_guard.printer import STDERR, STDOUT, Printer
from vllm_guard.redact import Redactor


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


def read_all(fd: int, until: bytes, timeout_s: float = 5.0) -> bytes:
    os.set_blocking(fd, False)
    got = b""
    deadline = time.monotonic() + timeout_s
    while until not in got and time.monotonic() < deadline:
        try:
            got += os.read(fd, 1 << 20)
        except BlockingIOError:
            time.sleep(0.01)
    return got


def test_guard_lines_are_prefixed_and_masked(pipe: tuple[int, int]) -> None:
    r, w = pipe
    printer = Printer(redactor=Redactor(["s3cret-value"]), stdout_fd=w, stderr_fd=w)
    printer.guard("starting with --api-key s3cret-value")
    assert printer.flush()
    printer.close()
    assert read_all(r, b"\n") == b"vllm-guard: starting with --api-key ***\n"


def test_json_lines_carry_fields(pipe: tuple[int, int]) -> None:
    r, w = pipe
    printer = Printer(log_format="json", stdout_fd=w, stderr_fd=w)
    printer.guard("ready", attempt=2, args=["--port", "1"])
    printer.close()
    record = json.loads(read_all(r, b"\n"))
    assert record["message"] == "ready"
    assert record["attempt"] == 2
    assert record["args"] == ["--port", "1"]
    assert record["level"] == "info"


def test_a_stuck_sink_drops_relayed_lines_never_guard_lines_and_says_how_many(
    pipe: tuple[int, int],
) -> None:
    r, w = pipe
    printer = Printer(stdout_fd=w, stderr_fd=w, queue_bytes=4096)
    line = b"x" * 99 + b"\n"
    # Nobody reads the pipe: its buffer and then the printer's queue fill up.
    for _ in range(2000):
        printer.relay(STDOUT, line)
    printer.guard("an important line")
    got = read_all(r, b"an important line")
    printer.relay(STDOUT, b"after the jam\n")
    got += read_all(r, b"after the jam")
    printer.close()
    dropped = printer.dropped_total
    assert dropped > 0
    assert b"vllm-guard: an important line\n" in got
    assert f"{dropped} lines of vLLM's stdout were not shown here".encode() in got
    assert got.count(line) == 2000 - dropped


def test_a_stuck_stdout_does_not_hold_back_the_guards_own_lines() -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    printer = Printer(stdout_fd=out_w, stderr_fd=err_w, queue_bytes=1 << 20)
    for _ in range(5000):
        printer.relay(STDOUT, b"y" * 199 + b"\n")  # far more than the pipe holds; nobody reads
    printer.guard("vLLM is ready")
    assert read_all(err_r, b"vLLM is ready\n") == b"vllm-guard: vLLM is ready\n"
    read_all(out_r, b"never", timeout_s=0.2)  # unstick the writer so it can close
    printer.close()
    for fd in (out_r, out_w, err_r, err_w):
        os.close(fd)


def test_a_closed_sink_does_not_break_the_guard(pipe: tuple[int, int]) -> None:
    r, w = pipe
    os.close(r)
    printer = Printer(stdout_fd=w, stderr_fd=w)
    printer.relay(STDOUT, b"nobody reads this\n")
    printer.guard("nor this")
    assert printer.flush()
    printer.close()


def flood(printer: Printer) -> None:
    """The traceback flood before vLLM dies, into a pipe nobody reads: most of it is dropped."""
    for _ in range(3000):
        printer.relay(STDOUT, b"x" * 99 + b"\n")


def test_dropped_lines_are_announced_before_the_guards_next_line(pipe: tuple[int, int]) -> None:
    """B16: no relayed line fits after the flood, yet the note comes before the guard's line."""
    r, w = pipe
    printer = Printer(stdout_fd=w, stderr_fd=w, queue_bytes=4096)
    flood(printer)
    printer.guard("vLLM exited with status 1")
    got = read_all(r, b"vLLM exited with status 1\n")
    printer.close()
    assert printer.dropped_total > 0
    # The note counts what was dropped by the time it is written; on a loaded machine the writer
    # may still be dropping when close() counts the total, so the note's number may be smaller.
    note = re.search(rb"vllm-guard: (\d+) lines of vLLM's stdout were not shown here", got)
    assert note is not None and 0 < int(note.group(1)) <= printer.dropped_total
    assert note.start() < got.index(b"vllm-guard: vLLM exited with status 1\n")


def test_dropped_lines_are_announced_at_close(pipe: tuple[int, int]) -> None:
    r, w = pipe
    printer = Printer(stdout_fd=w, stderr_fd=w, queue_bytes=4096)
    flood(printer)
    # A note may come mid-flood too, when a relayed line fits again: read to a mark written after
    # close(), once every writer thread has finished.
    reader = threading.Thread(target=lambda: got.append(read_all(r, b"<end>", timeout_s=30)))
    got: list[bytes] = []
    reader.start()
    printer.close()
    os.write(w, b"<end>")
    reader.join()
    assert printer.dropped_total > 0
    # Each note counts what was dropped since the last one (printer.py): together, every line.
    notes = re.findall(rb"(\d+) lines of vLLM's stdout were not shown here", got[0])
    assert sum(int(n) for n in notes) == printer.dropped_total


def test_a_guard_line_starts_a_line_of_its_own_on_its_sink() -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    printer = Printer(stdout_fd=out_w, stderr_fd=err_w)
    printer.relay(STDOUT, b"vLLM's last words on stdout, no newline")
    printer.relay(STDERR, b"\rCapturing CUDA graphs (decode, FULL):  45%|####5     | 23/51\r")
    printer.guard("vLLM exited with status 1")
    printer.relay(STDERR, b"a whole line\n")
    printer.relay(STDERR, b"\r")  # a bar's first redraw, before its text
    printer.guard("relaunching")
    assert printer.flush()
    printer.close()
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        assert out.read() == b"vLLM's last words on stdout, no newline"  # stdout's line is its own
        assert err.read() == (
            b"\rCapturing CUDA graphs (decode, FULL):  45%|####5     | 23/51\r\n"
            b"vllm-guard: vLLM exited with status 1\n"
            b"a whole line\n"
            b"\rvllm-guard: relaunching\n"
        )
