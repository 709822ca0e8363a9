"""Pure helpers: the models and GPUs the memory tests use, and a one-call path through the model."""

from __future__ import annotations

from typing import Any

from vllm_guard.sim import config, flags, models
from vllm_guard.sim import memory as mem
from vllm_guard.sim.memory import GiB

LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
# /work/shared/vllm/make_tiny_llama.py: the model of every real-cpu capture
TINY = models.from_config(
    {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 4096,
        "vocab_size": 1024,
        "torch_dtype": "float32",
    }
)


def gpu(total_gib: float = 24, used_gib: float = 0, cc: tuple[int, int] = (8, 9), count: int = 1) -> mem.Gpu:
    return mem.Gpu(int(total_gib * GiB), int(used_gib * GiB), cc, count, "NVIDIA L4")


def resolve(model: str | models.ModelShape, *argv: str, on: mem.Gpu | None = None) -> config.Resolution:
    shape = models.TABLE[model] if isinstance(model, str) else model
    parsed = flags.parse(["serve", "m", *argv], "0.33.0", {})
    return config.resolve(parsed, shape, on or gpu(), {})


def run(
    model: str | models.ModelShape,
    *argv: str,
    on: mem.Gpu | None = None,
    profile_graphs: bool = True,
    overshoot_gib: float = 0,
) -> tuple[mem.Budget, mem.Outcome]:
    on = on or gpu()
    resolution = resolve(model, *argv, on=on)
    assert resolution.error is None, resolution.error
    assert resolution.spec is not None
    return mem.evaluate(resolution.spec, on, profile_graphs, int(overshoot_gib * GiB))


def outcome(
    model: str | models.ModelShape,
    *argv: str,
    on: mem.Gpu | None = None,
    profile_graphs: bool = True,
    overshoot_gib: float = 0,
) -> Any:
    return run(model, *argv, on=on, profile_graphs=profile_graphs, overshoot_gib=overshoot_gib)[1]
