"""`vllm-guard status [--json]`: each endpoint's guard and the attempts of its current or last
run, and the flag sets that reached ready, from the state directory."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from vllm_guard.errors import ExitCode
from vllm_guard.journal import SHOWN
from vllm_guard.settings import GuardSettings
from vllm_guard.state import StateDir, attempts, serving


def run(argv: Sequence[str], settings: GuardSettings) -> ExitCode:
    parser = argparse.ArgumentParser(
        prog="vllm-guard status",
        description="What each guard of this state directory did: one per endpoint (a port or a "
        "socket), running or not, the attempts of its current or last run; and the flag sets "
        "remembered as reaching ready.",
        allow_abbrev=False,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit as exc:
        return ExitCode.STOPPED if exc.code == 0 else ExitCode.USAGE
    shared = StateDir(settings.state_dir)
    guards = []
    for found in serving(settings.state_dir):
        state = StateDir(settings.state_dir, own=found.folder)
        guards.append(
            {
                "endpoint": found.endpoint,
                "running": found.running,
                "pid": found.pid,
                "model": found.model,
                "since": found.since,
                "attempts": [{k: a.get(k) for k in SHOWN} for a in attempts(state.journal_path)],
                "orphaned": None if found.running else _orphaned(state),
            }
        )
    report: dict[str, Any] = {
        "state_dir": str(settings.state_dir),
        "guards": guards,
        "known_good": list(shared.known_good(set_aside=False).values())
        if settings.state_dir.is_dir()
        else [],
    }
    # the shape from before one guard per endpoint, kept for what reads it: the most recent guard's
    report["attempts"] = guards[0]["attempts"] if guards else []
    report["orphaned"] = guards[0]["orphaned"] if guards else None
    for warning in shared.warnings:
        print(f"vllm-guard: {warning}", file=sys.stderr)
    if ns.json:
        print(json.dumps(report, ensure_ascii=False))
        return ExitCode.STOPPED
    print(f"state directory: {report['state_dir']}")
    if not guards:
        print("no attempts recorded")
    for guard in guards:
        _print_guard(guard, str(settings.state_dir))
    for good in report["known_good"]:
        print(
            f"known good for {good.get('model')}: {' '.join(good.get('argv', []))} (since {good.get('at')})"
        )
    for warning in shared.warnings:
        print(f"warning: {warning}")
    return ExitCode.STOPPED


def _print_guard(guard: dict[str, Any], state_dir: str) -> None:
    who = f"pid {guard['pid']}" if guard["pid"] else "a guard"
    model = f" serving {guard['model']}" if guard["model"] else ""
    now = "running" if guard["running"] else "not running"
    print(
        f"guard on {guard['endpoint']}: {who}{model}, {now}"
        + (f" (since {guard['since']})" if guard["since"] else "")
    )
    if not guard["attempts"]:
        print("  no attempts recorded")
    orphaned = guard["orphaned"]
    for a in guard["attempts"]:
        kind = a["kind"] or ("unknown: its guard was killed" if orphaned else "running or ready")
        line = f"  attempt {a['attempt']} ({a['started_at']}"
        group = a.get("group")
        if isinstance(group, dict):
            node = f"node {group.get('rank')} ({group.get('role')})"
            line += f", {node} on the group's generation {group.get('generation')}"
        line += f"): {kind}"
        if a["evidence"]:
            line += f": {str(a['evidence'])[:160]}"
        print(line)
        print(f"      {' '.join(a['argv'] or [])}")
        for finding in a.get("advice") or []:
            said = f"{finding.get('condition')}: {finding.get('evidence')}"
            print(f"      advice: {said}; fix: {finding.get('fix')}")
        for retry in a.get("retries") or []:
            when = f"after {retry.get('after_s')} s"
            print(f"      retried in place: {retry.get('kind')} {when}: {retry.get('outcome')}")
        decision = a["decision"]
        if isinstance(decision, dict):
            then = decision.get("step") or decision.get("message") or ""
            print(f"      then: {decision.get('action')} {then}")
    if orphaned is not None:
        print("  " + _orphan_text(orphaned, state_dir))


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
