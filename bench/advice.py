"""The advisor under a known load: the simulator serves, the bounded load generator drives it, and
`vllm-guard doctor` says what it sees. Prints, per scenario, the load's throughput and the
first-token and queue figures read from the simulator's own /metrics, and doctor's conditions.

    .venv/bin/python bench/advice.py [--requests 96] [--concurrency 16]

The simulator's step costs are its own (vllm_guard/sim/scheduler.py), so the figures say how the
advisor reads a load, not how fast any GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx

from vllm_guard.metric_window import History, parse
from vllm_guard.sim import load

MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
SCENARIOS = {
    "max-num-seqs 2": ["--max-num-seqs", "2"],
    "default batch": [],
    "no chunked prefill, long prompts": ["--no-enable-chunked-prefill", "--max-model-len", "4096"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(name: str, flags: list[str], requests: int, concurrency: int, policy: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05"}
    sim = subprocess.Popen(
        [sys.executable, "-m", "vllm_guard.sim", "serve", MODEL, "--host", "127.0.0.1", "--port", str(port), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health", trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        before = parse(httpx.get(url + "/metrics", trust_env=False).text)
        outcome: list[load.Outcome] = []
        words = 512 if "--no-enable-chunked-prefill" in flags else 16
        worker = threading.Thread(
            target=lambda: outcome.append(
                load.run(
                    url,
                    requests=requests,
                    concurrency=concurrency,
                    max_tokens=64,
                    prompt_words=words,
                    model=MODEL,
                )
            )
        )
        worker.start()
        time.sleep(0.5)
        doctor = subprocess.run(
            [sys.executable, "-m", "vllm_guard", "--policy", policy, "doctor", "--interval", "0.25",
             "--duration", "1.5", "--json", url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        worker.join()
        history = History(keep_s=3600)
        history.add(0.0, before)
        history.add(1.0, parse(httpx.get(url + "/metrics", trust_env=False).text))
        window = history.window(1.0, 1.0)
        assert window is not None
        ttft = [window.quantile(q, "vllm:time_to_first_token_seconds") for q in (0.5, 0.99)]
        queue = window.average("vllm:request_queue_time_seconds")
        done = outcome[0]
        found = (
            [f["condition"] for f in json.loads(doctor.stdout)["findings"]] if doctor.returncode == 0 else []
        )
        print(
            f"{name}: {done.answered}/{done.sent} requests in {done.seconds:.2f} s "
            f"({done.answered / done.seconds:.0f}/s); TTFT p50 {ttft[0] or 0:.3f} s, p99 {ttft[1] or 0:.3f} s; "
            f"mean queue {queue or 0:.3f} s; doctor: {', '.join(found) or 'nothing'}"
        )
    finally:
        sim.terminate()
        sim.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=16)
    opts = parser.parse_args()
    policy = os.path.join(os.path.dirname(__file__), "..", "vllm_guard", "policies", "default.yaml")
    quick = "/tmp/vllm-guard-bench-advice.yaml"
    with open(policy) as f, open(quick, "w") as out:
        # the guide's thresholds are for GPUs under production load; these are the simulator's
        out.write(
            f.read().replace("  requests_waiting: 50 ", "  requests_waiting: 5 ")
            .replace("  ttft_p99_s: 5 ", "  ttft_p99_s: 0.05 ")
            .replace("  min_requests: 20 ", "  min_requests: 5 ")
        )  # fmt: skip
    for name, flags in SCENARIOS.items():
        run(name, flags, opts.requests, opts.concurrency, quick)


if __name__ == "__main__":
    main()
