"""vLLM's startup milestones, read from its output: what it is doing now, for the status line,
systemd's STATUS= and the guard's /status, and proof that a long start is still making progress.

The wording is vLLM's own (reference.md §6.2-6.3; the real-cpu captures): weights, the KV cache,
CUDA graphs, the API server. tqdm bars (checkpoint shards, graph capture, hub downloads) count as
progress too, at each redraw (output.py ends a record at tqdm's `\r` as well as at `\n`), without
being a milestone of their own. Matching runs over whole chunks of output, not line by line, and
only until vLLM is ready.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# One pattern per milestone, newest wording first; numbers are taken as printed. Each has the
# literal words it cannot match without, so a chunk is searched (at memchr speed) before any regex
# runs on it: a log flood must not cost the relay its throughput (bench/relay.py).
_MILESTONES: tuple[tuple[str, tuple[bytes, ...], re.Pattern[bytes]], ...] = tuple(
    (name, literals, re.compile(pattern))
    for name, literals, pattern in (
        (
            "loading",
            (b"Starting to load model", b"Loading model from scratch"),
            rb"Starting to load model (?P<model>\S+?)\.\.\.|Loading model from scratch\.\.\.",
        ),
        (
            "weights loaded",
            (b"Model loading took", b"Loading model weights took"),
            rb"Model loading took (?P<gib>[\d.]+) GiB(?: memory)? and (?P<s>[\d.]+) seconds"
            rb"|Loading model weights took (?P<gb>[\d.]+) GB",
        ),
        # torch.compile in the profiling run (compilation/backends.py, 0.8-0.33: "general shape",
        # "dynamic shape", "compile range"): compiled now (the cache was cold) or read from it
        (
            "compiling",
            (b"Compiling a graph for",),
            rb"Compiling a graph for (?:general shape|dynamic shape|compile range)",
        ),
        (
            "compiled graphs loaded",
            (b"Directly load the compiled graph",),
            rb"Directly load the compiled graph",
        ),
        ("kv memory", (b"Available KV cache memory",), rb"Available KV cache memory: (?P<gib>-?[\d.]+) GiB"),
        # the CPU build's worker (cpu_worker.py, 0.32): the node's total times the utilization,
        # less what the process holds (RSS) after warm-up; "Explicitly set" when the size was given
        (
            "kv memory",
            (b"GiB for KV cache on node",),
            rb"Auto set \((?P<gib>[\d.]+)/(?P<total>[\d.]+)\) GiB for KV cache on node (?P<node>\d+),"
            rb" with (?P<requested>[\d.]+) GiB requested memory for the worker\."
            rb" (?P<non_kv>[\d.]+) GiB memory was consumed by non-kv usages",
        ),
        # gpu_worker.py's account after the graphs (0.10.2-0.33): weights (0.32+: with non-torch
        # memory), the profiling peak, non-torch memory (until 0.31) and the graphs
        (
            "memory breakdown",
            (b"Actual usage is",),
            rb"Free memory on device \((?P<free>[\d.]+)/(?P<total>[\d.]+) GiB\) on startup\."
            rb" Desired GPU memory utilization is \((?P<util>[\d.]+), (?P<requested>[\d.]+) GiB\)\."
            rb" Actual usage is (?P<used>[\d.]+) GiB"
            rb" for (?:weight|consumed memory \(weights \+ non-torch\)),"
            rb" (?P<peak>[\d.]+) GiB for peak activation,"
            rb"(?: (?P<non_torch>[\d.]+) GiB for non-torch memory,)?"
            rb" and (?P<graphs>[\d.]+) GiB for CUDAGraph memory",
        ),
        (
            "kv cache",
            (b"KV cache size:",),
            rb"(?:GPU|CPU|XPU) KV cache size: (?P<tokens>[\d,]+) tokens"
            rb"(?:, Maximum concurrency for (?P<len>[\d,]+) tokens per request: (?P<x>[\d.]+)x)?",
        ),
        (
            "capturing graphs",
            (b"Capturing CUDA graph", b"Capturing cudagraphs"),
            rb"Capturing CUDA graphs? |Capturing cudagraphs for decoding",
        ),
        (
            "graphs captured",
            (b"Graph capturing finished",),
            rb"Graph capturing finished in (?P<s>[\d.]+) secs(?:, took (?P<gib>[\d.]+) GiB)?",
        ),
        (
            "engine ready",
            (b"init engine (profile",),
            rb"init engine \(profile, create kv cache, warmup model\) took (?P<s>[\d.]+) s",
        ),
        (
            "api server up",
            (b"Starting vLLM", b"Application startup complete"),
            rb"Starting vLLM (?:API )?server (?:\d+ )?on (?P<url>\S+)|Application startup complete\.",
        ),
    )
)
# A tqdm bar: "56% Completed | 5/9" (vLLM's shard loader), " 45%|####" (tqdm's default).
_BARS = (b"%|", b"% Completed |")


@dataclass(frozen=True, slots=True)
class Milestone:
    name: str
    text: str  # one short line for the status: what vLLM said, with its numbers
    numbers: dict[str, str] = field(default_factory=dict, compare=False)  # as printed, by group


def scan(chunk: bytes) -> tuple[list[Milestone], bool]:
    """The milestones in a chunk of output, in order, and whether it showed progress at all
    (a milestone or a progress bar)."""
    found: list[tuple[int, Milestone]] = []
    for name, literals, pattern in _MILESTONES:
        if any(literal in chunk for literal in literals):
            found.extend((m.start(), _milestone(name, m)) for m in pattern.finditer(chunk))
    found.sort(key=lambda pair: pair[0])
    progressed = bool(found) or any(bar in chunk for bar in _BARS)
    return [milestone for _, milestone in found], progressed


# The first lines of each start of vLLM (reference.md: the server's banner, in its three forms, and
# the engine's first line, V0's and V1's): a journal or a restarted container's log holds several
# starts, and what the last one reached is what `serve` would know of it.
# The banner is printed once a `vllm serve` (setup_server, log_version_and_model); the engine's
# line once an engine, which data parallelism or an offline script may start several of in one run.
SERVER_BANNER = re.compile(r"vLLM (?:API )?server version |[\u2580-\u259f]\s+version \d+\.\d")
RUN_START = re.compile(SERVER_BANNER.pattern + r"|Initializing an? (?:V1 )?LLM engine \(v")


def last_run(lines: list[str]) -> int:
    """Where the last start of vLLM in a log begins (0 when the log shows one start or none)."""
    return next(
        (len(lines) - 1 - back for back, line in enumerate(reversed(lines)) if RUN_START.search(line)), 0
    )


def last_server_start(lines: list[str]) -> int:
    """Where the last of several `vllm serve` starts in a log begins (a journal, a restarted
    container's log); 0 when the log shows one or none, because what a lone start printed before
    its banner (platform detection, an import's warning) is its own."""
    banners = [index for index, line in enumerate(lines) if SERVER_BANNER.search(line)]
    return banners[-1] if len(banners) > 1 else 0


def last(lines: list[str]) -> str | None:
    """The name of the last milestone the last start in a log shows: what `serve` knows when vLLM
    ends, for `diagnose`, which reads the same log from a file."""
    found, _ = scan("\n".join(lines[last_run(lines) :]).encode(errors="replace"))
    return found[-1].name if found else None


def _milestone(name: str, match: re.Match[bytes]) -> Milestone:
    groups = {k: v.decode(errors="replace") for k, v in match.groupdict().items() if v is not None}
    return Milestone(name, _describe(name, groups), groups)


def _describe(name: str, groups: dict[str, str]) -> str:
    if name == "weights loaded":
        if "gib" in groups:
            return f"weights loaded: {groups['gib']} GiB in {float(groups['s']):.0f} s"
        return f"weights loaded: {groups['gb']} GB"
    if name == "kv memory":
        return f"KV cache memory: {groups['gib']} GiB"
    if name == "kv cache":
        text = f"KV cache: {groups['tokens']} tokens"
        if "x" in groups:
            text += f", {groups['x']}x concurrency at {groups['len']} tokens"
        return text
    if name == "graphs captured":
        return "CUDA graphs captured" + (f" ({groups['gib']} GiB)" if "gib" in groups else "")
    if name == "engine ready":
        return f"engine initialised in {float(groups['s']):.0f} s"
    if name == "api server up":
        return f"API server starting on {groups['url']}" if "url" in groups else "API server up"
    if name == "memory breakdown":
        return f"memory: {groups['peak']} GiB peak activation, {groups['graphs']} GiB CUDA graphs"
    if name == "compiling":
        return "compiling the model's graphs (torch.compile; a cache for the next start)"
    if name == "compiled graphs loaded":
        return "compiled graphs loaded from the cache"
    if name == "loading":
        return "loading weights" + (f" of {groups['model']}" if "model" in groups else "")
    return name.replace("graphs", "CUDA graphs")
