"""Failed attempts before ready, over simulator scenarios: the guard's default policy against a
blind same-flags restart and a fixed halve-and-retry ladder; and the guard's relaunch latency
(vLLM seen gone → next vLLM launched, when the flags changed; goal ≤ 0.5 s).

    python bench/ladder.py [--max-attempts 6]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SIM = f"{sys.executable} -m vllm_guard.sim"
# (name, model, simulated GPU GiB, extra simulator env, user's vLLM flags)
SCENARIOS: list[tuple[str, str, str, dict[str, str], list[str]]] = [
    ("128k context, 8B, 24 GiB", "meta-llama/Llama-3.1-8B-Instruct", "24", {}, ["--max-model-len", "131072"]),
    (
        "32k context, 7B, 18 GiB",
        "Qwen/Qwen2.5-7B-Instruct",
        "18",
        {},
        ["--max-model-len", "32768", "--enforce-eager"],
    ),
    ("beyond the model's max", "Qwen/Qwen2.5-7B-Instruct", "24", {}, ["--max-model-len", "131072"]),
    (
        "4 GiB held by others",
        "Qwen/Qwen2.5-7B-Instruct",
        "24",
        {"VLLM_GUARD_SIM_GPU_USED_GIB": "4"},
        ["--max-model-len", "8192"],
    ),
    (
        "graph pool over estimate",  # vLLM #49224: capture takes more than the profiled estimate
        "Qwen/Qwen2.5-7B-Instruct",
        "24",
        {"VLLM_GUARD_SIM_FAULTS": "graph_overshoot=2"},
        ["--max-model-len", "8192", "--gpu-memory-utilization", "0.99"],
    ),
    ("7B weights on 14 GiB", "Qwen/Qwen2.5-7B-Instruct", "14", {}, ["--max-model-len", "8192"]),
    (
        "bf16 on a T4-class GPU",
        "Qwen/Qwen2.5-7B-Instruct",
        "24",
        {"VLLM_GUARD_SIM_COMPUTE_CAPABILITY": "7.5"},
        ["--max-model-len", "8192", "--dtype", "bfloat16"],
    ),
    ("no KV memory, 16 GiB", "Qwen/Qwen2.5-7B-Instruct", "16", {}, ["--max-model-len", "8192"]),
    ("70B on 80 GiB", "meta-llama/Llama-3.1-70B-Instruct", "80", {}, ["--max-model-len", "8192"]),
    ("Mistral 32k on 20 GiB", "mistralai/Mistral-7B-Instruct-v0.3", "20", {}, ["--max-model-len", "32768"]),
    (
        "8B 64k on 24 GiB eager",
        "meta-llama/Llama-3.1-8B-Instruct",
        "24",
        {},
        ["--max-model-len", "65536", "--enforce-eager"],
    ),
]
BLIND = "name: blind\ndescription: restart with the same flags\n"
HALVE = """name: halve
description: on any memory failure halve --max-model-len, then --gpu-memory-utilization
ladders:
""" + "".join(
    f"""  {kind}:
    - scale: {{flag: --max-model-len, factor: 0.5, floor: 256, default: 32768}}
    - scale: {{flag: --max-model-len, factor: 0.25, floor: 256, default: 32768}}
    - scale: {{flag: --gpu-memory-utilization, factor: 0.5, floor: 0.1, default: 0.92}}
    - scale: {{flag: --max-model-len, factor: 0.125, floor: 256, default: 32768}}
"""
    for kind in (
        "oom_weights",
        "oom_kv_cache",
        "max_model_len_too_large",
        "insufficient_free_memory",
        "oom_cuda_graph",
    )
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    policy: str, scenario: tuple[str, str, str, dict[str, str], list[str]], tmp: Path, max_attempts: int
) -> tuple[str, list[float]]:
    _, model, gib, sim_env, flags = scenario
    state = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05", "VLLM_GUARD_SIM_GPU_MEMORY_GIB": gib, **sim_env}
    guard = subprocess.Popen(
        [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(state), "--policy", policy,
         "--max-restarts", str(max_attempts - 1), "--backoff-initial-s", "0.01", "--backoff-jitter-s", "0",
         "--health-interval-s", "0.05", "serve", model, "--host", "127.0.0.1", "--port", str(free_port()), *flags],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert guard.stderr is not None
    outcome = f"not ready in {max_attempts}"
    for line in guard.stderr:
        if "vLLM is ready (attempt " in line:
            attempt = int(line.split("vLLM is ready (attempt ")[1].split(")")[0])
            outcome = str(attempt - 1)
            guard.terminate()
    guard.wait(60)
    events = [json.loads(x) for x in (state / "journal.jsonl").read_text().splitlines()]
    ended = {e["attempt"]: e for e in events if e.get("event") == "ended"}
    latencies = [
        e["launched_at_s"] - ended[e["attempt"] - 1]["exited_at_s"]
        for e in events
        if e.get("event") == "started"
        and e["attempt"] - 1 in ended
        and (ended[e["attempt"] - 1].get("decision") or {}).get("delay_s") == 0.0
    ]
    return outcome, latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-attempts", type=int, default=6)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vllm-guard-ladder-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "blind.yaml").write_text(BLIND)
        (tmp / "halve.yaml").write_text(HALVE)
        latencies: list[float] = []
        print(f"failed attempts before ready (at most {opts.max_attempts} attempts)")
        print(f"{'scenario':<28} {'guard':>8} {'blind':>16} {'halve':>16}")
        for scenario in SCENARIOS:
            row = []
            for policy in ("default", str(tmp / "blind.yaml"), str(tmp / "halve.yaml")):
                outcome, lat = run(policy, scenario, tmp, opts.max_attempts)
                row.append(outcome)
                if policy == "default":
                    latencies.extend(lat)
            print(f"{scenario[0]:<28} {row[0]:>8} {row[1]:>16} {row[2]:>16}")
        if latencies:
            print(f"relaunch latency with changed flags (vLLM gone → next launch), {len(latencies)} relaunches: "
                  f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms (goal <= 500 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
