"""GPU snapshots: the facts of a machine you are not on, written by `preflight --save-gpu-snapshot`
and read back with `--gpu-snapshot`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, NonNegativeInt, ValidationError

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


class _Strict(BaseModel):
    # strict: JSON's true is no count of bytes, "80GB" no number; unknown keys are a newer
    # guard's and are left alone
    model_config = ConfigDict(strict=True, frozen=True)


class _Process(_Strict):
    pid: NonNegativeInt
    bytes: NonNegativeInt
    user: str | None
    command: str | None


class _Device(_Strict):
    index: NonNegativeInt
    uuid: str | None
    name: str
    total_bytes: NonNegativeInt
    free_bytes: NonNegativeInt
    reserved_bytes: NonNegativeInt
    used_bytes: NonNegativeInt
    compute_capability: tuple[NonNegativeInt, NonNegativeInt] | None
    processes: list[_Process]
    cpu_node: NonNegativeInt | None = None


class _Snapshot(_Strict):
    format: int = _SNAPSHOT_FORMAT
    driver_version: str | None
    cuda_version: str | None
    problem: str | None
    devices: list[_Device]


def facts_from_json(data: Mapping[str, Any], source: str) -> GpuFacts:
    """Read a snapshot back; ValueError names the first field that is missing or wrong."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a GPU snapshot is a JSON object, not {type(data).__name__}")
    fmt = data.get("format", _SNAPSHOT_FORMAT)
    if fmt != _SNAPSHOT_FORMAT:
        raise ValueError(f"format: this vllm-guard reads GPU snapshot format {_SNAPSHOT_FORMAT}, not {fmt!r}")
    try:
        # validated as the JSON it was read from: strict, and a [major, minor] array is a pair
        snapshot = _Snapshot.model_validate_json(json.dumps(dict(data)))
    except ValidationError as exc:
        error = exc.errors()[0]
        said = "missing" if error["type"] == "missing" else f"{error['msg']}, got {error['input']!r}"
        raise ValueError(f"{_path(error['loc'])}: {said}") from None
    facts = GpuFacts(
        devices=tuple(
            GpuInfo(
                index=d.index,
                uuid=d.uuid,
                name=d.name,
                total_bytes=d.total_bytes,
                free_bytes=d.free_bytes,
                reserved_bytes=d.reserved_bytes,
                used_bytes=d.used_bytes,
                compute_capability=d.compute_capability,
                processes=tuple(GpuProcess(p.pid, p.bytes, p.user, p.command) for p in d.processes),
                cpu_node=d.cpu_node,
            )
            for d in snapshot.devices
        ),
        driver_version=snapshot.driver_version,
        cuda_version=snapshot.cuda_version,
        problem=snapshot.problem,
        source=source,
    )
    if not facts.devices and facts.problem is None:
        raise ValueError("devices: empty, and no problem says why no GPU is visible")
    return facts


def _path(loc: tuple[int | str, ...]) -> str:
    """pydantic's location as the snapshot's own path: devices[0].total_bytes."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
