"""Cards to plan for (`--gpu NAME --gpus N`): what NVML reports of common GPUs."""

from __future__ import annotations

import re

from vllm_guard.facts import GpuFacts, GpuInfo

_MIB = 1 << 20

# NVML name -> (total bytes as NVML reports it, compute capability). NVML's total is a whole number of
# MiB (the H100 probe: 85520809984 = 81559 MiB), so each is the MiB total nvidia-smi printed on a real
# card, from the source named; V100 alone is the marketed 32 GiB, unmeasured.
CARDS: dict[str, tuple[int, tuple[int, int]]] = {
    "NVIDIA H100 80GB HBM3": (85520809984, (9, 0)),  # tests/data/h100-probe.json
    "NVIDIA H200": (143771 * _MIB, (9, 0)),  # nvidia-smi output in several public repositories
    "NVIDIA A100-SXM4-80GB": (81920 * _MIB, (8, 0)),  # modal-labs/modal-client#2797
    "NVIDIA A100-SXM4-40GB": (40960 * _MIB, (8, 0)),  # modal-labs/modal-client#2797
    "NVIDIA L40S": (46068 * _MIB, (8, 9)),  # akash-network/provider-configs#99, modal-client#2797
    "NVIDIA L4": (23034 * _MIB, (8, 9)),  # modal-labs/modal-client#2797
    "NVIDIA A10G": (23028 * _MIB, (8, 6)),  # NVIDIA/DCGM#232
    "NVIDIA GeForce RTX 4090": (24564 * _MIB, (8, 9)),  # RLinf/RLinf#255
    "NVIDIA GeForce RTX 3090": (24576 * _MIB, (8, 6)),  # noonghunna/club-3090#390
    "Tesla T4": (15360 * _MIB, (7, 5)),  # modal-labs/modal-client#2797
    # Marketed 32 GiB: a V100-PCIE-32GB shows 32480 MiB, so this may overstate by up to ~1 %.
    "Tesla V100-SXM2-32GB": (32 << 30, (7, 0)),
}


def planned(name: str, count: int) -> GpuFacts:
    """Facts for `count` idle cards of a kind in CARDS, for planning on another machine."""
    if count < 1:
        raise ValueError(f"--gpus must be at least 1, not {count}")
    card = _card(name)
    total, capability = CARDS[card]
    devices = tuple(GpuInfo(i, None, card, total, total, 0, 0, capability, ()) for i in range(count))
    return GpuFacts(devices, None, None, None, f"planned: {card} x {count}")


def _card(name: str) -> str:
    """The CARDS name meant: exact, then case-insensitive whole, whole word(s), and substring matches.

    Whole words come before substrings so that "L4" is the L4 and not also the L40S.
    """
    if name in CARDS:
        return name
    wanted = name.strip().lower()
    word = re.compile(rf"(?<![\w]){re.escape(wanted)}(?![\w])")
    for matches in (
        [c for c in CARDS if c.lower() == wanted],
        [c for c in CARDS if word.search(c.lower())],
        [c for c in CARDS if wanted in c.lower()],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"--gpu {name!r} is ambiguous: it matches {', '.join(matches)}")
    raise ValueError(f"--gpu {name!r} is not a card vllm-guard knows; known: {', '.join(CARDS)}")
