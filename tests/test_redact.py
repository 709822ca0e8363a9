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
