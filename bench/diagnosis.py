"""The diagnosis figures on the corpus of real logs: the development part and the held-out third.

python bench/diagnosis.py [--wrong]

The split and the scoring are tests/diagnosis/corpus.py's (a hash of each case's thread); the
held-out third is never tuned on, so a large gap between the two figures means the catalogue fits
the logs it was shown rather than vLLM. `--wrong` lists the development cases it gets wrong (the
held-out ones are counted, never listed).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "diagnosis"))

import corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wrong", action="store_true", help="list the development cases it gets wrong")
    opts = parser.parse_args()
    cases = corpus.load()
    development, held_out = corpus.parts(cases)
    kinds = collections.Counter(str(c["kind"]) for c in cases if corpus.decisive(c))
    print(f"{len(cases)} cases from {len({corpus.thread(str(c['source'])) for c in cases})} threads or runs, "
          f"{sum(kinds.values())} decisive; by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))  # fmt: skip
    dev, held = corpus.score(development), corpus.score(held_out)
    print(dev.line("development"))
    print(held.line("held-out third"))
    if opts.wrong:
        for file, expected, got in dev.wrong:
            print(f"  {file}: {expected}, answered {got}")


if __name__ == "__main__":
    main()
