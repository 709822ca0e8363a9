"""NVML reads (nvidia-ml-py): the memory each GPU holds, for the waits on it, and the facts
preflight judges. pynvml and psutil are imported lazily, so a machine without NVIDIA's driver never
loads them and the launch path stays free of them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from vllm_guard.facts import GpuFacts, GpuInfo, GpuProcess
from vllm_guard.gpu.visible import _optional, _text, _visible


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

    def utilization(self) -> list[float]: ...


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

    def utilization(self) -> list[float]:
        """Each device's busy fraction over NVML's last sample period (nvmlDeviceGetUtilizationRates:
        the share of time a kernel ran); a device that cannot say is left out."""
        found = []
        for handle in self._handles:
            try:
                found.append(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0)
            except Exception:  # NVMLError: Not Supported (a MIG instance, a vGPU)
                continue
        return found

    def memory(self) -> list[DeviceMemory]:
        nvml = self._nvml
        found = []
        for index, handle in enumerate(self._handles):
            total, _free, used, _reserved = _memory(nvml, handle)
            procs = tuple(_processes(nvml, handle))
            found.append(DeviceMemory(index, total, used, procs))
        return found


def _memory(nvml: ModuleType, handle: Any) -> tuple[int, int, int, int]:
    """(total, free, used, reserved) bytes; reserved is 0 and counted in used where only v1 exists."""
    try:
        # v2 reports the driver's reservation apart (an idle H100 shows 503 MB "used" in v1).
        info = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        reserved = int(info.reserved)
    except (TypeError, AttributeError, nvml.NVMLError):
        # TypeError/AttributeError: a pynvml older than the v2 struct; NVMLError: a driver older than it.
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        reserved = 0
    return int(info.total), int(info.free), int(info.used), reserved


def _processes(nvml: ModuleType, handle: Any) -> list[tuple[int, int]]:
    try:
        running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except nvml.NVMLError:
        return []
    # usedGpuMemory is None where the driver cannot tell (Windows WDDM, some vGPU setups).
    return [(int(p.pid), int(p.usedGpuMemory or 0)) for p in running]


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


# Who a pid belongs to and what it runs: (user, command).
Describe = Callable[[int], tuple[str | None, str | None]]

# The kernel's constant inode for the initial PID namespace (PROC_PID_INIT_INO, Linux 3.8+).
_INIT_PID_NS = "pid:[4026531836]"


def read_facts(
    environ: Mapping[str, str], nvml: ModuleType | None = None, *, describe: Describe | None = None
) -> GpuFacts:
    """The GPUs vLLM would get with this environment. NVML failing is a fact (`problem`), not an error."""
    if nvml is None:
        try:
            import pynvml  # nvidia-ml-py's module name  # noqa: PLC0415
        except ImportError as err:
            return GpuFacts((), None, None, f"nvidia-ml-py is not installed ({err})", "nvml")
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as err:  # NVMLError, or ctypes' OSError from a broken libnvidia-ml
        if isinstance(err, getattr(nvml, "NVMLError_LibraryNotFound", ())):
            return GpuFacts((), None, None, f"no NVIDIA driver (nvidia-ml-py: {err})", "nvml")
        return GpuFacts((), None, None, f"NVML cannot initialise: {err}", "nvml")
    try:
        return _read(nvml, environ, describe or process_describer())
    finally:
        # nvmlInit is reference-counted, so this leaves Nvml.open()'s session alone.
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _read(nvml: ModuleType, environ: Mapping[str, str], describe: Describe) -> GpuFacts:
    driver = _optional(nvml, lambda: _text(nvml.nvmlSystemGetDriverVersion()))
    cuda = _optional(nvml, lambda: _cuda_version(int(nvml.nvmlSystemGetCudaDriverVersion())))
    try:
        count = int(nvml.nvmlDeviceGetCount())
        chosen, problem = _visible(nvml, count, environ.get("CUDA_VISIBLE_DEVICES"))
        devices = tuple(_device(nvml, index, handle, describe) for index, handle in chosen)
    except nvml.NVMLError as err:
        return GpuFacts((), driver, cuda, f"NVML cannot read the GPUs: {err}", "nvml")
    if problem is None and not devices:
        problem = "NVML sees no GPU"
    return GpuFacts(devices, driver, cuda, problem, "nvml")


def _cuda_version(encoded: int) -> str:
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


def _capability(nvml: ModuleType, handle: Any) -> tuple[int, int]:
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return int(major), int(minor)


def _device(nvml: ModuleType, index: int, handle: Any, describe: Describe) -> GpuInfo:
    total, free, used, reserved = _memory(nvml, handle)
    capability = _optional(nvml, lambda: _capability(nvml, handle))
    if capability is None:
        # A MIG instance may not answer for itself; its parent GPU does.
        capability = _optional(
            nvml, lambda: _capability(nvml, nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle))
        )
    processes = tuple(GpuProcess(pid, held, *describe(pid)) for pid, held in _processes(nvml, handle))
    return GpuInfo(
        index=index,
        uuid=_optional(nvml, lambda: _text(nvml.nvmlDeviceGetUUID(handle))),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        total_bytes=total,
        free_bytes=free,
        reserved_bytes=reserved,
        used_bytes=used,
        compute_capability=capability,
        processes=processes,
    )


def process_describer(pid_namespace: str | None = None) -> Describe:
    """A Describe over psutil that answers only where NVML's pids are ours to look up.

    NVML reports pids in the host's PID namespace; inside a container the same number may be an
    unrelated process of ours, so there we say nothing rather than name the wrong one.
    """
    if pid_namespace is None:
        try:
            pid_namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            pid_namespace = ""
    if pid_namespace != _INIT_PID_NS:
        return lambda pid: (None, None)
    return _describe_with_psutil


def _describe_with_psutil(pid: int) -> tuple[str | None, str | None]:
    try:
        import psutil  # noqa: PLC0415
    except ImportError:
        return None, None
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return None, None
    user: str | None = None
    command: str | None = None
    with contextlib.suppress(psutil.Error):
        user = process.username()
    with contextlib.suppress(psutil.Error):
        command = " ".join(process.cmdline()) or None  # zombies and kernel threads have none
    return user, command
