"""The host facts preflight needs besides the GPU: /dev/shm, free disk where the model would go
(hf_hub.py says where that is, and whether there is a token), who holds the serving port, and vLLM
processes this guard did not start. Each read that fails is an unknown (None), never an error."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from vllm_guard.facts import GpuFacts, GpuProcess

# The process titles vLLM gives the children of `vllm serve` that hold GPU memory and outlive a
# killed API server (vLLM #55510): `VLLM::EngineCore`, `VLLM::EngineCore_DP0`, `VLLM::Worker_TP1`…
# (reference.md §4.1; the kernel's comm cuts them to 15 characters, "VLLM::EngineCor"). Not
# `VLLM::DPCoordinator` or `VLLM::APIServer_N`, which hold no GPU memory of their own.
_VLLM_TITLES = ("VLLM::EngineCor", "VLLM::Worker")


def shm_bytes(path: str = "/dev/shm") -> int | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_blocks * stat.f_frsize


def disk_free(path: Path) -> tuple[int | None, str]:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free, str(path)
    except OSError:
        return None, str(path)


def port_holder(host: str, port: int) -> str | None:
    """Who has `host:port` bound, or None when vLLM could bind it. The holder is named when
    psutil can see it (same user, or root); else just "another program"."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As vLLM (uvicorn) binds: connections of a previous server still in TIME_WAIT do not
        # keep a new one from listening, so they must not fail this check either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                return None  # not ours to judge (an address this host lacks): vLLM will say
        else:
            return None
    import psutil  # noqa: PLC0415 - only when the port is taken

    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                try:
                    proc = psutil.Process(conn.pid)
                    return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120] or proc.name()})"
                except psutil.Error:
                    return f"pid {conn.pid}"
    except (psutil.Error, OSError):
        pass
    return "another program"


def looks_like_vllm(command: str | Sequence[str]) -> bool:
    """Whether a command line (the words, or them joined with spaces as NVML's describe gives
    it) is one of vLLM's serving processes: an EngineCore or Worker by its title, `vllm serve`
    (the entry point, run directly or by a Python), or `python -m vllm.entrypoints…`. Never a
    program that merely has "vllm" in a path (`python vllm-evals/finetune.py`), nor vLLM's other
    commands (`vllm preload`, `vllm bench`), which the guard did not start and must not stop."""
    words = command.split() if isinstance(command, str) else [w for w in command if w]
    if not words:
        return False
    if words[0].startswith(_VLLM_TITLES):
        return True
    rest = words[1:]
    if _is_python(words[0]):
        while rest and rest[0].startswith("-") and rest[0] != "-m":
            rest = rest[1:]  # the interpreter's own switches (-u, -B, -O)
        if len(rest) >= 2 and rest[0] == "-m":
            return rest[1].startswith("vllm.entrypoints.") or (rest[1] == "vllm" and rest[2:3] == ["serve"])
        if not rest:
            return False
        program, rest = rest[0], rest[1:]
    else:
        program = words[0]
    return os.path.basename(program) == "vllm" and rest[:1] == ["serve"]


def _is_python(program: str) -> bool:
    name = os.path.basename(program)
    return name == "python" or (name.startswith("python") and name[6:].replace(".", "").isdigit())


def is_guard(command: str | Sequence[str]) -> bool:
    """Whether a command line is a vllm-guard (its entry point, or `python -m vllm_guard`)."""
    words = command.split() if isinstance(command, str) else list(command)
    if not words:
        return False
    if os.path.basename(words[0]) == "vllm-guard":
        return True
    if not _is_python(words[0]):
        return False
    rest = words[1:]
    while rest and rest[0].startswith("-") and rest[0] != "-m":
        rest = rest[1:]
    if rest[:1] == ["-m"]:
        return rest[1:2] == ["vllm_guard"]
    return bool(rest) and os.path.basename(rest[0]) == "vllm-guard"


def supervised_by_a_guard(pid: int) -> bool:
    """Whether a live vllm-guard is among the process's ancestors: its vLLM is that guard's to
    stop (an orphaned EngineCore comes back to its guard, a subreaper), never a leftover."""
    import psutil  # noqa: PLC0415

    try:
        parents = psutil.Process(pid).parents()
    except psutil.Error:
        return False
    for parent in parents:
        try:
            if is_guard(parent.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def vllm_leftovers(
    gpus: GpuFacts,
    ours: Collection[int],
    *,
    supervised: Callable[[int], bool] = supervised_by_a_guard,
) -> tuple[GpuProcess, ...]:
    """Processes holding GPU memory that are vLLM's serving processes, that this guard did not
    start and that no live vllm-guard supervises (`supervised`: asked of this machine's
    processes by pid)."""
    seen: dict[int, GpuProcess] = {}
    for device in gpus.devices:
        for proc in device.processes:
            if proc.pid in ours or proc.pid in seen or proc.command is None:
                continue
            if looks_like_vllm(proc.command) and not supervised(proc.pid):
                seen[proc.pid] = proc
    return tuple(seen.values())
