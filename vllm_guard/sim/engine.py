"""The server's handle on its EngineCore child process: start it, stop it, record what it holds.

Real vLLM's API server spawns `VLLM::EngineCore` (multiprocessing, spawn method) in its own
process group, and on shutdown sends it SIGTERM and then SIGKILL (reference.md §4.1, §4.3).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

from vllm_guard.sim import scenario

SCRIPT = Path(__file__).with_name("engine_core.py")
TITLE = "VLLM::EngineCore"


class EngineError(Exception):
    """The engine process did not come up."""


class EngineProcess:
    def __init__(self, popen: subprocess.Popen[bytes], orphan: bool, ledger: Path | None) -> None:
        self._popen = popen
        self.orphan = orphan
        self._ledger = ledger

    @property
    def pid(self) -> int:
        return self._popen.pid

    @classmethod
    def spawn(cls, *, orphan: bool, ledger: Path | None, timeout_s: float = 10.0) -> EngineProcess:
        """Start the engine and wait until it has taken its title (so `ps` shows it by name)."""
        read_end, write_end = os.pipe()
        mode = "orphan" if orphan else "watch"
        argv = [TITLE, "-I", "-S", str(SCRIPT), str(os.getpid()), mode, str(write_end)]
        try:
            popen = subprocess.Popen(  # same process group as the server, as vLLM's engine is
                argv,
                executable=sys.executable,
                pass_fds=(write_end,),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        finally:
            os.close(write_end)
        try:
            ready, _, _ = select.select([read_end], [], [], timeout_s)
            if not ready or not os.read(read_end, 1):
                popen.kill()
                popen.wait()
                raise EngineError(f"{TITLE} did not start within {timeout_s:g} s")
        finally:
            os.close(read_end)
        return cls(popen, orphan, ledger)

    def alive(self) -> bool:
        return self._popen.poll() is None

    def hold(self, size: int) -> None:
        """Record in the GPU ledger (if any) that this engine holds SIZE bytes."""
        if self._ledger is not None and self.alive():
            scenario.record(self._ledger, self.pid, size)

    def stop(self, grace_s: float = 0.5) -> None:
        """SIGTERM, then SIGKILL after GRACE_S, then reap. An orphaning engine is left alone."""
        if self.orphan:
            return
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self._forget()

    def kill(self, force: bool = False) -> None:
        """SIGKILL and reap; FORCE also for an orphaning engine (the engine itself crashed)."""
        if self.orphan and not force:
            return
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()
        self._popen.wait()
        self._forget()

    def _forget(self) -> None:
        if self._ledger is not None:
            scenario.forget(self._ledger, self.pid)
