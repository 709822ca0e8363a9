"""The simulator reads vLLM's flags in every spelling vLLM accepts, and refuses what vLLM refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_guard.sim import flags
from vllm_guard.sim.flag_table import FLAGS

V33, V32 = "0.33.0", "0.32.0"


def parse(*argv: str, version: str = V33, environ: dict[str, str] | None = None) -> flags.Parsed:
    return flags.parse(["serve", *argv], version, environ or {})


def refused(capsys: pytest.CaptureFixture[str], *argv: str, version: str = V33) -> str:
    with pytest.raises(SystemExit) as exited:
        parse(*argv, version=version)
    assert exited.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["m", "--max-model-len", "4096"],
        ["m", "--max-model-len=4096"],
        ["m", "--max_model_len", "4096"],
        ["m", "--max_model_len=4096"],
        ["m", "--max-model", "4096"],  # an unambiguous prefix, as argparse allows
        ["m", "--max-model-len", "4096", "--max-model-len", "4096"],
        ["m", "--max-model-len", "1", "--max-model-len", "4096"],  # the last one wins
        ["--model", "m", "--max-model-len", "4096"],
    ],
)
def test_every_spelling_of_a_valued_flag_means_the_same(argv: list[str]) -> None:
    parsed = parse(*argv)
    assert parsed.get("max_model_len") == 4096
    assert parsed.get("model") == "m"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("32k", 32000),
        ("32K", 32768),
        ("25.6k", 25600),
        ("1M", 1 << 20),
        ("-1", -1),
        ("auto", -1),
        ("AUTO", -1),
    ],
)
def test_max_model_len_takes_human_readable_numbers_and_auto(text: str, value: int) -> None:
    assert parse("m", "--max-model-len", text).get("max_model_len") == value


def test_kv_cache_memory_bytes_takes_suffixes_and_its_prefix() -> None:
    assert parse("m", "--kv-cache-memory-bytes", "64M").get("kv_cache_memory_bytes") == 64 << 20
    assert parse("m", "--kv-cache-memory", "8G").get("kv_cache_memory_bytes") == 8 << 30
    assert parse("m", "--kv_cache_memory_bytes=2000000").get("kv_cache_memory_bytes") == 2000000


def test_booleans_have_their_negations() -> None:
    assert parse("m", "--enforce-eager").get("enforce_eager") is True
    assert parse("m", "--enforce-eager", "--no-enforce-eager").get("enforce_eager") is False
    assert parse("m", "--no-enable-prefix-caching").get("enable_prefix_caching") is False
    assert parse("m", "--enable-prefix-caching").get("enable_prefix_caching") is True
    assert parse("m").get("enable_prefix_caching") is None
    # 0.33's EnableDisableAction adds the --disable-X inverse [reference.md §2.1]
    assert parse("m", "--disable-prefix-caching").get("enable_prefix_caching") is False
    assert parse("m", "--disable-log-requests").get("enable_log_requests") is False


def test_short_aliases() -> None:
    parsed = parse("m", "-tp", "2", "-pp", "2", "-q", "fp8", "-O0")
    assert parsed.get("tensor_parallel_size") == 2
    assert parsed.get("pipeline_parallel_size") == 2
    assert parsed.get("quantization") == "fp8"
    assert parsed.get("optimization_level") == 0
    assert parse("m", "-O=3").get("optimization_level") == 3


def test_dotted_json_keys_become_one_json_value() -> None:
    parsed = parse("m", "-cc.cudagraph_mode=NONE", "--compilation-config.mode", "3")
    assert parsed.get("compilation_config") == '{"cudagraph_mode": "NONE", "mode": 3}'


def test_lists_and_the_api_key_from_the_environment() -> None:
    parsed = parse("m", "--served-model-name", "a", "b", "--api-key", "k1", "k2")
    assert parsed.get("served_model_name") == ["a", "b"]
    assert parsed.get("api_key") == ["k1", "k2"]
    assert parse("m", environ={"VLLM_API_KEY": "secret"}).get("api_key") == ["secret"]


def test_defaults_are_vllms() -> None:
    parsed = parse("m")
    assert parsed.get("port") == 8000
    assert parsed.get("host") is None
    assert parsed.get("gpu_memory_utilization") == 0.92
    assert parsed.get("shutdown_timeout") == 0
    assert parse().get("model") == "Qwen/Qwen3-0.6B"  # no model: vLLM serves its default one


def test_non_default_args_in_vllms_order_as_in_the_real_log() -> None:
    # real-cpu ok_run3_eager: {'model_tag': ..., 'port': 8011, 'model': ..., 'dtype': 'float32',
    # 'max_model_len': 1024, 'enforce_eager': True}
    parsed = parse("M", "--enforce-eager", "--port", "8011", "--max-model-len", "1024", "--dtype", "float32")
    assert repr(parsed.non_default) == (
        "{'model_tag': 'M', 'port': 8011, 'model': 'M', 'dtype': 'float32', "
        "'max_model_len': 1024, 'enforce_eager': True}"
    )
    assert parse("--model", "M").model_option_used


def test_config_file_flags_lose_to_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "max_model_len: 2048\ngpu-memory-utilization: 0.5\nenforce_eager: true\n"
        "enable_prefix_caching: false\nserved_model_name: [a, b]\nmodel: from-file\n"
    )
    parsed = parse("m", "--config", str(config), "--max-model-len", "1024")
    assert parsed.get("max_model_len") == 1024  # the command line wins
    assert parsed.get("gpu_memory_utilization") == 0.5
    assert parsed.get("enforce_eager") is True
    assert parsed.get("enable_prefix_caching") is None  # vLLM drops `false` booleans [§2.1]
    assert parsed.get("served_model_name") == ["a", "b"]
    assert parsed.get("model") == "m"  # a positional model beats `model:`
    assert parse("--config", str(config)).get("model") == "from-file"
    # `--config=FILE` is silently ignored by vLLM [reference.md §2.1]
    assert parse("m", f"--config={config}").get("max_model_len") is None


def test_an_unknown_flag_is_vllms_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = refused(capsys, "m", "--max-seq-len-to-capture", "9416")
    # as in real captures: `usage: vllm [-h] [-v]\n {chat,...} ...\nvllm: error: unrecognized arguments: ...`
    assert err.startswith("usage: vllm [-h] [-v]")
    assert "{chat,complete,serve,launch,bench,collect-env,run-batch} ..." in err
    assert err.rstrip().endswith("vllm: error: unrecognized arguments: --max-seq-len-to-capture 9416")


@pytest.mark.parametrize(
    ("argv", "message"),
    [  # the texts reference.md §1.11 quotes from vLLM 0.33.0's parser
        (["--max-num-seqs", "1k"], "argument --max-num-seqs: invalid int value: '1k'"),
        (
            ["--max-model-len", "1.5K"],
            "argument --max-model-len: Decimals are not allowed with binary suffixes like K. "
            "Did you mean to use 1.5k instead?",
        ),
        (
            ["--device", "x"],
            "ambiguous option: --device could match --device-ids, --device-memory-utilization",
        ),
        (
            ["--enforce-eager=true"],
            "argument --enforce-eager/--no-enforce-eager: ignored explicit argument 'true'",
        ),
        (["--kv-cache-dtype", "fp9"], "argument --kv-cache-dtype: invalid choice: 'fp9'"),
    ],
)
def test_bad_values_are_the_serve_parsers_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    err = refused(capsys, "m", *argv)
    assert err.startswith("usage: vllm serve [model_tag] [options]\n")
    assert f"vllm serve: error: {message}" in err


def test_flags_that_changed_between_032_and_033(capsys: pytest.CaptureFixture[str]) -> None:
    # --disable-log-requests: removed in 0.17, back in 0.33 [reference.md §2.2]
    assert "unrecognized arguments: --disable-log-requests" in refused(
        capsys, "m", "--disable-log-requests", version=V32
    )
    assert "unrecognized arguments: --disable-prefix-caching" in refused(
        capsys, "m", "--disable-prefix-caching", version=V32
    )
    assert parse("m", "--no-enable-prefix-caching", version=V32).get("enable_prefix_caching") is False
    # removed long ago: still argparse errors
    for removed in ("--swap-space", "--use-v2-block-manager", "--num-scheduler-steps"):
        assert "unrecognized arguments" in refused(capsys, "m", removed, "4")


def _shortest_prefix(name: str) -> int:
    others = [o for flag in FLAGS for o in flag.names if o != name and o.startswith("--")]
    for length in range(3, len(name) + 1):
        if not any(o.startswith(name[:length]) for o in others):
            return length
    return len(name)


VALUED: dict[str, st.SearchStrategy[object]] = {
    "--max-model-len": st.integers(1, 1 << 20),
    "--max-num-seqs": st.integers(1, 4096),
    "--max-num-batched-tokens": st.integers(1, 1 << 20),
    "--tensor-parallel-size": st.integers(1, 8),
    "--port": st.integers(1, 65535),
    "--gpu-memory-utilization": st.floats(0.01, 1.0, allow_nan=False),
    "--served-model-name": st.text("abcdefxyz019_", min_size=1, max_size=12),
    "--kv-cache-dtype": st.sampled_from(["auto", "fp8", "fp8_e4m3", "bfloat16"]),
    "--cpu-offload-gb": st.floats(0, 64, allow_nan=False),
}


PREFIX = {name: _shortest_prefix(name) for name in VALUED}


@st.composite
def spelled(draw: st.DrawFn) -> tuple[list[str], dict[str, object]]:
    names = draw(st.lists(st.sampled_from(sorted(VALUED)), unique=True, min_size=1, max_size=5))
    argv: list[str] = ["model"]
    expected: dict[str, object] = {}
    for name in names:
        value = draw(VALUED[name])
        text = repr(value) if isinstance(value, float) else str(value)
        spelling = name[: draw(st.integers(PREFIX[name], len(name)))]
        if draw(st.booleans()):
            spelling = spelling.replace("-", "_").replace("__", "--", 1)
        argv += [f"{spelling}={text}"] if draw(st.booleans()) else [spelling, text]
        dest = name[2:].replace("-", "_")
        expected[dest] = [value] if dest == "served_model_name" else value
    return argv, expected


@settings(max_examples=60, deadline=None)
@given(spelled())
def test_any_spelling_parses_to_the_same_values(case: tuple[list[str], dict[str, object]]) -> None:
    argv, expected = case
    parsed = parse(*argv)
    for dest, value in expected.items():
        assert parsed.get(dest) == value, (argv, dest)


@given(st.integers(0, 10**6), st.sampled_from("kmgt"))
def test_decimal_suffixes_multiply_by_powers_of_ten(number: int, suffix: str) -> None:
    power = {"k": 3, "m": 6, "g": 9, "t": 12}[suffix]
    assert flags.human_readable_int(f"{number}{suffix}") == number * 10**power
    assert flags.human_readable_int(f"{number}{suffix.upper()}") == number * 2 ** (10 * (power // 3))
