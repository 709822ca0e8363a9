"""Waiting for GPU memory after a stop, against a fake NVML; and opening the real NVML."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vllm_guard.gpu import DeviceMemory, Nvml, wait_for_release

GIB = 1 << 30


@dataclass
class FakeNvml:
    """A device whose memory readings follow a script, one reading per call."""

    readings: list[tuple[int, tuple[tuple[int, int], ...]]]
    calls: int = 0
    seen: list[int] = field(default_factory=list)

    def utilization(self) -> list[float]:
        return []

    def memory(self) -> list[DeviceMemory]:
        used, procs = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        self.seen.append(used)
        return [DeviceMemory(0, 80 * GIB, used, procs)]


async def test_waits_until_our_pids_leave_nvmls_list() -> None:
    nvml = FakeNvml([(20 * GIB, ((4242, 20 * GIB),))] * 3 + [(0, ())])
    assert await wait_for_release(nvml, {4242}, timeout_s=5, settle_s=0.0, poll_s=0.001)
    assert nvml.calls == 4


async def test_in_a_container_waits_until_used_memory_settles() -> None:
    # NVML shows host pids there, so ours never match: the memory falling and holding still is
    # the sign (on an H100 it was back 0.15 s after the group kill).
    nvml = FakeNvml([(20 * GIB, ((99999, 20 * GIB),)), (10 * GIB, ()), (0, ())])
    assert await wait_for_release(nvml, {4242}, timeout_s=5, settle_s=0.02, poll_s=0.001)
    assert nvml.seen[:3] == [20 * GIB, 10 * GIB, 0]


async def test_gives_up_after_the_timeout() -> None:
    nvml = FakeNvml([(20 * GIB, ((4242, 20 * GIB),))])
    assert not await wait_for_release(nvml, {4242}, timeout_s=0.05, settle_s=0.0, poll_s=0.001)


def test_nvml_opens_exactly_where_a_driver_and_its_devices_are() -> None:
    # The kernel driver's own files say whether NVML can work, independently of the code under test.
    driver = Path("/proc/driver/nvidia/version").exists() and Path("/dev/nvidiactl").exists()
    Nvml.open.cache_clear()
    try:
        probe = Nvml.open()
    finally:
        Nvml.open.cache_clear()  # the next caller reads the machine afresh, not this answer
    if not driver:
        # This machine and CI: opening NVML fails quietly, and there is nothing to probe.
        assert probe is None
        return
    assert probe is not None, "a driver is loaded but NVML did not open"
    devices = probe.memory()
    assert devices, "NVML opened but lists no GPU"
    assert [device.index for device in devices] == list(range(len(devices)))
    for device in devices:
        assert device.total > 0
        assert 0 <= device.used <= device.total
        assert all(pid > 0 and held >= 0 for pid, held in device.processes)
