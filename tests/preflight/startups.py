"""The corpus of real vLLM startups in startups.json, its split, and how preflight fares on it.

Each record is one start of `vllm serve` from a public thread or page: the model's published
config.json, the GPU, the parallel sizes, the vLLM version and flags, and the numbers vLLM printed
(the weights it loaded, the KV cache memory it found, the KV cache size in tokens). Preflight
plans the same start for that card (`--gpu NAME --gpus N`) and its figures are compared with
vLLM's. The corpus is split once, by a hash of the thread, into a development part and a held-out
third that the estimate is never tuned on (tests/diagnosis/corpus.py splits the same way).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpus_split import held_out

from vllm_guard import memory, vllm_args
from vllm_guard.gpu import cards
from vllm_guard.preflight import Allowed, Machine, ModelFacts, check

CORPUS = Path(__file__).resolve().parent / "startups.json"
__all__ = ["CORPUS", "Compared", "Figures", "compare", "figures", "held_out", "load"]
GIB = 1 << 30


def load() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(CORPUS.read_text(encoding="utf-8"))
    return records


@dataclass(frozen=True, slots=True)
class Compared:
    """Preflight's figures for one start beside vLLM's (None where vLLM printed none)."""

    record: dict[str, Any]
    weights_error: float | None  # (estimated - printed) / printed, per GPU
    kv_tokens_error: float | None  # positive: preflight expects more KV cache than vLLM found
    chosen_len: int | None  # the --max-model-len preflight would start the model's full length with
    optimistic: bool  # preflight would start a length vLLM's KV cache cannot hold

    @property
    def engine(self) -> str:
        return str(self.record.get("engine", "v1"))


def _plan(record: dict[str, Any], args: list[str], mode: str) -> Any:
    tp, pp = int(record.get("tp", 1)), int(record.get("pp", 1))
    argv = [*args, "--tensor-parallel-size", str(tp), "--pipeline-parallel-size", str(pp)]
    machine = Machine(cards.planned(record["gpu"], tp * pp), token=True)
    model = ModelFacts(record["model"], record["config"], cached=True)
    return check(model, argv, machine, allowed=Allowed(mode=mode), vllm_version=record["vllm_version"])  # type: ignore[arg-type]


def compare(record: dict[str, Any]) -> Compared:
    printed: dict[str, Any] = record["printed"]
    args = list(record.get("args", []))
    tp, pp = int(record.get("tp", 1)), int(record.get("pp", 1))
    # the start as it ran, figures only: nothing adjusted
    verdict = _plan(record, args, "warn")
    assert verdict.estimate is not None, record["source"]
    # what preflight says one GPU holds (its weights finding), else the estimate's even split
    weights = next(
        (int(f.numbers["weights_per_gpu_bytes"]) for f in verdict.findings if f.check == "weights"),
        memory.weights_per_gpu(verdict.estimate, tp, pp),
    )
    weights_error = None
    if printed.get("weights_gib"):
        weights_error = weights / (float(printed["weights_gib"]) * GIB) - 1
    kv: dict[str, int | float | str] = next(
        (f.numbers for f in verdict.findings if f.check == "kv_cache"), {}
    )
    tokens = printed.get("kv_tokens")
    kv_error = None
    if tokens and "kv_budget_bytes" in kv:
        capacity = kv.get("kv_capacity_tokens")
        if capacity is None:  # a preflight older than the capacity figure (bench/RESULTS.md's "before")
            per_token, block = int(kv["kv_bytes_per_token"]), 16
            capacity = int(kv["kv_budget_bytes"]) // (per_token * block) * block
        kv_error = int(capacity) / int(tokens) - 1
    # The model's full length, as a user who gives no --max-model-len would start it: a length
    # preflight starts past vLLM's KV cache is refused. Only V1's cache does not depend on the
    # length (its profiling run is max_num_batched_tokens long; V0's is one whole sequence).
    chosen: int | None = None
    if record.get("engine", "v1") == "v1":
        full = _plan(record, list(vllm_args.remove(args, "--max-model-len")), "adjust")
        # "auto" leaves the length to vLLM's own fit (0.14+), which never exceeds its cache
        if full.ok and vllm_args.get(full.start_argv, "--max-model-len") != "auto":
            derived = verdict.estimate.max_model_len or 0
            chosen = int(vllm_args.number(full.start_argv, "--max-model-len") or derived)
    optimistic = bool(tokens and chosen and chosen > int(tokens))
    return Compared(record, weights_error, kv_error, chosen, optimistic)


@dataclass(frozen=True, slots=True)
class Figures:
    starts: int
    weights_median: float | None
    weights_worst: float | None
    kv_median: float | None  # of the absolute errors
    kv_mean: float | None  # signed: positive is optimistic
    optimistic: tuple[str, ...]

    def line(self, name: str) -> str:
        def pct(x: float | None, sign: str = "+") -> str:
            return "n/a" if x is None else f"{x:{sign}.1%}"

        return (
            f"{name}: {self.starts} starts; weights median |error| {pct(self.weights_median, '')}, worst "
            f"{pct(self.weights_worst)}; KV tokens median |error| {pct(self.kv_median, '')}, mean "
            f"{pct(self.kv_mean)}; optimistic verdicts {len(self.optimistic)}"
        )


def figures(compared: Iterable[Compared]) -> Figures:
    rows = list(compared)
    weights = [c.weights_error for c in rows if c.weights_error is not None]
    kv = [c.kv_tokens_error for c in rows if c.kv_tokens_error is not None]
    return Figures(
        len(rows),
        statistics.median(abs(e) for e in weights) if weights else None,
        max(weights, key=abs) if weights else None,
        statistics.median(abs(e) for e in kv) if kv else None,
        statistics.fmean(kv) if kv else None,
        tuple(str(c.record["source"]) for c in rows if c.optimistic),
    )
