"""`vllm-guard status [--json]`: the attempts of the current or last run, and the flag sets that
reached ready, from the state directory."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir, attempts

KEYS = ("attempt", "argv", "started_at", "kind", "evidence", "decision", "step", "exit_status", "log")


def status(argv: Sequence[str], settings: GuardSettings) -> ExitCode:
    if list(argv) not in ([], ["--json"]):
        raise GuardError("usage: vllm-guard status [--json]")
    state = StateDir(settings.state_dir)
    report = {
        "state_dir": str(settings.state_dir),
        "attempts": [{k: a.get(k) for k in KEYS} for a in attempts(settings.state_dir / "journal.jsonl")],
        "known_good": list(state.known_good(set_aside=False).values()) if settings.state_dir.is_dir() else [],
    }
    for warning in state.warnings:
        print(f"vllm-guard: {warning}", file=sys.stderr)
    if argv:
        print(json.dumps(report, ensure_ascii=False))
        return ExitCode.STOPPED
    print(f"state directory: {report['state_dir']}")
    if not report["attempts"]:
        print("no attempts recorded")
    for a in report["attempts"]:
        kind = a["kind"] or "running or ready"
        line = f"attempt {a['attempt']} ({a['started_at']}): {kind}"
        if a["evidence"]:
            line += f": {str(a['evidence'])[:160]}"
        print(line)
        print(f"    {' '.join(a['argv'] or [])}")
        decision = a["decision"]
        if isinstance(decision, dict):
            print(
                f"    then: {decision.get('action')} {decision.get('step') or decision.get('message') or ''}"
            )
    for good in report["known_good"]:
        print(
            f"known good for {good.get('model')}: {' '.join(good.get('argv', []))} (since {good.get('at')})"
        )
    for warning in state.warnings:
        print(f"warning: {warning}")
    return ExitCode.STOPPED
