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

from vllm_guard import vllm_args
from vllm_guard.milestones import Milestone

GiB = 1 << 30

# The flags that decide what vLLM keeps besides the KV cache: the weights (and how they are split
# and quantized), the CUDA graphs, the profiling run's model. A start with other values of these
# measured other things.
BASE_FLAGS = (
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--data-parallel-size",
    "--dtype",
    "--quantization",
    "--load-format",
    "--enforce-eager",
    "--optimization-level",
    "--compilation-config",
    "--cpu-offload-gb",
    "--speculative-config",
    "--enable-lora",
    "--max-loras",
    "--max-lora-rank",
    "--limit-mm-per-prompt",
    "--hf-overrides",
    "--revision",
)
# The flags that size the KV cache itself, or the profiling run's batch: what a near start may
# change while the measured figure still holds (their effect is estimated).
KV_FLAGS = (
    "--max-model-len",
    "--gpu-memory-utilization",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--kv-cache-dtype",
    "--block-size",
    "--kv-cache-memory-bytes",
    "--num-gpu-blocks-override",
)


@dataclass(frozen=True, slots=True)
class Start:
    """One start's measured figures (per GPU, as rank 0 printed them) and what it ran with."""

    model: str
    gpu: str
    gpus: int
    vllm_version: str | None
    flags: dict[str, str]  # BASE_FLAGS and KV_FLAGS as given (absent: vLLM's default)
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
        for name in ("gpus", "total_bytes", "available_kv_bytes"):
            if not isinstance(getattr(start, name), int) or isinstance(getattr(start, name), bool):
                raise TypeError(f"{name} is not a whole number")
        if not isinstance(start.utilization, int | float) or not 0 < start.utilization <= 1:
            raise ValueError(f"utilization {start.utilization!r} is not in (0, 1]")
        return start


def memory_flags(args: Sequence[str], version: str | None) -> dict[str, str]:
    """BASE_FLAGS and KV_FLAGS as the attempt gives them, in canonical spelling; a boolean as
    "true"/"false"."""
    out: dict[str, str] = {}
    for flag in (*BASE_FLAGS, *KV_FLAGS):
        boolean = vllm_args.is_boolean(flag, version)
        if boolean:
            if vllm_args.has(args, flag, version):
                out[flag] = "true" if vllm_args.is_on(args, flag, version) else "false"
            continue
        value = vllm_args.get(args, flag, version=version)
        if value is not None:
            out[flag] = value
    return out


@dataclass(frozen=True, slots=True)
class Setup:
    """What a start ran on, besides its flags."""

    model: str
    gpu: str  # the GPU's name
    gpus: int
    vllm_version: str | None


def base_key(setup: Setup, flags: Mapping[str, str]) -> str:
    """What a start's non-KV figure belongs to: the model, the GPUs, vLLM, and BASE_FLAGS."""
    base = {flag: flags[flag] for flag in BASE_FLAGS if flag in flags}
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
    utilization: float,
    at: str,
) -> Start | None:
    """The start's figures from the milestones it reached (each rank prints its own: the
    smallest cache and the largest weights and graphs count, as vLLM sizes every rank's cache to
    the smallest), or None when vLLM did not print its KV-cache memory (a CPU build, an old
    release) or was told the cache's size."""
    if "--kv-cache-memory-bytes" in flags or "--num-gpu-blocks-override" in flags:
        return None  # the cache was sized by hand: it says nothing of the budget

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
        available_kv_bytes=max(0, round(min(kv_memory) * GiB)),
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
