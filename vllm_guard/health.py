"""vLLM's `/health`: where it answers (from its own flags) and whether it says 200."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from vllm_guard import vllm_args, vllm_config

if TYPE_CHECKING:
    import httpx

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


@dataclass(frozen=True, slots=True)
class HealthResult:
    ok: bool
    detail: str  # "200", "503", or why no answer came


class HealthProbe(Protocol):
    async def check(self) -> HealthResult: ...

    async def metrics(self) -> Snapshot | None:
        """vLLM's /metrics, read; None when it has none to give (or `--disable-log-stats`)."""
        ...

    async def aclose(self) -> None: ...


class HttpHealthProbe:
    def __init__(self, where: Endpoint, timeout_s: float) -> None:
        import httpx  # noqa: PLC0415 - imported once vLLM is already starting, not before

        self._errors: tuple[type[Exception], ...] = (httpx.HTTPError,)
        self._timeout_s = timeout_s
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

    async def aclose(self) -> None:
        await self._client.aclose()
