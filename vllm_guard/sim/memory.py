"""The simulated GPU's memory: what each startup stage needs and the first stage that does not fit.

Pure arithmetic, in vLLM's order (reference.md §4.2): the free-memory check at device init, the
weights (allocated tensor by tensor, so a torch OOM names a real tensor size), the profiling peak,
the KV cache (utilization x total - weights - activations - non-torch - graph estimate, or
--kv-cache-memory-bytes), then CUDA-graph capture. Since 0.20 vLLM profiles the graph pool before
sizing the KV cache and takes it out of the budget (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS,
default 1), so capture fails only when the real pool outgrows the estimate (the fault
`graph_overshoot`; vLLM #49224, #57475) or when the estimate is switched off and the pool draws on
the memory outside the budget. The KV estimate reproduces real vLLM's numbers: with block size 128
the tiny Llama of real-cpu a1/a2 gives 256, 1792 and 768 exactly, and relaunching with
--max-model-len set to the estimate fits by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vllm_guard.sim.models import ModelShape

GiB = 1 << 30
MiB = 1 << 20
CONTEXT_BYTES = 512 * MiB  # CUDA context + cuBLAS workspace: the process's non-torch memory
RESERVED_SLACK = 2 * MiB  # "reserved by PyTorch but unallocated" in torch's OOM text
DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}
FP4_METHODS = frozenset(
    {
        "mxfp4",
        "gpt_oss_mxfp4",
        "modelopt_fp4",
        "nvfp4_per_token",
        "awq",
        "auto_awq",
        "awq_marlin",
        "gptq",
        "gptq_marlin",
        "auto_gptq",
        "moe_wna16",
        "humming",
    }
)


@dataclass(frozen=True, slots=True)
class Gpu:
    total_bytes: int
    other_used_bytes: int  # held by other processes when the engine starts
    capability: tuple[int, int]
    count: int
    name: str
    holders: tuple[tuple[int, int], ...] = ()  # (pid, bytes) of other processes torch would name

    @property
    def capacity(self) -> int:
        return self.total_bytes - self.other_used_bytes


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """The engine-relevant configuration after vLLM's config validation (see config.py)."""

    shape: ModelShape
    dtype: str
    weight_quant: str | None
    kv_cache_dtype: str
    max_model_len: int
    auto_fit: bool
    max_num_seqs: int
    max_num_batched_tokens: int
    block_size: int
    gpu_memory_utilization: float
    kv_cache_memory_bytes: int | None
    cpu_offload_bytes: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    cuda_graphs: bool
    capture_sizes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Oom:
    """The numbers of one torch CUDA out-of-memory error (they add up as torch's do)."""

    tried: int
    total: int
    free: int
    this_process: int
    allocated: int
    reserved: int
    others: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class NoGpu:
    stage = "device"


@dataclass(frozen=True, slots=True)
class Bf16Unsupported:
    gpu_name: str
    capability: tuple[int, int]
    stage = "device"


@dataclass(frozen=True, slots=True)
class FreeMemory:
    free: int
    total: int
    utilization: float
    requested: int
    stage = "device"


@dataclass(frozen=True, slots=True)
class WeightsOom:
    oom: Oom
    stage = "load"


@dataclass(frozen=True, slots=True)
class ProfileOom:
    oom: Oom
    stage = "profile"


@dataclass(frozen=True, slots=True)
class NoKvMemory:
    available: int
    stage = "kv"


@dataclass(frozen=True, slots=True)
class KvTooSmall:
    max_model_len: int
    needed: int
    available: int
    estimate: int
    stage = "kv"


@dataclass(frozen=True, slots=True)
class CannotAutoFit:
    stage = "kv"


@dataclass(frozen=True, slots=True)
class KvAllocOom:
    oom: Oom
    stage = "kv"


@dataclass(frozen=True, slots=True)
class GraphOom:
    oom: Oom
    captured: int
    sizes: int
    stage = "graphs"


@dataclass(frozen=True, slots=True)
class Ready:
    max_model_len: int
    kv_tokens: int
    num_blocks: int
    concurrency: float
    held_bytes: int  # what the engine process holds on the GPU once serving
    auto_fit_from: int | None = None
    stage = "ready"


Failure = (
    NoGpu
    | Bf16Unsupported
    | FreeMemory
    | WeightsOom
    | ProfileOom
    | NoKvMemory
    | KvTooSmall
    | CannotAutoFit
    | KvAllocOom
    | GraphOom
)
Outcome = Failure | Ready


@dataclass(frozen=True, slots=True)
class Budget:
    """The sizes the log lines report, whatever the outcome."""

    requested: int
    weights: int
    activation: int
    available_kv: int
    graphs: int  # the profiled estimate of the graph pool
    graphs_in_budget: bool  # taken out of the KV budget (0.20+ default)
    kv_bytes_per_token: int
    tensors: tuple[int, ...] = field(repr=False)


def dtype_bytes(name: str) -> int:
    return DTYPE_BYTES.get(name, 2)


def kv_dtype_bytes(spec: EngineSpec) -> int:
    if spec.kv_cache_dtype.startswith(("fp8", "int8")):
        return 1
    if spec.kv_cache_dtype in ("auto", "float16", "bfloat16"):
        return dtype_bytes(spec.dtype) if spec.kv_cache_dtype == "auto" else 2
    return 1  # the 4-bit and quantized formats: at most one byte per element


def linear_bytes_per_param(spec: EngineSpec) -> float:
    method = spec.weight_quant
    if method is None:
        return float(dtype_bytes(spec.dtype))
    if method in FP4_METHODS or (spec.shape.quant_bits is not None and spec.shape.quant_bits <= 4):
        return 0.5 * 1.03  # packed 4-bit weights plus group scales
    return 1.0  # fp8 / int8 families


def weight_tensors(spec: EngineSpec) -> tuple[int, ...]:
    """This GPU's weight tensors, in the order vLLM creates them (fused qkv / gate_up, TP-sharded)."""
    s = spec.shape
    tp, pp = spec.tensor_parallel_size, spec.pipeline_parallel_size
    wb = dtype_bytes(spec.dtype)
    lb = linear_bytes_per_param(spec)
    q, kv = s.num_attention_heads * s.head_dim, s.num_key_value_heads * s.head_dim
    embed = s.vocab_size * s.hidden_size // tp * wb
    layer = (
        int(s.hidden_size * (q + 2 * kv) / tp * lb),
        int(q * s.hidden_size / tp * lb),
        int(2 * s.intermediate_size * s.hidden_size / tp * lb),
        int(s.intermediate_size * s.hidden_size / tp * lb),
        s.hidden_size * wb,
        s.hidden_size * wb,
    )
    tensors = [embed]
    for _ in range(math.ceil(s.num_hidden_layers / pp)):
        tensors.extend(layer)
    tensors.append(s.hidden_size * wb)
    if not s.tie_word_embeddings:
        tensors.append(embed)
    offload = spec.cpu_offload_bytes
    on_gpu: list[int] = []
    for tensor in tensors:  # --cpu-offload-gb keeps the first tensors that fit its budget on the CPU
        if offload >= tensor:
            offload -= tensor
        else:
            on_gpu.append(tensor)
    return tuple(on_gpu)


def activation_bytes(spec: EngineSpec) -> int:
    """The profiling run's peak: a forward pass of max_num_batched_tokens tokens, plus the sampler
    over max_num_seqs requests (fp32 logits over the vocabulary)."""
    s = spec.shape
    act = dtype_bytes(spec.dtype)
    hidden = spec.max_num_batched_tokens * (
        4 * s.hidden_size + 2 * s.intermediate_size // spec.tensor_parallel_size
    )
    sampler = spec.max_num_seqs * s.vocab_size * 4
    return hidden * act + sampler


def graph_bytes(spec: EngineSpec) -> int:
    """CUDA-graph pool: 0.5-1.5 GiB by model size, less with fewer captured batch sizes."""
    if not spec.cuda_graphs or not spec.capture_sizes:
        return 0
    per_gpu = spec.shape.params() / (spec.tensor_parallel_size * spec.pipeline_parallel_size)
    base = min(1.5, max(0.5, 0.5 + 0.125 * per_gpu / 1e9))
    largest = min(max(spec.capture_sizes), 512)
    return int(base * (0.5 + 0.5 * largest / 512) * GiB)


def kv_bytes_per_token(spec: EngineSpec) -> int:
    s = spec.shape
    layers = math.ceil(s.num_hidden_layers / spec.pipeline_parallel_size)
    kv_heads = max(1, s.num_key_value_heads // spec.tensor_parallel_size)
    return 2 * layers * kv_heads * s.head_dim * kv_dtype_bytes(spec)


def kv_needed(spec: EngineSpec, max_model_len: int) -> int:
    """Bytes to hold one request of max_model_len tokens; one block more than the request's own
    (the block pool's reserved block), which is what real vLLM's numbers show."""
    block = kv_bytes_per_token(spec) * spec.block_size
    return (math.ceil(max_model_len / spec.block_size) + 1) * block


def estimate_max_model_len(spec: EngineSpec, available: int, cap: int) -> int:
    block = kv_bytes_per_token(spec) * spec.block_size
    return max(0, min(cap, (available // block - 1) * spec.block_size))


def budget(spec: EngineSpec, gpu: Gpu, profile_graphs: bool = True) -> Budget:
    tensors = weight_tensors(spec)
    weights, act, graphs = sum(tensors), activation_bytes(spec), graph_bytes(spec)
    requested = math.ceil(gpu.total_bytes * spec.gpu_memory_utilization)
    in_budget = profile_graphs and spec.kv_cache_memory_bytes is None
    if spec.kv_cache_memory_bytes is not None:
        available = spec.kv_cache_memory_bytes
    else:
        available = requested - weights - act - CONTEXT_BYTES - (graphs if in_budget else 0)
    return Budget(requested, weights, act, available, graphs, in_budget, kv_bytes_per_token(spec), tensors)


def _oom(gpu: Gpu, tried: int, in_use: int, allocated: int) -> Oom:
    free = gpu.capacity - in_use - RESERVED_SLACK
    return Oom(
        tried, gpu.total_bytes, max(0, free), in_use + RESERVED_SLACK, allocated, RESERVED_SLACK, gpu.holders
    )


def evaluate(
    spec: EngineSpec, gpu: Gpu, profile_graphs: bool = True, graph_overshoot: int = 0
) -> tuple[Budget, Outcome]:
    """Run the startup stages against the GPU; the first one that does not fit ends it.

    `graph_overshoot`: bytes the real graph pool takes beyond the profiled estimate."""
    b = budget(spec, gpu, profile_graphs)
    if gpu.count < 1:
        return b, NoGpu()
    if spec.dtype == "bfloat16" and gpu.capability < (8, 0):
        return b, Bf16Unsupported(gpu.name, gpu.capability)
    if gpu.capacity < b.requested:
        return b, FreeMemory(gpu.capacity, gpu.total_bytes, spec.gpu_memory_utilization, b.requested)
    in_use = CONTEXT_BYTES
    for tensor in b.tensors:
        if in_use + tensor + RESERVED_SLACK > gpu.capacity:
            return b, WeightsOom(_oom(gpu, tensor, in_use, in_use - CONTEXT_BYTES))
        in_use += tensor
    profiled = spec.kv_cache_memory_bytes is None
    if profiled and in_use + b.activation + RESERVED_SLACK > gpu.capacity:
        return b, ProfileOom(_oom(gpu, b.activation, in_use, b.weights))
    if b.available_kv <= 0:
        return b, NoKvMemory(b.available_kv)
    max_len, auto_from = spec.max_model_len, None
    if spec.auto_fit:
        fitted = estimate_max_model_len(spec, b.available_kv, spec.max_model_len)
        if fitted <= 0:
            return b, CannotAutoFit()
        max_len, auto_from = fitted, spec.max_model_len
    needed = kv_needed(spec, max_len)
    if needed > b.available_kv:
        estimate = estimate_max_model_len(spec, b.available_kv, max_len)
        return b, KvTooSmall(max_len, needed, b.available_kv, estimate)
    block = b.kv_bytes_per_token * spec.block_size
    num_blocks = b.available_kv // block
    layers = math.ceil(spec.shape.num_hidden_layers / spec.pipeline_parallel_size)
    per_layer = num_blocks * block // layers
    if not profiled:
        for _ in range(layers):  # one KV tensor per layer, as vLLM allocates them
            if in_use + per_layer + RESERVED_SLACK > gpu.capacity:
                return b, KvAllocOom(_oom(gpu, per_layer, in_use, in_use - CONTEXT_BYTES))
            in_use += per_layer
        in_use = min(gpu.capacity - RESERVED_SLACK, in_use + b.activation)
    else:
        in_use += b.activation + per_layer * layers
    if b.graphs:
        sizes = sorted(spec.capture_sizes, reverse=True)  # vLLM captures the largest batch first
        total_size = sum(sizes)
        pool = b.graphs + graph_overshoot
        for index, size in enumerate(sizes):
            chunk = max(1, pool * size // total_size)
            if in_use + chunk + RESERVED_SLACK > gpu.capacity:
                oom = _oom(gpu, chunk, in_use, in_use - CONTEXT_BYTES)
                return b, GraphOom(oom, index, len(sizes))
            in_use += chunk
    tokens = num_blocks * spec.block_size
    concurrency = tokens / (math.ceil(max_len / spec.block_size) * spec.block_size)
    return b, Ready(max_len, tokens, num_blocks, concurrency, in_use, auto_from)


def runtime_oom(spec: EngineSpec, gpu: Gpu, ready: Ready) -> Oom:
    """A forward pass that asks for more than is left once serving (the fault `oom_after_requests`)."""
    free = gpu.capacity - ready.held_bytes - RESERVED_SLACK
    tried = max(activation_bytes(spec), free + 2 * MiB)
    tried = math.ceil(tried / (2 * MiB)) * 2 * MiB
    return _oom(gpu, tried, ready.held_bytes, ready.held_bytes - CONTEXT_BYTES)


def default_capture_sizes(max_capture: int) -> tuple[int, ...]:
    """vLLM's default CUDA-graph batch sizes up to the largest one captured."""
    sizes = [1, 2, 4, *range(8, 256, 8), *range(256, max_capture + 1, 16)]
    return tuple(s for s in sizes if s <= max_capture)
