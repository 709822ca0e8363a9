"""vLLM's KV-budget rules per release, as its source has them (vllm_profile.py cites each)."""

from __future__ import annotations

import pytest

from vllm_guard import vllm_profile
from vllm_guard.vllm_profile import Gpu

GIB = 1 << 30
H100 = Gpu(85520809984, "NVIDIA H100 80GB HBM3", (9, 0))
A100_80 = Gpu(81920 << 20, "NVIDIA A100-SXM4-80GB", (8, 0))
L4 = Gpu(23034 << 20, "NVIDIA L4", (8, 9))
B200 = Gpu(183359 << 20, "NVIDIA B200", (10, 0))
GB10 = Gpu(128 * GIB, "NVIDIA GB10", (12, 1))


@pytest.mark.parametrize(
    ("version", "gpu", "defaults"),
    [
        ("0.8.0", H100, (1024, 8192)),  # by name
        ("0.8.0", L4, (1024, 2048)),  # 1024 sequences everywhere until 0.8.3
        ("0.8.4", L4, (256, 2048)),
        ("0.8.5", A100_80, (1024, 8192)),  # by memory, the A100 too ...
        ("0.9.0", A100_80, (256, 2048)),  # ... until 0.9.0 left it out
        ("0.32.0", A100_80, (256, 2048)),
        ("0.27.1", B200, (1024, 8192)),
        ("0.28.0", B200, (1024, 16384)),  # >= 160 GiB from 0.28.0
        ("0.32.0", H100, (1024, 8192)),
        ("0.32.0", GB10, (1024, 8192)),
        ("0.33.0", GB10, (256, 2048)),  # unified memory: the small defaults from 0.33.0
        (None, H100, (1024, 8192)),
        (None, L4, (256, 2048)),
    ],
)
def test_vllm_serves_batch_defaults_follow_the_release_and_the_gpu(
    version: str | None, gpu: Gpu, defaults: tuple[int, int]
) -> None:
    assert vllm_profile.serve_batch_defaults(version, gpu) == defaults


def test_v0_batches_a_whole_sequence_unless_chunked_prefill_is_on() -> None:
    assert vllm_profile.v0_batch_defaults("0.6.3", 8192, None) == (256, 8192)
    assert vllm_profile.v0_batch_defaults("0.6.3", 1024, None) == (256, 2048)
    assert vllm_profile.v0_batch_defaults("0.6.3", 131072, None) == (256, 512)  # chunked past 32k
    assert vllm_profile.v0_batch_defaults("0.7.3", 131072, None) == (256, 2048)
    assert vllm_profile.v0_batch_defaults("0.7.3", 131072, False) == (256, 131072)


def test_the_utilization_default_and_the_graph_reservation_change_at_0_20() -> None:
    # envs.py 0.20.0 already defaults VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS to 1
    assert vllm_profile.default_utilization("0.19.1") == 0.9
    assert vllm_profile.default_utilization("0.20.0") == 0.92
    assert not vllm_profile.graphs_in_budget("0.19.1")
    assert vllm_profile.graphs_in_budget("0.20.0") and vllm_profile.graphs_in_budget(None)


@pytest.mark.parametrize(
    ("version", "requests", "copies"),
    [
        ("0.5.5", 256, 10.0),  # V0: a new cumsum, an int64 inverse permutation and a gather
        ("0.6.2", 256, 8.0),  # V0: one scatter
        ("0.8.0", 1024, 8.0),  # V1's first sampler: the same steps
        ("0.9.2", 1024, 7.0),  # the cumsum written in place
        ("0.16.0", 1024, 7.0),
        ("0.17.0", 1024, 3.5),  # the Triton filter
        ("0.17.0", 4, 6.0),  # under 8 requests: the sort, scattered in place
        (None, 256, 3.5),
    ],
)
def test_the_dummy_samplers_peak_follows_its_code(version: str | None, requests: int, copies: float) -> None:
    assert vllm_profile.sampler_copies(version, requests) == copies


def test_the_sampler_peak_on_an_h100_is_gibibytes_not_one_copy() -> None:
    # an H100's default 1024 requests over Llama-3's vocabulary: 1.7 GiB from 0.17, 3.4 GiB
    # before, where one fp32 copy (what preflight counted until now) is 0.5 GiB
    vocab, requests = 128256, 1024
    assert vllm_profile.sampler_bytes("0.17.0", requests, vocab) == int(3.5 * requests * vocab * 4)
    assert 3.4 * GIB < vllm_profile.sampler_bytes("0.16.0", requests, vocab) < 3.45 * GIB


def test_vllm_serves_batch_follows_chunked_prefill_and_the_performance_mode() -> None:
    # engine/arg_utils.py _set_default_max_num_seqs_and_batched_tokens_args (0.17-0.33)
    def batch(**given: object) -> tuple[int, int]:
        args: dict[str, object] = {"max_num_seqs": None, "max_num_batched_tokens": None, "throughput_mode": False,
                                   "chunked_prefill": True, "max_model_len": 131072} | given  # fmt: skip
        return vllm_profile.serve_batch("0.32.0", H100, **args)  # type: ignore[arg-type]

    assert batch() == (1024, 8192)
    assert batch(throughput_mode=True) == (2048, 16384)
    assert batch(chunked_prefill=False) == (1024, 131072)  # a whole sequence in one batch
    assert batch(max_num_seqs=4, max_model_len=1024) == (4, 4096)  # never past 4 sequences' worth
    assert batch(max_num_batched_tokens=512, chunked_prefill=False) == (1024, 512)  # given: as given


def test_the_load_runs_under_a_split_cap_from_021_unless_the_allocator_splits_anyway() -> None:
    assert vllm_profile.load_split_cap("0.20.2", {}) is None
    assert vllm_profile.load_split_cap("0.21.0", {}) == 20 << 20
    assert vllm_profile.load_split_cap(None, {}) == 20 << 20  # the newest
    expandable = {"$PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert vllm_profile.load_split_cap("0.32.0", expandable) is None
    assert (
        vllm_profile.load_split_cap("0.32.0", {"$PYTORCH_CUDA_ALLOC_CONF": "backend:cudaMallocAsync"}) is None
    )


def test_the_cpu_builds_serve_defaults_do_not_follow_the_nodes_memory() -> None:
    # arg_utils.py (0.32): the CPU platform's 128 sequences and 2048 tokens per rank for serve
    node = Gpu(256 << 30, "CPU", None, cpu=True)
    assert vllm_profile.serve_batch_defaults("0.32.0", node) == (128, 2048)
    assert vllm_profile.serve_batch_defaults("0.32.0", Gpu(256 << 30, "NVIDIA B200", (10, 0))) == (
        1024,
        16384,
    )


def test_pytorchs_newer_allocator_variable_is_read_first() -> None:
    both = {"$PYTORCH_ALLOC_CONF": "expandable_segments:True", "$PYTORCH_CUDA_ALLOC_CONF": ""}
    assert vllm_profile.load_split_cap("0.32.0", both) is None
