"""Preflight's figures against the numbers real vLLM startups printed (tests/preflight/startups.json).

python bench/preflight_accuracy.py [--rows]

Per vLLM engine generation (V0, V1) and per part of the corpus (development, and the held-out third
that is never tuned on): the median and worst error of the weights per GPU, the median absolute
and the mean signed error of the KV cache size in tokens (positive: preflight expects more than vLLM
found, the optimistic side), and how many verdicts would start a length vLLM cannot hold. `--rows`
lists each development start's errors (held-out ones are counted, never listed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "preflight"))

import startups


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", action="store_true", help="each development start's errors")
    opts = parser.parse_args()
    compared = [startups.compare(r) for r in startups.load()]
    for part, rows in (
        ("development", [c for c in compared if not startups.held_out(c.record)]),
        ("held-out third", [c for c in compared if startups.held_out(c.record)]),
    ):
        print(startups.figures(rows).line(part))
        for engine in ("v0", "v1"):
            print("  " + startups.figures(c for c in rows if c.engine == engine).line(engine))
        if opts.rows and part == "development":
            for c in rows:
                r = c.record
                w = "n/a" if c.weights_error is None else f"{c.weights_error:+.1%}"
                k = "n/a" if c.kv_tokens_error is None else f"{c.kv_tokens_error:+.1%}"
                print(
                    f"    {r['model']} on {r['gpu']} x{r.get('tp', 1) * r.get('pp', 1)} vLLM {r['vllm_version']}: "
                    f"weights {w}, KV tokens {k}{', OPTIMISTIC' if c.optimistic else ''}"
                )


if __name__ == "__main__":
    main()
