"""How vLLM sizes its KV cache, release by release: the defaults that shape its profiling run, the
run's peak, and what it takes off `--gpu-memory-utilization` x total before the KV cache.

Read from vLLM's source of every release from 0.4.1 (the functions named below), not fitted to
logs; `None` as a version means the newest supported one. Pure: numbers in, numbers out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from vllm_guard.vllm_version import at_least

GiB = 1 << 30


def is_v1(version: str | None) -> bool:
    """The V1 engine is `vllm serve`'s default from 0.8.0 (VLLM_USE_V1=0 chose V0 until 0.10)."""
    return version is None or at_least(version, (0, 8))


def default_utilization(version: str | None) -> float:
    """--gpu-memory-utilization when not given: 0.90 until 0.19, 0.92 from 0.20.0
    (engine/arg_utils.py, config/cache.py). 0.34 resolves it to 1.0 when its extensible KV cache
    is on (the default on CUDA), and sizes that cache after warm-up: extensible_kv_cache."""
    return 0.92 if version is None or at_least(version, (0, 20)) else 0.9


def extensible_kv_cache(version: str | None, flags: Mapping[str, str]) -> bool:
    """Whether vLLM sizes its KV cache after warm-up and graph capture, from a utilization of
    1.0 unless given (config/vllm.py _resolve_extensible_kv_cache, 0.34.0): not modelled here."""
    if version is None or not at_least(version, (0, 34)):
        return False
    if flags.get("--enable-extensible-kv-cache") == "false":
        return False
    return "--kv-cache-memory-bytes" not in flags and "--num-gpu-blocks-override" not in flags


def graphs_in_budget(version: str | None) -> bool:
    """Whether the CUDA-graph memory estimate is taken off the KV budget before the cache is
    sized: VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS defaults to 1 from 0.20.0 (envs.py; vLLM's
    own log says "since v0.21.0"). Before, graphs were captured after the cache, outside it."""
    return version is None or at_least(version, (0, 20))


@dataclass(frozen=True, slots=True)
class Gpu:
    """What vLLM's defaults look at: NVML's total (get_device_total_memory on the NVML platform),
    the device's name, its compute capability."""

    nvml_total_bytes: int
    name: str
    capability: tuple[int, int] | None
    cpu: bool = False  # vLLM's CPU build, on a memory node


def serve_batch_defaults(version: str | None, gpu: Gpu) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) of `vllm serve` on the V1 engine with neither flag
    given (engine/arg_utils.py: _set_default_args_v1 0.8.0-0.10.2, get_batch_defaults 0.11.1+)."""
    name = gpu.name.lower()
    if gpu.cpu:  # the CPU platform's own (arg_utils.py, 0.32: per rank; one rank is planned)
        return 128, 2048
    if not at_least(version, (0, 8, 5)) and version is not None:
        # 0.8.0-0.8.4 test the name; 0.8.4 gives the 256 sequences to the other cards only
        big = "h100" in name or "h200" in name
        seqs = 1024 if big or not at_least(version, (0, 8, 4)) else 256
        return seqs, 8192 if big else 2048
    if gpu.nvml_total_bytes >= 160 * GiB and (version is None or at_least(version, (0, 28))):
        return 1024, 16384
    # the A100 keeps the small defaults from 0.9.0 (larger batches cost it throughput, vLLM #17885);
    # the GB10 (capability 12.1, unified memory) from 0.33.0
    a100 = "a100" in name and (version is None or at_least(version, (0, 9)))
    gb10 = gpu.capability == (12, 1) and (version is None or at_least(version, (0, 33)))
    if gpu.nvml_total_bytes >= 70 * GiB and not a100 and not gb10:
        return 1024, 8192
    return 256, 2048


def serve_batch(
    version: str | None,
    gpu: Gpu,
    *,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    throughput_mode: bool,
    chunked_prefill: bool,
    max_model_len: int,
) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) of `vllm serve` on the V1 engine with these flags
    (engine/arg_utils.py _set_default_max_num_seqs_and_batched_tokens_args): the defaults, doubled
    where --performance-mode throughput leaves them (0.17+); with chunked prefill off a batch
    holds a whole sequence; never past max_num_seqs sequences of max_model_len."""
    seqs, tokens = serve_batch_defaults(version, gpu)
    if throughput_mode:
        seqs, tokens = 2 * seqs, 2 * tokens
    seqs = max_num_seqs or seqs
    if max_num_batched_tokens:
        return seqs, max_num_batched_tokens
    if not chunked_prefill:
        tokens = max(max_model_len, tokens)
    return seqs, min(seqs * max_model_len, tokens)


def v0_batch_defaults(
    version: str | None, max_model_len: int, chunked_prefill: bool | None
) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) of the V0 engine (config.py SchedulerConfig): chunked
    prefill is on by default past 32768 tokens; off, a batch holds one whole sequence."""
    chunked = max_model_len > 32768 if chunked_prefill is None else chunked_prefill
    if not chunked:
        return 256, max(max_model_len, 2048)
    if at_least(version, (0, 7)):
        return 256, 2048
    return 256, 512 if at_least(version, (0, 5)) else 768


def sampler_copies(version: str | None, requests: int) -> float:
    """How many (requests x vocabulary) float32 tensors the profiling run's dummy sampler holds at
    its peak. The dummy run asks for top-k and top-p, so apply_top_k_top_p runs (V0's
    model_executor/layers/sampler.py, V1's v1/sample/ops/topk_topp_sampler.py), while the caller
    still holds the fp32 logits and the model's 16-bit ones (half a copy). Sorting adds the sorted
    logits, their int64 indices (two copies), the sorted probabilities, two bool masks (a quarter
    each) and the re-sorted logits; what differs by release:

    - V0 before 0.6.2: the cumulative sum is a new tensor, and the inverse permutation another
      int64 one before a gather: 10.
    - V0 from 0.6.2, V1 0.8.0-0.9.1: the cumsum is new, the re-sort one scatter: 8.
    - V1 0.9.2-0.16: the cumsum is written over the sorted probabilities: 7.
    - V1 from 0.17.0: a Triton kernel filters in place when there are 8 requests or more, leaving
      the fp32 logits, the probabilities and the random draw: 3.5; under 8, the sort scatters in
      place: 6.
    """
    if not is_v1(version):
        return 8.0 if at_least(version, (0, 6, 2)) else 10.0
    if version is not None and not at_least(version, (0, 9, 2)):
        return 8.0
    if version is not None and not at_least(version, (0, 17)):
        return 7.0
    return 3.5 if requests >= 8 else 6.0


def sampler_bytes(version: str | None, requests: int, vocab: int) -> int:
    return int(sampler_copies(version, requests) * requests * vocab * 4)


# vLLM caps the caching allocator's block splits at 20 MiB while it loads the weights
# (gpu_worker.py's load_model, 0.21.0-0.33, vllm-project/vllm#41268), so each weight of 20 MiB or
# more keeps its 2 MiB segment's tail; 0.32 leaves the cap out for an allocator other than
# PyTorch's own, and expandable segments split any block anyway
LOAD_SPLIT_CAP_BYTES = 20 << 20


def load_split_cap(version: str | None, flags: Mapping[str, str]) -> int | None:
    """The split cap vLLM's load runs under, or None; `flags` as measured.memory_flags gives
    them ("$PYTORCH_CUDA_ALLOC_CONF" among them)."""
    if version is not None and not at_least(version, (0, 21)):
        return None
    # PyTorch reads PYTORCH_ALLOC_CONF before its older name
    conf = flags.get("$PYTORCH_ALLOC_CONF", flags.get("$PYTORCH_CUDA_ALLOC_CONF", "")).replace(" ", "")
    if "expandable_segments:True" in conf or "backend:cudaMallocAsync" in conf:
        return None
    return LOAD_SPLIT_CAP_BYTES
