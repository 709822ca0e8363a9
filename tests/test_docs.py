"""The fault table in docs/faults.md names tests: each one must exist, so the table cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_fault_table_names_exists() -> None:
    table = (ROOT / "docs" / "faults.md").read_text()
    named: list[tuple[str, str]] = []
    current = ""
    for match in re.finditer(r"`(?:(test_\w+\.py)::|::)(test_\w+)`", table):
        current = match.group(1) or current
        named.append((current, match.group(2)))
    assert len(named) > 30
    missing = [
        f"{module}::{name}"
        for module, name in named
        if not re.search(rf"^(async )?def {name}\(", (ROOT / "tests" / module).read_text(), re.M)
    ]
    assert missing == []
