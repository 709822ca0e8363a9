from __future__ import annotations

import os
from pathlib import Path

import pytest

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
    """Stands in for Printer.relay and .guard: records what would reach the terminal."""

    def __init__(self) -> None:
        self.relayed: list[tuple[int, bytes]] = []
        self.lines: list[str] = []

    def relay(self, stream: int, data: bytes) -> None:
        self.relayed.append((stream, data))

    def guard(self, message: str, *, level: str = "info") -> None:
        self.lines.append(message)


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
    written = TAIL_LINES + 1000
    for i in range(written):
        out.feed(STDOUT if i % 2 else STDERR, f"line {i}\n".encode())
    out.close()
    tail = out.tail()
    assert len(tail) == TAIL_LINES
    assert tail[-1] == f"line {written - 1}"
    assert tail[0] == f"line {written - TAIL_LINES}"


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


def test_a_bar_redrawn_with_cr_is_relayed_as_it_moves_and_its_last_state_is_the_tail(tmp_path: Path) -> None:
    """B2: tqdm on a pipe writes `\\r<state>` per redraw and a `\\n` only when the bar closes."""
    out, printer = make(tmp_path)
    out.feed(STDERR, b"INFO Starting to load model big/model...\n")
    states = [
        f"Capturing CUDA graphs (decode, FULL): {i:3d}%|#         | {i}/100".encode() for i in range(101)
    ]
    for state in states:
        out.feed(STDERR, b"\r" + state)
    relayed = b"".join(d for _, d in printer.relayed)
    # each state goes on when the next redraw ends it; the last waits for its end
    assert (
        relayed
        == b"INFO Starting to load model big/model...\n" + b"".join(b"\r" + s for s in states[:-1]) + b"\r"
    )
    assert out.progress == 1 + 100
    out.feed(STDERR, b"\n")
    out.close()
    stream = b"INFO Starting to load model big/model...\n" + b"".join(b"\r" + s for s in states) + b"\n"
    assert b"".join(d for _, d in printer.relayed) == stream
    assert (tmp_path / "a.log").read_bytes() == stream
    assert out.tail() == ["INFO Starting to load model big/model...", states[-1].decode()]


def test_a_bar_that_never_ends_its_line_keeps_a_small_tail(tmp_path: Path) -> None:
    out, _ = make(tmp_path, max_bytes=64 << 20)
    for i in range(20000):  # hours of redraws: one line, far longer than a tail line
        out.feed(STDERR, f"\rFetching 30 files: {i % 100:3d}%|#         | {i}/20000".encode())
    out.feed(STDOUT, b"INFO still loading\n")
    tail = out.tail()
    assert tail == ["INFO still loading", "Fetching 30 files:  98%|#         | 19998/20000"]
    out.close()
    assert out.tail() == ["INFO still loading", "Fetching 30 files:  99%|#         | 19999/20000"]


def test_a_record_cut_between_its_cr_and_lf_is_one_line_in_the_tail(tmp_path: Path) -> None:
    # vLLM ends each line of a multi-line record with \r\n; a read may end between the two
    out, printer = make(tmp_path)
    out.feed(STDOUT, b"(APIServer pid=1) INFO [a.py:1] line one\r")
    out.feed(STDOUT, b"\n(APIServer pid=1) INFO [a.py:1] line two\r\n")
    out.close()
    assert out.tail() == [
        "(APIServer pid=1) INFO [a.py:1] line one",
        "(APIServer pid=1) INFO [a.py:1] line two",
    ]
    assert b"".join(d for _, d in printer.relayed).count(b"\r\n") == 2


TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"


def test_a_secret_straddling_the_long_line_cut_is_still_masked(tmp_path: Path) -> None:
    """B11: compact JSON has no whitespace to cut a too-long line at (the review's repro)."""
    for secrets in ((TOKEN,), ()):  # the launch's own token, and any token by its shape
        out, printer = make(tmp_path, max_bytes=64 << 20, secrets=secrets)
        read = (
            b'{"prompt":"'
            + b"x" * (MAX_LINE_BYTES - 31)
            + b'","hf_token":"'
            + TOKEN.encode()
            + b'"'
            + b"y" * 235
        )
        out.feed(STDOUT, read)
        out.feed(STDOUT, b'"}\n')
        out.close()
        relayed = b"".join(d for _, d in printer.relayed)
        assert TOKEN.encode() not in relayed
        assert TOKEN.encode()[:20] not in relayed and TOKEN.encode()[-20:] not in relayed
        assert TOKEN.encode() not in (tmp_path / "a.log").read_bytes()
        assert relayed.endswith(
            b'"hf_token":"' + (b"hf_***" if not secrets else b"***") + b'"' + b"y" * 235 + b'"}\n'
        )


def test_no_secret_is_split_wherever_the_long_line_cut_falls(tmp_path: Path) -> None:
    secret = "sk-Api.Key_0123456789"  # an --api-key value: any bytes a token may hold
    for shift in range(-60, 61, 3):
        out, printer = make(tmp_path, max_bytes=64 << 20, secrets=(secret,))
        head = b"x" * (MAX_LINE_BYTES - 256 + shift)
        out.feed(
            STDOUT, head + b"Authorization: Bearer " + TOKEN.encode() + b"," + secret.encode() + b"z" * 300
        )
        out.feed(STDOUT, b"\n")
        out.close()
        relayed = b"".join(d for _, d in printer.relayed)
        assert len(printer.relayed) >= 2, shift  # it was cut
        for text in (TOKEN, TOKEN[3:], secret):
            assert text.encode() not in relayed, (shift, text)
        assert b"Authorization: Bearer ***,***" in relayed


def test_a_log_file_that_cannot_be_written_is_told_once_and_the_relay_goes_on(tmp_path: Path) -> None:
    full = Path("/dev/full")  # every write fails with ENOSPC, as on a full disk
    if not full.exists():
        pytest.skip("no /dev/full here")
    printer = RecordingPrinter()
    out = AttemptOutput(printer, Redactor(), CappedLog(full, 1 << 20))  # type: ignore[arg-type]
    for line in (b"first\n", b"second\n", b"third\n"):
        out.feed(STDOUT, line)
    out.close()
    assert b"".join(d for _, d in printer.relayed) == b"first\nsecond\nthird\n"
    assert len(printer.lines) == 1
    assert "/dev/full stopped short: [Errno 28] No space left on device" in printer.lines[0]
