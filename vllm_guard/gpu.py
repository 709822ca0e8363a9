"""NVML reads (nvidia-ml-py, imported lazily so a machine without NVIDIA's driver never loads it)."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Collection
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DeviceMemory:
    index: int
    total: int
    used: int  # bytes in use, the driver's own reservation excluded where the v2 API says so
    processes: tuple[tuple[int, int], ...]  # (pid, bytes) of compute processes NVML shows


# Used memory moves by a few MiB on an idle device; more than this is a process letting go.
_JITTER_BYTES = 64 * 1024 * 1024


class GpuProbe(Protocol):
    def memory(self) -> list[DeviceMemory]: ...


class Nvml:
    """A GpuProbe over NVML. `open()` returns None where NVML cannot initialise (no driver, no GPU)."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    @classmethod
    @functools.cache
    def open(cls) -> Nvml | None:
        try:
            import pynvml  # nvidia-ml-py's module name  # noqa: PLC0415

            pynvml.nvmlInit()
            return cls(pynvml)
        except Exception:  # NVMLError and ImportError alike: no usable GPU here
            return None

    def memory(self) -> list[DeviceMemory]:
        nvml = self._nvml
        found = []
        for index, handle in enumerate(self._handles):
            try:
                # v2 reports the driver's reservation apart (an idle H100 shows 503 MB "used" in v1).
                info = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
            except (TypeError, AttributeError, nvml.NVMLError):
                info = nvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                procs = tuple(
                    (p.pid, p.usedGpuMemory or 0) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)
                )
            except nvml.NVMLError:
                procs = ()
            found.append(DeviceMemory(index, int(info.total), int(info.used), procs))
        return found


async def wait_for_release(
    probe: GpuProbe,
    pids: Collection[int],
    timeout_s: float,
    *,
    settle_s: float = 0.5,
    poll_s: float = 0.05,
) -> bool:
    """Wait until the GPU memory of processes that are gone is back.

    When NVML lists our pids (same PID namespace) we wait until none is listed. Inside a container
    NVML shows host pids, so we wait instead until every device's used memory has stopped
    changing for `settle_s`. True when released, False on timeout.
    """
    deadline = time.monotonic() + timeout_s
    last: list[int] | None = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        devices = probe.memory()
        held = any(pid in pids for d in devices for pid, _ in d.processes)
        used = [d.used for d in devices]
        if last is None or any(abs(a - b) > _JITTER_BYTES for a, b in zip(used, last, strict=False)):
            last, stable_since = used, time.monotonic()
        if not held and time.monotonic() - stable_since >= settle_s:
            return True
        await asyncio.sleep(poll_s)
    return False
