"""The guard's exit codes and its own errors (vLLM failing is normal input, not an error)."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The exit codes are a contract with systemd (`RestartPreventExitStatus=`) and with alerts."""

    STOPPED = 0  # stopped on request; vLLM is gone
    GUARD_BUG = 1  # a traceback in the guard itself
    USAGE = 2  # bad option, invalid settings or policy, vLLM command not found, state dir not writable
    CANNOT_START = 3  # preflight said no, or another guard holds this state directory or port
    GAVE_UP = 4  # restart budget spent, ladder exhausted, or a give_up step fired
    PERMANENT = 5  # a permanent failure kind the policy could do nothing about


class GuardError(Exception):
    """A failure of the guard's own making or of its configuration: one sentence, an exit code, a hint."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.USAGE, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.hint = hint
