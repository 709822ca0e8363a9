"""Relay throughput: ~1 GB of vLLM-like log lines through `vllm-guard serve`, against `cat`.

Both read the same lines from a pipe and write them to /dev/null. The guard's path also masks
secrets, writes the attempt's log file (capped) and keeps the diagnosis tail. Prints the median
throughput of each over several interleaved runs, their ratio (goal: guard >= 0.5 x cat), the
same ratio net of the guard's own start and stop (timed with an empty output in the same runs),
the CPU time each used, and the guard's peak RSS. Then, in this process, where the guard's time
goes: the same bytes read from `cat` through a 1 MiB pipe, then masked and relayed, then also
written to the attempt's log file, and the log file written alone.

`--line stats` (the default) floods vLLM's periodic stats line, which holds none of the bytes the
masking first looks for (`_`, `b`, `z`); `--line request` floods a request log line that holds all
three, so every secret shape is searched for in full.

    python bench/relay.py [--mib 1024] [--runs 3] [--line stats|request]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vllm_guard.output import AttemptOutput, CappedLog
from vllm_guard.printer import STDOUT, Printer
from vllm_guard.processes import PIPE_BYTES, READ_CHUNK
from vllm_guard.redact import Redactor

LINES = {
    "stats": (
        "(EngineCore pid=4242) INFO 11-27 06:24:31 [loggers.py:236] Engine 000: Avg prompt throughput: "
        "{n:.1f} tokens/s, Avg generation throughput: 1234.5 tokens/s, Running: 12 reqs, Waiting: 0 reqs\n"
    ),
    "request": (
        "(APIServer pid=4241) INFO 11-27 06:24:31 [logger.py:43] Received request cmpl-{n:.0f}: prompt: "
        "'Summarize the size of a zebra herd', params: SamplingParams(n=1, temperature=0.7, top_p=1.0, "
        "bad_words=[], max_tokens=128), lora_request: None.\n"
    ),
}


def make_lines(path: Path, mib: int, line: str) -> int:
    block = "".join(line.format(n=i) for i in range(4096)).encode()
    target = mib * 1024 * 1024
    with path.open("wb") as f:
        written = 0
        while written < target:
            f.write(block)
            written += len(block)
    return written


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and peak RSS (KiB) of the command and its descendants, output to
    /dev/null."""
    with open(os.devnull, "wb") as devnull:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=devnull, stderr=devnull, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def guard_argv(producer_file: Path, state: Path) -> list[str]:
    cat_script = shlex.quote('exec cat "$0"')
    producer = f"sh -c {cat_script} {shlex.quote(str(producer_file))}"
    return [
        sys.executable,
        "-m",
        "vllm_guard",
        "--vllm-command",
        producer,
        "--state-dir",
        str(state),
        "--max-restarts",
        "0",
        "serve",
        "bench-model",
    ]


class UnwrittenLog(CappedLog):
    def write(self, data: bytes) -> None:
        pass


def stage(lines: Path, tmp: Path, name: str) -> float:
    """Wall seconds to take `lines` from `cat` through a pipe and do what `name` says with them."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    printer = Printer(stdout_fd=devnull, stderr_fd=devnull)
    log_class = CappedLog if name in ("+ log file", "log file alone") else UnwrittenLog
    log = log_class(tmp / f"{name}.log", 64 * 1024 * 1024)  # the default --log-max-bytes
    output = AttemptOutput(printer, Redactor(), log)
    output.watching = False  # vLLM is ready: no milestones to look for
    read_end, write_end = os.pipe()
    fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    start = time.perf_counter()
    cat = subprocess.Popen(["cat", str(lines)], stdout=write_end)
    os.close(write_end)
    while data := os.read(read_end, READ_CHUNK):
        if name == "log file alone":
            log.write(data)
        elif name != "read":
            output.feed(STDOUT, data)
    output.close()
    printer.flush()
    elapsed = time.perf_counter() - start
    cat.wait()
    printer.close()
    for fd in (read_end, devnull):
        os.close(fd)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--line", choices=sorted(LINES), default="stats")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vllm-guard-bench-") as tmp:
        lines = Path(tmp) / "lines.log"
        empty = Path(tmp) / "empty.log"
        empty.touch()
        size = make_lines(lines, opts.mib, LINES[opts.line])
        env = dict(os.environ)
        env.pop("HF_TOKEN", None)
        guard = guard_argv(lines, Path(tmp) / "state")
        idle = guard_argv(empty, Path(tmp) / "state-idle")
        baseline = ["sh", "-c", f"cat {shlex.quote(str(lines))} | cat"]
        guard_s, cat_s, idle_s, guard_cpu, cat_cpu, rss = [], [], [], [], [], []
        for _ in range(opts.runs):
            seconds, cpu, _ = run(baseline, env)
            cat_s.append(seconds)
            cat_cpu.append(cpu)
            seconds, cpu, peak = run(guard, env)
            guard_s.append(seconds)
            guard_cpu.append(cpu)
            rss.append(peak)
            idle_s.append(run(idle, env)[0])
        mib = size / 2**20
        g, c, i = statistics.median(guard_s), statistics.median(cat_s), statistics.median(idle_s)
        print(
            f"lines: {size / len(LINES[opts.line]):,.0f} '{opts.line}' lines, {mib:,.0f} MiB, {opts.runs} runs each"
        )
        print(
            f"cat | cat:        median {c:6.2f} s  {mib / c:8.0f} MiB/s  CPU {statistics.median(cat_cpu):5.2f} s"
        )
        print(
            f"vllm-guard serve: median {g:6.2f} s  {mib / g:8.0f} MiB/s  CPU {statistics.median(guard_cpu):5.2f} s"
        )
        print(f"  of which its own start and stop (no output): median {i:.2f} s")
        print(f"ratio guard/cat throughput: {c / g:.2f} (goal >= 0.5)")
        print(f"ratio net of the guard's start and stop: {c / max(g - i, 1e-9):.2f}")
        print(
            f"guard peak RSS: median {statistics.median(rss) / 1024:.0f} MiB, max {max(rss) / 1024:.0f} MiB"
        )
        names = ("read", "+ mask, tail, relay", "+ log file", "log file alone")
        seconds_by_name: dict[str, list[float]] = {name: [] for name in names}
        for _ in range(opts.runs):
            for name in names:
                seconds_by_name[name].append(stage(lines, Path(tmp), name))
        print("in this process, from a pipe, median:")
        for name in names:
            took = statistics.median(seconds_by_name[name])
            print(
                f"  {name:22s} {took:6.2f} s  {1000 * took / mib:5.2f} ms/MiB  ({c / took:.2f} x cat | cat)"
            )


if __name__ == "__main__":
    main()
