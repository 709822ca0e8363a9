"""What is known of the machine's GPUs, as values: read by gpu.nvml, a snapshot or a card table,
judged by the pure core (preflight, the policy)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    bytes: int
    user: str | None  # None when unknown, or when the pid is another PID namespace's (a container's host)
    command: str | None  # the command line joined with spaces; None when unknown


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int  # NVML index (for a MIG instance, its parent GPU's)
    uuid: str | None
    name: str
    total_bytes: int
    free_bytes: int
    reserved_bytes: int  # the driver's reservation (v2 memory struct); 0 where only v1 exists
    used_bytes: int  # v1 counts the reservation in here
    compute_capability: tuple[int, int] | None
    processes: tuple[GpuProcess, ...]
    # vLLM's CPU build runs on a NUMA memory node, not a GPU: the node's number, its memory as
    # vLLM reads it (the cgroup's limit applied) and "free" as vLLM's "available"
    cpu_node: int | None = None

    @property
    def cuda_total_bytes(self) -> int:
        """The total CUDA reports (cudaMemGetInfo, torch.cuda.mem_get_info), which vLLM multiplies
        by --gpu-memory-utilization: NVML's total less the driver's reservation (the H100 probe:
        81559 MiB less 480 MiB, the "total capacity of 79.18 GiB" of torch's OOM message)."""
        return self.total_bytes - self.reserved_bytes

    @property
    def label(self) -> str:
        """How a message names it: "GPU 0", or "memory node 0" for vLLM's CPU build."""
        return f"GPU {self.index}" if self.cpu_node is None else f"memory node {self.cpu_node}"


@dataclass(frozen=True, slots=True)
class GpuFacts:
    devices: tuple[GpuInfo, ...]  # the GPUs vLLM will use, in CUDA order (CUDA_VISIBLE_DEVICES applied)
    driver_version: str | None
    cuda_version: str | None  # "13.0"
    problem: str | None  # why no GPU is visible; None when devices were read
    source: str  # "nvml", "snapshot FILE", "planned: NAME x N"
