"""`vllm-guard serve` from the moment its event loop runs: the shell for real (processes, HTTP,
NVML, the terminal, systemd, the exporter) around the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Sequence

from vllm_guard import gpu
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.exporter import Exporter, GuardMetrics
from vllm_guard.group_link import Desk, FollowerSeat, LeaderSeat, Link
from vllm_guard.notify import Notifier
from vllm_guard.printer import Printer
from vllm_guard.processes import Spawned
from vllm_guard.settings import GuardSettings
from vllm_guard.startup import Started
from vllm_guard.state import StateDir
from vllm_guard.supervisor import Supervisor, World


@contextlib.asynccontextmanager
async def real_world(
    settings: GuardSettings, state: StateDir, started: Spawned | None = None
) -> AsyncIterator[World]:
    """The shell for real: processes, HTTP, NVML, the state directory, the terminal."""
    from vllm_guard.health import HttpHealthProbe, endpoint  # noqa: PLC0415
    from vllm_guard.processes import ProcessLauncher, Reaper  # noqa: PLC0415

    printer = Printer(log_format=settings.log_format)
    reaper = Reaper()
    reaper.install(asyncio.get_running_loop())
    notifier = Notifier.from_env(os.environ)
    metrics = GuardMetrics() if settings.metrics_port is not None else None
    try:
        yield World(
            launcher=ProcessLauncher(reaper, kill_timeout_s=settings.kill_timeout_s, started=started),
            probe_for=lambda flags: HttpHealthProbe(
                endpoint(flags), settings.health_timeout_s, flags.version
            ),
            state=state,
            printer=printer,
            gpu_probe=gpu.Nvml.open,
            notifier=notifier,
            metrics=metrics,
        )
    finally:
        reaper.uninstall()
        printer.close()
        if notifier is not None:
            notifier.close()


def _start_exporter(
    settings: GuardSettings, world: World, supervisor: Supervisor, desk: Desk | None
) -> Exporter | None:
    if world.metrics is None or settings.metrics_port is None:
        return None
    exporter = Exporter(
        world.metrics,
        settings.metrics_host,
        settings.metrics_port,
        alive=supervisor.alive,
        extra=supervisor.status,
        group=desk.handle if desk is not None else None,
    )
    try:
        exporter.start()
    except OSError as exc:
        raise GuardError(
            f"the guard's metrics endpoint cannot listen on {settings.metrics_host}:{settings.metrics_port}: "
            f"{exc.strerror}",
            ExitCode.CANNOT_START,
            hint="give --metrics-port another port (or unset it)",
        ) from None
    world.printer.guard(
        f"metrics, /livez, /readyz and /status on http://{settings.metrics_host}:{exporter.port}"
    )
    return exporter


def _group_seat(
    started: Started, settings: GuardSettings, pinned: frozenset[str], world: World
) -> tuple[LeaderSeat | FollowerSeat | None, Desk | None, Link | None]:
    """This node's seat in its vLLM group, as startup checked its options; (None, None, None)
    for a node alone."""
    from vllm_guard import flag_edits, group, group_role, vllm_args, vllm_config  # noqa: PLC0415
    from vllm_guard.group_link import Seated, read_token  # noqa: PLC0415

    version = started.vllm_version
    role = group_role.role_of(vllm_config.flags(started.user_args, version))
    if not role.grouped or settings.group_token_file is None:
        return None, None, None
    token = read_token(settings.group_token_file)
    user_args = started.user_args
    rules = flag_edits.Rules(
        user_args, pinned, version, vllm_config.read(user_args), started.facts.compute_capability
    )

    def edited(edits: Sequence[group.Edit]) -> tuple[str, ...]:
        args, refused = flag_edits.apply_all(user_args, flag_edits.as_changes(edits), rules)
        for why in refused:
            world.printer.guard(f"not making the group's edit here: {why}", level="warning")
        return args

    seated = Seated(world.printer.guard, edited, lambda args: vllm_args.edits(user_args, args), rules)
    if role.name == "leader":
        desk = Desk(role.nodes, token, world.clock, world.metrics, asyncio.get_running_loop())
        seat = LeaderSeat(role, desk, seated, lost_after_s=settings.group_lost_after_s, clock=world.clock)
        return seat, desk, None
    host = role.leader_host or ""
    url = settings.group_leader or f"http://{f'[{host}]' if ':' in host else host}:{settings.metrics_port}"
    facts = started.facts
    gpu = (
        group.GpuReport(facts.gpu_name, facts.gpu_count, facts.cuda_total_bytes)
        if facts.gpu_name and facts.gpu_count and facts.cuda_total_bytes
        else None
    )
    planned = tuple(vllm_args.edits(user_args, started.first_args))
    link = Link(url, token, role.rank, world.printer.guard, gpu, planned, started.preflight_said)
    return FollowerSeat(role, link, seated), None, link


async def serve(started: Started) -> ExitCode:
    """`vllm-guard serve`, from the moment its event loop runs."""
    try:
        from vllm_guard import policy_file  # noqa: PLC0415 - loaded once vLLM is already starting

        settings, policy = policy_file.effective(started.settings)
        async with real_world(settings, started.state, started.first) as world:
            seat, desk, link = _group_seat(started, settings, policy.pinned, world)
            supervisor = Supervisor(
                settings,
                program=started.program,
                model=started.model,
                user_args=started.user_args,
                env=started.env,
                world=world,
                policy=policy,
                start_args=started.first_args,
                remembered_args=started.remembered_args,
                learned_elsewhere=started.learned_elsewhere,
                facts=started.facts,
                known_good_key=started.known_good_key,
                vllm_version=started.vllm_version,
                group=seat,
            )
            exporter = _start_exporter(settings, world, supervisor, desk)
            linking = asyncio.ensure_future(link.run()) if link is not None else None
            try:
                return await supervisor.run(started.early_signals)
            finally:
                if linking is not None:
                    linking.cancel()
                if exporter is not None:
                    exporter.close()
    except BaseException:
        from vllm_guard.processes import kill_spawned  # noqa: PLC0415

        # If the loop failed before the first attempt was adopted, it must not run unwatched.
        if started.first is not None:
            with contextlib.suppress(OSError):
                os.kill(started.first.pid, 0)
                kill_spawned(started.first)
        raise
    finally:
        started.state.close()
