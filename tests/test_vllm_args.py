from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vllm_guard import vllm_args


def test_every_spelling_reads_the_same() -> None:
    for args in (
        ["--max-model-len", "4096"],
        ["--max_model_len", "4096"],
        ["--max-model-len=4096"],
        ["--max_model_len=4096"],
    ):
        assert vllm_args.get(args, "--max-model-len") == "4096"


def test_the_last_occurrence_wins_like_argparse() -> None:
    assert vllm_args.get(["--port", "1", "--port=2"], "--port") == "2"


def test_missing_flag_gives_the_default() -> None:
    assert vllm_args.get(["--enforce-eager"], "--port", "8000") == "8000"
    assert vllm_args.get(["--port"], "--port", "8000") == "8000"


def test_boolean_presence() -> None:
    assert vllm_args.has(["--enforce_eager", "--port", "1"], "--enforce-eager")
    assert not vllm_args.has(["--port", "1"], "--enforce-eager")


def test_values_are_not_canonicalised() -> None:
    assert vllm_args.get(["--served-model-name", "my_model"], "--served-model-name") == "my_model"


@given(st.integers(min_value=1, max_value=65535), st.booleans(), st.booleans())
def test_round_trip_of_a_port(port: int, underscore: bool, inline: bool) -> None:
    name = "--some_port" if underscore else "--some-port"
    args = [f"{name}={port}"] if inline else [name, str(port)]
    assert vllm_args.get(["--enforce-eager", *args, "--x", "y"], "--some-port") == str(port)
