"""A group of vLLM processes, one per node, supervised as one: each node's role read from vLLM's
flags, the group's numbered flag generation, what the leader's guard keeps of its followers, and
whose failure the group's next step follows. Pure: the HTTP between the guards is group_link.py's.

One guard runs beside each node's vLLM. The leader's guard decides for the group; a follower's
guard reports to it and runs the generation it is told, its own flags edited as the leader's were.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from vllm_guard import flag_edits, vllm_args
from vllm_guard.failures import Failure, FailureKind

Phase = Literal["waiting", "starting", "ready", "failed", "stopped", "gave_up"]
PHASES: tuple[Phase, ...] = ("waiting", "starting", "ready", "failed", "stopped", "gave_up")
Edit = tuple[str, str, str | None]

# Failures that follow another node's end rather than name a cause of their own: a collective
# or a rendezvous left waiting on a peer that died, a worker taken down with it, a follower's
# guard that went silent. Where a node names a cause of its own, the group's step follows that.
CONSEQUENCES = frozenset(
    {
        FailureKind.COLLECTIVE_TIMEOUT,
        FailureKind.PEER_UNREACHABLE,
        FailureKind.RAY_ACTOR_DIED,
        FailureKind.FOLLOWER_LOST,
        FailureKind.WORKER_DIED,
        FailureKind.HUNG,
        FailureKind.UNKNOWN,
    }
)
# The numbers a fit is made from, each the lower the tighter (policy._fit reads the same ones).
_LENGTHS = ("estimated_max_model_len", "kv_cache_tokens", "derived_max_model_len")


@dataclass(frozen=True, slots=True)
class Generation:
    """The group's flags, numbered: edits of the user's flags (as known_good.json keeps them),
    which each node makes on its own flags. `run` False: every node stops its vLLM and waits,
    until the leader has heard that all did. `gave_up`: the leader's exit code, for all to end."""

    number: int
    edits: tuple[Edit, ...] = ()
    run: bool = True
    reason: str = "the user's flags"
    gave_up: int | None = None
    serving: bool = False  # the leader's vLLM answers /health: the whole group is up
    # the leader guard's run: a leader started again numbers from 1 anew, and its generation 1
    # is not the one a follower may still run
    epoch: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return self.epoch, self.number

    def as_json(self) -> dict[str, Any]:
        return {
            "generation": self.number,
            "edits": [list(e) for e in self.edits],
            "run": self.run,
            "reason": self.reason,
            "gave_up": self.gave_up,
            "serving": self.serving,
            "epoch": self.epoch,
        }

    @classmethod
    def from_json(cls, data: object) -> Generation:
        """ValueError when `data` is not a generation."""
        if not isinstance(data, Mapping):
            raise ValueError("not an object")
        number, edits, run = data.get("generation"), data.get("edits"), data.get("run")
        if (
            not isinstance(number, int)
            or number < 1
            or not isinstance(run, bool)
            or not isinstance(edits, list)
        ):
            raise ValueError("generation, edits or run missing or of the wrong type")
        parsed = _edits(edits)
        gave_up = data.get("gave_up")
        reason = data.get("reason")
        return cls(
            number,
            parsed,
            run,
            reason if isinstance(reason, str) else "",
            gave_up if isinstance(gave_up, int) else None,
            data.get("serving") is True,
            epoch if isinstance(epoch := data.get("epoch"), str) else "",
        )


@dataclass(frozen=True, slots=True)
class GpuReport:
    """What a node's preflight read of its GPUs."""

    name: str
    count: int
    total_bytes: int


@dataclass(frozen=True, slots=True)
class Report:
    """What a follower's guard tells the leader's, at each exchange: where its vLLM is in which
    generation, its failure when it failed, its GPUs and what its preflight found."""

    rank: int
    generation: int
    phase: Phase
    attempt: int = 0
    failure: Failure | None = None
    gpu: GpuReport | None = None
    preflight: tuple[str, ...] = ()  # what the node's own checks found wrong, as said there
    planned: tuple[Edit, ...] = ()  # the edits of its flags its own start would make (preflight, remembered)
    epoch: str = ""  # the leader run whose generation `generation` is (Generation.epoch)

    def as_json(self) -> dict[str, Any]:
        failure = self.failure
        return {
            "rank": self.rank,
            "generation": self.generation,
            "phase": self.phase,
            "attempt": self.attempt,
            "failure": None
            if failure is None
            else {"kind": failure.kind.value, "evidence": failure.evidence, "numbers": dict(failure.numbers)},
            "gpu": None
            if self.gpu is None
            else {"name": self.gpu.name, "count": self.gpu.count, "total_bytes": self.gpu.total_bytes},
            "preflight": list(self.preflight),
            "planned": [list(e) for e in self.planned],
            "epoch": self.epoch,
        }

    @classmethod
    def from_json(cls, data: object) -> Report:
        """ValueError when `data` is not a report."""
        if not isinstance(data, Mapping):
            raise ValueError("not an object")
        rank, number, phase, attempt = (data.get(k) for k in ("rank", "generation", "phase", "attempt"))
        if not (isinstance(rank, int) and rank > 0 and isinstance(number, int) and number >= 0):
            raise ValueError("rank or generation missing or of the wrong type")
        if phase not in PHASES or not isinstance(attempt, int):
            raise ValueError("phase or attempt missing or of the wrong type")
        failure, gpu, planned = (
            _failure(data.get("failure")),
            _gpu(data.get("gpu")),
            _edits(data.get("planned", [])),
        )
        epoch = data.get("epoch", "")
        if not isinstance(epoch, str):
            raise ValueError("epoch is not a string")
        return cls(rank, number, phase, attempt, failure, gpu, _lines(data), planned, epoch[:64])


def _edits(data: object) -> tuple[Edit, ...]:
    """Edits as the wire carries them: [[set|remove, FLAG, VALUE or null], ...]."""
    if not isinstance(data, list):
        raise ValueError("edits are not a list")
    parsed: list[Edit] = []
    for edit in data:
        if not (isinstance(edit, list) and len(edit) == 3 and edit[0] in ("set", "remove")):
            raise ValueError(f"not an edit: {edit!r:.80}")
        flag, value = edit[1], edit[2]
        if not (isinstance(flag, str) and flag.startswith("-") and isinstance(value, str | None)):
            raise ValueError(f"not an edit: {edit!r:.80}")
        parsed.append((edit[0], flag, value))
    return tuple(parsed)


def _failure(data: object) -> Failure | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError("failure is not an object")
    try:
        kind = FailureKind(str(data.get("kind")))
    except ValueError:
        raise ValueError(f"not a failure kind: {data.get('kind')!r:.40}") from None
    evidence, numbers = data.get("evidence", ""), data.get("numbers", {})
    if not isinstance(evidence, str) or not isinstance(numbers, Mapping):
        raise ValueError("failure evidence or numbers of the wrong type")
    if not all(isinstance(k, str) and isinstance(v, int | float | str) for k, v in numbers.items()):
        raise ValueError("failure numbers of the wrong type")
    return Failure(kind, evidence[:2000], dict(numbers))


def _gpu(data: object) -> GpuReport | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise ValueError("gpu is not an object")
    name, count, total = data.get("name"), data.get("count"), data.get("total_bytes")
    if not (isinstance(name, str) and isinstance(count, int) and isinstance(total, int)):
        raise ValueError("gpu name, count or total_bytes of the wrong type")
    return GpuReport(name, count, total)


def _lines(data: Mapping[str, object]) -> tuple[str, ...]:
    lines = data.get("preflight", [])
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ValueError("preflight is not a list of strings")
    return tuple(line[:500] for line in lines[:50])


@dataclass(slots=True)
class Node:
    """A follower as the leader's guard knows it."""

    report: Report
    heard_at: float


@dataclass(frozen=True, slots=True)
class Refused:
    """A report the leader does not take: why, for the answer and the count."""

    reason: Literal["old_generation", "bad_report", "not_a_follower"]
    detail: str


@dataclass(slots=True)
class Book:
    """What the leader's guard keeps of its group: the current generation and each follower's
    last report. Times are the caller's clock."""

    nodes: int
    since: float  # when the book was opened: a follower never heard from is silent since then
    epoch: str = ""  # this leader guard's run (Generation.epoch)
    generation: Generation = field(init=False)
    followers: dict[int, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # not running until the leader has planned the group's first start from every node's own
        self.generation = Generation(1, (), False, "the group's first plan", epoch=self.epoch)

    def first(self, edits: Sequence[Edit]) -> Generation:
        """The group's first generation, as planned: it runs."""
        self.generation = Generation(1, tuple(edits), True, "the group's first plan", epoch=self.epoch)
        return self.generation

    def heard(self, report: Report, now: float) -> Generation | Refused:
        """A follower's report: taken, and answered with the current generation; or refused
        when it speaks of a generation the group has left behind while its vLLM still runs
        (a replay, or a follower that missed a step: it is told the current one either way).
        One ahead of the group's is taken: the leader's guard started again, and the group with it."""
        if not 0 < report.rank < self.nodes:
            return Refused("not_a_follower", f"rank {report.rank} is not a follower of {self.nodes} nodes")
        stale = (
            report.epoch == self.epoch
            and report.generation < self.generation.number
            and report.phase in ("starting", "ready", "failed")
        )
        if stale and report.generation < self._last_seen(report.rank):
            return Refused("old_generation", f"generation {report.generation} was reported on already")
        self.followers[report.rank] = Node(report, now)
        return self.generation

    def _last_seen(self, rank: int) -> int:
        node = self.followers.get(rank)
        return node.report.generation if node is not None else 0

    def silent(self, now: float, after_s: float) -> list[int]:
        """The followers not heard from within `after_s` (one never heard: since `since`)."""
        return [
            r
            for r in range(1, self.nodes)
            if now - (self.followers[r].heard_at if r in self.followers else self.since) > after_s
        ]

    def failures(self) -> list[tuple[int, Failure]]:
        """The followers' failures in the current generation."""
        return [
            (rank, node.report.failure)
            for rank, node in sorted(self.followers.items())
            if node.report.epoch == self.epoch
            and node.report.generation == self.generation.number
            and node.report.failure is not None
        ]

    def all_stopped(self, besides: Sequence[int] = ()) -> bool:
        """Every follower (but those `besides`) has said its vLLM is not running."""
        down = ("waiting", "failed", "stopped", "gave_up")
        return all(
            r in self.followers and self.followers[r].report.phase in down
            for r in range(1, self.nodes)
            if r not in besides
        )

    def advance(self, edits: Sequence[Edit], reason: str) -> Generation:
        """The next generation, not running until every node has stopped the current one."""
        self.generation = Generation(
            self.generation.number + 1, tuple(edits), False, reason, epoch=self.epoch
        )
        return self.generation

    def halt(self) -> Generation:
        """The current generation ends (the leader's vLLM ended, or a follower's): every node
        stops its vLLM, and the step that follows is decided once they have said why they ended."""
        if self.generation.run:
            self.generation = replace(self.generation, run=False, serving=False)
        return self.generation

    def serve(self) -> Generation:
        """The leader's vLLM answers /health: the group serves on this generation."""
        if self.generation.run:
            self.generation = replace(self.generation, serving=True)
        return self.generation

    def release(self) -> Generation:
        """Every node stopped: the current generation may run."""
        if not self.generation.run and self.generation.gave_up is None:
            self.generation = replace(self.generation, run=True)
        return self.generation

    def give_up(self, code: int, reason: str) -> Generation:
        g = self.generation
        self.generation = Generation(g.number + 1, g.edits, False, reason, gave_up=code, epoch=self.epoch)
        return self.generation


def tightness(failure: Failure) -> float:
    """How little room a failure's numbers leave, for ordering failures of one kind (lower is
    tighter): the length that fits, else the share of the GPU that was free; inf without numbers."""
    numbers = failure.numbers
    for key in _LENGTHS:
        if key in numbers:
            return float(numbers[key])
    if "free_bytes" in numbers and "total_bytes" in numbers and float(numbers["total_bytes"]) > 0:
        return float(numbers["free_bytes"]) / float(numbers["total_bytes"])
    return math.inf


def root_failure(failures: Sequence[tuple[int, Failure]]) -> tuple[int, Failure]:
    """Whose failure the group's next step follows: a node's own cause over the consequences
    of another's death; among those the tightest fit (a follower whose GPU holds less decides
    the length for all), then the lowest rank."""
    if not failures:
        raise ValueError("no failure to choose from")
    return min(failures, key=lambda item: (item[1].kind in CONSEQUENCES, tightness(item[1]), item[0]))


def plan(
    args: tuple[str, ...], plans: Sequence[tuple[int, Sequence[Edit]]], rules: flag_edits.Rules
) -> tuple[tuple[str, ...], list[tuple[int, str]]]:
    """The group's first flags: the leader's own start (its preflight's, its remembered flags),
    made as safe as each follower's own start asks, through the one door. A follower's edit that
    uses less memory than the leader's flags is taken (its smaller GPU's length, its fp8 KV
    cache); one that would use more is refused there, so each flag ends at the tightest any node
    asked for. Returns the flags and, per follower, what it changed."""
    said: list[tuple[int, str]] = []
    for rank, edits in plans:
        before = args
        for change in flag_edits.as_changes(edits):
            made = flag_edits.apply(args, change, rules)
            if not isinstance(made, flag_edits.Refused):
                args = made
        if args != before:
            said.append((rank, vllm_args.changes(before, args, rules.version)))
    return args, said
