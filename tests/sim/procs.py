"""Simulator processes for the tests: start one, read its output, wait for states, find leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(predicate: Callable[[], bool], timeout_s: float = 10.0, what: str = "a state") -> None:
    """Wait until PREDICATE holds; TIMEOUT_S is only an upper bound."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def get(
    url: str, timeout_s: float = 5.0, headers: dict[str, str] | None = None, data: bytes | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return int(reply.status), bytes(reply.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


@dataclass
class Sim:
    """One `python -m vllm_guard.sim serve ...` process, its output in files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def healthy(self) -> bool:
        try:
            return get(self.url + "/health", timeout_s=1.0)[0] == 200
        except OSError:
            return False

    def wait_healthy(self, timeout_s: float = 15.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                output = f"{self.stdout()[-3000:]}\n{self.stderr()[-3000:]}"
                pytest.fail(f"the simulator exited {self.proc.returncode}:\n{output}")
            return self.healthy()

        poll(ready, timeout_s, "/health 200")

    def wait(self, timeout_s: float = 15.0) -> int:
        return self.proc.wait(timeout_s)

    def wait_for(self, text: str, stream: str = "out", timeout_s: float = 15.0) -> None:
        read = self.stdout if stream == "out" else self.stderr
        poll(lambda: text in read(), timeout_s, f"{text!r} on std{stream}")

    def post(
        self,
        path: str,
        body: dict[str, object],
        headers: dict[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        return get(self.url + path, timeout_s, {"Content-Type": "application/json", **(headers or {})}, data)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def engine(self) -> psutil.Process:
        """The server's VLLM::EngineCore child."""
        found: list[psutil.Process] = []

        def has_engine() -> bool:
            found[:] = [p for p in psutil.Process(self.proc.pid).children() if p.name() == "VLLM::EngineCore"]
            return bool(found)

        poll(has_engine, 10.0, "the EngineCore child")
        return found[0]


@dataclass
class Launcher:
    tmp_path: Path
    tag: str
    started: list[Sim] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_GUARD_SIM_", "HF_"))}
        env.update(
            {"VLLM_GUARD_SIM_LOAD_S": "0.05", "VLLM_GUARD_SIM_TEST_TAG": self.tag, "PYTHONUNBUFFERED": "1"}
        )
        env.update(extra)
        return env

    def __call__(
        self, *args: str, port: int | None = None, env: dict[str, str] | None = None, **more: str
    ) -> Sim:
        """Start `serve ARGS --host 127.0.0.1 --port PORT` with the VLLM_GUARD_SIM_* of ENV and MORE."""
        port = free_port() if port is None else port
        index = len(self.started)
        out, err = self.tmp_path / f"sim{index}.out", self.tmp_path / f"sim{index}.err"
        argv = [
            sys.executable,
            "-m",
            "vllm_guard.sim",
            "serve",
            *args,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with out.open("wb") as out_file, err.open("wb") as err_file:
            proc = subprocess.Popen(
                argv,
                stdout=out_file,
                stderr=err_file,
                env=self.env(**(env or {}), **more),
                cwd=self.tmp_path,
                start_new_session=True,  # the test can kill the whole group if it must
            )
        sim = Sim(proc, out, err, port)
        self.started.append(sim)
        return sim


def tagged(tag: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                continue
            if process.environ().get("VLLM_GUARD_SIM_TEST_TAG") == tag:
                found.append(process)
    return found


def living_children() -> list[psutil.Process]:
    alive = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
    return alive
