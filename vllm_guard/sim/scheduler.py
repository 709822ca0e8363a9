"""The simulated engine's continuous batching, so that its metrics answer load as vLLM's do.

At most `--max-num-seqs` requests run at once; the rest wait (vllm:num_requests_waiting). Each step
prefills prompt tokens within `--max-num-batched-tokens` (a prompt whole in one step when chunked
prefill is off) and decodes one token for every request past its prefill, so the time to first
token grows with queueing and, without chunked prefill, with the prompts of others. The KV cache
holds what the running requests have prefilled and generated; when it runs out the newest request
is preempted and computed again (vllm:num_preemptions_total). With `--speculative-config` each
decode step drafts `num_speculative_tokens` and accepts each with VLLM_GUARD_SIM_SPEC_ACCEPTANCE
(0.7). The step costs are the simulator's own, chosen to be fast (milliseconds), not measured.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from vllm_guard.sim.metrics import Metrics

STEP_S = 0.002  # one step's fixed cost
PER_SEQUENCE_S = 0.0002  # and what each decoding sequence adds to it
PREFILL_TOKENS_PER_S = 100_000.0


@dataclass
class Request:
    prompt_tokens: int
    max_tokens: int
    arrived: float
    cached_tokens: int = 0  # its prefix found in the cache
    prefilled: int = 0
    generated: int = 0
    admitted: float | None = None
    first_token_at: float | None = None
    last_token_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def kv_tokens(self) -> int:
        return self.prefilled + self.generated


class Scheduler:
    def __init__(
        self,
        metrics: Metrics,
        *,
        max_num_seqs: int,
        max_num_batched_tokens: int,
        kv_tokens: int,
        chunked_prefill: bool,
        prefix_caching: bool,
        speculative_tokens: int = 0,
        acceptance: float = 0.7,
        stalled: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._max_seqs = max(1, max_num_seqs)
        self._budget = max(1, max_num_batched_tokens)
        self._kv_tokens = max(1, kv_tokens)
        self._chunked = chunked_prefill
        self._prefix_caching = prefix_caching
        self._spec = speculative_tokens
        self._acceptance = acceptance
        self._stalled = stalled or threading.Event()
        self._clock = clock
        self._random = random.Random(0)
        self._lock = threading.Condition()
        self._waiting: collections.deque[Request] = collections.deque()
        self._running: list[Request] = []
        self._seen_prompts: set[str] = set()
        threading.Thread(target=self._loop, name="sim-scheduler", daemon=True).start()

    def run(self, prompt: str, prompt_tokens: int, max_tokens: int) -> Request:
        """Queue a request and wait until it is finished (never, while the engine is stalled)."""
        request = Request(prompt_tokens, max(1, max_tokens), self._clock())
        if self._prefix_caching:
            # a prompt seen before finds its full blocks cached (whole prompts stand for prefixes here)
            request.cached_tokens = prompt_tokens if prompt in self._seen_prompts else 0
            self._seen_prompts.add(prompt)
        with self._lock:
            self._waiting.append(request)
            self._publish()
            self._lock.notify()
        request.done.wait()
        return request

    def _publish(self) -> None:
        self._metrics.set_load(
            running=len(self._running),
            waiting=len(self._waiting),
            kv_in_use=sum(r.kv_tokens for r in self._running),
        )

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._running:
                    self._lock.wait(0.05)
                if self._stalled.is_set():
                    # a wedged engine: requests are taken in, and never move on (vllm#39863)
                    self._admit()
                    self._publish()
                    self._lock.wait(0.05)
                    continue
                cost, decoded = self._step()
            time.sleep(cost)
            with self._lock:
                self._tokens_out(decoded)
                self._publish()

    def _admit(self) -> None:
        now = self._clock()
        in_use = sum(r.kv_tokens for r in self._running)
        while self._waiting and len(self._running) < self._max_seqs:
            head = self._waiting[0]
            if in_use + head.prompt_tokens > self._kv_tokens and self._running:
                break  # no room for its prompt yet
            self._waiting.popleft()
            head.admitted = now
            self._metrics.queued(now - head.arrived)
            self._metrics.prefix(head.prompt_tokens, head.cached_tokens)
            head.prefilled = head.cached_tokens
            self._running.append(head)
            in_use += head.prompt_tokens

    def _step(self) -> tuple[float, list[Request]]:
        """Admit, prefill, decode; the step's cost, and the requests that decode a token."""
        self._admit()
        budget, prefill, decoding = self._budget, 0, []
        for request in self._running:
            left = request.prompt_tokens - request.prefilled
            if left > 0:
                chunk = min(left, budget) if self._chunked else (left if budget > 0 else 0)
                request.prefilled += chunk
                budget -= chunk
                prefill += chunk
            if request.prefilled >= request.prompt_tokens:
                decoding.append(request)
        self._make_room()
        cost = STEP_S + PER_SEQUENCE_S * len(decoding) + prefill / PREFILL_TOKENS_PER_S
        return cost, [r for r in decoding if r in self._running]

    def _make_room(self) -> None:
        """Preempt the newest running requests while the cache cannot hold the next tokens."""
        while len(self._running) > 1 and sum(r.kv_tokens + 1 for r in self._running) > self._kv_tokens:
            victim = self._running.pop()
            victim.prefilled, victim.generated = 0, 0  # computed again from its prompt
            self._waiting.appendleft(victim)
            self._metrics.preempted()

    def _tokens_out(self, decoded: list[Request]) -> None:
        now = self._clock()
        for request in decoded:
            tokens = 1
            if self._spec:
                accepted = sum(1 for _ in range(self._spec) if self._random.random() < self._acceptance)
                self._metrics.drafted(self._spec, accepted)
                tokens += accepted
            tokens = min(tokens, request.max_tokens - request.generated)
            request.generated += tokens
            if request.first_token_at is None:
                request.first_token_at = now
                self._metrics.first_token(now - request.arrived)
            else:
                gap = now - (request.last_token_at or now)
                for _ in range(tokens):
                    self._metrics.token_gap(gap / tokens)
            request.last_token_at = now
            if request.generated >= request.max_tokens:
                self._running.remove(request)
                self._metrics.finished(request.prompt_tokens, request.generated, now - request.arrived)
                request.done.set()
