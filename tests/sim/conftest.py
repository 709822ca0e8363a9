"""Fixtures for the simulator's tests: a launcher, and a check that nothing it started is left.

Every simulator a test starts carries VLLM_GUARD_SIM_TEST_TAG in its environment (its EngineCore
inherits it), so the leftover check finds them even after they were re-parented away from the
test; anything still alive is killed and the test fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from .procs import Launcher, free_port, living_children, tagged


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Launcher]:
    """Start simulators; afterwards, none of them (nor their engines) may still be running."""
    launcher = Launcher(tmp_path, uuid.uuid4().hex)
    yield launcher
    for started in launcher.started:
        if started.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.proc.pid, signal.SIGKILL)
            started.proc.wait(10)
            pytest.fail(f"the simulator {started.proc.pid} was still running after the test")
    # An engine whose server just died exits on its own within moments; give it those.
    deadline = time.monotonic() + 3.0
    left = leftovers(launcher.tag)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = leftovers(launcher.tag)
    if left:
        names = []
        for process in left:
            with contextlib.suppress(psutil.Error):
                names.append(f"{process.pid} {process.name()}")
                process.kill()
                with contextlib.suppress(psutil.TimeoutExpired, ChildProcessError):
                    process.wait(5)
        pytest.fail(f"processes left behind: {names}")


def leftovers(tag: str) -> list[psutil.Process]:
    found = tagged(tag)
    return found + [p for p in living_children() if p not in found]


@pytest.fixture
def port() -> int:
    return free_port()
