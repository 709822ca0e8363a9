"""What the GPUs are and hold: NVML reads (nvidia-ml-py), snapshots of them, and cards to plan for.

pynvml and psutil are imported lazily, so a machine without NVIDIA's driver never loads them and the
launch path stays free of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class DeviceMemory:
    index: int
    total: int
    used: int  # bytes in use, the driver's own reservation excluded where the v2 API says so
    processes: tuple[tuple[int, int], ...]  # (pid, bytes) of compute processes NVML shows


# Used memory moves by a few MiB on an idle device; more than this is a process letting go.
_JITTER_BYTES = 64 * 1024 * 1024


class GpuProbe(Protocol):
    def memory(self) -> list[DeviceMemory]: ...


class Nvml:
    """A GpuProbe over NVML. `open()` returns None where NVML cannot initialise (no driver, no GPU)."""

    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    @classmethod
    @functools.cache
    def open(cls) -> Nvml | None:
        try:
            import pynvml  # nvidia-ml-py's module name  # noqa: PLC0415

            pynvml.nvmlInit()
            return cls(pynvml)
        except Exception:  # NVMLError and ImportError alike: no usable GPU here
            return None

    def memory(self) -> list[DeviceMemory]:
        nvml = self._nvml
        found = []
        for index, handle in enumerate(self._handles):
            total, _free, used, _reserved = _memory(nvml, handle)
            procs = tuple(_processes(nvml, handle))
            found.append(DeviceMemory(index, total, used, procs))
        return found


def _memory(nvml: ModuleType, handle: Any) -> tuple[int, int, int, int]:
    """(total, free, used, reserved) bytes; reserved is 0 and counted in used where only v1 exists."""
    try:
        # v2 reports the driver's reservation apart (an idle H100 shows 503 MB "used" in v1).
        info = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        reserved = int(info.reserved)
    except (TypeError, AttributeError, nvml.NVMLError):
        # TypeError/AttributeError: a pynvml older than the v2 struct; NVMLError: a driver older than it.
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        reserved = 0
    return int(info.total), int(info.free), int(info.used), reserved


def _processes(nvml: ModuleType, handle: Any) -> list[tuple[int, int]]:
    try:
        running = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except nvml.NVMLError:
        return []
    # usedGpuMemory is None where the driver cannot tell (Windows WDDM, some vGPU setups).
    return [(int(p.pid), int(p.usedGpuMemory or 0)) for p in running]


async def wait_for_release(
    probe: GpuProbe,
    pids: Collection[int],
    timeout_s: float,
    *,
    settle_s: float = 0.5,
    poll_s: float = 0.05,
) -> bool:
    """Wait until the GPU memory of processes that are gone is back.

    When NVML lists our pids (same PID namespace) we wait until none is listed. Inside a container
    NVML shows host pids, so we wait instead until every device's used memory has stopped
    changing for `settle_s`. True when released, False on timeout.
    """
    deadline = time.monotonic() + timeout_s
    last: list[int] | None = None
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        devices = probe.memory()
        held = any(pid in pids for d in devices for pid, _ in d.processes)
        used = [d.used for d in devices]
        if last is None or any(abs(a - b) > _JITTER_BYTES for a, b in zip(used, last, strict=False)):
            last, stable_since = used, time.monotonic()
        if not held and time.monotonic() - stable_since >= settle_s:
            return True
        await asyncio.sleep(poll_s)
    return False


# ---- Facts for preflight -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GpuProcess:
    pid: int
    bytes: int
    user: str | None  # None when unknown, or when the pid is another PID namespace's (a container's host)
    command: str | None  # the command line joined with spaces; None when unknown


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int  # NVML index (for a MIG instance, its parent GPU's)
    uuid: str | None
    name: str
    total_bytes: int
    free_bytes: int
    reserved_bytes: int  # the driver's reservation (v2 memory struct); 0 where only v1 exists
    used_bytes: int  # v1 counts the reservation in here
    compute_capability: tuple[int, int] | None
    processes: tuple[GpuProcess, ...]


@dataclass(frozen=True, slots=True)
class GpuFacts:
    devices: tuple[GpuInfo, ...]  # the GPUs vLLM will use, in CUDA order (CUDA_VISIBLE_DEVICES applied)
    driver_version: str | None
    cuda_version: str | None  # "13.0"
    problem: str | None  # why no GPU is visible; None when devices were read
    source: str  # "nvml", "snapshot FILE", "planned: NAME x N"


# Who a pid belongs to and what it runs: (user, command).
Describe = Callable[[int], tuple[str | None, str | None]]

# The kernel's constant inode for the initial PID namespace (PROC_PID_INIT_INO, Linux 3.8+).
_INIT_PID_NS = "pid:[4026531836]"


def read_facts(
    environ: Mapping[str, str], nvml: ModuleType | None = None, *, describe: Describe | None = None
) -> GpuFacts:
    """The GPUs vLLM would get with this environment. NVML failing is a fact (`problem`), not an error."""
    if nvml is None:
        try:
            import pynvml  # nvidia-ml-py's module name  # noqa: PLC0415
        except ImportError as err:
            return GpuFacts((), None, None, f"nvidia-ml-py is not installed ({err})", "nvml")
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as err:  # NVMLError, or ctypes' OSError from a broken libnvidia-ml
        if isinstance(err, getattr(nvml, "NVMLError_LibraryNotFound", ())):
            return GpuFacts((), None, None, f"no NVIDIA driver (nvidia-ml-py: {err})", "nvml")
        return GpuFacts((), None, None, f"NVML cannot initialise: {err}", "nvml")
    try:
        return _read(nvml, environ, describe or process_describer())
    finally:
        # nvmlInit is reference-counted, so this leaves Nvml.open()'s session alone.
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _read(nvml: ModuleType, environ: Mapping[str, str], describe: Describe) -> GpuFacts:
    driver = _optional(nvml, lambda: _text(nvml.nvmlSystemGetDriverVersion()))
    cuda = _optional(nvml, lambda: _cuda_version(int(nvml.nvmlSystemGetCudaDriverVersion())))
    try:
        count = int(nvml.nvmlDeviceGetCount())
        chosen, problem = _visible(nvml, count, environ.get("CUDA_VISIBLE_DEVICES"))
        devices = tuple(_device(nvml, index, handle, describe) for index, handle in chosen)
    except nvml.NVMLError as err:
        return GpuFacts((), driver, cuda, f"NVML cannot read the GPUs: {err}", "nvml")
    if problem is None and not devices:
        problem = "NVML sees no GPU"
    return GpuFacts(devices, driver, cuda, problem, "nvml")


def _optional(nvml: ModuleType, read: Callable[[], Any]) -> Any:
    try:
        return read()
    except nvml.NVMLError:
        return None


def _text(value: str | bytes) -> str:
    # pynvml before 11.5 returns bytes.
    return value.decode() if isinstance(value, bytes) else value


def _cuda_version(encoded: int) -> str:
    return f"{encoded // 1000}.{encoded % 1000 // 10}"


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


def _uuid(nvml: ModuleType, index: int) -> str:
    return _text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(index)))


def _capability(nvml: ModuleType, handle: Any) -> tuple[int, int]:
    major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
    return int(major), int(minor)


def _device(nvml: ModuleType, index: int, handle: Any, describe: Describe) -> GpuInfo:
    total, free, used, reserved = _memory(nvml, handle)
    capability = _optional(nvml, lambda: _capability(nvml, handle))
    if capability is None:
        # A MIG instance may not answer for itself; its parent GPU does.
        capability = _optional(
            nvml, lambda: _capability(nvml, nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle))
        )
    processes = tuple(GpuProcess(pid, held, *describe(pid)) for pid, held in _processes(nvml, handle))
    return GpuInfo(
        index=index,
        uuid=_optional(nvml, lambda: _text(nvml.nvmlDeviceGetUUID(handle))),
        name=_text(nvml.nvmlDeviceGetName(handle)),
        total_bytes=total,
        free_bytes=free,
        reserved_bytes=reserved,
        used_bytes=used,
        compute_capability=capability,
        processes=processes,
    )


def process_describer(pid_namespace: str | None = None) -> Describe:
    """A Describe over psutil that answers only where NVML's pids are ours to look up.

    NVML reports pids in the host's PID namespace; inside a container the same number may be an
    unrelated process of ours, so there we say nothing rather than name the wrong one.
    """
    if pid_namespace is None:
        try:
            pid_namespace = os.readlink("/proc/self/ns/pid")
        except OSError:
            pid_namespace = ""
    if pid_namespace != _INIT_PID_NS:
        return lambda pid: (None, None)
    return _describe_with_psutil


def _describe_with_psutil(pid: int) -> tuple[str | None, str | None]:
    try:
        import psutil  # noqa: PLC0415
    except ImportError:
        return None, None
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return None, None
    user: str | None = None
    command: str | None = None
    with contextlib.suppress(psutil.Error):
        user = process.username()
    with contextlib.suppress(psutil.Error):
        command = " ".join(process.cmdline()) or None  # zombies and kernel threads have none
    return user, command


# ---- Snapshots: the facts of a machine you are not on --------------------------------------------

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


# ---- Cards to plan for (`--gpu NAME --gpus N`) ----------------------------------------------------

_MIB = 1 << 20

# NVML name -> (total bytes as NVML reports it, compute capability). NVML's total is a whole number of
# MiB (the H100 probe: 85520809984 = 81559 MiB), so each is the MiB total nvidia-smi printed on a real
# card, from the source named; V100 alone is the marketed 32 GiB, unmeasured.
CARDS: dict[str, tuple[int, tuple[int, int]]] = {
    "NVIDIA H100 80GB HBM3": (85520809984, (9, 0)),  # tests/data/h100-probe.json
    "NVIDIA H200": (143771 * _MIB, (9, 0)),  # nvidia-smi output in several public repositories
    "NVIDIA A100-SXM4-80GB": (81920 * _MIB, (8, 0)),  # modal-labs/modal-client#2797
    "NVIDIA A100-SXM4-40GB": (40960 * _MIB, (8, 0)),  # modal-labs/modal-client#2797
    "NVIDIA L40S": (46068 * _MIB, (8, 9)),  # akash-network/provider-configs#99, modal-client#2797
    "NVIDIA L4": (23034 * _MIB, (8, 9)),  # modal-labs/modal-client#2797
    "NVIDIA A10G": (23028 * _MIB, (8, 6)),  # NVIDIA/DCGM#232
    "NVIDIA GeForce RTX 4090": (24564 * _MIB, (8, 9)),  # RLinf/RLinf#255
    "NVIDIA GeForce RTX 3090": (24576 * _MIB, (8, 6)),  # noonghunna/club-3090#390
    "Tesla T4": (15360 * _MIB, (7, 5)),  # modal-labs/modal-client#2797
    # Marketed 32 GiB: a V100-PCIE-32GB shows 32480 MiB, so this may overstate by up to ~1 %.
    "Tesla V100-SXM2-32GB": (32 << 30, (7, 0)),
}


def planned(name: str, count: int) -> GpuFacts:
    """Facts for `count` idle cards of a kind in CARDS, for planning on another machine."""
    if count < 1:
        raise ValueError(f"--gpus must be at least 1, not {count}")
    card = _card(name)
    total, capability = CARDS[card]
    devices = tuple(GpuInfo(i, None, card, total, total, 0, 0, capability, ()) for i in range(count))
    return GpuFacts(devices, None, None, None, f"planned: {card} x {count}")


def _card(name: str) -> str:
    """The CARDS name meant: exact, then case-insensitive whole, whole word(s), and substring matches.

    Whole words come before substrings so that "L4" is the L4 and not also the L40S.
    """
    if name in CARDS:
        return name
    wanted = name.strip().lower()
    word = re.compile(rf"(?<![\w]){re.escape(wanted)}(?![\w])")
    for matches in (
        [c for c in CARDS if c.lower() == wanted],
        [c for c in CARDS if word.search(c.lower())],
        [c for c in CARDS if wanted in c.lower()],
    ):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise ValueError(f"--gpu {name!r} is ambiguous: it matches {', '.join(matches)}")
    raise ValueError(f"--gpu {name!r} is not a card vllm-guard knows; known: {', '.join(CARDS)}")
