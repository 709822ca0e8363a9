"""Launch overhead: from running `vllm-guard serve` to vLLM's first output, against running the
same vLLM command directly. The child is the bundled simulator given a flag vLLM refuses, so it
prints its first line (vLLM's usage error) as soon as it has started; the difference of the two
medians is what the guard adds before vLLM's exec (goal: ≤ 150 ms).

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIM = [sys.executable, "-m", "vllm_guard.sim"]
VLLM_ARGS = ["serve", "bench-model", "--no-such-flag-for-the-bench"]
GUARD_PREFIX = b"vllm-guard: "


def first_vllm_line_s(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from spawning `argv` to the first line that is not the guard's own."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert proc.stdout is not None
    buf = b""
    try:
        while True:
            select.select([proc.stdout], [], [], 30)
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"{argv[:4]} ended before vLLM printed anything: {buf!r}")
            buf += chunk
            for line in buf.split(b"\n")[:-1]:
                if line and not line.startswith(GUARD_PREFIX):
                    return time.perf_counter() - start
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    opts = parser.parse_args()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="vllm-guard-bench-") as tmp:
        guard = [
            sys.executable,
            "-m",
            "vllm_guard",
            "--vllm-command",
            " ".join(SIM),
            "--state-dir",
            str(Path(tmp) / "state"),
            "--max-restarts",
            "0",
            *VLLM_ARGS,
        ]
        direct = [*SIM, *VLLM_ARGS]
        first_vllm_line_s(direct, env)  # warm the page cache for both
        first_vllm_line_s(guard, env)
        direct_s, guard_s = [], []
        for _ in range(opts.runs):
            direct_s.append(first_vllm_line_s(direct, env))
            guard_s.append(first_vllm_line_s(guard, env))
    d, g = statistics.median(direct_s), statistics.median(guard_s)
    print(f"runs: {opts.runs} each, interleaved")
    print(f"simulator run directly:       median {d * 1000:7.1f} ms to its first line")
    print(f"simulator under vllm-guard:   median {g * 1000:7.1f} ms to its first line")
    print(f"overhead of the guard:        {(g - d) * 1000:7.1f} ms (goal <= 150 ms)")


if __name__ == "__main__":
    main()
