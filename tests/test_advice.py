"""The advisor's conditions, each on both sides of its threshold, on vLLM-shaped metrics; the
fixes name the user's own flags and never advise what is already on."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from vllm_exposition import body

from vllm_guard import advice, flag_edits, vllm_args
from vllm_guard.advice import Finding, Serving, Situation, Thresholds, Tracker, advise
from vllm_guard.flag_edits import Change
from vllm_guard.metric_window import Window, parse, readings
from vllm_guard.vllm_args import EffectiveFlags

SERVING = Serving(
    version="0.32.0",
    max_num_seqs=256,
    max_num_batched_tokens=2048,
    max_model_len=8192,
    gpu_memory_utilization=0.92,
    prefix_caching=True,
    chunked_prefill=True,
)


def window(
    gauges: Sequence[Mapping[str, float]] = ({}, {}),
    counters: tuple[Mapping[str, float], Mapping[str, float]] = ({}, {}),
    histograms: tuple[Mapping[str, Sequence[float]], Mapping[str, Sequence[float]]] = ({}, {}),
    seconds: float = 60.0,
) -> Window:
    """Readings `seconds` apart in all: one per gauge set, the counters and histograms at the
    first and the last."""
    n = len(gauges)
    texts = []
    for i, g in enumerate(gauges):
        c = counters[0] if i == 0 else counters[1] if i == n - 1 else counters[0]
        h = histograms[0] if i == 0 else histograms[1] if i == n - 1 else histograms[0]
        texts.append((seconds * i / (n - 1), body(gauges=g, counters=c, histograms=h)))
    found = readings(texts).window(seconds, seconds)
    assert found is not None
    return found


def findings(short: Window, serving: Serving = SERVING, **kwargs: object) -> dict[str, Finding]:
    return {f.condition: f for f in advise(Situation(short, None, serving, **kwargs))}  # type: ignore[arg-type]


def queue(waiting: float, running: float, kv: float) -> Window:
    g = {
        "vllm:num_requests_waiting": waiting,
        "vllm:num_requests_running": running,
        "vllm:kv_cache_usage_perc": kv,
    }
    return window((g, g, g))


# -- requests_queueing ------------------------------------------------------------------------


def test_requests_queueing_holds_past_its_threshold_only() -> None:
    assert "requests_queueing" not in findings(queue(50, 256, 0.5))
    assert "requests_queueing" in findings(queue(51, 256, 0.5))


def test_queueing_with_a_full_kv_cache_asks_for_kv_room() -> None:
    found = findings(queue(80, 100, 0.99))["requests_queueing"]
    assert "KV cache is full" in found.cause
    assert "--gpu-memory-utilization (now 0.92)" in found.fix and "--max-model-len (now 8192)" in found.fix


def test_queueing_with_a_full_batch_and_kv_to_spare_asks_for_more_sequences() -> None:
    found = findings(queue(80, 256, 0.4))["requests_queueing"]
    assert "batch is full" in found.cause
    assert found.fix.startswith("raise --max-num-seqs (now 256)")


def test_queueing_with_neither_full_asks_for_replicas() -> None:
    found = findings(queue(80, 100, 0.4))["requests_queueing"]
    assert "replicas" in found.fix and found.numbers["waiting"] == 80


def test_doctor_without_the_flags_infers_a_full_batch_from_a_running_count_that_stands() -> None:
    found = findings(queue(80, 48, 0.4), Serving(version="0.32.0"))["requests_queueing"]
    assert "batch is full (48 running at most)" in found.cause
    assert found.fix.startswith("raise --max-num-seqs:")


def test_doctor_reads_a_batch_as_full_where_it_stood_full_but_for_one_reading() -> None:
    # --max-num-seqs 2 under a queue: one reading caught between a sequence's end and the next's
    # start says 1; the batch still stood full. A count that only touched its highest does not.
    def readings_of(running: Sequence[float]) -> Window:
        return window(
            tuple(
                {
                    "vllm:num_requests_waiting": 80,
                    "vllm:num_requests_running": r,
                    "vllm:kv_cache_usage_perc": 0.1,
                }
                for r in running
            )
        )

    turnover = findings(readings_of((2, 2, 1, 2)), Serving(version="0.32.0"))["requests_queueing"]
    assert turnover.fix.startswith("raise --max-num-seqs:")
    touched = findings(readings_of((1, 2, 1, 1)), Serving(version="0.32.0"))["requests_queueing"]
    assert "replicas" in touched.fix


# -- kv_cache_full ----------------------------------------------------------------------------


def test_kv_cache_full_holds_past_its_threshold_and_names_preemptions() -> None:
    assert "kv_cache_full" not in findings(queue(0, 10, 0.95))
    calm = findings(queue(0, 10, 0.96))["kv_cache_full"]
    assert "preempted" not in calm.evidence
    g = {"vllm:kv_cache_usage_perc": 0.99}
    pressed = findings(
        window((g, g), counters=({"vllm:num_preemptions_total": 3}, {"vllm:num_preemptions_total": 15}))
    )
    assert "12 requests were preempted" in pressed["kv_cache_full"].evidence
    assert pressed["kv_cache_full"].numbers["preemptions"] == 12


def test_the_old_kv_name_is_read_where_vllm_still_uses_it() -> None:
    g = {"vllm:gpu_cache_usage_perc": 0.99}
    assert "kv_cache_full" in findings(window((g, g)))


# -- slow_ttft --------------------------------------------------------------------------------

TTFT = "vllm:time_to_first_token_seconds"
QUEUE = "vllm:request_queue_time_seconds"


def ttft(slow: float, queued: float = 0.1, n: int = 40) -> Window:
    return window(
        histograms=(
            {TTFT: [], QUEUE: []},
            {TTFT: [0.2] * (n - 2) + [slow] * 2, QUEUE: [queued] * n},
        )
    )


def test_slow_ttft_holds_past_its_threshold_only() -> None:
    assert "slow_ttft" not in findings(ttft(4.0))
    assert "slow_ttft" in findings(ttft(9.0))


def test_too_few_requests_say_nothing_of_a_p99() -> None:
    assert "slow_ttft" not in findings(ttft(9.0, n=10))


def test_slow_ttft_from_queueing_asks_for_capacity() -> None:
    found = findings(ttft(9.0, queued=6.0))["slow_ttft"]
    assert "wait in the queue" in found.cause and found.numbers["queue_time_mean_s"] == pytest.approx(6.0)


def test_slow_ttft_without_chunked_prefill_asks_for_it_and_never_when_it_is_on() -> None:
    off = findings(ttft(9.0), Serving(version="0.32.0", chunked_prefill=False))["slow_ttft"]
    assert off.fix == "turn chunked prefill on (--enable-chunked-prefill)"
    on = findings(ttft(9.0))["slow_ttft"]
    assert "chunked" not in on.fix


def test_slow_ttft_with_a_large_prefill_budget_asks_for_a_smaller_one() -> None:
    big = Serving(version="0.32.0", max_num_batched_tokens=32768, chunked_prefill=True)
    assert "--max-num-batched-tokens (now 32768)" in findings(ttft(9.0), big)["slow_ttft"].fix


# -- slow_decode ------------------------------------------------------------------------------

ITL = "vllm:inter_token_latency_seconds"


def test_slow_decode_holds_past_its_threshold_only() -> None:
    fast = window(histograms=({ITL: []}, {ITL: [0.02] * 100}))
    slow = window(histograms=({ITL: []}, {ITL: [0.02] * 90 + [0.3] * 10}))
    assert "slow_decode" not in findings(fast)
    found = findings(slow)["slow_decode"]
    assert "--max-num-seqs (now 256)" in found.fix


def test_the_old_per_token_latency_name_counts_too() -> None:
    old = "vllm:time_per_output_token_seconds"
    text = [
        (0.0, "# TYPE vllm:time_per_output_token_seconds histogram\n"),
        (60.0, ""),
    ]
    bounds = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
    lines = [
        f'{old}_bucket{{engine="0",le="{b}",model_name="m"}} {90.0 if b < 0.3 else 100.0}' for b in bounds
    ]
    lines += [
        f'{old}_bucket{{engine="0",le="+Inf",model_name="m"}} 100.0',
        f'{old}_count{{engine="0",model_name="m"}} 100.0',
        f'{old}_sum{{engine="0",model_name="m"}} 5.0',
    ]
    text[1] = (60.0, text[0][1] + "\n".join(lines) + "\n")
    text[0] = (0.0, text[0][1] + f'{old}_count{{engine="0",model_name="m"}} 0.0\n')
    found = readings(text).window(60, 60)
    assert found is not None and "slow_decode" in findings(found)


# -- gpu_underutilized ------------------------------------------------------------------------


def test_an_idle_gpu_with_requests_waiting_is_underutilized_and_an_idle_server_is_not() -> None:
    assert "gpu_underutilized" in findings(queue(5, 4, 0.2), gpu_utilization=0.3)
    assert "gpu_underutilized" not in findings(queue(5, 4, 0.2), gpu_utilization=0.6)
    assert "gpu_underutilized" not in findings(queue(0, 0, 0.0), gpu_utilization=0.0)  # nothing to serve
    assert "gpu_underutilized" not in findings(queue(5, 4, 0.2))  # NVML not read


# -- prefill_heavy and low_prefix_cache_hits ---------------------------------------------------


def tokens(prompt: float, generated: float, **more: tuple[float, float]) -> Window:
    first = {"vllm:prompt_tokens_total": 0.0, "vllm:generation_tokens_total": 0.0}
    last = {"vllm:prompt_tokens_total": prompt, "vllm:generation_tokens_total": generated}
    for name, (a, b) in more.items():
        first[f"vllm:{name}_total"], last[f"vllm:{name}_total"] = a, b
    kv = {"vllm:kv_cache_usage_perc": 0.9}
    return window((kv, kv), counters=(first, last))


def test_prefill_heavy_holds_past_its_ratio_only() -> None:
    assert "prefill_heavy" not in findings(tokens(10_000, 1_000))
    assert "prefill_heavy" in findings(tokens(11_000, 1_000))


def test_prefill_heavy_with_prefix_caching_off_asks_for_it_and_never_when_it_is_on() -> None:
    off = findings(tokens(50_000, 1_000), Serving(version="0.32.0", prefix_caching=False))
    assert "--enable-prefix-caching" in off["prefill_heavy"].fix
    assert "low_prefix_cache_hits" in off
    on = findings(tokens(50_000, 1_000))
    assert "prefix caching on" not in on["prefill_heavy"].fix


def test_low_prefix_hits_with_a_full_cache_say_evictions_and_a_roomy_cache_says_nothing() -> None:
    low = tokens(1_000, 1_000, prefix_cache_queries=(0, 10_000), prefix_cache_hits=(0, 500))
    assert "low_prefix_cache_hits" in findings(low)
    good = tokens(1_000, 1_000, prefix_cache_queries=(0, 10_000), prefix_cache_hits=(0, 1_500))
    assert "low_prefix_cache_hits" not in findings(good)
    roomy_kv = {"vllm:kv_cache_usage_perc": 0.3}
    counters = (
        {"vllm:prefix_cache_queries_total": 0.0, "vllm:prefix_cache_hits_total": 0.0},
        {"vllm:prefix_cache_queries_total": 10_000.0, "vllm:prefix_cache_hits_total": 100.0},
    )
    assert "low_prefix_cache_hits" not in findings(window((roomy_kv, roomy_kv), counters=counters))


# -- spec_decode_low_acceptance ---------------------------------------------------------------


def test_low_acceptance_holds_below_its_threshold_only() -> None:
    low = tokens(1, 1, spec_decode_num_draft_tokens=(0, 1000), spec_decode_num_accepted_tokens=(0, 400))
    high = tokens(1, 1, spec_decode_num_draft_tokens=(0, 1000), spec_decode_num_accepted_tokens=(0, 600))
    found = findings(low, Serving(version="0.32.0", speculative_tokens=8))
    assert (
        "fewer num_speculative_tokens in --speculative-config (now 8; 3 to 5)"
        in found["spec_decode_low_acceptance"].fix
    )
    assert "spec_decode_low_acceptance" not in findings(high)


# -- thresholds, the idle server, the tracker -------------------------------------------------


def test_an_idle_server_has_no_finding() -> None:
    assert advise(Situation(queue(0, 0, 0.0), None, SERVING, gpu_utilization=0.0)) == []


def test_thresholds_move_the_line() -> None:
    assert "requests_queueing" in findings(queue(20, 10, 0.3), thresholds=Thresholds(requests_waiting=10))


def test_every_condition_has_a_threshold_in_words_and_reads_vllms_metrics() -> None:
    names = [c.name for c in advice.CONDITIONS]
    assert len(names) == len(set(names)) == 11
    for condition in advice.CONDITIONS:
        assert condition.reads and condition.advises
        if condition.source == "metrics":
            assert all(n.startswith("vllm:") for n in condition.reads)
            assert any(t in condition.threshold for t in Thresholds.names())
        else:
            assert condition.source == "log" and "log" in condition.threshold


def f(name: str) -> Finding:
    return Finding(name, "e", {}, "c", "x")


def test_the_tracker_says_a_start_once_and_a_clear_once() -> None:
    tracker = Tracker(hold=2, release=3)
    assert tracker.update([f("a")]) == ([], [])  # once is not yet a condition
    started, cleared = tracker.update([f("a")])
    assert [s.condition for s in started] == ["a"] and cleared == []
    for _ in range(5):
        assert tracker.update([f("a")]) == ([], [])  # holding: nothing new to say
    assert tracker.update([]) == ([], [])
    assert tracker.update([f("a")]) == ([], [])  # back before it cleared: no new start
    assert tracker.update([]) == ([], [])
    assert tracker.update([]) == ([], [])
    assert tracker.update([]) == ([], ["a"])
    assert "a" not in tracker.current


def test_what_vllms_own_metrics_say_of_its_flags() -> None:
    reading = parse(body(info={"enable_prefix_caching": "False", "gpu_memory_utilization": "0.8"}))
    serving = advice.serving_from_reading(reading, "0.32.0", 4096)
    assert serving.prefix_caching is False and serving.gpu_memory_utilization == 0.8
    assert serving.max_model_len == 4096 and serving.chunked_prefill is True
    assert advice.defaults_on("0.7.3") == {"chunked_prefill": False, "prefix_caching": False}


def test_docs_advice_md_is_written_from_the_conditions() -> None:
    script = Path(__file__).resolve().parent.parent / "scripts" / "make_advice_doc.py"
    spec = importlib.util.spec_from_file_location("make_advice_doc", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.DOC.read_text() == module.render(), "run scripts/make_advice_doc.py"
    for condition in advice.CONDITIONS:
        assert f"| `{condition.name}` |" in module.render()


# -- carrying a fix into a relaunch -----------------------------------------------------------


def test_the_fixes_that_are_one_edit_carry_it_and_the_json_shape_does_not() -> None:
    off = findings(ttft(9.0), Serving(version="0.32.0", chunked_prefill=False))["slow_ttft"]
    assert off.edit == Change("on", "--enable-chunked-prefill")
    assert set(off.as_json()) == {"condition", "evidence", "numbers", "cause", "fix"}
    big = findings(ttft(9.0), Serving(version="0.32.0", max_num_batched_tokens=32768, chunked_prefill=True))
    assert big["slow_ttft"].edit == Change("set", "--max-num-batched-tokens", "8192")
    caching = findings(tokens(50_000, 1_000), Serving(version="0.32.0", prefix_caching=False))
    assert caching["prefill_heavy"].edit == Change("on", "--enable-prefix-caching")
    assert findings(queue(80, 256, 0.4))["requests_queueing"].edit is None  # raising is no edit of ours


def test_fewer_draft_tokens_is_an_edit_of_the_speculative_config() -> None:
    low = tokens(1, 1, spec_decode_num_draft_tokens=(0, 1000), spec_decode_num_accepted_tokens=(0, 100))
    serving = Serving(
        version="0.32.0",
        speculative_tokens=8,
        speculative_config='{"method": "ngram", "num_speculative_tokens": 8}',
    )
    edit = findings(low, serving)["spec_decode_low_acceptance"].edit
    assert edit == Change("set", "--speculative-config", '{"method":"ngram","num_speculative_tokens":3}')


def test_carried_edits_go_through_the_one_door() -> None:
    off = findings(ttft(9.0), Serving(version="0.32.0", chunked_prefill=False))["slow_ttft"]
    user = ("--no-enable-chunked-prefill", "--max-model-len", "2048")
    args, said = advice.carried([off], user, flag_edits.Rules(user, version="0.32.0"))
    assert vllm_args.is_on(args, "--enable-chunked-prefill", "0.32.0")
    assert said == ["carrying the advice slow_ttft into the relaunch: +--enable-chunked-prefill"]
    pinned = flag_edits.Rules(user, pinned=frozenset({"--enable-chunked-prefill"}), version="0.32.0")
    args, said = advice.carried([off], user, pinned)
    assert args == user and said == ["not carrying the advice slow_ttft (+--enable-chunked-prefill: pinned)"]


def test_serving_from_the_users_flags_and_vllms_defaults() -> None:
    flags = EffectiveFlags(("--max-num-seqs", "64", "--no-enable-prefix-caching"), {}, "0.32.0")
    serving = advice.serving_from_flags(flags, (1024, 8192))
    assert (serving.max_num_seqs, serving.max_num_batched_tokens) == (64, 8192)
    assert serving.prefix_caching is False and serving.chunked_prefill is True
    assert serving.gpu_memory_utilization == 0.92 and serving.max_model_len is None
    none = advice.serving_from_flags(EffectiveFlags((), {}, "0.32.0"), None)
    assert none.max_num_seqs is None


# -- what vLLM's log says it refused (serve only) ---------------------------------------------


def refused(serving: Serving = SERVING, **counts: int) -> dict[str, Finding]:
    last = {
        "unknown_model": ("my-lora",),
        "lora_not_found": ("sql-lora", "/adapters/sql"),
        "mm_limit": ("1", "image"),
        "grammar_failed": ("cmpl-1-0",),
    }
    situation = Situation(queue(0, 0, 0.0), None, serving, refused=counts, refused_last=last)
    return {f.condition: f for f in advise(situation)}


def test_an_unknown_model_is_an_adapter_to_serve_or_a_name_to_correct() -> None:
    assert refused() == {}
    found = refused(unknown_model=3)["lora_adapter_not_found"]
    assert found.evidence.startswith("3 requests named the model `my-lora`")
    assert "--enable-lora --lora-modules my-lora=PATH" in found.fix
    with_lora = refused(Serving(version="0.32.0", lora=True), unknown_model=1)["lora_adapter_not_found"]
    assert with_lora.fix.startswith("add the adapter: --lora-modules my-lora=PATH")
    missing = refused(lora_not_found=1, unknown_model=1)["lora_adapter_not_found"]
    assert (
        "no adapter found at /adapters/sql" in missing.evidence
        and "--lora-modules sql-lora=PATH" in missing.fix
    )


def test_too_many_images_and_a_failing_grammar_backend() -> None:
    mm = refused(mm_limit=2)["mm_limit_exceeded"]
    assert "more than 1 image item(s)" in mm.evidence
    assert """--limit-mm-per-prompt '{"image": 2}'""" in mm.fix
    grammar = refused(grammar_failed=1)["structured_output_backend_error"]
    assert """--structured-outputs-config '{"backend": "guidance"}'""" in grammar.fix
    old = refused(Serving(version="0.10.0"), grammar_failed=1)["structured_output_backend_error"]
    assert "--guided-decoding-backend guidance" in old.fix
