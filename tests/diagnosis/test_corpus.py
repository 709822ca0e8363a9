"""classify() and `diagnose --json` over the corpus of real vLLM logs in fixtures/.

Every fixture is a case with its expected kind (its folder) and source (cases.json). A case the
catalogue cannot get right stays here as a known failure with the reason, never deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vllm_guard.commands.diagnose import run as diagnose
from vllm_guard.failures import FailureKind, classify

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CASES: list[dict[str, Any]] = json.loads((FIXTURES / "cases.json").read_text())

# file → why the catalogue does not name it (yet).
KNOWN_FAILURES: dict[str, str] = {
    "oom_kv_cache/rp-v0-profile-run-oom-mm-limit-qwen25vl72b.log": (
        "the excerpt holds the OOM line and the caller's frames only; nothing in it shows the "
        "profiling phase (the thread says so), so the OOM reads as one while loading weights"
    ),
    "unsupported_dtype_or_quant/cpu-fail-e3-quantization-fp8-cpu.log": (
        "fp8 on the CPU build dies in a kernel call (`static_scaled_fp8_quant() expected at most 0 "
        "argument(s)`), no capability wording: a phrase for it would fit this one log only"
    ),
}


def lines_of(case: dict[str, Any]) -> list[str]:
    path: Path = FIXTURES / str(case["file"])
    return path.read_bytes().decode("utf-8", errors="replace").splitlines()


def params() -> list[Any]:
    out = []
    for case in CASES:
        marks = []
        if case["file"] in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[case["file"]], strict=True))
        out.append(pytest.param(case, id=case["file"], marks=marks))
    return out


@pytest.mark.parametrize("case", params())
def test_the_kind_and_numbers_of_each_real_log(case: dict[str, Any]) -> None:
    # The guard knows from /health whether vLLM was ready; the corpus records it per case.
    failure = classify(
        lines_of(case), exit_status=case.get("exit_status"), ready=case.get("ready_before_failure", False)
    )
    assert failure.kind == FailureKind(case["kind"]), failure.evidence
    for key, value in case.get("numbers", {}).items():
        assert failure.numbers.get(key) == value, key


@pytest.mark.parametrize("case", [pytest.param(c, id=c["file"]) for c in CASES])
def test_diagnose_json_reads_every_fixture(case: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert diagnose(["--json", str(FIXTURES / case["file"])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"kind", "permanent", "evidence", "numbers", "advice"}
    assert isinstance(report["evidence"], str)
    assert report["kind"] in {k.value for k in FailureKind}


def test_the_corpus_covers_every_kind_that_text_can_show() -> None:
    covered = {case["kind"] for case in CASES}
    textual = {k.value for k in FailureKind} - {"hung"}
    assert textual - covered == set(), "kinds with no real example in the corpus"
