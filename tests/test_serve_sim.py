"""`vllm-guard serve` end to end over the simulator: real processes, real signals, real HTTP."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import psutil
import pytest
from state_files import endpoint_file

from vllm_guard.sim import load
from vllm_guard.state import attempts

pytestmark = pytest.mark.timeout(90)

SIM = f"{sys.executable} -m vllm_guard.sim"
MODEL = "Qwen/Qwen2.5-7B-Instruct"


@dataclass
class Guard:
    proc: subprocess.Popen[bytes]
    err: Path
    state: Path
    port: int

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.stderr():
                return
            if self.proc.poll() is not None and text not in self.stderr():
                break
            time.sleep(0.05)
        pytest.fail(f"no {text!r} from the guard; its stderr:\n{self.stderr()[-5000:]}")

    def api_server(self) -> psutil.Process:
        return psutil.Process(self.proc.pid).children()[0]

    def journal(self) -> list[dict[str, object]]:
        return attempts(endpoint_file(self.state, "journal.jsonl"))

    def complete(self) -> int:
        reply = httpx.post(
            f"http://127.0.0.1:{self.port}/v1/completions",
            json={"model": MODEL, "prompt": "hi", "max_tokens": 4},
            timeout=10,
            trust_env=False,
        )
        return reply.status_code

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout_s)


class Serve(Protocol):
    def __call__(
        self,
        *vllm_args: str,
        faults: str = "",
        stdout: int | IO[bytes] | None = None,
        gpu_gib: str = "24",
        sim_env: dict[str, str] | None = None,
        nohup: bool = False,
        **options: str,
    ) -> Guard: ...


@pytest.fixture
def serve(tmp_path: Path, port: int) -> Iterator[Serve]:
    started: list[Guard] = []

    def start(
        *vllm_args: str,
        faults: str = "",
        stdout: int | IO[bytes] | None = None,
        gpu_gib: str = "24",
        sim_env: dict[str, str] | None = None,
        nohup: bool = False,
        **options: str,
    ) -> Guard:
        state = Path(options.pop("state_dir", tmp_path / "state"))
        argv = [
            sys.executable, "-m", "vllm_guard",
            "--vllm-command", SIM,
            "--state-dir", str(state),
            "--health-interval-s", "0.1",
            "--backoff-initial-s", "0.1",
            "--backoff-jitter-s", "0",
            "--grace-period-s", "5",
        ]  # fmt: skip
        for name, value in options.items():
            argv += ["--" + name.replace("_", "-"), value]
        argv += ["serve", MODEL, "--host", "127.0.0.1", "--port", str(port), *vllm_args]
        if nohup:  # as `nohup vllm-guard serve ... &` starts it: SIGHUP ignored from the start
            argv = ["nohup", *argv]
        env = {
            **os.environ,
            "VLLM_GUARD_SIM_LOAD_S": "0.05",
            "VLLM_GUARD_SIM_FAULTS": faults,
            "VLLM_GUARD_SIM_GPU_MEMORY_GIB": gpu_gib,
            **(sim_env or {}),
            "VLLM_GUARD_SIM_STATE": str(tmp_path / "sim-launches"),
        }
        err = tmp_path / "guard.err"
        # A guard here starts as from a shell, whatever the test runner inherited: under `nohup`
        # (a CI run, say) SIGHUP is ignored, and a guard started so rightly keeps it ignored.
        hangup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
        with err.open("wb") as sink:
            proc = subprocess.Popen(
                argv,
                stdout=stdout if stdout is not None else subprocess.DEVNULL,
                stderr=sink,
                env=env,
            )
        signal.signal(signal.SIGHUP, hangup)
        guard = Guard(proc, err, state, port)
        started.append(guard)
        return guard

    yield start
    for guard in started:
        if guard.proc.poll() is None:
            guard.proc.send_signal(signal.SIGINT)
            guard.proc.send_signal(signal.SIGINT)
            guard.proc.wait(30)


def engine_of(guard: Guard) -> psutil.Process:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for p in guard.api_server().children(recursive=True):
            if p.name() == "VLLM::EngineCore":
                return p
        time.sleep(0.05)
    raise AssertionError("no VLLM::EngineCore under the API server")


def gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_sigterm_when_ready_stops_the_whole_tree_and_exits_zero(serve: Serve) -> None:
    guard = serve()
    guard.wait_for("vLLM is ready (attempt 1)")
    engine = engine_of(guard)
    assert guard.stop() == 0
    assert gone(engine)
    assert "nothing of it is left" in guard.stderr()


def test_a_runtime_oom_relaunches_at_once_with_fewer_sequences(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", faults="once:oom_after_requests=1")
    guard.wait_for("vLLM is ready (attempt 1)")
    assert guard.complete() in (200, 500)
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    first, second = guard.journal()
    assert first["exit_status"] == 1
    assert first["kind"] == "oom_runtime"  # an OOM after ready, from the real runtime-OOM text
    assert str(first["evidence"]).startswith("torch.OutOfMemoryError: CUDA out of memory.")
    assert second["kind"] == "stopped"
    assert first["argv"][-2:] == ["--max-model-len", "8192"]  # type: ignore[index]
    # The default policy's first oom_runtime step: half of vLLM's default 256 sequences.
    assert second["argv"] == [*first["argv"], "--max-num-seqs", "128"]  # type: ignore[misc]
    assert "step: scale --max-num-seqs x0.5 (floor 8); +--max-num-seqs 128; relaunching now" in guard.stderr()
    assert "CUDA out of memory" in Path(str(first["log"])).read_text()


def test_exit_status_zero_on_engine_death_is_still_a_failure(serve: Serve) -> None:
    guard = serve(faults="once:oom_after_requests=1,once:exit0_on_death")
    guard.wait_for("vLLM is ready (attempt 1)")
    guard.complete()
    guard.wait_for("exited with status 0")
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0


def test_a_vllm_that_ignores_sigterm_is_killed_after_the_grace(serve: Serve) -> None:
    guard = serve(faults="ignore_sigterm", grace_period_s="0.5")
    guard.wait_for("vLLM is ready (attempt 1)")
    engine = engine_of(guard)
    assert guard.stop() == 0
    assert "did not stop in time; killed its tree" in guard.stderr()
    assert gone(engine)


def test_a_second_ctrl_c_skips_the_grace(serve: Serve) -> None:
    guard = serve(faults="ignore_sigterm", grace_period_s="600")
    guard.wait_for("vLLM is ready (attempt 1)")
    guard.proc.send_signal(signal.SIGINT)
    guard.wait_for("stopping vLLM")
    guard.proc.send_signal(signal.SIGINT)
    assert guard.proc.wait(20) == 0


def test_orphans_of_a_killed_api_server_are_killed_before_the_relaunch(serve: Serve) -> None:
    guard = serve(faults="orphan_engine")
    guard.wait_for("vLLM is ready (attempt 1)")
    engine = engine_of(guard)
    guard.api_server().kill()
    guard.wait_for("killed what attempt 1 left behind")
    assert gone(engine)
    assert f"{engine.pid} (VLLM::EngineCore)" in guard.stderr()
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0


def test_a_hung_vllm_is_stopped_and_restarted(serve: Serve) -> None:
    # hang 1 s after ready, not 0.2 s: a loaded machine can delay the first 200 past a shorter
    # window, and a vLLM never seen ready is not hung but still loading (the startup timeout)
    guard = serve(faults="once:hang_after=1", health_failures="2", health_timeout_s="0.5")
    guard.wait_for("vLLM is ready (attempt 1)")
    guard.wait_for("vLLM hung (/health failed 2 times in a row")
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    assert guard.journal()[0]["kind"] == "hung"


FLOOD_LINES = 120_000  # 24 MB: more than the relay's 16 MiB queue holds


def logged_lines(guard: Guard) -> int:
    """Lines in attempt 1's log files (the current one and the one it rotated to)."""
    return sum(
        p.read_bytes().count(b"\n") for p in endpoint_file(guard.state, "logs").glob("*-attempt-1.log*")
    )


def test_a_log_flood_never_blocks_vllm_and_the_log_file_keeps_every_line(serve: Serve) -> None:
    read_end, write_end = os.pipe()
    try:
        with os.fdopen(write_end, "wb") as sink:
            guard = serve(faults=f"flood_lines={FLOOD_LINES},flood_line_bytes=200", stdout=sink)
        # Nobody reads the guard's stdout while vLLM floods it.
        guard.wait_for("vLLM is ready (attempt 1)")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and logged_lines(guard) < FLOOD_LINES:
            time.sleep(0.1)
        # vLLM went on: its /health answers while the terminal is stuck.
        assert httpx.get(f"http://127.0.0.1:{guard.port}/health", trust_env=False).status_code == 200
        os.set_blocking(read_end, False)
        drained = 0
        while True:
            try:
                chunk = os.read(read_end, 1 << 20)
            except BlockingIOError:
                if "were not shown here" in guard.stderr():
                    break
                time.sleep(0.05)
                continue
            drained += len(chunk)
        guard.wait_for("lines of vLLM's stdout were not shown here")
        assert guard.stop() == 0
    finally:
        os.close(read_end)
    assert logged_lines(guard) >= FLOOD_LINES


def test_the_demo_tells_the_whole_story_and_exits_zero(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "demo"],
        capture_output=True,
        text=True,
        timeout=80,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for step in ("vLLM is ready (attempt 1)", "exited with status", "vLLM is ready (attempt 2)"):
        assert step in result.stderr
    assert "demo: done" in result.stderr


def test_a_permanent_failure_stops_at_once_with_exit_5(tmp_path: Path, port: int) -> None:
    # A model that exists nowhere: the simulator prints vLLM's real not-found text.
    result = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(tmp_path / "s"),
         "serve", "no-such-org/no-such-model", "--host", "127.0.0.1", "--port", str(port)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05", "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 5, result.stderr[-3000:]
    assert result.stderr.count("starting vLLM (attempt") == 1
    assert "model_not_found is a permanent failure" in result.stderr


def test_a_gated_model_without_a_token_stops_at_once_with_exit_5(tmp_path: Path, port: int) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    result = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(tmp_path / "s"),
         "serve", MODEL, "--host", "127.0.0.1", "--port", str(port)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**env, "VLLM_GUARD_SIM_LOAD_S": "0.05", "VLLM_GUARD_SIM_GATED": MODEL},
    )  # fmt: skip
    assert result.returncode == 5, result.stderr[-3000:]
    assert "hf_auth" in result.stderr


def test_a_max_model_len_beyond_the_kv_cache_is_fitted_to_vllms_estimate_in_one_relaunch(
    serve: Serve,
) -> None:
    # Qwen2.5-7B's 32k context does not fit the KV cache an 18 GiB GPU leaves; vLLM prints what does.
    guard = serve("--max-model-len", "32768", "--enforce-eager", gpu_gib="18")
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    first, second = guard.journal()[:2]
    assert first["kind"] == "max_model_len_too_large"
    estimate = re.search(r"estimated maximum model length is (\d+)", str(first["evidence"]))
    assert estimate, first["evidence"]
    assert second["argv"][-3:] == ["--max-model-len", estimate.group(1), "--enforce-eager"]  # type: ignore[index]
    assert f"step: fit --max-model-len; --max-model-len 32768 → {estimate.group(1)}" in guard.stderr()


def test_a_max_model_len_beyond_the_models_is_fitted_to_its_derived_maximum(serve: Serve) -> None:
    guard = serve("--max-model-len", "131072")
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    first, second = guard.journal()[:2]
    assert first["kind"] == "max_model_len_too_large"
    assert second["argv"][-2:] == ["--max-model-len", "32768"]  # type: ignore[index]


def test_a_malformed_policy_is_refused_before_anything_launches(tmp_path: Path, port: int) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("name: bad\nladders:\n  oom_runtime:\n    - scale: {flag: --max-num-seqs, factor: 3}\n")
    result = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(tmp_path / "s"),
         "--policy", str(bad), "serve", MODEL, "--port", str(port)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{bad}:4: ladders.oom_runtime.0.scale.factor" in result.stderr
    assert "starting vLLM" not in result.stderr


def test_the_flags_that_reached_ready_are_where_the_next_start_begins(serve: Serve, tmp_path: Path) -> None:
    first = serve("--max-model-len", "131072")
    first.wait_for("vLLM is ready (attempt 2)")
    first.wait_for("remembered these flags for the next start (--max-model-len 131072 → 32768)")
    assert first.stop() == 0
    again = serve("--max-model-len", "131072")
    again.wait_for("vLLM is ready (attempt 1)")
    assert (
        "starting from the flags that reached ready last time (--max-model-len 131072 → 32768)"
        in again.stderr()
    )
    assert again.stop() == 0
    forgot = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--state-dir", str(first.state), "forget", MODEL],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (
        forgot.returncode == 0
        and forgot.stdout.strip() == "forgot 1 remembered flag set and 0 measured starts"
    )
    assert json.loads((first.state / "known_good.json").read_text()) == {}


def relaunch_flags(guard: Guard) -> list[list[str]]:
    """The vLLM flags (after MODEL) each attempt was launched with."""
    return [list(entry["argv"])[list(entry["argv"]).index(MODEL) + 1 :] for entry in guard.journal()]  # type: ignore[call-overload]


BASE = ["--host", "127.0.0.1"]


def test_memory_held_by_another_process_fits_the_utilization(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", sim_env={"VLLM_GUARD_SIM_GPU_USED_GIB": "4"})
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    assert guard.journal()[0]["kind"] == "insufficient_free_memory"
    assert relaunch_flags(guard)[1][-2:] == [
        "--gpu-memory-utilization",
        "0.81",
    ]  # 20/24 free, less the margin


@pytest.mark.parametrize(
    "sim_env",
    [
        {"VLLM_GUARD_SIM_FAULTS": "graph_overshoot=2"},  # the pool outgrows vLLM's estimate (#49224)
        {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0"},  # graphs outside the budget, as before 0.20
    ],
)
def test_a_cuda_graph_oom_relaunches_eager(serve: Serve, sim_env: dict[str, str]) -> None:
    guard = serve("--max-model-len", "8192", "--gpu-memory-utilization", "0.99", sim_env=sim_env)
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    assert guard.journal()[0]["kind"] == "oom_cuda_graph"
    assert relaunch_flags(guard)[1][-1] == "--enforce-eager"


def test_weights_too_big_for_the_gpu_go_fp8(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", gpu_gib="14")
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    journal = guard.journal()
    assert journal[0]["kind"] == "oom_weights"
    # the version from vLLM's banner (the simulator's command has no package metadata) picks the
    # spelling: fp8 for online quantization is deprecated since 0.31
    assert relaunch_flags(guard)[1][-2:] == ["--quantization", "fp8_per_tensor"]
    assert journal[-1]["kind"] == "stopped"


def test_bf16_on_a_gpu_without_it_relaunches_in_half(serve: Serve) -> None:
    guard = serve(
        "--max-model-len", "8192", "--dtype", "bfloat16", sim_env={"VLLM_GUARD_SIM_COMPUTE_CAPABILITY": "7.5"}
    )
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    assert guard.journal()[0]["kind"] == "unsupported_dtype_or_quant"
    assert relaunch_flags(guard)[1][-2:] == ["--dtype", "half"]


def test_no_memory_for_the_kv_cache_walks_the_ladder_to_ready(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", gpu_gib="16")
    guard.wait_for("vLLM is ready (attempt", timeout_s=60)
    assert guard.stop() == 0
    journal = guard.journal()
    assert journal[0]["kind"] == "oom_kv_cache"
    steps = [entry.get("step") for entry in journal[1:-1]]
    assert steps == sorted(set(steps), key=steps.index), "no step is repeated"
    flags = relaunch_flags(guard)
    for before, after in itertools.pairwise(flags):
        assert len(after) >= len(before)  # each relaunch only adds or lowers flags


def test_values_in_vllms_config_file_are_respected_by_the_ladder(serve: Serve, tmp_path: Path) -> None:
    config = tmp_path / "vllm.yaml"
    config.write_text("max_model_len: 8192\nenforce_eager: true\nmax_num_seqs: 32\n")
    guard = serve("--config", str(config), gpu_gib="16")
    guard.wait_for("vLLM is ready (attempt", timeout_s=60)
    assert guard.stop() == 0
    assert guard.journal()[0]["kind"] == "oom_kv_cache"
    flags = relaunch_flags(guard)
    assert all("--enforce-eager" not in attempt for attempt in flags)  # the file already has it
    seqs = [int(a[a.index("--max-num-seqs") + 1]) for a in flags if "--max-num-seqs" in a]
    assert seqs and max(seqs) == 16  # halved from the file's 32, never vLLM's default of 256


def test_status_shows_each_attempt_and_what_was_decided(serve: Serve) -> None:
    guard = serve("--max-model-len", "131072")
    guard.wait_for("vLLM is ready (attempt 2)")
    running = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--state-dir", str(guard.state), "status", "--json"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert guard.stop() == 0
    report = json.loads(running.stdout)
    (endpoint,) = report["guards"]
    assert (endpoint["endpoint"], endpoint["model"], endpoint["running"]) == (
        f"port {guard.port} on 127.0.0.1",
        MODEL,
        True,
    )
    first, second = endpoint["attempts"]
    assert first["kind"] == "max_model_len_too_large"
    assert first["decision"] == {
        "action": "relaunch",
        "argv": second["argv"][second["argv"].index(MODEL) + 1 :],
        "delay_s": 0.0,
        "step": "fit --max-model-len",
    }
    assert second["kind"] is None  # ready when status looked
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first["started_at"])
    assert report["known_good"][0]["argv"][-2:] == ["--max-model-len", "32768"]


def test_a_guard_killed_outright_leaves_nothing_the_next_serve_does_not_remove(serve: Serve) -> None:
    first = serve("--max-model-len", "8192", faults="once:orphan_engine")  # its EngineCore outlives it
    first.wait_for("vLLM is ready (attempt 1)")
    api = first.api_server()
    engines = api.children(recursive=True)
    assert engines
    first.proc.kill()  # no chance to clean up
    first.proc.wait(10)
    # the kernel's parent-death signal takes the API server down with the guard ...
    deadline = time.monotonic() + 10
    while api.is_running() and api.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not api.is_running() or api.status() == psutil.STATUS_ZOMBIE
    assert any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in engines)  # ... not its engine
    told = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--state-dir", str(first.state), "status"],
        capture_output=True, text=True, timeout=30, check=False,
    ).stdout  # fmt: skip
    assert f"the guard (pid {first.proc.pid}) that ran this is gone without stopping vLLM" in told
    assert "its vLLM may be orphaned, still running: " in told and "VLLM::EngineCore" in told
    assert "serve ...` removes it first" in told and "preflight --kill-leftovers" in told
    assert "running or ready" not in told
    second = serve("--max-model-len", "8192")
    second.wait_for("vLLM is ready (attempt 1)")
    assert "removed what the previous guard left of vLLM: " in second.stderr()
    for p in [api, *engines]:  # gone, or a zombie of this test process (the subreaper) waiting to be reaped
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        with contextlib.suppress(ChildProcessError):
            os.waitpid(p.pid, os.WNOHANG)
    assert second.stop() == 0


class NotifyListener:
    """systemd's end of the notify socket: reads every datagram as it comes (a unix datagram
    queue holds only a few, and the guard does not wait for a slow reader)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.heard: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(TimeoutError):
                self.heard.append(self.sock.recv(4096).decode())

    def close(self) -> list[str]:
        self._done.set()
        self._thread.join(5)
        self.sock.close()
        return self.heard


def exporter_url(guard: Guard) -> str:
    match = re.search(r"metrics, /livez, /readyz and /status on (http://\S+)", guard.stderr())
    assert match, guard.stderr()
    return match.group(1)


def test_systemd_hears_ready_and_a_hung_vllm_is_restarted_and_counted(serve: Serve, tmp_path: Path) -> None:
    listener = NotifyListener(tmp_path / "notify")
    try:
        guard = serve(
            "--max-model-len", "8192", faults="once:hang_after=1", metrics_port="0", health_failures="2",
            health_timeout_s="0.5", sim_env={"NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"},
        )  # fmt: skip
        guard.wait_for("vLLM is ready (attempt 1)")
        url = exporter_url(guard)
        guard.wait_for("vLLM hung (/health failed 2 times in a row")
        guard.wait_for("vLLM is ready (attempt 2)")
        metrics = httpx.get(url + "/metrics", trust_env=False).text
        assert 'vllm_guard_restarts_total{kind="hung"} 1.0' in metrics
        assert "vllm_guard_ready 1.0" in metrics and "vllm_guard_attempt 2.0" in metrics
        assert httpx.get(url + "/readyz", trust_env=False).status_code == 200
        assert httpx.get(url + "/livez", trust_env=False).status_code == 200
        status = httpx.get(url + "/status", trust_env=False).json()
        assert status["phase"] == "ready" and status["restarts_by_kind"] == {"hung": 1}
        assert guard.stop() == 0
    finally:
        heard = listener.close()
    assert sum(m.startswith("READY=1") for m in heard) == 1  # told once, though vLLM was ready twice
    assert "WATCHDOG=1" in heard
    assert any(m.startswith("STATUS=") and "attempt" in m for m in heard)
    assert any(m.startswith("STOPPING=1") for m in heard)
    assert guard.journal()[0]["kind"] == "hung"


def test_a_wedged_engine_that_still_answers_health_is_caught_by_its_metrics(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", faults="once:stall_after=0.2", stall_s="1.5")
    guard.wait_for("vLLM is ready (attempt 1)")
    time.sleep(0.5)
    with contextlib.suppress(httpx.HTTPError):  # it never answers; the guard's restart cuts it off
        httpx.post(
            f"http://127.0.0.1:{guard.port}/v1/completions",
            json={"model": MODEL, "prompt": "hi", "max_tokens": 50},
            timeout=15,
            trust_env=False,
        )
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    first = guard.journal()[0]
    assert first["kind"] == "hung"
    assert "vllm:generation_tokens_total has stood at" in str(first["evidence"])


def test_a_hangup_stops_vllm_in_order_like_sigterm(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192")
    guard.wait_for("vLLM is ready (attempt 1)")
    tree = [guard.api_server(), *guard.api_server().children(recursive=True)]
    assert guard.stop(signal.SIGHUP) == 0  # a closed terminal: vLLM must not run on unwatched
    assert "vLLM stopped (status 0); nothing of it is left" in guard.stderr()
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in tree)


def test_a_second_guard_on_the_same_port_refuses_and_leaves_the_first_alone(
    serve: Serve, tmp_path: Path, port: int
) -> None:
    first = serve("--max-model-len", "8192")
    first.wait_for("vLLM is ready (attempt 1)")
    api = first.api_server()
    second = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(tmp_path / "other"),
         "serve", MODEL, "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "8192"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05"},
    )  # fmt: skip
    assert second.returncode == 3, second.stderr
    assert (
        f"port {port} is already in use by pid {api.pid}" in second.stderr
        or "already in use" in second.stderr
    )
    assert "starting vLLM" not in second.stderr and "Traceback" not in second.stderr
    assert api.is_running() and first.complete() == 200  # the first one's vLLM is untouched
    assert first.stop() == 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("lines", "line_bytes"),
    [(5_400_000, 200), (1, 50 * 1024 * 1024)],
    ids=["a 1 GB flood of lines", "one 50 MB line"],
)
def test_after_a_flood_the_guard_is_small_and_still_reads_why_vllm_died(
    serve: Serve, lines: int, line_bytes: int
) -> None:
    guard = serve(
        "--max-model-len", "8192",
        faults=f"once:flood_lines={lines},once:flood_line_bytes={line_bytes},once:oom_after_requests=1",
    )  # fmt: skip
    guard.wait_for("vLLM is ready (attempt 1)")
    me, api = psutil.Process(guard.proc.pid), guard.api_server()
    peak = 0
    # The flood is through once vLLM has written it (its pipe holds at most 1 MiB more than the
    # guard has read): counted by the kernel, not by reading the log files back.
    deadline = time.monotonic() + 150
    while api.io_counters().write_chars < lines * line_bytes:
        peak = max(peak, me.memory_info().rss)
        if time.monotonic() > deadline:
            pytest.fail(f"vLLM wrote only {api.io_counters().write_chars} bytes of its flood")
        time.sleep(0.2)
    assert peak < 150 * 2**20, f"the guard grew to {peak / 2**20:.0f} MiB"
    assert guard.complete() in (200, 500)  # the next request dies of a runtime OOM
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    assert guard.journal()[0]["kind"] == "oom_runtime"  # the tail still holds the root cause


def test_vllm_killed_while_loading_is_relaunched_and_leaves_nothing(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", sim_env={"VLLM_GUARD_SIM_LOAD_S": "2"})
    guard.wait_for("starting vLLM (attempt 1)")
    time.sleep(0.5)  # loading its weights
    api = guard.api_server()
    tree = [api, *api.children(recursive=True)]
    api.kill()
    guard.wait_for("vLLM is ready (attempt 2)", timeout_s=60)
    for p in tree:
        assert not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    assert guard.stop() == 0
    first = guard.journal()[0]
    assert first["exit_status"] == -9 and first["kind"] in ("worker_died", "unknown")


def test_sigterm_while_the_guard_backs_off_ends_at_once_with_nothing_running(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", backoff_initial_s="30")
    guard.wait_for("vLLM is ready (attempt 1)")
    guard.api_server().kill()  # a death no flag explains: a same-flags restart after a backoff
    guard.wait_for("restarting with the same flags in 30.0 s")
    began = time.monotonic()
    assert guard.stop() == 0
    assert time.monotonic() - began < 5
    assert "stopped during the restart delay; vLLM is not running" in guard.stderr()


def test_under_nohup_a_hangup_leaves_vllm_serving_as_vllm_serve_does(serve: Serve) -> None:
    guard = serve("--max-model-len", "8192", nohup=True)
    guard.wait_for("vLLM is ready (attempt 1)")
    ignored = re.search(r"SigIgn:\s+([0-9a-f]+)", Path(f"/proc/{guard.proc.pid}/status").read_text())
    assert ignored is not None
    assert int(ignored.group(1), 16) & (1 << (signal.SIGHUP - 1)), "SIGHUP must stay ignored"
    guard.proc.send_signal(signal.SIGHUP)  # the terminal closes: the kernel drops an ignored signal
    assert guard.complete() == 200
    assert guard.stop() == 0
    assert guard.stderr().count("stopping vLLM") == 1  # only the SIGTERM stopped it


# A stand-in for vLLM that starts a worker at a moment of its choosing (VLLM_GUARD_TEST_WORKER: at
# "start", before it listens, or at the "first_health" request, as a late worker), writes the
# worker's pid to VLLM_GUARD_TEST_PIDFILE, and answers /health 200 (never, with "start").
LATE_WORKER = """
import http.server, os, subprocess, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
when = os.environ["VLLM_GUARD_TEST_WORKER"]
spawned = []
def spawn():
    spawned.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
    with open(os.environ["VLLM_GUARD_TEST_PIDFILE"], "w") as f:
        f.write(str(spawned[0].pid))
if when == "start":
    spawn()
    import time; time.sleep(120)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if not spawned:
            spawn()
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
"""


@contextlib.contextmanager
def late_worker_guard(
    tmp_path: Path, port: int, when: str, interval_s: float = 60.0
) -> Iterator[tuple[Guard, Path]]:
    script = tmp_path / "fake_vllm.py"
    script.write_text(LATE_WORKER)
    pidfile = tmp_path / "worker.pid"
    state = tmp_path / "state"
    err = tmp_path / "guard.err"
    argv = [
        sys.executable, "-m", "vllm_guard", "--vllm-command", f"{sys.executable} {script}",
        "--state-dir", str(state), "--preflight", "off", "--health-interval-s", str(interval_s),
        "serve", "m", "--port", str(port),
    ]  # fmt: skip
    env = {**os.environ, "VLLM_GUARD_TEST_WORKER": when, "VLLM_GUARD_TEST_PIDFILE": str(pidfile)}
    with err.open("wb") as sink:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=sink, env=env)
    guard = Guard(proc, err, state, port)
    try:
        yield guard, pidfile
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def recorded_pids(state: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [pid for pid, _ in json.loads(endpoint_file(state, "processes.json").read_text())["processes"]]
    return []


def test_the_process_record_holds_the_whole_tree_when_ready_is_said(tmp_path: Path, port: int) -> None:
    # The worker starts while vLLM answers its first /health; the next poll is seconds away.
    with late_worker_guard(tmp_path, port, "first_health", interval_s=3.0) as (guard, pidfile):
        guard.wait_for("vLLM is ready (attempt 1)")
        assert int(pidfile.read_text()) in recorded_pids(guard.state)
        assert guard.stop() == 0


def test_the_process_record_follows_a_load_between_health_polls(tmp_path: Path, port: int) -> None:
    # A worker started during the load is on record long before the next /health poll (60 s).
    with late_worker_guard(tmp_path, port, "start") as (guard, pidfile):
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        worker = int(pidfile.read_text())
        while worker not in recorded_pids(guard.state) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker in recorded_pids(guard.state)
        assert guard.stop() == 0
        assert "not ready yet" in guard.stderr()


def test_a_replica_starts_at_the_flags_another_replica_learned_with_no_failed_attempt(
    serve: Serve, tmp_path: Path
) -> None:
    fleet = tmp_path / "model-cache" / "vllm-guard"  # a volume both replicas mount
    first = serve("--max-model-len", "131072", shared_state=str(fleet))
    first.wait_for("vLLM is ready (attempt 2)")
    first.wait_for("remembered these flags for the next start (--max-model-len 131072 → 32768)")
    assert first.stop() == 0
    second = serve(
        "--max-model-len", "131072", shared_state=str(fleet), state_dir=str(tmp_path / "replica-2")
    )  # fmt: skip
    second.wait_for("vLLM is ready (attempt 1)")
    (kept,) = (fleet / "known_good").glob("*.json")
    assert f"starting from the flags another guard learned on {socket.gethostname()} at " in second.stderr()
    assert f"kept in {kept} (--max-model-len 131072 → 32768)" in second.stderr()
    assert second.stop() == 0
    (only,) = second.journal()
    assert only["kind"] == "stopped" and only["argv"][-2:] == ["--max-model-len", "32768"]  # type: ignore[index]
    # having reached ready on them, the replica keeps them in its own state directory too
    (own,) = json.loads((tmp_path / "replica-2" / "known_good.json").read_text()).values()
    assert own["edits"] == [["set", "--max-model-len", "32768"]]


def test_the_next_preflight_plans_with_what_the_last_start_measured(serve: Serve, tmp_path: Path) -> None:
    # The guard reads the simulator's 24 GiB GPU from a snapshot (as on a machine whose NVML it
    # reads); the model's config.json is not on this machine, so only what vLLM measured can tell.
    from vllm_guard.facts import GpuFacts, GpuInfo  # noqa: PLC0415
    from vllm_guard.gpu import facts_to_json  # noqa: PLC0415

    total = 24 << 30
    card = GpuInfo(0, None, "NVIDIA L4", total, total, 0, 0, (8, 9), ())
    snapshot = tmp_path / "gpus.json"
    snapshot.write_text(json.dumps(facts_to_json(GpuFacts((card,), "580.159.04", "13.0", None, "test"))))

    def measured_starts(guard: Guard) -> dict[str, dict[str, Any]]:
        starts: dict[str, dict[str, Any]] = json.loads((guard.state / "measured.json").read_text())
        return starts

    first = serve("--max-model-len", "8192", gpu_snapshot=str(snapshot))
    first.wait_for("vLLM is ready (attempt 1)")
    assert first.stop() == 0
    (start,) = measured_starts(first).values()
    assert start["gpu"] == "NVIDIA L4" and start["flags"] == {"--max-model-len": "8192"}
    assert start["vllm_version"] is not None  # the banner's, where the package metadata is not there

    def plan(*vllm_args: str) -> dict[str, Any]:
        result = subprocess.run(
            [sys.executable, "-m", "vllm_guard", "--state-dir", str(first.state), "--vllm-command", SIM,
             "preflight", "--json", "--gpu-snapshot", str(snapshot), MODEL, *vllm_args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        findings = json.loads(result.stdout)["findings"]
        kv: dict[str, Any] = next(f for f in findings if f["check"] == "kv_cache")
        return kv

    same = plan("--max-model-len", "8192")
    assert same["numbers"]["kv_budget_from"] == "measured"
    assert same["numbers"]["kv_capacity_tokens"] == start["kv_tokens"]
    # at another length the measured rest still holds: what the next start prints agrees
    near = plan("--max-model-len", "4096", "--gpu-memory-utilization", "0.8")
    assert near["numbers"]["kv_budget_from"] == "measured start"
    second = serve("--max-model-len", "4096", "--gpu-memory-utilization", "0.8", gpu_snapshot=str(snapshot))
    second.wait_for("vLLM is ready (attempt 1)")
    assert second.stop() == 0
    (printed,) = [s for s in measured_starts(second).values() if s["flags"] != start["flags"]]
    planned = near["numbers"]["kv_capacity_tokens"]
    assert abs(planned / printed["kv_tokens"] - 1) <= 0.01, (planned, printed["kv_tokens"])


def test_two_guards_serve_two_models_from_one_default_state_directory(tmp_path: Path, port: int) -> None:
    # two models on two ports of one machine, neither given a --state-dir: one guard per
    # endpoint, what they remember shared, and `status` says which is which
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        other_port = probe.getsockname()[1]
    env = {
        **os.environ,
        "XDG_STATE_HOME": str(tmp_path / "xdg"),
        "VLLM_GUARD_SIM_LOAD_S": "0.05",
        "VLLM_GUARD_SIM_STATE": str(tmp_path / "sim-launches"),
    }
    env.pop("STATE_DIRECTORY", None)
    env.pop("VLLM_GUARD_STATE_DIR", None)
    guards = []
    for number, (model, serving_port) in enumerate(
        (("Qwen/Qwen2.5-7B-Instruct", port), ("mistralai/Mistral-7B-Instruct-v0.3", other_port))
    ):
        err = tmp_path / f"guard-{number}.err"
        with err.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--health-interval-s", "0.1",
                 "serve", model, "--host", "127.0.0.1", "--port", str(serving_port), "--max-model-len", "4096"],
                stdout=subprocess.DEVNULL, stderr=sink, env=env,
            )  # fmt: skip
        guards.append(Guard(proc, err, tmp_path / "xdg" / "vllm-guard", serving_port))
    try:
        for guard in guards:
            guard.wait_for("vLLM is ready (attempt 1)")
        status = subprocess.run(
            [sys.executable, "-m", "vllm_guard", "status", "--json"],
            capture_output=True, text=True, timeout=30, check=False, env=env,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["state_dir"] == str(tmp_path / "xdg" / "vllm-guard")
        seen = {(g["endpoint"], g["model"], g["running"], g["pid"]) for g in report["guards"]}
        assert seen == {
            (f"port {port} on 127.0.0.1", "Qwen/Qwen2.5-7B-Instruct", True, guards[0].proc.pid),
            (
                f"port {other_port} on 127.0.0.1",
                "mistralai/Mistral-7B-Instruct-v0.3",
                True,
                guards[1].proc.pid,
            ),
        }
        # the shape from before one guard per endpoint: the most recent guard's attempts
        assert report["attempts"] == report["guards"][0]["attempts"] and report["orphaned"] is None
        text = subprocess.run(
            [sys.executable, "-m", "vllm_guard", "status"], capture_output=True, text=True, timeout=30, env=env,
            check=False,
        ).stdout  # fmt: skip
        assert (
            f"guard on port {port} on 127.0.0.1: pid {guards[0].proc.pid} serving Qwen/Qwen2.5-7B-Instruct, "
            "running" in text
        )
        # a third guard on a port already served (on every address: 127.0.0.1 too) is refused,
        # naming who holds it
        third = subprocess.run(
            [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "serve", "meta-llama/Llama-3.1-8B-Instruct",
             "--port", str(port)],
            capture_output=True, text=True, timeout=30, env=env, check=False,
        )  # fmt: skip
        assert third.returncode == 3
        assert (
            f"another vllm-guard (pid {guards[0].proc.pid}, serving Qwen/Qwen2.5-7B-Instruct) holds port {port}"
            in third.stderr
        )
    finally:
        for guard in guards:
            if guard.proc.poll() is None:
                guard.stop()
    assert [guard.proc.returncode for guard in guards] == [0, 0]


def test_one_port_on_two_addresses_is_two_endpoints_with_a_guard_each(tmp_path: Path, port: int) -> None:
    env = {**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05"}
    guards = []
    for number, host in enumerate(("127.0.0.1", "127.0.0.2")):
        err = tmp_path / f"guard-{number}.err"
        with err.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(tmp_path / "state"),
                 "--health-interval-s", "0.1", "serve", MODEL, "--host", host, "--port", str(port),
                 "--max-model-len", "4096"],
                stdout=subprocess.DEVNULL, stderr=sink, env=env,
            )  # fmt: skip
        guards.append(Guard(proc, err, tmp_path / "state", port))
    try:
        for guard in guards:
            guard.wait_for("vLLM is ready (attempt 1)")
        assert sorted(p.name for p in (tmp_path / "state" / "serving").iterdir()) == [
            f"port-{port}-on-127.0.0.1",
            f"port-{port}-on-127.0.0.2",
        ]
    finally:
        for guard in guards:
            if guard.proc.poll() is None:
                guard.stop()
    assert [guard.proc.returncode for guard in guards] == [0, 0]


def test_a_paused_engine_is_retried_in_place_and_serves_on(serve: Serve) -> None:
    """--enable-fault-tolerance: a CUDA error pauses vLLM's engine (/health stays 200); the guard
    reads the status, asks vLLM's own retry once, counts it, and vLLM serves on: no relaunch."""
    guard = serve(
        "--max-model-len", "8192", "--enable-fault-tolerance", faults="engine_error_every=2", metrics_port="0"
    )
    guard.wait_for("vLLM is ready (attempt 1)")
    url = exporter_url(guard)
    assert guard.complete() == 200
    assert guard.complete() == 200  # aborted by the pause: finish_reason "abort"
    guard.wait_for("vLLM's engine paused on worker_died")
    guard.wait_for("vLLM's engine is serving again")
    assert guard.complete() == 200
    metrics = httpx.get(url + "/metrics", trust_env=False).text
    assert 'vllm_guard_engine_retries_total{outcome="recovered"} 1.0' in metrics
    assert 'vllm_guard_restarts_total{kind="worker_died"} 1.0' in metrics
    assert "vllm_guard_ready 1.0" in metrics
    assert guard.stop() == 0
    [attempt] = guard.journal()
    retries = attempt["retries"]
    assert isinstance(retries, list) and len(retries) == 1
    assert retries[0]["recovered"] is True and retries[0]["kind"] == "worker_died"
    assert "asked it to retry in place (restart 1 of at most" in guard.stderr()
    status = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--state-dir", str(guard.state), "status"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "retried in place: worker_died" in status.stdout


def test_a_retry_that_fails_is_followed_by_a_relaunch(serve: Serve) -> None:
    guard = serve(
        "--max-model-len", "8192", "--enable-fault-tolerance", faults="once:engine_error_every=1,once:retry_fails"
    )  # fmt: skip
    guard.wait_for("vLLM is ready (attempt 1)")
    guard.complete()
    guard.wait_for("the retry did not bring vLLM's engine back: CUDA error: an illegal memory access")
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    first, second = guard.journal()
    assert first["kind"] == "worker_died" and first["retries"][0]["recovered"] is False  # type: ignore[index]
    assert second["kind"] == "stopped"


def test_while_it_serves_the_guard_says_which_flag_to_change_once_and_when_it_clears(
    serve: Serve, tmp_path: Path
) -> None:
    """--max-num-seqs 2 under 16 requests at a time: the guard says requests_queueing once, with
    the fix in the user's flags, exports and journals it, and says when it clears; vLLM is never
    restarted for it."""
    policy = tmp_path / "quick.yaml"
    policy.write_text("name: quick\nadvice:\n  requests_waiting: 5\n")
    guard = serve(
        "--max-num-seqs", "2", policy=str(policy), advice_window_s="1", stall_s="0.6", metrics_port="0"
    )  # fmt: skip
    guard.wait_for("vLLM is ready (attempt 1)")
    url = exporter_url(guard)
    worker = threading.Thread(
        target=load.run,
        args=(f"http://127.0.0.1:{guard.port}",),
        kwargs={"requests": 96, "concurrency": 16, "max_tokens": 64, "model": MODEL},
    )
    worker.start()
    guard.wait_for("advice: requests_queueing: ")
    status = httpx.get(url + "/status", trust_env=False).json()
    assert [a["condition"] for a in status["advice"]] == ["requests_queueing"]
    metrics = httpx.get(url + "/metrics", trust_env=False).text
    assert 'vllm_guard_advice{condition="requests_queueing"} 1.0' in metrics
    worker.join()
    guard.wait_for("advice: requests_queueing no longer holds")
    assert guard.stop() == 0
    said = [line for line in guard.stderr().splitlines() if "advice: requests_queueing" in line]
    assert len(said) == 2  # once when it started, once when it cleared
    assert "fix: raise --max-num-seqs (now 2)" in said[0]
    [attempt] = guard.journal()  # never restarted for advice
    assert attempt["kind"] == "stopped"


def test_a_relaunch_carries_the_advice_that_held_where_the_policy_says_so(
    serve: Serve, tmp_path: Path
) -> None:
    """Chunked prefill off and slow first tokens (a threshold set low): slow_ttft holds with the
    edit +--enable-chunked-prefill. When vLLM then dies (a runtime OOM), the relaunch takes the
    ladder's step and, with apply_on_relaunch, the advice's edit too; serving vLLM is never
    restarted for advice alone."""
    policy = tmp_path / "carry.yaml"
    policy.write_text(
        (Path(__file__).resolve().parent.parent / "vllm_guard" / "policies" / "default.yaml").read_text()
        .replace("name: default", "name: carry")
        .replace("  ttft_p99_s: 5 ", "  ttft_p99_s: 0.0005 ")
        .replace("  min_requests: 20 ", "  min_requests: 5 ")
        + "  apply_on_relaunch: true\n"
    )  # fmt: skip
    guard = serve(
        "--no-enable-chunked-prefill", "--max-model-len", "4096",
        faults="once:oom_after_requests=400", policy=str(policy), advice_window_s="1", stall_s="0.6",
    )  # fmt: skip
    guard.wait_for("vLLM is ready (attempt 1)")
    url = f"http://127.0.0.1:{guard.port}"
    load.run(url, requests=60, concurrency=1, prompt_words=64, max_tokens=4, model=MODEL)
    guard.wait_for("advice: slow_ttft: ")
    load.run(url, requests=340, concurrency=4, prompt_words=8, max_tokens=2, model=MODEL)  # the 400th dies
    guard.wait_for("vLLM is ready (attempt 2)")
    assert guard.stop() == 0
    assert "carrying the advice slow_ttft into the relaunch: +--enable-chunked-prefill" in guard.stderr()
    first, second = guard.journal()
    assert first["kind"] == "oom_runtime"
    assert "--enable-chunked-prefill" in second["argv"] and "--max-num-seqs" in second["argv"]  # type: ignore[operator]


def test_requests_for_a_model_it_does_not_serve_are_read_from_vllms_log(serve: Serve) -> None:
    """Chat requests naming an adapter that is not loaded: vLLM logs `Error with model ...` (the
    simulator as vLLM 0.33 does); the guard reads it from the output and says which flags."""
    # a window of 3 s, read every 0.3 s: the refusals stand in it for several readings
    guard = serve("--max-model-len", "4096", advice_window_s="3", stall_s="0.6")
    guard.wait_for("vLLM is ready (attempt 1)")
    for _ in range(3):
        reply = httpx.post(
            f"http://127.0.0.1:{guard.port}/v1/chat/completions",
            json={"model": "my-lora", "messages": [{"role": "user", "content": "hi"}]},
            timeout=10,
            trust_env=False,
        )
        assert reply.status_code == 404
    guard.wait_for("advice: lora_adapter_not_found: ")
    assert guard.stop() == 0
    said = next(line for line in guard.stderr().splitlines() if "advice: lora_adapter_not_found" in line)
    assert "3 requests named the model `my-lora`" in said
    assert "--enable-lora --lora-modules my-lora=PATH" in said
