"""Cards to plan for (`--gpu NAME --gpus N`): what NVML and CUDA report of common GPUs."""

from __future__ import annotations

import re

from vllm_guard.facts import GpuFacts, GpuInfo

_MIB = 1 << 20
_GIB = 1 << 30

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
    "NVIDIA GeForce RTX 5090": (32607 * _MIB, (12, 0)),  # noonghunna/club-3090#617
    "NVIDIA GeForce RTX 3090": (24576 * _MIB, (8, 6)),  # noonghunna/club-3090#390
    "Tesla T4": (15360 * _MIB, (7, 5)),  # modal-labs/modal-client#2797
    # Marketed 32 GiB: a V100-PCIE-32GB shows 32480 MiB, so this may overstate by up to ~1 %.
    "Tesla V100-SXM2-32GB": (32 << 30, (7, 0)),
}

# The total CUDA reports (torch's OOM message "a total capacity of X GiB", vLLM's total_gpu_memory),
# which vLLM multiplies by --gpu-memory-utilization: NVML's total less the driver's reservation,
# which differs with the driver (the H100 shows 79.10 to 79.22 GiB). The smallest seen on Linux is
# kept, as printed (two decimals), so that a plan never counts on memory a card may not have.
CUDA_TOTALS: dict[str, int] = {
    # 79.10: huggingface/trl#2688 (vLLM's line); 79.11: vllm-project/vllm#27508; 79.18: the probe
    "NVIDIA H100 80GB HBM3": int(79.10 * _GIB),
    # 79.25: wbfwonderful/Vad-R1#11, HiDream-ai/VAREdit#6, levihsu/OOTDiffusion#235
    "NVIDIA A100-SXM4-80GB": int(79.25 * _GIB),
    "NVIDIA A100-SXM4-40GB": int(39.50 * _GIB),  # TianheWu/CoSeR#10
    # 44.42: stepfun-ai/Step-Video-T2V#8, vllm-project/vllm#15815; 44.53: Wan-Video/Wan2.1#205
    "NVIDIA L40S": int(44.42 * _GIB),
    # 23.52: Soul-AILab/SoulX-FlashTalk#5; 23.64: 3DTopia/Phidias-Diffusion#8; 23.68: zai-org/CogVideo#36
    "NVIDIA GeForce RTX 4090": int(23.52 * _GIB),
    # 31.36: vLLM's "Free memory on device (30.76/31.36 GiB)" in wrbooth/vllm-serve-bench,
    # raw/engine-logs/2026-09-27-7b-baseline.log
    "NVIDIA GeForce RTX 5090": int(31.36 * _GIB),
    # 23.70: sunset1995/DirectVoxGO#57, Lightning-AI/lit-llama#137, GaoLii/DSP#10
    "NVIDIA GeForce RTX 3090": int(23.70 * _GIB),
    # 14.74: a Colab T4 under vLLM (the huggingface cookbook's copy in paulperet/ai-cookbook-dataset);
    # 14.75: hpcaitech/Open-Sora#697
    "Tesla T4": int(14.74 * _GIB),
    # 31.74: haotian-liu/LLaVA#812, liucongg/ChatGLM-Finetuning#73
    "Tesla V100-SXM2-32GB": int(31.74 * _GIB),
}


def _largest_reserve_share() -> float:
    return max(1 - CUDA_TOTALS[name] / CARDS[name][0] for name in CUDA_TOTALS)


def cuda_total(card: str) -> int:
    """CUDA's total for a card in CARDS: the one seen, else NVML's less the largest share any card
    of the table reserves (under 2 %): an estimate that errs small."""
    if card in CUDA_TOTALS:
        return CUDA_TOTALS[card]
    total = CARDS[card][0]
    return int(total * (1 - _largest_reserve_share()))


def planned(name: str, count: int) -> GpuFacts:
    """Facts for `count` idle cards of a kind in CARDS, for planning on another machine."""
    if count < 1:
        raise ValueError(f"--gpus must be at least 1, not {count}")
    card = _card(name)
    total, capability = CARDS[card]
    cuda = cuda_total(card)
    reserved = total - cuda
    devices = tuple(GpuInfo(i, None, card, total, cuda, reserved, 0, capability, ()) for i in range(count))
    return GpuFacts(devices, None, None, None, f"planned: {card} x {count}")


def _card(name: str) -> str:
    """The CARDS name meant: exact, then case-insensitive whole, whole word(s), and substring matches.

    Whole words come before substrings so that "L4" is the L4 and not also the L40S; a substring
    never ends inside a number, so that "H20" (a 96 GB card) is not the H200.
    """
    if name in CARDS:
        return name
    wanted = name.strip().lower()
    word = re.compile(rf"(?<![\w]){re.escape(wanted)}(?![\w])")
    part = re.compile(re.escape(wanted) + (r"(?!\d)" if wanted[-1:].isdigit() else ""))
    for matches in (
        [c for c in CARDS if c.lower() == wanted],
        [c for c in CARDS if word.search(c.lower())],
        [c for c in CARDS if part.search(c.lower())],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"--gpu {name!r} is ambiguous: it matches {', '.join(matches)}")
    raise ValueError(f"--gpu {name!r} is not a card vllm-guard knows; known: {', '.join(CARDS)}")
