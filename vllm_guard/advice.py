"""The advisor: what a running vLLM's metrics say about how it serves, and which of the user's
flags to change. Pure: windows of vLLM's /metrics (metric_window.py), what is known of its
flags and vLLM's defaults, and the GPU's utilization in; findings out.

Each condition is data: its stable name, the metrics it reads (every spelling vLLM has used, the
newest first), its threshold (the policy's `advice:` section, defaults from the troubleshooting
guide this product grew from), and a judge. A fix never advises what is already on, and names the
flag's value now where it is known. docs/advice.md is written from CONDITIONS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields

from vllm_guard import flag_edits, vllm_args, vllm_flags
from vllm_guard.flag_edits import Change
from vllm_guard.metric_window import Reading, Window
from vllm_guard.vllm_args import EffectiveFlags
from vllm_guard.vllm_profile import default_utilization
from vllm_guard.vllm_version import at_least

# Metric names, newest spelling first (reference.md §5.3; docs/advice.md lists the versions).
WAITING = ("vllm:num_requests_waiting",)
RUNNING = ("vllm:num_requests_running",)
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PREEMPTIONS = ("vllm:num_preemptions_total",)
TTFT = ("vllm:time_to_first_token_seconds",)
QUEUE_TIME = ("vllm:request_queue_time_seconds",)
PROMPT_LENGTH = ("vllm:request_prompt_tokens",)
INTER_TOKEN = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
PROMPT_TOKENS = ("vllm:prompt_tokens_total",)
GENERATION_TOKENS = ("vllm:generation_tokens_total",)
PREFIX_QUERIES = ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total")
PREFIX_HITS = ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total")
DRAFT_TOKENS = ("vllm:spec_decode_num_draft_tokens_total",)
ACCEPTED_TOKENS = ("vllm:spec_decode_num_accepted_tokens_total",)
CACHE_CONFIG = "vllm:cache_config_info"
# The prefill budget a slow first token is advised down to: vLLM's own default where the GPU is
# large (vllm_profile.serve_batch_defaults), a step short enough to interleave decoding.
BATCHED_TOKENS_FOR_TTFT = 8192
# The windows the conditions judge: the last minute, and the last five.
SHORT_S = 60.0
LONG_S = 300.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When each condition holds; the policy's `advice:` section sets them (policy_file.py)."""

    requests_waiting: float = 50.0  # requests waiting, on average over the short window
    kv_cache_usage: float = 0.95  # the KV cache's used fraction
    ttft_p99_s: float = 5.0  # p99 time to first token
    tpot_p99_s: float = 0.1  # p99 time between two output tokens
    gpu_utilization: float = 0.5  # NVML's utilization, below which the GPU idles
    prefill_ratio: float = 10.0  # prompt tokens per generated token
    prefix_hit_rate: float = 0.1  # prefix-cache hits per query, below which caching helps little
    spec_acceptance: float = 0.5  # accepted per drafted token
    min_requests: float = 20.0  # requests a latency quantile needs in a window to say anything

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


@dataclass(frozen=True, slots=True)
class Serving:
    """What is known of how vLLM serves: from the user's flags and vLLM's defaults under the
    guard, from vLLM's own `cache_config_info` elsewhere; None where not known."""

    version: str | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    prefix_caching: bool | None = None
    chunked_prefill: bool | None = None
    speculative_tokens: int | None = None
    speculative_config: str | None = None  # --speculative-config as given, to edit its count
    lora: bool | None = None  # --enable-lora


@dataclass(frozen=True, slots=True)
class Finding:
    condition: str
    evidence: str  # what was seen, with its numbers
    numbers: dict[str, float]
    cause: str
    fix: str
    # the fix as one flag edit, where it is one and costs no quality (a policy with
    # `advice: {apply_on_relaunch: true}` carries it into the next relaunch, through flag_edits)
    edit: Change | None = None

    def as_json(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "edit"}


@dataclass(frozen=True, slots=True)
class Situation:
    """What the advisor judges: the last minute, the last five (None until there are five), how
    vLLM serves, and the GPUs' mean utilization (0..1) where NVML was read."""

    short: Window
    long: Window | None
    serving: Serving
    thresholds: Thresholds = field(default_factory=Thresholds)
    gpu_utilization: float | None = None
    # requests vLLM's log says it refused within the short window, by kind (request_log.py), and
    # the last of each: serve reads its output; doctor has none
    refused: Mapping[str, int] = field(default_factory=dict)
    refused_last: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def longest(self) -> Window:
        return self.long or self.short


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    reads: tuple[str, ...]  # the metrics it reads, each spelling (or the log lines, for "log")
    threshold: str  # when it holds, in words (docs/advice.md)
    judge: Callable[[Situation], Finding | None]
    advises: str = ""  # the fixes it chooses from, and when (docs/advice.md)
    source: str = "metrics"  # "log": vLLM's output while it serves (serve only, not doctor)


def advise(situation: Situation) -> list[Finding]:
    """Every condition that holds, in CONDITIONS' order."""
    return [finding for c in CONDITIONS if (finding := c.judge(situation)) is not None]


# -- reading the windows ----------------------------------------------------------------------


def _spelled(reading: Reading, names: Sequence[str]) -> str:
    """The spelling of a renamed metric this vLLM emits (the newest where it emits both)."""
    return next((n for n in names if reading.has(n) or reading.has(f"{n}_count")), names[0])


def _mean(window: Window, names: Sequence[str]) -> float | None:
    return window.mean(_spelled(window.last, names))


def _fraction(window: Window, names: Sequence[str]) -> float | None:
    return window.mean_peak(_spelled(window.last, names))


def _increase(window: Window, names: Sequence[str]) -> float | None:
    return window.increase(_spelled(window.last, names))


def _p99(situation: Situation, names: Sequence[str]) -> tuple[float | None, float]:
    """A latency's p99 over the short window, and how many requests it rests on; the long
    window's where the short one has too few."""
    for window in (situation.short, situation.long):
        if window is None:
            continue
        name = _spelled(window.last, names)
        count = window.observed(name)
        if count >= situation.thresholds.min_requests:
            return window.quantile(0.99, name), count
    return None, 0.0


def _n(value: float) -> str:
    """A number as the evidence says it: whole where it is, else three significant digits."""
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _now(value: object | None) -> str:
    return f" (now {value})" if value is not None else ""


# -- the conditions ---------------------------------------------------------------------------


def _requests_queueing(s: Situation) -> Finding | None:
    waiting = _mean(s.short, WAITING)
    if waiting is None or waiting <= s.thresholds.requests_waiting:
        return None
    running = _mean(s.short, RUNNING) or 0.0
    most_running = s.short.highest(_spelled(s.short.last, RUNNING)) or 0.0
    kv = _fraction(s.short, KV_USAGE)
    numbers = {"waiting": waiting, "running": running, "threshold": s.thresholds.requests_waiting}
    evidence = (
        f"{_n(waiting)} requests waiting on average over the last {s.short.seconds:.0f} s "
        f"(threshold {_n(s.thresholds.requests_waiting)}), {_n(running)} running"
    )
    if kv is not None:
        numbers["kv_cache_usage"] = kv
        evidence += f", KV cache {_pct(kv)} used"
    seqs = s.serving.max_num_seqs
    # without the flags (doctor), a running count that stood at its highest is the batch's limit:
    # at it for most of the readings (one caught as a sequence finished, before the next is
    # scheduled, reads one lower: the real doctor test, --max-num-seqs 2, met it on a busy machine)
    usual = s.short.median(_spelled(s.short.last, RUNNING)) or 0.0
    batch_full = (seqs is not None and most_running >= seqs) or (
        seqs is None and most_running > 0 and usual >= most_running
    )
    if kv is not None and kv >= s.thresholds.kv_cache_usage:
        cause = "the KV cache is full: requests wait for room in it, not for a free batch slot"
        fix = (
            f"give the KV cache more room: a higher --gpu-memory-utilization"
            f"{_now(s.serving.gpu_memory_utilization)} if the GPU has memory to spare, or a shorter "
            f"--max-model-len{_now(s.serving.max_model_len)}, or --kv-cache-dtype fp8"
        )
    elif batch_full and (kv is None or kv < s.thresholds.kv_cache_usage):
        cause = (
            f"the batch is full ({_n(most_running)} running at most) while the KV cache has room: "
            "the scheduler's sequence limit holds requests back"
        )
        fix = f"raise --max-num-seqs{_now(seqs)}: the KV cache can hold more sequences at once"
    else:
        cause = "more requests arrive than this vLLM finishes: it is at its throughput"
        fix = (
            "add replicas behind the load balancer (deploy/k8s/hpa.yaml scales on "
            "vllm:num_requests_waiting per pod)"
        )
    return Finding("requests_queueing", evidence, numbers, cause, fix)


def _kv_cache_full(s: Situation) -> Finding | None:
    kv = _fraction(s.short, KV_USAGE)
    if kv is None or kv <= s.thresholds.kv_cache_usage:
        return None
    preempted = _increase(s.short, PREEMPTIONS) or 0.0
    evidence = (
        f"the KV cache was {_pct(kv)} used on average over the last {s.short.seconds:.0f} s "
        f"(threshold {_pct(s.thresholds.kv_cache_usage)})"
    )
    if preempted:
        evidence += f", and {_n(preempted)} requests were preempted (recomputed) in that time"
    cause = (
        "requests are preempted for room and computed again: throughput is lost"
        if preempted
        else "the KV cache has no room left for more or longer requests"
    )
    fix = (
        f"a higher --gpu-memory-utilization{_now(s.serving.gpu_memory_utilization)} if the GPU has "
        f"memory to spare, a shorter --max-model-len{_now(s.serving.max_model_len)}, fewer "
        f"--max-num-seqs{_now(s.serving.max_num_seqs)}, or --kv-cache-dtype fp8"
    )
    return Finding(
        "kv_cache_full",
        evidence,
        {"kv_cache_usage": kv, "preemptions": preempted, "threshold": s.thresholds.kv_cache_usage},
        cause,
        fix,
    )


def _slow_ttft(s: Situation) -> Finding | None:
    ttft, count = _p99(s, TTFT)
    if ttft is None or ttft <= s.thresholds.ttft_p99_s:
        return None
    window = (
        s.short if s.short.observed(_spelled(s.short.last, TTFT)) >= s.thresholds.min_requests else s.longest
    )
    queue = window.average(_spelled(window.last, QUEUE_TIME))
    mean_ttft = window.average(_spelled(window.last, TTFT))
    prompt = window.quantile(0.99, _spelled(window.last, PROMPT_LENGTH))
    numbers = {"ttft_p99_s": ttft, "requests": count, "threshold_s": s.thresholds.ttft_p99_s}
    evidence = (
        f"p99 time to first token {ttft:.2f} s over {_n(count)} requests "
        f"(threshold {_n(s.thresholds.ttft_p99_s)} s)"
    )
    if queue is not None and mean_ttft:
        numbers["queue_time_mean_s"] = queue
        evidence += f"; {queue:.2f} s of the mean {mean_ttft:.2f} s was spent waiting in the queue"
    if prompt is not None:
        numbers["prompt_tokens_p99"] = prompt
    batched = s.serving.max_num_batched_tokens
    edit: Change | None = None
    if queue is not None and mean_ttft and queue >= mean_ttft / 2:
        cause = "requests wait in the queue before their prefill starts"
        fix = (
            f"more capacity: raise --max-num-seqs{_now(s.serving.max_num_seqs)} if the KV cache has "
            "room, else add replicas"
        )
    elif s.serving.chunked_prefill is False:
        cause = "long prompts are prefilled whole, holding the batch up, without chunked prefill"
        fix = "turn chunked prefill on (--enable-chunked-prefill)"
        edit = Change("on", "--enable-chunked-prefill")
    elif batched is not None and batched > BATCHED_TOKENS_FOR_TTFT:
        cause = f"each step prefills up to {batched} tokens: long steps delay the first token of others"
        fix = f"a lower --max-num-batched-tokens{_now(batched)}, such as {BATCHED_TOKENS_FOR_TTFT}"
        edit = Change("set", "--max-num-batched-tokens", str(BATCHED_TOKENS_FOR_TTFT))
    else:
        cause = "long prompts: the prefill itself takes this long"
        if prompt is not None:
            cause = f"long prompts (p99 {_n(prompt)} tokens): the prefill itself takes this long"
        fix = "shorter prompts, prefix caching for a shared prefix, or more GPUs (--tensor-parallel-size)"
    return Finding("slow_ttft", evidence, numbers, cause, fix, edit)


def _slow_decode(s: Situation) -> Finding | None:
    tpot, count = _p99(s, INTER_TOKEN)
    if tpot is None or tpot <= s.thresholds.tpot_p99_s:
        return None
    running = _mean(s.short, RUNNING) or 0.0
    evidence = (
        f"p99 time between output tokens {tpot * 1000:.0f} ms over {_n(count)} tokens "
        f"(threshold {s.thresholds.tpot_p99_s * 1000:.0f} ms), {_n(running)} requests running"
    )
    batched = s.serving.max_num_batched_tokens
    cause = "each decode step carries a large batch, or prefill chunks interleaved with it"
    fix = (
        f"fewer --max-num-seqs{_now(s.serving.max_num_seqs)} for faster tokens per request, a "
        f"lower --max-num-batched-tokens{_now(batched)} so prefill chunks interrupt decoding less, "
        "or more GPUs (--tensor-parallel-size)"
    )
    return Finding(
        "slow_decode",
        evidence,
        {"tpot_p99_s": tpot, "tokens": count, "running": running, "threshold_s": s.thresholds.tpot_p99_s},
        cause,
        fix,
    )


def _gpu_underutilized(s: Situation) -> Finding | None:
    util = s.gpu_utilization
    if util is None or util >= s.thresholds.gpu_utilization:
        return None
    waiting = _mean(s.short, WAITING) or 0.0
    running = _mean(s.short, RUNNING) or 0.0
    seqs = s.serving.max_num_seqs
    small = seqs is not None and running < seqs / 4
    if waiting <= 0 and not (small and running > 0):
        return None  # idle for want of requests: nothing to change
    evidence = (
        f"GPU utilization {_pct(util)} (threshold {_pct(s.thresholds.gpu_utilization)}) with "
        f"{_n(waiting)} requests waiting and {_n(running)} running"
    )
    cause = (
        "requests wait while the GPU idles: the scheduler's limits, not the GPU, hold them back"
        if waiting > 0
        else "the batch is small: each step leaves the GPU mostly idle"
    )
    fix = (
        f"a higher --max-num-seqs{_now(seqs)} and --max-num-batched-tokens"
        f"{_now(s.serving.max_num_batched_tokens)}, or more concurrent clients"
    )
    return Finding(
        "gpu_underutilized",
        evidence,
        {
            "gpu_utilization": util,
            "waiting": waiting,
            "running": running,
            "threshold": s.thresholds.gpu_utilization,
        },
        cause,
        fix,
    )


def _prefill_heavy(s: Situation) -> Finding | None:
    window = s.longest
    prompt = _increase(window, PROMPT_TOKENS)
    generated = _increase(window, GENERATION_TOKENS)
    if not prompt or not generated or prompt / generated <= s.thresholds.prefill_ratio:
        return None
    ratio = prompt / generated
    evidence = (
        f"{_n(prompt)} prompt tokens for {_n(generated)} generated over the last {window.seconds:.0f} s: "
        f"{ratio:.0f} to 1 (threshold {_n(s.thresholds.prefill_ratio)})"
    )
    edit: Change | None = None
    if s.serving.prefix_caching is False:
        fix = "turn prefix caching on (--enable-prefix-caching): prompts that share a prefix skip its prefill"
        edit = Change("on", "--enable-prefix-caching")
    else:
        fix = (
            f"a higher --max-num-batched-tokens{_now(s.serving.max_num_batched_tokens)} to prefill in "
            "fewer steps, or a prefill-specialised deployment (disaggregated prefill)"
        )
    return Finding(
        "prefill_heavy",
        evidence,
        {"prompt_tokens": prompt, "generation_tokens": generated, "ratio": ratio},
        "the work is mostly prefill: prompts are long against what is generated",
        fix,
        edit,
    )


def _low_prefix_cache_hits(s: Situation) -> Finding | None:
    window = s.longest
    if s.serving.prefix_caching is False:
        heavy = _prefill_heavy(s)
        if heavy is None:
            return None
        return Finding(
            "low_prefix_cache_hits",
            f"prefix caching is off, and the work is mostly prefill ({heavy.evidence})",
            heavy.numbers,
            "every prompt is prefilled from its first token, a shared prefix too",
            "turn prefix caching on (--enable-prefix-caching)",
            Change("on", "--enable-prefix-caching"),
        )
    queries = _increase(window, PREFIX_QUERIES)
    hits = _increase(window, PREFIX_HITS)
    if not queries or hits is None:
        return None
    rate = hits / queries
    kv = _fraction(window, KV_USAGE)
    if rate >= s.thresholds.prefix_hit_rate or kv is None or kv < s.thresholds.kv_cache_usage - 0.1:
        return None  # a low rate with room to spare is a workload without shared prefixes
    return Finding(
        "low_prefix_cache_hits",
        f"{_pct(rate)} of {_n(queries)} prompt tokens were prefix-cache hits over the last "
        f"{window.seconds:.0f} s (threshold {_pct(s.thresholds.prefix_hit_rate)}), with the KV cache "
        f"{_pct(kv)} used",
        {
            "hit_rate": rate,
            "queries": queries,
            "kv_cache_usage": kv,
            "threshold": s.thresholds.prefix_hit_rate,
        },
        "cached prefixes are evicted before they are used again: the KV cache is too full to keep them",
        "more room for the KV cache: a higher --gpu-memory-utilization"
        f"{_now(s.serving.gpu_memory_utilization)} or fewer --max-num-seqs{_now(s.serving.max_num_seqs)}",
    )


def _spec_decode_low_acceptance(s: Situation) -> Finding | None:
    window = s.longest
    drafted = _increase(window, DRAFT_TOKENS)
    accepted = _increase(window, ACCEPTED_TOKENS)
    if not drafted or accepted is None:
        return None
    rate = accepted / drafted
    if rate >= s.thresholds.spec_acceptance:
        return None
    k = s.serving.speculative_tokens
    fewer = "fewer num_speculative_tokens in --speculative-config" + (
        f" (now {k}; 3 to 5)" if k else " (3 to 5)"
    )
    edit = None
    if k and k > 1 and s.serving.speculative_config:
        config = json.loads(s.serving.speculative_config)
        config["num_speculative_tokens"] = 3 if k > 3 else k - 1
        edit = Change("set", "--speculative-config", json.dumps(config, separators=(",", ":")))
    return Finding(
        "spec_decode_low_acceptance",
        f"{_pct(rate)} of {_n(drafted)} drafted tokens were accepted over the last {window.seconds:.0f} s "
        f"(threshold {_pct(s.thresholds.spec_acceptance)})",
        {
            "acceptance": rate,
            "drafted": drafted,
            "accepted": accepted,
            "threshold": s.thresholds.spec_acceptance,
        },
        "most drafted tokens are rejected: drafting costs more than it saves",
        f"{fewer}, or a draft model of the same family as the served one",
        edit,
    )


def _refused_model(s: Situation) -> Finding | None:
    missing, unknown = s.refused.get("lora_not_found", 0), s.refused.get("unknown_model", 0)
    if missing:
        name, path = (s.refused_last.get("lora_not_found") or ("?", "?"))[:2]
        return Finding(
            "lora_adapter_not_found",
            f"vLLM could not load the LoRA adapter {name}: no adapter found at {path} "
            f"({_n(missing)} times in the last {s.short.seconds:.0f} s)",
            {"failures": missing},
            "the adapter's path holds no adapter (adapter_config.json and its weights)",
            f"point --lora-modules {name}=PATH at the adapter's folder",
        )
    if not unknown:
        return None
    name = (s.refused_last.get("unknown_model") or ("?",))[0]
    evidence = (
        f"{_n(unknown)} requests named the model `{name}`, which this vLLM does not serve, in the last "
        f"{s.short.seconds:.0f} s"
    )
    if s.serving.lora is True:
        fix = f"add the adapter: --lora-modules {name}=PATH (or correct the clients' model name: /v1/models)"
    else:
        fix = (
            f"if `{name}` is a LoRA adapter, serve it: --enable-lora --lora-modules {name}=PATH; else "
            "correct the clients' model name (/v1/models lists the served ones)"
        )
    cause = "clients ask for a name that is neither the served model nor a loaded LoRA adapter"
    return Finding("lora_adapter_not_found", evidence, {"requests": unknown}, cause, fix)


def _mm_limit_exceeded(s: Situation) -> Finding | None:
    count = s.refused.get("mm_limit", 0)
    if not count:
        return None
    limit, modality = (s.refused_last.get("mm_limit") or ("1", "image"))[:2]
    more = int(limit) * 2 if limit.isdigit() else 2
    return Finding(
        "mm_limit_exceeded",
        f"{_n(count)} prompts had more than {limit} {modality} item(s) in the last {s.short.seconds:.0f} s, "
        "and were refused",
        {"requests": count, "limit": float(limit) if limit.isdigit() else 0.0},
        f"--limit-mm-per-prompt allows {limit} {modality} item(s) a prompt",
        f"--limit-mm-per-prompt '{{\"{modality}\": {more}}}' if the model takes that many (the limit "
        "sizes the memory vLLM sets aside for them at startup)",
    )


def _structured_output_error(s: Situation) -> Finding | None:
    count = s.refused.get("grammar_failed", 0)
    if not count:
        return None
    last = " ".join(s.refused_last.get("grammar_failed") or ())
    if vllm_flags.exists("--structured-outputs-config", s.serving.version):
        switch = '--structured-outputs-config \'{"backend": "guidance"}\' (or xgrammar, outlines)'
    else:
        switch = "--guided-decoding-backend guidance (or xgrammar, outlines)"
    return Finding(
        "structured_output_backend_error",
        f"vLLM's structured-output backend failed {_n(count)} times in the last {s.short.seconds:.0f} s"
        + (f" (last: {last[:120]})" if last else ""),
        {"failures": count},
        "the backend cannot compile or follow these requests' schemas or grammars",
        f"another backend: {switch}",
    )


CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "requests_queueing",
        (*WAITING, *RUNNING, *KV_USAGE),
        "the mean of vllm:num_requests_waiting over the last minute > requests_waiting (50)",
        _requests_queueing,
        advises=(
            "a full KV cache: a higher --gpu-memory-utilization, a shorter --max-model-len or --kv-"
            "cache-dtype fp8; a full batch with KV room: a higher --max-num-seqs; neither: more "
            "replicas (deploy/k8s/hpa.yaml)"
        ),
    ),
    Condition(
        "kv_cache_full",
        (*KV_USAGE, *PREEMPTIONS),
        "the KV cache's mean usage over the last minute > kv_cache_usage (0.95); preemptions in it say more",
        _kv_cache_full,
        advises=(
            "a higher --gpu-memory-utilization, a shorter --max-model-len, fewer --max-num-seqs, or "
            "--kv-cache-dtype fp8"
        ),
    ),
    Condition(
        "slow_ttft",
        (*TTFT, *QUEUE_TIME, *PROMPT_LENGTH),
        "p99 time to first token > ttft_p99_s (5 s), over at least min_requests (20) requests",
        _slow_ttft,
        advises=(
            "time spent queueing: a higher --max-num-seqs or replicas; chunked prefill off: --enable-"
            "chunked-prefill; --max-num-batched-tokens above 8192: a lower one; else: shorter prompts, "
            "prefix caching, more GPUs"
        ),
    ),
    Condition(
        "slow_decode",
        (*INTER_TOKEN, *RUNNING),
        "p99 time between output tokens > tpot_p99_s (0.1 s), over at least min_requests (20) tokens",
        _slow_decode,
        advises=(
            "fewer --max-num-seqs, a lower --max-num-batched-tokens, or more GPUs (--tensor-parallel-size)"
        ),
    ),
    Condition(
        "gpu_underutilized",
        (*WAITING, *RUNNING),
        "NVML's GPU utilization < gpu_utilization (0.5) while requests wait or the batch is under a "
        "quarter of --max-num-seqs",
        _gpu_underutilized,
        advises="a higher --max-num-seqs and --max-num-batched-tokens, or more concurrent clients",
    ),
    Condition(
        "prefill_heavy",
        (*PROMPT_TOKENS, *GENERATION_TOKENS),
        "prompt tokens per generated token over the last five minutes > prefill_ratio (10)",
        _prefill_heavy,
        advises=(
            "prefix caching off: --enable-prefix-caching; else a higher --max-num-batched-tokens, or "
            "disaggregated prefill"
        ),
    ),
    Condition(
        "low_prefix_cache_hits",
        (*PREFIX_QUERIES, *PREFIX_HITS, *KV_USAGE),
        "prefix caching off while prefill_heavy holds; or hits per query < prefix_hit_rate (0.1) with "
        "the KV cache within 10 points of kv_cache_usage",
        _low_prefix_cache_hits,
        advises=(
            "caching off: --enable-prefix-caching; evictions: a higher --gpu-memory-utilization or "
            "fewer --max-num-seqs"
        ),
    ),
    Condition(
        "spec_decode_low_acceptance",
        (*DRAFT_TOKENS, *ACCEPTED_TOKENS),
        "accepted per drafted token over the last five minutes < spec_acceptance (0.5)",
        _spec_decode_low_acceptance,
        advises=(
            "fewer num_speculative_tokens in --speculative-config (3 to 5), or a draft model of the "
            "served model's family"
        ),
    ),
    Condition(
        "lora_adapter_not_found",
        (
            "Error with model ... The model `X` does not exist.",
            "Loading lora X failed: No adapter found for P",
        ),
        "vLLM's log shows a request for a model it does not serve, or an adapter it could not load",
        _refused_model,
        advises=(
            "an unknown name: --enable-lora --lora-modules NAME=PATH if it is an adapter, else the "
            "clients' model name; an adapter that did not load: its --lora-modules path"
        ),
        source="log",
    ),
    Condition(
        "mm_limit_exceeded",
        ("At most N MODALITY(s) may be provided in one prompt",),
        "vLLM's log shows prompts refused for more multimodal items than --limit-mm-per-prompt (logged "
        "by vLLM 0.8-0.22 only; later ones answer the client alone)",
        _mm_limit_exceeded,
        advises="a higher --limit-mm-per-prompt where the model takes that many items",
        source="log",
    ),
    Condition(
        "structured_output_backend_error",
        ("Failed to compile grammar for request", "Failed to advance FSM for request", "LLMatcher error"),
        "vLLM's log shows its structured-output backend failing on requests",
        _structured_output_error,
        advises="another backend: --structured-outputs-config's (--guided-decoding-backend before 0.12)",
        source="log",
    ),
)


# -- what is known of the flags ---------------------------------------------------------------


def defaults_on(version: str | None) -> dict[str, bool]:
    """Features vLLM turns on unless told otherwise: chunked prefill and prefix caching are on
    by default on the V1 engine (`vllm serve`'s from 0.8.0), off on V0 before it."""
    v1 = version is None or at_least(version, (0, 8))
    return {"chunked_prefill": v1, "prefix_caching": v1}


def serving_from_flags(flags: EffectiveFlags, batch: tuple[int, int] | None) -> Serving:
    """How vLLM serves, from the flags the guard launched it with and vLLM's defaults for those
    not given; `batch`: its (max_num_seqs, max_num_batched_tokens) defaults on this GPU
    (vllm_profile.serve_batch_defaults), None where the GPU is not known."""
    version = flags.version
    on = defaults_on(version)

    def count(flag: str, default: int | None) -> int | None:
        value = vllm_args.number(flags.seen, flag)
        return int(value) if value is not None else default

    def toggle(flag: str, default: bool) -> bool:
        given = flags.has(flag) or flags.has("--no-" + vllm_args.canonical(flag, version)[2:])
        return flags.is_on(flag) if given else default

    utilization = vllm_args.number(flags.seen, "--gpu-memory-utilization")
    tokens = _speculative_tokens(flags.get("--speculative-config"))
    return Serving(
        version=version,
        max_num_seqs=count("--max-num-seqs", batch[0] if batch else None),
        max_num_batched_tokens=count("--max-num-batched-tokens", batch[1] if batch else None),
        max_model_len=count("--max-model-len", None),
        gpu_memory_utilization=utilization if utilization is not None else default_utilization(version),
        prefix_caching=toggle("--enable-prefix-caching", on["prefix_caching"]),
        chunked_prefill=toggle("--enable-chunked-prefill", on["chunked_prefill"]),
        speculative_tokens=tokens,
        speculative_config=flags.get("--speculative-config") if tokens else None,
        lora=flags.is_on("--enable-lora"),
    )


def _speculative_tokens(config: str | None) -> int | None:
    """num_speculative_tokens of a --speculative-config JSON, where it says."""
    if not config:
        return None
    try:
        value = json.loads(config).get("num_speculative_tokens")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def serving_from_reading(reading: Reading, version: str | None, max_model_len: int | None) -> Serving:
    """What vLLM's own metrics say of its flags (for `doctor`, which does not know them):
    cache_config_info's labels, and the model's length from /v1/models."""
    sets = reading.info.get(CACHE_CONFIG, ())
    labels: Mapping[str, str] = sets[0] if sets else {}
    caching = labels.get("enable_prefix_caching")
    util = labels.get("gpu_memory_utilization")
    try:
        utilization = float(util) if util else None
    except ValueError:
        utilization = None
    return Serving(
        version=version,
        max_model_len=max_model_len,
        gpu_memory_utilization=utilization,
        prefix_caching=None if caching is None else caching == "True",
        chunked_prefill=defaults_on(version)["chunked_prefill"] if version else None,
    )


def carried(
    findings: Sequence[Finding], args: tuple[str, ...], rules: flag_edits.Rules
) -> tuple[tuple[str, ...], list[str]]:
    """The flags of a relaunch with the findings' edits made, each through the one door
    (flag_edits.apply: pins, the user's bounds, each flag's safe direction); and what was said of
    each: carried, or refused and why."""
    said = []
    for finding in findings:
        if finding.edit is None:
            continue
        result = flag_edits.apply(args, finding.edit, rules)
        if isinstance(result, flag_edits.Refused):
            if result.reason != "nothing would change":
                said.append(f"not carrying the advice {finding.condition} ({result})")
            continue
        args = result
        said.append(f"carrying the advice {finding.condition} into the relaunch: {finding.edit.text}")
    return args, said


class Tracker:
    """Says when a condition starts and when it clears, not at every evaluation: a condition
    starts after holding `hold` evaluations in a row, and clears after `release` without it."""

    def __init__(self, hold: int = 2, release: int = 3) -> None:
        self._hold, self._release = hold, release
        self._seen: dict[str, int] = {}
        self._missed: dict[str, int] = {}
        self.current: dict[str, Finding] = {}

    def update(self, findings: Sequence[Finding]) -> tuple[list[Finding], list[str]]:
        """(the findings that started now, the conditions that cleared now)."""
        now = {f.condition: f for f in findings}
        started: list[Finding] = []
        cleared: list[str] = []
        for name, finding in now.items():
            self._missed.pop(name, None)
            self._seen[name] = self._seen.get(name, 0) + 1
            if name in self.current:
                self.current[name] = finding  # its numbers move on; no new line
            elif self._seen[name] >= self._hold:
                self.current[name] = finding
                started.append(finding)
        for name in [n for n in self._seen if n not in now]:
            self._seen.pop(name)
            if name not in self.current:
                continue
            self._missed[name] = self._missed.get(name, 0) + 1
            if self._missed[name] >= self._release:
                self._missed.pop(name)
                del self.current[name]
                cleared.append(name)
            else:
                self._seen[name] = 0  # still current: counted from nothing if it comes back
        return started, cleared
