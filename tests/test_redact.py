from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vllm_guard.redact import MASK, Redactor, secret_flag_values

TOKEN = "hf_" + "a1B2c3D4e5" * 4


def test_hugging_face_tokens_are_masked_by_shape() -> None:
    r = Redactor()
    assert r.text(f"using token {TOKEN} now") == f"using token hf_{MASK} now"
    assert r.data(f"token={TOKEN}\n".encode()) == f"token=hf_{MASK}\n".encode()


def test_short_hf_words_are_not_tokens() -> None:
    assert Redactor().text("hf_transfer is enabled") == "hf_transfer is enabled"


def test_literal_values_from_the_environment_and_argv() -> None:
    r = Redactor.for_launch({"HF_TOKEN": "plainsecret"}, ["--port", "8000", "--api-key", "k3y-value"])
    line = "args: {'api_key': ['k3y-value'], 'token': 'plainsecret'}"
    masked = r.text(line)
    assert "k3y-value" not in masked
    assert "plainsecret" not in masked


def test_authorization_and_bearer_headers() -> None:
    r = Redactor()
    assert r.text("Authorization: Bearer abc.def-123") == f"Authorization: Bearer {MASK}"
    assert r.text("curl -H 'authorization: sk-12345'") == f"curl -H 'authorization: {MASK}'"
    assert r.text("got bearer sometoken99") == f"got bearer {MASK}"


def test_env_style_assignments() -> None:
    r = Redactor()
    assert r.text("HF_TOKEN=whatever123") == f"HF_TOKEN={MASK}"
    assert r.text("export VLLM_API_KEY='abcd'") == f"export VLLM_API_KEY='{MASK}'"


def test_api_key_takes_several_values_in_any_spelling() -> None:
    assert secret_flag_values(["--api-key", "a1", "b2", "--port", "1"]) == ["a1", "b2"]
    assert secret_flag_values(["--api_key=c3"]) == ["c3"]
    r = Redactor()
    assert r.argv(["serve", "m", "--api-key", "a1", "b2", "--port", "1"]) == [
        "serve",
        "m",
        "--api-key",
        MASK,
        MASK,
        "--port",
        "1",
    ]
    assert r.argv(["--api_key=c3"]) == [f"--api_key={MASK}"]


def test_very_short_literals_are_left_alone_rather_than_mangling_output() -> None:
    r = Redactor(["ab"])
    assert r.text("a table") == "a table"


def test_invalid_utf8_passes_through() -> None:
    data = b"\xff\xfe broken " + TOKEN.encode() + b" \xc3\n"
    assert Redactor().data(data) == b"\xff\xfe broken hf_" + MASK.encode() + b" \xc3\n"


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=60))
def test_a_token_never_survives_whatever_surrounds_it(noise: str) -> None:
    line = f"{noise} {TOKEN} {noise}"
    assert TOKEN not in Redactor().text(line)
    assert TOKEN.encode() not in Redactor().data(line.encode())


def test_header_words_in_any_case_are_masked_in_vllms_output() -> None:
    # the relay rules each word out by one letter in both cases before it looks further
    r = Redactor()
    for word in ("Bearer", "bearer", "BEARER", "bEaReR"):
        assert r.data(f"got {word} sometoken99\n".encode()) == f"got {word} {MASK}\n".encode()
    for word in ("Authorization", "AUTHORIZATION", "aUtHoRiZaTiOn"):
        assert (
            r.data(f'{{"{word}": "Basic dXNlcjpwYXNz"}}'.encode()) == f'{{"{word}": "Basic {MASK}"}}'.encode()
        )
    assert r.data(b"no header here: zebra, Bob\n") == b"no header here: zebra, Bob\n"


SEPARATORS = st.sampled_from(["", " ", '"', "'", ":", ",", "=", "(", "\t", "\r", "\n", "{", "[", "/"])


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=40), SEPARATORS, SEPARATORS)
def test_a_token_never_survives_whatever_touches_it(noise: str, before: str, after: str) -> None:
    line = f"{noise}{before}{TOKEN}{after}{noise}"
    assert TOKEN not in Redactor().text(line)
    assert TOKEN.encode() not in Redactor().data(line.encode())
    assert TOKEN.encode() not in Redactor([TOKEN]).data(line.encode())


@given(st.integers(min_value=-20, max_value=160), st.sampled_from(['"', "'", ""]), SEPARATORS)
def test_a_cut_never_falls_inside_a_secret(shift: int, quote: str, between: str) -> None:
    literal = "sk-Api.Key_0123456789"
    r = Redactor([literal])
    secrets = (TOKEN, f"Authorization{quote}: {quote}Bearer abc.def-123", literal)
    body = between.join(secrets).encode()
    data = b"x" * 8192 + body + b"y" * (256 - shift)  # the cut's limit sweeps across the secrets
    limit = len(data) - 256
    cut = r.cut(data, limit)
    assert limit - 4096 <= cut <= limit
    for secret in secrets:
        start = data.find(secret.encode())
        assert not start < cut < start + len(secret), (secret, cut)
