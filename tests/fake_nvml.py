"""A stand-in for nvidia-ml-py's `pynvml` module, modelled on readings from a real H100.

The numbers come from tests/data/h100-probe.json (nvidia-ml-py 13.610, driver 580.159.04):
`nvml` for the idle card, `holding_mem` / `holding_procs` for a process holding 20 GB. Handles are the
FakeGpu objects themselves. Only the functions vllm_guard.gpu calls are here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace

H100_NAME = "NVIDIA H100 80GB HBM3"
H100_UUID = "GPU-9e3b21ec-0254-d5ac-2a62-e2980c4d8272"
H100_TOTAL = 85520809984
H100_RESERVED = 503316480  # mem_v2 "reserved"; v1 counts it as used
H100_IDLE_FREE = 85017493504
DRIVER = "580.159.04"
CUDA_DRIVER = 13000

# h100-probe.json holding_mem / holding_procs: one process (pid 456) holding 20 GB.
HOLDER_PID = 456
HOLDER_BYTES = 20543700992
HOLDING_FREE = 64464551936
HOLDING_USED_V1 = 21056258048


class NVMLError(Exception):
    """pynvml's NVMLError: str() is the driver's message."""


class NVMLError_LibraryNotFound(NVMLError):  # pynvml's own spelling
    pass


@dataclass
class FakeGpu:
    name: str = H100_NAME
    uuid: str = H100_UUID
    total: int = H100_TOTAL
    free: int = H100_IDLE_FREE
    reserved: int = H100_RESERVED
    used: int = 0  # as the v2 struct says: the reservation excluded
    capability: tuple[int, int] | None = (9, 0)  # None: NVML answers Not Supported
    processes: list[tuple[int, int | None]] | None = field(default_factory=list)  # None: Not Supported
    mig_parent: int | None = None  # set on a MIG instance: its parent's NVML index
    utilization: int | None = 0  # percent of the last sample period a kernel ran; None: Not Supported


def h100(index: int = 0, **changes: object) -> FakeGpu:
    """The probed H100, idle; another index gets another UUID."""
    gpu = FakeGpu(uuid=H100_UUID if index == 0 else f"GPU-{index:08x}-0254-d5ac-2a62-e2980c4d8272")
    for key, value in changes.items():
        setattr(gpu, key, value)
    return gpu


def h100_holding() -> FakeGpu:
    used_v2 = HOLDING_USED_V1 - H100_RESERVED
    return h100(free=HOLDING_FREE, used=used_v2, processes=[(HOLDER_PID, HOLDER_BYTES)])


class FakePynvml(ModuleType):
    """Passed to read_facts as its `nvml` module."""

    NVMLError = NVMLError
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    nvmlMemory_v2 = 33554472  # the version number the probe's mem_v2 printed

    def __init__(
        self,
        gpus: list[FakeGpu],
        *,
        migs: dict[str, FakeGpu] | None = None,
        init_error: Exception | None = None,
        v2: bool = True,
        driver: str | bytes = DRIVER,
        cuda_driver: int = CUDA_DRIVER,
    ) -> None:
        super().__init__("pynvml")
        self.gpus = gpus
        self.migs = migs or {}
        self.init_error = init_error
        self.v2 = v2
        self.driver = driver
        self.cuda_driver = cuda_driver
        self.sessions = 0  # nvmlInit minus nvmlShutdown

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.sessions += 1

    def nvmlShutdown(self) -> None:
        self.sessions -= 1

    def nvmlSystemGetDriverVersion(self) -> str | bytes:
        return self.driver

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda_driver

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        if not 0 <= index < len(self.gpus):
            raise NVMLError("Invalid Argument")
        return self.gpus[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeGpu:
        for gpu in [*self.gpus, *self.migs.values()]:
            if gpu.uuid == uuid:
                return gpu
        raise NVMLError("Not Found")

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, handle: FakeGpu) -> FakeGpu:
        if handle.mig_parent is None:
            raise NVMLError("Invalid Argument")
        return self.gpus[handle.mig_parent]

    def nvmlDeviceGetIndex(self, handle: FakeGpu) -> int:
        return self.gpus.index(handle)

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        return handle.name

    def nvmlDeviceGetUUID(self, handle: FakeGpu) -> str:
        return handle.uuid

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: int | None = None) -> SimpleNamespace:
        if version is None:
            return SimpleNamespace(total=handle.total, free=handle.free, used=handle.used + handle.reserved)
        if not self.v2:
            raise NVMLError("Function Not Found")  # a driver older than the v2 struct
        return SimpleNamespace(
            version=version, total=handle.total, reserved=handle.reserved, free=handle.free, used=handle.used
        )

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeGpu) -> tuple[int, int]:
        if handle.capability is None:
            raise NVMLError("Not Supported")
        return handle.capability

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> SimpleNamespace:
        if handle.utilization is None:
            raise NVMLError("Not Supported")
        return SimpleNamespace(gpu=handle.utilization, memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeGpu) -> list[SimpleNamespace]:
        if handle.processes is None:
            raise NVMLError("Not Supported")
        return [SimpleNamespace(pid=pid, usedGpuMemory=held) for pid, held in handle.processes]
