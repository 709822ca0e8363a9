"""Properties of decide() over whole simulated runs, and of the argv editor: random user flags,
policies, pins, facts and failure histories; whatever happens, the guard's promises hold."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_guard import flag_edits, policy_file, vllm_args
from vllm_guard.errors import ExitCode
from vllm_guard.failures import PERMANENT_KINDS, Failure, FailureKind, Number
from vllm_guard.policy import (
    Attempt,
    Decision,
    Discipline,
    Facts,
    GiveUp,
    Policy,
    Relaunch,
    Step,
    decide,
)

K = FailureKind
POLICIES = {name: policy_file.load(name).policy() for name in ("default", "keep-quality")}
REFUSALS = frozenset({K.INVALID_ARGS, K.UNSUPPORTED_DTYPE_OR_QUANT})
NUMERIC = (
    "--max-model-len",
    "--gpu-memory-utilization",
    "--max-num-seqs",
    "--max-num-batched-tokens",
    "--max-loras",
    "--max-lora-rank",
)
UNTOUCHABLE = ("--port", "--host")
BOOLEANS = frozenset({"--enforce-eager", "--enable-lora"})
CANDIDATES = (
    *NUMERIC,
    "--enforce-eager",
    "--kv-cache-dtype",
    "--quantization",
    "--enable-lora",
    "--limit-mm-per-prompt",
    "--speculative-config",
    *UNTOUCHABLE,
)
PROPERTY = settings(max_examples=300, deadline=None)


# --- user command lines -----------------------------------------------------------------------


def spelling(flag: str, value: str | None, style: int) -> list[str]:
    """One flag as a user may write it: `--a-b v`, `--a-b=v`, `--a_b v`, `--a_b=v`."""
    name = flag if style < 2 else "--" + flag[2:].replace("-", "_")
    if value is None:
        return [name]
    return [f"{name}={value}"] if style % 2 else [name, value]


@st.composite
def user_argvs(draw: st.DrawFn) -> tuple[str, ...]:
    """What the user gives after MODEL: a random mix of the flags the ladders read, in any order."""
    options: list[tuple[str, str | None]] = []

    def maybe(flag: str, values: st.SearchStrategy[str | None]) -> None:
        if draw(st.booleans()):
            options.append((flag, draw(values)))

    maybe("--max-model-len", st.integers(16, 131072).map(str))
    maybe("--gpu-memory-utilization", st.integers(10, 99).map(lambda n: f"0.{n:02d}"))
    maybe("--max-num-seqs", st.integers(1, 1024).map(str))
    maybe("--max-num-batched-tokens", st.integers(64, 65536).map(str))
    maybe("--enforce-eager", st.none())
    maybe("--cpu-offload-gb", st.integers(0, 64).map(str))  # safer higher: never lowered (B4)
    maybe("--kv-cache-dtype", st.just("fp8"))
    maybe("--quantization", st.just("awq"))
    if draw(st.booleans()):
        options.append(("--enable-lora", None))
        maybe("--max-loras", st.integers(1, 64).map(str))
        maybe("--max-lora-rank", st.sampled_from(["8", "16", "32", "64", "256"]))
    maybe("--limit-mm-per-prompt", st.integers(0, 16).map(lambda n: json.dumps({"image": n})))
    maybe(
        "--speculative-config",
        st.integers(1, 8).map(
            lambda n: json.dumps({"method": "ngram", "num_speculative_tokens": n, "prompt_lookup_max": 4})
        ),
    )
    maybe("--port", st.integers(1024, 65535).map(str))
    maybe("--host", st.sampled_from(["0.0.0.0", "127.0.0.1"]))
    ordered = draw(st.permutations(options))
    styles = draw(st.lists(st.integers(0, 3), min_size=len(ordered), max_size=len(ordered)))
    return tuple(
        arg
        for (flag, value), style in zip(ordered, styles, strict=True)
        for arg in spelling(flag, value, style)
    )


# --- whole runs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """How one attempt went: its failure, how long it ran, and how long it was healthy."""

    failure: Failure
    exit_status: int | None
    duration_s: float
    healthy_for_s: float | None  # None: never ready
    gap_s: float  # launch latency before the next attempt starts


@dataclass(frozen=True, slots=True)
class Scenario:
    user: tuple[str, ...]
    discipline: Discipline
    policy: Policy
    facts: Facts
    events: tuple[Event, ...]
    seed: int


@dataclass(frozen=True, slots=True)
class Turn:
    """One decision: the history it was made from, when, and what it was."""

    history: tuple[Attempt, ...]
    now: float
    decision: Decision


def fit_numbers() -> st.SearchStrategy[dict[str, Number]]:
    lengths = st.integers(0, 200_000)
    optional = {
        "estimated_max_model_len": lengths,
        "kv_cache_tokens": lengths,
        "derived_max_model_len": lengths,
        "max_model_len": lengths,
    }
    plain = st.fixed_dictionaries({}, optional=optional)

    @st.composite
    def with_memory(draw: st.DrawFn) -> dict[str, Number]:
        numbers: dict[str, Number] = dict(draw(plain))
        if draw(st.booleans()):
            total = draw(st.floats(1.0, 200.0)) * 2**30
            numbers["total_bytes"] = total
            numbers["free_bytes"] = total * draw(st.floats(0.0, 1.0))
        return numbers

    return with_memory()


LADDERED = sorted({kind for policy in POLICIES.values() for kind, _ in policy.ladders})
LONG_LADDERS = [K.OOM_KV_CACHE, K.OOM_RUNTIME, K.OOM_CUDA_GRAPH]
SAME_FLAGS = sorted(set(FailureKind) - set(LADDERED) - PERMANENT_KINDS)
# Weighted so that runs go deep: long ladders and same-flag restarts most, refusals (the undo) often
# enough, every kind sometimes.
kinds = st.one_of(
    st.sampled_from(LONG_LADDERS),
    st.sampled_from(LONG_LADDERS),
    st.sampled_from(LADDERED),
    st.sampled_from(SAME_FLAGS),
    st.sampled_from(sorted(REFUSALS)),
    st.sampled_from(list(FailureKind)),
)
events = st.builds(
    Event,
    failure=st.builds(Failure, kind=kinds, evidence=st.just("line"), numbers=fit_numbers()),
    exit_status=st.sampled_from([1, 0, -9, 137, None]),
    duration_s=st.floats(0.5, 3000.0),
    healthy_for_s=st.none() | st.floats(0.0, 2000.0),
    gap_s=st.floats(0.0, 5.0),
)


@st.composite
def users_policies(draw: st.DrawFn) -> Policy:
    """A policy a user may write: any step on the flags the ladders touch, `set`s of any value
    (up or down from the user's) and `remove`s of booleans among them (B4, B5)."""
    flags = st.sampled_from([*NUMERIC, "--cpu-offload-gb"])
    step = st.one_of(
        st.builds(lambda f, v: Step("set", flag=f, value=str(v)), flags, st.integers(1, 200_000)),
        st.builds(
            lambda f: Step("remove", flag=f), st.sampled_from([*NUMERIC, "--enforce-eager", "--enable-lora"])
        ),
        st.builds(lambda f: Step("flag", flag=f), st.sampled_from(["--enforce-eager"])),
        st.builds(
            lambda f, x: Step("scale", flag=f, factor=x, floor=1.0),
            st.sampled_from(NUMERIC),
            st.sampled_from([0.5, 0.9]),
        ),
    )
    kinds_ = st.sampled_from([K.OOM_KV_CACHE, K.OOM_RUNTIME, K.OOM_WEIGHTS, K.OOM_CUDA_GRAPH])
    ladders = draw(
        st.dictionaries(kinds_, st.lists(step, max_size=4, unique_by=lambda s: s.label), max_size=3)
    )
    return Policy("mine", tuple((k, tuple(v)) for k, v in ladders.items()))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    user = draw(user_argvs())
    initial = draw(st.floats(0.1, 10.0))
    discipline = Discipline(
        max_restarts=draw(st.integers(1, 8)),
        window_s=draw(st.sampled_from([60.0, 600.0, 3600.0, 86400.0])),
        backoff_initial_s=initial,
        backoff_max_s=draw(st.floats(initial, 120.0)),
        backoff_jitter_s=draw(st.sampled_from([0.0, 1.0, 5.0])),
        healthy_reset_s=draw(st.sampled_from([30.0, 300.0])),
    )
    shipped = draw(st.sampled_from(sorted(POLICIES)).map(POLICIES.__getitem__) | users_policies())
    pinned = draw(st.just(frozenset[str]()) | st.frozensets(st.sampled_from(CANDIDATES), max_size=4))
    policy = Policy(shipped.name, shipped.ladders, pinned)
    facts = Facts(
        compute_capability=draw(st.sampled_from([(7, 0), (8, 9), None])),
        vllm_version=draw(st.sampled_from(["0.30.0", "0.32.0", None])),
    )
    return Scenario(
        user,
        discipline,
        policy,
        facts,
        tuple(draw(st.lists(events, min_size=1, max_size=14))),
        draw(st.integers()),
    )


def simulate(scenario: Scenario) -> list[Turn]:
    """The supervisor's loop without processes: each Relaunch's flags (and step) go to the next
    attempt; the run ends at a GiveUp, or ready when the failures run out."""
    rng = random.Random(scenario.seed)
    history: list[Attempt] = []
    turns: list[Turn] = []
    args, step, clock = scenario.user, None, 0.0
    for number, event in enumerate(scenario.events, start=1):
        ready_at = None if event.healthy_for_s is None else clock + event.duration_s
        ended_at = clock + event.duration_s + (event.healthy_for_s or 0.0)
        history.append(
            Attempt(number, args, clock, ended_at, ready_at, event.exit_status, event.failure, "", step)
        )
        decision = decide(
            tuple(history), scenario.discipline, ended_at, rng, policy=scenario.policy, facts=scenario.facts
        )
        turns.append(Turn(tuple(history), ended_at, decision))
        if isinstance(decision, GiveUp):
            break
        args, step = decision.vllm_args, decision.step
        clock = ended_at + decision.delay_s + event.gap_s
    return turns


def is_undo(turn: Turn) -> bool:
    """The one case decide() relaunches after a refusal: vLLM refused the guard's own step (and
    the restart budget still allows a restart: an undo counts against it like any other)."""
    last = turn.history[-1]
    refused_own = last.failure.kind in REFUSALS and last.step is not None and len(turn.history) > 1
    return refused_own and isinstance(turn.decision, Relaunch)


def relaunches(turns: Sequence[Turn]) -> list[tuple[Turn, Relaunch]]:
    return [(t, t.decision) for t in turns if isinstance(t.decision, Relaunch)]


def ladder_step(policy: Policy, kind: FailureKind, label: str) -> Step:
    return next(s for s in policy.ladder(kind) if s.label == label)


# --- 1. termination within the budget, permanent kinds --------------------------------------


@PROPERTY
@given(scenarios())
def test_relaunches_stay_within_the_budget_and_permanent_kinds_stop_at_once(scenario: Scenario) -> None:
    turns = simulate(scenario)
    d = scenario.discipline
    for turn in turns:
        last = turn.history[-1]
        if is_undo(turn):
            assert turn.decision == Relaunch(
                turn.history[-2].vllm_args, 0.0, turn.decision.reason, how="undo"
            )
            assert turn.decision.reason.startswith(f"undo {last.step}")
            continue
        # the budget counts restarts that changed no flag (same flags, undos), not ladder steps
        before = sum(1 for a in turn.history[1:] if a.started_at >= turn.now - d.window_s and a.step is None)
        if last.failure.permanent:
            assert isinstance(turn.decision, GiveUp)
            # a refusal of the guard's own step would be undone, but not past the budget
            refusal = last.failure.kind in (FailureKind.INVALID_ARGS, FailureKind.UNSUPPORTED_DTYPE_OR_QUANT)
            own_refused = (
                refusal and last.step is not None and len(turn.history) > 1 and before >= d.max_restarts
            )
            assert turn.decision.exit_code == (ExitCode.GAVE_UP if own_refused else ExitCode.PERMANENT)
            continue
        if isinstance(turn.decision, GiveUp):
            assert turn.decision.exit_code == ExitCode.GAVE_UP
            # Not before the budget is spent, unless the kind's ladder ended it.
            assert before >= d.max_restarts or scenario.policy.ladder(last.failure.kind)
            continue
        # This relaunch included, at most max_restarts same-flag restarts start within the window.
        if turn.decision.how != "step":
            assert before + 1 <= d.max_restarts
    # Only the last decision may give up; a run whose failures went on ended by then.
    assert all(isinstance(t.decision, Relaunch) for t in turns[:-1])
    assert len(turns) <= len(scenario.events)


def test_an_undo_counts_against_the_restart_budget() -> None:
    discipline = Discipline(1, 3600.0, 2.0, 60.0, 0.0, 300.0)
    user = ("--port", "8000")
    first = Attempt(1, user, 0.0, 10.0, None, 1, Failure(K.WORKER_DIED), "", None)
    again = decide([first], discipline, 10.0, random.Random(0), policy=POLICIES["default"])
    assert isinstance(again, Relaunch) and again.how == "same"  # restart 1 of 1
    second = Attempt(2, user, 12.0, 20.0, None, 1, Failure(K.OOM_WEIGHTS), "", None)
    stepped = decide([first, second], discipline, 20.0, random.Random(0), policy=POLICIES["default"])
    assert isinstance(stepped, Relaunch) and stepped.step == "set --quantization fp8"  # a step: no restart
    refused = Attempt(
        3, stepped.vllm_args, 21.0, 30.0, None, 1, Failure(K.UNSUPPORTED_DTYPE_OR_QUANT), "", stepped.step
    )
    undo = decide([first, second, refused], discipline, 30.0, random.Random(0), policy=POLICIES["default"])
    assert isinstance(undo, GiveUp), f"restart 2 with --max-restarts 1: {undo}"


# --- 2. only degrading, only the ladder's flags -----------------------------------------------


@PROPERTY
@given(scenarios())
def test_flags_only_degrade_from_the_users_and_come_from_the_ladder(scenario: Scenario) -> None:
    user = scenario.user
    policy = scenario.policy
    removed: set[str] = set()
    for turn, relaunch in relaunches(simulate(scenario)):
        last = turn.history[-1]
        new = relaunch.vllm_args
        if relaunch.step is not None:
            step = ladder_step(policy, last.failure.kind, relaunch.step)
            changed = {vllm_args.canonical(flag) for _, flag, _ in vllm_args.edits(last.vllm_args, new)}
            assert changed <= {vllm_args.canonical(step.flag)}
            if step.action == "remove":
                removed |= changed
            if step.action == "set" and changed:
                assert vllm_args.get(new, step.flag) in (
                    step.value,
                    vllm_args.spelled(step.flag, step.value, scenario.facts.vllm_version),
                )
        elif not is_undo(turn):
            assert new == last.vllm_args  # a same-flags restart
        for flag in NUMERIC:
            given_value = vllm_args.number(user, flag)
            if given_value is not None:
                now_value = vllm_args.number(new, flag)
                if now_value is None:  # removed: vLLM's default, where it is known and not more
                    now_value = flag_edits.DEFAULTS.get(flag, float("inf"))
                assert 0 < now_value <= given_value, (flag, user, new)
        offload = vllm_args.number(user, "--cpu-offload-gb") or 0.0
        assert (vllm_args.number(new, "--cpu-offload-gb") or 0.0) >= offload, (user, new)
        if (limits := vllm_args.get(user, "--limit-mm-per-prompt")) is not None:
            now_limits = json.loads(vllm_args.get(new, "--limit-mm-per-prompt") or "{}")
            assert 0 <= now_limits["image"] <= json.loads(limits)["image"]
        for flag in CANDIDATES:
            if vllm_args.has(user, flag) and flag not in removed:
                assert vllm_args.has(new, flag), (flag, user, new)
        for flag in UNTOUCHABLE:
            assert vllm_args.has(new, flag) == vllm_args.has(user, flag)
            assert vllm_args.get(new, flag) == vllm_args.get(user, flag)


# --- 3. pinned flags --------------------------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_pinned_flags_never_change(scenario: Scenario) -> None:
    for _, relaunch in relaunches(simulate(scenario)):
        for flag in scenario.policy.pinned:
            assert vllm_args.has(relaunch.vllm_args, flag) == vllm_args.has(scenario.user, flag)
            if flag in BOOLEANS:  # get() would read the next flag as its value
                assert vllm_args.is_on(relaunch.vllm_args, flag) == vllm_args.is_on(scenario.user, flag)
            else:
                assert vllm_args.get(relaunch.vllm_args, flag) == vllm_args.get(scenario.user, flag)


# --- 4. no step twice -------------------------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_a_step_is_never_taken_twice_while_vllm_has_not_served_since(scenario: Scenario) -> None:
    d = scenario.discipline
    taken: set[str] = set()
    for turn, relaunch in relaunches(simulate(scenario)):
        if turn.history[-1].healthy_for_s >= d.healthy_reset_s:
            taken = set()  # vLLM served long enough: the ladder starts over
        if relaunch.step is not None:
            assert relaunch.step not in taken, (relaunch.step, taken)
            taken.add(relaunch.step)


# --- 5. delays --------------------------------------------------------------------------------


@PROPERTY
@given(scenarios())
def test_only_same_flag_restarts_wait_and_never_past_the_backoff_cap(scenario: Scenario) -> None:
    d = scenario.discipline
    for turn, relaunch in relaunches(simulate(scenario)):
        if relaunch.step is None and not is_undo(turn):
            assert 0 < relaunch.delay_s <= d.backoff_max_s + d.backoff_jitter_s
        else:
            assert relaunch.delay_s == 0.0


# --- 6. the argv editor -----------------------------------------------------------------------

VALUE_FLAGS = (
    "--max-model-len",
    "--gpu-memory-utilization",
    "--kv-cache-dtype",
    "--port",
    "--limit-mm-per-prompt",
    "--tensor-parallel-size",
    "--served-model-name",
)
BOOL_FLAGS = ("--enforce-eager", "--enable-lora", "--trust-remote-code")
# vLLM's short forms: after a boolean they are the next flag, never the boolean's value (B5)
SHORT_FLAGS = (
    ("-tp", "--tensor-parallel-size"),
    ("-q", "--quantization"),
    ("-pp", "--pipeline-parallel-size"),
)
values = st.text('abcxyz0123456789.:{}",_', min_size=1, max_size=12)


def vllm_reads(args: Sequence[str]) -> dict[str, str | None]:
    """The flags as vLLM's parser reads them, from this test's own knowledge of which flag is a
    boolean: an oracle that does not share vllm_args' reading (only its name spellings)."""
    short = dict(SHORT_FLAGS)
    found: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        name, eq, inline = args[i].partition("=")
        name = short.get(name, "--" + name[2:].replace("_", "-"))
        if name in BOOL_FLAGS:
            found[name] = None
        elif eq:
            found[name] = inline
        else:
            found[name] = args[i + 1]
            i += 1
        i += 1
    return found


@st.composite
def argvs(draw: st.DrawFn) -> tuple[str, ...]:
    """Well-formed argvs: value flags with a value (any spelling, repeats allowed) and booleans."""
    out: list[str] = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            out += spelling(draw(st.sampled_from(VALUE_FLAGS)), draw(values), draw(st.integers(0, 3)))
        else:
            out += spelling(draw(st.sampled_from(BOOL_FLAGS)), None, draw(st.integers(0, 3)))
            if draw(st.booleans()):
                out += [draw(st.sampled_from(SHORT_FLAGS))[0], draw(st.sampled_from(["2", "fp8", "1"]))]
    return tuple(out)


@PROPERTY
@given(argvs(), st.sampled_from(VALUE_FLAGS), values)
def test_set_value_then_get_gives_the_value_once(args: tuple[str, ...], flag: str, value: str) -> None:
    edited = vllm_args.set_value(args, flag, value)
    assert vllm_args.get(edited, flag) == value
    assert len(vllm_args.occurrences(edited, flag)) == 1
    for other in VALUE_FLAGS:
        if other != flag:
            assert vllm_args.get(edited, other) == vllm_args.get(args, other)


@PROPERTY
@given(argvs(), st.sampled_from(VALUE_FLAGS + BOOL_FLAGS))
def test_remove_then_has_is_false(args: tuple[str, ...], flag: str) -> None:
    edited = vllm_args.remove(args, flag, takes_value=flag in VALUE_FLAGS)
    assert not vllm_args.has(edited, flag)
    for other in VALUE_FLAGS:
        if other != flag:
            assert vllm_args.get(edited, other) == vllm_args.get(args, other)


@st.composite
def edited_pairs(draw: st.DrawFn) -> tuple[tuple[str, ...], tuple[str, ...]]:
    before = draw(argvs())
    after = before
    for _ in range(draw(st.integers(0, 4))):
        action = draw(st.sampled_from(["set", "remove", "flag"]))
        if action == "set":
            after = vllm_args.set_value(after, draw(st.sampled_from(VALUE_FLAGS)), draw(values))
        elif action == "flag":
            after = vllm_args.set_flag(after, draw(st.sampled_from(BOOL_FLAGS)))
        else:
            flag = draw(st.sampled_from(VALUE_FLAGS + BOOL_FLAGS))
            after = vllm_args.remove(after, flag, takes_value=flag in VALUE_FLAGS)
    return before, after


@PROPERTY
@given(edited_pairs())
def test_edits_replayed_on_before_give_after(pair: tuple[tuple[str, ...], tuple[str, ...]]) -> None:
    before, after = pair
    replayed = tuple(before)
    for action, flag, value in vllm_args.edits(before, after):  # as the door makes each change
        if action == "remove":
            replayed = vllm_args.remove(replayed, flag)
        elif value is None:
            replayed = vllm_args.set_flag(replayed, flag)
        else:
            replayed = vllm_args.set_value(replayed, flag, value)
    assert vllm_reads(replayed) == vllm_reads(after)
    assert vllm_args.as_dict(before) == vllm_reads(before)


@PROPERTY
@given(user_argvs())
def test_the_user_spellings_all_read_alike(args: tuple[str, ...]) -> None:
    canonical = tuple(vllm_args.canonical(a.partition("=")[0]) if a.startswith("--") else a for a in args)
    for flag in CANDIDATES:
        assert vllm_args.has(args, flag) == any(a == flag for a in canonical)
