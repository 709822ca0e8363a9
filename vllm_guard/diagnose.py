"""`vllm-guard diagnose`: why a vLLM log ended, from a file or standard input.

vllm-guard diagnose [--json] [LOGFILE|-]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from collections.abc import Sequence
from typing import BinaryIO

from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.failures import ADVICE, Failure, classify

# A pasted log may be of any size; its end is where vLLM says why it stopped.
MAX_LINES = 200_000


def diagnose(argv: Sequence[str]) -> ExitCode:
    parser = argparse.ArgumentParser(
        prog="vllm-guard diagnose",
        description="Name why vLLM failed, from its log (stdout and stderr together).",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("logfile", nargs="?", default="-", help="the log; - or nothing: stdin")
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit as exc:
        return ExitCode.STOPPED if exc.code == 0 else ExitCode.USAGE
    failure = classify(_read(ns.logfile))
    print(json.dumps(as_json(failure), ensure_ascii=False) if ns.json else as_text(failure))
    return ExitCode.STOPPED


def as_json(failure: Failure) -> dict[str, object]:
    return {
        "kind": failure.kind.value,
        "permanent": failure.permanent,
        "evidence": failure.evidence,
        "numbers": failure.numbers,
        "advice": ADVICE[failure.kind],
    }


def as_text(failure: Failure) -> str:
    restart = (
        "permanent: no restart can fix it" if failure.permanent else "another flag set or a restart may help"
    )
    numbers = " ".join(f"{k}={v}" for k, v in failure.numbers.items()) or "-"
    return "\n".join(
        [
            f"kind:     {failure.kind.value} ({restart})",
            f"evidence: {failure.evidence or '-'}",
            f"numbers:  {numbers}",
            f"advice:   {ADVICE[failure.kind]}",
        ]
    )


def _read(path: str) -> list[str]:
    try:
        if path == "-":
            return _last_lines(sys.stdin.buffer)
        with open(path, "rb") as stream:
            return _last_lines(stream)
    except OSError as exc:
        raise GuardError(f"cannot read {path}: {exc.strerror}", ExitCode.USAGE) from None


def _last_lines(stream: BinaryIO) -> list[str]:
    # Bytes, then decoded leniently: a log cut mid-character or in another encoding still reads.
    tail: collections.deque[bytes] = collections.deque(stream, maxlen=MAX_LINES)
    return [raw.decode("utf-8", errors="replace").rstrip("\r\n") for raw in tail]
