"""vLLM's config validation: parsed flags + a model + the GPU -> an EngineSpec, or vLLM's config error.

The checks run in the order of vLLM's `create_engine_config` (reference.md §1.11 and the real-cpu
tracebacks): ModelConfig (dtype, max_model_len against the model's maximum, quantization),
CacheConfig (utilization bounds), ParallelConfig (world size against the GPUs), SchedulerConfig,
then VllmConfig (the quantization method against the GPU's capability). The lines vLLM logs while
doing so come back as `notes`, in order, including those logged before a failing check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vllm_guard.sim import messages as m
from vllm_guard.sim.flags import Parsed
from vllm_guard.sim.memory import EngineSpec, GiB, Gpu, default_capture_sizes
from vllm_guard.sim.models import ModelShape

Note = tuple[str, tuple[str, str]]  # (level, (where, text))
FP8_FAMILY = frozenset({"fp8", "fp8_per_tensor", "fp8_per_block", "fp8_per_channel", "online"})
# get_min_capability() of the methods a guard may pick (reference.md §1.9 and vLLM's configs)
MIN_CAPABILITY = {
    **dict.fromkeys(FP8_FAMILY, m.FP8_MIN_CAPABILITY),
    "awq": 75,
    "awq_marlin": 75,
    "auto_awq": 75,
    "gptq_marlin": 75,
    "fbgemm_fp8": 80,
    "modelopt": 89,
    "modelopt_fp4": 75,
    "mxfp4": 80,
    "experts_int8": 80,
}
COMPATIBLE = {("gptq", "gptq_marlin"), ("gptq", "marlin"), ("awq", "awq_marlin"), ("fp8", "fp8")}


@dataclass(frozen=True, slots=True)
class ConfigError:
    """A pydantic ValidationError raised while building one config class."""

    cls: str
    message: str = ""  # `Value error, <message>`
    bound: tuple[str, str, str, str, float] | None = None  # field, relation, bound, kind, value


@dataclass(slots=True)
class Resolution:
    notes: list[Note] = field(default_factory=list)
    spec: EngineSpec | None = None
    error: ConfigError | None = None
    fp8_marlin: bool = False  # the engine warns that FP8 runs weight-only through Marlin


def batch_defaults(total_bytes: int) -> tuple[int, int]:
    """`vllm serve` defaults for (max_num_seqs, max_num_batched_tokens) by GPU size (§2.2)."""
    if total_bytes >= 160 * GiB:
        return 1024, 16384
    if total_bytes >= 70 * GiB:
        return 1024, 8192
    return 256, 2048


def resolve_dtype(requested: str, config_dtype: str, gpu: Gpu) -> tuple[str, bool]:
    """The torch dtype vLLM picks, and whether it logs `Downcasting torch.float32 ...`."""
    explicit = {"half": "float16", "float16": "float16", "bfloat16": "bfloat16", "float": "float32"}
    if requested != "auto":
        return explicit.get(requested, requested), False
    bf16_ok = gpu.capability >= (8, 0)
    if config_dtype == "float32":
        return ("bfloat16" if bf16_ok else "float16"), bf16_ok
    if config_dtype == "bfloat16" and not bf16_ok:
        return "float16", False  # vLLM falls back to a dtype the platform supports
    return (config_dtype if config_dtype in ("bfloat16", "float16") else "bfloat16"), False


class _Invalid(Exception):
    def __init__(self, error: ConfigError) -> None:
        super().__init__(error.cls)
        self.error = error


def resolve(args: Parsed, shape: ModelShape, gpu: Gpu, environ: dict[str, str]) -> Resolution:
    r = Resolution()
    try:
        _resolve(r, args, shape, gpu, environ)
    except _Invalid as invalid:
        r.error = invalid.error
    return r


def _note(r: Resolution, level: str, where_text: tuple[str, str], **values: object) -> None:
    where, text = where_text
    r.notes.append((level, (where, text.format(**values) if values else text)))


def _resolve(r: Resolution, args: Parsed, shape: ModelShape, gpu: Gpu, environ: dict[str, str]) -> None:
    _note(r, "INFO", m.RESOLVED_ARCHITECTURE, arch=shape.architecture)
    dtype, downcast = resolve_dtype(str(args.get("dtype")), shape.torch_dtype, gpu)
    if downcast:
        _note(r, "INFO", m.DOWNCASTING)
    max_len, auto_fit = _max_model_len(args, shape, environ)
    _note(r, "INFO", m.USING_MAX_MODEL_LEN, n=max_len)
    method = _quantization(args.get("quantization"), shape.quant_method)
    util = _utilization(float(args.get("gpu_memory_utilization")))
    tp, pp = int(args.get("tensor_parallel_size")), int(args.get("pipeline_parallel_size"))
    if tp * pp > 1 and tp * pp > gpu.count:  # ParallelConfig
        raise _Invalid(
            ConfigError("ParallelConfig", m.WORLD_SIZE_TOO_LARGE.format(world=tp * pp, gpus=gpu.count))
        )
    seqs, batched = _scheduler(args, gpu, max_len)
    capability = gpu.capability[0] * 10 + gpu.capability[1]
    minimum = MIN_CAPABILITY.get(method or "")
    if method is not None and minimum is not None and gpu.count > 0 and capability < minimum:  # VllmConfig
        text = m.QUANTIZATION_CAPABILITY.format(method=method, minimum=minimum, current=capability)
        raise _Invalid(ConfigError("VllmConfig", text))
    if args.get("quantization") == "fp8" and shape.quant_method is None:
        _note(r, "WARNING", m.FP8_DEPRECATED)
    r.fp8_marlin = method in FP8_FAMILY and capability < m.FP8_NATIVE_CAPABILITY
    eager = bool(args.get("enforce_eager"))
    if eager:
        _note(r, "WARNING", m.ENFORCE_EAGER)
    r.spec = EngineSpec(
        shape=shape,
        dtype=dtype,
        weight_quant=method,
        kv_cache_dtype=str(args.get("kv_cache_dtype")),
        max_model_len=max_len,
        auto_fit=auto_fit,
        max_num_seqs=seqs,
        max_num_batched_tokens=batched,
        block_size=int(args.get("block_size") or 16),
        gpu_memory_utilization=util,
        kv_cache_memory_bytes=args.get("kv_cache_memory_bytes"),
        cpu_offload_bytes=int(float(args.get("cpu_offload_gb") or 0) * GiB),
        tensor_parallel_size=tp,
        pipeline_parallel_size=pp,
        cuda_graphs=not eager and _graphs_enabled(args),
        capture_sizes=_capture_sizes(args, seqs, batched),
    )


def _max_model_len(args: Parsed, shape: ModelShape, environ: dict[str, str]) -> tuple[int, bool]:
    """ModelConfig: the length asked for (None = the model's own, -1/auto = fit) against the model."""
    derived = shape.max_position_embeddings
    user_len = args.get("max_model_len")
    max_len = derived if user_len in (None, -1) else int(user_len)
    if max_len > derived and environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") != "1":
        text = m.MAX_LEN_OVER_DERIVED.format(user=max_len, derived=float(derived))
        raise _Invalid(ConfigError("ModelConfig", text))
    return max_len, user_len == -1


def _quantization(quant: str | None, ckpt: str | None) -> str | None:
    """ModelConfig: a known method, and one that agrees with a quantized checkpoint."""
    if quant is not None and quant not in m.QUANTIZATION_METHODS:
        methods = repr(list(m.QUANTIZATION_METHODS))
        raise _Invalid(
            ConfigError("ModelConfig", m.UNKNOWN_QUANTIZATION.format(method=quant, methods=methods))
        )
    if quant is not None and ckpt is not None and quant != ckpt and (ckpt, quant) not in COMPATIBLE:
        raise _Invalid(ConfigError("ModelConfig", m.QUANTIZATION_MISMATCH.format(ckpt=ckpt, arg=quant)))
    return quant or ckpt


def _utilization(util: float) -> float:
    """CacheConfig: 0 < gpu_memory_utilization <= 1 (pydantic's field bounds)."""
    if util > 1:
        bound = ("gpu_memory_utilization", "less than or equal to", "1", "less_than_equal", util)
        raise _Invalid(ConfigError("CacheConfig", bound=bound))
    if util <= 0:
        bound = ("gpu_memory_utilization", "greater than", "0", "greater_than", util)
        raise _Invalid(ConfigError("CacheConfig", bound=bound))
    return util


def _scheduler(args: Parsed, gpu: Gpu, max_len: int) -> tuple[int, int]:
    """SchedulerConfig: (max_num_seqs, max_num_batched_tokens) with `vllm serve`'s defaults."""
    seqs_default, batched_default = batch_defaults(gpu.total_bytes)
    seqs = args.get("max_num_seqs")
    batched = args.get("max_num_batched_tokens")
    chunked = args.get("enable_chunked_prefill") is not False
    if batched is None:
        batched = min(batched_default, (seqs or seqs_default) * max_len)
        if not chunked:
            batched = max(batched, max_len)
    if seqs is None:
        seqs = min(seqs_default, batched)
    if batched < seqs:
        raise _Invalid(
            ConfigError("SchedulerConfig", m.BATCHED_BELOW_SEQS.format(batched=batched, seqs=seqs))
        )
    if not chunked and batched < max_len:
        text = m.BATCHED_BELOW_MAX_LEN.format(batched=batched, max_len=max_len)
        raise _Invalid(ConfigError("SchedulerConfig", text))
    return int(seqs), int(batched)


def _graphs_enabled(args: Parsed) -> bool:
    if args.get("optimization_level") == 0:  # -O0: no compile, no CUDA graphs (0.12+)
        return False
    compilation = str(args.get("compilation_config") or "").replace(" ", "").upper()
    return not any(f'"CUDAGRAPH_MODE":{v}' in compilation for v in ('"NONE"', "0"))


def _capture_sizes(args: Parsed, seqs: int, batched: int) -> tuple[int, ...]:
    explicit = args.get("cudagraph_capture_sizes")
    if explicit:
        return tuple(sorted({int(s) for s in explicit}))
    largest = args.get("max_cudagraph_capture_size")
    if largest is None:
        largest = min(2 * seqs, 512, batched)
    return default_capture_sizes(int(largest))
