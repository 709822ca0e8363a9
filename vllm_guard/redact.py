"""Secret masking: the one place that knows what a secret looks like (DESIGN.md, "Secrets")."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

MASK = "***"

# Environment variables whose values are secrets wherever they show up.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY")

# vLLM flags whose values are secrets, in every spelling the parser accepts.
SECRET_FLAGS = ("--api-key",)

# Shorter literal values are not masked one by one: replacing every "ab" would mangle the output,
# and the shaped patterns below still catch tokens and headers of any length.
MIN_LITERAL_LEN = 4

_SHAPED = (
    # A Hugging Face token: hf_ and 30 or more letters and digits.
    r"(?P<hf>hf_)[A-Za-z0-9]{30,}",
    # Authorization headers, with or without a scheme word.
    r"(?P<auth>(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|basic|token)\s+)?)[^\s\"',}]+",
    # A bare bearer token.
    r"(?P<bearer>(?i:bearer)\s+)[A-Za-z0-9._~+/=-]{4,}",
    # NAME=value, NAME: value and 'name': 'value' for the secret variables and flags.
    r"(?P<kv>(?i:hf_token|hugging_face_hub_token|vllm_api_key|api[_-]key)[\"']?\s*[:=]\s*"
    r"[\[\"'\s]*)[^\s\"',\]}]+",
)
# Cheap test before running the regex over a chunk: every shaped secret contains one of these.
_TRIGGERS = ("hf_", "earer", "EARER", "uthorization", "UTHORIZATION", "oken", "OKEN", "key", "KEY")


class Redactor:
    """Masks secrets in text (the guard's own lines) and bytes (vLLM's relayed output)."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        values = sorted({v for v in literals if len(v) >= MIN_LITERAL_LEN}, key=len, reverse=True)
        self._literals = tuple(values)
        self._literals_b = tuple(v.encode() for v in values)
        self._mask_b = MASK.encode()
        self._shaped = re.compile("|".join(_SHAPED))
        self._shaped_b = re.compile("|".join(_SHAPED).encode())
        self._triggers_b = tuple(t.encode() for t in _TRIGGERS)

    @classmethod
    def for_launch(cls, env: Mapping[str, str], vllm_args: Sequence[str]) -> Redactor:
        """A redactor for one vLLM launch: its environment's tokens and its --api-key values."""
        literals = [env[name] for name in SECRET_ENV_VARS if env.get(name)]
        literals.extend(secret_flag_values(vllm_args))
        return cls(literals)

    def text(self, line: str) -> str:
        for value in self._literals:
            line = line.replace(value, MASK)
        if any(t in line for t in _TRIGGERS):
            line = self._shaped.sub(_keep_prefix, line)
        return line

    def data(self, chunk: bytes) -> bytes:
        for value in self._literals_b:
            if value in chunk:
                chunk = chunk.replace(value, self._mask_b)
        if any(t in chunk for t in self._triggers_b):
            chunk = self._shaped_b.sub(_keep_prefix_b, chunk)
        return chunk

    def argv(self, argv: Sequence[str]) -> list[str]:
        """An argv safe to print: secret flag values masked, whatever their spelling."""
        masked: list[str] = []
        in_secret_values = False
        for arg in argv:
            if in_secret_values and not arg.startswith("-"):
                masked.append(MASK)
                continue
            flag, eq, _ = arg.partition("=")
            in_secret_values = _is_secret_flag(flag) and not eq
            masked.append(f"{flag}={MASK}" if eq and _is_secret_flag(flag) else self.text(arg))
        return masked


def secret_flag_values(argv: Sequence[str]) -> list[str]:
    """The values given to secret flags (`--api-key A B`, `--api_key=A`), which vLLM also logs.

    `--api-key` takes one or more values (vLLM types it `list[str]`), so every word up to the next
    flag is a secret.
    """
    values: list[str] = []
    in_secret_values = False
    for arg in argv:
        if in_secret_values and not arg.startswith("-"):
            values.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        in_secret_values = _is_secret_flag(flag) and not eq
        if eq and _is_secret_flag(flag):
            values.append(value)
    return values


def _is_secret_flag(flag: str) -> bool:
    return flag.replace("_", "-") in SECRET_FLAGS


def _keep_prefix(match: re.Match[str]) -> str:
    prefix = next(g for g in match.groups() if g is not None)
    return prefix + MASK


def _keep_prefix_b(match: re.Match[bytes]) -> bytes:
    prefix = next(g for g in match.groups() if g is not None)
    return prefix + MASK.encode()
