"""The device of vLLM's CPU build: the NUMA memory node its worker binds to, read the way vLLM
reads it (vllm/utils/cpu_resource_utils.py, 0.32: get_memory_node_info).

vLLM's CPU worker asks for `--gpu-memory-utilization` x the node's total and refuses to start
when the node has less "available" than that; what its process holds after warm-up (RSS) comes
off the request and the rest is the KV cache. "Available" is MemFree + Active(file) +
Inactive(file) + SReclaimable of the node's meminfo, and a container's cgroup limit clamps both
figures. The node is rank 0's: the first memory node the process may use (/proc's
Mems_allowed_list) among CPU_VISIBLE_MEMORY_NODES where that is set, as vLLM binds its worker
(utils/ompmultiprocessing.py, get_visible_memory_node).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from vllm_guard.facts import GpuFacts, GpuInfo

_KIB = 1024
# cgroup v1 reports "no limit" as a number near PAGE_COUNTER_MAX (vLLM's own cut-off)
_V1_UNLIMITED = 1 << 62
_AVAILABLE_PARTS = ("MemFree", "Active(file)", "Inactive(file)", "SReclaimable")


def read_facts(environ: Mapping[str, str] | None = None, root: Path = Path("/")) -> GpuFacts:
    """The memory node vLLM's CPU worker will use, as one device; `environ` is vLLM's, `root`
    is for tests."""
    visible = _visible_nodes(root, environ or {})
    node = visible[0] if visible else _first_cpus_node(root)
    meminfo = _node_meminfo(root, node)
    if meminfo is not None and "MemTotal" in meminfo:
        total = meminfo["MemTotal"]
        available = sum(meminfo.get(part, 0) for part in _AVAILABLE_PARTS)
    else:  # no per-node meminfo (a kernel without NUMA): the machine's, as vLLM falls back to
        import psutil  # noqa: PLC0415

        memory = psutil.virtual_memory()
        total, available = int(memory.total), int(memory.available)
    limit, usage = _cgroup(root)
    if limit is not None and limit < total:
        total = limit
        available = max(0, min(available, limit - (usage or 0)))
    device = GpuInfo(
        index=node,
        uuid=None,
        name="CPU",
        total_bytes=total,
        free_bytes=available,
        reserved_bytes=0,
        used_bytes=max(0, total - available),
        compute_capability=None,
        processes=(),
        cpu_node=node,
    )
    return GpuFacts((device,), None, None, None, f"vLLM's CPU build: memory node {node}")


def _visible_nodes(root: Path, environ: Mapping[str, str]) -> list[int]:
    """The memory nodes vLLM may bind to: Mems_allowed_list, narrowed by CPU_VISIBLE_MEMORY_NODES
    (which vLLM ignores under VLLM_CPU_SIM_MULTI_NUMA); [] where /proc does not say."""
    try:
        status = (root / "proc/self/status").read_text(encoding="ascii", errors="replace")
    except OSError:
        return []
    allowed = next(
        (
            _id_list(line.split(":", 1)[1])
            for line in status.splitlines()
            if line.startswith("Mems_allowed_list:")
        ),
        [],
    )
    chosen = environ.get("CPU_VISIBLE_MEMORY_NODES", "")
    if chosen and "VLLM_CPU_SIM_MULTI_NUMA" not in environ:
        wanted = _id_list(chosen)
        return [node for node in wanted if node in allowed]
    return allowed


def _id_list(text: str) -> list[int]:
    """ "0-2,4" as [0, 1, 2, 4]; [] for what is not such a list."""
    found: set[int] = set()
    for part in text.strip().split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return []
        found.update(range(int(low), int(high or low) + 1))
    return sorted(found)


def _first_cpus_node(root: Path) -> int:
    """The NUMA node of the first CPU this process may run on, where /proc names no memory
    node; 0 where the machine says nothing of nodes."""
    try:
        first = min(os.sched_getaffinity(0))
    except (AttributeError, OSError, ValueError):
        return 0
    cpu = root / "sys/devices/system/cpu" / f"cpu{first}"
    try:
        names = [entry.name for entry in cpu.iterdir()]
    except OSError:
        return 0
    nodes = sorted(int(name[4:]) for name in names if name.startswith("node") and name[4:].isdigit())
    return nodes[0] if nodes else 0


def _node_meminfo(root: Path, node: int) -> dict[str, int] | None:
    """The node's meminfo in bytes ("Node 0 MemTotal:  24683784 kB")."""
    try:
        text = (root / "sys/devices/system/node" / f"node{node}" / "meminfo").read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return None
    found: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[3].isdigit():
            found[parts[2].rstrip(":")] = int(parts[3]) * _KIB
    return found


def _cgroup(root: Path) -> tuple[int | None, int | None]:
    """The cgroup's memory limit and usage (v2, else v1), None where there is no limit."""
    base = root / "sys/fs/cgroup"
    limit = _number(base / "memory.max")
    if limit is not None:
        return limit, _number(base / "memory.current")
    limit = _number(base / "memory/memory.limit_in_bytes")
    if limit is None or limit >= _V1_UNLIMITED:
        return None, None
    return limit, _number(base / "memory/memory.usage_in_bytes")


def _number(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit
