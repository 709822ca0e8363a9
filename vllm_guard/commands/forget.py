"""`vllm-guard forget [MODEL]`: drop the flag sets remembered as reaching ready, and what the starts
measured of their memory (all, or MODEL's)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from vllm_guard.errors import ExitCode
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir


def run(argv: Sequence[str], settings: GuardSettings) -> ExitCode:
    parser = argparse.ArgumentParser(
        prog="vllm-guard forget",
        description="Drop the flag sets remembered as reaching ready and what starts measured of "
        "vLLM's memory, of every model or of MODEL: the next serve starts from your own flags and "
        "the next preflight estimates afresh.",
        allow_abbrev=False,
    )
    parser.add_argument("model", nargs="?", metavar="MODEL", help="only this model's (as serve was given it)")
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit as exc:
        return ExitCode.STOPPED if exc.code == 0 else ExitCode.USAGE
    state = StateDir(settings.state_dir, shared=settings.shared_state)
    model = ns.model
    dropped, starts = state.forget(model), state.forget_starts(model)
    print(
        f"forgot {dropped} remembered flag set{'s' if dropped != 1 else ''} "
        f"and {starts} measured start{'s' if starts != 1 else ''}"
    )
    return ExitCode.STOPPED
