"""What the next attempt runs: a decision made from the history of attempts, as a value.

A policy holds, per failure kind, a ladder of steps, cheapest loss of quality first. After a failure
the first step that changes something (and was not tried yet) gives the next flags, which launch at
once; a kind with no ladder restarts with the same flags, with exponential backoff and jitter
(drawn from an injected random source), within a restart budget. The guard
only degrades, never touches a pinned flag, undoes its own step when vLLM refuses it, and ends at
once on a permanent kind. The decision types are what the supervisor carries out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from vllm_guard import fits, flag_edits, vllm_args
from vllm_guard.advice import Thresholds
from vllm_guard.errors import ExitCode
from vllm_guard.failures import ADVICE, Failure, FailureKind


@dataclass(frozen=True, slots=True)
class Attempt:
    """One launch of vLLM as the policy sees it. Times are seconds on the supervisor's clock."""

    number: int
    vllm_args: tuple[str, ...]
    started_at: float
    ended_at: float
    ready_at: float | None
    exit_status: int | None  # None when the guard had to kill it
    failure: Failure
    last_line: str = ""  # what vLLM printed last: context when the failure has no evidence
    step: str | None = None  # the ladder step that gave this attempt its flags
    # vLLM's engine paused on this failure (fault tolerance) and was asked to retry in place: the
    # launch went on, and what followed the retry is an entry of its own (a restart, counted)
    retried: bool = False

    @property
    def healthy_for_s(self) -> float:
        return 0.0 if self.ready_at is None else self.ended_at - self.ready_at


@dataclass(frozen=True, slots=True)
class Discipline:
    """Restart discipline: how often, how fast, and when to stop trying."""

    max_restarts: int
    window_s: float
    backoff_initial_s: float
    backoff_max_s: float
    backoff_jitter_s: float
    healthy_reset_s: float


@dataclass(frozen=True, slots=True)
class Relaunch:
    vllm_args: tuple[str, ...]
    delay_s: float
    reason: str
    step: str | None = None  # the ladder step applied, None for a same-flags restart or an undo
    env: tuple[tuple[str, str], ...] = ()  # environment variables to set from now on
    # "step": a ladder step changed the flags or the environment; "undo": the guard's own step
    # vLLM refused is taken back; "same": the same flags again, after a backoff.
    how: Literal["step", "undo", "same"] = "same"


@dataclass(frozen=True, slots=True)
class GiveUp:
    exit_code: ExitCode
    reason: str


Decision = Relaunch | GiveUp


def backoff_s(discipline: Discipline, failures_in_a_row: int, rng: random.Random) -> float:
    """The delay before same-flag restart number `failures_in_a_row` (1 for the first): the
    first delay doubled at each failure in a row, capped at the longest, plus jitter drawn from
    the injected random source (so that a test's seed decides it)."""
    exponent = min(max(failures_in_a_row, 1) - 1, 64)  # past 2**64 any first delay is capped
    wait = min(discipline.backoff_initial_s * 2.0**exponent, discipline.backoff_max_s)
    jitter = rng.uniform(0, discipline.backoff_jitter_s) if discipline.backoff_jitter_s > 0 else 0.0
    return wait + jitter


def failures_in_a_row(history: Sequence[Attempt], discipline: Discipline) -> int:
    """Trailing attempts that failed without a healthy stretch long enough to reset the backoff."""
    count = 0
    for attempt in reversed(history):
        if served(attempt, discipline):
            break
        count += 1
    return count


def served(attempt: Attempt, discipline: Discipline) -> bool:
    """vLLM was ready and served for `healthy_reset_s` (a never-ready attempt never counts, even
    with --healthy-reset-s 0)."""
    return attempt.ready_at is not None and attempt.healthy_for_s >= discipline.healthy_reset_s


@dataclass(frozen=True, slots=True)
class Step:
    """One rung of a ladder. `action` is one of set, remove, flag, scale, fit, env, give_up."""

    action: str
    flag: str = ""
    value: str = ""
    factor: float = 0.5
    floor: float = 0.0
    default: float | None = None  # the value vLLM uses when the flag is absent, for scale
    env: tuple[tuple[str, str], ...] = ()
    message: str = ""
    when: str = ""  # a flag that must be given for the step to apply (a feature that is on)

    @property
    def label(self) -> str:
        if self.action == "set":
            return f"set {self.flag} {self.value}"
        if self.action in ("remove", "flag", "fit"):
            return f"{self.action} {self.flag}"
        if self.action == "scale":
            return f"scale {self.flag} x{self.factor:g} (floor {self.floor:g})"
        if self.action == "env":
            return "env " + " ".join(f"{k}={v}" for k, v in self.env)
        return "give_up"


@dataclass(frozen=True, slots=True)
class Policy:
    name: str = "same-flags"
    ladders: tuple[tuple[FailureKind, tuple[Step, ...]], ...] = ()
    pinned: frozenset[str] = frozenset()
    # when the advisor's conditions hold while vLLM serves
    advice: Thresholds = field(default_factory=Thresholds)
    carry_advice: bool = False  # a relaunch takes the edits of the findings that held

    def ladder(self, kind: FailureKind) -> tuple[Step, ...]:
        return next((steps for k, steps in self.ladders if k == kind), ())


@dataclass(frozen=True, slots=True)
class Facts:
    """What is known of the machine; preflight supplies it, until then all may be unknown."""

    gpu_name: str | None = None
    gpu_count: int | None = None
    compute_capability: tuple[int, int] | None = None  # the lowest of the GPUs used, like (8, 9)
    vllm_version: str | None = None  # like "0.32.0": steps are written in this version's spelling
    cuda_total_bytes: int | None = None  # CUDA's total of the smallest GPU used (what vLLM budgets)


# vLLM's defaults when a flag is absent, for the fits that must compare against them.
INTEGER_FLAGS = frozenset(
    {"--max-model-len", "--max-num-seqs", "--max-num-batched-tokens", "--max-loras", "--max-lora-rank"}
)
# Flags whose value a set step never replaces once given: another method, not a smaller one.
_USERS_CHOICE = frozenset({"--quantization"})
# A step vLLM refused is undone: it is the guard's own doing, not the user's.
_REFUSALS = frozenset({FailureKind.INVALID_ARGS, FailureKind.UNSUPPORTED_DTYPE_OR_QUANT})


def apply(
    step: Step,
    args: tuple[str, ...],
    failure: Failure,
    policy: Policy,
    facts: Facts,
    *,
    config: Mapping[str, object] | None = None,
    user_args: Sequence[str] | None = None,
) -> tuple[str, ...] | None:
    """The flags after `step`, or None when it does not apply: the step computes the change it
    wants (a scaled or fitted value from what vLLM sees, `config` its `--config` file included),
    and `flag_edits` makes it or refuses it (a pinned flag, nothing would change, a value moved
    the unsafe way from these flags or from the user's own, `user_args`)."""
    change = _change_for(step, args, failure, config)
    if change is None:
        return None
    rules = flag_edits.Rules(
        user_args=tuple(args if user_args is None else user_args),
        pinned=policy.pinned,
        version=facts.vllm_version,
        config=config,
        compute_capability=facts.compute_capability,
    )
    result = flag_edits.apply(args, change, rules)
    return None if isinstance(result, flag_edits.Refused) else result


def _change_for(
    step: Step, args: tuple[str, ...], failure: Failure, config: Mapping[str, object] | None
) -> flag_edits.Change | None:
    flag = vllm_args.canonical(step.flag)
    seen = vllm_args.with_config(args, config) if config else args
    if step.action == "set":
        return flag_edits.Change("set", flag, step.value)
    if step.action == "remove":
        return flag_edits.Change("remove", flag)
    if step.action == "flag":
        return flag_edits.Change("on", flag)
    if step.action == "scale":
        counts = _scaled_counts(vllm_args.get(seen, flag), step.factor, step.floor)
        if counts is not None:
            return flag_edits.Change("set", flag, counts)
        current = vllm_args.number(seen, flag)
        current = step.default if current is None else current
        if current is None:
            return None
        return _lowered(flag, max(current * step.factor, step.floor), current)
    if step.action == "fit":
        fitted = _fit(flag, seen, failure)
        if fitted is None:
            return None
        current = vllm_args.number(seen, flag)
        return _lowered(flag, fitted, current if current is not None else float("inf"))
    return None


def _scaled_counts(text: str | None, factor: float, floor: float) -> str | None:
    """A per-item count map with every count scaled down, not below `floor`: vLLM's JSON
    (`{"image": 4, "video": {"count": 2, "num_frames": 32}}`, --limit-mm-per-prompt) or the
    older `image=4,video=2`. None when `text` is no such map or nothing would be lowered."""
    if not text or ("{" not in text and "=" not in text):
        return None
    try:
        data = json.loads(text)
        legacy = False
    except ValueError:
        data, legacy = _legacy_counts(text), True
    if not isinstance(data, dict) or not data:
        return None

    def lowered(count: object) -> object:
        if isinstance(count, int) and not isinstance(count, bool) and count > floor:
            return max(int(count * factor), int(floor))
        return count

    out: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and "count" in value:
            out[key] = {**value, "count": lowered(value["count"])}
        else:
            out[key] = lowered(value)
    if out == data:
        return None
    if legacy:
        return ",".join(f"{key}={value}" for key, value in out.items())
    return json.dumps(out, separators=(",", ":"))


def _legacy_counts(text: str) -> dict[str, object] | None:
    pairs = [item.partition("=") for item in text.split(",")]
    if not all(eq and key.strip() and value.strip().isdigit() for key, eq, value in pairs):
        return None
    return {key.strip(): int(value) for key, _, value in pairs}


def _lowered(flag: str, new: float, current: float) -> flag_edits.Change | None:
    text = str(int(new)) if flag in INTEGER_FLAGS else f"{int(new * 100) / 100:.2f}"
    if float(text) >= current or float(text) <= 0:
        return None
    return flag_edits.Change("set", flag, text)


def _fit(flag: str, args: tuple[str, ...], failure: Failure) -> float | None:
    numbers = failure.numbers
    if flag == "--max-model-len":
        if "estimated_max_model_len" in numbers:  # vLLM computed it: take it as printed
            return float(numbers["estimated_max_model_len"])
        for key in ("kv_cache_tokens", "derived_max_model_len"):
            if key in numbers:
                block = vllm_args.number(args, "--block-size") or fits.BLOCK_SIZE
                return float(int(float(numbers[key]) // block * block))
        return None
    if flag == "--gpu-memory-utilization" and "free_bytes" in numbers and "total_bytes" in numbers:
        return fits.utilization_for(float(numbers["free_bytes"]), float(numbers["total_bytes"]))
    return None


def decide(
    history: Sequence[Attempt],
    discipline: Discipline,
    now: float,
    rng: random.Random,
    *,
    policy: Policy = Policy(),
    facts: Facts = Facts(),
    config: Mapping[str, object] | None = None,
    user_args: Sequence[str] | None = None,
) -> Decision:
    """What to do after the last attempt in `history` failed. `config`: the values of the
    `--config` file the flags name, which vLLM reads as flags too; `user_args`: the user's own
    flags, which no step moves past (the first attempt's flags when not given).

    The restart budget bounds restarts that change nothing (same flags, or an undo); a ladder
    that makes progress is bounded by its own length. A step counts as tried within the current
    unhealthy stretch only: after vLLM served for `healthy_reset_s`, the ladder starts over (a
    step that worked for a week may be taken again, a scale may lower a value once more), and a
    ladder with nothing left to change restarts with the same flags instead of giving up."""
    last = history[-1]
    kind = last.failure.kind
    user = tuple(history[0].vllm_args if user_args is None else user_args)
    restarts = restarts_in_window(history, discipline, now)
    spent = GiveUp(
        ExitCode.GAVE_UP,
        f"the restart budget is spent: {restarts} restarts with unchanged flags within "
        f"{discipline.window_s:g} s (--max-restarts {discipline.max_restarts})",
    )
    rules = flag_edits.Rules(user, policy.pinned, facts.vllm_version, config, facts.compute_capability)
    if kind in _REFUSALS and last.step is not None and len(history) > 1:
        # Undoing its own step is a restart like any other: it counts against the budget.
        if restarts >= discipline.max_restarts:
            return spent
        before, _ = flag_edits.rebuild(history[-2].vllm_args, rules)
        return Relaunch(before, 0.0, f"undo {last.step}: vLLM refused it ({kind.value})", how="undo")
    if last.failure.permanent:
        return GiveUp(ExitCode.PERMANENT, f"{kind.value} is a permanent failure: {ADVICE[kind]}")
    stretch = _unhealthy_stretch(history, discipline)
    tried = {a.step for a in stretch[1:] if a.step is not None}
    # the environment a step set stays set for the guard's life: taking it again changes nothing
    ever = {a.step for a in history if a.step is not None}
    ladder = policy.ladder(kind)
    if not last.failure.phase_known:
        # An out-of-memory error whose phase nothing told: its kind is a guess, so only the steps
        # the serving ladder has too (never quantized weights for what may be a serving OOM).
        safe = {step.label for step in policy.ladder(FailureKind.OOM_RUNTIME)}
        ladder = tuple(step for step in ladder if step.label in safe)
    for step in ladder:
        if step.label in tried or (step.action == "env" and step.label in ever):
            continue
        if step.when and not _feature_on(last.vllm_args, step.when, config):
            continue
        if step.action == "give_up":
            return GiveUp(ExitCode.GAVE_UP, f"{kind.value}: {step.message or ADVICE[kind]}")
        if step.action == "env":
            return Relaunch(
                last.vllm_args, 0.0, f"{kind.value}: {step.label}", step=step.label, env=step.env, how="step"
            )
        changed = apply(step, last.vllm_args, last.failure, policy, facts, config=config, user_args=user)
        if changed is not None:
            return Relaunch(changed, 0.0, f"{kind.value}: {step.label}", step=step.label, how="step")
    if restarts >= discipline.max_restarts:
        return spent
    if ladder and last.failure.phase_known and not served(stretch[0], discipline):
        # the ladder ran out within one stretch of failures (a vLLM that is ready for a moment
        # and dies again has not served): no flag left to change, so no restart either
        tried_here = [s.label for s in ladder if s.label in tried]
        return GiveUp(
            ExitCode.GAVE_UP,
            f"the {kind.value} ladder ran out (tried: {', '.join(tried_here) or 'nothing applied'}); "
            + ADVICE[kind],
        )
    # No ladder, or one with nothing left to change after vLLM had served: the same flags again.
    delay = backoff_s(discipline, failures_in_a_row(history, discipline), rng)
    return Relaunch(last.vllm_args, delay, f"{kind.value}: same flags")


def restarts_in_window(history: Sequence[Attempt], discipline: Discipline, now: float) -> int:
    """The restarts the budget counts: attempts after the first, started within the window,
    whose flags no ladder step gave (same-flag restarts and undos)."""
    return sum(1 for a in history[1:] if a.step is None and a.started_at >= now - discipline.window_s)


def _unhealthy_stretch(history: Sequence[Attempt], discipline: Discipline) -> Sequence[Attempt]:
    """The attempts since vLLM last served for `healthy_reset_s`, that attempt first (its
    failure opened the stretch; the step that gave it its flags had worked)."""
    for i in range(len(history) - 1, -1, -1):
        if served(history[i], discipline):
            return history[i:]
    return history


def _feature_on(args: tuple[str, ...], flag: str, config: Mapping[str, object] | None) -> bool:
    return vllm_args.has(vllm_args.with_config(args, config) if config else args, flag)


def as_json(decision: Decision, argv: Callable[[Sequence[str]], list[str]]) -> dict[str, object]:
    """A decision as `diagnose --json` and the journal show it; `argv` masks secrets."""
    if isinstance(decision, Relaunch):
        return {
            "action": "relaunch",
            "argv": argv(decision.vllm_args),
            "delay_s": round(decision.delay_s, 3),
            "step": decision.step or decision.reason,
        }
    return {"action": "give_up", "exit_code": int(decision.exit_code), "message": decision.reason}
