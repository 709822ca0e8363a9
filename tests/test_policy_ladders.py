"""decide() with ladders, from histories built by a helper: every rule the guard always keeps."""

from __future__ import annotations

import json
import random

from vllm_guard import policy_file, vllm_args
from vllm_guard.errors import ExitCode
from vllm_guard.failures import Failure, FailureKind
from vllm_guard.policy import Attempt, Discipline, Facts, GiveUp, Policy, Relaunch, Step, decide

K = FailureKind
DISCIPLINE = Discipline(5, 3600.0, 2.0, 60.0, 0.0, 300.0)
DEFAULT = policy_file.load("default").policy()


def attempt(args: tuple[str, ...], kind: FailureKind, numbers: dict[str, int | float | str] | None = None,
            step: str | None = None, number: int = 1) -> Attempt:  # fmt: skip
    return Attempt(
        number,
        args,
        float(number),
        float(number) + 1,
        None,
        1,
        Failure(kind, "line", numbers or {}),
        "",
        step,
    )


NO_FACTS = Facts()


def next_after(
    history: list[Attempt], policy: Policy = DEFAULT, facts: Facts = NO_FACTS
) -> Relaunch | GiveUp:
    return decide(history, DISCIPLINE, now=100.0, rng=random.Random(0), policy=policy, facts=facts)


def test_max_model_len_is_fitted_to_vllms_estimate_at_once() -> None:
    failed = attempt(("--max-model-len", "4096", "--enforce-eager"), K.MAX_MODEL_LEN_TOO_LARGE,
                     {"max_model_len": 4096, "estimated_max_model_len": 768})  # fmt: skip
    decision = next_after([failed])
    assert decision == Relaunch(("--max-model-len", "768", "--enforce-eager"), 0.0,
                                "max_model_len_too_large: fit --max-model-len", step="fit --max-model-len", how="step")  # fmt: skip


def test_capacity_only_is_rounded_down_to_the_block_size() -> None:
    failed = attempt(("--max-model-len", "29000"), K.MAX_MODEL_LEN_TOO_LARGE, {"kv_cache_tokens": 23650})
    assert isinstance(d := next_after([failed]), Relaunch)
    assert d.vllm_args == ("--max-model-len", "23648")
    with_blocks = attempt(
        ("--max-model-len", "29000", "--block-size", "32"),
        K.MAX_MODEL_LEN_TOO_LARGE,
        {"kv_cache_tokens": 23650},
    )
    assert isinstance(d := next_after([with_blocks]), Relaunch)
    assert d.vllm_args[1] == "23648" and int(d.vllm_args[1]) % 32 == 0


def test_utilization_is_fitted_to_what_is_free() -> None:
    gib = 2**30
    failed = attempt(("--port", "1"), K.INSUFFICIENT_FREE_MEMORY,
                     {"free_bytes": int(59.32 * gib), "total_bytes": int(79.15 * gib), "gpu_memory_utilization": 0.9})  # fmt: skip
    assert isinstance(d := next_after([failed]), Relaunch)
    assert d.vllm_args == ("--port", "1", "--gpu-memory-utilization", "0.72")  # 59.32/79.15 - 0.02, down


def test_a_fit_never_raises_what_the_user_asked() -> None:
    failed = attempt(("--max-model-len", "512"), K.MAX_MODEL_LEN_TOO_LARGE, {"estimated_max_model_len": 768})
    decision = next_after([failed])
    assert isinstance(decision, GiveUp)
    assert decision.exit_code == ExitCode.GAVE_UP
    assert "ladder ran out" in decision.reason


def test_a_pinned_flag_is_never_touched() -> None:
    pinned = Policy(DEFAULT.name, DEFAULT.ladders, frozenset({"--max-model-len"}))
    failed = attempt(("--max-model-len", "4096"), K.MAX_MODEL_LEN_TOO_LARGE, {"estimated_max_model_len": 768})
    assert isinstance(next_after([failed], pinned), GiveUp)


def test_the_ladder_goes_on_and_never_repeats_a_step() -> None:
    first = attempt(("--max-model-len", "8192"), K.OOM_CUDA_GRAPH)
    d1 = next_after([first])
    assert isinstance(d1, Relaunch) and d1.vllm_args == ("--max-model-len", "8192", "--enforce-eager")
    second = attempt(d1.vllm_args, K.OOM_CUDA_GRAPH, step=d1.step, number=2)
    d2 = next_after([first, second])
    assert isinstance(d2, Relaunch)
    assert d2.vllm_args == ("--max-model-len", "8192", "--enforce-eager", "--gpu-memory-utilization", "0.87")
    third = attempt(d2.vllm_args, K.OOM_CUDA_GRAPH, step=d2.step, number=3)
    assert isinstance(next_after([first, second, third]), GiveUp)


def test_a_scale_stops_at_its_floor() -> None:
    policy = Policy(
        "t", ((K.OOM_RUNTIME, (Step("scale", flag="--max-num-seqs", factor=0.5, floor=8, default=256),)),)
    )
    failed = attempt(("--max-num-seqs", "8"), K.OOM_RUNTIME)
    assert isinstance(next_after([failed], policy), GiveUp)
    failed = attempt(("--max-num-seqs", "12"), K.OOM_RUNTIME)
    assert isinstance(d := next_after([failed], policy), Relaunch) and d.vllm_args == ("--max-num-seqs", "8")


def test_the_guards_own_step_is_undone_when_vllm_refuses_it() -> None:
    first = attempt(("--port", "1"), K.OOM_WEIGHTS)
    d1 = next_after([first])
    assert isinstance(d1, Relaunch) and d1.vllm_args == ("--port", "1", "--quantization", "fp8")
    refused = attempt(d1.vllm_args, K.UNSUPPORTED_DTYPE_OR_QUANT, step=d1.step, number=2)
    undo = next_after([first, refused])
    assert isinstance(undo, Relaunch) and undo.vllm_args == ("--port", "1")
    assert undo.reason.startswith("undo set --quantization fp8")


def test_fp8_is_not_tried_where_the_gpu_is_known_to_lack_it() -> None:
    failed = attempt(("--port", "1"), K.OOM_WEIGHTS)
    decision = next_after([failed], facts=Facts(compute_capability=(7, 0)))
    assert isinstance(decision, Relaunch)
    assert "--quantization" not in decision.vllm_args
    assert decision.vllm_args[-2:] == ("--cpu-offload-gb", "8")


def test_steps_are_written_in_the_spelling_of_the_vllm_that_runs() -> None:
    failed = attempt(("--port", "1"), K.OOM_WEIGHTS)
    for version, expected in (
        ("0.32.0", "fp8_per_tensor"),
        ("0.31.0rc1", "fp8_per_tensor"),
        ("0.30.2", "fp8"),
    ):
        decision = next_after([failed], facts=Facts(vllm_version=version))
        assert isinstance(decision, Relaunch)
        assert decision.vllm_args[-2:] == ("--quantization", expected), version
        assert decision.step == "set --quantization fp8"  # the step keeps its policy name
    assert next_after([failed]).vllm_args[-2:] == ("--quantization", "fp8")  # type: ignore[union-attr]


def test_a_step_the_user_already_took_in_the_new_spelling_is_skipped() -> None:
    failed = attempt(("--quantization", "fp8_per_tensor"), K.OOM_WEIGHTS)
    decision = next_after([failed], facts=Facts(vllm_version="0.33.0"))
    assert isinstance(decision, Relaunch)
    assert decision.step != "set --quantization fp8"


def test_a_give_up_step_ends_with_exit_4_and_its_message() -> None:
    history = [attempt(("--port", "1"), K.OOM_WEIGHTS, number=1)]
    history.append(
        attempt(
            ("--port", "1", "--quantization", "fp8"), K.OOM_WEIGHTS, step="set --quantization fp8", number=2
        )
    )
    history.append(
        attempt(
            ("--port", "1", "--quantization", "fp8", "--cpu-offload-gb", "8"),
            K.OOM_WEIGHTS,
            step="set --cpu-offload-gb 8",
            number=3,
        )
    )
    decision = next_after(history)
    assert isinstance(decision, GiveUp) and decision.exit_code == ExitCode.GAVE_UP
    assert "tensor-parallel-size" in decision.reason


def test_permanent_kinds_stop_with_exit_5_and_what_to_do() -> None:
    for kind, advice in ((K.HF_AUTH, "HF_TOKEN"), (K.TRUST_REMOTE_CODE, "--trust-remote-code"),
                         (K.SHM_TOO_SMALL, "--shm-size"), (K.MODEL_NOT_FOUND, "path")):  # fmt: skip
        decision = next_after([attempt(("--port", "1"), kind)])
        assert isinstance(decision, GiveUp) and decision.exit_code == ExitCode.PERMANENT
        assert advice in decision.reason


def test_kinds_without_a_ladder_restart_with_the_same_flags_after_a_backoff() -> None:
    for kind in (K.WORKER_DIED, K.HUNG, K.UNKNOWN, K.HUB_UNREACHABLE, K.PORT_IN_USE):
        decision = next_after([attempt(("--port", "1"), kind)])
        assert isinstance(decision, Relaunch) and decision.vllm_args == ("--port", "1")
        assert decision.delay_s == 2.0 and decision.step is None


def test_an_env_step_sets_variables_for_the_next_attempts() -> None:
    policy = Policy(
        "t",
        ((K.OOM_RUNTIME, (Step("env", env=(("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),)),)),),
    )
    decision = next_after([attempt(("--port", "1"), K.OOM_RUNTIME)], policy)
    assert isinstance(decision, Relaunch)
    assert decision.env == (("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True"),)


def test_feature_steps_apply_only_when_the_feature_is_on() -> None:
    plain = next_after([attempt(("--max-num-seqs", "8", "--max-num-batched-tokens", "512"), K.OOM_RUNTIME)])
    assert isinstance(plain, Relaunch) and "--max-loras" not in plain.vllm_args
    lora = attempt(("--enable-lora", "--max-loras", "4", "--max-num-seqs", "8", "--max-num-batched-tokens", "512",
                    "--gpu-memory-utilization", "0.5"), K.OOM_RUNTIME)  # fmt: skip
    decision = next_after([lora])
    assert isinstance(decision, Relaunch) and vllm_args.get(decision.vllm_args, "--max-loras") == "2"
    spec = attempt(("--speculative-config", '{"method": "ngram"}', "--port", "1"), K.OOM_KV_CACHE)
    decision = next_after([spec])
    assert isinstance(decision, Relaunch) and decision.vllm_args == ("--port", "1")


def test_values_from_the_config_file_are_read_and_the_command_line_overrides_them() -> None:
    def with_config(kind: FailureKind, config: dict[str, object], args: tuple[str, ...] = ("--config", "c.yaml"),
                    numbers: dict[str, int | float | str] | None = None) -> Relaunch | GiveUp:  # fmt: skip
        history = [attempt(args, kind, numbers)]
        return decide(history, DISCIPLINE, now=100.0, rng=random.Random(0), policy=DEFAULT, config=config)

    # eager already on in the file: the ladder's next step, not a no-op relaunch
    decision = with_config(K.OOM_CUDA_GRAPH, {"enforce_eager": True})
    assert isinstance(decision, Relaunch) and "--enforce-eager" not in decision.vllm_args
    # a scale starts from the file's value, never from vLLM's larger default
    decision = with_config(K.OOM_RUNTIME, {"max_num_seqs": 64})
    assert isinstance(decision, Relaunch)
    assert decision.vllm_args == ("--config", "c.yaml", "--max-num-seqs", "32")
    # a fit never raises the file's value
    decision = with_config(
        K.MAX_MODEL_LEN_TOO_LARGE, {"max_model_len": 4096}, numbers={"estimated_max_model_len": 6000}
    )
    assert not (
        isinstance(decision, Relaunch) and vllm_args.get(decision.vllm_args, "--max-model-len") == "6000"
    )
    # a feature switched on in the file lets its steps apply
    decision = with_config(K.OOM_RUNTIME, {"enable_lora": True, "max_loras": 4, "max_num_seqs": 8,
                                           "max_num_batched_tokens": 512, "gpu_memory_utilization": 0.5})  # fmt: skip
    assert isinstance(decision, Relaunch) and vllm_args.get(decision.vllm_args, "--max-loras") == "2"
    # the command line wins over the file, as in vLLM
    decision = with_config(
        K.OOM_RUNTIME, {"max_num_seqs": 64}, args=("--config", "c.yaml", "--max-num-seqs", "16")
    )
    assert isinstance(decision, Relaunch) and vllm_args.get(decision.vllm_args, "--max-num-seqs") == "8"
    # a value only the file holds cannot be removed from the command line: that step is passed over
    decision = with_config(K.OOM_KV_CACHE, {"speculative_config": {"method": "ngram"}})
    assert isinstance(decision, Relaunch) and decision.step != "remove --speculative-config"


def test_multimodal_limits_are_halved_item_by_item_in_the_form_they_were_given() -> None:
    def after(limit: str) -> str | None:
        args = ("--limit-mm-per-prompt", limit, "--max-num-seqs", "8", "--max-num-batched-tokens", "512",
                "--gpu-memory-utilization", "0.5")  # fmt: skip
        decision = next_after([attempt(args, K.OOM_RUNTIME)])
        return (
            vllm_args.get(decision.vllm_args, "--limit-mm-per-prompt")
            if isinstance(decision, Relaunch)
            else None
        )

    assert json.loads(after('{"image": 8, "video": 2}') or "") == {"image": 4, "video": 1}
    nested = json.loads(after('{"image": 5, "video": {"count": 4, "num_frames": 32}}') or "")
    assert nested == {"image": 2, "video": {"count": 2, "num_frames": 32}}  # only counts change
    assert after("image=6,audio=1") == "image=3,audio=1"  # the older form stays in its form
    # at the floor everywhere: the step is passed over and the ladder ends
    assert after('{"image": 1}') is None
    without = next_after([attempt(("--max-num-seqs", "8", "--max-num-batched-tokens", "512",
                                   "--gpu-memory-utilization", "0.5"), K.OOM_RUNTIME)])  # fmt: skip
    assert isinstance(without, GiveUp)  # no limit given: vLLM's own, not known to the guard


def test_lora_rank_is_halved_down_to_vllms_default_only_with_lora_on() -> None:
    base = ("--max-num-seqs", "8", "--max-num-batched-tokens", "512", "--gpu-memory-utilization", "0.5")
    lora = attempt(("--enable-lora", "--max-loras", "1", "--max-lora-rank", "64", *base), K.OOM_RUNTIME)
    decision = next_after([lora])
    assert isinstance(decision, Relaunch) and vllm_args.get(decision.vllm_args, "--max-lora-rank") == "32"
    at_default = attempt(("--enable-lora", "--max-loras", "1", "--max-lora-rank", "16", *base), K.OOM_RUNTIME)
    assert isinstance(next_after([at_default]), GiveUp)


def test_a_quantization_the_user_chose_is_never_replaced_by_another() -> None:
    # an AWQ checkpoint would refuse fp8, and the undo would cost an attempt: skip to the next step
    decision = next_after([attempt(("--quantization", "awq"), K.OOM_WEIGHTS)])
    assert isinstance(decision, Relaunch)
    assert vllm_args.get(decision.vllm_args, "--quantization") == "awq"
    assert decision.step == "set --cpu-offload-gb 8"


def test_undoing_its_own_step_counts_against_the_restart_budget() -> None:
    tight = Discipline(1, 3600.0, 2.0, 60.0, 0.0, 300.0)
    first = attempt(("--port", "1"), K.OOM_WEIGHTS)
    refused = attempt(("--port", "1", "--quantization", "fp8"), K.UNSUPPORTED_DTYPE_OR_QUANT,
                      step="set --quantization fp8", number=2)  # fmt: skip
    # the ladder's step was no restart of the budget's; the undo is the first, within --max-restarts 1
    decision = decide([first, refused], tight, now=100.0, rng=random.Random(0), policy=DEFAULT)
    assert isinstance(decision, Relaunch) and decision.how == "undo"
    assert decision.vllm_args == ("--port", "1")
    again = attempt(("--port", "1"), K.WORKER_DIED, number=2)  # a same-flags restart spent it
    refused = attempt(("--port", "1", "--quantization", "fp8"), K.UNSUPPORTED_DTYPE_OR_QUANT,
                      step="set --quantization fp8", number=3)  # fmt: skip
    decision = decide([first, again, refused], tight, now=100.0, rng=random.Random(0), policy=DEFAULT)
    assert isinstance(decision, GiveUp) and decision.exit_code == ExitCode.GAVE_UP


def test_an_oom_whose_phase_nothing_told_gets_only_steps_safe_while_serving() -> None:
    # A guessed oom_weights must never quantize what may be a serving OOM: the step the serving
    # ladder shares (the draft model's memory back) first, then the same flags with a backoff.
    guessed = Failure(K.OOM_WEIGHTS, "torch.OutOfMemoryError: CUDA out of memory.", phase_known=False)
    spec = ("--speculative-config", '{"model": "d", "num_speculative_tokens": 3}')
    first = decide([Attempt(1, spec, 1.0, 2.0, None, 1, guessed)], DISCIPLINE, now=100.0,
                   rng=random.Random(0), policy=DEFAULT)  # fmt: skip
    assert isinstance(first, Relaunch) and first.step == "remove --speculative-config"
    plain = decide([Attempt(1, ("--port", "1"), 1.0, 2.0, None, 1, guessed)], DISCIPLINE, now=100.0,
                   rng=random.Random(0), policy=DEFAULT)  # fmt: skip
    assert isinstance(plain, Relaunch)
    assert plain.vllm_args == ("--port", "1") and plain.step is None and plain.delay_s == 2.0
    told = Failure(K.OOM_WEIGHTS, "torch.OutOfMemoryError: CUDA out of memory.")
    known = decide([Attempt(1, ("--port", "1"), 1.0, 2.0, None, 1, told)], DISCIPLINE, now=100.0,
                   rng=random.Random(0), policy=DEFAULT)  # fmt: skip
    assert isinstance(known, Relaunch) and "--quantization" in known.vllm_args
