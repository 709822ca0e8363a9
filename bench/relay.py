"""Relay throughput: ~1 GB of vLLM-like log lines through `vllm-guard serve`, against `cat`.

Both read the same lines from a pipe and write them to /dev/null. The guard's path also masks
secrets, writes the attempt's log file (capped) and keeps the diagnosis tail. Prints the median
throughput of each over several interleaved runs, their ratio (goal: guard >= 0.5 x cat), and the
guard's peak RSS.

    python bench/relay.py [--mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINE = (
    "(EngineCore pid=4242) INFO 11-27 06:24:31 [loggers.py:236] Engine 000: Avg prompt throughput: "
    "{n:.1f} tokens/s, Avg generation throughput: 1234.5 tokens/s, Running: 12 reqs, Waiting: 0 reqs\n"
)


def make_lines(path: Path, mib: int) -> int:
    block = "".join(LINE.format(n=i) for i in range(4096)).encode()
    target = mib * 1024 * 1024
    with path.open("wb") as f:
        written = 0
        while written < target:
            f.write(block)
            written += len(block)
    return written


def run(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of the command and its descendants, output to /dev/null."""
    with open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=devnull, stderr=devnull, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vllm-guard-bench-") as tmp:
        lines = Path(tmp) / "lines.log"
        size = make_lines(lines, opts.mib)
        env = dict(os.environ)
        env.pop("HF_TOKEN", None)
        cat_script = shlex.quote('exec cat "$0"')
        producer = f"sh -c {cat_script} {shlex.quote(str(lines))}"
        guard = [
            sys.executable,
            "-m",
            "vllm_guard",
            "--vllm-command",
            producer,
            "--state-dir",
            str(Path(tmp) / "state"),
            "--max-restarts",
            "0",
            "serve",
            "bench-model",
        ]
        baseline = ["sh", "-c", f"cat {shlex.quote(str(lines))} | cat"]
        guard_s, cat_s, rss = [], [], []
        for _ in range(opts.runs):
            seconds, _ = run(baseline, env)
            cat_s.append(seconds)
            seconds, peak = run(guard, env)
            guard_s.append(seconds)
            rss.append(peak)
        mib = size / 2**20
        g, c = statistics.median(guard_s), statistics.median(cat_s)
        print(f"lines: {size / len(LINE):,.0f} lines, {mib:,.0f} MiB, {opts.runs} runs each")
        print(f"cat | cat:        median {c:6.2f} s  {mib / c:8.0f} MiB/s")
        print(f"vllm-guard serve: median {g:6.2f} s  {mib / g:8.0f} MiB/s")
        print(f"ratio guard/cat throughput: {c / g:.2f} (goal >= 0.5)")
        print(
            f"guard peak RSS: median {statistics.median(rss) / 1024:.0f} MiB, max {max(rss) / 1024:.0f} MiB"
        )


if __name__ == "__main__":
    main()
