"""GPU snapshots: the facts of a machine you are not on, written by `preflight --save-gpu-snapshot`
and read back with `--gpu-snapshot`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vllm_guard.facts import GpuFacts, GpuInfo, GpuProcess

_SNAPSHOT_FORMAT = 1


def facts_to_json(facts: GpuFacts) -> dict[str, Any]:
    """A snapshot for `--gpu-snapshot`. Process users and commands go in; environments never do."""
    return {
        "format": _SNAPSHOT_FORMAT,
        "driver_version": facts.driver_version,
        "cuda_version": facts.cuda_version,
        "problem": facts.problem,
        "devices": [
            {
                "index": d.index,
                "uuid": d.uuid,
                "name": d.name,
                "total_bytes": d.total_bytes,
                "free_bytes": d.free_bytes,
                "reserved_bytes": d.reserved_bytes,
                "used_bytes": d.used_bytes,
                "compute_capability": list(d.compute_capability) if d.compute_capability else None,
                **({"cpu_node": d.cpu_node} if d.cpu_node is not None else {}),
                "processes": [
                    {"pid": p.pid, "bytes": p.bytes, "user": p.user, "command": p.command}
                    for p in d.processes
                ],
            }
            for d in facts.devices
        ],
    }


def facts_from_json(data: Mapping[str, Any], source: str) -> GpuFacts:
    """Read a snapshot back; ValueError names the first field that is missing or wrong."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a GPU snapshot is a JSON object, not {type(data).__name__}")
    fmt = data.get("format", _SNAPSHOT_FORMAT)
    if fmt != _SNAPSHOT_FORMAT:
        raise ValueError(f"format: this vllm-guard reads GPU snapshot format {_SNAPSHOT_FORMAT}, not {fmt!r}")
    devices = _field(data, "devices", list, "")
    facts = GpuFacts(
        devices=tuple(_info_from_json(d, f"devices[{i}].") for i, d in enumerate(devices)),
        driver_version=_field(data, "driver_version", str | None, ""),
        cuda_version=_field(data, "cuda_version", str | None, ""),
        problem=_field(data, "problem", str | None, ""),
        source=source,
    )
    if not facts.devices and facts.problem is None:
        raise ValueError("devices: empty, and no problem says why no GPU is visible")
    return facts


def _info_from_json(data: Any, where: str) -> GpuInfo:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where.rstrip('.')}: expected an object, got {data!r}")
    capability = _field(data, "compute_capability", list | None, where)
    if capability is not None and (len(capability) != 2 or not all(_is_count(v) for v in capability)):
        raise ValueError(f"{where}compute_capability: expected [major, minor], got {capability!r}")
    processes = _field(data, "processes", list, where)
    return GpuInfo(
        index=_count(data, "index", where),
        uuid=_field(data, "uuid", str | None, where),
        name=_field(data, "name", str, where),
        total_bytes=_count(data, "total_bytes", where),
        free_bytes=_count(data, "free_bytes", where),
        reserved_bytes=_count(data, "reserved_bytes", where),
        used_bytes=_count(data, "used_bytes", where),
        compute_capability=(capability[0], capability[1]) if capability is not None else None,
        processes=tuple(_process_from_json(p, f"{where}processes[{i}].") for i, p in enumerate(processes)),
        cpu_node=_count(data, "cpu_node", where) if data.get("cpu_node") is not None else None,
    )


def _process_from_json(data: Any, where: str) -> GpuProcess:
    if not isinstance(data, Mapping):
        raise ValueError(f"{where.rstrip('.')}: expected an object, got {data!r}")
    return GpuProcess(
        pid=_count(data, "pid", where),
        bytes=_count(data, "bytes", where),
        user=_field(data, "user", str | None, where),
        command=_field(data, "command", str | None, where),
    )


def _field(data: Mapping[str, Any], key: str, kind: Any, where: str) -> Any:
    if key not in data:
        raise ValueError(f"{where}{key}: missing")
    value = data[key]
    if not isinstance(value, kind):
        expected = kind.__name__ if isinstance(kind, type) else str(kind)
        raise ValueError(f"{where}{key}: expected {expected}, got {value!r}")
    return value


def _is_count(value: Any) -> bool:
    # JSON true/false load as bool, which Python counts as int.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _count(data: Mapping[str, Any], key: str, where: str) -> int:
    value = _field(data, key, int, where)
    if not _is_count(value):
        raise ValueError(f"{where}{key}: expected a whole number >= 0, got {value!r}")
    return int(value)
