"""A node's role in a group of vLLM processes on several nodes, read from vLLM's flags. Its own
module, light to import: serve asks it before vLLM's first exec (group.py brings the failure
catalogue with it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from vllm_guard.vllm_args import EffectiveFlags

RoleName = Literal["solo", "leader", "follower"]
Mode = Literal["", "multi-node", "data-parallel", "ray"]


@dataclass(frozen=True, slots=True)
class Role:
    """What this node is in its group, as its vLLM flags say."""

    name: RoleName = "solo"
    mode: Mode = ""
    rank: int = 0  # the node's rank in the group (the leader's is 0)
    nodes: int = 1
    leader_host: str | None = None  # where the leader's vLLM meets its peers (--master-addr ...)

    @property
    def grouped(self) -> bool:
        return self.name != "solo"

    def describe(self) -> str:
        if not self.grouped:
            return "a single node" + (
                " (its other nodes are Ray's, not vLLM processes)" if self.mode == "ray" else ""
            )
        at = f" at {self.leader_host}" if self.leader_host else ""
        return f"the {self.name} (node {self.rank} of {self.nodes}, {self.mode}{at})"


def _int(flags: EffectiveFlags, flag: str, default: int) -> int:
    value = flags.get(flag)
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def role_of(flags: EffectiveFlags) -> Role:
    """This node's role from vLLM's flags (its --config file's too).

    vLLM's own multi-node mode: `--nnodes N` with `--node-rank R`; rank 0 serves the API, the
    others run `--headless`. Data parallel across nodes: the node that serves the API, and the
    `--headless` ones whose ranks start at `--data-parallel-start-rank`. With Ray only the head
    runs `vllm serve`: its workers are Ray's processes, so its guard supervises alone."""
    headless = flags.is_on("--headless")
    nnodes = _int(flags, "--nnodes", 1)
    if nnodes > 1:
        rank = _int(flags, "--node-rank", 0)
        name: RoleName = "leader" if rank == 0 and not headless else "follower"
        return Role(name, "multi-node", rank, nnodes, flags.get("--master-addr"))
    size = _int(flags, "--data-parallel-size", 1)
    local = _int(flags, "--data-parallel-size-local", size)
    if size > 1 and 0 < local < size:
        start = _int(flags, "--data-parallel-start-rank", 0)
        nodes = math.ceil(size / local)
        rank = start // local
        name = "follower" if headless or rank > 0 else "leader"
        return Role(name, "data-parallel", rank, nodes, flags.get("--data-parallel-address"))
    if flags.get("--distributed-executor-backend") == "ray":
        return Role("solo", "ray")
    return Role()
