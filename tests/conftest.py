"""Shared fixtures: a free loopback port per test, and a check that no test leaves a process behind."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from vllm_guard.processes import become_subreaper

# Orphans of the processes a test starts come back to the test run instead of PID 1, so the
# leftover check below sees them too.
become_subreaper()


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _living_children() -> list[psutil.Process]:
    _reap()
    alive = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 5.0
    left = _living_children()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _living_children()
    if left:
        names = []
        for p in left:
            with contextlib.suppress(psutil.Error):
                names.append(f"{p.pid} {p.name()} {p.cmdline()[:4]}")
                p.kill()
        _reap()
        pytest.fail(f"the test left processes running: {names}")


@pytest.fixture
def port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The diagnosis corpus's two figures (tests/diagnosis/corpus.py), whenever its tests ran."""
    corpus = sys.modules.get("corpus")
    ran = [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])]
    if corpus is None or not any("test_corpus" in getattr(r, "nodeid", "") for r in ran):
        return
    development, held_out = corpus.parts(corpus.load())
    terminalreporter.section("diagnosis corpus (tests/diagnosis/fixtures)")
    terminalreporter.write_line(corpus.score(development).line("development"))
    terminalreporter.write_line(corpus.score(held_out).line("held-out third"))
