from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from vllm_guard import vllm_args
from vllm_guard.health import Endpoint, endpoint

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


def test_config_file_values_are_read_and_the_command_line_wins() -> None:
    args = ["--config", "serve.yaml", "--port", "9000"]
    assert vllm_args.config_file(args) == "serve.yaml"
    assert vllm_args.config_file(["--config=serve.yaml"]) is None  # vLLM ignores this spelling
    seen = vllm_args.with_config(
        args, {"port": 8001, "host": "127.0.0.2", "enforce_eager": True, "trust-remote-code": False}
    )
    assert vllm_args.get(seen, "--port") == "9000"
    assert vllm_args.get(seen, "--host") == "127.0.0.2"
    assert vllm_args.is_on(seen, "--enforce-eager")
    assert not vllm_args.has(seen, "--trust-remote-code")


def test_the_health_endpoint_comes_from_a_config_file_too(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("port: 8123\nhost: 0.0.0.0\n")
    assert endpoint(["--config", str(config)]).base_url == "http://127.0.0.1:8123"
    assert endpoint(["--config", str(config), "--port", "9"]).base_url == "http://127.0.0.1:9"
    assert endpoint(["--uds", "/run/vllm.sock"]) == Endpoint("http://localhost", "/run/vllm.sock")
    assert endpoint(["--host", "::", "--ssl-certfile", "c.pem"]).base_url == "https://[::1]:8000"


def test_aliases_are_the_same_flag() -> None:
    assert vllm_args.get(["--device-memory-utilization", "0.8"], "--gpu-memory-utilization") == "0.8"
    assert vllm_args.get(["-tp", "2"], "--tensor-parallel-size") == "2"
    assert vllm_args.set_value(["-q", "awq"], "--quantization", "fp8") == ("-q", "fp8")
    assert vllm_args.remove(["-sc", '{"method": "ngram"}', "--port", "1"], "--speculative-config") == (
        "--port",
        "1",
    )
    assert not vllm_args.is_on(
        ["--enable-prefix-caching", "--disable-prefix-caching"], "--enable-prefix-caching"
    )
