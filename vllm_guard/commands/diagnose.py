"""`vllm-guard diagnose`: why a vLLM log ended, from a file or standard input.

vllm-guard diagnose [--json] [LOGFILE|-]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import random
import sys
from collections.abc import Sequence
from typing import BinaryIO

from vllm_guard import milestones, policy_file, vllm_config, vllm_version
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.failures import ADVICE, Failure, classify
from vllm_guard.policy import Attempt, Facts, decide
from vllm_guard.policy import as_json as decision_json
from vllm_guard.redact import Redactor
from vllm_guard.settings import GuardSettings
from vllm_guard.settings import load as load_settings

# A pasted log may be of any size; its end is where vLLM says why it stopped.
MAX_LINES = 200_000
HEAD_LINES = 200  # where vLLM's version banner is


def run(argv: Sequence[str], settings: GuardSettings | None = None) -> ExitCode:
    parser = argparse.ArgumentParser(
        prog="vllm-guard diagnose",
        usage="vllm-guard diagnose [-h] [--json] [LOGFILE|-] [-- VLLM ARGS...]",
        description="Name why vLLM failed, from its log (stdout and stderr together). After --, "
        "the flags vLLM ran with: then also what the policy would do next, as those flags changed.",
        allow_abbrev=False,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("logfile", nargs="?", default="-", help="the log; - or nothing: stdin")
    argv = list(argv)
    vllm_argv: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, vllm_argv = argv[:cut], argv[cut + 1 :]
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return ExitCode.STOPPED if exc.code == 0 else ExitCode.USAGE
    lines = _read(ns.logfile)
    # a journal of several starts is judged by its last: an earlier start's end explains nothing
    lines = lines[milestones.last_server_start(lines) :]
    # the last milestone, as serve reads it from the output, so that both name a failure alike
    failure = classify(lines, milestone=milestones.last(lines))
    if not failure.evidence:
        # nothing explains the end: the last thing vLLM said is still the evidence to show
        last = Redactor().text(next((line.strip() for line in reversed(lines) if line.strip()), ""))[:500]
        failure = dataclasses.replace(failure, evidence=f"last line: {last}" if last else "")
    report = as_json(failure)
    if vllm_argv is not None:
        facts = Facts(vllm_version=vllm_version.from_output("\n".join(lines[:HEAD_LINES])))
        report["next"] = next_step(failure, tuple(vllm_argv), settings or load_settings({}), facts)
    if ns.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(as_text(failure) + (f"\nnext:     {_next_text(report['next'])}" if "next" in report else ""))
    return ExitCode.STOPPED


def next_step(
    failure: Failure, vllm_argv: tuple[str, ...], settings: GuardSettings, facts: Facts | None = None
) -> dict[str, object]:
    """What the policy would do after a first attempt with `vllm_argv` ended like this; the
    version vLLM printed, if any, picks the spelling of the flags."""
    settings, policy = policy_file.effective(settings)
    attempt = Attempt(1, vllm_argv, 0.0, 0.0, None, None, failure)
    # No jitter: the same log gives the same answer.
    discipline = dataclasses.replace(settings.discipline(), backoff_jitter_s=0.0)
    rng = random.Random(0)
    config = vllm_config.read(vllm_argv)
    decision = decide(
        [attempt], discipline, now=0.0, rng=rng, policy=policy, facts=facts or Facts(), config=config
    )
    return decision_json(decision, Redactor().argv)


def _next_text(decision: object) -> str:
    if not isinstance(decision, dict):
        return "-"
    if decision["action"] == "relaunch":
        delay = f" after {decision['delay_s']:.1f} s" if decision["delay_s"] else " at once"
        return f"relaunch{delay} ({decision['step']}): {' '.join(decision['argv'])}"
    return f"give up, exit {decision['exit_code']}: {decision['message']}"


def as_json(failure: Failure) -> dict[str, object]:
    return {
        "kind": failure.kind.value,
        "permanent": failure.permanent,
        "evidence": failure.evidence,
        "numbers": failure.numbers,
        "advice": ADVICE[failure.kind],
        "phase_known": failure.phase_known,
    }


def as_text(failure: Failure) -> str:
    restart = (
        "permanent: no restart can fix it" if failure.permanent else "another flag set or a restart may help"
    )
    numbers = " ".join(f"{k}={v}" for k, v in failure.numbers.items()) or "-"
    guessed = (
        "; the log does not show when it ran out of memory, so the kind is a guess and only a remedy "
        "safe while serving follows"
        if not failure.phase_known
        else ""
    )
    return "\n".join(
        [
            f"kind:     {failure.kind.value} ({restart}{guessed})",
            f"evidence: {failure.evidence or '-'}",
            f"numbers:  {numbers}",
            f"advice:   {ADVICE[failure.kind]}",
        ]
    )


def _read(path: str) -> list[str]:
    try:
        if path == "-":
            return _last_lines(sys.stdin.buffer)
        with open(path, "rb") as stream:
            return _last_lines(stream)
    except OSError as exc:
        raise GuardError(f"cannot read {path}: {exc.strerror}", ExitCode.USAGE) from None


def _last_lines(stream: BinaryIO) -> list[str]:
    # Bytes, then decoded leniently: a log cut mid-character or in another encoding still reads.
    tail: collections.deque[bytes] = collections.deque(stream, maxlen=MAX_LINES)
    return [raw.decode("utf-8", errors="replace").rstrip("\r\n") for raw in tail]
