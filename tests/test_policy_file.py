"""Policy files: the shipped ones are valid and cover every kind text can show; a malformed one
is refused with its file, line and field; precedence of the restart settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_guard import policy_file, settings
from vllm_guard.advice import Thresholds
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.failures import PERMANENT_KINDS, FailureKind

SHIPPED = sorted(p.stem for p in policy_file.SHIPPED.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_policy_is_valid(name: str) -> None:
    spec = policy_file.load(name)
    assert spec.name == name


def test_the_default_policy_has_a_ladder_for_every_kind_a_flag_can_fix() -> None:
    ladders = policy_file.load("default").ladders
    fixable = {
        FailureKind.OOM_WEIGHTS, FailureKind.OOM_KV_CACHE, FailureKind.MAX_MODEL_LEN_TOO_LARGE,
        FailureKind.INSUFFICIENT_FREE_MEMORY, FailureKind.OOM_CUDA_GRAPH, FailureKind.OOM_RUNTIME,
        FailureKind.UNSUPPORTED_DTYPE_OR_QUANT,
    }  # fmt: skip
    assert fixable <= set(ladders)
    assert not (PERMANENT_KINDS & set(ladders))


def errors_of(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(GuardError) as error:
        policy_file.load(str(path))
    assert error.value.exit_code == ExitCode.USAGE
    return error.value.message


def test_a_bad_value_names_the_file_the_line_and_the_field(tmp_path: Path) -> None:
    message = errors_of(
        tmp_path,
        "name: mine\nladders:\n  oom_runtime:\n    - scale: {flag: --max-num-seqs, factor: 2}\n",
    )
    assert f"{tmp_path / 'bad.yaml'}:4: ladders.oom_runtime.0.scale.factor" in message


def test_an_unknown_kind_and_a_step_with_two_actions(tmp_path: Path) -> None:
    message = errors_of(tmp_path, "name: x\nladders:\n  oom_everything:\n    - flag: --enforce-eager\n")
    assert ":3: ladders.oom_everything" in message
    message = errors_of(tmp_path, "name: x\nladders:\n  oom_runtime:\n\n    - flag: --a\n      remove: --b\n")
    assert ":5: ladders.oom_runtime.0" in message and "exactly one of" in message


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    message = errors_of(tmp_path, "name: x\nladders: [\n  oops: {\n")
    assert str(tmp_path / "bad.yaml") in message and "not valid YAML" in message


def test_a_missing_policy_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(GuardError):
        policy_file.load(str(tmp_path / "nope.yaml"))


def test_command_line_and_environment_beat_the_policy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nrestart:\n  max_restarts: 9\n  grace_period_s: 7\npinned: [--max_model_len]\n")
    merged, policy = policy_file.effective(settings.load({"policy": str(path)}))
    assert merged.max_restarts == 9 and merged.grace_period_s == 7
    assert policy.pinned == frozenset({"--max-model-len"})
    monkeypatch.setenv("VLLM_GUARD_MAX_RESTARTS", "3")
    merged, policy = policy_file.effective(
        settings.load({"policy": str(path), "grace_period_s": "1", "pin": "--dtype"})
    )
    assert merged.max_restarts == 3 and merged.grace_period_s == 1
    assert policy.pinned == frozenset({"--max-model-len", "--dtype"})


def test_a_policy_may_say_what_preflight_does_under_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: careful\npreflight: warn\n")
    under, _ = policy_file.effective(settings.load({"policy": str(path)}))
    assert under.preflight == "warn"
    over, _ = policy_file.effective(settings.load({"policy": str(path), "preflight": "off"}))
    assert over.preflight == "off"
    path.write_text("name: careful\npreflight: sometimes\n")
    with pytest.raises(GuardError) as refused:
        policy_file.load(str(path))
    assert f"{path}:2: preflight" in refused.value.message


def test_the_default_policys_advice_is_the_advisors_own_defaults() -> None:
    # written out in default.yaml for whoever reads it; the two must not drift apart
    assert policy_file.load("default").advice.thresholds() == Thresholds()


def test_an_advice_threshold_out_of_range_names_its_line() -> None:
    text = "name: mine\nadvice:\n  requests_waiting: 10\n  kv_cache_usage: 1.5\n"
    with pytest.raises(GuardError) as bad:
        policy_file.parse(text, "mine.yaml")
    assert "mine.yaml:4: advice.kv_cache_usage: Input should be less than or equal to 1" in bad.value.message
    with pytest.raises(GuardError) as unknown:
        policy_file.parse("name: mine\nadvice:\n  queue_length: 10\n", "mine.yaml")
    assert "mine.yaml:3: advice.queue_length: Extra inputs are not permitted" in unknown.value.message
    assert (
        policy_file.parse(text.replace("1.5", "0.9"), "mine.yaml").advice.thresholds().requests_waiting == 10
    )
