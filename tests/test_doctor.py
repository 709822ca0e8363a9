"""`vllm-guard doctor` against a server that answers as vLLM does (recorded-shape metrics that move
between reads), and against nothing: the exact exit codes, text and JSON."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from vllm_exposition import body

from vllm_guard.sim import load

pytestmark = pytest.mark.timeout(60)


class Vllm:
    """/metrics whose waiting requests and KV usage are what the test sets; /version, /v1/models."""

    def __init__(self, waiting: float, kv: float) -> None:
        self.waiting, self.kv = waiting, kv
        self.reads = 0
        vllm = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    vllm.reads += 1
                    gauges = {
                        "vllm:num_requests_waiting": vllm.waiting,
                        "vllm:num_requests_running": 2.0,
                        "vllm:kv_cache_usage_perc": vllm.kv,
                    }
                    text = body(
                        gauges=gauges, info={"enable_prefix_caching": "True", "gpu_memory_utilization": "0.9"}
                    )
                    self._send(text.encode(), "text/plain; version=0.0.4")
                elif self.path == "/version":
                    self._send(b'{"version": "0.32.0"}', "application/json")
                elif self.path == "/v1/models":
                    self._send(
                        b'{"object": "list", "data": [{"id": "m", "max_model_len": 4096}]}',
                        "application/json",
                    )
                else:
                    self.send_error(404)

            def _send(self, payload: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def vllm() -> Iterator[Vllm]:
    server = Vllm(waiting=0.0, kv=0.1)
    yield server
    server.server.shutdown()
    server.server.server_close()


def doctor(*args: str, policy: str = "default") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--policy", policy, "doctor", "--interval", "0.2", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_queueing_vllm_is_told_what_to_change(vllm: Vllm) -> None:
    vllm.waiting, vllm.kv = 80.0, 0.99
    done = doctor("--duration", "1", "--json", vllm.url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"findings", "sampled_s", "vllm_version"}
    assert report["vllm_version"] == "0.32.0" and report["sampled_s"] >= 1.0
    conditions = {f["condition"]: f for f in report["findings"]}
    assert set(conditions) == {"requests_queueing", "kv_cache_full"}
    queueing = conditions["requests_queueing"]
    assert set(queueing) == {"condition", "evidence", "numbers", "cause", "fix"}
    # what vLLM's own metrics and /v1/models said of its flags
    assert (
        "--gpu-memory-utilization (now 0.9)" in queueing["fix"]
        and "--max-model-len (now 4096)" in queueing["fix"]
    )
    assert vllm.reads >= 4


def test_an_idle_vllm_has_nothing_to_change(vllm: Vllm) -> None:
    done = doctor("--duration", "0.6", vllm.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"vLLM 0.32.0 at {vllm.url}, sampled for 1 s",
        "nothing to change: no condition holds (vllm-guard doctor --help lists them)",
    ]


def test_the_text_says_evidence_cause_and_fix(vllm: Vllm) -> None:
    vllm.waiting = 120.0
    lines = doctor("--duration", "0.6", vllm.url).stdout.splitlines()
    assert lines[1].startswith("requests_queueing: 120 requests waiting on average")
    assert lines[2].startswith("  why: ") and lines[3].startswith("  fix: ")


def test_nothing_listening_is_exit_2() -> None:
    done = doctor("--duration", "0.2", "http://127.0.0.1:9")
    assert done.returncode == 2
    assert done.stdout.startswith("vllm-guard doctor: cannot read http://127.0.0.1:9/metrics: ")


def test_a_bad_duration_is_a_usage_error() -> None:
    assert doctor("--duration", "0").returncode == 2
    assert doctor("--duration", "soon").returncode == 2
    help_text = doctor("--help")
    assert help_text.returncode == 0 and "Exit 0 when the server could be read" in " ".join(
        help_text.stdout.split()
    )


def test_doctor_over_the_simulator_under_load_says_raise_max_num_seqs(tmp_path: Path, port: int) -> None:
    """The simulator with --max-num-seqs 2 and 16 requests at a time: doctor, which does not know
    the flags, reads a batch that stands at 2 while requests wait, and says which flag."""
    policy = tmp_path / "quick.yaml"
    policy.write_text("name: quick\nadvice:\n  requests_waiting: 5\n")
    env = {**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05"}
    sim = subprocess.Popen(
        [sys.executable, "-m", "vllm_guard.sim", "serve", "Qwen/Qwen2.5-0.5B-Instruct", "--host", "127.0.0.1",
         "--port", str(port), "--max-num-seqs", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", trust_env=False).status_code == 200:
                    break
            time.sleep(0.1)
        worker = threading.Thread(
            target=load.run, args=(url,), kwargs={"requests": 64, "concurrency": 16, "max_tokens": 64}
        )
        worker.start()
        done = doctor("--duration", "1.5", "--json", url, policy=str(policy))
        worker.join()
        assert done.returncode == 0, done.stderr
        found = {f["condition"]: f for f in json.loads(done.stdout)["findings"]}
        assert found["requests_queueing"]["fix"].startswith("raise --max-num-seqs:")
        assert "batch is full (2 running at most)" in found["requests_queueing"]["cause"]
    finally:
        sim.terminate()
        sim.wait(15)
