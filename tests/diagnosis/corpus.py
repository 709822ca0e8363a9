"""The corpus of real vLLM failure logs in fixtures/, its split, and its score.

Every case is one log from one public thread (or one real run here) with the kind the thread
established. The corpus is split once, by a hash of the thread, into a development part and a
held-out third: the catalogue may be tuned on the first, never on the second, and both figures are
reported (a large gap means the catalogue fits the logs it was shown, not vLLM).

A case is decisive when its log alone can show the cause (collectors set `"decisive": false` when
only the thread's prose tells it); only decisive cases count in the figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus_split import held_out, thread

from vllm_guard import milestones
from vllm_guard.failures import PERMANENT_KINDS, Failure, FailureKind, classify

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# the split is shared with tests/preflight, and read here by the scripts and benchmarks
__all__ = [
    "FIXTURES",
    "Score",
    "answer",
    "decisive",
    "held_out",
    "lines_of",
    "load",
    "parts",
    "score",
    "thread",
]


def load() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((FIXTURES / "cases.json").read_text())
    return cases


def decisive(case: dict[str, Any]) -> bool:
    return bool(case.get("decisive", True))


def lines_of(case: dict[str, Any]) -> list[str]:
    path: Path = FIXTURES / str(case["file"])
    return path.read_bytes().decode("utf-8", errors="replace").splitlines()


def answer(case: dict[str, Any]) -> Failure:
    # The guard knows from /health whether vLLM was ready; the corpus records it per case.
    # ... and the last milestone the log shows, as diagnose and serve both read it.
    lines = lines_of(case)
    lines = lines[milestones.last_server_start(lines) :]  # as diagnose reads a journal
    return classify(
        lines,
        exit_status=case.get("exit_status"),
        ready=bool(case.get("ready_before_failure", False)),
        milestone=milestones.last(lines),
    )


@dataclass(frozen=True, slots=True)
class Score:
    """How one part of the corpus fares."""

    cases: int
    right: int
    # a permanent failure answered with a kind that restarts, and the other way round
    restarted_permanent: tuple[str, ...]
    stopped_recoverable: tuple[str, ...]
    wrong: tuple[tuple[str, str, str], ...]  # (file, expected, answered)

    @property
    def share(self) -> float:
        return self.right / self.cases if self.cases else 1.0

    def line(self, name: str) -> str:
        return (
            f"{name}: {self.right}/{self.cases} decisive logs get the right kind ({self.share:.1%}); "
            f"permanent answered as restarting: {len(self.restarted_permanent)}, "
            f"recoverable answered as permanent: {len(self.stopped_recoverable)}"
        )


def score(cases: Iterable[dict[str, Any]]) -> Score:
    right = 0
    total = 0
    restarted: list[str] = []
    stopped: list[str] = []
    wrong: list[tuple[str, str, str]] = []
    for case in cases:
        if not decisive(case):
            continue
        total += 1
        expected = FailureKind(case["kind"])
        got = answer(case).kind
        if got == expected:
            right += 1
        else:
            wrong.append((str(case["file"]), expected.value, got.value))
        if expected in PERMANENT_KINDS and got not in PERMANENT_KINDS:
            restarted.append(str(case["file"]))
        if expected not in PERMANENT_KINDS and got in PERMANENT_KINDS:
            stopped.append(str(case["file"]))
    return Score(total, right, tuple(restarted), tuple(stopped), tuple(wrong))


def parts(cases: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(development, held-out)."""
    return [c for c in cases if not held_out(c)], [c for c in cases if held_out(c)]
