"""The state directory: its lock, each attempt's log file, and the attempt journal (JSON lines)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from vllm_guard.errors import ExitCode, GuardError

KEEP_LOG_FILES = 50


class StateDir:
    """Owns one state directory for the life of a `serve`; only one guard may hold it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.logs = path / "logs"
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self._lock_fd = -1

    def open(self) -> None:
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise GuardError(
                f"the state directory {self.path} is not writable: {exc.strerror}",
                ExitCode.USAGE,
                hint="pass --state-dir DIR (or VLLM_GUARD_STATE_DIR) pointing at a writable folder",
            ) from None
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise GuardError(
                f"another vllm-guard (pid {holder}) holds the state directory {self.path}",
                ExitCode.CANNOT_START,
                hint="stop it first, or give this one its own --state-dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        self._prune_logs()

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def attempt_log(self, attempt: int) -> Path:
        return self.logs / f"{self.run_id}-attempt-{attempt}.log"

    def record(self, entry: dict[str, Any]) -> None:
        """Append one attempt to the journal; the caller passes values already masked."""
        line = json.dumps({"run": self.run_id, **entry}, ensure_ascii=False) + "\n"
        fd = os.open(self.path / "journal.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write with O_APPEND: a line is never torn
        finally:
            os.close(fd)

    def _prune_logs(self) -> None:
        files = sorted(self.logs.glob("*.log*"), key=lambda p: p.stat().st_mtime)
        for old in files[:-KEEP_LOG_FILES]:
            with contextlib.suppress(OSError):
                old.unlink()
