"""The one door for every change the guard makes to vLLM's flags: applied under the rules, or
refused with the reason.

A ladder step, the undo of the guard's own step, the replay of flags remembered as reaching ready
and preflight's starting flags all come through `apply`, so the promises hold on every path: a
pinned flag never changes; a number moves only in its safe direction, from the value in the flags
edited and never past the user's own; a step that would change nothing is refused (`half` is
`float16`); a quantization the user chose is never replaced by another method; fp8 is not tried
on a GPU known to lack it. Values are read as vLLM reads them (its `--config` file first, the
command line over it); edits go on the command line, which wins.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from vllm_guard import fault_tolerance, fits, vllm_args, vllm_flags

Action = Literal["set", "remove", "on"]


@dataclass(frozen=True, slots=True)
class Change:
    """One edit: `set` FLAG to VALUE, `remove` FLAG (and its value), or switch boolean FLAG `on`."""

    action: Action
    flag: str
    value: str | None = None

    @property
    def text(self) -> str:
        if self.action == "set":
            return f"{self.flag} {self.value}"
        return f"-{self.flag}" if self.action == "remove" else f"+{self.flag}"


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a change was not made."""

    change: Change
    reason: str

    def __str__(self) -> str:
        return f"{self.change.text}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Rules:
    """What every edit is held to. `user_args`: the user's own flags, the bound no edit crosses."""

    user_args: tuple[str, ...]
    pinned: frozenset[str] = frozenset()
    version: str | None = None
    config: Mapping[str, object] | None = None  # the values of the flags' --config file
    compute_capability: tuple[int, int] | None = None  # the GPU's, when known
    model_max_len: int | None = None  # the model's own maximum length, when known


# The direction in which each numeric flag uses less GPU memory. A raise of a "lower" flag (or a
# fall of a "higher" one) is refused: `set --cpu-offload-gb 8` on a user's 16 would put more of
# the weights back on the GPU that just ran out of memory for them.
SAFER: dict[str, Literal["lower", "higher"]] = {
    "--max-model-len": "lower",
    "--max-num-seqs": "lower",
    "--max-num-batched-tokens": "lower",
    "--gpu-memory-utilization": "lower",
    "--kv-cache-memory-bytes": "lower",
    "--num-gpu-blocks-override": "lower",
    "--max-loras": "lower",
    "--max-lora-rank": "lower",
    "--max-cpu-loras": "lower",
    "--max-seq-len-to-capture": "lower",
    "--limit-mm-per-prompt": "lower",
    "--cpu-offload-gb": "higher",
    "--swap-space": "higher",
}
# vLLM's value when the flag is absent, where it does not depend on the hardware: a `remove` or a
# first `set` is compared with it.
DEFAULTS = {"--cpu-offload-gb": 0.0, "--swap-space": 4.0, "--max-loras": 1.0, "--max-lora-rank": 16.0}
# Booleans whose on state uses less memory: switching them off is never a degradation.
SAFER_ON = frozenset({"--enforce-eager"})
# Spellings vLLM's parser maps to one value (its `--dtype` choices).
_SAME_VALUE = {"--dtype": {"half": "float16", "float": "float32"}}
# A value given here is the user's method, not a size: another one is never put in its place.
_USERS_CHOICE = frozenset({"--quantization"})
_FITS_ITSELF = frozenset({"auto", "-1"})  # --max-model-len: vLLM fits it to memory (0.14+)


# Flags that change nothing vLLM holds in GPU memory: where it listens, who may call it, what it
# logs and how it answers. A remembered flag set stays good when only these differ (and their
# values, API keys among them, never enter the key it is remembered under).
NOT_MEMORY = frozenset(
    {
        "--host", "--port", "--uds", "--api-key", "--ssl-keyfile", "--ssl-certfile", "--ssl-ca-certs",
        "--ssl-cert-reqs", "--enable-ssl-refresh", "--root-path", "--middleware", "--allowed-origins",
        "--allow-credentials", "--allowed-methods", "--allowed-headers", "--served-model-name",
        "--uvicorn-log-level", "--disable-uvicorn-access-log", "--disable-access-log-for-endpoints",
        "--disable-log-requests",
        "--enable-log-requests", "--disable-log-stats", "--max-log-len", "--log-config-file",
        "--disable-fastapi-docs", "--enable-request-id-headers", "--response-role", "--chat-template",
        "--chat-template-content-format", "--return-tokens-as-token-ids", "--enable-prompt-tokens-details",
        "--enable-server-load-tracking", "--enable-force-include-usage", "--shutdown-timeout",
        "--otlp-traces-endpoint", "--collect-detailed-traces", "--show-hidden-metrics-for-version",
        "--hf-token", "--h11-max-incomplete-event-size", "--h11-max-header-count",
    }
)  # fmt: skip


def memory_relevant(args: Sequence[str], version: str | None = None) -> list[str]:
    """`args` without the flags (and their values) in NOT_MEMORY, for the known-good key."""
    out = list(args)
    for flag in NOT_MEMORY:
        out = list(vllm_args.remove(out, flag, version=version))
    return out


def apply(args: Sequence[str], change: Change, rules: Rules) -> tuple[str, ...] | Refused:
    """`args` with `change` made, or why it may not be."""
    args = tuple(args)
    version = rules.version
    flag = vllm_args.canonical(change.flag, version)
    change = Change(change.action, flag, change.value)
    base = _base(flag)  # --no-enforce-eager is --enforce-eager switched off: the same pin, the same rule
    if base in {_base(pin) for pin in rules.pinned}:
        return Refused(change, "pinned")
    seen = _as_vllm_reads(args, rules)
    if change.action == "on":
        if flag != base and base in SAFER_ON:
            return Refused(change, f"{base} off uses more memory")
        if vllm_args.is_on(seen, flag, version):
            return _same(change)
        return vllm_args.set_flag(args, flag, version=version)
    if change.action == "remove":
        return _remove(args, seen, change, rules)
    if change.value is None:
        return Refused(change, "a set needs a value")
    if vllm_args.is_boolean(flag, version):
        return Refused(change, f"{flag} takes no value in this vLLM: a step switches it on or removes it")
    value = vllm_args.spelled(flag, change.value, version)
    given = vllm_args.get(seen, flag, version=version)
    if given is not None and _same_value(flag, given, value):
        return _same(change)
    if flag in _USERS_CHOICE and given is not None:
        return Refused(
            change, f"{flag} {given} is the checkpoint's own method; another is not put in its place"
        )
    cap = rules.compute_capability
    if flag == "--quantization" and "fp8" in value and cap is not None and not fits.fp8_capable(cap):
        return Refused(change, f"fp8 needs compute capability 7.5; this GPU has {cap[0]}.{cap[1]}")
    against = _less_safe(flag, value, given, rules)
    if against:
        return Refused(change, against)
    return vllm_args.set_value(args, flag, value, version)


def apply_all(
    args: Sequence[str], changes: Sequence[Change], rules: Rules
) -> tuple[tuple[str, ...], tuple[Refused, ...]]:
    """Each change in turn, skipping (and returning) the refused ones; for replaying a set."""
    out, refused = tuple(args), []
    for change in changes:
        result = apply(out, change, rules)
        if isinstance(result, Refused):
            if result.reason != "nothing would change":
                refused.append(result)
        else:
            out = result
    return out, tuple(refused)


def rebuild(target: Sequence[str], rules: Rules) -> tuple[tuple[str, ...], tuple[Refused, ...]]:
    """`target` (flags the guard once ran, or remembered) rebuilt from the user's own flags
    through the door: what the rules allow of it today (pins and policy may have changed)."""
    return apply_all(rules.user_args, changes_between(rules.user_args, target, rules.version), rules)


def changes_between(before: Sequence[str], after: Sequence[str], version: str | None) -> list[Change]:
    """The changes that turn `before` into `after`, in the form `apply` takes."""
    return as_changes(vllm_args.edits(before, after, version))


def as_changes(edits: Sequence[vllm_args.Edit]) -> list[Change]:
    """Edits as vllm_args.edits() gives them (and known_good.json keeps them) as changes."""
    return [
        Change("remove", flag) if action == "remove"
        else Change("on", flag) if value is None
        else Change("set", flag, value)
        for action, flag, value in edits
    ]  # fmt: skip


def _remove(
    args: tuple[str, ...], seen: tuple[str, ...], change: Change, rules: Rules
) -> tuple[str, ...] | Refused:
    flag, version = change.flag, rules.version
    if not vllm_args.has(args, flag, version):
        if vllm_args.has(seen, flag, version):
            return Refused(change, "given in the --config file, which the command line cannot take out")
        return _same(change)
    if flag in SAFER_ON:
        return Refused(change, f"{flag} off uses more memory")
    if flag in _USERS_CHOICE:
        return Refused(change, f"{flag} is the checkpoint's own method; it is not taken away")
    if flag in SAFER:
        if flag not in DEFAULTS:
            # vLLM's value without it is the model's or the hardware's, often the largest
            return Refused(change, f"without {flag} vLLM may use more memory")
        against = _less_safe(flag, f"{DEFAULTS[flag]:g}", vllm_args.get(seen, flag, version=version), rules)
        if against:
            return Refused(change, against)
    removed = vllm_args.remove(args, flag, version=version)
    if vllm_args.is_boolean(flag, version) and vllm_args.is_on(_as_vllm_reads(removed, rules), flag, version):
        return Refused(change, "still on in the --config file, which the command line cannot take out")
    return removed


def _less_safe(flag: str, value: str, given: str | None, rules: Rules) -> str:
    """Why `value` is less safe than the value in the flags or the user's own ("" when not)."""
    direction = SAFER.get(flag)
    if direction is None:
        return ""
    user = vllm_args.get(_as_vllm_reads(rules.user_args, rules), flag, version=rules.version)
    if flag == "--limit-mm-per-prompt":
        return _more_items(value, (("the current value", given), ("the user's value", user)))
    if value.strip().lower() in _FITS_ITSELF and flag == "--max-model-len":
        # vLLM fits the length itself, up to the model's maximum: no more than a user's value
        # only where that value was itself vLLM's fit, or at least the model's maximum
        ask = vllm_args.magnitude(user) if user is not None else None
        if user is None or user.strip().lower() in _FITS_ITSELF:
            return ""
        if rules.model_max_len is not None and ask is not None and ask >= rules.model_max_len:
            return ""
        return f"{value} may be above the user's value {user}"
    new = vllm_args.magnitude(value)
    if new is None:
        return f"{value} is no number {flag} can be compared by"
    for what, old_text in (("the current value", given), ("the user's value", user)):
        old = vllm_args.magnitude(old_text) if old_text is not None else DEFAULTS.get(flag)
        if old is None:
            continue
        if (direction == "lower" and new > old) or (direction == "higher" and new < old):
            shown = old_text if old_text is not None else f"{old:g} (vLLM's default)"
            return f"{value} is {'above' if direction == 'lower' else 'below'} {what} {shown}"
    return ""


def _more_items(value: str, bounds: Sequence[tuple[str, str | None]]) -> str:
    """Why a per-item count map (--limit-mm-per-prompt) asks more than a bound ("" when not)."""
    new = item_counts(value)
    if new is None:
        return f"{value} is no count map"
    for what, old_text in bounds:
        old = item_counts(old_text) if old_text is not None else None
        if old is None:
            continue
        for item, count in new.items():
            if count > old.get(item, 0):
                return f"{item} {count} is above {what} {old_text}"
    return ""


def item_counts(text: str) -> dict[str, int] | None:
    """vLLM's per-item counts, JSON (`{"image": 4, "video": {"count": 2}}`) or the older
    `image=4,video=2`; None when `text` is no such map."""
    try:
        data = json.loads(text)
    except ValueError:
        pairs = [item.partition("=") for item in text.split(",")]
        if not all(eq and key.strip() and value.strip().isdigit() for key, eq, value in pairs):
            return None
        return {key.strip(): int(value) for key, _, value in pairs}
    if not isinstance(data, dict):
        return None
    counts: dict[str, int] = {}
    for key, entry in data.items():
        count = entry.get("count") if isinstance(entry, dict) else entry
        if not isinstance(count, int) or isinstance(count, bool):
            return None
        counts[str(key)] = count
    return counts


def _base(flag: str) -> str:
    return "--" + flag[5:] if flag.startswith("--no-") else flag


def _same_value(flag: str, given: str, value: str) -> bool:
    """`half` is `float16`, `8k` is `8000`, `0.9` is `0.90`."""
    if _normal(flag, given) == _normal(flag, value):
        return True
    old, new = vllm_args.magnitude(given), vllm_args.magnitude(value)
    return old is not None and old == new


def _normal(flag: str, value: str) -> str:
    return _SAME_VALUE.get(flag, {}).get(value, value)


def _same(change: Change) -> Refused:
    return Refused(change, "nothing would change")


def _as_vllm_reads(args: tuple[str, ...], rules: Rules) -> tuple[str, ...]:
    return vllm_args.with_config(args, rules.config) if rules.config else args


# vLLM's own flags over its access log; a user who gave any of them has a view of it to keep
ACCESS_LOG_FLAGS = (
    "--disable-access-log-for-endpoints",
    "--disable-uvicorn-access-log",
    "--enable-uvicorn-access-log",
    "--log-config-file",
)
QUIET_FLAG = "--disable-access-log-for-endpoints"
GUARD_POLLED = "/health,/metrics"  # what the guard asks of vLLM about once a second


def quiet_access_log(
    args: Sequence[str],
    version: str | None,
    pinned: frozenset[str],
    config: Mapping[str, object] | None = None,
) -> tuple[str, ...] | None:
    """The user's flags with the guard's own polls left out of vLLM's access log, where this
    vLLM takes --disable-access-log-for-endpoints (0.16+) and the flags (the --config file's
    too) say nothing of that log and do not pin the flag; None where they are left as they are."""
    if version is None or not vllm_flags.exists(QUIET_FLAG, version):
        return None
    seen = vllm_args.with_config(args, config) if config else tuple(args)
    if QUIET_FLAG in pinned or any(vllm_args.has(seen, flag, version) for flag in ACCESS_LOG_FLAGS):
        return None
    polled = GUARD_POLLED
    if vllm_args.is_on(seen, fault_tolerance.FLAG, version):  # its engine status, at every poll
        polled += "," + fault_tolerance.routes(version)[0].status
    return (*args, QUIET_FLAG, polled)
