"""Which GPUs CUDA will enumerate: CUDA_VISIBLE_DEVICES read as CUDA reads it, over NVML."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any


def _visible(nvml: ModuleType, count: int, setting: str | None) -> tuple[list[tuple[int, Any]], str | None]:
    """(NVML index, handle) of each GPU CUDA will enumerate, in CUDA's order, or why there are none.

    Mirrors CUDA's parsing as torch.cuda._parse_visible_devices documents it: the first entry's kind
    (ordinals, GPU- or MIG- UUIDs) sets the kind, parsing stops at the first entry that is not valid
    (the ones before it are used), and a repeated device empties the list. Ordinals are taken as NVML
    (PCI bus) indices, as vLLM does; CUDA's default FASTEST_FIRST order agrees with that unless the
    GPUs are of different models and CUDA_DEVICE_ORDER=PCI_BUS_ID is unset.
    """
    if setting is None:
        return [(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)], None
    if not setting.strip():
        return [], f"CUDA_VISIBLE_DEVICES={setting!r} hides every GPU"
    entries = [entry.strip() for entry in setting.split(",")]
    kind = entries[0][:4] if entries[0][:4] in ("GPU-", "MIG-") else ""
    uuids: list[str | None] = []
    if kind == "GPU-":
        uuids = [_optional(nvml, functools.partial(_uuid, nvml, i)) for i in range(count)]
    chosen: list[tuple[int, Any]] = []
    seen: set[str | int] = set()
    for entry in entries:
        if not entry.startswith(kind):
            break
        found = _resolve(nvml, count, entry, kind, uuids)
        if found is None:
            break
        key, index, handle = found
        if key in seen:
            return [], f"CUDA_VISIBLE_DEVICES={setting!r} names a GPU twice, so CUDA sees none"
        seen.add(key)
        chosen.append((index, handle))
    if not chosen:
        return [], f"CUDA_VISIBLE_DEVICES={setting!r} names no GPU that NVML sees (it sees {count})"
    return chosen, None


def _resolve(
    nvml: ModuleType, count: int, entry: str, kind: str, uuids: list[str | None]
) -> tuple[str | int, int, Any] | None:
    """(identity, NVML index, handle) for one CUDA_VISIBLE_DEVICES entry, None where CUDA stops."""
    if kind == "GPU-":
        # A unique prefix is enough for CUDA.
        matches = [i for i, uuid in enumerate(uuids) if uuid is not None and uuid.startswith(entry)]
        if len(matches) != 1:
            return None
        return matches[0], matches[0], nvml.nvmlDeviceGetHandleByIndex(matches[0])
    if kind == "MIG-":
        try:
            handle = nvml.nvmlDeviceGetHandleByUUID(entry)
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            return entry, int(nvml.nvmlDeviceGetIndex(parent)), handle
        except nvml.NVMLError:
            return None
    # CUDA reads an ordinal like strtoul: leading digits count ("1gpu" is 1), none or a sign stops.
    digits = re.match(r"\d+", entry)
    if digits is None or int(digits.group()) >= count:
        return None
    index = int(digits.group())
    return index, index, nvml.nvmlDeviceGetHandleByIndex(index)


def _optional(nvml: ModuleType, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except nvml.NVMLError:
        return None


def _uuid(nvml: ModuleType, index: int) -> str:
    return _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)))


def _text(value: str | bytes) -> str:
    # pynvml before 11.5 returns bytes.
    return value.decode() if isinstance(value, bytes) else value
