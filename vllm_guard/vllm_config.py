"""The values of vLLM's `--config FILE` (YAML), which vLLM reads as if they were flags placed
before the command line's own."""

from __future__ import annotations

import os
from collections.abc import Sequence

from vllm_guard import vllm_args


def read(args: Sequence[str]) -> dict[str, object]:
    """The flags of the `--config` file named in `args`, {} when there is none. An unreadable or
    malformed file is vLLM's to report when it starts, so it reads here as empty."""
    path = vllm_args.config_file(args)
    if path is None:
        return {}
    import yaml  # noqa: PLC0415 - most launches have no config file

    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def flags(args: Sequence[str], version: str | None = None) -> vllm_args.EffectiveFlags:
    """The attempt's flags as vLLM reads them, its config file read once."""
    return vllm_args.EffectiveFlags(tuple(args), read(args), version)


def effective(args: Sequence[str]) -> tuple[str, ...]:
    """The flags as vLLM sees them: the config file's, then the command line's (the last wins)."""
    return vllm_args.with_config(args, read(args))


# Hosts that bind every address: a vLLM on one of them holds the port on all of them.
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def endpoint(args: Sequence[str]) -> str:
    """Where vLLM will serve, as a guard names it: "socket PATH" (--uds), "port N" (--port, 8000
    by default, on every address) or "port N on HOST" (--host naming one address: two vLLMs
    can serve one port on two addresses). Two vLLMs cannot serve on one, so each has its guard."""
    seen = effective(args)
    uds = vllm_args.get(seen, "--uds")
    if uds:
        return f"socket {os.path.abspath(uds)}"
    port = f"port {vllm_args.get(seen, '--port') or '8000'}"
    host = (vllm_args.get(seen, "--host") or "").strip()
    return port if host in WILDCARD_HOSTS else f"{port} on {host}"
