"""The model: its shape (from a folder's config.json or a table of real models) and where it is found.

The table holds the real shapes from each model's published config.json. Finding a model follows
vLLM/transformers: an existing folder is local; anything else is a Hub repo id, and a string that
is not a valid repo id (an absolute path that does not exist) fails like real-cpu case b.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ModelShape:
    architecture: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    torch_dtype: str  # as config.json says: bfloat16, float16, float32
    tie_word_embeddings: bool
    quant_method: str | None = None  # quantization_config.quant_method of a quantized checkpoint
    quant_bits: int | None = None

    def linear_params(self) -> int:
        """Parameters in the attention and MLP projections (what weight quantization shrinks)."""
        h, hd = self.hidden_size, self.head_dim
        q = self.num_attention_heads * hd
        kv = self.num_key_value_heads * hd
        per_layer = h * (q + 2 * kv) + q * h + 3 * h * self.intermediate_size
        return per_layer * self.num_hidden_layers

    def embedding_params(self) -> int:
        copies = 1 if self.tie_word_embeddings else 2
        return copies * self.vocab_size * self.hidden_size

    def norm_params(self) -> int:
        return (2 * self.num_hidden_layers + 1) * self.hidden_size

    def params(self) -> int:
        return self.linear_params() + self.embedding_params() + self.norm_params()


def _llama(
    arch: str,
    dims: tuple[int, int, int, int, int, int, int],
    *,
    tie: bool = False,
    head_dim: int | None = None,
) -> ModelShape:
    """dims: hidden, layers, attention heads, KV heads, intermediate, vocabulary, max positions."""
    h, layers, heads, kv, inter, vocab, pos = dims
    return ModelShape(arch, h, layers, heads, kv, head_dim or h // heads, inter, vocab, pos, "bfloat16", tie)


LLAMA, QWEN2, QWEN3, MISTRAL = (
    "LlamaForCausalLM",
    "Qwen2ForCausalLM",
    "Qwen3ForCausalLM",
    "MistralForCausalLM",
)
# Real shapes, from each repository's config.json on the Hugging Face Hub.
TABLE: dict[str, ModelShape] = {
    "meta-llama/Llama-3.1-8B-Instruct": _llama(LLAMA, (4096, 32, 32, 8, 14336, 128256, 131072)),
    "meta-llama/Llama-3.1-8B": _llama(LLAMA, (4096, 32, 32, 8, 14336, 128256, 131072)),
    "meta-llama/Llama-3.1-70B-Instruct": _llama(LLAMA, (8192, 80, 64, 8, 28672, 128256, 131072)),
    "meta-llama/Llama-3.2-1B-Instruct": _llama(LLAMA, (2048, 16, 32, 8, 8192, 128256, 131072), tie=True),
    "Qwen/Qwen2.5-7B-Instruct": _llama(QWEN2, (3584, 28, 28, 4, 18944, 152064, 32768)),
    "Qwen/Qwen2.5-72B-Instruct": _llama(QWEN2, (8192, 80, 64, 8, 29568, 152064, 32768)),
    "Qwen/Qwen2.5-0.5B-Instruct": _llama(QWEN2, (896, 24, 14, 2, 4864, 151936, 32768), tie=True),
    "Qwen/Qwen3-0.6B": _llama(QWEN3, (1024, 28, 16, 8, 3072, 151936, 40960), tie=True, head_dim=128),
    "mistralai/Mistral-7B-Instruct-v0.3": _llama(MISTRAL, (4096, 32, 32, 8, 14336, 32768, 32768)),
}

# huggingface_hub's validate_repo_id: `name` or `namespace/name`, word characters, `-`, `.`
_REPO_ID = re.compile(r"^(\b[\w\-.]+\b/)?\b[\w\-.]+\b$")


def is_valid_repo_id(name: str) -> bool:
    return bool(_REPO_ID.match(name)) and "--" not in name and ".." not in name and len(name) <= 96


class Lookup(Enum):
    """Why a model could not be had (each maps to one real failure text in messages.py)."""

    INVALID_REPO_ID = "invalid_repo_id"  # real-cpu b: a missing path taken for a repo id
    NO_CONFIG = "no_config"  # a folder without config.json
    OFFLINE_NOT_CACHED = "offline_not_cached"  # real-cpu c1/c3: HF_HUB_OFFLINE=1
    HUB_UNREACHABLE = "hub_unreachable"  # real-cpu c4: no network
    NOT_FOUND = "not_found"  # the Hub has no such repo
    GATED = "gated"  # gated repo and no token


@dataclass(frozen=True, slots=True)
class Found:
    shape: ModelShape
    local: bool


def find(
    model: str, *, gated: frozenset[str], token: bool, offline: bool, hub_reachable: bool
) -> Found | Lookup:
    """Where vLLM would get MODEL from, or why it cannot. Table models count as cached."""
    path = Path(model).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            return Lookup.NO_CONFIG
        return Found(from_config(json.loads(config.read_text(encoding="utf-8"))), local=True)
    if not is_valid_repo_id(model):
        return Lookup.INVALID_REPO_ID
    shape = TABLE.get(model)
    if shape is not None and (offline or model not in gated or token):
        return Found(shape, local=False)
    if offline:
        return Lookup.OFFLINE_NOT_CACHED
    if not hub_reachable:
        return Lookup.HUB_UNREACHABLE
    if model in gated and not token:
        return Lookup.GATED
    return Lookup.NOT_FOUND


def from_config(config: dict[str, Any]) -> ModelShape:
    """The fields of a transformers config.json that size a model (missing ones get HF defaults)."""
    text = config.get("text_config")
    if isinstance(text, dict):  # multimodal wrappers keep the language model's shape inside
        config = {**text, "architectures": config.get("architectures"), **_quant(config)}
    hidden = int(config.get("hidden_size", 4096))
    heads = int(config.get("num_attention_heads", 32))
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    quant = config.get("quantization_config")
    method: str | None = None
    bits: int | None = None
    if isinstance(quant, dict):
        method = str(quant.get("quant_method", "")) or None
        raw_bits = quant.get("bits") or quant.get("w_bit")
        bits = int(raw_bits) if raw_bits else None
    architectures = config.get("architectures") or ["LlamaForCausalLM"]
    return ModelShape(
        architecture=str(architectures[0]),
        hidden_size=hidden,
        num_hidden_layers=int(config.get("num_hidden_layers", 32)),
        num_attention_heads=heads,
        num_key_value_heads=int(kv_heads),
        head_dim=int(head_dim),
        intermediate_size=int(config.get("intermediate_size", 4 * hidden)),
        vocab_size=int(config.get("vocab_size", 32000)),
        max_position_embeddings=int(config.get("max_position_embeddings", 2048)),
        torch_dtype=str(config.get("torch_dtype") or config.get("dtype") or "float32"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        quant_method=method,
        quant_bits=bits,
    )


def _quant(config: dict[str, Any]) -> dict[str, Any]:
    quant = config.get("quantization_config")
    return {"quantization_config": quant} if quant is not None else {}
