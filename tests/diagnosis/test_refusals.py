"""The table of vLLM's configuration refusals (vllm_guard/refusals.py), generated from the mined
messages by scripts/make_refusals.py, and how classify() reads it."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from vllm_guard.failures import FailureKind, _refusals_in, classify
from vllm_guard.refusals import IMPORT_FAILURES, REFUSALS

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_refusals.py"


def _load_maker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_refusals", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


maker = _load_maker()


def test_the_module_is_what_the_script_writes_from_the_mined_messages() -> None:
    assert maker.main(["--check"]) == 0, "run scripts/make_refusals.py"


def test_pieces_are_cut_at_placeholders_and_sentence_ends() -> None:
    template = "max_num_batched_tokens ({}) is smaller than max_model_len ({}). Please increase max_num_batched_tokens or decrease max_model_len."
    assert maker.pieces(template) == [
        "is smaller than max_model_len",
        "please increase max_num_batched_tokens or decrease max_model_len",
    ]


def test_a_piece_another_message_also_says_is_left_out() -> None:
    rows = [
        (
            "vllm/config/model.py",
            "raise ValueError",
            "The checkpoint format {} cannot be served by this loader",
            ["0.30.0"],
        ),
        (
            "vllm/config/model.py",
            "raise ValueError",
            "Tensor parallel size must divide the number of heads",
            ["0.30.0"],
        ),
        (
            "vllm/worker/worker.py",
            "logger.error",
            "Tensor parallel size must divide the number of heads: {}",
            ["0.30.0"],
        ),
        (
            "vllm/model_executor/loader.py",
            "raise ValueError",
            "The quantized weights cannot be loaded twice",
            ["0.30.0"],
        ),
    ]
    table = maker.refusals(rows, ["0.30.0"])
    assert [piece for piece, _, _ in table] == ["cannot be served by this loader"]
    assert table[0][1:] == ("vllm/config/model.py", "0.30.0")


def test_an_assert_of_the_configuration_files_does_not_hide_a_refusal_and_elsewhere_it_does() -> None:
    refusal = (
        "vllm/config/parallel.py",
        "raise ValueError",
        "The pipeline cannot be split over {} stages",
        ["0.30.0"],
    )
    # vLLM asserts the same constraint in its configuration: a statement of it, not another use
    stated = ("vllm/config/parallel.py", "assert", "The pipeline cannot be split over {} stages", ["0.30.0"])
    assert [p for p, _, _ in maker.refusals([refusal, stated], ["0.30.0"])] == [
        "the pipeline cannot be split over"
    ]
    # ... but a worker asserting it is another message that says it
    worker = (
        "vllm/v1/worker/gpu_worker.py",
        "assert",
        "The pipeline cannot be split over {} stages",
        ["0.30.0"],
    )
    assert maker.refusals([refusal, worker], ["0.30.0"]) == []


@pytest.mark.parametrize(("piece", "files", "versions"), REFUSALS, ids=[row[0][:50] for row in REFUSALS])
def test_every_refusal_is_found_in_the_error_line_that_shows_it(
    piece: str, files: str, versions: str
) -> None:
    found = _refusals_in(f"valueerror: 17{piece}42 (see above)")
    assert piece in [signature.needle for signature in found]
    signature = next(s for s in found if s.needle == piece)
    assert signature.kind == FailureKind.INVALID_ARGS
    assert signature.source == f"{files}, vLLM {versions}"


def test_a_refusal_alone_is_an_invalid_argument() -> None:
    failure = classify(
        [
            "(APIServer pid=8) Traceback (most recent call last):",
            "(APIServer pid=8) max_num_scheduled_tokens is set to -1792, which does not allow any tokens to be scheduled",
        ],
        exit_status=1,
    )
    assert failure.kind == FailureKind.INVALID_ARGS
    assert "max_num_scheduled_tokens is set to -1792" in failure.evidence


def test_a_cause_the_catalogue_names_wins_over_the_table() -> None:
    failure = classify(
        [
            "ValueError: max_num_scheduled_tokens is set to -1792, which does not allow any tokens to be scheduled",
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB",
        ],
        exit_status=1,
    )
    assert failure.kind == FailureKind.OOM_WEIGHTS


def test_a_line_vllm_logs_to_report_is_not_a_refusal() -> None:
    line = "INFO 12-05 10:00:00 [vllm.py:1200] max_num_scheduled_tokens is set to 0, which does not allow any tokens to be scheduled"
    assert _refusals_in(line.lower()) == []
    assert _refusals_in(line.replace("INFO", "ERROR").lower()) != []
    assert classify([line], exit_status=1).kind == FailureKind.UNKNOWN


@pytest.mark.parametrize(
    ("piece", "files", "versions"), IMPORT_FAILURES, ids=[row[0][:50] for row in IMPORT_FAILURES]
)
def test_every_import_failure_is_a_broken_install_even_without_its_class(
    piece: str, files: str, versions: str
) -> None:
    # the V1 executor carries a worker's exception as its message alone
    found = _refusals_in(
        f"runtimeerror: worker failed with error '17{piece}42', please check the stack trace above"
    )
    assert FailureKind.BROKEN_INSTALL in {s.kind for s in found if s.needle == piece}


def test_import_failures_are_vllms_import_errors_alone() -> None:
    rows = [
        (
            "vllm/model_executor/models/foo.py",
            "raise ImportError",
            "The foo tokenizer requires the `bar` package",
            ["0.30.0"],
        ),
        (
            "vllm/model_executor/models/foo.py",
            "raise ValueError",
            "The foo model cannot run in eager mode here",
            ["0.30.0"],
        ),
    ]
    assert maker.import_failures(rows, ["0.30.0"]) == [
        ("the foo tokenizer requires the `bar` package", "vllm/model_executor/models/foo.py", "0.30.0")
    ]
