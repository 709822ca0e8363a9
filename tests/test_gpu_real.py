"""On a machine with an NVIDIA GPU (the device machine): NVML readings, and GPU memory coming back
after the guard kills a tree that held it. Skipped where NVML does not initialise."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from pathlib import Path

import pytest

from vllm_guard.gpu import Nvml, read_facts, wait_for_release
from vllm_guard.output import AttemptOutput, CappedLog
from vllm_guard.printer import Printer
from vllm_guard.processes import ProcessLauncher, Reaper
from vllm_guard.redact import Redactor

pytestmark = [pytest.mark.gpu, pytest.mark.timeout(120)]

HOLDER = """
import subprocess, sys, time, torch
x = torch.empty(int(sys.argv[1]), dtype=torch.uint8, device="cuda")  # the API server's share
engine = subprocess.Popen([sys.executable, "-c",
    "import torch, time; y = torch.empty(4 << 30, dtype=torch.uint8, device='cuda'); "
    "print('engine holds', flush=True); time.sleep(600)"])
time.sleep(600)
"""


@pytest.fixture
def nvml() -> Nvml:
    Nvml.open.cache_clear()
    probe = Nvml.open()
    if probe is None:
        pytest.skip("NVML does not initialise here (no NVIDIA GPU or driver)")
    return probe


def test_nvml_reads_every_device(nvml: Nvml) -> None:
    devices = nvml.memory()
    assert devices
    for device in devices:
        assert 0 <= device.used <= device.total


def test_read_facts_on_a_real_gpu(nvml: Nvml) -> None:
    facts = read_facts(os.environ)
    assert facts.source == "nvml"
    assert facts.problem is None, facts.problem
    assert facts.devices
    assert facts.driver_version
    assert facts.cuda_version is not None and facts.cuda_version.count(".") == 1
    for gpu in facts.devices:
        assert gpu.total_bytes > 0
        assert gpu.compute_capability is not None and gpu.compute_capability >= (7, 0)
        assert gpu.free_bytes + gpu.used_bytes + gpu.reserved_bytes <= gpu.total_bytes + (64 << 20)
        assert gpu.uuid is not None and gpu.uuid.startswith(("GPU-", "MIG-"))


async def test_gpu_memory_is_back_after_the_tree_is_killed(nvml: Nvml, tmp_path: Path) -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torch is needed to hold GPU memory")
    before = sum(d.used for d in nvml.memory())
    reaper = Reaper(orphan_interval_s=0.05)
    reaper.install(asyncio.get_running_loop())
    devnull = os.open(os.devnull, os.O_WRONLY)
    printer = Printer(stdout_fd=devnull, stderr_fd=devnull)
    try:
        launcher = ProcessLauncher(reaper, kill_timeout_s=10)
        out = AttemptOutput(printer, Redactor(), CappedLog(tmp_path / "a.log", 1 << 20))
        proc = await launcher.launch([sys.executable, "-c", HOLDER, str(2 << 30)], dict(os.environ), out)
        async with asyncio.timeout(60):
            while not any("engine holds" in line for line in out.tail()):
                await asyncio.sleep(0.1)
        held = sum(d.used for d in nvml.memory()) - before
        assert held >= 5 << 30
        report = await launcher.stop(proc, 0.5, asyncio.Event())
        assert not report.survivors
        assert await wait_for_release(nvml, proc.known.keys(), timeout_s=30)
        assert sum(d.used for d in nvml.memory()) - before < 1 << 30
    finally:
        reaper.uninstall()
        printer.close()
        os.close(devnull)
