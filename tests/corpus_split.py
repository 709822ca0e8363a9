"""The split every corpus of real vLLM evidence uses (tests/diagnosis, tests/preflight): once, by a
hash of the thread a record comes from, into a development part and a held-out third that nothing
is ever tuned on."""

from __future__ import annotations

import hashlib
import re
from typing import Any

_PAGE = re.compile(r"(https?://[^\s?#)]+)")
_THREAD = re.compile(r"github\.com/([^/\s]+/[^/\s]+)/(?:issues|pull|discussions)/(\d+)")


def thread(source: str) -> str:
    """The thread a case comes from: `owner/repo#N` for a public thread (an issue and its pull
    request share the numbering), a page's address, else the captured file the source names."""
    match = _THREAD.search(source)
    if match:
        return f"{match.group(1).lower()}#{match.group(2)}"
    page = _PAGE.search(source)
    if page:  # a public page other than a GitHub thread: its address, without query or anchor
        return page.group(1).lower().rstrip("/")
    return re.split(r"[:\s(]", source.strip(), maxsplit=1)[0]


def held_out(case: dict[str, Any]) -> bool:
    """One third of the threads, chosen by their hash once and for all: never tuned on."""
    digest = hashlib.sha256(thread(str(case["source"])).encode()).hexdigest()
    return int(digest[:8], 16) % 3 == 0
