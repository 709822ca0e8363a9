"""A long life: weeks of serving with occasional fixable failures on a fake clock (review B3), and
a ladder that makes progress bounded by its own length, not by the restart budget."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from test_supervisor import FakeLauncher, FakeProbe, RecordingPrinter, Script

from vllm_guard import policy_file, vllm_args
from vllm_guard.errors import ExitCode
from vllm_guard.failures import Failure, FailureKind
from vllm_guard.health import HealthResult
from vllm_guard.output import AttemptOutput
from vllm_guard.policy import Attempt, Discipline, GiveUp, Policy, Relaunch, Step, decide
from vllm_guard.processes import VllmProcess
from vllm_guard.settings import load as load_settings
from vllm_guard.state import StateDir
from vllm_guard.supervisor import Supervisor, World

DAY = 86400.0
HOUR = 3600.0
# vLLM's own words for an OOM while serving (tests/diagnosis/fixtures/oom_runtime, vLLM 0.19)
RUNTIME_OOM = (
    b"(EngineCore pid=229) ERROR 04-19 12:21:04 [core.py:1134] torch.OutOfMemoryError: CUDA out of memory. "
    b"Tried to allocate 72.00 MiB. GPU 0 has a total capacity of 31.33 GiB of which 2.56 MiB is free.\n"
)


def test_weekly_runtime_ooms_never_end_the_service() -> None:
    """B3: four runtime OOMs a week apart used the ladder up and the guard exited 4."""
    policy = policy_file.load("default").policy()
    d = Discipline(
        max_restarts=5,
        window_s=3600,
        backoff_initial_s=2,
        backoff_max_s=60,
        backoff_jitter_s=0,
        healthy_reset_s=300,
    )
    user: tuple[str, ...] = ("--max-model-len", "8192")
    args, step, history = user, None, []
    for week in range(30):
        start = week * 7 * DAY
        history.append(
            Attempt(
                week + 1,
                args,
                start,
                start + 6 * DAY,
                start + 60,
                1,
                Failure(FailureKind.OOM_RUNTIME, "CUDA out of memory"),
                "",
                step,
            )
        )
        decision = decide(history, d, start + 6 * DAY, random.Random(0), policy=policy)
        assert isinstance(decision, Relaunch), f"week {week + 1}: {decision}"
        args, step = decision.vllm_args, decision.step
    # the ladder went on lowering while it could, never below its floors, then kept the flags
    assert vllm_args.get(args, "--max-num-seqs") == "8"
    assert vllm_args.get(args, "--max-num-batched-tokens") == "512"
    assert float(vllm_args.get(args, "--gpu-memory-utilization") or 1) >= 0.5
    assert isinstance(decision, Relaunch) and decision.how == "same" and decision.delay_s > 0


def test_a_ladder_that_ran_out_without_serving_still_gives_up() -> None:
    policy = policy_file.load("default").policy()
    d = Discipline(5, 3600, 2, 60, 0, 300)
    history: list[Attempt] = []
    args: tuple[str, ...] = (
        "--max-num-seqs",
        "8",
        "--max-num-batched-tokens",
        "512",
        "--gpu-memory-utilization",
        "0.5",
    )
    decision: Relaunch | GiveUp = Relaunch(args, 0.0, "")
    for n in range(1, 10):
        history.append(
            Attempt(
                n,
                args,
                n * 10.0,
                n * 10.0 + 5,
                None,
                1,
                Failure(FailureKind.OOM_RUNTIME, "x"),
                "",
                decision.step if isinstance(decision, Relaunch) and n > 1 else None,
            )
        )
        decision = decide(history, d, n * 10.0 + 5, random.Random(0), policy=policy)
        if isinstance(decision, GiveUp):
            break
        args = decision.vllm_args
    assert isinstance(decision, GiveUp) and decision.exit_code == ExitCode.GAVE_UP


def test_a_ladder_making_progress_is_not_cut_short_by_the_restart_budget() -> None:
    """As a new user met it: 16 GiB, Llama-3.1-8B at 131072 gave up at attempt 6 with a fitted
    length in hand. Ladder steps are bounded by the ladder, not by --max-restarts."""
    policy = policy_file.load("default").policy()
    d = Discipline(
        max_restarts=1,
        window_s=3600,
        backoff_initial_s=2,
        backoff_max_s=60,
        backoff_jitter_s=0,
        healthy_reset_s=300,
    )
    kinds = [
        FailureKind.OOM_CUDA_GRAPH,
        FailureKind.OOM_KV_CACHE,
        FailureKind.OOM_KV_CACHE,
        FailureKind.OOM_KV_CACHE,
    ]
    history: list[Attempt] = []
    args: tuple[str, ...] = ("--max-model-len", "131072")
    step = None
    for n, kind in enumerate(kinds, start=1):
        history.append(Attempt(n, args, n * 60.0, n * 60.0 + 50, None, 1, Failure(kind, "x"), "", step))
        decision = decide(history, d, n * 60.0 + 50, random.Random(0), policy=policy)
        assert isinstance(decision, Relaunch) and decision.how == "step", f"attempt {n}: {decision}"
        args, step = decision.vllm_args, decision.step


class ServingLauncher(FakeLauncher):
    """Each vLLM serves, then dies of a runtime OOM; the clock moves an hour a /health poll."""

    async def launch(self, argv: Sequence[str], env: Mapping[str, str], output: AttemptOutput) -> VllmProcess:
        proc = await super().launch(argv, env, output)
        output.feed(2, RUNTIME_OOM)
        return proc


class HourlyProbe(FakeProbe):
    def __init__(self, launcher: FakeLauncher, proc: VllmProcess, clock: list[float]) -> None:
        super().__init__(launcher, proc)
        self.clock = clock

    async def check(self) -> HealthResult:
        self.clock[0] += HOUR
        return await super().check()


@pytest.mark.timeout(60)
async def test_twelve_weeks_of_serving_with_an_oom_every_six_days(tmp_path: Path) -> None:
    """The whole loop over a long life: settings, launches, decisions, the journal, on a fake clock."""
    state = StateDir(tmp_path / "state")
    state.open()
    clock = [0.0]
    launcher = ServingLauncher([Script(ready_after_polls=1, exit_after_polls=144)])  # 6 days each
    printer = RecordingPrinter()

    async def no_delay(_: float) -> None:
        clock[0] += 1.0

    world = World(
        launcher=launcher,
        probe_for=lambda _: HourlyProbe(launcher, launcher.procs[-1], clock),
        state=state,
        printer=printer,
        clock=lambda: clock[0],
        sleep=no_delay,
        rng=random.Random(0),
    )
    settings = load_settings(
        {"state_dir": str(tmp_path / "state"), "health_interval_s": "0.0005", "backoff_jitter_s": "0"}
    )
    user = ("--max-model-len", "8192", "--port", "8000")
    sup = Supervisor(
        settings, program=["vllm"], model="m", user_args=user, env={}, world=world,
        policy=policy_file.load("default").policy(),
    )  # fmt: skip
    run = asyncio.ensure_future(sup.run())
    while len(sup.history) < 14 and not run.done():
        await asyncio.sleep(0.01)
    assert not run.done(), f"the guard ended after {len(sup.history)} attempts: {printer.lines[-3:]}"
    assert clock[0] >= 12 * 7 * DAY
    sup.request_stop()
    assert await run == ExitCode.STOPPED
    assert {a.failure.kind for a in sup.history} == {FailureKind.OOM_RUNTIME}
    assert not any("gave up" in line for line in printer.lines)
    printer.close()
    state.close()


def run_decisions(
    policy_steps: Policy,
    d: Discipline,
    ready_for_s: float | None,
    load_s: float,
    kind: FailureKind,
    *,
    n: int = 200,
) -> list[Relaunch | GiveUp]:
    history: list[Attempt] = []
    args: tuple[str, ...] = ("--max-model-len", "8192")
    step, clock, out = None, 0.0, []
    for number in range(1, n + 1):
        ready = None if ready_for_s is None else clock + load_s
        ended = clock + load_s + (ready_for_s or 0.0)
        history.append(Attempt(number, args, clock, ended, ready, 1, Failure(kind, "x"), "", step))
        decision = decide(history, d, ended, random.Random(0), policy=policy_steps)
        out.append(decision)
        if isinstance(decision, GiveUp):
            break
        args, step, clock = decision.vllm_args, decision.step, ended + decision.delay_s
    return out


def test_an_env_step_with_healthy_reset_zero_does_not_loop_forever() -> None:
    """--healthy-reset-s 0 made every never-ready attempt a new stretch: an env step, which
    nothing refuses and the budget never counted, relaunched at once, forever."""
    env = Policy("mine", ((FailureKind.OOM_KV_CACHE, (Step("env", env=(("A", "1"),)),)),))
    d = Discipline(5, 3600, 2, 60, 0, 0)
    decisions = run_decisions(env, d, None, 30.0, FailureKind.OOM_KV_CACHE)
    assert isinstance(decisions[-1], GiveUp) and len(decisions) <= 3


def test_a_vllm_that_is_ready_a_moment_then_dies_runs_the_ladder_out_and_gives_up() -> None:
    """Ready for 1 s after a 13-minute load, again and again: the budget (5 an hour) never
    filled, and the exhausted ladder restarted with the same flags forever."""
    policy = policy_file.load("default").policy()
    d = Discipline(5, 3600, 2, 60, 0, 300)
    decisions = run_decisions(policy, d, 1.0, 13 * 60.0, FailureKind.OOM_RUNTIME)
    assert isinstance(decisions[-1], GiveUp) and decisions[-1].exit_code == ExitCode.GAVE_UP
    assert len(decisions) < 20
