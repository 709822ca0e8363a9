"""Write vllm_guard/refusals.py: the sentences vLLM raises when it refuses its configuration, and
the ones it raises when a package it needs is missing.

Why: vLLM checks its arguments in vllm/config* and vllm/engine/arg_utils.py (and the OpenAI
server's cli_args.py) before it loads anything, and raises ValueError, TypeError, KeyError or
NotImplementedError there with a sentence naming what it refuses. Hundreds of such sentences exist
across releases; the catalogue names the common ones, and this table names every one of them, so a
refusal the catalogue has no phrase for (often the only line an excerpt keeps) is still an invalid
argument, which no restart fixes.

Each message of those files (tests/diagnosis/upstream/vllm_messages.json, mined by
scripts/mine_vllm_messages.py) is cut at its placeholders and sentence ends. A piece is kept when it
is long enough to say something (at least 24 characters and four words) and no message of any other
file, nor a message of these files that is not a refusal, contains it: a sentence vLLM also says
elsewhere tells nothing about where it failed.

The second table holds the pieces of every ImportError/ModuleNotFoundError message vLLM raises, in
any file, that no other message says: what a missing or outdated package looks like in vLLM's
words, which a wrapper may carry without its class (the V1 executor's "Worker failed with error
'...'", a Ray task error, a message logged with str(e)).

    .venv/bin/python scripts/make_refusals.py           # after mining a new release
    .venv/bin/python scripts/make_refusals.py --check   # exit 1 when the module is stale
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
MODULE = REPO / "vllm_guard" / "refusals.py"
MESSAGES = REPO / "tests" / "diagnosis" / "upstream" / "vllm_messages.json"

REFUSING_FILES = re.compile(r"^vllm/(config\b.*|engine/arg_utils\.py|entrypoints/openai/cli_args\.py)$")
REFUSING_CALLS = frozenset(
    {
        "raise ValueError",
        "raise TypeError",
        "raise KeyError",
        "raise NotImplementedError",
        "raise ArgumentTypeError",
    }
)
IMPORT_CALLS = frozenset({"raise ImportError", "raise ModuleNotFoundError"})
MIN_CHARS = 24
MIN_WORDS = 4
_SPLIT = re.compile(r"\{\}|(?<=[.;:!?])\s+")
_EDGES = " \t'\"`()[]{},.;:="


def _miner() -> ModuleType:
    script = REPO / "scripts" / "mine_vllm_messages.py"
    spec = importlib.util.spec_from_file_location("mine_vllm_messages", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mine_vllm_messages"] = module
    spec.loader.exec_module(module)
    return module


miner = _miner()


def pieces(template: str) -> list[str]:
    """The parts of a message that a log shows verbatim, whatever was filled in."""
    out = []
    for part in _SPLIT.split(miner.normal(template)):
        piece = part.strip(_EDGES)
        if len(piece) >= MIN_CHARS and len(piece.split()) >= MIN_WORDS:
            out.append(piece)
    return out


def distinctive(
    rows: Iterable[tuple[str, str, str, list[str]]],
    mined: list[str],
    wanted: Callable[[str, str], bool],
    ignored: Callable[[str, str], bool] = lambda path, call: False,
) -> list[tuple[str, str, str]]:
    """(piece, file, first-last release) for each piece of a `wanted` (path, call) message that no
    other message contains, an `ignored` one aside."""
    found: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
    others: list[str] = []
    for path, call, template, runs in rows:
        if wanted(path, call):
            for piece in pieces(template):
                files, versions = found[piece]
                files.add(path)
                versions.update(miner.expand(runs, mined))
        elif not ignored(path, call):
            others.append(miner.normal(template))
    table = []
    for piece, (files, versions) in sorted(found.items()):
        if any(piece in other for other in others):
            continue
        order = sorted(versions, key=miner.vkey)
        span = order[0] if len(order) == 1 else f"{order[0]}-{order[-1]}"
        table.append((piece, ", ".join(sorted(files)), span))
    return table


def refusals(rows: Iterable[tuple[str, str, str, list[str]]], mined: list[str]) -> list[tuple[str, str, str]]:
    """The configuration refusals' distinctive pieces. An assert of those files states a constraint
    the same way and is set aside (not a refusal itself: vLLM asserts its own invariants there too)."""
    return distinctive(
        rows,
        mined,
        lambda path, call: bool(REFUSING_FILES.match(path)) and call in REFUSING_CALLS,
        ignored=lambda path, call: call == "assert" and bool(REFUSING_FILES.match(path)),
    )


def import_failures(
    rows: Iterable[tuple[str, str, str, list[str]]], mined: list[str]
) -> list[tuple[str, str, str]]:
    """The distinctive pieces of vLLM's own ImportError messages, in any file."""
    return distinctive(rows, mined, lambda path, call: call in IMPORT_CALLS)


def render(table: list[tuple[str, str, str]], imports: list[tuple[str, str, str]]) -> str:
    lines = [
        '"""The sentences vLLM raises when it refuses its configuration or misses a package (generated;',
        "do not edit).",
        "",
        "Written by scripts/make_refusals.py from tests/diagnosis/upstream/vllm_messages.json: each",
        "(piece, file, releases) is a part of a message that no other vLLM message contains, lowercased,",
        "whitespace collapsed. REFUSALS: the ValueError/TypeError/KeyError/NotImplementedError messages",
        "raised in vllm/config*, vllm/engine/arg_utils.py or the OpenAI server's cli_args.py.",
        "IMPORT_FAILURES: the ImportError/ModuleNotFoundError messages raised anywhere in vllm/.",
        '"""',
        "",
        "REFUSALS: tuple[tuple[str, str, str], ...] = (",
    ]
    lines += [f"    ({piece!r}, {path!r}, {span!r})," for piece, path, span in table]
    lines += [")", "", "IMPORT_FAILURES: tuple[tuple[str, str, str], ...] = ("]
    lines += [f"    ({piece!r}, {path!r}, {span!r})," for piece, path, span in imports]
    lines += [")", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the module is not up to date")
    opts = parser.parse_args(argv)
    mined, messages = miner.load(MESSAGES)
    rows = [(m.path, m.call, m.template, miner.compress(v, mined)) for m, v in messages.items()]
    table = refusals(rows, mined)
    imports = import_failures(rows, mined)
    text = render(table, imports)
    if opts.check:
        if MODULE.read_text() != text:
            print(f"{MODULE} is stale: run scripts/make_refusals.py", file=sys.stderr)
            return 1
        return 0
    MODULE.write_text(text)
    print(f"wrote {len(table)} refusals and {len(imports)} import failures to {MODULE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
