"""Failed attempts before ready, over simulator scenarios: the guard's default policy with and
without preflight, against a blind same-flags restart and a fixed halve-and-retry ladder; the
flags each guard reached ready with; and the guard's relaunch latency (vLLM seen gone → next vLLM
launched, when the flags changed; goal ≤ 0.5 s).

With preflight the guard reads the simulated GPU from a snapshot (what `preflight
--save-gpu-snapshot` writes) and the models' published config.json from a Hugging Face cache
(bench/hf_configs.json); its memory model (vllm_guard/memory.py, preflight.py) is independent of
the simulator's, so a zero here is two models agreeing.

    python bench/ladder.py [--max-attempts 6]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from vllm_guard import vllm_args
from vllm_guard.state import endpoint_dir

SIM = f"{sys.executable} -m vllm_guard.sim"
GIB = 1 << 30
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


def installed_sim(tmp: Path) -> str:
    """The simulator installed the way vLLM is: a `vllm` script in a virtual environment whose
    site-packages has vLLM's package metadata (0.33.0, the simulator's version), so the guard
    knows the version before the launch, as it does for a real install."""
    import sysconfig  # noqa: PLC0415

    env = tmp / "vllm-venv"
    python = Path(os.path.realpath(sys.executable))
    site = env / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "vllm-0.33.0.dist-info").mkdir(parents=True)
    (site / "vllm-0.33.0.dist-info" / "METADATA").write_text("Name: vllm\nVersion: 0.33.0\n")
    # the simulator and its dependencies come from the guard's own environment
    (site / "guard.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    (env / "pyvenv.cfg").write_text(f"home = {python.parent}\ninclude-system-site-packages = false\n")
    (env / "bin").mkdir()
    (env / "bin" / "python").symlink_to(python)
    script = env / "bin" / "vllm"
    script.write_text(
        f"#!{env / 'bin' / 'python'}\nimport runpy\nrunpy.run_module('vllm_guard.sim', run_name='__main__', alter_sys=True)\n"
    )
    script.chmod(0o755)
    return str(script)


def gpu_snapshot(gib: str, sim_env: dict[str, str], path: Path) -> Path:
    """The simulated GPU as `preflight --save-gpu-snapshot` would have written it on that machine."""
    from vllm_guard import gpu  # noqa: PLC0415 - what the guard itself would write

    total = int(float(gib) * GIB)
    used = int(float(sim_env.get("VLLM_GUARD_SIM_GPU_USED_GIB", "0")) * GIB)
    major, minor = sim_env.get("VLLM_GUARD_SIM_COMPUTE_CAPABILITY", "8.9").split(".")
    holders = (gpu.GpuProcess(4242, used, "other", "python other_job.py"),) if used else ()
    device = gpu.GpuInfo(
        0, None, "NVIDIA L4", total, total - used, 0, used, (int(major), int(minor)), holders
    )
    facts = gpu.GpuFacts((device,), "580.159.04", "13.0", None, "snapshot")
    path.write_text(json.dumps(gpu.facts_to_json(facts)))
    return path


def hub_cache(tmp: Path) -> Path:
    """A Hugging Face cache holding the published config.json of each scenario's model."""
    cache = tmp / "hub"
    configs = json.loads((Path(__file__).with_name("hf_configs.json")).read_text())
    for model, config in configs.items():
        if model.startswith("_"):
            continue
        repo = cache / ("models--" + model.replace("/", "--"))
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("0" * 40)
        snapshot = repo / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True, exist_ok=True)
        (snapshot / "config.json").write_text(json.dumps(config))
    return cache


def run(
    policy: str,
    scenario: tuple[str, str, str, dict[str, str], list[str]],
    tmp: Path,
    max_attempts: int,
    preflight: bool = False,
) -> tuple[str, list[float], str]:
    _, model, gib, sim_env, flags = scenario
    state = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05", "VLLM_GUARD_SIM_GPU_MEMORY_GIB": gib, **sim_env}
    if preflight:
        env["HF_HUB_CACHE"] = str(hub_cache(tmp))
        options = [
            "--preflight",
            "adjust",
            "--gpu-snapshot",
            str(gpu_snapshot(gib, sim_env, state / "gpu.json")),
        ]
    else:
        options = ["--preflight", "off"]
    port = free_port()
    guard = subprocess.Popen(
        [sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(state), "--policy", policy,
         "--max-restarts", str(max_attempts - 1), "--backoff-initial-s", "0.01", "--backoff-jitter-s", "0",
         "--health-interval-s", "0.05", *options,
         "serve", model, "--host", "127.0.0.1", "--port", str(port), *flags],
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
    journal = endpoint_dir(state, f"port {port}") / "journal.jsonl"
    events = [json.loads(x) for x in journal.read_text().splitlines()] if journal.exists() else []
    started = [e for e in events if e.get("event") == "started"]
    last_flags = started[-1]["argv"][started[-1]["argv"].index(model) + 1 :] if started else []
    ended = {e["attempt"]: e for e in events if e.get("event") == "ended"}
    latencies = [
        e["launched_at_s"] - ended[e["attempt"] - 1]["exited_at_s"]
        for e in events
        if e.get("event") == "started"
        and e["attempt"] - 1 in ended
        and (ended[e["attempt"] - 1].get("decision") or {}).get("delay_s") == 0.0
    ]
    user = ["--host", "127.0.0.1", "--port", "0", *flags]
    final = [*last_flags[:3], "0", *last_flags[4:]] if last_flags else user
    changes = vllm_args.changes(user, final) if outcome.isdigit() else "-"
    fitted = _auto_fitted(state)
    return outcome, latencies, changes.replace("→ auto", f"→ auto (vLLM: {fitted})") if fitted else changes


def _auto_fitted(state: Path) -> str | None:
    """What vLLM's own `--max-model-len auto` chose, from its log line in the last attempt."""
    logs = sorted(state.glob("serving/*/logs/*-attempt-*.log"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    found = re.search(
        r"Auto-fit max_model_len: reduced from \d+ to (\d+)", logs[-1].read_text(errors="replace")
    )
    return found.group(1) if found else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-attempts", type=int, default=6)
    opts = parser.parse_args()
    global SIM  # noqa: PLW0603 - one installed simulator for every run of this bench
    with tempfile.TemporaryDirectory(prefix="vllm-guard-ladder-") as tmp_name:
        tmp = Path(tmp_name)
        SIM = installed_sim(tmp)
        (tmp / "blind.yaml").write_text(BLIND)
        (tmp / "halve.yaml").write_text(HALVE)
        latencies: list[float] = []
        finals: list[tuple[str, str, str]] = []
        print(f"failed attempts before ready (at most {opts.max_attempts} attempts)")
        print(f"{'scenario':<28} {'preflight':>10} {'guard':>8} {'blind':>16} {'halve':>16}")
        zero = 0
        for scenario in SCENARIOS:
            checked, _, checked_flags = run("default", scenario, tmp, opts.max_attempts, preflight=True)
            row = [checked]
            for policy in ("default", str(tmp / "blind.yaml"), str(tmp / "halve.yaml")):
                outcome, lat, flags = run(policy, scenario, tmp, opts.max_attempts)
                row.append(outcome)
                if policy == "default":
                    latencies.extend(lat)
                    finals.append((scenario[0], checked_flags, flags))
            zero += checked == "0"
            print(f"{scenario[0]:<28} {row[0]:>10} {row[1]:>8} {row[2]:>16} {row[3]:>16}")
        print(f"with preflight, ready at the first attempt in {zero} of {len(SCENARIOS)} scenarios")
        print("\nflags at ready: with preflight | the ladder alone")
        for name, checked_flags, ladder_flags in finals:
            print(f"{name:<28} {checked_flags} | {ladder_flags}")
        if latencies:
            print(f"relaunch latency with changed flags (vLLM gone → next launch), {len(latencies)} relaunches: "
                  f"median {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms (goal <= 500 ms)")  # fmt: skip


if __name__ == "__main__":
    main()
