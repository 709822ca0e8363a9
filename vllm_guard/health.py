"""vLLM's `/health`: where it answers (from its own flags) and whether it says 200."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from vllm_guard import vllm_args, vllm_config

if TYPE_CHECKING:
    import httpx

    from vllm_guard.fault_tolerance import EngineStatus
    from vllm_guard.vllm_metrics import Snapshot

VLLM_DEFAULT_PORT = "8000"


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str
    uds: str | None = None


def endpoint(given: Sequence[str] | vllm_args.EffectiveFlags) -> Endpoint:
    """Where vLLM serves, read from the flags it was given (its defaults: 0.0.0.0:8000, http),
    including those of its `--config FILE`."""
    flags = given if isinstance(given, vllm_args.EffectiveFlags) else vllm_config.flags(given)
    uds = flags.get("--uds")
    scheme = "https" if flags.get("--ssl-certfile") else "http"
    if uds:
        return Endpoint(f"{scheme}://localhost", uds)
    host = flags.get("--host") or "127.0.0.1"
    # A wildcard bind is reached over loopback.
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = flags.get("--port") or VLLM_DEFAULT_PORT
    return Endpoint(f"{scheme}://{host}:{port}", None)


def loopback(url: str) -> bool:
    """Whether `url` names this machine (localhost or a loopback address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    detail: str  # "200", "503", or why no answer came


class HealthProbe(Protocol):
    async def check(self) -> HealthResult: ...

    async def metrics(self) -> Snapshot | None:
        """vLLM's /metrics, read; None when it has none to give (or `--disable-log-stats`)."""
        ...

    async def engine_status(self) -> EngineStatus | None:
        """vLLM's fault-tolerance status of its engines; None when it has no such route."""
        ...

    async def retry(self, request_id: str) -> tuple[str, str | None]:
        """Ask vLLM's paused engines to retry: the id its status will name the request by
        (vLLM before 0.34 picks its own), and None when vLLM accepted, else why not."""
        ...

    async def aclose(self) -> None: ...


class HttpHealthProbe:
    def __init__(self, where: Endpoint, timeout_s: float, version: str | None = None) -> None:
        import httpx  # noqa: PLC0415 - imported once vLLM is already starting, not before

        from vllm_guard import fault_tolerance  # noqa: PLC0415

        self._errors: tuple[type[Exception], ...] = (httpx.HTTPError,)
        self._timeout_s = timeout_s
        self._ft_routes = fault_tolerance.routes(version)
        transport = httpx.AsyncHTTPTransport(uds=where.uds, verify=False) if where.uds else None
        # vLLM with TLS usually has a certificate for a public name, not for loopback.
        self._client: httpx.AsyncClient = httpx.AsyncClient(
            base_url=where.base_url,
            timeout=timeout_s,
            transport=transport,
            verify=False,
            trust_env=False,  # a proxy from the environment must not sit between us and loopback
        )

    async def check(self) -> HealthResult:
        try:
            response = await self._client.get("/health")
        except self._errors as exc:
            return HealthResult(False, type(exc).__name__)
        return HealthResult(response.status_code == 200, str(response.status_code))

    async def metrics(self) -> Snapshot | None:
        from vllm_guard import vllm_metrics  # noqa: PLC0415 - prometheus-client, once vLLM is ready

        return await vllm_metrics.scrape(self._client, self._timeout_s)

    async def engine_status(self) -> EngineStatus | None:
        from vllm_guard import fault_tolerance  # noqa: PLC0415

        for routes in self._ft_routes:
            try:
                response = await self._client.get(routes.status)
            except self._errors:
                return None
            if response.status_code == 404:
                continue  # not this version's route (or fault tolerance is off)
            self._ft_routes = (routes,)  # the one that answered, from now on
            try:
                return fault_tolerance.parse_status(response.json()) if response.status_code == 200 else None
            except ValueError:
                return None
        return None

    async def retry(self, request_id: str) -> tuple[str, str | None]:
        from vllm_guard import fault_tolerance  # noqa: PLC0415

        routes = self._ft_routes[0]
        try:
            # the route takes application/json only (vLLM's validate_json_request)
            response = await self._client.post(routes.apply, json=fault_tolerance.retry_body(request_id))
        except self._errors as exc:
            return request_id, type(exc).__name__
        if response.status_code != 202:
            return request_id, f"{routes.apply} answered {response.status_code}: {response.text[:300]}"
        try:
            named = response.json().get("request_id")
        except (ValueError, AttributeError):
            named = None
        return (named if isinstance(named, str) and named else request_id), None

    async def aclose(self) -> None:
        await self._client.aclose()


class Polls:
    """/health polls that start every `interval_s` whether or not the last one has answered (at
    most `most` in flight, the number of failures that mean hung): a vLLM that stops answering is
    then caught within interval x failures plus one request timeout, not failures x (interval +
    timeout). Answers are taken in the order the polls were started."""

    def __init__(self, probe: HealthProbe, interval_s: float, most: int) -> None:
        self._probe = probe
        self._interval = interval_s
        self._most = most
        self._loop = asyncio.get_running_loop()
        self._next = self._loop.time() + interval_s
        self._flying: collections.deque[asyncio.Future[HealthResult]] = collections.deque()

    def wait_s(self) -> float:
        return max(0.0, self._next - self._loop.time())

    def oldest(self) -> list[asyncio.Future[HealthResult]]:
        return list(self._flying)[:1]

    def tick(self) -> bool:
        """Start a poll when one is due; True when it was (the watch's other per-poll work)."""
        now = self._loop.time()
        if now < self._next:
            return False
        # the cadence holds; after a stall of the event loop, one poll, not a burst of them
        self._next = max(self._next + self._interval, now + self._interval / 2)
        if len(self._flying) < self._most:
            self._flying.append(asyncio.ensure_future(self._probe.check()))
        return True

    def answer(self) -> HealthResult | None:
        if self._flying and self._flying[0].done():
            return self._flying.popleft().result()
        return None

    async def aclose(self) -> None:
        for poll in self._flying:
            poll.cancel()
        await asyncio.gather(*self._flying, return_exceptions=True)
