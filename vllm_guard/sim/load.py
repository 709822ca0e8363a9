"""A bounded load generator for tests and benchmarks: a fixed number of completion requests, so
many at a time, to a vLLM (or the simulator) on this machine only.

    python -m vllm_guard.sim.load URL --requests 64 --concurrency 16 [--prompt-words N]
        [--max-tokens N] [--model NAME] [--repeat-prompt]

It refuses any host but loopback: it is a way to put a known load on a server under test, never
a tool to load someone else's. It prints one JSON line: requests sent, answered, failed, seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass

import httpx

from vllm_guard.health import loopback

MAX_REQUESTS = 10_000
MAX_CONCURRENCY = 256


@dataclass(frozen=True, slots=True)
class Outcome:
    sent: int
    answered: int
    failed: int
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "failed": self.failed,
            "seconds": round(self.seconds, 3),
        }


def run(
    url: str,
    *,
    requests: int,
    concurrency: int,
    prompt_words: int = 16,
    max_tokens: int = 16,
    model: str | None = None,
    repeat_prompt: bool = False,
    timeout_s: float = 120.0,
) -> Outcome:
    """Send `requests` completions, `concurrency` at a time; each prompt is its own unless
    `repeat_prompt` (then one prompt for all: prefix-cache hits)."""
    if not loopback(url):
        raise ValueError(f"{url} is not on this machine: the load generator only loads loopback servers")
    if not 0 < requests <= MAX_REQUESTS or not 0 < concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"requests must be 1..{MAX_REQUESTS} and concurrency 1..{MAX_CONCURRENCY}")
    base = url.rstrip("/")
    if model is None:
        with httpx.Client(trust_env=False, timeout=timeout_s) as client:
            model = str(client.get(f"{base}/v1/models").json()["data"][0]["id"])
    counts = {"next": 0, "answered": 0, "failed": 0}
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(trust_env=False, timeout=timeout_s) as client:
            while True:
                with lock:
                    number = counts["next"]
                    if number >= requests:
                        return
                    counts["next"] += 1
                words = (
                    ["hello"] * prompt_words
                    if repeat_prompt
                    else [f"w{number}x{i}" for i in range(prompt_words)]
                )
                body = {
                    "model": model,
                    "prompt": " ".join(words),
                    "max_tokens": max_tokens,
                    "ignore_eos": True,
                }
                try:
                    ok = client.post(f"{base}/v1/completions", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    counts["answered" if ok else "failed"] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Outcome(counts["next"], counts["answered"], counts["failed"], time.monotonic() - started)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vllm_guard.sim.load", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("url")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--prompt-words", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--model")
    parser.add_argument("--repeat-prompt", action="store_true")
    ns = parser.parse_args(argv)
    try:
        outcome = run(
            ns.url,
            requests=ns.requests,
            concurrency=ns.concurrency,
            prompt_words=ns.prompt_words,
            max_tokens=ns.max_tokens,
            model=ns.model,
            repeat_prompt=ns.repeat_prompt,
        )
    except (ValueError, httpx.HTTPError, KeyError) as exc:
        print(f"vllm_guard.sim.load: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(outcome.as_json()))
    return 0 if not outcome.failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
