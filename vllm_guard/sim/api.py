"""The simulated vLLM's HTTP side: /health, /metrics, /v1/models, completions, with vLLM's answers.

Standard library only (ThreadingHTTPServer, or a Unix-socket server for --uds). Like vLLM, the
socket is bound early and only listens once the engine is ready (reference.md §1.10, §5.1), so a
connection during startup is refused. Answers follow vLLM: /health 200 with an empty body, 503
once the engine is dead; `--api-key` guards /v1, /v2 and /inference with `{"error": "Unauthorized"}`
(401); an unknown model is a 404 NotFoundError; the access log is uvicorn's, on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from vllm_guard.sim import bodies
from vllm_guard.sim import messages as m
from vllm_guard.sim.console import Console
from vllm_guard.sim.metrics import Metrics
from vllm_guard.sim.scheduler import Scheduler
from vllm_guard.sim.sentinel import Sentinel


class App:
    """What the request handlers share with the server's main thread."""

    def __init__(
        self,
        *,
        console: Console,
        metrics: Metrics,
        names: list[str],
        root: str,
        max_model_len: int,
        api_keys: list[str],
        version: str,
        access_log: bool,
        quiet_paths: set[str],
        on_request: Callable[[], str],
        sentinel: Sentinel | None = None,
    ) -> None:
        self.console = console
        self.metrics = metrics
        self.names = names
        self.root = root
        self.max_model_len = max_model_len
        self.api_keys = [f"Bearer {key}" for key in api_keys]
        self.version = version
        self.access_log = access_log
        self.quiet_paths = quiet_paths
        # "ok", "dead": this request's forward pass killed the engine, "abort": it paused it
        self.on_request = on_request
        self.sentinel = sentinel  # the engine's fault tolerance, when vLLM runs with it
        self.scheduler: Scheduler | None = None  # set once the engine is ready
        self.dead = threading.Event()  # the engine is dead: /health 503, requests 500
        self.hung = threading.Event()  # the server is wedged: connections accepted, never answered
        self.stalled = threading.Event()  # the engine is stuck: requests never finish
        self.never = threading.Event()  # what wedged and stuck requests wait on; never set
        self.created = int(time.time())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    sys_version = ""
    app: App

    def setup(self) -> None:
        super().setup()
        self.app = self.server.app  # type: ignore[attr-defined]

    def handle_one_request(self) -> None:
        if self.app.hung.is_set():
            self.app.never.wait()
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        return  # uvicorn's access log is written in _send

    def address_string(self) -> str:
        if isinstance(self.client_address, tuple) and len(self.client_address) >= 2:
            return f"{self.client_address[0]}:{self.client_address[1]}"
        return "unix:0"

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        body = self._body()
        if self.app.hung.is_set():
            self.app.never.wait()
        guarded = path.startswith(m.API_KEY_PREFIXES) and self.app.api_keys
        if guarded and self.headers.get("Authorization") not in self.app.api_keys:
            self._json(HTTPStatus.UNAUTHORIZED, m.UNAUTHORIZED_BODY)
            return
        routes: dict[tuple[str, str], Callable[[bytes], None]] = {
            ("GET", "/health"): self._health,
            ("GET", "/ping"): self._health,
            ("POST", "/ping"): self._health,
            ("GET", "/metrics"): self._metrics,
            ("GET", "/v1/models"): self._models,
            ("GET", "/version"): lambda _: self._json(HTTPStatus.OK, {"version": self.app.version}),
            ("GET", "/load"): lambda _: self._json(HTTPStatus.OK, {"server_load": self.app.metrics.running}),
            ("POST", "/v1/completions"): lambda b: self._complete(b, chat=False),
            ("POST", "/v1/chat/completions"): lambda b: self._complete(b, chat=True),
        }
        if self.app.sentinel is not None:  # the routes exist only with the flag on
            routes[("GET", m.FT_STATUS_PATH)] = lambda _: self._json(
                HTTPStatus.OK, self._sentinel().status_body()
            )
            routes[("POST", m.FT_APPLY_PATH)] = lambda b: self._json(
                *self._sentinel().apply(b, self.headers.get("Content-Type"))
            )
        handler = routes.get((method, path))
        if handler is not None:
            handler(body)
        elif any(known == path for _, known in routes):
            self._json(HTTPStatus.METHOD_NOT_ALLOWED, m.METHOD_NOT_ALLOWED_BODY)
        else:
            self._json(HTTPStatus.NOT_FOUND, m.NOT_FOUND_BODY)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: HTTPStatus, payload: bytes, content_type: str | None) -> None:
        try:
            self.send_response_only(status)
            self.send_header("date", self.date_time_string())
            self.send_header("server", "uvicorn")
            self.send_header("content-length", str(len(payload)))
            if content_type is not None:
                self.send_header("content-type", content_type)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            self.close_connection = True
        path = self.path.split("?", 1)[0]
        if self.app.access_log and path not in self.app.quiet_paths:
            line = m.ACCESS_LOG.format(
                client=self.address_string(),
                method=self.command,
                path=self.path,
                status=status.value,
                reason=status.phrase,
            )
            self.app.console.raw("out", line)

    def _json(self, status: HTTPStatus, body: object) -> None:
        self._send(status, json.dumps(body).encode(), "application/json")

    def _health(self, _: bytes) -> None:
        self._send(HTTPStatus.SERVICE_UNAVAILABLE if self.app.dead.is_set() else HTTPStatus.OK, b"", None)

    def _scheduler(self) -> Scheduler:
        assert self.app.scheduler is not None
        return self.app.scheduler

    def _sentinel(self) -> Sentinel:
        assert self.app.sentinel is not None
        return self.app.sentinel

    def _engine_serves(self) -> bool:
        """False once the engine is dead; a request sent to a paused engine waits for it."""
        sentinel = self.app.sentinel
        while sentinel is not None and not sentinel.resumed.wait(0.1):
            if self.app.dead.is_set():
                return False
        return not self.app.dead.is_set()

    def _metrics(self, _: bytes) -> None:
        text = self.app.metrics.render().encode()
        self._send(HTTPStatus.OK, text, "text/plain; version=0.0.4; charset=utf-8")

    def _models(self, _: bytes) -> None:
        app = self.app
        self._json(HTTPStatus.OK, bodies.model_list(app.names, app.root, app.max_model_len, app.created))

    def _complete(self, body: bytes, chat: bool) -> None:
        try:
            request = json.loads(body or b"{}")
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            self._json(HTTPStatus.BAD_REQUEST, bodies.error(400, "BadRequestError", m.BAD_JSON_MESSAGE, None))
            return
        model = str(request.get("model") or self.app.names[0])
        if model not in self.app.names:
            message = m.MODEL_NOT_FOUND_MESSAGE.format(model=model, served=", ".join(self.app.names))
            if chat:
                where = m.MODEL_NOT_FOUND_LOGGED[".".join(self.app.version.split(".")[:2])]
                self.app.console.log(
                    "APIServer", "ERROR", where, m.MODEL_NOT_FOUND_LOG.format(message=message)
                )
            self._json(HTTPStatus.NOT_FOUND, bodies.error(404, "NotFoundError", message, "model"))
            return
        prompt = bodies.prompt_of(request, chat)
        max_tokens = bodies.max_tokens_of(request)
        prompt_tokens = bodies.prompt_tokens(prompt)
        if not self._engine_serves():
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, m.ENGINE_DEAD_BODY)
            return
        action = self.app.on_request()
        if action == "dead":
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, m.ENGINE_DEAD_BODY)
            return
        if action == "abort":  # the engine paused and aborted the requests it had
            answer = bodies.completion(
                chat=chat, model=model, text="", prompt=prompt_tokens, completion=0,
                version=self.app.version, finish="abort",
            )  # fmt: skip
            self._json(HTTPStatus.OK, answer)
            return
        # batched with the others (scheduler.py); a stuck engine never finishes it (vllm#39863)
        done = self._scheduler().run(prompt, prompt_tokens, max_tokens)
        answer = bodies.completion(
            chat=chat,
            model=model,
            text=bodies.generate(prompt, done.generated),
            prompt=prompt_tokens,
            completion=done.generated,
            version=self.app.version,
        )
        self._json(HTTPStatus.OK, answer)


class TcpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # vLLM sets SO_REUSEADDR too (reference.md §1.10)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which is slow or hangs without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class TcpServer6(TcpServer):
    address_family = socket.AF_INET6


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def bind(host: str | None, port: int, uds: str | None) -> socketserver.BaseServer:
    """Bind (not yet listen); raises OSError(EADDRINUSE) when the address is taken."""
    server: socketserver.TCPServer
    if uds:
        _remove_stale_socket(uds)
        server = UnixServer(uds, Handler, bind_and_activate=False)
    else:
        address = host or "0.0.0.0"
        cls = TcpServer6 if ":" in address else TcpServer
        server = cls((address, port), Handler, bind_and_activate=False)
    try:
        server.server_bind()
    except OSError:
        server.server_close()
        raise
    return server


def _remove_stale_socket(path: str) -> None:
    """A socket file nobody listens on (left by a killed server) is removed; a live one is kept."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
    finally:
        probe.close()


def listen(server: socketserver.BaseServer, app: App) -> threading.Thread:
    """Start listening and serving (what uvicorn does right after `Application startup complete.`)."""
    server.app = app  # type: ignore[attr-defined]
    assert isinstance(server, socketserver.TCPServer)
    server.server_activate()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread


def close(server: socketserver.BaseServer, thread: threading.Thread | None) -> None:
    if thread is not None:
        server.shutdown()
        thread.join(5)
    with contextlib.suppress(OSError):
        server.server_close()
    if isinstance(server, UnixServer):
        with contextlib.suppress(OSError):
            os.unlink(str(server.server_address))
