"""Property tests over the whole start path, not decide() alone: remembered flags replayed, then
preflight, then the launches and decisions over days. Every argv vLLM would be started with keeps
the user's pins and never moves a number past the user's own value the unsafe way."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from model_configs import LLAMA_31_8B
from test_policy_properties import NUMERIC, PROPERTY, UNTOUCHABLE, Scenario, scenarios

from vllm_guard import flag_edits, gpu, preflight, vllm_args
from vllm_guard.policy import Attempt, GiveUp, decide
from vllm_guard.startup import _replay

remembered_edits = st.lists(
    st.one_of(
        st.tuples(
            st.just("set"), st.sampled_from([*NUMERIC, "--cpu-offload-gb"]), st.integers(1, 300_000).map(str)
        ),
        st.tuples(st.just("set"), st.sampled_from(["--quantization", "--kv-cache-dtype"]), st.just("fp8")),
        st.tuples(st.just("set"), st.just("--enforce-eager"), st.none()),
        st.tuples(
            st.just("remove"), st.sampled_from([*NUMERIC, "--enforce-eager", "--cpu-offload-gb"]), st.none()
        ),
    ),
    max_size=5,
)


def launches(
    scenario: Scenario, edits: list[tuple[str, str, str | None]], card: str
) -> list[tuple[str, ...]]:
    version = scenario.facts.vllm_version
    pinned = scenario.policy.pinned
    first = _replay(scenario.user, edits, pinned, version)
    machine = preflight.Machine(gpus=gpu.planned(card, 1), token=True)
    model = preflight.ModelFacts("meta-llama/Llama-3.1-8B-Instruct", LLAMA_31_8B, cached=True)
    verdict = preflight.check(
        model, first, machine, allowed=preflight.Allowed(pinned=pinned), vllm_version=version
    )
    argvs = [verdict.start_argv]
    history: list[Attempt] = []
    clock, step = 0.0, None
    rng = random.Random(scenario.seed)
    for number, event in enumerate(scenario.events, start=1):
        ready_at = None if event.healthy_for_s is None else clock + event.duration_s
        ended_at = clock + event.duration_s + (event.healthy_for_s or 0.0)
        history.append(
            Attempt(number, argvs[-1], clock, ended_at, ready_at, event.exit_status, event.failure, "", step)
        )
        decision = decide(
            history,
            scenario.discipline,
            ended_at,
            rng,
            policy=scenario.policy,
            facts=scenario.facts,
            user_args=scenario.user,
        )
        if isinstance(decision, GiveUp):
            break
        argvs.append(decision.vllm_args)
        step = decision.step
        clock = ended_at + decision.delay_s + event.gap_s + 86400.0 * (number % 3 == 0)  # days pass
    return argvs


@settings(PROPERTY, max_examples=100)  # each example runs preflight and a whole run of decisions
@given(scenarios(), remembered_edits, st.sampled_from(["L4", "A100-SXM4-80GB", "H100", "V100"]))
def test_every_launch_keeps_the_pins_and_the_users_bounds(
    scenario: Scenario, edits: list[tuple[str, str, str | None]], card: str
) -> None:
    user = scenario.user
    for argv in launches(scenario, edits, card):
        for flag in scenario.policy.pinned:
            if flag in ("--enforce-eager", "--enable-lora"):
                assert vllm_args.is_on(argv, flag) == vllm_args.is_on(user, flag), (flag, user, argv)
            else:
                assert vllm_args.get(argv, flag) == vllm_args.get(user, flag), (flag, user, argv)
        for flag in NUMERIC:
            given_value = vllm_args.number(user, flag)
            if given_value is not None:
                now = vllm_args.get(argv, flag)
                number = vllm_args.number(argv, flag)
                if now is None:  # removed: vLLM's own default, where it is known and not more
                    assert flag_edits.DEFAULTS.get(flag, float("inf")) <= given_value, (flag, user, argv)
                    continue
                assert now in ("auto", "-1") or (number is not None and 0 < number <= given_value), (
                    flag,
                    user,
                    argv,
                )
        offload = vllm_args.number(user, "--cpu-offload-gb") or 0.0
        assert (vllm_args.number(argv, "--cpu-offload-gb") or 0.0) >= offload, (user, argv)
        if vllm_args.is_on(user, "--enforce-eager"):
            assert vllm_args.is_on(argv, "--enforce-eager")
        if vllm_args.get(user, "--quantization") is not None:
            assert vllm_args.get(argv, "--quantization") == vllm_args.get(user, "--quantization")
        for flag in UNTOUCHABLE:
            assert vllm_args.get(argv, flag) == vllm_args.get(user, flag)
