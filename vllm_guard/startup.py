"""`serve` up to vLLM's first exec, without an event loop or the rest of the guard.

vLLM begins loading while the guard is still importing what it needs only later (the event loop,
the HTTP client, psutil): bench/startup.py measures this path.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vllm_guard import vllm_args
from vllm_guard.child import STOP_SIGNALS, Spawned, become_subreaper, resolve_command, spawn
from vllm_guard.child import create_time as first_create_time
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.notify import scrubbed
from vllm_guard.redact import Redactor
from vllm_guard.settings import ENV_PREFIX, GuardSettings
from vllm_guard.state import StateDir, known_good_key
from vllm_guard.vllm_version import detect as detect_vllm_version

if TYPE_CHECKING:
    from vllm_guard.gpu import GpuFacts


def _remove_previous(state: StateDir, settings: GuardSettings) -> list[int]:
    """Remove what a previous guard on this state directory left of vLLM (it was killed before
    it could): the pids it recorded, where their start times still match. Returns the recorded
    pids when any of them was still alive, for the wait on their GPU memory."""
    recorded = state.recorded_processes()
    if not recorded:
        return []
    from vllm_guard.child import remove_recorded  # noqa: PLC0415

    killed = remove_recorded(recorded, settings.kill_timeout_s)
    state.clear_processes()
    if not killed:
        return []
    print(
        f"vllm-guard: removed what the previous guard left of vLLM: {', '.join(killed)}",
        file=sys.stderr,
        flush=True,
    )
    return [pid for pid, _ in recorded]


def _read_gpus(settings: GuardSettings, env: Mapping[str, str], removed: Sequence[int]) -> GpuFacts | None:
    """The GPUs, for preflight and the known-good key; not read at all with preflight off. After
    removing a previous run's processes, their GPU memory is waited for first (a dead process's
    memory comes back a moment later), so that preflight does not fit the flags around it."""
    if settings.preflight == "off":
        return None
    from vllm_guard import gpu  # noqa: PLC0415
    from vllm_guard.preflight_cli import gpu_facts  # noqa: PLC0415

    probe = gpu.Nvml.open() if removed and settings.gpu_snapshot is None else None
    if probe is not None:
        import asyncio  # noqa: PLC0415 - only after removing leftovers, before vLLM starts

        asyncio.run(gpu.wait_for_release(probe, removed, settings.gpu_release_timeout_s))
    return gpu_facts(settings, env)


def _gpu_key(gpus: GpuFacts | None) -> str | None:
    if gpus is None or not gpus.devices:
        return None
    return f"{gpus.devices[0].name} x{len(gpus.devices)}"


@dataclass(frozen=True, slots=True)
class Started:
    """`serve` up to vLLM's first exec: what the event loop then takes over."""

    settings: GuardSettings
    program: tuple[str, ...]
    model: str
    user_args: tuple[str, ...]
    env: dict[str, str]
    state: StateDir
    first: Spawned
    first_args: tuple[str, ...]  # the user's flags, or the remembered set, as preflight left them
    remembered_args: tuple[str, ...] | None  # the flags that reached ready last time, if any
    known_good_key: str
    vllm_version: str | None
    # SIGTERM/SIGINT that arrived before the event loop took the signals over.
    early_signals: list[int] = field(default_factory=list)


def start_serving(
    settings: GuardSettings,
    model: str,
    user_args: Sequence[str],
    env: Mapping[str, str],
) -> Started:
    """Everything `serve` must do before vLLM starts (find the command, hold the state
    directory), and vLLM's start itself."""
    program = tuple(resolve_command(settings.vllm_command, env))
    # systemd's notify socket is the guard's to speak on, not vLLM's (see notify.scrubbed); and
    # the guard's own options are not vLLM's (vLLM warns of every VLLM_* variable it does not know)
    options = {ENV_PREFIX + name.upper() for name in GuardSettings.model_fields}
    env = {k: v for k, v in scrubbed(env).items() if k not in options}
    early: list[int] = []
    # From the spawn on, a stop request must not kill the guard and leave vLLM running unwatched
    # (it is in a session of its own): note it, and the supervisor acts on it when it starts.
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, _frame: early.append(received))
    state = StateDir(settings.state_dir)
    state.open()
    version = detect_vllm_version(program)
    try:
        removed = _remove_previous(state, settings)
        gpus = _read_gpus(settings, env, removed)
        # The version keys flag spellings apart, the GPU what fits.
        user_key = Redactor.for_launch(env, user_args).argv(user_args)
        key = known_good_key(model, user_key, version, _gpu_key(gpus))
        remembered = state.known_good().get(key)
        first_args = tuple(user_args)
        remembered_args = None
        if remembered is not None:
            first_args = vllm_args.replay(user_args, [tuple(e) for e in remembered.get("edits", [])])
            remembered_args = first_args
        if gpus is not None:
            from vllm_guard.preflight_cli import for_serve  # noqa: PLC0415

            first_args = for_serve(settings, model, first_args, env, version, gpus)
    except BaseException:
        state.close()
        raise
    if early:
        # Stopped during preflight (reading NVML, the model's files): nothing to stop yet.
        state.close()
        name = signal.Signals(early[0]).name
        raise GuardError(f"stopped by {name} before vLLM was started", ExitCode.STOPPED)
    try:
        become_subreaper()  # before the spawn, so vLLM's orphans always come back to us
        first = spawn([*program, "serve", model, *first_args], env)
    except BaseException:
        state.close()
        raise
    # vLLM is starting; from now on a guard killed outright leaves a record of what to remove.
    state.record_processes({first.pid: first_create_time(first.pid)})
    return Started(
        settings=settings,
        program=program,
        model=model,
        user_args=tuple(user_args),
        env=dict(env),
        state=state,
        first=first,
        first_args=first_args,
        remembered_args=remembered_args,
        known_good_key=key,
        vllm_version=version,
        early_signals=early,
    )
