"""The host facts preflight reads: each read that fails is an unknown, never an error."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from vllm_guard import machine
from vllm_guard.gpu import GpuFacts, GpuInfo, GpuProcess


def test_shm_size_is_read_and_a_missing_mount_is_unknown(tmp_path: Path) -> None:
    assert (machine.shm_bytes("/dev/shm") or 0) > 0
    assert machine.shm_bytes(str(tmp_path / "absent")) is None


def test_the_download_dir_wins_then_hf_hub_cache_then_hf_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "HF_HOME": "/hf", "HF_HUB_CACHE": "/cache"}
    assert machine.hub_cache_dir(["--download-dir", "/models"], env) == Path("/models")
    assert machine.hub_cache_dir([], env) == Path("/cache")
    assert machine.hub_cache_dir([], {"HOME": str(tmp_path), "HF_HOME": "/hf"}) == Path("/hf/hub")
    assert machine.hub_cache_dir([], {"HOME": str(tmp_path)}) == tmp_path / ".cache" / "huggingface" / "hub"


def test_free_disk_is_read_from_the_nearest_existing_folder(tmp_path: Path) -> None:
    free, where = machine.disk_free(tmp_path / "not" / "yet" / "there")
    assert free is not None and free > 0
    assert where == str(tmp_path / "not" / "yet" / "there")


def test_a_token_in_the_environment_on_the_command_line_or_in_the_token_file(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert not machine.has_token([], home)
    assert machine.has_token([], {**home, "HF_TOKEN": "hf_x"})
    assert machine.has_token(["--hf-token", "hf_x"], home)
    token = tmp_path / ".cache" / "huggingface" / "token"
    token.parent.mkdir(parents=True)
    token.write_text("hf_x\n")
    assert machine.has_token([], home)
    assert not machine.has_token([], {**home, "HF_TOKEN_PATH": str(tmp_path / "none")})


def test_a_bound_port_names_its_holder_and_a_free_one_is_none() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        named = machine.port_holder("127.0.0.1", port)
        assert named is not None
        # psutil names the holder where it may see the sockets of all processes (root, as in CI)
        assert named.startswith(f"pid {os.getpid()} (") if os.geteuid() == 0 else named is not None
    assert machine.port_holder("127.0.0.1", port) is None


def test_leftovers_are_vllm_processes_on_the_gpu_that_are_not_ours() -> None:
    procs = (
        GpuProcess(10, 1 << 30, "root", "/venv/bin/python /venv/bin/vllm serve m"),
        GpuProcess(11, 1 << 30, "root", "VLLM::EngineCore"),
        GpuProcess(12, 1 << 30, "root", "python train.py"),  # not vLLM: never a leftover
        GpuProcess(13, 1 << 30, None, None),  # another PID namespace: unknown, left alone
        GpuProcess(14, 1 << 30, "root", "VLLM::EngineCore"),  # this guard's own
    )
    device = GpuInfo(0, None, "NVIDIA L4", 24 << 30, 19 << 30, 0, 5 << 30, (8, 9), procs)
    facts = GpuFacts((device, device), "580", "13.0", None, "nvml")
    assert [p.pid for p in machine.vllm_leftovers(facts, ours={14})] == [10, 11]


def test_kill_leftovers_kills_vllm_processes_and_never_another_program() -> None:
    import subprocess  # noqa: PLC0415

    from vllm_guard.preflight_cli import _kill_leftovers  # noqa: PLC0415

    vllm_like = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "vllm", "serve"])
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # NVML's list says both are vLLM (a stale list, or a pid since reused): only the live
        # command line decides
        procs = (GpuProcess(vllm_like.pid, 1 << 30, "root", "vllm serve m"),
                 GpuProcess(other.pid, 1 << 30, "root", "vllm serve m"))  # fmt: skip
        device = GpuInfo(0, None, "NVIDIA L4", 24 << 30, 22 << 30, 0, 2 << 30, (8, 9), procs)
        _kill_leftovers(GpuFacts((device,), None, None, None, "test"))
        assert vllm_like.wait(10) == -9
        assert other.poll() is None
    finally:
        for proc in (vllm_like, other):
            proc.kill()
            proc.wait(10)


def test_connections_of_a_previous_server_in_time_wait_do_not_make_the_port_taken() -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as vLLM's (uvicorn's) socket
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        served, _ = listener.accept()
        served.close()  # the server closes first: its end waits in TIME_WAIT, as after vLLM stops
        client.close()
    assert machine.port_holder("127.0.0.1", port) is None
