"""VLLM::EngineCore: the simulated engine process. Run by path with the standard library only.

The server starts it as `VLLM::EngineCore -I -S engine_core.py PARENT_PID MODE READY_FD`. argv[0]
is the title psutil reports (the kernel's 15-character comm is set with prctl(PR_SET_NAME), and
psutil completes a 15-character comm from cmdline[0]). It stays in the server's process group. In
MODE `watch` it exits when the server is gone (parent-death signal, plus a poll of its parent for
the case the signal was missed); in MODE `orphan` (the fault `orphan_engine`) it does not, like
vLLM's EngineCore, which has no parent-death detection (vllm#55510), and lives until killed.
"""

import ctypes
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
TITLE = b"VLLM::EngineCore"


def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> int:
    parent, mode, ready_fd = int(argv[1]), argv[2], int(argv[3])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NAME, ctypes.c_char_p(TITLE[:15]), 0, 0, 0)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # A terminal's Ctrl-C reaches the whole process group; the server decides what the engine does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch = mode == "watch"
    if watch:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    while True:
        if watch and os.getppid() != parent:
            return 0
        time.sleep(0.1 if watch else 3600)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
