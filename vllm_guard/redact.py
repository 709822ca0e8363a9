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

# Secrets by shape. Each pattern is run only where one of its lowercase words occurs: a C-speed
# substring search over the lowercased chunk is far cheaper than a case-insensitive pattern, and
# vLLM can log faster than such a pattern runs.
_HF_TOKEN = r"(?P<hf>hf_)[A-Za-z0-9]{30,}"  # hf_ and 30 or more letters and digits
_HEADERS: tuple[tuple[str, str], ...] = (
    (
        "authorization",
        r"(?P<auth>(?i:authorization)[\"']?\s*[:=]\s*[\"']?(?:(?i:bearer|basic|token)\s+)?)"
        r"[^\s\"',}]+",
    ),
    ("bearer", r"(?P<bearer>(?i:bearer)\s+)[A-Za-z0-9._~+/=-]{4,}"),
)
# NAME=value, NAME: value and 'name': 'value' for the secret variables and flags. Only for the
# guard's own lines: in vLLM's output the values that matter (this launch's token and API keys)
# are literals, masked as such, and this pattern would cost the relay another pass per word.
_ASSIGNMENTS: tuple[tuple[str, str], ...] = tuple(
    (
        word,
        r"(?P<kv>(?i:hf_token|hugging_face_hub_token|vllm_api_key|api[_-]key)[\"']?\s*[:=]\s*"
        r"[\[\"'\s]*)[^\s\"',\]}]+",
    )
    for word in ("hf_token", "hub_token", "api_key", "api-key")
)


class Redactor:
    """Masks secrets in text (the guard's own lines) and bytes (vLLM's relayed output)."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        values = sorted({v for v in literals if len(v) >= MIN_LITERAL_LEN}, key=len, reverse=True)
        self._literals = tuple(values)
        self._literals_b = tuple(v.encode() for v in values)
        self._mask_b = MASK.encode()
        self._hf = re.compile(_HF_TOKEN)
        self._hf_b = re.compile(_HF_TOKEN.encode())
        self._worded = tuple((w, re.compile(p)) for w, p in (*_HEADERS, *_ASSIGNMENTS))
        self._worded_b = tuple((w.encode(), re.compile(p.encode())) for w, p in _HEADERS)

    @classmethod
    def for_launch(cls, env: Mapping[str, str], vllm_args: Sequence[str]) -> Redactor:
        """A redactor for one vLLM launch: its environment's tokens and its --api-key values."""
        literals = [env[name] for name in SECRET_ENV_VARS if env.get(name)]
        literals.extend(secret_flag_values(vllm_args))
        return cls(literals)

    def text(self, line: str) -> str:
        for value in self._literals:
            line = line.replace(value, MASK)
        line = self._hf.sub(_keep_prefix, line)
        low = line.lower()
        for word, pattern in self._worded:
            if word in low:
                line = pattern.sub(_keep_prefix, line)
        return line

    def data(self, chunk: bytes) -> bytes:
        for value in self._literals_b:
            if value in chunk:
                chunk = chunk.replace(value, self._mask_b)
        # On a log flood these passes are the relay's main cost: keep them few.
        chunk = self._hf_b.sub(_keep_prefix_b, chunk)
        low = chunk.lower()
        for word, pattern in self._worded_b:
            if word in low:
                chunk = pattern.sub(_keep_prefix_b, chunk)
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
