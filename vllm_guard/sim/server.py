"""The simulated `vllm serve` process: its signals, serving, the injected faults, and its end.

Flags are parsed first (argparse errors exit 2 at once), then startup.py runs vLLM's startup; once
the engine is ready the API server logs its routes and uvicorn starts listening. SIGTERM/SIGINT
during startup end the process by that signal (as measured on 0.32 in the first seconds, real-cpu
f2b); once serving they run vLLM's shutdown (real-cpu f1) and exit 0. A dead engine ends the
server with status 1 (0 with the fault `exit0_on_death`, vllm#48966) after /health said 503.
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import sys
import threading
import time
from types import FrameType

from vllm_guard.sim import api, flags, frames, reports
from vllm_guard.sim import memory as mem
from vllm_guard.sim import messages as m
from vllm_guard.sim import scenario as sc
from vllm_guard.sim.console import Console
from vllm_guard.sim.engine import EngineProcess
from vllm_guard.sim.group import Rendezvous
from vllm_guard.sim.metrics import Metrics
from vllm_guard.sim.scheduler import Scheduler
from vllm_guard.sim.sentinel import Sentinel, recovery_timeout_s
from vllm_guard.sim.startup import Interrupted, Startup, served_names

DEATH_LINGER_S = 0.5  # /health answers 503 this long after engine death before the server exits
FLOOD_CHUNK = 256


def main(argv: list[str]) -> int:
    environ = dict(os.environ)
    try:
        scenario = sc.load(environ)
    except (sc.ScenarioError, OSError) as error:
        print(f"vllm_guard.sim: {error}", file=sys.stderr)
        return 2
    args = flags.parse(argv, scenario.version, environ)  # exits 2 with argparse's text on bad flags
    return Serve(scenario, args, environ).run()


class Serve:
    def __init__(self, scenario: sc.Scenario, args: flags.Parsed, environ: dict[str, str]) -> None:
        self.scenario = scenario
        self.faults = scenario.faults
        self.args = args
        self.environ = environ
        self.console = Console(sys.stdout, sys.stderr, os.getpid())
        self.wake = threading.Event()  # a stop signal arrived, or the engine died
        self.stop_signal: int | None = None
        self.dying = threading.Event()
        self.engine: EngineProcess | None = None
        self.server: socketserver.BaseServer | None = None
        self.thread: threading.Thread | None = None
        self.app: api.App | None = None
        self.sentinel: Sentinel | None = None
        self.requests = 0
        self.requests_lock = threading.Lock()
        self.spec: mem.EngineSpec | None = None
        self.ready: mem.Ready | None = None
        self.rendezvous: Rendezvous | None = None

    # -- signals ------------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM and self.faults.ignore_sigterm:
            return  # as real vLLM did during startup (real-cpu f2c, f2d)
        if self.app is not None and self.app.hung.is_set():
            return  # a wedged event loop never runs its signal handlers
        if self.stop_signal is None:
            self.stop_signal = signum
        self.wake.set()

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        startup = Startup(self.console, self.scenario, self.args, self.environ, self._stopped)
        try:
            try:
                started = startup.run()
            except Interrupted:
                self.engine, self.server = startup.engine, startup.server
                return self._die_by_signal()
            self.engine, self.server = startup.engine, startup.server
            self.rendezvous = startup.rendezvous
            if isinstance(started, int):
                return started
            self.spec, self.ready = started.spec, started.ready
            return self._serve_headless() if self.args.get("headless") else self._serve()
        finally:
            if self.rendezvous is not None:
                self.rendezvous.close()
            if self.server is not None:
                api.close(self.server, self.thread)
            if self.engine is not None:
                self.engine.stop()

    def _stopped(self, seconds: float = 0.0) -> bool:
        """Wait SECONDS of simulated work; True when a stop signal cut it short."""
        if seconds > 0:
            self.wake.wait(seconds)
        return self.stop_signal is not None

    def _die_by_signal(self) -> int:
        """Startup interrupted: the process ends by the signal's default action (real-cpu f2b)."""
        if self.engine is not None:
            self.engine.stop(0.2)
            self.engine = None
        signum = self.stop_signal or signal.SIGTERM
        sys.stdout.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return 128 + signum  # not reached

    # -- serving ------------------------------------------------------------------------------

    def _url(self) -> str:
        uds = self.args.get("uds")
        if uds:
            return f"unix://{uds}"
        host = self.args.get("host") or "0.0.0.0"
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.args.get('port')}"

    def _serve(self) -> int:
        c, a = self.console, self.args
        assert self.ready is not None and self.spec is not None and self.server is not None
        ready, spec = self.ready, self.spec
        c.info("APIServer", m.SUPPORTED_TASKS)
        c.info("APIServer", m.STARTING_SERVER, url=self._url())
        c.info("APIServer", m.ROUTES_HEADER)
        for path, methods in m.ROUTES_SHOWN:
            c.info("APIServer", m.ROUTE, path=path, methods=methods)
        cache_info = {
            "block_size": str(spec.block_size),
            "cache_dtype": spec.kv_cache_dtype,
            "enable_prefix_caching": str(a.get("enable_prefix_caching") is not False),
            "gpu_memory_utilization": str(spec.gpu_memory_utilization),
            "kv_cache_memory_bytes": str(spec.kv_cache_memory_bytes),
            "kv_cache_max_concurrency": str(round(ready.concurrency, 2)),
            "kv_cache_size_tokens": str(ready.kv_tokens),
            "num_cpu_blocks": "None",
            "num_gpu_blocks": str(ready.num_blocks),
            "num_gpu_blocks_override": "None",
        }
        names = served_names(a)
        drafts = _speculative_tokens(a.get("speculative_config"))
        metrics = Metrics(
            names[0],
            ready.kv_tokens,
            cache_info,
            enabled=not a.get("disable_log_stats"),
            max_model_len=ready.max_model_len,
            speculative=drafts > 0,
        )
        quiet = {
            p.strip() for p in str(a.get("disable_access_log_for_endpoints") or "").split(",") if p.strip()
        }
        sentinel = None
        if a.get("enable_fault_tolerance"):
            sentinel = Sentinel(
                self.console.emit,
                timeout_s=recovery_timeout_s(a.get("fault_tolerance_config")),
                retry_fails=self.faults.retry_fails,
            )
        self.sentinel = sentinel
        self.app = api.App(
            console=c,
            metrics=metrics,
            names=names,
            root=str(a.get("model")),
            max_model_len=ready.max_model_len,
            api_keys=list(a.get("api_key") or []),
            version=self.scenario.version,
            access_log=not a.get("disable_uvicorn_access_log"),
            quiet_paths=quiet,
            on_request=self._on_request,
            sentinel=sentinel,
        )
        self.app.scheduler = Scheduler(
            metrics,
            max_num_seqs=spec.max_num_seqs,
            max_num_batched_tokens=spec.max_num_batched_tokens,
            kv_tokens=ready.kv_tokens,
            chunked_prefill=a.get("enable_chunked_prefill") is not False,
            prefix_caching=a.get("enable_prefix_caching") is not False,
            speculative_tokens=drafts,
            acceptance=self.scenario.spec_acceptance,
            stalled=self.app.stalled,
        )
        c.raw("err", m.UVICORN_STARTED.format(pid=os.getpid()))
        c.raw("err", m.UVICORN_WAITING)
        c.raw("err", m.UVICORN_COMPLETE)
        self.thread = api.listen(self.server, self.app)
        return self._serving_loop()

    def _serve_headless(self) -> int:
        """A headless node: no API server, its worker runs the leader's steps until a stop
        signal, or until the leader's processes are gone (its next collective fails)."""
        rendezvous = self.rendezvous
        while self.stop_signal is None:
            if rendezvous is not None and rendezvous.lost.wait(0.1):
                self.console.emit(reports.runtime_death(m.PEER_CLOSED.format(peer=rendezvous.lost_peer)))
                return 1
            if rendezvous is None:
                self.wake.wait(0.1)
        for proc, level, where, text in m.SHUTDOWN_LINES:
            if proc == "EngineCore":
                self.console.log(proc, level, where, text.format(mode="abort", timeout=0, engine_pid=0))
        return 0

    def _on_request(self) -> str:
        """Called by each completion request: "ok", "dead" when its forward pass killed the
        engine, "abort" when it paused it (fault tolerance)."""
        f = self.faults
        with self.requests_lock:
            if self.dying.is_set():
                return "dead"
            self.requests += 1
            count = self.requests
        if self.rendezvous is not None and self.rendezvous.lost.is_set():
            # a peer's processes are gone: this forward pass's collective finds out
            self._die(m.PEER_CLOSED.format(peer=self.rendezvous.lost_peer))
            return "dead"
        oom = f.oom_after_requests is not None and count == f.oom_after_requests
        fault = f.engine_error_every is not None and count % f.engine_error_every == 0
        if not oom and not fault:
            return "ok"
        assert self.spec is not None and self.ready is not None
        error = (
            reports.torch_oom(mem.runtime_oom(self.spec, self.scenario.gpu, self.ready))
            if oom
            else m.CUDA_ILLEGAL_ADDRESS
        )
        if self.sentinel is not None:
            self.sentinel.pause(error)
            return "abort"
        self._die(error)
        return "dead"

    def _die(self, error: str, stack: tuple[frames.Frame, ...] = frames.RUNTIME_FORWARD) -> None:
        """The engine raised `error` while serving and dies; the server follows (_after_death)."""
        assert self.app is not None
        self.dying.set()
        self.console.emit(reports.runtime_death(error, stack))
        if self.engine is not None:
            self.engine.kill(force=True)
        self.app.dead.set()
        self.wake.set()

    def _serving_loop(self) -> int:
        assert self.app is not None
        app, f = self.app, self.faults
        ready_at = time.monotonic()
        timers: list[tuple[float, threading.Event]] = []
        if f.hang_after_s is not None:
            timers.append((ready_at + f.hang_after_s, app.hung))
        if f.stall_after_s is not None:
            timers.append((ready_at + f.stall_after_s, app.stalled))
        if f.flood_lines:
            threading.Thread(target=self._flood, daemon=True).start()
        if f.oom_after_requests == 0:
            assert self.spec is not None and self.ready is not None
            self._die(reports.torch_oom(mem.runtime_oom(self.spec, self.scenario.gpu, self.ready)))
        while True:
            now = time.monotonic()
            for at, event in timers:
                if at <= now:
                    event.set()
            pending = [at - now for at, event in timers if not event.is_set()]
            self.wake.wait(min([0.1, *pending]))
            self.wake.clear()
            if self.sentinel is not None and self.sentinel.expired():
                self.sentinel.give_up()  # vLLM raises the error that paused it, and dies of it
                self.dying.set()
                if self.engine is not None:
                    self.engine.kill(force=True)
                app.dead.set()
            if self.dying.is_set():
                return self._after_death()
            if self.stop_signal is not None:
                return self._shutdown()
            if self.engine is not None and not self.engine.alive():
                # someone killed the EngineCore: vLLM's engine monitor notices and shuts down
                self.console.log("APIServer", "WARNING", *m.ENGINE_EXITED_UNEXPECTEDLY)
                self.engine.kill(force=True)
                self.engine = None
                self.dying.set()
                app.dead.set()
                return self._after_death()

    def _after_death(self) -> int:
        time.sleep(DEATH_LINGER_S)  # vLLM's watchdog notices on its next tick; /health says 503 meanwhile
        self._uvicorn_shutdown()
        return 0 if self.faults.exit0_on_death else 1

    def _shutdown(self) -> int:
        """vLLM's clean stop on SIGTERM/SIGINT once serving (real-cpu f1), exit 0."""
        assert self.app is not None
        timeout = int(self.args.get("shutdown_timeout") or 0)
        mode = "drain" if timeout > 0 else "abort"
        engine_pid = self.engine.pid if self.engine is not None else 0
        orphan = self.faults.orphan_engine
        for proc, level, where, text in m.SHUTDOWN_LINES:
            if timeout > 0 and "force killing" in text:
                continue
            if proc == "EngineCore" and orphan:
                continue
            if text.startswith("[shutdown] MPClient: stopping engine manager") and timeout > 0:
                self._drain(timeout)
            self.console.log(
                proc, level, where, text.format(mode=mode, timeout=timeout, engine_pid=engine_pid)
            )
            if proc == "EngineCore" and text.endswith("exiting busy loop") and self.engine is not None:
                self.engine.stop(0.2)
        if self.engine is not None:
            self.engine.stop(0.2)
        self._uvicorn_shutdown()
        return 0

    def _drain(self, timeout: int) -> None:
        assert self.app is not None
        deadline = time.monotonic() + timeout
        while self.app.metrics.running > 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def _uvicorn_shutdown(self) -> None:
        if self.server is not None:
            api.close(self.server, self.thread)
            self.server = None
        for line in (m.UVICORN_SHUTTING_DOWN, m.UVICORN_WAITING_SHUTDOWN, m.UVICORN_SHUTDOWN_COMPLETE):
            self.console.raw("err", line)

    def _flood(self) -> None:
        """The fault `flood_lines`: N log lines of about B bytes each, as fast as stdout takes them."""
        c, f = self.console, self.faults
        head = c.header("APIServer", "INFO", "loggers.py:257")
        for start in range(0, f.flood_lines, FLOOD_CHUNK):
            lines = []
            for index in range(start, min(start + FLOOD_CHUNK, f.flood_lines)):
                text = f"{head}vllm_guard.sim flood line {index + 1}/{f.flood_lines} "
                lines.append(text + "x" * max(0, f.flood_line_bytes - len(text) - 1) + "\n")
            c.write_block("out", "".join(lines))


def _speculative_tokens(config: object) -> int:
    """num_speculative_tokens of --speculative-config (parsed JSON, or its text); 0 without one."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError:
            return 0
    value = config.get("num_speculative_tokens") if isinstance(config, dict) else None
    return value if isinstance(value, int) and value > 0 else 0
