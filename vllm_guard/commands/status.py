"""`vllm-guard status [--json]`: the attempts of the current or last run, and the flag sets that
reached ready, from the state directory."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.journal import SHOWN
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir, attempts


def run(argv: Sequence[str], settings: GuardSettings) -> ExitCode:
    if list(argv) not in ([], ["--json"]):
        raise GuardError("usage: vllm-guard status [--json]")
    state = StateDir(settings.state_dir)
    orphaned = _orphaned(state)
    report: dict[str, Any] = {
        "state_dir": str(settings.state_dir),
        "attempts": [{k: a.get(k) for k in SHOWN} for a in attempts(settings.state_dir / "journal.jsonl")],
        "known_good": list(state.known_good(set_aside=False).values()) if settings.state_dir.is_dir() else [],
        "orphaned": orphaned,
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
        kind = a["kind"] or ("unknown: its guard was killed" if orphaned else "running or ready")
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
    if orphaned is not None:
        print(_orphan_text(orphaned, str(settings.state_dir)))
    for warning in state.warnings:
        print(f"warning: {warning}")
    return ExitCode.STOPPED


def _orphaned(state: StateDir) -> dict[str, object] | None:
    """The process record of a guard that is gone (killed outright: it clears the record when
    it stops), with those of its vLLM processes that are still alive; None when the record's
    guard is running, or there is no record."""
    guard = state.recorded_guard()
    if guard is None:
        return None
    import psutil  # noqa: PLC0415

    pid, written = guard
    try:
        # the guard wrote the record, so a process under its pid that started after the last
        # write is another program with a recycled pid
        if psutil.Process(pid).create_time() <= written + 1.0:
            return None
    except (psutil.Error, ValueError, OverflowError):  # gone, or no pid at all
        pass
    alive = []
    for vllm_pid, started in state.recorded_processes(set_aside=False):
        try:
            proc = psutil.Process(vllm_pid)
            if abs(proc.create_time() - started) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{vllm_pid} ({proc.name()})")
        except (psutil.Error, ValueError, OverflowError):
            continue
    return {"guard": pid, "alive": alive}


def _orphan_text(orphaned: dict[str, object], state_dir: str) -> str:
    alive = orphaned["alive"]
    head = f"the guard (pid {orphaned['guard']}) that ran this is gone without stopping vLLM (it was killed)"
    if not isinstance(alive, list) or not alive:
        return f"{head}; none of the vLLM processes it recorded is alive"
    return (
        f"{head}; its vLLM may be orphaned, still running: {', '.join(alive)}. The next "
        f"`vllm-guard --state-dir {state_dir} serve ...` removes it first, or remove it now with "
        "`vllm-guard preflight --kill-leftovers MODEL`"
    )
