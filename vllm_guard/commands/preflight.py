"""`vllm-guard preflight`: will it fit, and how; and `--kill-leftovers`.

vllm-guard preflight [--json] [--gpu NAME] [--gpus N] [--gpu-snapshot FILE]
                     [--save-gpu-snapshot FILE] [--kill-leftovers] MODEL [VLLM ARGS...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from vllm_guard import gpu, machine
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.serve_preflight import gpu_facts, judge, line, read_snapshot
from vllm_guard.settings import GuardSettings, misplaced_option
from vllm_guard.state import StateDir

# How long `--kill-leftovers` lets a leftover vLLM process act on SIGTERM before SIGKILL.
LEFTOVER_GRACE_S = 10.0


def run(argv: Sequence[str], settings: GuardSettings, environ: Mapping[str, str] | None = None) -> ExitCode:
    environ = dict(os.environ) if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="vllm-guard preflight",
        description="Check before launch whether MODEL fits this machine (or a planned one), and "
        "with which flags vLLM would start. Options go before MODEL; after it everything is vLLM's.",
        allow_abbrev=False,
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--gpu", metavar="NAME", help="plan for this card instead of reading NVML")
    parser.add_argument("--gpus", type=int, metavar="N", help="how many of --gpu (default 1)")
    parser.add_argument("--gpu-snapshot", metavar="FILE", help="plan from a snapshot written on the target")
    parser.add_argument("--save-gpu-snapshot", metavar="FILE", help="write this machine's GPUs to FILE")
    parser.add_argument(
        "--kill-leftovers",
        action="store_true",
        help="stop vLLM processes that hold GPU memory (never others)",
    )
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("vllm_args", nargs=argparse.REMAINDER, metavar="VLLM ARGS")
    try:
        ns = parser.parse_args(list(argv))
    except SystemExit as exc:
        return ExitCode.STOPPED if exc.code == 0 else ExitCode.USAGE
    misplaced_option(ns.vllm_args, "preflight")
    if ns.gpu and ns.gpu_snapshot:
        raise GuardError("--gpu and --gpu-snapshot are two ways to plan: give one")
    if ns.gpus is not None and not ns.gpu:
        raise GuardError("--gpus N goes with --gpu NAME")
    from vllm_guard.processes import resolve_command  # noqa: PLC0415
    from vllm_guard.vllm_version import cpu_build, detect  # noqa: PLC0415

    try:
        program: list[str] | None = list(resolve_command(settings.vllm_command, environ))
    except GuardError:
        program = None  # planning on a machine without vLLM
    cpu = program is not None and cpu_build(program, environ)
    gpus = _devices(ns, settings, environ, cpu=cpu)
    if ns.save_gpu_snapshot:
        Path(ns.save_gpu_snapshot).write_text(
            json.dumps(gpu.facts_to_json(gpus), indent=1) + "\n", encoding="utf-8"
        )
    if ns.kill_leftovers:
        _kill_leftovers(gpus)
        gpus = gpu_facts(settings, environ, cpu=cpu) if not (ns.gpu or ns.gpu_snapshot) else gpus
    version = detect(program) if program is not None else None
    # what earlier starts measured, read beside a guard that may be running: nothing set aside
    starts = StateDir(settings.state_dir, shared=settings.shared_state).starts(set_aside=False)
    verdict = judge(settings, ns.model, tuple(ns.vllm_args), environ, gpus, version, starts=starts)
    if ns.json:
        print(json.dumps(verdict.as_json(), ensure_ascii=False))
    else:
        for finding in verdict.findings:
            print(line(finding))
        if verdict.ok:
            how = "start" if verdict.judged else "start (its memory not judged: see ??)"
            print(f"{how}: {' '.join(['vllm', 'serve', ns.model, *verdict.start_argv])}")
        else:
            print("cannot start here: fix what FAIL says")
    if verdict.ok:
        return ExitCode.STOPPED
    return ExitCode.PERMANENT if verdict.permanent else ExitCode.CANNOT_START


def _devices(
    ns: argparse.Namespace, settings: GuardSettings, environ: Mapping[str, str], *, cpu: bool
) -> gpu.GpuFacts:
    """The devices to plan for: a card named (--gpu), a snapshot, or this machine's."""
    if ns.gpu:
        try:
            return gpu.planned(ns.gpu, ns.gpus or 1)
        except ValueError as exc:
            raise GuardError(str(exc)) from None
    if ns.gpu_snapshot:
        return read_snapshot(Path(ns.gpu_snapshot))
    return gpu_facts(settings, environ, cpu=cpu)


def _kill_leftovers(gpus: gpu.GpuFacts, grace_s: float = LEFTOVER_GRACE_S) -> None:
    """Stop vLLM's leftover serving processes: SIGTERM (an EngineCore shuts down in order and
    lets its GPU memory go), then SIGKILL of those still there after `grace_s`."""
    import psutil  # noqa: PLC0415

    targets: list[tuple[psutil.Process, str | None]] = []
    for proc in machine.vllm_leftovers(gpus, ()):
        try:
            target = psutil.Process(proc.pid)
            # Checked again on the live process: a pid NVML listed may since belong to another program.
            if not machine.looks_like_vllm(target.cmdline()):
                continue
            target.terminate()
            targets.append((target, proc.command))
        except psutil.Error as exc:
            print(f"could not stop pid {proc.pid}: {exc}", file=sys.stderr)
    _, alive = psutil.wait_procs([t for t, _ in targets], timeout=grace_s)
    for target, command in targets:
        try:
            if target in alive:
                target.kill()
                print(f"killed pid {target.pid} ({command}): SIGTERM did not stop it", file=sys.stderr)
            else:
                print(f"stopped pid {target.pid} ({command})", file=sys.stderr)
        except psutil.Error as exc:
            print(f"could not kill pid {target.pid}: {exc}", file=sys.stderr)
