"""A model's memory estimate: weight bytes, KV-cache bytes per token and the derived maximum length,
from its Hugging Face `config.json` (and the safetensors index's `total_size` when there is one).

Pure: plain values in, a `ModelEstimate` out. Reading the files is `model_files.py`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Bits rather than bytes so 4-bit formats stay integers until the final division.
_DTYPE_BITS = {"float32": 32, "float16": 16, "bfloat16": 16, "fp8": 8, "int8": 8, "int4": 4}
_DTYPE_ALIASES = {"float": "float32", "half": "float16", "bf16": "bfloat16", "fp16": "float16"}
# transformers' per-family default for `tie_word_embeddings` when config.json leaves it out.
_TIED_BY_DEFAULT = ("gemma",)
# The keys vLLM takes the minimum of when deriving the maximum model length (`_get_and_verify_max_len`).
_MAX_LEN_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_seq_len",
    "seq_length",
    "max_sequence_length",
    "max_seq_length",
    "seq_len",
)


@dataclass(frozen=True, slots=True)
class ModelEstimate:
    architecture: str
    params: int
    weights_bytes: int
    weights_source: str  # "safetensors index" or "config"
    weight_dtype: str
    quantization: str | None
    kv_cache_bytes_per_token: int  # all layers, whole model, sliding-window layers included
    full_attention_layers: int
    sliding_window_layers: int
    sliding_window: int | None
    max_model_len: int | None
    mla: bool
    num_kv_heads: int = 1  # 1 for MLA: the latent is one tensor every rank holds whole
    kv_bytes_per_token_per_layer: int = 0  # whole model, one attention layer
    # MXFP4 experts (layers, experts, hidden, intermediate), counted per GPU by weights_per_gpu
    # because vLLM pads each rank's share; not in weights_bytes' even split
    mxfp4_experts: tuple[int, int, int, int] | None = None
    # The large tensors vLLM allocates while loading, as (parameters of one, how many in the
    # whole model, bits each, split by tensor parallelism): the caching allocator rounds each one
    # up while vLLM's load caps its block splits (load_rounding_per_gpu)
    tensors: tuple[tuple[int, int, int, bool], ...] = ()
    # the rotary embedding's cos/sin cache, which every rank builds whole while the model is made
    # (one shared by all layers: max_position_embeddings x rotary dimension at the model's dtype)
    rope_cache_bytes: int = 0


@dataclass(frozen=True, slots=True)
class _Counts:
    """Parameter counts split by what quantization does to them."""

    linear: int  # transformer-block projections: what AWQ/GPTQ/FP8 quantize
    other: int  # embeddings, lm_head, norms, routers: kept at the activation dtype
    attention: int = 0  # the part of `linear` in attention (MXFP4 checkpoints leave it unconverted)

    @property
    def total(self) -> int:
        return self.linear + self.other


def _int(value: object, default: int = 0) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _text(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """Multimodal configs keep the language model's numbers in `text_config`."""
    text = config.get("text_config")
    return {**config, **text} if isinstance(text, Mapping) else config


def _dtype_name(name: str) -> str:
    name = name.lower().removeprefix("torch.")
    return _DTYPE_ALIASES.get(name, name)


def load_dtype(config: Mapping[str, Any], dtype: str = "auto") -> str:
    """The activation dtype vLLM loads with: `--dtype auto` keeps a float16/bfloat16 checkpoint as it
    is and turns float32 (or no declared dtype, which transformers reads as float32) into bfloat16."""
    if dtype != "auto":
        return _dtype_name(dtype)
    declared = config.get("torch_dtype") or config.get("dtype") or _text(config).get("torch_dtype")
    name = _dtype_name(declared) if isinstance(declared, str) else "float32"
    return name if name in ("float16", "bfloat16") else "bfloat16"


def _quant_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    q = config.get("quantization_config") or _text(config).get("quantization_config")
    return q if isinstance(q, Mapping) else {}


def _quant_bits(qc: Mapping[str, Any]) -> tuple[int, str, int]:
    """(weight bits, weight dtype name, group size; 0 = per channel/tensor) of a quantized checkpoint."""
    method = str(qc.get("quant_method", "")).lower()
    if method == "compressed-tensors":
        for group in (qc.get("config_groups") or {}).values():
            weights = group.get("weights") if isinstance(group, Mapping) else None
            weights = weights if isinstance(weights, Mapping) else {}
            bits = _int(weights.get("num_bits"), 16)
            kind = "fp" if weights.get("type") == "float" else "int"
            return bits, f"{kind}{bits}", _int(weights.get("group_size"))
        return 16, "bfloat16", 0
    if "fp8" in method:
        return 8, "fp8", 0
    bits = _int(qc.get("bits", qc.get("w_bit")), 4)
    return bits, f"int{bits}", _int(qc.get("group_size", qc.get("q_group_size")), 128)


def _attention_params(t: Mapping[str, Any], hidden: int, heads: int, kv_heads: int, head_dim: int) -> int:
    if t.get("kv_lora_rank"):
        # DeepSeek MLA: low-rank q (optional) and a shared kv latent, up-projected per head.
        nope, rope = _int(t.get("qk_nope_head_dim")), _int(t.get("qk_rope_head_dim"))
        v_dim, kv_rank, q_rank = (
            _int(t.get("v_head_dim")),
            _int(t["kv_lora_rank"]),
            _int(t.get("q_lora_rank")),
        )
        q = hidden * q_rank + q_rank * heads * (nope + rope) if q_rank else hidden * heads * (nope + rope)
        kv = hidden * (kv_rank + rope) + kv_rank * heads * (nope + v_dim)
        return q + kv + heads * v_dim * hidden
    return hidden * (heads + 2 * kv_heads) * head_dim + heads * head_dim * hidden


def _mlp_params(t: Mapping[str, Any], hidden: int, layers: int) -> tuple[int, int]:
    """(linear, router) parameters of all layers' MLPs; every supported family uses gated MLPs (3 mats)."""
    dense = 3 * hidden * _int(t.get("intermediate_size"))
    if t.get("num_local_experts"):  # Mixtral: experts as wide as a dense MLP
        experts = _int(t["num_local_experts"])
        return layers * experts * dense, layers * hidden * experts
    if t.get("n_routed_experts"):  # DeepSeek-V2/V3: first k layers dense, then routed + shared experts
        experts, moe = _int(t["n_routed_experts"]), 3 * hidden * _int(t.get("moe_intermediate_size"))
        first_dense = min(layers, _int(t.get("first_k_dense_replace")))
        moe_layers = layers - first_dense
        per_moe = (experts + _int(t.get("n_shared_experts"))) * moe
        return first_dense * dense + moe_layers * per_moe, moe_layers * hidden * experts
    if t.get("num_experts") and t.get("moe_intermediate_size"):  # Qwen2-MoE / Qwen3-MoE
        experts, moe = _int(t["num_experts"]), 3 * hidden * _int(t["moe_intermediate_size"])
        shared = 3 * hidden * _int(t.get("shared_expert_intermediate_size"))
        router = hidden * experts + (hidden if shared else 0)
        return layers * (experts * moe + shared), layers * router
    return layers * dense, 0


def _shape(t: Mapping[str, Any]) -> tuple[int, int, int, int, int]:
    """(hidden size, layers, attention heads, KV heads, head dimension) of a text config."""
    hidden, layers, heads = (
        _int(t.get("hidden_size")),
        _int(t.get("num_hidden_layers")),
        _int(t.get("num_attention_heads")),
    )
    kv_heads = _int(t.get("num_key_value_heads"), heads) or heads
    head_dim = _int(t.get("head_dim")) or (hidden // heads if heads else 0)
    return hidden, layers, heads, kv_heads, head_dim


def _param_counts(config: Mapping[str, Any]) -> _Counts:
    t = _text(config)
    hidden, layers, heads, kv_heads, head_dim = _shape(t)
    vocab, model_type = _int(t.get("vocab_size")), str(t.get("model_type", ""))
    attention = layers * _attention_params(t, hidden, heads, kv_heads, head_dim)
    # Qwen2 has q/k/v biases without saying so in its config.
    bias = t.get("attention_bias") is True or model_type in ("qwen2", "qwen2_moe")
    attn_bias = layers * (heads + 2 * kv_heads) * head_dim if bias and not t.get("kv_lora_rank") else 0
    mlp, router = _mlp_params(t, hidden, layers)
    # Gemma-2/3 norm before and after both attention and MLP; MLA adds its two latent norms.
    norms_per_layer = (4 if model_type.startswith("gemma") and model_type != "gemma" else 2) * hidden
    norms_per_layer += _int(t.get("q_lora_rank")) + _int(t.get("kv_lora_rank"))
    tied = t.get("tie_word_embeddings", model_type.startswith(_TIED_BY_DEFAULT))
    embeddings = vocab * hidden * (1 if tied else 2)
    return _Counts(
        linear=attention + mlp,
        other=embeddings + router + attn_bias + layers * norms_per_layer + hidden,
        attention=attention,
    )


def _weights_bytes(
    counts: _Counts,
    index_total_size: int | None,
    config: Mapping[str, Any],
    activation: str,
    quantization: str | None,
) -> tuple[int, str, str]:
    """(bytes, source, weight dtype). Everything but the quantized linears stays at `activation`."""
    act_bits = _DTYPE_BITS.get(activation, 16)
    qc = _quant_config(config)
    if str(qc.get("quant_method", "")).lower() == "mxfp4":
        # The experts alone are MXFP4 (weights_per_gpu counts them per rank, padded as vLLM pads
        # them); what modules_to_not_convert names (attention, router, embeddings) stays 16-bit,
        # as does a dense MLP.
        experts = _mxfp4_experts(config)
        expert_params = experts[0] * experts[1] * 3 * experts[2] * experts[3] if experts else 0
        return (counts.total - expert_params) * act_bits // 8, "config", "mxfp4"
    if qc:
        bits, name, group = _quant_bits(qc)
        if index_total_size:
            # A quantized checkpoint is loaded as stored: its size on disk is its size in memory.
            return index_total_size, "safetensors index", name
        block = qc.get("weight_block_size")
        if bits == 8 and isinstance(block, list) and len(block) == 2:
            scale_bits = counts.linear // (_int(block[0], 1) * _int(block[1], 1)) * 32
        else:
            # One 16-bit scale and one packed zero point per group of `group` weights.
            scale_bits = counts.linear // group * (16 + bits) if group > 0 else 0
        total_bits = counts.linear * bits + scale_bits + counts.other * act_bits
        return total_bits // 8, "config", name
    online_fp8 = quantization is not None and quantization.startswith("fp8")
    if index_total_size:
        declared = config.get("torch_dtype") or config.get("dtype")
        ckpt_bits = (
            _DTYPE_BITS.get(_dtype_name(declared), act_bits) if isinstance(declared, str) else act_bits
        )
        # A float32 checkpoint loaded as bfloat16 takes half its size on disk.
        size = index_total_size * act_bits // ckpt_bits
        if online_fp8:
            size -= counts.linear * (act_bits - 8) // 8
        return size, "safetensors index", "fp8" if online_fp8 else activation
    if online_fp8:
        return (counts.linear * 8 + counts.other * act_bits) // 8, "config", "fp8"
    return counts.total * act_bits // 8, "config", activation


def _mxfp4_experts(config: Mapping[str, Any]) -> tuple[int, int, int, int] | None:
    """(layers, experts, hidden, intermediate) of an MXFP4 checkpoint's MoE layers."""
    t = _text(config)
    experts = _int(t.get("num_local_experts")) or _int(t.get("num_experts"))
    if str(_quant_config(config).get("quant_method", "")).lower() != "mxfp4" or not experts:
        return None
    inter = _int(t.get("moe_intermediate_size")) or _int(t.get("intermediate_size"))
    return _int(t.get("num_hidden_layers")), experts, _int(t.get("hidden_size")), inter


# vLLM pads each rank's MXFP4 expert shapes to what its MoE kernels take (quantization/mxfp4.py
# create_weights 0.10.1-0.13, fused_moe/oracle/mxfp4.py later): the intermediate size to a multiple
# of 128 (Marlin, SM90 FlashInfer, ROCm; 64 or 32 for others) and the hidden size to 256 (Marlin,
# SM100 FlashInfer; 128 or none for others). The largest of them is taken: never fewer bytes.
MXFP4_INTERMEDIATE_ALIGN = 128
MXFP4_HIDDEN_ALIGN = 256
_MXFP4_BLOCK = 32  # values per E8M0 (8-bit) scale


def _round_up(n: int, multiple: int) -> int:
    return math.ceil(n / multiple) * multiple


def mxfp4_expert_bytes_per_gpu(shape: tuple[int, int, int, int], tensor_parallel: int) -> int:
    """One rank's MXFP4 experts: each expert's intermediate dimension split by TP, then padded;
    4-bit weights, an 8-bit scale per 32, and 16-bit biases (gpt-oss has them) per output row."""
    layers, experts, hidden, inter = shape
    inter_p = _round_up(math.ceil(inter / max(1, tensor_parallel)), MXFP4_INTERMEDIATE_ALIGN)
    hidden_p = _round_up(hidden, MXFP4_HIDDEN_ALIGN)
    w13 = 2 * inter_p * (hidden_p // 2 + hidden_p // _MXFP4_BLOCK + 2)
    w2 = hidden_p * (inter_p // 2 + inter_p // _MXFP4_BLOCK + 2)
    return layers * experts * (w13 + w2)


def _layer_kinds(t: Mapping[str, Any], layers: int) -> tuple[int, int, int | None]:
    """(full attention layers, sliding-window layers, window) the way vLLM assigns them."""
    window = _int(t.get("sliding_window")) or None
    types = t.get("layer_types")
    model_type = str(t.get("model_type", ""))
    if isinstance(types, list) and types:
        sliding = sum(1 for kind in types if "sliding" in str(kind))
        full = sum(1 for kind in types if str(kind) in ("full_attention", "attention"))
        return full, sliding if window else 0, window if sliding else None
    if window is None:
        return layers, 0, None
    if model_type == "gemma2":  # even layers slide, odd layers are global (vLLM gemma2.py)
        sliding = (layers + 1) // 2
    elif model_type.startswith("gemma3"):  # every `sliding_window_pattern`-th layer is global
        pattern = _int(t.get("sliding_window_pattern"), 6)
        sliding = sum(1 for i in range(layers) if (i + 1) % pattern)
    elif "use_sliding_window" in t:
        # Qwen2 carries a window it does not use unless asked; then only layers past max_window_layers.
        first = min(layers, _int(t.get("max_window_layers"), 0))
        sliding = layers - first if t["use_sliding_window"] else 0
    else:  # Mistral-style: a window in the config applies to every layer
        sliding = layers
    return layers - sliding, sliding, window if sliding else None


def _kv_bits(kv_cache_dtype: str, activation: str) -> int:
    name = kv_cache_dtype.lower()
    if name == "auto":
        return _DTYPE_BITS.get(activation, 16)
    if name.startswith(("fp8", "int8")):
        return 8
    if name.startswith(("int4", "nvfp4", "ultraquant_4bit")):
        return 4
    return _DTYPE_BITS.get(_dtype_name(name), _DTYPE_BITS.get(activation, 16))


def _max_model_len(t: Mapping[str, Any]) -> int | None:
    """vLLM's derived maximum: the smallest length key, times the RoPE factor except for the rope types
    (llama3, longrope) whose max_position_embeddings already includes it; YaRN scales the original."""
    lengths = [_int(t.get(key)) for key in _MAX_LEN_KEYS if _int(t.get(key)) > 0]
    if not lengths:
        return None
    derived = float(min(lengths))
    rope = t.get("rope_scaling")
    if isinstance(rope, Mapping):
        rope_type = rope.get("rope_type", rope.get("type"))
        if rope_type not in ("su", "longrope", "llama3", "mrope", "default"):
            if rope_type == "yarn":
                derived = float(_int(rope.get("original_max_position_embeddings"), int(derived)))
            factor = rope.get("factor", 1.0)
            derived *= float(factor) if isinstance(factor, int | float) else 1.0
    return int(derived)


def estimate(
    config: Mapping[str, Any],
    index_total_size: int | None = None,
    *,
    dtype: str = "auto",
    quantization: str | None = None,
    kv_cache_dtype: str = "auto",
) -> ModelEstimate:
    """The estimate for `config` as vLLM would load it with these flags."""
    t = _text(config)
    _, layers, _, kv_heads, head_dim = _shape(t)
    activation = load_dtype(config, dtype)
    counts = _param_counts(config)
    qc = _quant_config(config)
    method = quantization or (str(qc["quant_method"]) if "quant_method" in qc else None)
    weights, source, weight_dtype = _weights_bytes(counts, index_total_size, config, activation, quantization)

    act_bits = _DTYPE_BITS.get(activation, 16)
    linear_bits = _DTYPE_BITS.get(weight_dtype, act_bits) if weight_dtype != "mxfp4" else act_bits
    tensors = _load_tensors(config, linear_bits, act_bits)
    partial = t.get("partial_rotary_factor")
    rope_dim = _int(t.get("qk_rope_head_dim")) or int(
        head_dim * (partial if isinstance(partial, int | float) else 1)
    )
    rope_cache = _rope_positions(t) * rope_dim * act_bits // 8

    kv_bits = _kv_bits(kv_cache_dtype, activation)
    mla = bool(t.get("kv_lora_rank"))
    if mla:
        per_layer = (_int(t["kv_lora_rank"]) + _int(t.get("qk_rope_head_dim"))) * kv_bits // 8
        kv_heads = 1
    else:
        per_layer = 2 * kv_heads * head_dim * kv_bits // 8
    full, sliding, window = _layer_kinds(t, layers)
    architectures = config.get("architectures")
    architecture = (
        str(architectures[0])
        if isinstance(architectures, list) and architectures
        else str(t.get("model_type", "unknown"))
    )
    return ModelEstimate(
        architecture=architecture,
        params=counts.total,
        weights_bytes=weights,
        weights_source=source,
        weight_dtype=weight_dtype,
        quantization=method,
        kv_cache_bytes_per_token=(full + sliding) * per_layer,
        full_attention_layers=full,
        sliding_window_layers=sliding,
        sliding_window=window,
        max_model_len=_max_model_len(t),
        mla=mla,
        num_kv_heads=kv_heads,
        kv_bytes_per_token_per_layer=per_layer,
        mxfp4_experts=_mxfp4_experts(config),
        tensors=tensors,
        rope_cache_bytes=rope_cache,
    )


def _rope_positions(t: Mapping[str, Any]) -> int:
    """How many positions vLLM's rotary cache holds: max_position_embeddings, or for YaRN and
    dynamic NTK scaling the original maximum times the factor (rotary_embedding/, 0.10-0.32)."""
    positions = _int(t.get("max_position_embeddings"))
    rope = t.get("rope_scaling") or t.get("rope_parameters")
    if not isinstance(rope, Mapping):
        return positions
    kind = str(rope.get("rope_type", rope.get("type", "")))
    factor = rope.get("factor")
    if kind in ("yarn", "dynamic") and isinstance(factor, int | float) and factor > 0:
        original = _int(rope.get("original_max_position_embeddings")) or positions
        return int(original * factor)
    return positions


def _load_tensors(
    config: Mapping[str, Any], linear_bits: int, act_bits: int
) -> tuple[tuple[int, int, int, bool], ...]:
    """The large tensors vLLM loads, by its fused layouts: qkv_proj and o_proj, gate_up_proj and
    down_proj (each MoE layer's experts as one w13 and one w2), the embedding and an untied lm_head
    (the vocabulary padded to 64). MLA's attention and MXFP4's experts are left out."""
    t = _text(config)
    hidden, layers, heads, kv_heads, head_dim = _shape(t)
    model_type = str(t.get("model_type", ""))
    found: list[tuple[int, int, int, bool]] = []
    if not t.get("kv_lora_rank"):
        found += [((heads + 2 * kv_heads) * head_dim * hidden, layers, linear_bits, True)]
        found += [(heads * head_dim * hidden, layers, linear_bits, True)]
    inter = _int(t.get("intermediate_size"))
    experts = (
        _int(t.get("num_local_experts")) or _int(t.get("n_routed_experts")) or _int(t.get("num_experts"))
    )
    moe_inter = _int(t.get("moe_intermediate_size")) or inter
    dense_layers = layers
    if experts and _mxfp4_experts(config) is None:
        dense_layers = min(layers, _int(t.get("first_k_dense_replace"))) if t.get("n_routed_experts") else 0
        moe_layers = layers - dense_layers
        found += [(experts * 2 * moe_inter * hidden, moe_layers, linear_bits, True)]
        found += [(experts * moe_inter * hidden, moe_layers, linear_bits, True)]
        shared = _int(t.get("shared_expert_intermediate_size")) or _int(t.get("n_shared_experts")) * moe_inter
        if shared:
            found += [
                (2 * shared * hidden, moe_layers, linear_bits, True),
                (shared * hidden, moe_layers, linear_bits, True),
            ]
    elif experts:
        dense_layers = 0
    if dense_layers and inter:
        found += [
            (2 * inter * hidden, dense_layers, linear_bits, True),
            (inter * hidden, dense_layers, linear_bits, True),
        ]
    vocab = _round_up(_int(t.get("vocab_size")), 64)
    tied = t.get("tie_word_embeddings", model_type.startswith(_TIED_BY_DEFAULT))
    found += [(vocab * hidden, 1 if tied else 2, act_bits, True)]
    return tuple(found)


def weights_per_gpu(
    est: ModelEstimate,
    tensor_parallel: int = 1,
    pipeline_parallel: int = 1,
    *,
    split_cap: int | None = None,
) -> int:
    """What one rank holds once loaded: the checkpoint split evenly over all ranks (an
    approximation, since embeddings, norms and layers that do not divide evenly land unequally,
    and PP's first and last ranks also hold the embedding and lm_head), the rotary cache, and,
    where vLLM caps the allocator's splits while loading (`split_cap`), its rounding."""
    ranks = max(1, tensor_parallel) * max(1, pipeline_parallel)
    experts = 0
    if est.mxfp4_experts is not None:
        experts = math.ceil(
            mxfp4_expert_bytes_per_gpu(est.mxfp4_experts, tensor_parallel) / max(1, pipeline_parallel)
        )
    rounding = load_rounding_per_gpu(est, tensor_parallel, pipeline_parallel, split_cap) if split_cap else 0
    return math.ceil(est.weights_bytes / ranks) + experts + est.rope_cache_bytes + rounding


# PyTorch's caching allocator gives a request of 10 MiB or more a segment of whole 2 MiB, and
# splits a block only when the request is under max_split_size: with vLLM's cap (20 MiB while it
# loads, 0.21+), every tensor at or above the cap keeps its segment's tail, counted as allocated.
ALLOCATOR_SEGMENT = 2 << 20


def load_rounding_per_gpu(
    est: ModelEstimate, tensor_parallel: int, pipeline_parallel: int, split_cap: int
) -> int:
    """The bytes one rank's loaded tensors take beyond their size under a split cap: the tails of
    the segments of those at or above it (tails of smaller ones are a few MiB, left out)."""
    tp, pp = max(1, tensor_parallel), max(1, pipeline_parallel)
    extra = 0
    for params, count, bits, split in est.tensors:
        size = math.ceil(params / (tp if split else 1)) * bits // 8
        if size >= split_cap:
            per_rank = math.ceil(count / pp)
            extra += per_rank * (_round_up(size, ALLOCATOR_SEGMENT) - size)
    return extra


def _per_layer_per_gpu(est: ModelEstimate, tensor_parallel: int) -> int:
    if est.mla:
        return est.kv_bytes_per_token_per_layer  # every rank holds the whole latent
    per_head = est.kv_bytes_per_token_per_layer // est.num_kv_heads
    # With fewer KV heads than ranks, vLLM replicates them: each rank still holds one.
    return per_head * max(1, est.num_kv_heads // max(1, tensor_parallel))


def kv_bytes_per_token_per_gpu(
    est: ModelEstimate, tensor_parallel: int = 1, pipeline_parallel: int = 1
) -> int:
    """One rank's KV bytes for one more token, counting its sliding-window layers too (an upper bound)."""
    pp = max(1, pipeline_parallel)
    layers = math.ceil(est.full_attention_layers / pp) + math.ceil(est.sliding_window_layers / pp)
    return layers * _per_layer_per_gpu(est, tensor_parallel)


def kv_bytes(est: ModelEstimate, tokens: int, tensor_parallel: int = 1, pipeline_parallel: int = 1) -> int:
    """One rank's KV bytes for one sequence of `tokens`: sliding-window layers keep at most the window."""
    pp = max(1, pipeline_parallel)
    per_layer = _per_layer_per_gpu(est, tensor_parallel)
    windowed = min(tokens, est.sliding_window) if est.sliding_window else tokens
    full = math.ceil(est.full_attention_layers / pp) * tokens
    sliding = math.ceil(est.sliding_window_layers / pp) * windowed
    return (full + sliding) * per_layer
