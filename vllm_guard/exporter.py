"""The guard's own endpoints: its Prometheus metrics, liveness, readiness and a JSON status.

`GuardMetrics` holds the numbers (in a private CollectorRegistry, never the process-wide one, so
two guards in one test run never collide); `Exporter` serves them from a daemon thread, so a busy
or wedged event loop never blocks a probe, and /livez can report exactly that.
Metric names are a contract with alert rules and dashboards: renaming one is a breaking change.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import choose_encoder

from vllm_guard.advice import CONDITIONS

if TYPE_CHECKING:
    from vllm_guard.redact import Redactor

CONDITION_NAMES = tuple(c.name for c in CONDITIONS)
GROUP_ROUTE = "/group/v1/report"  # group_link.ROUTE, without importing the group's code here
GROUP_BODY_MAX = 64 * 1024
PHASES = ("preflight", "starting", "ready", "retrying", "backoff", "stopping", "stopped", "gave_up")


class GuardMetrics:
    """The supervisor's state as metrics; every method is safe to call from any thread."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._redactor = redactor
        # One lock for the multi-step updates (clear one label, set another) so that a scrape never
        # sees two phases at 1, or none.
        self._lock = threading.Lock()
        r = self.registry
        self._attempts = Counter("vllm_guard_attempts", "vLLM launches started by the guard.", registry=r)
        self._restarts = Counter(
            "vllm_guard_restarts", "vLLM failures, by failure kind.", ["kind"], registry=r
        )
        self._retries = Counter(
            "vllm_guard_engine_retries",
            "Retries in place asked of vLLM's paused engine (fault tolerance), by outcome.",
            ["outcome"],
            registry=r,
        )
        self._advice_g = Gauge(
            "vllm_guard_advice",
            "1 while the advisor's condition holds (vllm-guard doctor --help, docs/advice.md).",
            ["condition"],
            registry=r,
        )
        self._group_refused = Counter(
            "vllm_guard_group_refused",
            "Reports to the group's leader refused: no_token, wrong_token, bad_report, not_a_follower, "
            "old_generation.",
            ["reason"],
            registry=r,
        )
        self._group_generation_g = Gauge(
            "vllm_guard_group_generation",
            "The group's flag generation, on its leader's guard (0: not in a group).",
            registry=r,
        )
        self._phase_g = Gauge("vllm_guard_phase", "1 for the guard's current phase.", ["phase"], registry=r)
        self._ready_g = Gauge("vllm_guard_ready", "1 while vLLM answers /health 200.", registry=r)
        self._degraded_g = Gauge(
            "vllm_guard_degraded", "1 when vLLM runs with flags that differ from the user's.", registry=r
        )
        self._step_g = Gauge(
            "vllm_guard_degradation_info",
            "1 for the degradation step of the current attempt (empty: none).",
            ["step"],
            registry=r,
        )
        self._ttr_g = Gauge(
            "vllm_guard_time_to_ready_seconds",
            "Seconds from launch to /health 200, of the last attempt that got there.",
            registry=r,
        )
        self._failure_g = Gauge(
            "vllm_guard_last_failure_info", "1 for the kind of the last failure.", ["kind"], registry=r
        )
        self._attempt_g = Gauge("vllm_guard_attempt", "The current attempt number.", registry=r)
        self._phase = "preflight"
        self._ready = False
        self._attempt = 0
        self._step: str | None = None
        self._degraded = False
        self._last_failure: str | None = None
        self._time_to_ready_s: float | None = None
        self._restarts_by_kind: dict[str, int] = {}
        self._retried = {"recovered": 0, "failed": 0}
        self._advice: list[dict[str, object]] = []
        for condition in CONDITION_NAMES:
            self._advice_g.labels(condition=condition).set(0)
        for phase in PHASES:
            self._phase_g.labels(phase=phase).set(1 if phase == self._phase else 0)
        self._step_g.labels(step="").set(1)

    def attempt_started(self, attempt: int, step: str | None, degraded: bool) -> None:
        step = self._redact(step) if step else None
        with self._lock:
            self._attempts.inc()
            self._attempt = attempt
            self._attempt_g.set(attempt)
            self._step = step
            self._step_g.clear()
            self._step_g.labels(step=step or "").set(1)
            self._degraded = degraded
            self._degraded_g.set(1 if degraded else 0)
            self._set_ready(False)
            self._set_phase("starting")

    def ready(self, time_to_ready_s: float) -> None:
        with self._lock:
            self._time_to_ready_s = time_to_ready_s
            self._ttr_g.set(time_to_ready_s)
            self._set_ready(True)
            self._set_phase("ready")

    def failed(self, kind: str) -> None:
        kind = self._redact(kind)
        with self._lock:
            self._restarts.labels(kind=kind).inc()
            self._restarts_by_kind[kind] = self._restarts_by_kind.get(kind, 0) + 1
            self._last_failure = kind
            self._failure_g.clear()
            self._failure_g.labels(kind=kind).set(1)
            self._set_ready(False)

    def engine_retried(self, recovered: bool) -> None:
        outcome = "recovered" if recovered else "failed"
        with self._lock:
            self._retries.labels(outcome=outcome).inc()
            self._retried[outcome] += 1

    def group_refused(self, reason: str) -> None:
        self._group_refused.labels(reason=reason).inc()

    def group_generation(self, number: int) -> None:
        self._group_generation_g.set(number)

    def advice(self, findings: Sequence[Mapping[str, object]]) -> None:
        """The advisor's findings that hold now (each its condition, evidence and fix)."""
        holding = {str(f["condition"]) for f in findings}
        with self._lock:
            self._advice = [dict(f) for f in findings]
            for condition in CONDITION_NAMES:
                self._advice_g.labels(condition=condition).set(1 if condition in holding else 0)

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r} (known: {', '.join(PHASES)})")
        with self._lock:
            self._set_phase(phase)
            self._set_ready(phase == "ready")  # ready again: an engine that recovered in place

    @property
    def is_ready(self) -> bool:
        return self._ready

    def status(self, extra: Mapping[str, object] | None = None) -> dict[str, object]:
        """JSON-able state; `extra` (the caller's own fields) is merged in and redacted too."""
        with self._lock:
            state: dict[str, object] = {
                "phase": self._phase,
                "ready": self._ready,
                "attempt": self._attempt,
                "step": self._step,
                "degraded": self._degraded,
                "last_failure": self._last_failure,
                "time_to_ready_s": self._time_to_ready_s,
                "restarts_by_kind": dict(self._restarts_by_kind),
                "engine_retries": dict(self._retried),
                "advice": [dict(f) for f in self._advice],
            }
        if extra:
            state.update({key: self._redact_value(value) for key, value in extra.items()})
        return state

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type (OpenMetrics when `accept` asks for it)."""
        encoder, content_type = choose_encoder(accept or "")
        with self._lock:
            return encoder(self.registry), content_type

    def _set_phase(self, phase: str) -> None:
        self._phase_g.labels(phase=self._phase).set(0)
        self._phase = phase
        self._phase_g.labels(phase=phase).set(1)

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        self._ready_g.set(1 if ready else 0)

    def _redact(self, text: str) -> str:
        return self._redactor.text(text) if self._redactor is not None else text

    def _redact_value(self, value: object) -> object:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, Mapping):
            return {str(k): self._redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._redact_value(v) for v in value]
        return value


class Exporter:
    """Serves /metrics (prometheus text), /livez (200 while the guard's loop is alive), /readyz (200 when
    vLLM is ready, else 503), /status (JSON of GuardMetrics.status() plus whatever extra the caller gives)
    on host:port, in a daemon thread (http.server.ThreadingHTTPServer), so a busy event loop never blocks
    a probe."""

    def __init__(
        self,
        metrics: GuardMetrics,
        host: str,
        port: int,
        alive: Callable[[], bool] | None = None,
        extra: Callable[[], Mapping[str, object]] | None = None,
        *,
        group: Callable[[str | None, bytes], tuple[int, dict[str, object]]] | None = None,
    ) -> None:
        self.metrics = metrics
        self.group = group  # the group leader's desk (group_link.py): POST /group/v1/report
        self.host = host
        self._port = port
        self.alive = alive or (lambda: True)
        self.extra = extra
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Binds and serves; a port in use raises OSError (errno EADDRINUSE) here, in the caller."""
        if self._server is not None:
            raise RuntimeError("the exporter is already started")
        server_class = _Server6 if ":" in self.host else _Server
        server = server_class((self.host, self._port), _handler_for(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="vllm-guard-exporter",
            daemon=True,
        )
        self._thread.start()

    @property
    def port(self) -> int:
        if self._server is None:
            return self._port
        return int(self._server.server_address[1])

    def close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5.0)

    def _is_alive(self) -> bool:
        try:
            return bool(self.alive())
        except Exception:  # a broken heartbeat check is a dead loop, not a crashed probe
            return False

    def _status(self) -> dict[str, object]:
        try:
            extra = self.extra() if self.extra is not None else None
        except Exception as error:  # the guard's own state still answers
            extra = {"extra_error": f"{type(error).__name__}: {error}"}
        return self.metrics.status(extra)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an unfinished probe never holds up the guard's exit

    def server_bind(self) -> None:
        # HTTPServer.server_bind() asks socket.getfqdn(), a reverse DNS lookup that can take seconds
        # in a container without DNS; the name is only used in CGI variables.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a probe that hangs up early is not the guard's news; the printer owns the output


class _Server6(_Server):
    address_family = socket.AF_INET6


def _handler_for(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "vllm-guard"
        sys_version = ""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, content_type = exporter.metrics.render(self.headers.get("Accept"))
                self._send(HTTPStatus.OK, body, content_type)
            elif path == "/livez":
                alive = exporter._is_alive()
                status = HTTPStatus.OK if alive else HTTPStatus.SERVICE_UNAVAILABLE
                self._text(status, "ok" if alive else "the guard's loop has not ticked recently")
            elif path == "/readyz":
                if exporter.metrics.is_ready:
                    self._text(HTTPStatus.OK, "ready")
                else:
                    phase = exporter.metrics.status()["phase"]
                    self._text(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready (phase {phase})")
            elif path == "/status":
                body = json.dumps(exporter._status(), default=str).encode()
                self._send(HTTPStatus.OK, body, "application/json")
            else:
                self._text(HTTPStatus.NOT_FOUND, "not found: /metrics /livez /readyz /status")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _refuse(self) -> None:
            self._text(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD", allow="GET, HEAD")

        def do_POST(self) -> None:
            if exporter.group is None or self.path.split("?", 1)[0] != GROUP_ROUTE:
                self._refuse()
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= GROUP_BODY_MAX:
                self._text(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"a report is at most {GROUP_BODY_MAX} bytes")
                return
            status, answer = exporter.group(self.headers.get("Authorization"), self.rfile.read(length))
            self._send(HTTPStatus(status), json.dumps(answer).encode(), "application/json")

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse

        def _text(self, status: HTTPStatus, text: str, allow: str | None = None) -> None:
            self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8", allow)

        def _send(self, status: HTTPStatus, body: bytes, content_type: str, allow: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if allow is not None:
                self.send_header("Allow", allow)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown vLLM's own lines

    return Handler
