"""The one door for flag edits: every rule, and the paths that used to go round it (review B1, B4, B5)."""

from __future__ import annotations

import random
from pathlib import Path

from vllm_guard import cli, flag_edits, policy_file, settings, vllm_args, vllm_config
from vllm_guard.failures import Failure, FailureKind
from vllm_guard.flag_edits import Change, Refused, Rules, apply, changes_between, rebuild
from vllm_guard.policy import Attempt, Discipline, GiveUp, Policy, Relaunch, Step, decide

D = Discipline(5, 3600, 2, 60, 0, 300)


def first_decision(args: tuple[str, ...], kind: FailureKind, policy: Policy) -> Relaunch | GiveUp:
    return decide(
        [Attempt(1, args, 0.0, 1.0, None, 1, Failure(kind, "x"))], D, 1.0, random.Random(0), policy=policy
    )


def test_a_set_never_raises_a_users_value() -> None:
    mine = Policy("mine", ((FailureKind.OOM_KV_CACHE, (Step("set", flag="--max-model-len", value="4096"),)),))
    decision = first_decision(("--max-model-len", "2048"), FailureKind.OOM_KV_CACHE, mine)
    assert isinstance(decision, GiveUp)  # the ladder had nothing safe to do
    refused = apply(
        ("--max-model-len", "2048"),
        Change("set", "--max-model-len", "4096"),
        Rules(("--max-model-len", "2048")),
    )
    assert isinstance(refused, Refused) and "above the current value 2048" in refused.reason


def test_cpu_offload_is_never_lowered_after_a_weights_oom() -> None:
    default = policy_file.load("default").policy()
    decision = first_decision(
        ("--quantization", "awq", "--cpu-offload-gb", "16"), FailureKind.OOM_WEIGHTS, default
    )
    # neither fp8 over AWQ nor 8 GiB of offload below the user's 16: the ladder's give_up is next
    assert isinstance(decision, GiveUp) and "do not fit" in decision.reason


def test_a_first_offload_is_above_vllms_default_of_none() -> None:
    assert apply((), Change("set", "--cpu-offload-gb", "8"), Rules(())) == ("--cpu-offload-gb", "8")
    refused = apply(
        ("--cpu-offload-gb", "8"), Change("remove", "--cpu-offload-gb"), Rules(("--cpu-offload-gb", "8"))
    )
    assert isinstance(refused, Refused)


def test_removing_a_boolean_removes_only_that_flag() -> None:
    user = ("--enable-chunked-prefill", "--max-model-len", "8192", "--port", "8000")
    mine = Policy("mine", ((FailureKind.OOM_KV_CACHE, (Step("remove", flag="--enable-chunked-prefill"),)),))
    decision = first_decision(user, FailureKind.OOM_KV_CACHE, mine)
    assert isinstance(decision, Relaunch)
    assert decision.vllm_args == ("--max-model-len", "8192", "--port", "8000")
    # vLLM < 0.8.5's StoreBoolean took an optional true/false: that goes with it, nothing else
    old = ("--enable-chunked-prefill", "true", "--max-model-len", "8192")
    assert vllm_args.remove(old, "--enable-chunked-prefill") == ("--max-model-len", "8192")


def test_a_boolean_before_a_short_flag_is_read_as_a_boolean() -> None:
    assert vllm_args.as_dict(["--enforce-eager", "-tp", "2"]) == {
        "--enforce-eager": None,
        "--tensor-parallel-size": "2",
    }
    assert vllm_args.as_dict(["--max-model-len", "-1"]) == {"--max-model-len": "-1"}


def test_an_equivalent_value_is_no_change() -> None:
    refused = apply(("--dtype", "float16"), Change("set", "--dtype", "half"), Rules(("--dtype", "float16")))
    assert isinstance(refused, Refused) and refused.reason == "nothing would change"


def test_a_pinned_flag_never_changes_on_any_path() -> None:
    rules = Rules(("--max-model-len", "32768"), pinned=frozenset({"--max-model-len"}))
    assert isinstance(apply(rules.user_args, Change("set", "--max-model-len", "4096"), rules), Refused)
    remembered = ("--max-model-len", "4096", "--quantization", "fp8")
    rebuilt, refused = rebuild(remembered, rules)
    assert rebuilt == ("--max-model-len", "32768", "--quantization", "fp8")
    assert [str(r) for r in refused] == ["--max-model-len 4096: pinned"]


def test_an_undo_rebuilds_the_flags_before_the_refused_step() -> None:
    policy = policy_file.load("default").policy()
    user = ("--max-model-len", "8192")
    first = Attempt(1, user, 0.0, 1.0, None, 1, Failure(FailureKind.OOM_WEIGHTS, "x"))
    stepped = decide([first], D, 1.0, random.Random(0), policy=policy)
    assert isinstance(stepped, Relaunch) and stepped.how == "step"
    refused = Attempt(
        2,
        stepped.vllm_args,
        2.0,
        3.0,
        None,
        1,
        Failure(FailureKind.UNSUPPORTED_DTYPE_OR_QUANT, "x"),
        "",
        stepped.step,
    )
    undo = decide([first, refused], D, 3.0, random.Random(0), policy=policy)
    assert isinstance(undo, Relaunch) and undo.how == "undo" and undo.vllm_args == user


def test_fp8_is_refused_on_a_gpu_known_to_lack_it() -> None:
    volta = Rules((), compute_capability=(7, 0))
    refused = apply((), Change("set", "--quantization", "fp8"), volta)
    assert isinstance(refused, Refused) and "7.5" in refused.reason
    assert apply((), Change("set", "--quantization", "fp8"), Rules((), version="0.32.0")) == (
        "--quantization",
        "fp8_per_tensor",
    )


def test_human_readable_sizes_are_compared_as_vllm_reads_them() -> None:
    rules = Rules(("--max-num-batched-tokens", "8k"))
    assert isinstance(
        apply(rules.user_args, Change("set", "--max-num-batched-tokens", "9000"), rules), Refused
    )
    assert apply(rules.user_args, Change("set", "--max-num-batched-tokens", "4096"), rules) == (
        "--max-num-batched-tokens",
        "4096",
    )


def test_O0_is_the_optimization_level_from_012() -> None:
    assert vllm_args.get(["-O0"], "--optimization-level") == "0"
    assert vllm_args.get(["-O", "0"], "--optimization-level") == "0"
    assert vllm_args.get(["-O=3"], "--optimization-level") == "3"
    assert vllm_args.get(["-O0"], "--optimization-level", version="0.11.0") is None
    assert vllm_args.get(["-cc", '{"mode": 0}'], "--compilation-config") == '{"mode": 0}'


def test_changes_between_round_trip_through_the_door() -> None:
    user = ("--enforce-eager", "-tp", "2", "--max-model-len", "8192")
    after = ("-tp", "2", "--max-model-len", "4096", "--kv-cache-dtype", "fp8", "--enforce-eager")
    changes = changes_between(user, after, None)
    rebuilt, refused = rebuild(after, Rules(user))
    assert not refused and vllm_args.as_dict(rebuilt) == vllm_args.as_dict(after), changes


def test_every_written_form_of_pin_pins_the_flag() -> None:
    """`--pin --max-model-len` was refused by argparse and `--pin max-model-len` pinned nothing."""
    for given in (
        ["--pin", "--max-model-len"],
        ["--pin", "max-model-len"],
        ["--pin=--max-model-len"],
        ["--pin", "max_model_len"],
    ):
        ns = cli._parser().parse_args(cli._pin_values_joined([*given, "serve", "m", "--pin", "x"]))
        assert settings.load({"pin": ns.pin}).pinned == {"--max-model-len"}, given
        assert ns.rest == ["m", "--pin", "x"]  # vLLM's own argv is never touched
    both = settings.load({"pin": "max-model-len, --quantization"})
    assert both.pinned == {"--max-model-len", "--quantization"}


# --- a second review's findings, each as it was reproduced --------------------------------


def test_the_no_form_of_a_flag_is_the_same_flag_for_pins_and_rules() -> None:
    eager = Rules(("--enforce-eager",))
    refused = apply(eager.user_args, Change("on", "--no-enforce-eager"), eager)
    assert isinstance(refused, Refused) and "uses more memory" in refused.reason
    pinned = Rules(("--enable-prefix-caching",), pinned=frozenset({"--enable-prefix-caching"}))
    for flag in ("--no-enable-prefix-caching", "--disable-prefix-caching"):
        assert isinstance(apply(pinned.user_args, Change("on", flag), pinned), Refused)
    by_negation = Rules((), pinned=settings.load({"pin": "--disable-prefix-caching"}).pinned)
    assert isinstance(apply((), Change("on", "--enable-prefix-caching"), by_negation), Refused)


def test_vllms_own_length_fit_never_replaces_a_smaller_ask() -> None:
    rules = Rules(("--max-model-len", "4096"))
    for fit in ("auto", "-1"):
        assert isinstance(apply(rules.user_args, Change("set", "--max-model-len", fit), rules), Refused)
    at_the_maximum = Rules(("--max-model-len", "131072"), model_max_len=131072)
    assert apply(at_the_maximum.user_args, Change("set", "--max-model-len", "auto"), at_the_maximum) == (
        "--max-model-len",
        "auto",
    )


def test_a_count_map_is_never_raised_in_either_form() -> None:
    for user, more in (
        ('{"image": 4}', '{"image": 16}'),
        ("image=4", "image=16"),
        ('{"image": 4}', '{"image": 1, "video": 2}'),
    ):
        rules = Rules(("--limit-mm-per-prompt", user))
        assert isinstance(
            apply(rules.user_args, Change("set", "--limit-mm-per-prompt", more), rules), Refused
        )
    fewer = Rules(("--limit-mm-per-prompt", '{"image": 4}'))
    assert apply(fewer.user_args, Change("set", "--limit-mm-per-prompt", '{"image": 2}'), fewer) == (
        "--limit-mm-per-prompt",
        '{"image": 2}',
    )


def test_a_set_on_a_boolean_is_refused_and_an_old_optional_boolean_keeps_its_form() -> None:
    rules = Rules(("--enable-chunked-prefill", "--max-model-len", "8192"))
    assert isinstance(
        apply(rules.user_args, Change("set", "--enable-chunked-prefill", "false"), rules), Refused
    )
    old = Rules(("--enable-chunked-prefill", "true", "--max-model-len", "8192"), version="0.8.0")
    assert apply(old.user_args, Change("set", "--enable-chunked-prefill", "false"), old) == (
        "--enable-chunked-prefill",
        "false",
        "--max-model-len",
        "8192",
    )


def test_a_rebuild_keeps_an_explicit_no_form() -> None:
    rebuilt, refused = rebuild(("--no-enable-prefix-caching",), Rules(("--enable-prefix-caching",)))
    assert rebuilt == ("--no-enable-prefix-caching",) and not refused


def test_a_dotted_json_flag_counts_as_given_and_is_removed_whole() -> None:
    user = ("--speculative-config.method", "ngram", "-sc.num_speculative_tokens=3", "--max-model-len", "8192")
    assert vllm_args.has(user, "--speculative-config")
    assert apply(user, Change("remove", "--speculative-config"), Rules(user)) == ("--max-model-len", "8192")


def test_human_readable_numbers_are_scaled_from_what_vllm_reads() -> None:
    default = policy_file.load("default").policy()
    given = ("--max-num-seqs", "8", "--max-num-batched-tokens", "16k")
    decision = first_decision(given, FailureKind.OOM_RUNTIME, default)
    assert (
        isinstance(decision, Relaunch)
        and vllm_args.get(decision.vllm_args, "--max-num-batched-tokens") == "8000"
    )


def test_the_same_number_in_another_spelling_is_no_change() -> None:
    for given, again in (("8k", "8000"), ("0.9", "0.90")):
        rules = Rules(("--max-num-batched-tokens", given))
        refused = apply(rules.user_args, Change("set", "--max-num-batched-tokens", again), rules)
        assert isinstance(refused, Refused) and refused.reason == "nothing would change"


def test_the_users_quantization_is_never_taken_away_and_every_fp8_is_gated() -> None:
    awq = Rules(("--quantization", "awq"))
    assert isinstance(apply(awq.user_args, Change("remove", "--quantization"), awq), Refused)
    volta = Rules((), compute_capability=(7, 0))
    assert isinstance(apply((), Change("set", "--quantization", "fbgemm_fp8"), volta), Refused)


def test_a_pin_written_with_a_value_pins_the_flag() -> None:
    assert settings.load({"pin": "--gpu-memory-utilization=0.9"}).pinned == {"--gpu-memory-utilization"}


def test_a_boolean_still_on_in_the_config_file_is_no_removal(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("enforce_eager: true\nenable_prefix_caching: true\n")
    args = ("--config", str(config), "--enable-prefix-caching")
    refused = apply(
        args, Change("remove", "--enable-prefix-caching"), Rules(args, config=vllm_config.read(args))
    )
    assert isinstance(refused, Refused) and "--config" in refused.reason


def test_the_guards_polls_are_left_out_of_vllms_access_log_where_the_user_said_nothing_of_it() -> None:
    quiet = flag_edits.quiet_access_log
    args = ("--max-model-len", "8192")
    assert quiet(args, "0.32.0", frozenset()) == (
        *args,
        "--disable-access-log-for-endpoints",
        "/health,/metrics",
    )
    assert quiet(args, "0.15.1", frozenset()) is None  # the flag came in 0.16.0
    assert quiet(args, None, frozenset()) is None  # a vLLM of unknown age may not take it
    for own in (
        ("--disable-access-log-for-endpoints", "/ping"),
        ("--disable-uvicorn-access-log",),
        ("--log-config-file", "log.json"),
    ):
        assert quiet((*args, *own), "0.32.0", frozenset()) is None, own
    assert quiet(args, "0.33.0", frozenset({"--enable-uvicorn-access-log"})) is not None
    assert quiet((*args, "--enable-uvicorn-access-log"), "0.33.0", frozenset()) is None
    assert quiet(args, "0.32.0", frozenset({"--disable-access-log-for-endpoints"})) is None  # pinned
    # the --config file's values count as the flags they are
    assert quiet(args, "0.32.0", frozenset(), {"disable-uvicorn-access-log": True}) is None
    # not a flag that bears on memory: neither the known-good key nor a measured start changes
    assert "--disable-access-log-for-endpoints" not in flag_edits.memory_relevant(
        quiet(args, "0.32.0", frozenset()) or ()
    )


def test_with_fault_tolerance_the_engine_status_polls_are_left_out_of_the_access_log_too() -> None:
    quiet = flag_edits.quiet_access_log
    args = ("--enable-fault-tolerance",)
    assert quiet(args, "0.32.0", frozenset()) == (
        *args,
        "--disable-access-log-for-endpoints",
        "/health,/metrics,/fault_tolerance/status",
    )
    assert quiet(args, "0.34.0", frozenset())[-1] == "/health,/metrics,/v1/fault_tolerance/status"  # type: ignore[index]
    assert quiet((*args, "--no-enable-fault-tolerance"), "0.32.0", frozenset())[-1] == "/health,/metrics"  # type: ignore[index]
