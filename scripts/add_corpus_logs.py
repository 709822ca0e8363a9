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
from pathlib import Path
from typing import Any

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
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise SystemExit(f"{path}:{number}: not a JSON object ({error})") from error
    return out


def select(
    found: list[dict[str, Any]], known: set[str], prefix: str
) -> tuple[list[tuple[dict[str, Any], str]], list[str]]:
    """(case, log) for each record that may join, and why each other one may not."""
    kinds = {kind.value for kind in FailureKind}
    seen = set(known)
    joining: list[tuple[dict[str, Any], str]] = []
    left: list[str] = []
    names: set[str] = set()
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
            name = f"{prefix}-{slug(str(record.get('name') or thread))}"
            while name in names:
                name += "-2"
            names.add(name)
            case = {"file": f"{record['kind']}/{name}.log"}
            case.update({field: record.get(field) for field in FIELDS})
            case["numbers"] = case["numbers"] or {}
            case["decisive"] = bool(case["decisive"] if case["decisive"] is not None else True)
            case["ready_before_failure"] = bool(case["ready_before_failure"])
            joining.append((case, log if log.endswith("\n") else log + "\n"))
    return joining, left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("prefix", help="the round's file-name prefix, e.g. nd")
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--dry", action="store_true", help="score the joining logs, write nothing")
    parser.add_argument("--fixtures", type=Path, default=corpus.FIXTURES)
    opts = parser.parse_args(argv)
    corpus.FIXTURES = opts.fixtures  # where the score reads each log from
    cases = json.loads((opts.fixtures / "cases.json").read_text())
    known = {corpus.thread(str(case["source"])) for case in cases}
    joining, left = select(records(opts.files), known, opts.prefix)
    for reason in left:
        print(f"left out: {reason}")
    for case, log in joining:  # written first: the score reads each log from its fixture file
        path = opts.fixtures / case["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(log)
    try:
        development, held_out = corpus.parts([case for case, _ in joining])
        for name, part in (("development", development), ("held-out", held_out)):
            result = corpus.score(part)
            print(result.line(f"joining, {name}"))
            for file, expected, got in result.wrong if name == "development" else ():
                print(f"  {file}: {expected}, answered {got}")
    finally:
        if opts.dry:
            for case, _ in joining:
                (opts.fixtures / case["file"]).unlink()
    if not opts.dry:
        (opts.fixtures / "cases.json").write_text(
            json.dumps([*cases, *(case for case, _ in joining)], indent=1, ensure_ascii=False) + "\n"
        )
        print(f"{len(joining)} logs joined the corpus")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
