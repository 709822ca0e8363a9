"""The memory model picks each failure where vLLM would, with numbers that fit together."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_guard.sim import memory as mem
from vllm_guard.sim import models
from vllm_guard.sim.memory import GiB

from .helpers import LLAMA_8B, TINY, gpu, outcome, resolve, run


@pytest.mark.parametrize(
    ("argv", "estimate"),
    [  # real vLLM 0.32.0 printed these for the tiny Llama (real-cpu a1, a2, and README's fp32 rerun)
        (["--max-model-len", "1024", "--kv-cache-memory-bytes", "500000"], 256),
        (["--max-model-len", "4096", "--kv-cache-memory-bytes", "2000000"], 1792),
        (["--max-model-len", "4096", "--kv-cache-memory-bytes", "2000000", "--dtype", "float32"], 768),
    ],
)
def test_the_kv_estimate_reproduces_real_vllms_numbers(argv: list[str], estimate: int) -> None:
    # the CPU backend's block size is 128 (real-cpu metrics_sample: block_size="128")
    result = outcome(TINY, "--block-size", "128", *argv)
    assert isinstance(result, mem.KvTooSmall)
    assert result.estimate == estimate
    relaunched = outcome(TINY, "--block-size", "128", *argv, "--max-model-len", str(estimate))
    assert isinstance(relaunched, mem.Ready)  # README: relaunched with --max-model-len 768 it was healthy


def test_a_long_context_on_a_24_gib_gpu_fails_with_a_length_that_then_fits() -> None:
    result = outcome(LLAMA_8B)  # 131072 tokens by default
    assert isinstance(result, mem.KvTooSmall)
    assert result.max_model_len == 131072
    assert 35_000 < result.estimate < 60_000
    assert result.needed > result.available
    fitted = outcome(LLAMA_8B, "--max-model-len", str(result.estimate))
    assert isinstance(fitted, mem.Ready)
    assert fitted.max_model_len == result.estimate
    assert isinstance(outcome(LLAMA_8B, "--max-model-len", str(result.estimate + 16)), mem.KvTooSmall)


def test_auto_max_model_len_fits_the_length_itself() -> None:
    result = outcome(LLAMA_8B, "--max-model-len", "auto")
    estimate = outcome(LLAMA_8B)
    assert isinstance(result, mem.Ready)
    assert isinstance(estimate, mem.KvTooSmall)
    assert result.max_model_len == estimate.estimate
    assert result.auto_fit_from == 131072


def test_memory_held_by_others_fails_the_startup_check_before_anything_loads() -> None:
    result = outcome(LLAMA_8B, "--max-model-len", "8192", on=gpu(used_gib=10))
    assert result == mem.FreeMemory(14 * GiB, 24 * GiB, 0.92, int(24 * GiB * 0.92) + 1)
    # a utilization that fits what is free passes that check
    assert not isinstance(
        outcome(LLAMA_8B, "--gpu-memory-utilization", "0.55", on=gpu(used_gib=10)), mem.FreeMemory
    )


def test_weights_that_do_not_fit_are_a_torch_oom_with_consistent_numbers() -> None:
    on = gpu(80, used_gib=5)
    result = outcome("meta-llama/Llama-3.1-70B-Instruct", "--gpu-memory-utilization", "0.9", on=on)
    assert isinstance(result, mem.WeightsOom)
    oom = result.oom
    assert oom.total == 80 * GiB
    assert oom.tried > oom.free
    assert oom.free + oom.this_process + 5 * GiB == oom.total
    assert oom.allocated < oom.this_process
    # the tensor it failed on is one of the model's (a fused gate_up projection here)
    assert oom.tried == 2 * 28672 * 8192 * 2


def test_fp8_weights_take_about_half_and_fp8_kv_half_the_cache() -> None:
    bf16, _ = run(LLAMA_8B, "--max-model-len", "8192")
    fp8, _ = run(LLAMA_8B, "--max-model-len", "8192", "--quantization", "fp8")
    assert 0.5 < fp8.weights / bf16.weights < 0.6
    assert 14.9 * GiB < bf16.weights < 15.0 * GiB  # vLLM reports ~14.99 GiB for this model
    kv8, _ = run(LLAMA_8B, "--max-model-len", "8192", "--kv-cache-dtype", "fp8")
    assert kv8.kv_bytes_per_token * 2 == bf16.kv_bytes_per_token == 2 * 32 * 8 * 128 * 2


def test_weights_that_fill_the_budget_leave_no_kv_memory() -> None:
    result = outcome(LLAMA_8B, "--max-model-len", "8192", on=gpu(17))
    assert isinstance(result, mem.NoKvMemory)
    assert result.available <= 0


def test_the_graph_estimate_comes_out_of_the_kv_budget_so_capture_fits_it() -> None:
    argv = ["--max-model-len", "8192", "--gpu-memory-utilization", "0.96"]
    profiled, result = run(LLAMA_8B, *argv)
    unprofiled, _ = run(LLAMA_8B, *argv, profile_graphs=False)
    assert isinstance(result, mem.Ready)
    assert profiled.graphs_in_budget and not unprofiled.graphs_in_budget
    assert unprofiled.available_kv - profiled.available_kv == profiled.graphs
    assert result.held_bytes <= profiled.requested + mem.RESERVED_SLACK


def test_a_pool_larger_than_its_estimate_fails_capture_and_eager_or_a_lower_utilization_fixes_it() -> None:
    argv = ["--max-model-len", "8192", "--gpu-memory-utilization", "0.96"]
    result = outcome(LLAMA_8B, *argv, overshoot_gib=2)  # 0.96 leaves 0.96 GiB outside the budget
    assert isinstance(result, mem.GraphOom)
    assert result.oom.tried > result.oom.free
    assert 0 <= result.captured < result.sizes
    assert isinstance(outcome(LLAMA_8B, *argv, overshoot_gib=0.5), mem.Ready)
    for fix in ("--enforce-eager", "-O0", "-cc.cudagraph_mode=NONE"):
        assert isinstance(outcome(LLAMA_8B, *argv, fix, overshoot_gib=2), mem.Ready)
    lower = ["--max-model-len", "8192", "--gpu-memory-utilization", "0.85"]
    assert isinstance(outcome(LLAMA_8B, *lower, overshoot_gib=2), mem.Ready)


def test_without_the_estimate_capture_draws_outside_the_budget_as_before_0_20() -> None:
    argv = ["--max-model-len", "8192", "--gpu-memory-utilization", "0.96"]
    result = outcome(LLAMA_8B, *argv, profile_graphs=False)
    assert isinstance(result, mem.GraphOom)
    assert isinstance(outcome(LLAMA_8B, *argv, "--enforce-eager", profile_graphs=False), mem.Ready)
    lower = ["--max-model-len", "8192", "--gpu-memory-utilization", "0.9"]
    assert isinstance(outcome(LLAMA_8B, *lower, profile_graphs=False), mem.Ready)


def test_graph_memory_is_half_a_gib_to_one_and_a_half_by_model_size() -> None:
    small, _ = run("Qwen/Qwen2.5-0.5B-Instruct", "--max-model-len", "8192")
    big, _ = run(LLAMA_8B, "--max-model-len", "8192")
    eager, _ = run(LLAMA_8B, "--max-model-len", "8192", "--enforce-eager")
    fewer, _ = run(LLAMA_8B, "--max-model-len", "8192", "--max-cudagraph-capture-size", "64")
    assert 0.5 * GiB <= small.graphs < big.graphs <= 1.5 * GiB
    assert eager.graphs == 0
    assert fewer.graphs < big.graphs


def test_an_explicit_kv_size_larger_than_the_gpu_is_an_oom_while_allocating_it() -> None:
    result = outcome(LLAMA_8B, "--max-model-len", "8192", "--kv-cache-memory-bytes", "20G")
    assert isinstance(result, mem.KvAllocOom)
    assert result.oom.tried > result.oom.free


def test_cpu_offload_and_tensor_parallelism_shrink_the_weights_per_gpu() -> None:
    base, _ = run(LLAMA_8B, "--max-model-len", "8192")
    offload, _ = run(LLAMA_8B, "--max-model-len", "8192", "--cpu-offload-gb", "4")
    tp2, _ = run(LLAMA_8B, "--max-model-len", "8192", "-tp", "2", on=gpu(count=2))
    assert base.weights - offload.weights == pytest.approx(4 * GiB, rel=0.05)
    assert tp2.weights == pytest.approx(base.weights / 2, rel=0.01)
    assert tp2.kv_bytes_per_token * 2 == base.kv_bytes_per_token


def test_no_gpu_and_bf16_on_an_old_gpu_fail_at_device_init() -> None:
    assert isinstance(outcome(LLAMA_8B, on=gpu(count=0)), mem.NoGpu)
    old = gpu(16, cc=(7, 5))
    assert outcome(LLAMA_8B, "--dtype", "bfloat16", on=old) == mem.Bf16Unsupported("NVIDIA L4", (7, 5))
    resolution = resolve(LLAMA_8B, on=old)  # auto picks float16 where bf16 is not supported
    assert resolution.spec is not None and resolution.spec.dtype == "float16"


def test_runtime_oom_asks_for_more_than_is_left() -> None:
    _, ready = run(LLAMA_8B, "--max-model-len", "8192")
    assert isinstance(ready, mem.Ready)
    resolution = resolve(LLAMA_8B, "--max-model-len", "8192")
    assert resolution.spec is not None
    oom = mem.runtime_oom(resolution.spec, gpu(), ready)
    assert oom.tried > oom.free
    assert oom.free + oom.this_process == oom.total


@settings(max_examples=80, deadline=None)
@given(
    model=st.sampled_from(sorted(models.TABLE)),
    total=st.sampled_from([16, 24, 40, 48, 80, 141]),
    util=st.floats(0.5, 0.98),
    max_len=st.integers(256, 131072),
    kv_fp8=st.booleans(),
)
def test_relaunching_with_the_estimated_length_passes_the_kv_check(
    model: str, total: int, util: float, max_len: int, kv_fp8: bool
) -> None:
    max_len = min(max_len, models.TABLE[model].max_position_embeddings)
    argv = ["--gpu-memory-utilization", f"{util:.3f}", "--max-model-len", str(max_len)]
    argv += ["--kv-cache-dtype", "fp8"] if kv_fp8 else []
    result = outcome(model, *argv, on=gpu(total))
    if isinstance(result, mem.KvTooSmall) and result.estimate > 0:
        again = outcome(model, *argv, "--max-model-len", str(result.estimate), on=gpu(total))
        assert again.stage in ("graphs", "ready")
