"""The corpus on the path `serve` takes: a log's bytes through the attempt's output (records cut at
`\\n` and `\\r`, masked, the tail kept), then classify() on that tail with the milestone the output
read, as the supervisor calls it. `diagnose` reads the file whole; the two must agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import corpus
import pytest

from vllm_guard.failures import Failure, classify
from vllm_guard.output import AttemptOutput, CappedLog
from vllm_guard.printer import STDERR
from vllm_guard.redact import Redactor

CASES = corpus.load()
DEVELOPMENT, HELD_OUT = corpus.parts(CASES)
CHUNK = 4096  # a pipe read's size: records are cut across reads


class _Quiet:
    """Stands in for the printer: the relay is not what is tested here."""

    def relay(self, stream: int, data: bytes) -> None:
        pass

    def guard(self, message: str, *, level: str = "info") -> None:
        pass


def _as_serve_sees_it(case: dict[str, Any], tmp_path: Path) -> Failure:
    data = (corpus.FIXTURES / str(case["file"])).read_bytes()
    out = AttemptOutput(_Quiet(), Redactor(), CappedLog(tmp_path / "attempt.log", 1 << 22))  # type: ignore[arg-type]
    for start in range(0, len(data), CHUNK):
        out.feed(STDERR, data[start : start + CHUNK])
    out.close()
    return classify(
        out.tail(),
        ready=bool(case.get("ready_before_failure")),
        milestone=out.milestone.name if out.milestone is not None else None,
    )


@pytest.mark.parametrize("case", [pytest.param(c, id=c["file"]) for c in DEVELOPMENT])
def test_serve_reads_each_development_log_as_diagnose_does(case: dict[str, Any], tmp_path: Path) -> None:
    assert _as_serve_sees_it(case, tmp_path).kind == corpus.answer(case).kind


def test_serve_reads_the_held_out_logs_as_diagnose_does(tmp_path: Path) -> None:
    # A count, not a test per log: the held-out logs stay unread.
    differ = sum(_as_serve_sees_it(c, tmp_path).kind != corpus.answer(c).kind for c in HELD_OUT)
    assert differ == 0, f"{differ} held-out logs are read otherwise on serve's path"
