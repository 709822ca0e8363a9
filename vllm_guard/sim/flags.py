"""vLLM's command line, parsed the way vLLM parses it (its own code, not the guard's).

`vllm serve` is an argparse sub-parser of the `vllm` CLI wrapped by vLLM's FlexibleArgumentParser,
which first rewrites argv: `--config FILE.yaml` (two tokens only) inserts the file's flags before
the command-line ones, underscores in `--flag_names` become dashes, and dotted JSON keys
(`-cc.cudagraph_mode=NONE`) become one JSON value. argparse then does the rest, so its texts
(`vllm: error: unrecognized arguments: ...`, exit 2), `--flag=value`, `--no-flag` and unambiguous
prefixes come out exactly as in vLLM. Sources: reference.md §2.1 (parser behaviour, run on
0.33.0) and §2.2 (flags); the human-readable integer parsers are vLLM's own
(vllm/utils/argparse_utils.py). Flags the simulator does not model are accepted and ignored.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from vllm_guard.sim.flag_table import DEFAULT_MODEL, FLAGS, Flag

SUBCOMMANDS = ("chat", "complete", "serve", "launch", "bench", "collect-env", "run-batch")
JSON_FLAGS = (
    "--compilation-config",
    "--speculative-config",
    "--structured-outputs-config",
    "--kv-transfer-config",
    "--kv-events-config",
    "--additional-config",
    "--eplb-config",
    "--hf-overrides",
    "--override-generation-config",
    "--logging-config",
    "--quantization-config",
    "--fault-tolerance-config",
    "--limit-mm-per-prompt",
    "--mm-processor-kwargs",
    "--pooler-config",
    "--model-loader-extra-config",
    "--attention-config",
    "--kernel-config",
)
JSON_SHORT = {"-cc": "--compilation-config", "-sc": "--speculative-config"}


def human_readable_int(value: str) -> int:
    """vLLM's parser for `--max-num-batched-tokens 8k` (k=1000, K=1024; decimals only with k/m/g/t)."""
    value = value.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgGtT])", value)
    if match:
        number, suffix = match.groups()
        decimal = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
        binary = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
        if suffix in decimal:
            return int(float(number) * decimal[suffix])
        try:
            return int(number) * binary[suffix]
        except ValueError as e:
            raise argparse.ArgumentTypeError(
                "Decimals are not allowed "
                f"with binary suffixes like {suffix}. Did you mean to use "
                f"{number}{suffix.lower()} instead?"
            ) from e
    return int(value)


def human_readable_int_or_auto(value: str) -> int:
    """vLLM's parser for `--max-model-len`: also `-1` or `auto` (fit to memory, 0.14+)."""
    value = value.strip()
    if value == "-1" or value.lower() == "auto":
        return -1
    return human_readable_int(value)


class _Toggle(argparse.Action):
    """A boolean with inverse spellings: `--x`/`--no-x`, and in 0.33 `--enable-x`/`--disable-x`."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.pop("nargs", None)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        primary = self.option_strings[0]
        setattr(namespace, self.dest, option_string == primary)


_TYPES: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "hint": human_readable_int,
    "auto": human_readable_int_or_auto,
}


def _dest(flag: Flag) -> str:
    return flag.names[0].lstrip("-").replace("-", "_")


def _toggle_names(flag: Flag, version: str) -> list[str]:
    """`--x` first (sets True), then its inverses (set False)."""
    name = flag.names[0]
    names = [name, "--no-" + name[2:]]
    if flag.kind == "enable" and version_at_least(version, (0, 33)):
        # 0.33's EnableDisableAction: --enable-x gets a visible --disable-x and vice versa [ref §2.1]
        if name.startswith("--enable-"):
            names.append("--disable-" + name[len("--enable-") :])
        elif name.startswith("--disable-"):
            names.append("--enable-" + name[len("--disable-") :])
    return names


def version_at_least(version: str, wanted: tuple[int, int]) -> bool:
    parts = re.findall(r"\d+", version)
    return (int(parts[0]), int(parts[1])) >= wanted


def build_parser(version: str) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The `vllm` parser and its `serve` sub-parser (allow_abbrev on, as in vLLM)."""
    import textwrap  # noqa: PLC0415

    from vllm_guard.sim import scenario  # noqa: PLC0415 - the settings' own description

    about = textwrap.fill(
        f"vllm-guard's simulator of vLLM {version}: a stand-in for `vllm serve MODEL [flags]` that "
        "needs no GPU, for the guard's tests, its demo and benchmarks. It prints what vLLM prints "
        "and fails as vLLM fails (out of memory, a gated model, a hang, ...), as its VLLM_GUARD_SIM_* "
        "settings below make it (docs/simulator.md). Under the guard:",
        width=96,
    )
    faults = "        known faults: " + ", ".join(
        name + ("" if kind is None else "=N") for name, kind in scenario.FAULTS.items()
    )
    top = argparse.ArgumentParser(
        prog="vllm",
        description=about + '\n\n  vllm-guard --vllm-command "python -m vllm_guard.sim" serve MODEL [flags]',
        epilog=(scenario.__doc__ or "").split("\n", 1)[1].rstrip() + "\n" + faults,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("-v", "--version", action="version", version=version)
    subparsers = top.add_subparsers(required=False, dest="subparser")
    serve = argparse.ArgumentParser()
    for name in SUBCOMMANDS:
        parser = subparsers.add_parser(
            name, usage=f"vllm {name} [model_tag] [options]" if name == "serve" else None
        )
        if name == "serve":
            serve = parser
    serve.add_argument("model_tag", nargs="?")
    for flag in FLAGS:
        _add(serve, flag, version)
    return top, serve


def _add(parser: argparse.ArgumentParser, flag: Flag, version: str) -> None:
    dest = _dest(flag)
    if flag.kind in ("bool", "enable"):
        parser.add_argument(*_toggle_names(flag, version), dest=dest, action=_Toggle, default=flag.default)
        for alias in flag.names[1:]:
            parser.add_argument(alias, dest=dest, action="store_true")
    elif flag.kind == "store_true":
        parser.add_argument(*flag.names, dest=dest, action="store_true")
    elif flag.kind == "list":
        parser.add_argument(*flag.names, dest=dest, nargs="+", default=flag.default)
    elif flag.kind == "optional":
        parser.add_argument(*flag.names, dest=dest, nargs="?", const=True, default=flag.default)
    elif flag.kind == "choice":
        parser.add_argument(*flag.names, dest=dest, choices=flag.choices, default=flag.default)
    else:
        parser.add_argument(*flag.names, dest=dest, type=_TYPES.get(flag.kind, str), default=flag.default)


@dataclass(frozen=True, slots=True)
class Parsed:
    """What `vllm serve` was asked for: the values vLLM reads, in vLLM's own units."""

    values: dict[str, Any]  # every dest, as argparse left it (after vLLM's own moves)
    non_default: dict[str, Any]  # for the `non-default args: {...}` line, in vLLM's order
    model_option_used: bool  # the model came from `--model` (vLLM warns)

    def get(self, dest: str) -> Any:
        return self.values.get(dest)


def parse(argv: Sequence[str], version: str, environ: dict[str, str] | None = None) -> Parsed:
    """Parse `serve MODEL [flags]` like vLLM; argparse errors exit 2 with vLLM's texts."""
    env = os.environ if environ is None else environ
    top, serve = build_parser(version)
    args = rewrite(list(argv))
    namespace = top.parse_args(args)
    if getattr(namespace, "subparser", None) != "serve":
        top.print_usage()
        raise SystemExit(2)
    values = vars(namespace)
    values.pop("subparser", None)
    model_option_used = False
    if values.get("model_tag") is None and values.get("model") != DEFAULT_MODEL:
        # `--model X` is moved to the positional slot, with a warning [ref §2.1]
        values["model_tag"] = values["model"]
        model_option_used = True
    if values.get("model_tag") is not None:
        values["model"] = values["model_tag"]
    if values.get("api_key") is None and env.get("VLLM_API_KEY"):
        values["api_key"] = [env["VLLM_API_KEY"]]
    non_default = {k: v for k, v in values.items() if k != "config" and v != serve.get_default(k)}
    return Parsed(values=values, non_default=non_default, model_option_used=model_option_used)


def rewrite(args: list[str]) -> list[str]:
    """FlexibleArgumentParser's argv rewriting, in its order: config file, dashes, dotted JSON."""
    args = _insert_config(args)
    out: list[str] = []
    json_values: dict[str, dict[str, Any]] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg.startswith("--"):
            key, eq, value = arg.partition("=")
            arg = key.replace("_", "-") + eq + value
        dotted = _dotted(arg)
        if dotted is not None:
            flag, key, value_or_none = dotted
            if value_or_none is None and index < len(args):
                value_or_none = args[index]
                index += 1
            if flag not in json_values:
                json_values[flag] = {}
                out.extend([flag, ""])  # placeholder, filled below (keeps the position)
            _set_dotted(json_values[flag], key, value_or_none or "")
            continue
        out.append(arg)
    for flag, merged in json_values.items():
        position = out.index(flag)
        out[position + 1] = json.dumps(merged)
    return out


def _dotted(arg: str) -> tuple[str, str, str | None] | None:
    name, eq, value = arg.partition("=")
    head, dot, key = name.partition(".")
    if not dot or not key:
        return None
    flag = JSON_SHORT.get(head, head)
    if flag not in JSON_FLAGS:
        return None
    return flag, key.replace("-", "_"), (value if eq else None)


def _set_dotted(target: dict[str, Any], key: str, raw: str) -> None:
    *parents, leaf = key.split(".")
    for parent in parents:
        target = target.setdefault(parent, {})
    try:
        target[leaf] = json.loads(raw)
    except json.JSONDecodeError:
        target[leaf] = raw


def _insert_config(args: list[str]) -> list[str]:
    """`--config FILE` (exactly two tokens; `--config=FILE` is ignored by vLLM too [ref §2.1]).

    The file's flags go right after `serve MODEL`, so the command line, coming later, wins. A
    `false` boolean in the file is dropped, as vLLM drops it; a positional model beats `model:`.
    """
    if "--config" not in args:
        return args
    at = args.index("--config")
    if at + 1 >= len(args):
        return args
    path = args[at + 1]
    rest = args[:at] + args[at + 2 :]
    with open(path, encoding="utf-8") as handle:
        loaded = yaml.safe_load(handle) or {}
    from_file: list[str] = []
    file_model: str | None = None
    for key, value in dict(loaded).items():
        name = "--" + str(key).replace("_", "-")
        if name == "--model":
            file_model = str(value)
        elif isinstance(value, bool):
            if value:
                from_file.append(name)
        elif isinstance(value, list):
            from_file.extend([name, *(str(v) for v in value)])
        elif isinstance(value, dict):
            from_file.extend([name, json.dumps(value)])
        else:
            from_file.extend([name, str(value)])
    head = rest[:1]  # "serve"
    tail = rest[1:]
    if tail and not tail[0].startswith("-"):
        head, tail = rest[:2], rest[2:]
    elif file_model is not None:
        head = [*head, file_model]
    return [*head, *from_file, "--config", path, *tail]
