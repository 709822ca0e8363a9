"""The scenario: the simulated machine and the faults to inject, read from VLLM_GUARD_SIM_* variables.

GPU:    VLLM_GUARD_SIM_GPU_MEMORY_GIB (total, 24), VLLM_GUARD_SIM_GPU_USED_GIB (held by others, 0),
        VLLM_GUARD_SIM_COMPUTE_CAPABILITY (8.9), VLLM_GUARD_SIM_GPU_COUNT (1),
        VLLM_GUARD_SIM_GPU_NAME (NVIDIA L4), VLLM_GUARD_SIM_GPU_LEDGER (a folder: engines record
        the memory they hold there, and later launches count the live ones as used; off if unset)
Timing: VLLM_GUARD_SIM_LOAD_S (simulated load time, 1)
Hub:    VLLM_GUARD_SIM_GATED (comma list of gated repo ids), VLLM_GUARD_SIM_HUB_UNREACHABLE=1,
        and vLLM's own HF_TOKEN / HUGGING_FACE_HUB_TOKEN / HF_HUB_OFFLINE
vLLM:   VLLM_GUARD_SIM_VERSION (0.33.0; 0.32.x switches the flag spellings that changed), and
        vLLM's own VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS (1: the graph pool is taken out of the
        KV budget; 0: capture draws on the memory outside it, as before 0.20)
Faults: VLLM_GUARD_SIM_FAULTS (comma list, `once:` = first launch only), VLLM_GUARD_SIM_STATE
        (the launch-counter file that `once:` needs)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from vllm_guard.sim.memory import GiB, Gpu

DEFAULT_VERSION = "0.33.0"  # vllm_version.NEWEST_SUPPORTED (the simulator imports nothing of the guard)
SUPPORTED_VERSIONS = ("0.32", "0.33")


class ScenarioError(Exception):
    """A VLLM_GUARD_SIM_* variable the simulator cannot use (exit 2)."""


@dataclass(frozen=True, slots=True)
class Faults:
    hang_after_s: float | None = None
    stall_after_s: float | None = None
    oom_after_requests: int | None = None
    ignore_sigterm: bool = False
    exit0_on_death: bool = False
    flood_lines: int = 0
    flood_line_bytes: int = 200
    orphan_engine: bool = False
    graph_overshoot_gib: float = 0.0  # the real graph pool outgrows the profiled estimate by this
    engine_error_every: int | None = None  # every Nth completion's forward pass hits a CUDA error
    retry_fails: bool = False  # fault tolerance's retry raises the error again


# name -> value type (None: a switch that takes no value)
FAULTS: dict[str, type | None] = {
    "hang_after": float,
    "stall_after": float,
    "oom_after_requests": int,
    "engine_error_every": int,
    "retry_fails": None,
    "ignore_sigterm": None,
    "exit0_on_death": None,
    "flood_lines": int,
    "flood_line_bytes": int,
    "orphan_engine": None,
    "graph_overshoot": float,
}
_FIELD = {
    "hang_after": "hang_after_s",
    "stall_after": "stall_after_s",
    "graph_overshoot": "graph_overshoot_gib",
}


def parse_faults(spec: str, launch: int | None) -> Faults:
    """`a,b=1,once:c=2`; `once:` items apply to launch 1 only (or to every launch when no
    launch counter is configured, `launch` None)."""
    values: dict[str, object] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        once = item.startswith("once:")
        name, eq, text = item.removeprefix("once:").partition("=")
        name = name.strip()
        if name not in FAULTS:
            known = ", ".join(sorted(FAULTS))
            raise ScenarioError(f"unknown fault {name!r} in VLLM_GUARD_SIM_FAULTS (known: {known})")
        kind = FAULTS[name]
        if kind is None:
            if eq:
                raise ScenarioError(f"fault {name!r} takes no value, got {item!r}")
            value: object = True
        else:
            try:
                value = kind(text.strip())
            except ValueError:
                raise ScenarioError(f"fault {name!r} needs a {kind.__name__} value, got {item!r}") from None
            if isinstance(value, (int, float)) and value < 0:
                raise ScenarioError(f"fault {name!r} must not be negative, got {item!r}")
        if once and launch is not None and launch != 1:
            continue
        values[_FIELD.get(name, name)] = value
    return Faults(**values)  # type: ignore[arg-type]


def count_launch(path: str) -> int:
    """Add one to the launch counter in PATH (created if missing) and return the new count."""
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        text = handle.read().strip()
        count = (int(text) if text.isdigit() else 0) + 1
        handle.seek(0)
        handle.truncate()
        handle.write(f"{count}\n")
        handle.flush()
        return count


@dataclass(frozen=True, slots=True)
class Scenario:
    gpu: Gpu
    load_s: float
    faults: Faults
    launch: int | None
    version: str
    gated: frozenset[str]
    token: bool
    offline: bool
    hub_reachable: bool
    ledger: Path | None = None
    profile_graphs: bool = True
    spec_acceptance: float = 0.7  # the chance a drafted token is accepted (--speculative-config)


def _number(environ: dict[str, str], name: str, default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ScenarioError(f"{name} must be a number, got {text!r}") from None
    if value < 0:
        raise ScenarioError(f"{name} must not be negative, got {text!r}")
    return value


def _capability(text: str) -> tuple[int, int]:
    major, dot, minor = text.strip().partition(".")
    if not (major.isdigit() and dot and minor.isdigit()):
        raise ScenarioError(f"VLLM_GUARD_SIM_COMPUTE_CAPABILITY must look like 8.9, got {text!r}")
    return int(major), int(minor)


def load(environ: dict[str, str], hf_token_flag: bool = False) -> Scenario:
    """Read the scenario; counts this launch when VLLM_GUARD_SIM_STATE names a file."""
    version = environ.get("VLLM_GUARD_SIM_VERSION", "").strip() or DEFAULT_VERSION
    if not version.startswith(SUPPORTED_VERSIONS):
        raise ScenarioError(f"VLLM_GUARD_SIM_VERSION must be 0.32.x or 0.33.x, got {version!r}")
    total = int(_number(environ, "VLLM_GUARD_SIM_GPU_MEMORY_GIB", 24) * GiB)
    used = int(_number(environ, "VLLM_GUARD_SIM_GPU_USED_GIB", 0) * GiB)
    count = int(_number(environ, "VLLM_GUARD_SIM_GPU_COUNT", 1))
    capability = _capability(environ.get("VLLM_GUARD_SIM_COMPUTE_CAPABILITY", "") or "8.9")
    ledger_dir = environ.get("VLLM_GUARD_SIM_GPU_LEDGER", "").strip()
    ledger = Path(ledger_dir) if ledger_dir else None
    holders = read_ledger(ledger) if ledger is not None else ()
    gpu = Gpu(
        total_bytes=total,
        other_used_bytes=min(total, used + sum(size for _, size in holders)),
        capability=capability,
        count=count,
        name=environ.get("VLLM_GUARD_SIM_GPU_NAME", "").strip() or "NVIDIA L4",
        holders=holders,
    )
    state = environ.get("VLLM_GUARD_SIM_STATE", "").strip()
    spec = environ.get("VLLM_GUARD_SIM_FAULTS", "")
    parse_faults(spec, None)  # reject a bad spec before counting a launch
    launch = count_launch(state) if state else None
    return Scenario(
        gpu=gpu,
        load_s=_number(environ, "VLLM_GUARD_SIM_LOAD_S", 1.0),
        faults=parse_faults(spec, launch),
        launch=launch,
        version=version,
        gated=frozenset(s.strip() for s in environ.get("VLLM_GUARD_SIM_GATED", "").split(",") if s.strip()),
        token=hf_token_flag or bool(environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN")),
        offline=environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "True", "YES", "yes")
        or environ.get("TRANSFORMERS_OFFLINE", "") == "1",
        hub_reachable=environ.get("VLLM_GUARD_SIM_HUB_UNREACHABLE", "") != "1",
        ledger=ledger,
        profile_graphs=environ.get("VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS", "1").strip() != "0",
        spec_acceptance=min(1.0, _number(environ, "VLLM_GUARD_SIM_SPEC_ACCEPTANCE", 0.7)),
    )


def read_ledger(folder: Path) -> tuple[tuple[int, int], ...]:
    """(pid, bytes) of the engines recorded in FOLDER that are still alive."""
    live: list[tuple[int, int]] = []
    if not folder.is_dir():
        return ()
    for entry in sorted(folder.iterdir()):
        try:
            size_text, started_text = entry.read_text(encoding="utf-8").split()
            pid = int(entry.name)
            process = psutil.Process(pid)
            alive = process.status() != psutil.STATUS_ZOMBIE
            if alive and abs(process.create_time() - float(started_text)) < 0.5:
                live.append((pid, int(size_text)))
                continue
        except (ValueError, OSError, psutil.Error):
            pass
        with contextlib.suppress(OSError):
            entry.unlink()
    return tuple(live)


def record(folder: Path, pid: int, size: int) -> None:
    """Record that PID holds SIZE bytes of the simulated GPU (read_ledger checks it is alive)."""
    folder.mkdir(parents=True, exist_ok=True)
    started = psutil.Process(pid).create_time()
    tmp = folder / f".{pid}.tmp"
    tmp.write_text(f"{size} {started}\n", encoding="utf-8")
    os.replace(tmp, folder / str(pid))


def forget(folder: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        (folder / str(pid)).unlink()
