"""Memory estimates against the published config.json of real models; every expected number is worked
out by hand below (layers x heads x head dim x bytes), never by calling the code under test."""

from __future__ import annotations

from typing import Any

import pytest
from model_configs import (
    DEEPSEEK_V3,
    GEMMA2_9B,
    GPT_OSS_20B,
    LLAMA_31_8B,
    LLAMA_31_70B,
    MISTRAL_7B,
    MIXTRAL_8X7B,
    QWEN3_4B_AWQ,
    QWEN25_7B,
    QWEN25_72B,
)

from vllm_guard import memory

GIB = 1 << 30

# Llama-3.1-8B by hand: embeddings and an untied lm_head, then per layer q + k + v + o, the gated MLP
# (gate, up, down) and two RMSNorms, then the final norm.
LLAMA_8B_LINEAR = 32 * (4096 * 4096 + 2 * 4096 * 1024 + 4096 * 4096 + 3 * 4096 * 14336)
LLAMA_8B_OTHER = 2 * 128256 * 4096 + 32 * 2 * 4096 + 4096
LLAMA_8B_PARAMS = LLAMA_8B_LINEAR + LLAMA_8B_OTHER  # 8_030_261_248

LLAMA_70B_PARAMS = (
    80 * (8192 * 8192 + 2 * 8192 * 1024 + 8192 * 8192 + 3 * 8192 * 28672 + 2 * 8192)
    + 2 * 128256 * 8192
    + 8192
)  # 70_553_706_496

# DeepSeek-V3 by hand. Per layer MLA: q_a (hidden -> q rank), q_b (q rank -> heads x (nope + rope)),
# kv_a (hidden -> kv rank + rope), kv_b (kv rank -> heads x (nope + v)), o (heads x v -> hidden).
DS_ATTN = (
    7168 * 1536 + 1536 * 128 * (128 + 64) + 7168 * (512 + 64) + 512 * 128 * (128 + 128) + 128 * 128 * 7168
)
# 3 dense layers, then 58 layers of 256 routed + 1 shared expert of width 2048.
DS_MLP = 3 * (3 * 7168 * 18432) + 58 * (256 + 1) * (3 * 7168 * 2048)
DS_LINEAR = 61 * DS_ATTN + DS_MLP
# Embeddings + lm_head, 58 routers, per-layer norms (2 x hidden + q and kv latent norms), final norm.
DS_OTHER = 2 * 129280 * 7168 + 58 * 7168 * 256 + 61 * (2 * 7168 + 1536 + 512) + 7168

# Gemma-2-9B: tied embeddings, four norms per layer.
GEMMA_PARAMS = (
    42 * (3584 * (16 + 2 * 8) * 256 + 16 * 256 * 3584 + 3 * 3584 * 14336 + 4 * 3584) + 256000 * 3584 + 3584
)  # 9_241_705_984


def within(value: float, expected: float, fraction: float = 0.03) -> bool:
    return abs(value - expected) <= fraction * expected


def test_llama_31_8b() -> None:
    est = memory.estimate(LLAMA_31_8B)
    assert est.architecture == "LlamaForCausalLM"
    assert est.params == LLAMA_8B_PARAMS
    assert within(est.params, 8.03e9)
    assert est.weights_bytes == LLAMA_8B_PARAMS * 2  # bfloat16
    assert (est.weights_source, est.weight_dtype, est.quantization) == ("config", "bfloat16", None)
    # 8 KV heads, not the 32 attention heads of the rule of thumb (that would be 4x this).
    assert est.kv_cache_bytes_per_token == 2 * 32 * 8 * 128 * 2 == 131072
    assert (est.full_attention_layers, est.sliding_window_layers, est.sliding_window) == (32, 0, None)
    assert est.max_model_len == 131072  # llama3 rope: max_position_embeddings already includes it
    assert not est.mla


def test_llama_31_8b_kv_per_gpu_and_per_sequence() -> None:
    est = memory.estimate(LLAMA_31_8B)
    assert memory.kv_bytes_per_token_per_gpu(est, tensor_parallel=2) == 2 * 32 * 4 * 128 * 2
    assert memory.kv_bytes_per_token_per_gpu(est, pipeline_parallel=2) == 2 * 16 * 8 * 128 * 2
    assert memory.kv_bytes(est, 131072) == 131072 * 131072  # 16 GiB for one full-length sequence
    assert memory.kv_bytes(est, 1000, tensor_parallel=4) == 1000 * 2 * 32 * 2 * 128 * 2


def test_fp8_kv_cache_halves_it() -> None:
    assert memory.estimate(LLAMA_31_8B, kv_cache_dtype="fp8").kv_cache_bytes_per_token == 2 * 32 * 8 * 128 * 1
    assert memory.estimate(LLAMA_31_8B, kv_cache_dtype="fp8_e5m2").kv_cache_bytes_per_token == 65536


def test_explicit_float32_doubles_weights_and_auto_kv() -> None:
    est = memory.estimate(LLAMA_31_8B, dtype="float32")
    assert est.weights_bytes == LLAMA_8B_PARAMS * 4
    assert est.weight_dtype == "float32"
    assert est.kv_cache_bytes_per_token == 2 * 32 * 8 * 128 * 4


def test_online_fp8_on_a_16_bit_checkpoint_halves_the_linear_layers_only() -> None:
    est = memory.estimate(LLAMA_31_8B, quantization="fp8")
    assert est.weights_bytes == LLAMA_8B_LINEAR * 1 + LLAMA_8B_OTHER * 2
    assert (est.weight_dtype, est.quantization) == ("fp8", "fp8")
    # From the index: the linear layers lose one of their two bytes each.
    size = 16_000_000_000  # an arbitrary total_size
    from_index = memory.estimate(LLAMA_31_8B, size, quantization="fp8_per_tensor")
    assert from_index.weights_bytes == size - LLAMA_8B_LINEAR
    assert from_index.weights_source == "safetensors index"


def test_the_index_total_size_is_preferred() -> None:
    est = memory.estimate(LLAMA_31_8B, 16_060_000_000)
    assert (est.weights_bytes, est.weights_source) == (16_060_000_000, "safetensors index")


def test_llama_31_70b() -> None:
    est = memory.estimate(LLAMA_31_70B)
    assert est.params == LLAMA_70B_PARAMS
    assert within(est.params, 70.6e9)
    assert est.weights_bytes == LLAMA_70B_PARAMS * 2 == 141_107_412_992
    assert est.kv_cache_bytes_per_token == 2 * 80 * 8 * 128 * 2 == 327680
    # every rank builds the rotary cache whole: 131072 positions x 128 x bf16
    assert est.rope_cache_bytes == 131072 * 128 * 2
    assert memory.weights_per_gpu(est, tensor_parallel=4) == 141_107_412_992 // 4 + est.rope_cache_bytes
    assert memory.weights_per_gpu(est, tensor_parallel=2, pipeline_parallel=2) == 141_107_412_992 // 4 + (
        est.rope_cache_bytes
    )
    # TP 8 leaves one KV head per rank; TP 16 replicates it rather than splitting it.
    assert memory.kv_bytes_per_token_per_gpu(est, tensor_parallel=8) == 2 * 80 * 1 * 128 * 2
    assert memory.kv_bytes_per_token_per_gpu(est, tensor_parallel=16) == 2 * 80 * 1 * 128 * 2
    assert memory.kv_bytes_per_token_per_gpu(est, 2, 3) == 2 * 27 * 4 * 128 * 2  # ceil(80 / 3) = 27


def test_qwen25_72b_carries_a_window_it_does_not_use() -> None:
    est = memory.estimate(QWEN25_72B)
    # q/k/v biases: (64 + 2 x 8) x 128 per layer.
    per_layer = 8192 * 8192 + 2 * 8192 * 1024 + (64 + 16) * 128 + 8192 * 8192 + 3 * 8192 * 29568 + 2 * 8192
    assert est.params == 80 * per_layer + 2 * 152064 * 8192 + 8192
    assert within(est.params, 72.7e9)
    assert est.kv_cache_bytes_per_token == 2 * 80 * 8 * 128 * 2
    assert (est.sliding_window_layers, est.sliding_window) == (0, None)
    assert est.max_model_len == 32768


def test_mixtral_8x7b() -> None:
    est = memory.estimate(MIXTRAL_8X7B)
    per_layer = 4096 * 4096 * 2 + 2 * 4096 * 1024 + 8 * 3 * 4096 * 14336 + 4096 * 8 + 2 * 4096
    assert est.params == 32 * per_layer + 2 * 32000 * 4096 + 4096
    assert within(est.params, 46.7e9)
    assert est.weights_bytes == est.params * 2
    assert est.kv_cache_bytes_per_token == 2 * 32 * 8 * 128 * 2
    assert est.sliding_window is None
    assert est.max_model_len == 32768


def test_deepseek_v3_mla_and_fp8_checkpoint() -> None:
    est = memory.estimate(DEEPSEEK_V3)
    assert est.params == DS_LINEAR + DS_OTHER
    assert within(est.params, 671e9)
    # FP8 linears (1 byte) + one float32 scale per 128x128 block + bf16 for the rest.
    assert est.weights_bytes == DS_LINEAR + DS_LINEAR // (128 * 128) * 4 + DS_OTHER * 2
    assert (est.weight_dtype, est.quantization, est.mla) == ("fp8", "fp8", True)
    # One latent per layer: kv_lora_rank + rope dim, no factor 2.
    assert est.kv_cache_bytes_per_token == 61 * (512 + 64) * 2 == 70272
    # Every rank holds the whole latent: TP does not divide it.
    assert memory.kv_bytes_per_token_per_gpu(est, tensor_parallel=8) == 70272
    assert memory.kv_bytes_per_token_per_gpu(est, pipeline_parallel=2) == 31 * 576 * 2
    assert est.max_model_len == 4096 * 40  # YaRN: original length x factor


def test_gemma2_9b_sliding_window() -> None:
    est = memory.estimate(GEMMA2_9B)
    assert est.params == GEMMA_PARAMS
    assert within(est.params, 9.24e9)
    # A float32 checkpoint loads as bfloat16 under --dtype auto.
    assert (est.weights_bytes, est.weight_dtype) == (GEMMA_PARAMS * 2, "bfloat16")
    assert (est.full_attention_layers, est.sliding_window_layers, est.sliding_window) == (21, 21, 4096)
    assert est.kv_cache_bytes_per_token == 2 * 42 * 8 * 256 * 2 == 344064
    per_layer = 2 * 8 * 256 * 2
    assert memory.kv_bytes(est, 8192) == 21 * 8192 * per_layer + 21 * 4096 * per_layer
    assert memory.kv_bytes(est, 1000) == 42 * 1000 * per_layer
    assert memory.kv_bytes(est, 8192, tensor_parallel=2) == (21 * 8192 + 21 * 4096) * 2 * 4 * 256 * 2
    assert est.max_model_len == 8192
    # With an index the float32 checkpoint's size on disk halves.
    assert memory.estimate(GEMMA2_9B, 36_000_000_000).weights_bytes == 18_000_000_000


def test_awq_checkpoint_with_explicit_head_dim() -> None:
    est = memory.estimate(QWEN3_4B_AWQ)
    linear = 36 * (2560 * (32 + 2 * 8) * 128 + 32 * 128 * 2560 + 3 * 2560 * 9728)
    other = 151936 * 2560 + 36 * 2 * 2560 + 2560  # tied embeddings, norms
    # 4 bits per linear weight + a 16-bit scale and a 4-bit zero per group of 128; float16 elsewhere.
    assert est.weights_bytes == (linear * 4 + linear // 128 * (16 + 4) + other * 16) // 8
    assert (est.weight_dtype, est.quantization) == ("int4", "awq")
    assert est.kv_cache_bytes_per_token == 2 * 36 * 8 * 128 * 2  # head_dim 128, not 2560 // 32
    # A quantized checkpoint's index size is its loaded size.
    assert memory.estimate(QWEN3_4B_AWQ, 2_670_000_000).weights_bytes == 2_670_000_000


def test_mistral_window_applies_to_every_layer() -> None:
    est = memory.estimate(MISTRAL_7B)
    assert (est.full_attention_layers, est.sliding_window_layers, est.sliding_window) == (0, 32, 4096)
    assert memory.kv_bytes(est, 32768) == 32 * 4096 * 2 * 8 * 128 * 2
    # No torch_dtype: transformers reads float32, which vLLM's auto loads as bfloat16.
    assert est.weight_dtype == "bfloat16"


# Synthetic configs below: shapes chosen for the rule under test, not a published model.


def test_layer_types_list() -> None:
    config = {
        "model_type": "synthetic",
        "hidden_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "vocab_size": 1000,
        "intermediate_size": 2048,
        "sliding_window": 512,
        "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
        "torch_dtype": "bfloat16",
    }
    est = memory.estimate(config)
    assert (est.full_attention_layers, est.sliding_window_layers, est.sliding_window) == (1, 3, 512)
    assert memory.kv_bytes(est, 2048) == (1 * 2048 + 3 * 512) * 2 * 2 * 128 * 2


def test_text_config_is_read_for_multimodal_models() -> None:
    config = {
        "architectures": ["SyntheticForConditionalGeneration"],
        "torch_dtype": "bfloat16",
        "vision_config": {"hidden_size": 1152},
        "text_config": {k: v for k, v in LLAMA_31_8B.items() if k not in ("architectures", "torch_dtype")},
    }
    est = memory.estimate(config)
    assert est.architecture == "SyntheticForConditionalGeneration"
    assert est.kv_cache_bytes_per_token == 2 * 32 * 8 * 128 * 2
    assert est.params == LLAMA_8B_PARAMS


@pytest.mark.parametrize(
    ("weights", "dtype"),
    [({"num_bits": 8, "type": "float"}, "fp8"), ({"num_bits": 4, "type": "int", "group_size": 128}, "int4")],
)
def test_compressed_tensors(weights: dict[str, Any], dtype: str) -> None:
    qc = {"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": weights}}}
    est = memory.estimate({**LLAMA_31_8B, "quantization_config": qc})
    assert (est.weight_dtype, est.quantization) == (dtype, "compressed-tensors")
    if dtype == "fp8":
        assert est.weights_bytes == LLAMA_8B_LINEAR + LLAMA_8B_OTHER * 2
    else:
        expected = (LLAMA_8B_LINEAR * 4 + LLAMA_8B_LINEAR // 128 * 20 + LLAMA_8B_OTHER * 16) // 8
        assert est.weights_bytes == expected


def test_mxfp4_experts_are_counted_per_gpu_padded_as_vllm_pads_them() -> None:
    # vLLM printed "Model loading took 13.72 GiB" for gpt-oss-20b on an A100 (0.19.0; the myoceane.fr
    # post in tests/preflight/startups.json): the experts in 4 bits with an 8-bit scale per 32,
    # padded to 128 x 256, the attention, router and embeddings (modules_to_not_convert) in bf16
    est = memory.estimate(GPT_OSS_20B)
    assert est.weight_dtype == "mxfp4" and est.mxfp4_experts == (24, 32, 2880, 2880)
    assert abs(memory.weights_per_gpu(est) / (13.72 * GIB) - 1) < 0.01
    # without the padding, a tenth less: what preflight counted before
    unpadded = est.mxfp4_experts[0] * est.mxfp4_experts[1] * 3 * 2880 * 2880 * 4.25 / 8
    assert memory.weights_per_gpu(est) - est.weights_bytes > unpadded
    # tensor parallelism splits each expert's intermediate dimension before it is padded
    assert (
        memory.mxfp4_expert_bytes_per_gpu((24, 32, 2880, 2880), 4)
        > memory.mxfp4_expert_bytes_per_gpu((24, 32, 2880, 2880), 1) / 4
    )


def test_vllms_split_cap_while_loading_rounds_each_large_weight_up_to_its_segment() -> None:
    # vLLM 0.21+ loads under max_split_size_mb=20: a weight of 20 MiB or more keeps its 2 MiB
    # segment's tail. Qwen2.5-7B in bf16 on one GPU: qkv 31.5 MiB -> 32, o_proj 24.5 -> 26,
    # gate_up 259 -> 260, down 129.5 -> 130 (3.5 MiB a layer, 28 layers), the embedding and the
    # untied lm_head 0.5 each; vLLM 0.29 printed 14.29 GiB on an RTX 5090 (wrbooth/vllm-serve-bench)
    est = memory.estimate(QWEN25_7B)
    mib = 1 << 20
    assert memory.load_rounding_per_gpu(est, 1, 1, 20 * mib) == (28 * 3.5 + 2 * 0.5) * mib
    assert est.rope_cache_bytes == 32768 * 128 * 2
    loaded = memory.weights_per_gpu(est, split_cap=20 * mib)
    assert round(loaded / GIB, 2) == 14.29
    # over two ranks each half is its own request: qkv (15.75 MiB) and o_proj (12.25) fall under
    # the cap, gate_up 129.5 -> 130, down 64.75 -> 66, the embedding and lm_head 519.75 -> 520
    assert memory.load_rounding_per_gpu(est, 2, 1, 20 * mib) == (28 * (0.5 + 1.25) + 2 * 0.25) * mib


def test_yarns_rotary_cache_holds_the_original_length_times_its_factor() -> None:
    # Qwen3 served past its 40960 with YaRN (factor 4 over 32768): vLLM's cache holds 131072
    yarn = {
        **LLAMA_31_8B,
        "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    }
    assert memory.estimate(yarn).rope_cache_bytes == 131072 * 128 * 2
    partial = {**LLAMA_31_8B, "rope_scaling": None, "partial_rotary_factor": 0.5}
    assert memory.estimate(partial).rope_cache_bytes == 131072 * 64 * 2
    odd = {**LLAMA_31_8B, "rope_scaling": None, "partial_rotary_factor": "half"}
    assert memory.estimate(odd).rope_cache_bytes == 131072 * 128 * 2
