"""Write docs/advice.md from the advisor's own data (vllm_guard/advice.py: CONDITIONS, Thresholds),
so the page never says other than the code does.

    .venv/bin/python scripts/make_advice_doc.py           # write it
    .venv/bin/python scripts/make_advice_doc.py --check   # exit 1 when it is stale
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from vllm_guard import advice

DOC = Path(__file__).resolve().parent.parent / "docs" / "advice.md"

HEAD = """\
# The advisor: what vLLM's metrics say to change

Written by `scripts/make_advice_doc.py` from `vllm_guard/advice.py`; do not edit by hand.

The advisor reads windows of vLLM's `/metrics`: the last minute, and the last five
(`--advice-window-s` sets the first; `vllm-guard doctor` uses what it sampled). It reads the
increase of counters and histogram buckets within a window, and the mean of gauges over it. It
also takes what is known of vLLM's flags: under `serve`, the user's flags over vLLM's defaults for
the version and the GPU; under `doctor`, what vLLM's `cache_config_info` and `/v1/models` say.
With these, each condition below either holds or does not. A fix names the flag's value now where
it is known, and never advises what is already on: chunked prefill and prefix caching are on by
default on the V1 engine (0.8+).

Under `serve`, a condition is said when it starts (after two readings in a row) and when it clears
(after three without it): once each, never at every reading. It is also a journal event (shown by
`status`), `vllm_guard_advice{condition}` on the exporter, and `advice` in `/status`. Advice never
restarts vLLM. `vllm-guard doctor [--json] [--duration S] [URL]` runs the same conditions against
any vLLM, but for those that read vLLM's log (the requests it refused): only `serve` reads that.
Which refusals vLLM logs at all depends on its release (some only answer the client): the table
says so where it matters.
"""


def render() -> str:
    lines = [HEAD, "## Conditions", ""]
    lines.append("| condition | reads | holds when | fixes |")
    lines.append("|---|---|---|---|")
    for c in advice.CONDITIONS:
        if c.source == "log":  # its lines hold backticks of their own
            reads = "vLLM's log: " + "; ".join(f"`` {line} ``" for line in c.reads)
        else:
            reads = ", ".join(f"`{name}`" for name in c.reads)
        lines.append(f"| `{c.name}` | {reads} | {c.threshold} | {c.advises} |")
    lines += [
        "",
        "A metric vLLM renamed is read in either spelling, the newest first: "
        + "; ".join(
            f"`{names[0]}` (was `{names[1]}`)"
            for names in (advice.KV_USAGE, advice.INTER_TOKEN, advice.PREFIX_QUERIES, advice.PREFIX_HITS)
        )
        + ".",
        "",
        "## Thresholds",
        "",
        "The policy file's `advice:` section sets them (`vllm-guard policy show` prints them); the",
        "defaults are the troubleshooting guide's.",
        "",
        "| name | default |",
        "|---|---|",
    ]
    defaults = advice.Thresholds()
    for field in fields(advice.Thresholds):
        lines.append(f"| `{field.name}` | {getattr(defaults, field.name):g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/advice.md is stale")
    opts = parser.parse_args(argv)
    text = render()
    if opts.check:
        current = DOC.read_text() if DOC.exists() else ""
        if current != text:
            print(f"{DOC} is stale: run scripts/make_advice_doc.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
