"""vLLM's /metrics, read: the few numbers the guard watches, and the stall they can reveal.

A wedged engine can keep answering /health 200 while no request makes progress (vllm#39863); the
only outside sign is that requests are running or waiting while `vllm:generation_tokens_total`
stands still. `parse()` and `StallWatch` are pure (time is an argument); `scrape()` is the one
coroutine that talks HTTP, and imports httpx only when it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    import httpx

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
PREEMPTIONS = "vllm:num_preemptions_total"
# Renamed metrics, newest spelling first (reference.md: the old KV name is gone in 0.12.0, the old
# per-token latency by 0.16.0; 0.9.1-0.11.x emit both, and the new one wins).
KV_CACHE_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
INTER_TOKEN_LATENCY = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")

_WANTED = frozenset(
    {
        RUNNING,
        WAITING,
        GENERATION_TOKENS,
        PROMPT_TOKENS,
        PREEMPTIONS,
        *KV_CACHE_USAGE,
        *(f"{name}_sum" for name in INTER_TOKEN_LATENCY),
        *(f"{name}_count" for name in INTER_TOKEN_LATENCY),
    }
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One scrape, summed over label sets (`model_name`, `engine`); None where vLLM did not say."""

    running: float | None  # vllm:num_requests_running
    waiting: float | None  # vllm:num_requests_waiting
    generation_tokens: float | None  # vllm:generation_tokens_total
    prompt_tokens: float | None  # vllm:prompt_tokens_total
    kv_cache_usage: float | None  # either spelling, 0..1; the fullest engine's
    preemptions: float | None  # vllm:num_preemptions_total
    # The inter-token latency histogram's running sum and count (either spelling): two scrapes
    # give the mean gap over the time between them.
    itl_sum_s: float | None = None
    itl_count: float | None = None


def parse(text: str) -> Snapshot:
    """The Snapshot in a /metrics body; ValueError (a short reason) for a body that is not one.

    A body with samples but no `vllm:` ones (vLLM run with --disable-log-stats) parses to all None.
    """
    sums: dict[str, float] = {}
    peaks: dict[str, float] = {}
    seen = 0
    try:
        for family in text_string_to_metric_families(text):
            # Matched on each sample's full name: the parser strips `_total` from a counter family's
            # name (`vllm:generation_tokens`) but keeps it on the samples.
            for sample in family.samples:
                seen += 1
                if sample.name not in _WANTED or math.isnan(sample.value):
                    continue
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
                peaks[sample.name] = max(peaks.get(sample.name, -math.inf), sample.value)
    except (ValueError, IndexError, KeyError, TypeError) as error:
        raise ValueError(f"not Prometheus text: {_short(str(error))}") from None
    if not seen:
        raise ValueError("no samples in the body")
    itl = next((name for name in INTER_TOKEN_LATENCY if f"{name}_count" in sums), None)
    return Snapshot(
        running=sums.get(RUNNING),
        waiting=sums.get(WAITING),
        generation_tokens=sums.get(GENERATION_TOKENS),
        prompt_tokens=sums.get(PROMPT_TOKENS),
        # A fraction per engine: a sum over data-parallel engines could pass 1, the fullest one cannot.
        kv_cache_usage=next((peaks[name] for name in KV_CACHE_USAGE if name in peaks), None),
        preemptions=sums.get(PREEMPTIONS),
        itl_sum_s=sums.get(f"{itl}_sum") if itl else None,
        itl_count=sums.get(f"{itl}_count") if itl else None,
    )


def _short(reason: str, limit: int = 80) -> str:
    reason = " ".join(reason.split())
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


async def scrape(client: httpx.AsyncClient, timeout_s: float) -> Snapshot | None:
    """GET /metrics relative to the client's base_url; None when there is no usable answer."""
    import httpx  # noqa: PLC0415 - only the running supervisor scrapes; parse() users need no HTTP

    try:
        response = await client.get("/metrics", timeout=timeout_s)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return parse(response.text)
    except ValueError:
        return None
