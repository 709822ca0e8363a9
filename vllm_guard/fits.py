"""The arithmetic the ladder's fits and preflight share, so that both land on the same flags."""

from __future__ import annotations

import math

BLOCK_SIZE = 16  # vLLM's KV block size when --block-size is not given
FP8_MIN_CAPABILITY = (7, 5)  # Fp8Config.get_min_capability() since vLLM 0.14 (reference.md §1.9)
UTILIZATION_MARGIN = 0.02  # below what is free: other processes' memory moves a little


def utilization_for(free_bytes: float, total_bytes: float) -> float:
    """The --gpu-memory-utilization that fits what is free: free / total less the margin,
    rounded down to 0.01 (vLLM's start-up check wants utilization x total to be free)."""
    return math.floor((free_bytes / total_bytes - UTILIZATION_MARGIN) * 100) / 100


def fp8_capable(capability: tuple[int, int]) -> bool:
    return capability >= FP8_MIN_CAPABILITY
