"""The attempt journal's events, one JSON object a line in `journal.jsonl`: one schema, written
by the supervisor (through state.py) and read back by `status`, so neither side spells its keys
on its own. Values are masked by the writer before they get here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """vLLM was launched."""

    event: ClassVar[str] = "started"
    attempt: int
    argv: list[str]
    started_at: str  # UTC, ISO 8601
    launched_at_s: float  # wall clock, for relaunch latency
    step: str | None  # the ladder step that gave it its flags
    log: str  # its complete output
    # in a group of nodes: this node's role and rank, and the group's generation it runs
    # (group_link.py), so each node's journal says which of its attempts were one generation
    group: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """vLLM ended (or hung) without being asked to, and what the policy decided."""

    event: ClassVar[str] = "ended"
    attempt: int
    lasted_s: float
    ready_after_s: float | None
    exit_status: int | None
    exited_at_s: float
    kind: str
    evidence: str
    numbers: dict[str, Any]
    decision: dict[str, object] | None


@dataclass(frozen=True, slots=True)
class AttemptStopped:
    """vLLM was stopped on request."""

    event: ClassVar[str] = "stopped"
    attempt: int
    lasted_s: float
    ready_after_s: float | None
    exit_status: int | None
    escalated: bool  # the grace ran out: SIGKILL of a running vLLM
    killed: list[str]


@dataclass(frozen=True, slots=True)
class EngineRetried:
    """vLLM's engine paused on an error (fault tolerance) and the guard asked it to retry in
    place: a restart without relaunching, counted like one."""

    event: ClassVar[str] = "retried"
    attempt: int
    after_s: float  # since the attempt's launch
    kind: str
    evidence: str
    numbers: dict[str, Any]
    request_id: str
    recovered: bool
    outcome: str  # how long it took, or why it did not work


@dataclass(frozen=True, slots=True)
class AdviceChanged:
    """A condition of the advisor started to hold while vLLM served, or cleared."""

    event: ClassVar[str] = "advice"
    attempt: int
    condition: str
    holds: bool
    evidence: str
    fix: str


Event = AttemptStarted | AttemptEnded | AttemptStopped | EngineRetried | AdviceChanged


def as_json(event: Event) -> dict[str, Any]:
    return {"event": event.event, **asdict(event)}


# What `status` shows of each attempt, merged over its events (tests/test_state.py checks that
# each is a key some event writes).
SHOWN = (
    "attempt", "argv", "started_at", "kind", "evidence", "decision", "step", "exit_status", "log", "retries",
    "advice", "group",
)  # fmt: skip


def written_keys() -> frozenset[str]:
    # "retries" and "advice" are what `status` gathers from the EngineRetried and AdviceChanged
    # events: each retry, and the conditions that hold now
    return frozenset(
        f.name for event in (AttemptStarted, AttemptEnded, AttemptStopped) for f in fields(event)
    ) | {"retries", "advice"}
