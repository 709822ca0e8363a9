"""vLLM's /metrics, read: the few numbers the guard watches, and the stall they can reveal.

A wedged engine can keep answering /health 200 while no request makes progress (vllm#39863); the
only outside sign is that requests are running or waiting while `vllm:generation_tokens_total`
stands still. `parse()` and `StallWatch` are pure (time is an argument); `scrape()` is the one
coroutine that talks HTTP, and imports httpx only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vllm_guard import metric_window
from vllm_guard.metric_window import Reading

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
    reading: Reading | None = field(default=None, compare=False)  # the whole body, for the advisor


def parse(text: str) -> Snapshot:
    """The Snapshot in a /metrics body; ValueError (a short reason) for a body that is not one.

    A body with samples but no `vllm:` ones (vLLM run with --disable-log-stats) parses to all None.
    """
    reading = metric_window.parse(text)
    itl = next((name for name in INTER_TOKEN_LATENCY if reading.has(f"{name}_count")), None)
    return Snapshot(
        running=reading.total(RUNNING),
        waiting=reading.total(WAITING),
        generation_tokens=reading.total(GENERATION_TOKENS),
        prompt_tokens=reading.total(PROMPT_TOKENS),
        # A fraction per engine: a sum over data-parallel engines could pass 1, the fullest one cannot.
        kv_cache_usage=next((p for name in KV_CACHE_USAGE if (p := reading.peak(name)) is not None), None),
        preemptions=reading.total(PREEMPTIONS),
        itl_sum_s=reading.total(f"{itl}_sum") if itl else None,
        itl_count=reading.total(f"{itl}_count") if itl else None,
        reading=reading,
    )


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
