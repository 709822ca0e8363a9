"""What the GPUs are and hold: NVML reads, CUDA's visible devices, snapshots, cards to plan for.
The package's public names are here; the value types live in the pure core (vllm_guard.facts)."""

from __future__ import annotations

from vllm_guard.facts import GpuFacts, GpuInfo, GpuProcess
from vllm_guard.gpu.cards import CARDS, planned
from vllm_guard.gpu.nvml import DeviceMemory, GpuProbe, Nvml, process_describer, read_facts, wait_for_release
from vllm_guard.gpu.snapshot import facts_from_json, facts_to_json

__all__ = [
    "CARDS",
    "DeviceMemory",
    "GpuFacts",
    "GpuInfo",
    "GpuProbe",
    "GpuProcess",
    "Nvml",
    "facts_from_json",
    "facts_to_json",
    "planned",
    "process_describer",
    "read_facts",
    "wait_for_release",
]
