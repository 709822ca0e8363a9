"""Secret masking: the one place that knows what a secret looks like (DESIGN.md, "Secrets")."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

MASK = "***"

# Environment variables whose values are secrets wherever they show up.
SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY")

# vLLM flags whose values are secrets, in every spelling the parser accepts.
SECRET_FLAGS = ("--api-key",)

# Shorter literal values are not masked one by one: replacing every "ab" would mangle the output,
# and the shaped patterns below still catch tokens and headers of any length.
MIN_LITERAL_LEN = 4

# Secrets by shape. On vLLM's output (bytes) each shape is first ruled out by one byte it cannot be
# without (in both cases where it is case-insensitive): a one-byte search runs at memchr speed, tens
# of times faster than CPython's search for a longer needle or a regex scan, and the lines vLLM
# floods with (stats, access log) hold none of these bytes (bench/relay.py). Only then is the word
# looked for, and only where it occurs does the pattern run. The guard's own lines (text) are
# short: a lowercase copy and a substring search per word is cheap enough there.
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
# The letter each header word is ruled out by (hf_ tokens: by "_"): among the word's rarest in
# vLLM's output (real-cpu captures: z 0.1 %, b 0.7 %), and absent from its stats and access lines.
_GATES = {"authorization": b"z", "bearer": b"b"}
# A byte that cannot be inside a token, where a line too long to keep whole is best cut.
_NOT_IN_TOKEN = re.compile(rb"[^A-Za-z0-9_.~+/=-]")
# How far before a cut a secret that straddles it is looked for: tokens and headers are far
# shorter, and the carry past the cut must stay small.
CUT_WINDOW = 4096


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
        self._worded_b = tuple(
            ((_GATES[w], _GATES[w].upper()), _finder(w.encode()), re.compile(p.encode())) for w, p in _HEADERS
        )
        self._longest_b = max((len(v) for v in self._literals_b), default=0)

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
        # On a log flood these passes are the relay's main cost: each is one pass over the chunk.
        for value in self._literals_b:
            if value in chunk:
                chunk = chunk.replace(value, self._mask_b)
        if b"_" in chunk and self._hf_b.search(chunk):
            chunk = self._hf_b.sub(_keep_prefix_b, chunk)
        low: bytes | None = None
        for (lower, upper), word, pattern in self._worded_b:
            if lower in chunk or upper in chunk:
                if low is None:
                    low = chunk.lower()
                if word(low):
                    chunk = pattern.sub(_keep_prefix_b, chunk)
        return chunk

    def cut(self, data: bytes, limit: int) -> int:
        """Where to cut `data`, a line too long to keep whole, at or before `limit`: after the last
        byte that cannot be inside a token, and never inside a secret. What follows the cut is
        carried to the next read, so a secret that straddled it would be masked in neither half
        (compact JSON has no whitespace to cut at)."""
        limit = min(limit, len(data) - self._longest_b)  # a literal that may go on is carried whole
        low = max(0, limit - CUT_WINDOW)
        last = _NOT_IN_TOKEN.search(data[low:limit][::-1])
        cut = limit - last.start() if last else limit
        while True:
            starts = list(self._secrets_across(data, cut, low))
            if not starts:
                return cut
            cut = min(starts)

    def _secrets_across(self, data: bytes, cut: int, low: int) -> Iterator[int]:
        """Where each secret that starts before `cut` (and at `low` or later) and ends after it starts."""
        for value in self._literals_b:
            start = data.find(value, max(low, cut - len(value) + 1), cut + len(value) - 1)
            if start >= 0:
                yield start
        patterns = (self._hf_b, *(pattern for _, _, pattern in self._worded_b))
        for pattern in patterns:
            for match in pattern.finditer(data, low):
                if match.start() >= cut:
                    break
                if match.end() > cut:
                    yield match.start()

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


def _finder(word: bytes) -> Callable[[bytes], object]:
    """The faster search for `word`: CPython's find skips ahead by the needle's length, so a short
    needle is found faster by a literal regex (a tight loop over its first byte)."""
    if len(word) >= 8:
        return lambda data: word in data
    return re.compile(re.escape(word)).search


def _keep_prefix(match: re.Match[str]) -> str:
    prefix = next(g for g in match.groups() if g is not None)
    return prefix + MASK


def _keep_prefix_b(match: re.Match[bytes]) -> bytes:
    prefix = next(g for g in match.groups() if g is not None)
    return prefix + MASK.encode()
