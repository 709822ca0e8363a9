"""The host facts preflight needs besides the GPU: /dev/shm, free disk where the model would go,
a Hugging Face token, who holds the serving port, and vLLM processes this guard did not start.
Each read that fails is an unknown (None), never an error."""

from __future__ import annotations

import errno
import os
import shutil
import socket
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from vllm_guard import vllm_args
from vllm_guard.gpu import GpuFacts, GpuProcess

TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# What a vLLM process looks like: its command line, or the names vLLM gives its children.
_VLLM_MARKS = ("vllm", "VLLM::")


def shm_bytes(path: str = "/dev/shm") -> int | None:
    try:
        stat = os.statvfs(path)
    except OSError:
        return None
    return stat.f_blocks * stat.f_frsize


def hub_cache_dir(args: Sequence[str], environ: Mapping[str, str]) -> Path:
    """Where vLLM would download the model: --download-dir, else the Hugging Face cache."""
    download = vllm_args.get(args, "--download-dir")
    if download:
        return Path(download)
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"])
    home = environ.get("HF_HOME") or os.path.join(
        environ.get("HOME", str(Path.home())), ".cache", "huggingface"
    )
    return Path(home) / "hub"


def disk_free(path: Path) -> tuple[int | None, str]:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free, str(path)
    except OSError:
        return None, str(path)


def has_token(args: Sequence[str], environ: Mapping[str, str]) -> bool:
    if any(environ.get(name) for name in TOKEN_VARIABLES) or vllm_args.get(args, "--hf-token"):
        return True
    path = environ.get("HF_TOKEN_PATH") or os.path.join(
        environ.get("HF_HOME")
        or os.path.join(environ.get("HOME", str(Path.home())), ".cache", "huggingface"),
        "token",
    )
    try:
        return bool(Path(path).read_text(encoding="utf-8").strip())
    except (OSError, UnicodeDecodeError):
        return False


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


def looks_like_vllm(command: str) -> bool:
    return any(mark in command for mark in _VLLM_MARKS)


def vllm_leftovers(gpus: GpuFacts, ours: Collection[int]) -> tuple[GpuProcess, ...]:
    """Processes holding GPU memory that look like vLLM and that this guard did not start."""
    seen: dict[int, GpuProcess] = {}
    for device in gpus.devices:
        for proc in device.processes:
            if proc.pid not in ours and proc.command is not None and looks_like_vllm(proc.command):
                seen.setdefault(proc.pid, proc)
    return tuple(seen.values())
