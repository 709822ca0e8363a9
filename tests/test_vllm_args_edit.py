from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vllm_guard import vllm_args

SPELLINGS = st.sampled_from(["--max-model-len", "--max_model_len"])


def test_set_value_keeps_the_users_spelling_and_place() -> None:
    assert vllm_args.set_value(["--max_model_len", "4096", "--port", "1"], "--max-model-len", "768") == (
        "--max_model_len", "768", "--port", "1",
    )  # fmt: skip
    assert vllm_args.set_value(["--max-model-len=4096"], "--max-model-len", "768") == ("--max-model-len=768",)
    assert vllm_args.set_value(["--port", "1"], "--max-model-len", "768") == (
        "--port",
        "1",
        "--max-model-len",
        "768",
    )


def test_set_value_leaves_one_occurrence() -> None:
    args = ["--max-model-len", "1", "--x", "--max_model_len=2"]
    assert vllm_args.set_value(args, "--max-model-len", "3") == ("--x", "--max_model_len=3")


def test_remove_every_spelling_and_the_negation() -> None:
    args = ["--a", "1", "--quantization", "fp8", "--b", "--quantization=awq"]
    assert vllm_args.remove(args, "--quantization") == ("--a", "1", "--b")
    assert (
        vllm_args.remove(["--no-enforce-eager", "--enforce_eager"], "--enforce-eager", takes_value=False)
        == ()
    )


def test_boolean_flags() -> None:
    assert vllm_args.set_flag(["--no-enforce-eager"], "--enforce-eager") == ("--enforce-eager",)
    assert vllm_args.is_on(["--enforce-eager", "--no-enforce-eager"], "--enforce-eager") is False
    assert vllm_args.is_on(["--enforce_eager"], "--enforce-eager") is True
    assert vllm_args.set_flag(["--enforce-eager", "--port", "1"], "--enforce-eager", on=False) == (
        "--port",
        "1",
    )


def test_number() -> None:
    assert vllm_args.number(["--gpu-memory-utilization", "0.9"], "--gpu-memory-utilization") == 0.9
    assert vllm_args.number(["--max-model-len", "auto"], "--max-model-len") is None
    assert vllm_args.number([], "--max-model-len") is None


@given(
    before=st.lists(st.sampled_from(["--port", "8000", "--enforce-eager", "--dtype", "half"]), max_size=6),
    spelling=SPELLINGS,
    inline=st.booleans(),
    old=st.integers(1, 10**6),
    new=st.integers(1, 10**6),
)
def test_set_then_get_round_trips(before: list[str], spelling: str, inline: bool, old: int, new: int) -> None:
    given_args = [*before, f"{spelling}={old}"] if inline else [*before, spelling, str(old)]
    edited = vllm_args.set_value(given_args, "--max-model-len", str(new))
    assert vllm_args.get(edited, "--max-model-len") == str(new)
    assert len(vllm_args.occurrences(edited, "--max-model-len")) == 1
    assert vllm_args.get(vllm_args.remove(edited, "--max-model-len"), "--max-model-len") is None
