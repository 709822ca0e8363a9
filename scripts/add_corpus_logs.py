"""Join collected real logs to the diagnosis corpus (tests/diagnosis/fixtures), and score them as they join.

python scripts/add_corpus_logs.py PREFIX FILE.jsonl... [--dry]

Each line of a FILE is one log a collector copied verbatim from a public thread: {"source",
"kind", "name", "vllm_version", "exit_status", "ready_before_failure", "numbers", "decisive",
"note", "log"}. A record whose thread the corpus already has (or another record of this round
has) is left out, as is one of an unknown kind or with an empty log. The rest are written to
fixtures/KIND/PREFIX-NAME.log, byte for byte as collected, and appended to cases.json.

Before anything is written, the joining logs are scored, development and held-out apart: the
score a round gets as it joins is the honest measure of how the catalogue holds on logs it has
never seen (bench/RESULTS.md keeps one row a round). `--dry` only prints that.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "diagnosis"))

import corpus

from vllm_guard.failures import FailureKind

FIELDS = (
    "kind",
    "source",
    "vllm_version",
    "exit_status",
    "ready_before_failure",
    "numbers",
    "decisive",
    "note",
)
_SLUG = re.compile(r"[^a-z0-9]+")


def slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:80]


def records(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        # split at "\n" only: a collected log may hold U+2028 or a bare "\r", which splitlines cuts at
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise SystemExit(f"{path}:{number}: not a JSON object ({error})") from error
    return out


def select(
    found: list[dict[str, Any]], known: set[str], prefix: str, taken: Iterable[str] = ()
) -> tuple[list[tuple[dict[str, Any], str]], list[str]]:
    """(case, log) for each record that may join, and why each other one may not; `taken`: the
    fixture files that exist, which a joining log never replaces."""
    kinds = {kind.value for kind in FailureKind}
    seen = set(known)
    joining: list[tuple[dict[str, Any], str]] = []
    left: list[str] = []
    names = set(taken)
    for record in found:
        source = str(record.get("source", ""))
        thread = corpus.thread(source)
        log = str(record.get("log", ""))
        if record.get("kind") not in kinds:
            left.append(f"{source}: kind {record.get('kind')!r} is none of the failure kinds")
        elif not log.strip():
            left.append(f"{source}: no log")
        elif thread in seen:
            left.append(f"{source}: the corpus already has {thread}")
        else:
            seen.add(thread)
            name = f"{record['kind']}/{prefix}-{slug(str(record.get('name') or thread))}"
            while f"{name}.log" in names:
                name += "-2"
            names.add(f"{name}.log")
            case = {"file": f"{name}.log"}
            case.update({field: record.get(field) for field in FIELDS})
            case["numbers"] = case["numbers"] or {}
            case["decisive"] = bool(case["decisive"] if case["decisive"] is not None else True)
            case["ready_before_failure"] = bool(case["ready_before_failure"])
            joining.append((case, log))
    return joining, left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("prefix", help="the round's file-name prefix, e.g. nd")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--dry", action="store_true", help="score the joining logs, write nothing")
    parser.add_argument("--fixtures", type=Path, default=corpus.FIXTURES)
    opts = parser.parse_args(argv)
    corpus.FIXTURES = opts.fixtures  # where the score reads each log from
    cases = json.loads((opts.fixtures / "cases.json").read_text(encoding="utf-8"))
    known = {corpus.thread(str(case["source"])) for case in cases}
    taken = {str(case["file"]) for case in cases}
    taken |= {path.relative_to(opts.fixtures).as_posix() for path in opts.fixtures.glob("*/*.log")}
    joining, left = select(records(opts.files), known, opts.prefix, taken)
    for reason in left:
        print(f"left out: {reason}")
    written: list[Path] = []
    joined = False
    try:
        for case, log in joining:  # written first: the score reads each log from its fixture file
            path = opts.fixtures / case["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("x", encoding="utf-8", newline="") as out:  # "x": never over a fixture
                written.append(path)
                out.write(log)
        development, held_out = corpus.parts([case for case, _ in joining])
        for name, part in (("development", development), ("held-out", held_out)):
            result = corpus.score(part)
            print(result.line(f"joining, {name}"))
            for file, expected, got in result.wrong if name == "development" else ():
                print(f"  {file}: {expected}, answered {got}")
        if not opts.dry:
            (opts.fixtures / "cases.json").write_text(
                json.dumps([*cases, *(case for case, _ in joining)], indent=1, ensure_ascii=False) + "\n",
                encoding="utf-8",
            )
            joined = True
            print(f"{len(joining)} logs joined the corpus")
    finally:
        if not joined:  # a dry run, or one that failed: only what this run wrote goes
            for path in written:
                path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
