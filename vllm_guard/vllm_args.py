"""Reading and editing a vLLM argv (everything after MODEL), in every spelling vLLM's parser accepts.

vLLM's parser treats `--max_model_len` like `--max-model-len` (only the name, not the value) and takes
both `--flag value` and `--flag=value`; when a flag repeats, the last one wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def canonical(flag: str) -> str:
    """`--max_model_len` → `--max-model-len`; values and single-dash flags stay as they are."""
    if flag.startswith("--"):
        return "--" + flag[2:].replace("_", "-")
    return flag


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where a flag stands in an argv: its index, and its value's index (None for `--flag=value`)."""

    index: int
    value: str | None
    value_index: int | None


def occurrences(args: Sequence[str], flag: str, *, takes_value: bool = True) -> list[Occurrence]:
    """Every place `flag` (any spelling) is given, in order."""
    want = canonical(flag)
    found: list[Occurrence] = []
    for i, arg in enumerate(args):
        name, eq, inline = arg.partition("=")
        if canonical(name) != want:
            continue
        if eq:
            found.append(Occurrence(i, inline, None))
        elif takes_value and i + 1 < len(args):
            found.append(Occurrence(i, args[i + 1], i + 1))
        else:
            found.append(Occurrence(i, None, None))
    return found


def get(args: Sequence[str], flag: str, default: str | None = None) -> str | None:
    """The value vLLM will use for `flag`: the last one given, or `default`."""
    given = occurrences(args, flag)
    if not given or given[-1].value is None:
        return default
    return given[-1].value


def has(args: Sequence[str], flag: str) -> bool:
    """Whether a flag is on the command line at all (booleans like `--enforce-eager` included)."""
    return bool(occurrences(args, flag, takes_value=False))
