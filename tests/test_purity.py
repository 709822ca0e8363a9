"""The pure core imports no I/O: checked in a fresh interpreter per module (STYLE.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = [
    "vllm_guard.vllm_args",
    "vllm_guard.failures",
    "vllm_guard.policy",
    "vllm_guard.redact",
    "vllm_guard.errors",
    "vllm_guard.memory",
    "vllm_guard.preflight",
    "vllm_guard.fits",
    "vllm_guard.milestones",
]
# settings.py is pure in what it does, but pydantic-settings itself imports asyncio.
FORBIDDEN = ["asyncio", "subprocess", "pynvml", "httpx", "psutil", "socket"]


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    code = f"import sys, {module}\nbad = [m for m in {FORBIDDEN!r} if m in sys.modules]\nprint(','.join(bad))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
