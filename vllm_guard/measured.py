"""What vLLM measured of its own memory at a start, and how a later preflight reuses it.

vLLM prints, before it is ready, the weights it loaded ("Model loading took X GiB"), the KV-cache
memory it found ("Available KV cache memory: X GiB"), the cache's size in tokens and the CUDA
graphs' memory. With the budget it was given (utilization x CUDA's total) these say what vLLM
kept for everything but the cache: the weights, the profiling run's peak, non-torch memory and the
graphs, measured. A later start of the same model on the same GPUs and vLLM reuses that figure:
with the same memory flags the cache is known outright; with another length, utilization, batch
or KV dtype only what changed is estimated.

Pure: milestones and flags in, figures out. The state directory keeps them (state.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

from vllm_guard import flag_edits, vllm_args, vllm_profile
from vllm_guard.milestones import Milestone

GiB = 1 << 30

# The flags that size the KV cache itself, or the profiling run's batch: what a near start may
# change while the measured rest still holds (preflight estimates their effect). Every other flag
# that bears on memory (flag_edits.NOT_MEMORY names those that do not) belongs to the start's base:
# a start with another value of any of them measured something else, so an unknown flag errs on
# the side of no reuse.
KV_FLAGS = frozenset(
    {
        "--max-model-len",
        "--gpu-memory-utilization",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--enable-chunked-prefill",
        "--performance-mode",
        "--kv-cache-dtype",
        "--block-size",
    }
)
# Environment variables that change what vLLM holds or how it sizes the cache.
MEMORY_ENV = (
    "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS",
    "VLLM_USE_V1",
    "VLLM_USE_V2_MODEL_RUNNER",
    "VLLM_ATTENTION_BACKEND",
    "VLLM_MXFP4_USE_MARLIN",
    "PYTORCH_CUDA_ALLOC_CONF",
    "PYTORCH_ALLOC_CONF",
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN",
    "VLLM_CPU_KVCACHE_SPACE",  # the CPU build's cache size in GiB, over --kv-cache-memory-bytes
)


@dataclass(frozen=True, slots=True)
class Start:
    """One start's measured figures (per GPU, as rank 0 printed them) and what it ran with."""

    model: str
    gpu: str
    gpus: int
    vllm_version: str | None
    flags: dict[str, str]  # memory_flags() of the start (absent: vLLM's default)
    total_bytes: int  # CUDA's total of the smallest GPU: what the utilization multiplied
    utilization: float
    weights_bytes: int | None
    available_kv_bytes: int
    kv_tokens: int | None
    graph_bytes: int | None
    cold: bool  # vLLM compiled its graphs at this start: a warm cache leaves a few % more
    at: str  # when, UTC, ISO 8601
    # from vLLM's account of its memory (0.10.2-0.33), where it printed one
    peak_activation_bytes: int | None = None
    non_torch_bytes: int | None = None

    @property
    def setup(self) -> Setup:
        return Setup(self.model, self.gpu, self.gpus, self.vllm_version)

    @property
    def non_kv_bytes(self) -> int:
        """What vLLM kept of its budget for everything but the KV cache."""
        return round(self.utilization * self.total_bytes) - self.available_kv_bytes

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Start:
        """A stored start; KeyError, TypeError or ValueError when it is not one."""
        names = {f.name for f in fields(cls)}
        needed = {f.name for f in fields(cls) if f.default is MISSING}
        if not needed <= set(data):
            raise KeyError(f"missing {sorted(needed - set(data))}")
        start = cls(**{name: data[name] for name in names if name in data})
        if not isinstance(start.flags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in start.flags.items()
        ):
            raise TypeError("flags is not an object of strings")
        for name in ("model", "gpu", "at"):
            if not isinstance(getattr(start, name), str):
                raise TypeError(f"{name} is not a string")
        if not isinstance(start.vllm_version, str | None) or not isinstance(start.cold, bool):
            raise TypeError("vllm_version is not a string or null, or cold not a boolean")
        for name in ("gpus", "total_bytes", "available_kv_bytes"):
            if not _whole(getattr(start, name)):
                raise TypeError(f"{name} is not a whole number")
        for name in ("weights_bytes", "kv_tokens", "graph_bytes", "peak_activation_bytes", "non_torch_bytes"):
            if getattr(start, name) is not None and not _whole(getattr(start, name)):
                raise TypeError(f"{name} is not a whole number or null")
        if start.gpus < 1 or start.total_bytes <= 0 or (start.kv_tokens is not None and start.kv_tokens <= 0):
            raise ValueError("gpus, total_bytes and kv_tokens must be positive")
        if not isinstance(start.utilization, int | float) or not 0 < start.utilization <= 1:
            raise ValueError(f"utilization {start.utilization!r} is not in (0, 1]")
        return start


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def memory_flags(
    args: Sequence[str], version: str | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The attempt's flags that bear on memory, by canonical name ("true"/"false" for a boolean,
    "" for a flag given without a value), and MEMORY_ENV's variables as "$NAME"."""
    out: dict[str, str] = {}
    for name, value in vllm_args.as_dict(flag_edits.memory_relevant(args, version), version).items():
        base = "--" + name[len("--no-") :]
        if name.startswith("--no-") and vllm_args.is_boolean(base, version):
            out[base] = "false"
        elif vllm_args.is_boolean(name, version):
            out[name] = (
                "true" if value is None else str(vllm_args.is_on([name, value], name, version)).lower()
            )
        else:
            out[name] = "" if value is None else value
    for variable in MEMORY_ENV:
        if environ and variable in environ:
            out["$" + variable] = environ[variable]
    return out


@dataclass(frozen=True, slots=True)
class Setup:
    """What a start ran on, besides its flags."""

    model: str
    gpu: str  # the GPU's name
    gpus: int
    vllm_version: str | None


def base_key(setup: Setup, flags: Mapping[str, str]) -> str:
    """What a start's non-KV figure belongs to: the model, the GPUs, vLLM, and every memory flag
    but KV_FLAGS."""
    base = {flag: value for flag, value in flags.items() if flag not in KV_FLAGS}
    blob = json.dumps([setup.model, setup.gpu, setup.gpus, setup.vllm_version, base], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def key(setup: Setup, flags: Mapping[str, str]) -> str:
    """The start itself: its base and KV_FLAGS too."""
    blob = json.dumps([base_key(setup, flags), dict(sorted(flags.items()))])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def from_milestones(
    reached: Sequence[Milestone],
    setup: Setup,
    flags: Mapping[str, str],
    *,
    total_bytes: int,
    at: str,
    utilization: float | None = None,
) -> Start | None:
    """The start's figures from the milestones it reached (each rank prints its own: the
    smallest cache and the largest weights and graphs count, as vLLM sizes every rank's cache to
    the smallest), or None when vLLM did not print its KV-cache memory (an old release) or was told
    the cache's size. `utilization`: what vLLM was given, else read from
    `flags` or vLLM's default for the release."""
    if any(flag in flags for flag in ("--kv-cache-memory-bytes", "--num-gpu-blocks-override")) or flags.get(
        "$VLLM_CPU_KVCACHE_SPACE", ""
    ):
        return None  # the cache was sized by hand: it says nothing of the budget
    if utilization is None:
        given = vllm_args.magnitude(flags.get("--gpu-memory-utilization", ""))
        utilization = given if given is not None else vllm_profile.default_utilization(setup.vllm_version)

    def numbers(name: str, group: str) -> list[float]:
        return [
            float(m.numbers[group].replace(",", "")) for m in reached if m.name == name and group in m.numbers
        ]

    kv_memory = numbers("kv memory", "gib")
    if not kv_memory:
        return None
    weights = [x * GiB for x in numbers("weights loaded", "gib")] + [
        x * GiB for x in numbers("weights loaded", "gb")
    ]
    tokens = numbers("kv cache", "tokens")
    # vLLM's own account names the utilization it used: a flag vLLM read another way (an
    # abbreviation argparse took, a default of another release) cannot mislead what is kept
    used = numbers("memory breakdown", "util")
    utilization = used[-1] if used else utilization
    # the account's graph figure is the estimate vLLM budgeted; the capture line what it took
    graphs = numbers("memory breakdown", "graphs") or numbers("graphs captured", "gib")
    peaks = numbers("memory breakdown", "peak")
    non_torch = numbers("memory breakdown", "non_torch")
    return Start(
        model=setup.model,
        gpu=setup.gpu,
        gpus=setup.gpus,
        vllm_version=setup.vllm_version,
        flags=dict(flags),
        total_bytes=total_bytes,
        utilization=utilization,
        weights_bytes=round(max(weights)) if weights else None,
        # printed to two decimals: the figure vLLM had may be up to 0.005 GiB smaller
        available_kv_bytes=max(0, round((min(kv_memory) - 0.005) * GiB)),
        kv_tokens=int(min(tokens)) if tokens else None,
        graph_bytes=round(max(graphs) * GiB) if graphs else None,
        cold=any(m.name == "compiling" for m in reached),
        at=at,
        peak_activation_bytes=round(max(peaks) * GiB) if peaks else None,
        non_torch_bytes=round(max(non_torch) * GiB) if non_torch else None,
    )


def choose(starts: Mapping[str, Start], setup: Setup, flags: Mapping[str, str]) -> Start | None:
    """The stored start a plan can use: the same start if there was one, else the newest of the
    same base (a warm one before a cold one). A plan that does not know vLLM's version (it could
    not be read from the package) takes a start of any version."""

    def seen_as(start: Start) -> Setup:
        return start.setup if setup.vllm_version is not None else replace(start.setup, vllm_version=None)

    same = [s for s in starts.values() if key(seen_as(s), s.flags) == key(setup, flags)]
    base = base_key(setup, flags)
    near = same or [s for s in starts.values() if base_key(seen_as(s), s.flags) == base]
    return max(near, key=lambda s: (not s.cold, s.at), default=None)


def other_flags(starts: Mapping[str, Start], setup: Setup, flags: Mapping[str, str]) -> str | None:
    """Where `choose` found nothing but a start of the same model on the same GPUs ran with
    other memory flags: how the newest of them differs, as `--flag value` changes; else None."""
    same = [s for s in starts.values() if (s.model, s.gpu, s.gpus) == (setup.model, setup.gpu, setup.gpus)]
    if not same:
        return None
    newest = max(same, key=lambda s: s.at)
    changed = sorted(set(newest.flags.items()) ^ set(flags.items()))
    names = sorted({flag for flag, _ in changed})
    if not names:  # the same flags on another version of vLLM
        return f"vLLM {newest.vllm_version or 'of another version'}"
    return ", ".join(f"{name} {newest.flags.get(name, '(default)')}" for name in names)


@dataclass(frozen=True, slots=True)
class Reuse:
    """How a stored start answers a new plan: the KV budget it gives, and how much of it was
    measured rather than estimated."""

    start: Start
    exact: bool  # the same memory flags: the KV cache is what vLLM found then
    kv_budget_bytes: int

    def said(self) -> str:
        how = "measured" if self.exact else "from the figures measured"
        cold = " on a cold compile cache (a warm one leaves a few % more)" if self.start.cold else ""
        return f"{how} at the start of {self.start.at}{cold}"


def reuse(
    start: Start, flags: Mapping[str, str], *, utilization: float, total_bytes: int, peak_change: int
) -> Reuse:
    """The KV budget for a start with `flags`, from a stored start of the same base: what vLLM
    kept besides the cache then (weights, peak, non-torch, graphs: measured) plus the change of
    the profiling run's peak (`peak_change`, estimated), taken from the new budget."""
    same = dict(flags) == start.flags and abs(utilization - start.utilization) < 1e-9
    if same and total_bytes == start.total_bytes:
        return Reuse(start, True, start.available_kv_bytes)
    budget = round(utilization * total_bytes) - start.non_kv_bytes - peak_change
    return Reuse(start, False, max(0, budget))
