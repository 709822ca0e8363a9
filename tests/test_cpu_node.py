"""The device of vLLM's CPU build, read from a fake /sys the way vLLM reads the real one
(vllm/utils/cpu_resource_utils.py, 0.32: get_memory_node_info)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vllm_guard.gpu import cpu_node, facts_from_json, facts_to_json

KIB = 1024
# this machine's node 0 as the kernel writes it (the lines vLLM reads, and some it does not)
MEMINFO = """Node 0 MemTotal:       24683784 kB
Node 0 MemFree:        21885460 kB
Node 0 MemUsed:         2798324 kB
Node 0 Active(file):     600000 kB
Node 0 Inactive(file):   900000 kB
Node 0 SReclaimable:      50000 kB
Node 0 HugePages_Total:     0
"""


def fake_sys(root: Path, *, node: int = 0, meminfo: str | None = MEMINFO) -> Path:
    first = min(os.sched_getaffinity(0))
    (root / "sys/devices/system/cpu" / f"cpu{first}" / f"node{node}").mkdir(parents=True)
    if meminfo is not None:
        where = root / "sys/devices/system/node" / f"node{node}"
        where.mkdir(parents=True)
        (where / "meminfo").write_text(meminfo.replace("Node 0", f"Node {node}"))
    (root / "sys/fs/cgroup").mkdir(parents=True)
    return root


def test_the_node_of_the_first_allowed_cpu_with_vllms_available_memory(tmp_path: Path) -> None:
    facts = cpu_node.read_facts(root=fake_sys(tmp_path, node=1))
    (device,) = facts.devices
    assert device.cpu_node == 1 and device.label == "memory node 1" and device.name == "CPU"
    assert device.total_bytes == device.cuda_total_bytes == 24683784 * KIB
    # MemFree + Active(file) + Inactive(file) + SReclaimable, as vLLM counts "available"
    assert device.free_bytes == (21885460 + 600000 + 900000 + 50000) * KIB
    assert device.compute_capability is None and device.processes == ()
    assert facts.problem is None and "CPU build" in facts.source


def test_a_cgroup_limit_clamps_the_total_and_what_is_available(tmp_path: Path) -> None:
    root = fake_sys(tmp_path)
    (root / "sys/fs/cgroup/memory.max").write_text("8589934592\n")
    (root / "sys/fs/cgroup/memory.current").write_text("1073741824\n")
    (device,) = cpu_node.read_facts(root=root).devices
    assert device.total_bytes == 8 << 30 and device.free_bytes == 7 << 30
    # "max" is no limit
    (root / "sys/fs/cgroup/memory.max").write_text("max\n")
    assert cpu_node.read_facts(root=root).devices[0].total_bytes == 24683784 * KIB


def test_cgroup_v1_and_its_no_limit_sentinel(tmp_path: Path) -> None:
    root = fake_sys(tmp_path)
    (root / "sys/fs/cgroup/memory").mkdir()
    (root / "sys/fs/cgroup/memory/memory.limit_in_bytes").write_text(str(9223372036854771712))
    assert cpu_node.read_facts(root=root).devices[0].total_bytes == 24683784 * KIB
    (root / "sys/fs/cgroup/memory/memory.limit_in_bytes").write_text(str(4 << 30))
    (root / "sys/fs/cgroup/memory/memory.usage_in_bytes").write_text(str(5 << 30))
    (device,) = cpu_node.read_facts(root=root).devices
    assert device.total_bytes == 4 << 30 and device.free_bytes == 0


def test_without_node_meminfo_the_machines_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil  # noqa: PLC0415

    class Memory:
        total, available = 64 << 30, 60 << 30

    monkeypatch.setattr(psutil, "virtual_memory", Memory)
    (device,) = cpu_node.read_facts(root=fake_sys(tmp_path, meminfo=None)).devices
    assert (device.total_bytes, device.free_bytes, device.cpu_node) == (64 << 30, 60 << 30, 0)


def test_a_snapshot_keeps_the_memory_node(tmp_path: Path) -> None:
    facts = cpu_node.read_facts(root=fake_sys(tmp_path))
    assert facts_from_json(facts_to_json(facts), facts.source) == facts


def test_rank_0s_node_is_the_first_memory_node_allowed_and_made_visible(tmp_path: Path) -> None:
    # vLLM binds rank 0 to the first of its visible memory nodes: /proc's Mems_allowed_list,
    # narrowed by CPU_VISIBLE_MEMORY_NODES (utils/cpu_resource_utils.py, get_visible_memory_node)
    root = fake_sys(tmp_path, node=0)
    where = root / "sys/devices/system/node/node2"
    where.mkdir(parents=True)
    (where / "meminfo").write_text(MEMINFO.replace("Node 0", "Node 2").replace("24683784", "1000"))
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/status").write_text("Name:\tpython\nMems_allowed_list:\t0-3\n")
    assert cpu_node.read_facts(root=root).devices[0].cpu_node == 0
    (device,) = cpu_node.read_facts({"CPU_VISIBLE_MEMORY_NODES": "2,3"}, root=root).devices
    assert (device.cpu_node, device.total_bytes) == (2, 1000 * KIB)
    # a node the process may not use is not vLLM's either; a simulated NUMA ignores the variable
    assert cpu_node.read_facts({"CPU_VISIBLE_MEMORY_NODES": "7"}, root=root).devices[0].cpu_node == 0
    simulated = {"CPU_VISIBLE_MEMORY_NODES": "2", "VLLM_CPU_SIM_MULTI_NUMA": "1"}
    assert cpu_node.read_facts(simulated, root=root).devices[0].cpu_node == 0
