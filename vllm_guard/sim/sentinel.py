"""The simulated engine's fault tolerance (`--enable-fault-tolerance`): vLLM 0.27-0.33's
EngineCoreSentinel and its API router, as docs/fault-tolerance.md describes them.

An error in a forward pass pauses the engine instead of killing it: the requests in flight are
aborted, the status says unhealthy, new requests wait, and /health stays 200. A `retry` posted to
/fault_tolerance/apply is answered 202 at once and carried out in the background: the engine is
healthy again (or, with the fault `retry_fails`, the retry raises the same CUDA error and the
engine stays unhealthy). With no recovery within `engine_recovery_timeout_sec` the original
error is raised and the engine dies. Real vLLM accepts the flag only for an external-LB
data-parallel MoE deployment with an FT-capable all2all backend; the simulator runs it anywhere.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus

from vllm_guard.sim import frames as f
from vllm_guard.sim import messages as m
from vllm_guard.sim.reports import Log, Output, runtime_death

DEFAULT_TIMEOUT_S = 120  # FaultToleranceConfig.engine_recovery_timeout_sec


def recovery_timeout_s(config: object) -> int:
    """The --fault-tolerance-config's engine_recovery_timeout_sec (its only field, 0.27-0.34)."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return DEFAULT_TIMEOUT_S
    value = config.get("engine_recovery_timeout_sec") if isinstance(config, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_TIMEOUT_S


class Sentinel:
    def __init__(
        self,
        emit: Callable[[list[Output]], None],
        *,
        timeout_s: int,
        retry_fails: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self.timeout_s = timeout_s
        self._retry_fails = retry_fails
        self._clock = clock
        self._lock = threading.Lock()
        self.status = "healthy"
        self._entry: dict[str, object] = {"id": 0, "status": "healthy"}
        self._error = ""  # the exception that paused the engine, as torch words it
        self.paused_at: float | None = None
        self.resumed = threading.Event()  # what waiting requests wait on
        self.resumed.set()

    # -- the engine's side --

    def pause(self, error: str) -> None:
        """A forward pass raised `error` (its lines; the first names the exception's class)."""
        exception = error.split(":", 1)[0].rsplit(".", 1)[-1]
        with self._lock:
            self.status = "unhealthy"
            self._entry = {"id": 0, "status": "unhealthy", "fault_info": exception}
            self._error = error
            self.paused_at = self._clock()
            self.resumed.clear()
        traceback = "\n".join([m.FT_STATUS_UNHEALTHY[1], *f.render(f.FT_FORWARD), error.rstrip("\n")])
        self._emit(
            [
                Log("EngineCore", "WARNING", m.FT_PAUSED[0], m.FT_PAUSED[1].format(exception=exception)),
                Log("EngineCore", "INFO", m.FT_STATUS_UNHEALTHY[0], traceback),
            ]
        )

    def expired(self) -> bool:
        with self._lock:
            return self.paused_at is not None and self._clock() - self.paused_at > self.timeout_s

    def give_up(self) -> None:
        """No instruction came in time: vLLM raises the original error, and its engine dies."""
        with self._lock:
            error, self.paused_at = self._error, None
        self._emit(
            [
                Log(
                    "EngineCore", "ERROR", m.FT_TIMED_OUT[0], m.FT_TIMED_OUT[1].format(seconds=self.timeout_s)
                ),
                *runtime_death(error, f.FT_TIMED_OUT),
            ]
        )

    # -- the API router's side --

    def status_body(self) -> dict[str, object]:
        with self._lock:
            return {"schema_version": 1, "total_engines": 1, "engines": [dict(self._entry)]}

    def apply(self, body: bytes, content_type: str | None) -> tuple[HTTPStatus, dict[str, object]]:
        """POST /fault_tolerance/apply: vLLM's checks in its order, then 202 and the instruction
        carried out in the background."""
        if (content_type or "").split(";")[0].strip().lower() != "application/json":
            return _bad(m.FT_NOT_JSON_MEDIA)
        try:
            request = json.loads(body)
        except ValueError:
            return _bad(m.FT_BAD_JSON)
        if not isinstance(request, dict):
            return _bad(m.FT_NOT_OBJECT)
        instruction = request.get("instruction")
        if not instruction:
            return _bad(m.FT_NO_INSTRUCTION)
        if instruction != "retry":
            return _bad(m.FT_BAD_INSTRUCTION.format(instruction=instruction))
        if not isinstance(request.get("params", {}), dict):
            return _bad(m.FT_BAD_PARAMS)
        request_id = str(uuid.uuid4())  # vLLM names the request itself before 0.34
        threading.Thread(target=self._retry, args=(request_id,), daemon=True).start()
        return HTTPStatus.ACCEPTED, {"message": m.FT_ACCEPTED, "request_id": request_id}

    def _retry(self, request_id: str) -> None:
        with self._lock:
            status = self.status
        if status != "unhealthy":
            reason = m.FT_REJECTED[1].format(status=status.upper())
            self._emit([Log("EngineCore", "WARNING", m.FT_REJECTED[0], reason)])
            self._failed(request_id, reason)
            return
        if self._retry_fails:
            # the device is left in the error's state: synchronising it raises the error again
            error = self._error.rstrip("\n")
            traceback = "\n".join([m.FT_INSTRUCTION_FAILED[1], *f.render(f.FT_RETRY), error])
            self._emit([Log("EngineCore", "ERROR", m.FT_INSTRUCTION_FAILED[0], traceback)])
            self._failed(request_id, error.split(": ", 1)[-1])
            return
        with self._lock:
            self.status = "healthy"
            self._entry = {"id": 0, "status": "healthy"}
            self.paused_at = None
            self.resumed.set()
        self._emit([Log("EngineCore", "INFO", m.FT_HEALTHY[0], m.FT_HEALTHY[1])])

    def _failed(self, request_id: str, reason: str) -> None:
        with self._lock:
            self._entry = {**self._entry, "last_ft_request_id": request_id, "ft_error": reason}
        text = m.FT_RECOVERY_FAILED[1].format(request_id=request_id, reason=reason)
        self._emit([Log("APIServer", "ERROR", m.FT_RECOVERY_FAILED[0], text)])


def _bad(message: str) -> tuple[HTTPStatus, dict[str, object]]:
    error = {"message": message, "type": "Bad Request", "param": None, "code": 400}
    return HTTPStatus.BAD_REQUEST, {"error": error}
