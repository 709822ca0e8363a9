"""`serve` with preflight over the simulator: the simulated GPU handed to the guard as a snapshot
(what `preflight --save-gpu-snapshot` writes), the model's published config.json in a Hugging Face
cache. The simulator's memory model is its own, so a first attempt that is ready is two models
agreeing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from model_configs import LLAMA_31_8B
from state_files import endpoint_file

from vllm_guard import gpu, vllm_args

pytestmark = pytest.mark.timeout(90)

SIM = f"{sys.executable} -m vllm_guard.sim"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GIB = 1 << 30


def hub_cache(root: Path) -> Path:
    snapshot = root / "hub" / "models--meta-llama--Llama-3.1-8B-Instruct" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text(json.dumps(LLAMA_31_8B))
    return root / "hub"


def snapshot(root: Path, total_gib: int, used_gib: int = 0) -> Path:
    total, used = total_gib * GIB, used_gib * GIB
    holders = (gpu.GpuProcess(4242, used, "bob", "python other_job.py"),) if used else ()
    device = gpu.GpuInfo(0, None, "NVIDIA L4", total, total - used, 0, used, (8, 9), holders)
    path = root / "gpu.json"
    path.write_text(json.dumps(gpu.facts_to_json(gpu.GpuFacts((device,), "580", "13.0", None, "snapshot"))))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(tmp_path: Path, gib: int, used: int, *flags: str, port: int | None = None) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(hub_cache(tmp_path)),
        "HF_TOKEN": "hf_testtoken0000000000",
        "VLLM_GUARD_SIM_LOAD_S": "0.05",
        "VLLM_GUARD_SIM_GPU_MEMORY_GIB": str(gib),
        "VLLM_GUARD_SIM_GPU_USED_GIB": str(used),
    }
    argv = [
        sys.executable, "-m", "vllm_guard", "--vllm-command", SIM, "--state-dir", str(tmp_path / "state"),
        "--gpu-snapshot", str(snapshot(tmp_path, gib, used)), "--health-interval-s", "0.05",
        "serve", MODEL, "--host", "127.0.0.1", "--port", str(port or free_port()), *flags,
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


def until_ready(guard: subprocess.Popen[str]) -> list[str]:
    assert guard.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    for line in guard.stderr:
        lines.append(line.rstrip("\n"))
        if "vLLM is ready" in line or time.monotonic() > deadline:
            break
    guard.terminate()
    lines += [line.rstrip("\n") for line in guard.stderr]
    guard.stderr.close()
    assert guard.wait(30) == 0, "\n".join(lines)
    return lines


def test_the_full_context_is_fitted_before_launch_and_the_first_attempt_is_ready(tmp_path: Path) -> None:
    lines = until_ready(serve(tmp_path, 24, 0))  # 131072 tokens of Llama-3.1-8B do not fit 24 GiB
    assert any(
        line.startswith("vllm-guard: preflight: adj  kv_cache: one sequence of 131072 tokens")
        for line in lines
    )
    assert any("vLLM is ready (attempt 1)" in line for line in lines), "\n".join(lines)
    started = next(line for line in lines if "starting vLLM (attempt 1)" in line).split()
    length = int(vllm_args.get(started, "--max-model-len") or 0)
    assert 16_000 < length < 131072 and length % 16 == 0


def test_memory_held_by_another_process_is_fitted_before_launch(tmp_path: Path) -> None:
    lines = until_ready(serve(tmp_path, 24, 4, "--max-model-len", "8192"))
    assert any("adj  free_memory" in line and "pid 4242 (python) holds 4.00 GiB" in line for line in lines)
    started = next(line for line in lines if "starting vLLM (attempt 1)" in line).split()
    assert vllm_args.get(started, "--gpu-memory-utilization") == "0.81"  # 20/24 free, less the margin
    assert any("vLLM is ready (attempt 1)" in line for line in lines)


def test_a_taken_port_ends_serve_with_exit_3_before_anything_launches(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        guard = serve(tmp_path, 24, 0, "--max-model-len", "8192", port=holder.getsockname()[1])
        _, err = guard.communicate(timeout=60)
    assert guard.returncode == 3, err
    assert "preflight: port: port" in err and "is already in use by" in err
    assert "starting vLLM" not in err
    assert (
        not endpoint_file(tmp_path / "state", "journal.jsonl").exists()
        or "started" not in endpoint_file(tmp_path / "state", "journal.jsonl").read_text()
    )
