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

from vllm_guard import flag_edits, vllm_config
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.notify import scrubbed
from vllm_guard.processes import Spawned, become_subreaper, resolve_command, spawn, stop_signals
from vllm_guard.processes import create_time as first_create_time
from vllm_guard.redact import Redactor
from vllm_guard.settings import ENV_PREFIX, GuardSettings
from vllm_guard.state import StateDir, known_good_key
from vllm_guard.vllm_version import cpu_build
from vllm_guard.vllm_version import detect as detect_vllm_version

if TYPE_CHECKING:
    from vllm_guard.facts import GpuFacts
    from vllm_guard.policy import Facts


def _remove_previous(state: StateDir, settings: GuardSettings) -> list[int]:
    """Remove what a previous guard on this state directory left of vLLM (it was killed before
    it could): the pids it recorded, where their start times still match, then the /dev/shm
    segments it recorded as theirs that no live process uses. Returns the recorded pids when
    any of them was still alive, for the wait on their GPU memory."""
    recorded = state.recorded_processes()
    segments = state.recorded_shm()
    if not recorded and not segments:
        return []
    from vllm_guard.processes import remove_recorded, remove_unused_shm  # noqa: PLC0415

    killed = remove_recorded(recorded, settings.kill_timeout_s)
    # The tree's resource tracker died with the guard (or was killed just now), so nothing
    # removed vLLM's multiprocessing segments; a segment still mapped by anyone is kept.
    removed = remove_unused_shm(segments, since=min((started for _, started in recorded), default=0.0))
    state.clear_processes()
    if removed:
        print(
            f"vllm-guard: removed {len(removed)} /dev/shm segment(s) the previous guard's vLLM left: "
            + ", ".join(removed),
            file=sys.stderr,
            flush=True,
        )
    if not killed:
        return []
    print(
        f"vllm-guard: removed what the previous guard left of vLLM: {', '.join(killed)}",
        file=sys.stderr,
        flush=True,
    )
    return [pid for pid, _ in recorded]


def _read_gpus(
    settings: GuardSettings, env: Mapping[str, str], removed: Sequence[int], program: Sequence[str]
) -> GpuFacts | None:
    """The GPUs (a CPU build's memory node where `program` is one), for preflight and the
    known-good key; not read at all with preflight off. After
    removing a previous run's processes, their GPU memory is waited for first (a dead process's
    memory comes back a moment later), so that preflight does not fit the flags around it."""
    if settings.preflight == "off":
        return None
    cpu = cpu_build(program, env)
    from vllm_guard import gpu  # noqa: PLC0415
    from vllm_guard.serve_preflight import gpu_facts  # noqa: PLC0415

    probe = gpu.Nvml.open() if removed and settings.gpu_snapshot is None and not cpu else None
    if probe is not None:
        import asyncio  # noqa: PLC0415 - only after removing leftovers, before vLLM starts

        asyncio.run(gpu.wait_for_release(probe, removed, settings.gpu_release_timeout_s))
    return gpu_facts(settings, env, cpu=cpu)


def _pinned(settings: GuardSettings) -> frozenset[str]:
    """`--pin` and a user's policy file's `pinned:` (the shipped policies pin nothing; a user's
    file is validated before the spawn anyway)."""
    from vllm_guard.settings import shipped_policy  # noqa: PLC0415

    if shipped_policy(settings.policy) is not None:
        return settings.pinned
    from vllm_guard import policy_file  # noqa: PLC0415

    return policy_file.effective(settings)[1].pinned


def _replay(
    user_args: Sequence[str],
    edits: Sequence[tuple[str, str, str | None]],
    pinned: frozenset[str],
    version: str | None,
    capability: tuple[int, int] | None = None,
) -> tuple[str, ...]:
    """The remembered edits made again on the user's flags, through the door every edit takes:
    what the pins or the user's own values no longer allow is left out, and said."""
    changes = flag_edits.as_changes(edits)
    config = vllm_config.read(user_args)
    rules = flag_edits.Rules(tuple(user_args), pinned, version, config, capability)
    replayed, refused = flag_edits.apply_all(user_args, changes, rules)
    for why in refused:
        print(f"vllm-guard: not starting from the remembered {why}", file=sys.stderr, flush=True)
    return replayed


def _capability(gpus: GpuFacts | None) -> tuple[int, int] | None:
    """The lowest compute capability of the GPUs vLLM will use, when known."""
    devices = gpus.devices if gpus is not None else ()
    return min((d.compute_capability for d in devices if d.compute_capability is not None), default=None)


def _facts(gpus: GpuFacts | None, version: str | None) -> Facts:
    """One value of what is known of the machine, from preflight to the policy (built after the
    spawn: the policy module's imports are not on the way to vLLM's exec)."""
    from vllm_guard.policy import Facts  # noqa: PLC0415

    devices = gpus.devices if gpus is not None else ()
    return Facts(
        gpu_name=devices[0].name if devices else None,
        gpu_count=len(devices) if devices else None,
        compute_capability=_capability(gpus),
        vllm_version=version,
        cuda_total_bytes=min((d.cuda_total_bytes for d in devices), default=None),
    )


def _group_role(settings: GuardSettings, user_args: Sequence[str], version: str | None) -> str:
    """This node's role in a vLLM group ("solo" alone), with what a group needs of the guard's
    options checked before anything starts."""
    from vllm_guard.group_role import role_of  # noqa: PLC0415 - light: it is read before the spawn

    role = role_of(vllm_config.flags(user_args, version))
    if not role.grouped:
        return role.name
    if role.name == "follower" and role.rank == 0:
        # vLLM takes --headless at node rank 0 for a data-parallel engine, waits for a front-end
        # that never answers, and ends 5 minutes later
        raise GuardError(
            f"--headless with --nnodes {role.nodes} needs this node's --node-rank (1 to {role.nodes - 1})",
            hint="--node-rank R: 0 is the node that serves the API, without --headless",
        )
    where = role.describe()
    if settings.group_token_file is None:
        raise GuardError(
            f"this node is {where}: its guard needs the group's token to talk to the others",
            hint="--group-token-file FILE, the same secret on every node (e.g. `openssl rand -hex 32`)",
        )
    if role.name == "leader" and settings.metrics_port is None:
        raise GuardError(
            f"this node is {where}: its followers report to its guard on --metrics-port",
            hint="--metrics-port PORT (and --metrics-host 0.0.0.0 for the other nodes to reach it)",
        )
    if (
        role.name == "follower"
        and settings.group_leader is None
        and (role.leader_host is None or settings.metrics_port is None)
    ):
        raise GuardError(
            f"this node is {where}: its guard cannot tell where the leader's guard listens",
            hint="--group-leader http://LEADER:PORT, or --metrics-port PORT as on the leader",
        )
    return role.name


def _quiet(user_args: Sequence[str], version: str | None, pinned: frozenset[str]) -> Sequence[str]:
    """The user's flags with the guard's own polls (once a second) kept out of vLLM's access
    log, where vLLM can and the user said nothing of it, and said."""
    quiet = flag_edits.quiet_access_log(user_args, version, pinned, vllm_config.read(user_args))
    if quiet is None:
        return user_args
    print(
        "vllm-guard: leaving the guard's own polls out of vLLM's access log "
        f"({flag_edits.QUIET_FLAG} {quiet[-1]}; an access-log flag of your own, "
        f"or --pin {flag_edits.QUIET_FLAG}, keeps them)",
        file=sys.stderr,
        flush=True,
    )
    return quiet


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
    first: Spawned | None  # None in a group: each node launches the generation its leader plans
    first_args: tuple[str, ...]  # the user's flags, or the remembered set, as preflight left them
    remembered_args: tuple[str, ...] | None  # the flags that reached ready last time, if any
    learned_elsewhere: str | None  # where they were learned, when another guard did (shared state)
    known_good_key: str
    vllm_version: str | None
    facts: Facts  # what preflight read of the GPUs, for the policy
    preflight_said: tuple[str, ...] = ()  # what preflight found wrong or adjusted, as it said it
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
    for signum in stop_signals():  # SIGHUP only where it was not ignored (nohup)
        signal.signal(signum, lambda received, _frame: early.append(received))
    # one guard per endpoint: two models on two ports share a state directory
    state = StateDir(settings.state_dir, vllm_config.endpoint(user_args), shared=settings.shared_state)
    state.open(model)
    version = detect_vllm_version(program)
    try:
        grouped = _group_role(settings, user_args, version) != "solo"
    except BaseException:
        state.close()
        raise
    said: list[str] = []  # what preflight found, for a group's leader to hear
    try:
        removed = _remove_previous(state, settings)
        gpus = _read_gpus(settings, env, removed, program)
        pinned = _pinned(settings)
        user_args = _quiet(user_args, version, pinned)
        # The version keys flag spellings apart, the GPU what fits, the policy and pins what
        # the guard was allowed to change; only the user's flags that bear on memory count.
        # the --config file's values count as the flags they are (a changed file, another key)
        relevant = flag_edits.memory_relevant(vllm_config.effective(user_args), version)
        user_key = Redactor.for_launch(env, user_args).argv(relevant)
        key = known_good_key(model, user_key, version, _gpu_key(gpus), policy=settings.policy, pinned=pinned)
        remembered = state.remembered(key)
        first_args = tuple(user_args)
        remembered_args = None
        if remembered is not None:
            capabilities = (
                [d.compute_capability for d in gpus.devices if d.compute_capability] if gpus else []
            )
            first_args = _replay(
                user_args, remembered.edits, pinned, version, min(capabilities, default=None)
            )
            remembered_args = first_args
        if gpus is not None:
            from vllm_guard.serve_preflight import for_serve  # noqa: PLC0415

            first_args = for_serve(settings, model, first_args, env, version, gpus, state.starts(), said)
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
        # a group's nodes run the flags its leader's guard plans with every node's own start, which
        # the event loop asks for: nothing is spawned before
        first = None if grouped else spawn([*program, "serve", model, *first_args], env)
    except BaseException:
        state.close()
        raise
    if first is not None:
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
        learned_elsewhere=remembered.learned_elsewhere if remembered is not None else None,
        known_good_key=key,
        vllm_version=version,
        facts=_facts(gpus, version),
        preflight_said=tuple(said),
        early_signals=early,
    )
