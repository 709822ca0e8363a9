"""Preflight verdicts from facts: published model configs, real GPU readings, no processes.

The H100's numbers are the real readings of ../shared/vllm/gpu/h100-probe.json (NVML: total
85520809984, free 85017493504, capability 9.0)."""

from __future__ import annotations

import dataclasses

from model_configs import LLAMA_31_8B, LLAMA_31_70B

from vllm_guard import memory, vllm_args
from vllm_guard.facts import GpuFacts, GpuInfo, GpuProcess
from vllm_guard.preflight import Allowed, Machine, ModelFacts, Verdict, check, kv_estimate_margin

GIB = 1 << 30
H100 = GpuInfo(0, "GPU-9e3b21ec", "NVIDIA H100 80GB HBM3", 85520809984, 85017493504, 503316480, 0, (9, 0), ())
L4 = GpuInfo(0, None, "NVIDIA L4", 24 * GIB, 24 * GIB, 0, 0, (8, 9), ())
T4 = GpuInfo(0, None, "Tesla T4", 16 * GIB, 16 * GIB, 0, 0, (7, 5), ())
V100 = GpuInfo(0, None, "Tesla V100-SXM2-32GB", 32 * GIB, 32 * GIB, 0, 0, (7, 0), ())
LLAMA_8B = ModelFacts("meta-llama/Llama-3.1-8B-Instruct", LLAMA_31_8B, cached=True)
LLAMA_70B = ModelFacts("meta-llama/Llama-3.1-70B-Instruct", LLAMA_31_70B, cached=True)


def on(*devices: GpuInfo, **host: object) -> Machine:
    return Machine(GpuFacts(devices, "580.159.04", "13.0", None, "test"), token=True, **host)  # type: ignore[arg-type]


def finding(verdict: Verdict, name: str) -> tuple[str, str]:
    found = [f for f in verdict.findings if f.check == name]
    assert len(found) == 1, verdict.findings
    return found[0].status, found[0].message


def test_a_model_that_fits_starts_with_the_users_flags_and_reports_its_memory() -> None:
    verdict = check(LLAMA_8B, ("--max-model-len", "8192"), on(H100))
    assert verdict.ok and verdict.start_argv == ("--max-model-len", "8192")
    report = verdict.as_json()
    model = report["model"]
    assert isinstance(model, dict)
    assert model["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128 * 2  # layers x KV heads x head dim x bf16
    assert model["weights_bytes"] == 2 * 8_030_261_248  # bf16, parameters counted in test_memory
    assert {f.status for f in verdict.findings} == {"ok"}
    assert len(report["findings"]) == len(verdict.findings)  # type: ignore[arg-type]


def test_the_budget_is_the_utilization_of_the_total_cuda_reports() -> None:
    # vLLM multiplies --gpu-memory-utilization by torch.cuda.mem_get_info()'s total: on the H100
    # probe 85017493504 bytes (torch's OOM there: "a total capacity of 79.18 GiB"), NVML's total
    # 85520809984 less the driver's 480 MiB reservation
    assert H100.cuda_total_bytes == 85017493504
    verdict = check(LLAMA_8B, ("--max-model-len", "8192", "--gpu-memory-utilization", "0.9"), on(H100))
    numbers = next(f.numbers for f in verdict.findings if f.check == "weights")
    assert numbers["budget_bytes"] == int(0.9 * 85017493504)
    free = next(f.numbers for f in verdict.findings if f.check == "free_memory")
    assert free["total_bytes"] == 85017493504


def test_memory_held_by_others_fits_the_utilization_and_names_them() -> None:
    holder = GpuProcess(4242, 20 * GIB, "alice", "python train.py")
    busy = dataclasses.replace(H100, free_bytes=H100.free_bytes - 20 * GIB, processes=(holder,))
    verdict = check(LLAMA_8B, ("--max-model-len", "8192"), on(busy))
    status, message = finding(verdict, "free_memory")
    assert status == "adjusted" and "pid 4242 (python) holds 20.00 GiB" in message
    # (free / total - 0.02), rounded down to 0.01, as the insufficient_free_memory ladder fits it
    fitted = int(((85017493504 - 20 * GIB) / H100.cuda_total_bytes - 0.02) * 100) / 100
    assert vllm_args.get(verdict.start_argv, "--gpu-memory-utilization") == f"{fitted:.2f}"
    warned = check(LLAMA_8B, ("--max-model-len", "8192"), on(busy), allowed=Allowed(mode="warn"))
    assert finding(warned, "free_memory")[0] == "warn" and warned.start_argv == ("--max-model-len", "8192")


def test_the_full_context_that_does_not_fit_is_fitted_to_a_multiple_of_the_block_size() -> None:
    verdict = check(LLAMA_8B, (), on(L4))  # 131072 tokens need 16 GiB of KV cache on a 24 GiB card
    status, _ = finding(verdict, "kv_cache")
    assert status == "adjusted" and verdict.ok
    length = int(vllm_args.get(verdict.start_argv, "--max-model-len") or 0)
    assert 16 <= length < 131072 and length % 16 == 0
    est = memory.estimate(LLAMA_31_8B)
    # what was fitted fits the budget preflight computed, and one block more would not
    numbers = next(f.numbers for f in verdict.findings if f.check == "kv_cache")
    # (less the margin an estimated budget keeps for the estimate's error)
    budget = int(int(numbers["kv_budget_bytes"]) * (1 - kv_estimate_margin(1)))
    assert memory.kv_bytes(est, length + 16) <= budget < memory.kv_bytes(est, length + 32)
    pinned = check(LLAMA_8B, (), on(L4), allowed=Allowed(pinned=frozenset({"--max-model-len"})))
    assert not pinned.ok and finding(pinned, "kv_cache")[0] == "fail"


def test_weights_too_big_go_fp8_where_the_gpu_has_it_and_the_policy_allows() -> None:
    big = dataclasses.replace(L4, total_bytes=16 * GIB, free_bytes=16 * GIB)
    verdict = check(LLAMA_8B, ("--max-model-len", "4096"), on(big), vllm_version="0.32.0")
    assert finding(verdict, "weights")[0] == "adjusted"
    assert vllm_args.get(verdict.start_argv, "--quantization") == "fp8_per_tensor"  # 0.31+ spelling
    older = check(LLAMA_8B, ("--max-model-len", "4096"), on(big), vllm_version="0.19.1")
    assert vllm_args.get(older.start_argv, "--quantization") == "fp8"
    refused = check(
        LLAMA_8B, ("--max-model-len", "4096"), on(big), allowed=Allowed(fp8_weights=lambda: False)
    )
    assert not refused.ok and finding(refused, "weights")[0] == "fail"
    # a V100 (7.0) lacks fp8 even as weight-only Marlin (7.5+): no fp8, no start
    old_gpu = dataclasses.replace(V100, total_bytes=16 * GIB, free_bytes=16 * GIB)
    assert not check(LLAMA_8B, ("--max-model-len", "4096"), on(old_gpu)).ok


def test_70b_on_one_l4_cannot_start_and_says_with_what_numbers() -> None:
    verdict = check(LLAMA_70B, ("--max-model-len", "8192"), on(L4))
    assert not verdict.ok
    status, message = finding(verdict, "weights")
    assert status == "fail" and "GiB of weights per GPU do not fit" in message


def test_tensor_parallelism_needs_that_many_gpus_and_a_real_shm() -> None:
    verdict = check(LLAMA_70B, ("--tensor-parallel-size", "2"), on(H100))
    assert not verdict.ok and finding(verdict, "gpus")[0] == "fail"
    docker = check(LLAMA_8B, ("-tp", "2", "--max-model-len", "8192"), on(H100, H100, shm_bytes=64 << 20))
    status, message = finding(docker, "shm")
    assert status == "fail" and "64 MiB" in message
    alone = check(LLAMA_8B, ("--max-model-len", "8192"), on(H100, shm_bytes=64 << 20))
    assert finding(alone, "shm")[0] == "ok"  # one GPU needs no shared memory to speak of


def test_a_taken_port_fails_naming_the_holder() -> None:
    verdict = check(LLAMA_8B, (), on(H100, port="8000", port_holder="pid 77 (python -m http.server)"))
    status, message = finding(verdict, "port")
    assert not verdict.ok and status == "fail" and "pid 77" in message


def test_no_gpu_is_a_warning_and_leaves_the_memory_unjudged_and_the_model_still_reported() -> None:
    # one verdict for preflight and serve: vLLM may be built for another accelerator
    nothing = Machine(
        GpuFacts((), None, None, "no NVIDIA driver (nvidia-ml-py: NVML Shared Library Not Found)", "nvml")
    )
    verdict = check(LLAMA_8B, (), nothing)
    status, message = finding(verdict, "gpu")
    assert verdict.ok and status == "warn" and "NVML Shared Library Not Found" in message
    assert finding(verdict, "model")[0] == "ok" and verdict.estimate is not None
    assert (
        finding(verdict, "memory") == ("unknown", "not judged: no GPU to judge it on") and not verdict.judged
    )


def test_an_unknown_model_and_a_missing_token_are_warnings_not_guesses() -> None:
    unknown = ModelFacts("org/not-downloaded", None)
    verdict = check(
        unknown, (), Machine(GpuFacts((H100,), None, None, None, "test"), disk_free_bytes=GIB, disk_dir="/c")
    )
    assert verdict.ok and verdict.estimate is None
    assert finding(verdict, "model")[0] == "warn" and finding(verdict, "token")[0] == "warn"


def test_values_from_the_config_file_are_what_preflight_judges() -> None:
    verdict = check(LLAMA_8B, ("--config", "c.yaml"), on(L4), config={"max_model_len": 4096})
    assert finding(verdict, "kv_cache")[0] == "ok" and verdict.start_argv == ("--config", "c.yaml")


def test_bf16_on_a_gpu_without_it_starts_in_half() -> None:
    verdict = check(LLAMA_8B, ("--dtype", "bfloat16", "--max-model-len", "4096"), on(T4))
    assert finding(verdict, "dtype")[0] == "adjusted"
    assert vllm_args.get(verdict.start_argv, "--dtype") == "half"
    assert "dtype" not in {f.check for f in check(LLAMA_8B, ("--dtype", "bfloat16"), on(H100)).findings}


def test_a_length_past_the_models_maximum_is_brought_back_to_it() -> None:
    verdict = check(LLAMA_8B, ("--max-model-len", "200000"), on(H100))
    assert finding(verdict, "model_limit")[0] == "adjusted"
    assert vllm_args.get(verdict.start_argv, "--max-model-len") == "131072"  # the model's own maximum
    allowed = check(LLAMA_8B, ("--max-model-len", "200000"), on(H100, long_max_model_len=True))
    assert "model_limit" not in {f.check for f in allowed.findings}


def test_a_vllm_that_fits_itself_is_asked_to_where_that_cannot_exceed_what_was_asked() -> None:
    full = check(LLAMA_8B, (), on(L4), vllm_version="0.32.0")  # the model's maximum, implicitly
    assert vllm_args.get(full.start_argv, "--max-model-len") == "auto"
    explicit = check(LLAMA_8B, ("--max-model-len", "131072"), on(L4), vllm_version="0.32.0")
    assert vllm_args.get(explicit.start_argv, "--max-model-len") == "auto"
    # below the model's maximum, auto could pick more than the user asked for: the estimate then
    shorter = check(LLAMA_8B, ("--max-model-len", "100000"), on(L4), vllm_version="0.32.0")
    assert (vllm_args.get(shorter.start_argv, "--max-model-len") or "").isdigit()
    old = check(LLAMA_8B, (), on(L4), vllm_version="0.13.0")  # no auto before 0.14
    assert (vllm_args.get(old.start_argv, "--max-model-len") or "").isdigit()


def test_a_profiling_batch_of_a_whole_sequence_leaves_less_for_the_kv_cache() -> None:
    # vLLM 0.20's defaults: with chunked prefill off the profiling batch is max_model_len tokens
    # long (131072 here, not 8192), and --performance-mode throughput doubles the batch
    def budget(*extra: str) -> int:
        verdict = check(LLAMA_8B, ("--max-model-len", "131072", *extra), on(H100), vllm_version="0.20.0")
        return int(next(f.numbers for f in verdict.findings if f.check == "kv_cache")["kv_budget_bytes"])

    chunked = budget()
    assert (
        budget("--no-enable-chunked-prefill")
        == budget("--enable-chunked-prefill", "false")
        < chunked - 8 * GIB
    )
    assert budget("--performance-mode", "throughput") < chunked


# vLLM's CPU build on this machine's memory node (gpu/cpu_node.py): 23.54 GiB, 23.27 available
CPU = GpuInfo(0, None, "CPU", 25276194816, 24984752128, 0, 291442688, None, (), cpu_node=0)


def test_vllms_cpu_build_is_planned_on_its_memory_node() -> None:
    verdict = check(LLAMA_8B, ("--max-model-len", "8192", "--gpu-memory-utilization", "0.9"), on(CPU))
    assert verdict.ok and finding(verdict, "gpus")[0] == "ok"
    assert finding(verdict, "free_memory") == ("ok", "23.27 GiB available, 0.9 x total fits")
    kv = next(f for f in verdict.findings if f.check == "kv_cache")
    # no CUDA graphs: the weights, what the process holds after warm-up, and the profiling peak
    rest = int(0.9 * CPU.total_bytes) - 2 * 8_030_261_248 - 640 * (1 << 20)
    assert rest - 2 * GIB < int(kv.numbers["kv_budget_bytes"]) < rest
    # weights past the budget: no fp8 to fall back to on the CPU build
    small = check(LLAMA_8B, ("--max-model-len", "8192", "--gpu-memory-utilization", "0.5"), on(CPU))
    assert finding(small, "weights")[0] == "fail" and "--quantization" not in small.start_argv
    # utilization past what the node has available is vLLM's start-up refusal, fitted as on a GPU
    full = check(LLAMA_8B, ("--max-model-len", "8192", "--gpu-memory-utilization", "0.995"), on(CPU))
    status, message = finding(full, "free_memory")
    assert status == "adjusted" and message.startswith("memory node 0 has 23.27 GiB available of 23.54 GiB")


def test_a_kv_cache_size_given_is_the_cache_and_on_the_cpu_must_be_available() -> None:
    args = ("--max-model-len", "8192", "--kv-cache-memory-bytes", "4G")
    on_cpu = check(LLAMA_8B, args, on(CPU))
    kv = next(f for f in on_cpu.findings if f.check == "kv_cache")
    assert kv.numbers["kv_budget_from"] == "given" and kv.numbers["kv_budget_bytes"] == 4 << 30
    assert finding(on_cpu, "free_memory")[0] == "ok"  # no utilization check on the CPU build
    too_big = check(LLAMA_8B, ("--max-model-len", "8192", "--kv-cache-memory-bytes", "10G"), on(CPU))
    status, message = finding(too_big, "free_memory")
    assert status == "fail" and "10.00 GiB KV cache given" in message and not too_big.ok
    # VLLM_CPU_KVCACHE_SPACE (GiB) is read over the flag
    spaced = Machine(
        GpuFacts((CPU,), None, None, None, "test"), token=True, vllm_env=(("VLLM_CPU_KVCACHE_SPACE", "2"),)
    )
    kv = next(f for f in check(LLAMA_8B, args, spaced).findings if f.check == "kv_cache")
    assert kv.numbers["kv_budget_bytes"] == 2 << 30
    # on a GPU the flag's size is the cache's too, exactly, with no estimate's margin
    tight = check(LLAMA_8B, ("--max-model-len", "32000", "--kv-cache-memory-bytes", "4G"), on(H100))
    kv = next(f for f in tight.findings if f.check == "kv_cache")
    assert kv.numbers["kv_budget_from"] == "given" and kv.status == "ok"  # 32016 x 128 KiB: 3.91 GiB


def test_tensor_parallel_on_the_cpu_build_skips_the_memory_checks() -> None:
    verdict = check(LLAMA_8B, ("--tensor-parallel-size", "2"), on(CPU))
    assert finding(verdict, "gpus")[0] == "warn" and verdict.ok
    assert not any(f.check == "kv_cache" for f in verdict.findings)


def test_a_kv_cache_size_given_on_a_gpu_must_fit_beside_the_weights_and_0_is_unset() -> None:
    # the GPU worker reserves the size without the budget: too much runs out when it is allocated
    verdict = check(LLAMA_8B, ("--max-model-len", "8192", "--kv-cache-memory-bytes", "200G"), on(H100))
    status, message = finding(verdict, "kv_cache")
    assert status == "fail" and not verdict.ok and "200.00 GiB KV cache given" in message
    # `if kv_cache_memory_bytes := ...`: 0 leaves the cache to the budget
    unset = check(LLAMA_8B, ("--max-model-len", "8192", "--kv-cache-memory-bytes", "0"), on(H100))
    kv = next(f for f in unset.findings if f.check == "kv_cache")
    assert kv.numbers["kv_budget_from"] == "estimate" and unset.ok


def test_the_cpu_builds_blocks_are_128_tokens() -> None:
    # platforms/cpu.py (0.32): block_size 128 unless given. 2,000,000 bytes at 2048 a token hold
    # 7 blocks of 128, one kept spare: 768 tokens, what vLLM 0.32's CPU build said for them
    tiny = ModelFacts("tiny", {**LLAMA_31_8B, "num_hidden_layers": 2, "num_key_value_heads": 2,
                               "head_dim": 64, "torch_dtype": "float32", "max_position_embeddings": 4096}, cached=True)  # fmt: skip
    args = ("--max-model-len", "2048", "--kv-cache-memory-bytes", "2000000", "--dtype", "float32")
    kv = next(f for f in check(tiny, args, on(CPU), vllm_version="0.13.0").findings if f.check == "kv_cache")
    assert kv.numbers["kv_bytes_per_token"] == 2048 and kv.numbers["fitted"] == 768
    given = next(
        f for f in check(tiny, (*args, "--block-size", "16"), on(CPU)).findings if f.check == "kv_cache"
    )
    assert given.numbers["fitted"] == 960  # 61 blocks of 16, one spare


def test_without_the_models_config_its_memory_is_said_to_be_unjudged_not_fine() -> None:
    # Llama-3.1-70B on one H100, its files not here: no "fits" from knowing nothing
    blind = ModelFacts("meta-llama/Llama-3.1-70B-Instruct", None)
    verdict = check(blind, (), on(H100))
    status, message = finding(verdict, "memory")
    assert status == "unknown" and message.startswith(
        "not judged: the model's config.json is not on this machine"
    )
    assert verdict.ok and not verdict.judged and verdict.as_json()["memory_judged"] is False
    fix = next(f.fix for f in verdict.findings if f.check == "memory")
    assert (
        "--config-json FILE" in fix
        and "huggingface-cli download meta-llama/Llama-3.1-70B-Instruct config.json" in fix
    )
    # its config.json alone judges it
    given = ModelFacts(blind.name, LLAMA_31_70B, config_from="--config-json /tmp/config.json")
    judged = check(given, (), on(H100))
    assert judged.judged and finding(judged, "weights")[0] == "adjusted"


def test_a_local_path_with_nothing_there_is_a_permanent_failure() -> None:
    verdict = check(ModelFacts("/models/llama-typo", None, hub_id=False, missing=True), (), on(H100))
    status, message = finding(verdict, "model")
    assert status == "fail" and "/models/llama-typo does not exist" in message
    assert not verdict.ok and verdict.permanent
    assert not any(f.check == "memory" for f in verdict.findings)  # nothing to judge: it is not there


def test_a_local_folder_without_a_config_is_said_to_lack_one_not_to_need_a_download() -> None:
    folder = ModelFacts("/models/my-llama", None, hub_id=False)
    status, message = finding(check(folder, (), on(H100)), "memory")
    assert status == "unknown"
    assert message.startswith(
        "not judged: /models/my-llama has no config.json to read the model's shape from"
    )
    fix = next(f.fix for f in check(folder, (), on(H100)).findings if f.check == "memory")
    assert "huggingface-cli" not in fix and "--config-json FILE" in fix
