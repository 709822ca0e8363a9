"""`vllm-guard policy check FILE` and `vllm-guard policy show [FILE]`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from vllm_guard import advice, policy_file
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.failures import PERMANENT_KINDS, FailureKind
from vllm_guard.settings import GuardSettings

USAGE = "vllm-guard policy check FILE | vllm-guard policy show [FILE|NAME]"
HELP = f"""usage: {USAGE}

check FILE   validate a policy file: exit 0, or exit 2 naming its file, line and field
show [FILE|NAME]
             the ladders a policy takes for each failure kind, and its restart settings:
             a file, a shipped policy's name (default, keep-quality), or --policy's"""


def run(argv: Sequence[str], settings: GuardSettings) -> ExitCode:
    default = settings.policy
    if list(argv[:1]) in (["-h"], ["--help"]) or list(argv[1:]) in (["-h"], ["--help"]):
        print(HELP)
        return ExitCode.STOPPED
    if not argv or argv[0] not in ("check", "show"):
        raise GuardError(f"usage: {USAGE}")
    action, rest = argv[0], list(argv[1:])
    if len(rest) > 1 or (action == "check" and not rest):
        raise GuardError(f"usage: {USAGE}")
    spec = policy_file.load(rest[0] if rest else default)  # a bad file raises with file:line
    if action == "check":
        for warning in policy_file.unknown_flags(rest[0], spec, _vllm_version(settings)):
            print(f"vllm-guard: warning: {warning}", file=sys.stderr)
        ladders = f"{len(spec.ladders)} ladder{'s' if len(spec.ladders) != 1 else ''}"
        print(f"{policy_file.resolve(rest[0])}: a valid policy ({spec.name}, {ladders})")
        return ExitCode.STOPPED
    print(show(spec))
    return ExitCode.STOPPED


def _vllm_version(settings: GuardSettings) -> str | None:
    """The version of the vLLM --vllm-command runs, where it can be read."""
    from vllm_guard.processes import resolve_command  # noqa: PLC0415
    from vllm_guard.vllm_version import detect  # noqa: PLC0415

    try:
        return detect(resolve_command(settings.vllm_command, os.environ))
    except GuardError:
        return None


def show(spec: policy_file.PolicySpec) -> str:
    policy = spec.policy()
    lines = [f"policy {spec.name}: {spec.description}".rstrip(": ")]
    if policy.pinned:
        lines.append("pinned: " + ", ".join(sorted(policy.pinned)))
    for key, value in spec.restart_settings().items():
        lines.append(f"{key}: {value:g}" if isinstance(value, float) else f"{key}: {value}")
    for kind in FailureKind:
        ladder = policy.ladder(kind)
        if ladder:
            lines.append(f"{kind.value}:")
            lines.extend(f"  {n}. {step.label}" for n, step in enumerate(ladder, 1))
        elif kind in PERMANENT_KINDS:
            lines.append(f"{kind.value}: stop at once (exit 5)")
        else:
            lines.append(f"{kind.value}: restart with the same flags, with backoff")
    thresholds = spec.advice.thresholds()
    lines.append(
        "advice: " + ", ".join(f"{name} {getattr(thresholds, name):g}" for name in advice.Thresholds.names())
    )
    if spec.advice.apply_on_relaunch:
        lines.append("advice: a relaunch carries the fixes of what held when vLLM ended (apply_on_relaunch)")
    return "\n".join(lines)
