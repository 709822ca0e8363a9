"""The simulator under load (its scheduler, driven by the bounded load generator): requests queue
past --max-num-seqs, first tokens wait for them, a small KV cache preempts, repeated prompts hit
the prefix cache, speculative decoding drafts and accepts; and the advisor reads it all."""

from __future__ import annotations

import signal
import threading

import pytest

from vllm_guard import advice
from vllm_guard.health import loopback
from vllm_guard.metric_window import History, parse
from vllm_guard.sim import load

from .procs import Launcher, Sim, get
from .test_process import SMALL

pytestmark = pytest.mark.timeout(90)


def metrics(server: Sim) -> str:
    return get(server.url + "/metrics")[1].decode()


def loaded(server: Sim, **kwargs: object) -> tuple[load.Outcome, list[tuple[float, str]]]:
    """Run the load generator against `server` while reading its /metrics every 0.05 s."""
    bodies: list[tuple[float, str]] = []
    done = threading.Event()

    def read() -> None:
        t = 0.0
        while not done.is_set():
            bodies.append((t, metrics(server)))
            done.wait(0.05)
            t += 0.05

    reader = threading.Thread(target=read)
    reader.start()
    try:
        outcome = load.run(server.url, model=SMALL, **kwargs)  # type: ignore[arg-type]
    finally:
        done.set()
        reader.join()
    bodies.append((bodies[-1][0] + 0.05, metrics(server)))
    return outcome, bodies


def stop(server: Sim) -> None:
    server.signal(signal.SIGTERM)
    assert server.wait(15) == 0


def test_requests_past_max_num_seqs_wait_and_the_advisor_says_which_flag(sim: Launcher) -> None:
    server = sim(SMALL, "--max-num-seqs", "2")
    server.wait_healthy()
    outcome, bodies = loaded(server, requests=32, concurrency=16, max_tokens=32)
    assert (outcome.answered, outcome.failed) == (32, 0)
    history = History(keep_s=600)
    for at, text in bodies:
        history.add(at, parse(text))
    window = history.window(bodies[-1][0], bodies[-1][0])
    assert window is not None
    # 16 at a time, 2 running: at most 14 wait. How many a 0.05 s reading catches depends on how
    # fast the client's threads send again, and CI's busy machine once caught no more than 10.
    waiting = window.highest("vllm:num_requests_waiting")
    assert waiting is not None and 3 < waiting <= 14
    assert window.highest("vllm:num_requests_running") == 2
    assert window.observed("vllm:request_queue_time_seconds") == 32
    # the first token waits for the queue: most of its time was spent waiting
    queued = window.average("vllm:request_queue_time_seconds")
    ttft = window.average("vllm:time_to_first_token_seconds")
    assert queued is not None and ttft is not None and queued > ttft / 2
    situation = advice.Situation(
        window,
        None,
        advice.Serving(version="0.33.0", max_num_seqs=2),
        advice.Thresholds(requests_waiting=3),
    )
    found = {f.condition: f for f in advice.advise(situation)}
    assert found["requests_queueing"].fix.startswith("raise --max-num-seqs (now 2)")
    stop(server)


def test_a_small_kv_cache_fills_and_preempts(sim: Launcher) -> None:
    # room for about 300 tokens: eight requests of 16 + 64 tokens do not all fit
    server = sim(SMALL, "--kv-cache-memory-bytes", "3600000", "--max-model-len", "256")
    server.wait_healthy()
    outcome, bodies = loaded(server, requests=16, concurrency=8, prompt_words=15, max_tokens=64)
    assert outcome.answered == 16
    last = parse(bodies[-1][1])
    assert (last.total("vllm:num_preemptions_total") or 0) > 0
    assert max(parse(text).peak("vllm:kv_cache_usage_perc") or 0 for _, text in bodies) > 0.9
    stop(server)


def test_repeated_prompts_hit_the_prefix_cache_unless_it_is_off(sim: Launcher) -> None:
    server = sim(SMALL)
    server.wait_healthy()
    load.run(server.url, model=SMALL, requests=8, concurrency=1, repeat_prompt=True)
    text = parse(metrics(server))
    assert text.total("vllm:prefix_cache_hits_total") == 7 * 17  # all but the first, 16 words and BOS
    assert text.total("vllm:prefix_cache_queries_total") == 8 * 17
    stop(server)
    off = sim(SMALL, "--no-enable-prefix-caching")
    off.wait_healthy()
    load.run(off.url, model=SMALL, requests=4, concurrency=1, repeat_prompt=True)
    assert parse(metrics(off)).total("vllm:prefix_cache_hits_total") == 0
    stop(off)


def test_speculative_decoding_drafts_and_accepts(sim: Launcher) -> None:
    server = sim(
        SMALL,
        "--speculative-config",
        '{"method": "ngram", "num_speculative_tokens": 4}',
        VLLM_GUARD_SIM_SPEC_ACCEPTANCE="0.25",
    )
    server.wait_healthy()
    load.run(server.url, model=SMALL, requests=8, concurrency=4, max_tokens=64)
    text = parse(metrics(server))
    drafted = text.total("vllm:spec_decode_num_draft_tokens_total") or 0
    accepted = text.total("vllm:spec_decode_num_accepted_tokens_total") or 0
    assert drafted > 0 and 0.1 < accepted / drafted < 0.4
    stop(server)


def test_the_load_generator_loads_loopback_only() -> None:
    with pytest.raises(ValueError, match="only loads loopback servers"):
        load.run("http://10.1.2.3:8000", requests=1, concurrency=1, model="m")
    with pytest.raises(ValueError, match="requests must be"):
        load.run("http://127.0.0.1:9", requests=0, concurrency=1, model="m")
    assert (
        loopback("http://localhost:8000") and loopback("http://[::1]:8000") and not loopback("http://a.b:1")
    )
