"""`vllm-guard forget [MODEL]`: drop the flag sets remembered as reaching ready, and what the starts
measured of their memory (all, or MODEL's)."""

from __future__ import annotations

from collections.abc import Sequence

from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir


def run(argv: Sequence[str], settings: GuardSettings) -> ExitCode:
    if len(argv) > 1:
        raise GuardError("usage: vllm-guard forget [MODEL]")
    state = StateDir(settings.state_dir)
    model = argv[0] if argv else None
    dropped, starts = state.forget(model), state.forget_starts(model)
    print(
        f"forgot {dropped} remembered flag set{'s' if dropped != 1 else ''} "
        f"and {starts} measured start{'s' if starts != 1 else ''}"
    )
    return ExitCode.STOPPED
