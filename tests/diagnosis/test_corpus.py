"""classify() and `diagnose --json` over the corpus of real vLLM logs in fixtures/ (corpus.py).

Every fixture is a case with its expected kind (its folder) and source (cases.json). Each log of the
development part is a test; a case the catalogue cannot get right stays as a known failure with the
reason, never deleted. The held-out third is one figure, never a test per log: it is not tuned on.
"""

from __future__ import annotations

import json
from typing import Any

import corpus
import pytest

from vllm_guard.commands.diagnose import run as diagnose
from vllm_guard.failures import FailureKind

CASES = corpus.load()
DEVELOPMENT, HELD_OUT = corpus.parts(CASES)
# The bar (12) is 0.95 on the held-out third and 0.97 on the development part, with no
# permanence mistaken; these floors are what the catalogue reaches now (bench/RESULTS.md), so a
# change that loses ground fails here. Raise them as the catalogue gains; never lower them for a
# change of the catalogue. (2026-12-06: 41 newly collected logs, never tuned on, scored 14/17 and
# 7/10 when they joined, which took the held-out third from 77/85 to 84/95: the floor follows the
# larger corpus, and the issue note reports both figures. Later that day 58 more scored 23/30 and
# 8/13 as they joined, the held-out third going from 86/95 to 94/108; then 34 more scored 16/19 and
# 7/8, the held-out third 101/116; then 28 more, on features and new hardware, 7/20 and 0/4; then
# 25 more, on model families, quantization and wrapping platforms, 4/10 and 3/6; then 26 more, on
# serving-time deaths, startup memory and other accelerators, 6/12 and 3/8; then 17 more, on
# getting the model and Kubernetes, 8/9 and 3/5; then 18 more, on hangs, deaths and recent
# EngineCore failures, 7/13 and 3/3; then 7 more, on the offline LLM class and home GPUs, 3/6 and 0/1;
# then 19 more, 6/9 and 1/4; then 16 more, 5/10 and 3/6; then 13 more, on other accelerators and
# the projects that wrap vLLM, 4/8 and 1/1. 2026-12-07, issue 16: a group's failures got kinds of
# their own (collective_timeout, peer_unreachable, ray_actor_died) from torch's, NCCL's and Ray's
# words, 19 logs moving to them with both figures unchanged; then 29 more group logs joined (one a
# real two-node run here), their development part read while the phrases were written (19/19
# decisive), their held-out part not (5/8), the held-out third going from 128/154 to 133/162.)
HELD_OUT_FLOOR = 0.82
DEVELOPMENT_FLOOR = 0.92
# (permanent answered as restarting, recoverable answered as permanent), at most
HELD_OUT_PERMANENCE_MISTAKES = (15, 0)
DEVELOPMENT_PERMANENCE_MISTAKES = (12, 0)

# file → why the catalogue does not name it (yet).
KNOWN_FAILURES: dict[str, str] = {
    "unsupported_dtype_or_quant/cpu-fail-e3-quantization-fp8-cpu.log": (
        "fp8 on the CPU build dies in a kernel call (`static_scaled_fp8_quant() expected at most 0 "
        "argument(s)`), no capability wording: a phrase for it would fit this one log only"
    ),
    "oom_runtime/cg-kvcached-191-available-size-less-than-need-engine-fatal.log": (
        "the shortage is worded by the kvcached plugin, not by vLLM or torch"
    ),
    "model_not_found/cp-vllm-2247-docker-bare-model-name-not-a-path.log": (
        "transformers' 'We couldn't connect to ... not the path to a directory' says both: no network "
        "and no such folder; real-cpu fail_c2/c4 show the same words for an unreachable Hub"
    ),
    "broken_install/n4-odysseus-191-kernels-transformers-mismatch.log": (
        "the triager shortened the traceback's frames (no 'File \"', partial paths): the import "
        "under way is no longer in Python's form"
    ),
    "broken_install/n4-vllm-24576-rocm-no-amdsmi-unspecified-platform.log": (
        "ends at vLLM's INFO that no platform was detected; its DEBUG reasons name both a missing "
        "amdsmi (the install) and no NVML (expected on ROCm), and no error follows"
    ),
    "broken_install/n5-vllm-17455-inductor-gcc-cuda-utils-failed.log": (
        "triton's build of its launcher failed (gcc's CalledProcessError under inductor), and the "
        "excerpt holds no compiler or linker output to say why"
    ),
    "unsupported_dtype_or_quant/n5-vllm-13398-v100-v1-fa-version-assert.log": (
        "a bare AssertionError of V1's FlashAttention version check on a V100, from a development "
        "build between the mined releases: no words to name it by"
    ),
    "invalid_args/n5-vllm-17210-mistral-tokenizer-mode-on-gguf-repo.log": (
        "vLLM's 'Make sure that a Mistral tokenizer is present' is model_not_found in the catalogue "
        "(the files --tokenizer-mode mistral needs are not there); the thread calls the flag wrong: "
        "both permanent"
    ),
    "broken_install/n6-openrlhf-922-llmengine-no-model-executor.log": (
        "a wrapper calling vLLM's own collective_rpc, which meets the missing attribute in a vllm/ "
        "frame: from inside vLLM the same words are any bug of vLLM's"
    ),
    "model_not_found/n6-kserve-3456-hfserver-model-dir-not-found.log": (
        "huggingface_hub's LocalEntryNotFoundError says offline or unreachable as well as missing; "
        "the catalogue reads it as the Hub's (hub_unreachable), the thread as a missing folder"
    ),
    "cuda_driver/n7-vllm-51964-mla-gluon-requires-gfx950-on-mi308x.log": (
        "AITER's refusal of a kernel on an older Instinct GPU, deep in its own code; AITER is not on "
        "PyPI to mine"
    ),
    "invalid_args/n7-tpu-inference-2645-granite-moe-hybrid-not-registered.log": (
        "tpu-inference's own registry words (UnsupportedArchitectureError), a plugin not mined"
    ),
    "invalid_args/n7-ipex-llm-13003-glm-edge-skip-bias-add-unsupported.log": (
        "ipex-llm's own usage banner, a fork of vLLM not mined"
    ),
    "oom_weights/n7-vllm-12443-neuron-nrt-tensor-allocate-failure.log": (
        "the Neuron runtime's allocation failure (nrt_tensor_allocate), from a library not on PyPI's "
        "Linux wheels to mine; the thread has no answer"
    ),
    "worker_died/n9-vllm-14111-rocm-ray-placement-group-never-scheduled.log": (
        "a start waiting on Ray for GPUs it never gets, with no end in the excerpt: unknown here, "
        "worker_died in the thread (both restart); vLLM's WARNING of it is no refusal (errors_only)"
    ),
    "invalid_args/na-huggingface-trl-3932-spawn-reimports-main-llm.log": (
        "the spawned worker importing the script again, cut before multiprocessing's bootstrapping "
        "RuntimeError: only the frames of LLM(...) under <module> are left"
    ),
    "invalid_args/nb-vllm-3781-mistral-prefix-caching-sliding-window.log": (
        "vLLM 0.4's block manager refusing sliding window with prefix caching, its exception line "
        "alone: the raise rule needs the vllm/ frame, and the refusal table holds config files only"
    ),
    "invalid_args/nc-minicpm-v-cookbook-18-minicpmv-4-5-unsupported-vllm-0101.log": (
        "a model file's ValueError (MiniCPMV's versions), its line alone: the raise rule needs the "
        "vllm/ frame; a table of such sentences from all of vLLM's files, tried on 2026-12-06, "
        "called a recoverable held-out failure permanent and was left out"
    ),
    "unsupported_dtype_or_quant/nd-tpu-v6e-compressed-tensors-fp8-block-unsupported.log": (
        "tpu-inference's refusal of a quantization method: its frame is broken over two lines in "
        "the paste (the raise rule reads Python's frame line), and the thread calls it the "
        "quantization's where the raise rule would say invalid_args"
    ),
    "broken_install/cp-vllm-9624-source-tree-no-vllm-c-llama-arch-not-supported.log": (
        "vLLM's WARNING that vllm._C is not there at all is also in healthy runs on platforms built "
        "without it (TPU, Neuron in 0.6), so it is no cause; the excerpt ends before the failure"
    ),
}


def params() -> list[Any]:
    out = []
    for case in DEVELOPMENT:
        marks = []
        if case["file"] in KNOWN_FAILURES:
            marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[case["file"]], strict=True))
        elif not corpus.decisive(case):
            continue
        out.append(pytest.param(case, id=case["file"], marks=marks))
    return out


@pytest.mark.parametrize("case", params())
def test_the_kind_and_numbers_of_each_development_log(case: dict[str, Any]) -> None:
    failure = corpus.answer(case)
    assert failure.kind == FailureKind(case["kind"]), failure.evidence
    for key, value in case.get("numbers", {}).items():
        assert failure.numbers.get(key) == value, key


def test_the_development_part_holds_its_ground() -> None:
    score = corpus.score(DEVELOPMENT)
    assert score.share >= DEVELOPMENT_FLOOR, score.line("development")
    mistakes = (len(score.restarted_permanent), len(score.stopped_recoverable))
    assert all(m <= most for m, most in zip(mistakes, DEVELOPMENT_PERMANENCE_MISTAKES, strict=True)), score


def test_the_held_out_third_holds_its_ground() -> None:
    # One figure, not a test per log: nobody reads a held-out log to make it pass. Only numbers
    # reach the assertions, since pytest prints what an assertion names, and a Score names logs.
    score = corpus.score(HELD_OUT)
    share, line = score.share, score.line("held-out")
    mistakes = (len(score.restarted_permanent), len(score.stopped_recoverable))
    del score
    assert share >= HELD_OUT_FLOOR, line
    assert all(m <= most for m, most in zip(mistakes, HELD_OUT_PERMANENCE_MISTAKES, strict=True)), line


def test_the_split_is_by_thread_and_about_a_third() -> None:
    assert corpus.thread("https://github.com/vllm-project/vllm/issues/16343") == "vllm-project/vllm#16343"
    assert corpus.thread("https://github.com/Vllm-Project/vllm/pull/16343#issuecomment-1") == (
        "vllm-project/vllm#16343"
    )
    assert corpus.thread("/work/shared/vllm/real-cpu/full/fail_b.log (run meta: x)") == (
        "/work/shared/vllm/real-cpu/full/fail_b.log"
    )
    share = len(HELD_OUT) / len(CASES)
    assert 0.2 < share < 0.45, share


@pytest.mark.parametrize("case", [pytest.param(c, id=c["file"]) for c in CASES])
def test_diagnose_json_reads_every_fixture(case: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert diagnose(["--json", str(corpus.FIXTURES / case["file"])]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"kind", "permanent", "evidence", "numbers", "advice"}
    assert isinstance(report["evidence"], str)
    assert report["kind"] in {k.value for k in FailureKind}


def test_the_corpus_covers_every_kind_that_text_can_show() -> None:
    covered = {case["kind"] for case in CASES}
    textual = {k.value for k in FailureKind} - {"hung", "follower_lost"}  # the guard's own findings
    assert textual - covered == set(), "kinds with no real example in the corpus"


@pytest.mark.parametrize("kind", sorted({c["kind"] for c in CASES}))
def test_diagnose_shows_evidence_numbers_and_the_next_step_for_every_kind(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = next(c for c in CASES if c["kind"] == kind and corpus.decisive(c))
    assert diagnose([str(corpus.FIXTURES / case["file"])]) == 0
    shown = dict(line.split(":", 1) for line in capsys.readouterr().out.splitlines() if ":" in line[:10])
    assert set(shown) >= {"kind", "evidence", "numbers", "advice"}
    assert shown["evidence"].strip() not in ("", "-"), case["file"]
