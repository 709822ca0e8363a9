"""The host facts preflight reads: each read that fails is an unknown, never an error."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from vllm_guard import machine
from vllm_guard.facts import GpuFacts, GpuInfo, GpuProcess


def test_shm_size_is_read_and_a_missing_mount_is_unknown(tmp_path: Path) -> None:
    assert (machine.shm_bytes("/dev/shm") or 0) > 0
    assert machine.shm_bytes(str(tmp_path / "absent")) is None


def test_free_disk_is_read_from_the_nearest_existing_folder(tmp_path: Path) -> None:
    free, where = machine.disk_free(tmp_path / "not" / "yet" / "there")
    assert free is not None and free > 0
    assert where == str(tmp_path / "not" / "yet" / "there")


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


# A stand-in for vLLM's `vllm` entry point: `python .../vllm serve m`, as `ps` shows the real one.
FAKE_VLLM = """
import signal, sys, time
if "--stubborn" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("up", flush=True)
time.sleep(60)
"""


def test_kill_leftovers_stops_vllm_processes_sigterm_first_and_never_another_program(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import subprocess  # noqa: PLC0415

    from vllm_guard.commands.preflight import _kill_leftovers  # noqa: PLC0415

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "vllm").write_text(FAKE_VLLM)
    (tmp_path / "vllm-evals").mkdir()
    (tmp_path / "vllm-evals" / "finetune.py").write_text(FAKE_VLLM)
    argvs = {
        "polite": [sys.executable, str(tmp_path / "bin" / "vllm"), "serve", "m"],
        "stubborn": [sys.executable, str(tmp_path / "bin" / "vllm"), "serve", "m", "--stubborn"],
        "user": [sys.executable, str(tmp_path / "vllm-evals" / "finetune.py"), "--epochs", "3"],
    }
    procs = {name: subprocess.Popen(argv, stdout=subprocess.PIPE) for name, argv in argvs.items()}
    try:
        for proc in procs.values():
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        # NVML's list says all of them are vLLM (a stale list, or a pid since reused): only the
        # live command line decides
        listed = tuple(GpuProcess(p.pid, 1 << 30, "root", "vllm serve m") for p in procs.values())
        device = GpuInfo(0, None, "NVIDIA L4", 24 << 30, 21 << 30, 0, 3 << 30, (8, 9), listed)
        _kill_leftovers(GpuFacts((device,), None, None, None, "test"), grace_s=0.5)
        said = capsys.readouterr().err
        # SIGTERM first (an EngineCore lets its GPU go in order), SIGKILL only for what it did not stop
        assert f"stopped pid {procs['polite'].pid} " in said
        assert f"killed pid {procs['stubborn'].pid} (vllm serve m): SIGTERM did not stop it" in said
        for name in ("polite", "stubborn"):  # gone, or a zombie for this test to reap
            assert procs[name].wait(10) is not None
        assert procs["user"].poll() is None  # "vllm" in its path does not make it vLLM
        assert str(procs["user"].pid) not in said
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.mark.parametrize(
    ("command", "is_vllm"),
    [
        ("VLLM::EngineCore", True),
        ("VLLM::EngineCore_DP1", True),
        ("VLLM::EngineCor", True),  # the kernel's 15-character name of a process on its way out
        ("VLLM::Worker_TP1", True),
        ("VLLM::Worker_PP1_TP0", True),
        ("/venv/bin/python /venv/bin/vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000", True),
        ("/venv/bin/vllm serve m", True),
        ("vllm serve m", True),
        ("python3 -m vllm.entrypoints.openai.api_server --model m", True),
        ("python3.12 -u -m vllm.entrypoints.cli.main serve m", True),
        ("python -m vllm serve m", True),
        ("python vllm-evals/finetune.py --epochs 3", False),
        ("/home/alice/vllm/bin/python train.py", False),
        ("vllm preload --model m", False),  # vLLM's own helper, not a server this guard started
        ("vllm bench serve --model m", False),
        ("VLLM::DPCoordinator", False),  # vLLM's data-parallel coordinator holds no GPU of its own
        ("python -m vllm_guard serve m", False),
        ("", False),
    ],
)
def test_what_looks_like_vllm_is_exactly_vllms_serving_processes(command: str, is_vllm: bool) -> None:
    assert machine.looks_like_vllm(command) is is_vllm
    assert machine.looks_like_vllm(command.split()) is is_vllm


@pytest.mark.parametrize(
    ("command", "guard"),
    [
        ("/venv/bin/python /venv/bin/vllm-guard serve m", True),
        ("/usr/local/bin/vllm-guard serve m", True),
        ("python3 -m vllm_guard --state-dir /s serve m", True),
        ("python3 -m vllm_guard.sim serve m", False),
        ("python vllm-guard-notes.py", False),
    ],
)
def test_what_is_a_guard(command: str, guard: bool) -> None:
    assert machine.is_guard(command) is guard


def test_a_vllm_that_a_live_guard_supervises_is_never_a_leftover() -> None:
    procs = (
        GpuProcess(10, 1 << 30, "root", "VLLM::EngineCore"),  # another guard's, on another port
        GpuProcess(11, 1 << 30, "root", "VLLM::EngineCore"),  # an orphan: its guard is gone
    )
    device = GpuInfo(0, None, "NVIDIA L4", 24 << 30, 22 << 30, 0, 2 << 30, (8, 9), procs)
    facts = GpuFacts((device,), None, None, None, "test")
    assert [p.pid for p in machine.vllm_leftovers(facts, (), supervised=lambda pid: pid == 10)] == [11]


def test_a_live_guard_among_the_ancestors_is_found() -> None:
    import subprocess  # noqa: PLC0415

    # a parent that is a vllm-guard (by its command line), and under it an EngineCore by title
    guard = subprocess.Popen(
        ["vllm-guard", "-c", "(exec -a VLLM::EngineCore sleep 60) & echo $!; wait"],
        executable="/bin/bash",
        stdout=subprocess.PIPE,
    )
    try:
        assert guard.stdout is not None
        engine = int(guard.stdout.readline())
        assert machine.supervised_by_a_guard(engine)
        assert not machine.supervised_by_a_guard(os.getpid())  # pytest is not a guard
    finally:
        guard.kill()
        guard.wait(10)
        if guard.stdout is not None:
            guard.stdout.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(engine, signal.SIGKILL)


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
