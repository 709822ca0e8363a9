from __future__ import annotations

import os
from pathlib import Path

from vllm_guard.output import (
    HEAD_KEEP_BYTES,
    MAX_LINE_BYTES,
    TAIL_LINE_BYTES,
    TAIL_LINES,
    AttemptOutput,
    CappedLog,
)
from vllm_guard.printer import STDERR, STDOUT
from vllm_guard.redact import Redactor


class RecordingPrinter:
    """Stands in for Printer.relay: records what would reach the terminal."""

    def __init__(self) -> None:
        self.relayed: list[tuple[int, bytes]] = []

    def relay(self, stream: int, data: bytes) -> None:
        self.relayed.append((stream, data))


def make(
    tmp_path: Path, max_bytes: int = 1 << 20, secrets: tuple[str, ...] = ()
) -> tuple[AttemptOutput, RecordingPrinter]:
    printer = RecordingPrinter()
    out = AttemptOutput(printer, Redactor(secrets), CappedLog(tmp_path / "a.log", max_bytes))  # type: ignore[arg-type]
    return out, printer


def test_lines_are_passed_on_whole_and_in_order(tmp_path: Path) -> None:
    out, printer = make(tmp_path)
    out.feed(STDOUT, b"INFO one\nINFO tw")
    out.feed(STDOUT, b"o\n")
    out.feed(STDERR, b"Traceback\n")
    out.close()
    assert b"".join(d for _, d in printer.relayed) == b"INFO one\nINFO two\nTraceback\n"
    assert out.tail() == ["INFO one", "INFO two", "Traceback"]
    assert (tmp_path / "a.log").read_bytes() == b"INFO one\nINFO two\nTraceback\n"


def test_a_secret_split_across_reads_is_still_masked(tmp_path: Path) -> None:
    out, printer = make(tmp_path, secrets=("supersecret",))
    out.feed(STDOUT, b"key=super")
    out.feed(STDOUT, b"secret done\n")
    out.close()
    relayed = b"".join(d for _, d in printer.relayed)
    assert b"supersecret" not in relayed
    assert b"supersecret" not in (tmp_path / "a.log").read_bytes()


def test_a_line_without_newline_at_exit_is_kept(tmp_path: Path) -> None:
    out, printer = make(tmp_path)
    out.feed(STDERR, b"last words")
    out.close()
    assert out.tail() == ["last words"]
    assert printer.relayed == [(STDERR, b"last words")]


def test_a_huge_line_goes_through_in_pieces_and_the_tail_stays_small(tmp_path: Path) -> None:
    out, printer = make(tmp_path, max_bytes=16 << 20)
    huge = b"x" * (MAX_LINE_BYTES + 5000) + b"\n"
    for i in range(0, len(huge), 65536):
        out.feed(STDOUT, huge[i : i + 65536])
    out.feed(STDOUT, b"after\n")
    out.close()
    assert b"".join(d for _, d in printer.relayed) == huge + b"after\n"
    tail = out.tail()
    assert tail[-1] == "after"
    assert all(len(line) <= TAIL_LINE_BYTES for line in tail)


def test_invalid_utf8_is_relayed_unchanged_and_decoded_for_the_tail(tmp_path: Path) -> None:
    out, printer = make(tmp_path)
    out.feed(STDOUT, b"bad \xff\xfe bytes\n")
    out.close()
    assert printer.relayed[0][1] == b"bad \xff\xfe bytes\n"
    assert out.tail() == ["bad \ufffd\ufffd bytes"]


def test_the_tail_keeps_the_last_lines_of_both_streams(tmp_path: Path) -> None:
    out, _ = make(tmp_path, max_bytes=64 << 20)
    for i in range(5000):
        out.feed(STDOUT if i % 2 else STDERR, f"line {i}\n".encode())
    out.close()
    tail = out.tail()
    assert len(tail) == TAIL_LINES
    assert tail[-1] == "line 4999"
    assert tail[0] == f"line {5000 - TAIL_LINES}"


def test_the_log_file_never_outgrows_its_cap(tmp_path: Path) -> None:
    out, _ = make(tmp_path, max_bytes=64 * 1024)
    for i in range(20000):
        out.feed(STDOUT, f"line {i:06d}\n".encode())
    out.close()
    current = tmp_path / "a.log"
    older = tmp_path / "a.log.1"
    assert current.stat().st_size + older.stat().st_size <= 64 * 1024
    assert current.read_bytes().endswith(b"line 019999\n")
    assert os.stat(current).st_mode & 0o777 == 0o600


def test_the_head_keeps_the_start_of_the_output_masked_and_stops_growing(tmp_path: Path) -> None:
    out, _ = make(tmp_path, secrets=("hf_secretsecret",))
    out.feed(STDOUT, b"banner version 0.32.0 token hf_secretsecret\n")
    for _ in range(2000):
        out.feed(STDERR, b"x" * 99 + b"\n")
    head = out.head()
    assert head.startswith("banner version 0.32.0 token ")
    assert "hf_secretsecret" not in head
    assert len(head) == HEAD_KEEP_BYTES
