"""Watching vLLM: how fast a hang is caught, and what watching costs.

1. Hang to restart: the simulator stops answering /health (fault `hang_after`) or keeps answering
   it while its engine is wedged (fault `stall_after`, with a request waiting). Prints the time from
   the hang to the guard's "vLLM hung" line and to the next launch, against the configured budget
   (health interval x failures + timeout, or --stall-s).
2. Cost: the guard's RSS and CPU while vLLM serves for --serve-s seconds with a request a second,
   /health polled every second, vLLM's /metrics read for the stall check and the guard's own
   exporter scraped every 5 s (goal: <= 80 MB, <= 1 % of a core).

    python bench/watch.py [--serve-s 60]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

SIM = f"{sys.executable} -m vllm_guard.sim"
MODEL = "Qwen/Qwen2.5-0.5B-Instruct"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Guard:
    def __init__(self, tmp: Path, faults: str, options: list[str]) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            "VLLM_GUARD_SIM_LOAD_S": "0.05",
            "VLLM_GUARD_SIM_FAULTS": faults,
            "VLLM_GUARD_SIM_STATE": str(tmp / "launches"),
        }
        argv = [
            sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(tmp / "state"),
            "--preflight", "off", *options,
            "serve", MODEL, "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", "4096",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self.seen: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.seen.append((time.monotonic(), line))

    def when(self, text: str, timeout_s: float = 60) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for at, line in list(self.seen):
                if text in line:
                    return at
            time.sleep(0.01)
        raise SystemExit(f"no {text!r} from the guard:\n{''.join(line for _, line in self.seen)[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)


def hang_to_restart(tmp: Path, interval: float, failures: int, timeout: float) -> tuple[float, float]:
    hang_after = 3 * interval  # after the guard has seen it ready (a hang before that is a startup timeout)
    guard = Guard(
        tmp,
        f"once:hang_after={hang_after}",
        [
            "--health-interval-s",
            str(interval),
            "--health-failures",
            str(failures),
            "--health-timeout-s",
            str(timeout),
        ],
    )
    ready = guard.when("vLLM is ready (attempt 1)")
    hung = guard.when("vLLM hung") - (ready + hang_after)
    relaunched = guard.when("starting vLLM (attempt 2)") - (ready + hang_after)
    guard.when("vLLM is ready (attempt 2)")
    guard.stop()
    return hung, relaunched


def stall_to_restart(tmp: Path, stall_s: float) -> tuple[float, float]:
    guard = Guard(tmp, "once:stall_after=0", ["--stall-s", str(stall_s)])
    guard.when("vLLM is ready (attempt 1)")
    sent = time.monotonic()

    def wedged_request() -> None:
        with contextlib.suppress(httpx.HTTPError):  # cut off by the guard's restart
            httpx.post(
                f"http://127.0.0.1:{guard.port}/v1/completions",
                json={"model": MODEL, "prompt": "hi", "max_tokens": 20},
                timeout=60,
                trust_env=False,
            )

    threading.Thread(target=wedged_request, daemon=True).start()
    hung = guard.when("vLLM hung") - sent
    relaunched = guard.when("starting vLLM (attempt 2)") - sent
    guard.when("vLLM is ready (attempt 2)")
    guard.stop()
    return hung, relaunched


def cost_while_serving(tmp: Path, serve_s: float) -> tuple[float, float, float]:
    """Peak RSS (MiB), CPU (% of one core) of the guard alone, and its /metrics scrape count."""
    metrics_port = free_port()
    guard = Guard(tmp, "", ["--metrics-port", str(metrics_port)])
    guard.when("vLLM is ready (attempt 1)")
    me = psutil.Process(guard.proc.pid)
    client = httpx.Client(trust_env=False, timeout=10)
    cpu_before = sum(me.cpu_times()[:2])
    began = time.monotonic()
    peak = me.memory_info().rss
    scrapes = 0
    while time.monotonic() - began < serve_s:
        client.post(
            f"http://127.0.0.1:{guard.port}/v1/completions",
            json={"model": MODEL, "prompt": "hello there", "max_tokens": 16},
        )
        if int(time.monotonic() - began) % 5 == 0:
            client.get(f"http://127.0.0.1:{metrics_port}/metrics")
            scrapes += 1
        peak = max(peak, me.memory_info().rss)
        time.sleep(1.0)
    cpu = (sum(me.cpu_times()[:2]) - cpu_before) / (time.monotonic() - began) * 100
    client.close()
    guard.stop()
    return peak / 2**20, cpu, scrapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve-s", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vllm-guard-watch-") as name:
        tmp = Path(name)
        print("hang → guard says hung → next launch (median of runs), against the configured budget")
        for interval, failures, timeout in ((0.5, 3, 0.5), (1.0, 3, 1.0)):
            rows = [
                hang_to_restart(Path(tempfile.mkdtemp(dir=tmp)), interval, failures, timeout)
                for _ in range(opts.runs)
            ]
            budget = interval * failures + timeout
            print(
                f"  /health stops answering, interval {interval:g} s x {failures} failures, timeout {timeout:g} s: "
                f"hung after {statistics.median(r[0] for r in rows):.2f} s (budget ~{budget:g} s), relaunched "
                f"after {statistics.median(r[1] for r in rows):.2f} s (+ up to 5 s for the hung tree to die, "
                "+ the first same-flags backoff, 2 s + jitter)"
            )
        for stall_s in (2.0, 5.0):
            rows = [stall_to_restart(Path(tempfile.mkdtemp(dir=tmp)), stall_s) for _ in range(opts.runs)]
            print(
                f"  engine wedged, /health still 200, --stall-s {stall_s:g}: hung after "
                f"{statistics.median(r[0] for r in rows):.2f} s, relaunched after "
                f"{statistics.median(r[1] for r in rows):.2f} s (budget: stall + up to one scrape interval, "
                f"{min(5.0, stall_s / 2):g} s)"
            )
        rss, cpu, scrapes = cost_while_serving(Path(tempfile.mkdtemp(dir=tmp)), opts.serve_s)
        print(
            f"cost while serving {opts.serve_s:g} s (a request a second, exporter scraped {scrapes} times): "
            f"guard peak RSS {rss:.0f} MiB (goal <= 80 MB), CPU {cpu:.2f} % of a core (goal <= 1 %)"
        )


if __name__ == "__main__":
    main()
