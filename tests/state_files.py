"""Where a guard's own files lie in its state directory (vllm_guard/state.py): one folder per
serving endpoint, for tests that read them."""

from __future__ import annotations

from pathlib import Path

from vllm_guard.state import SERVING, endpoint_dir


def endpoint_file(state: Path, name: str, endpoint: str | None = None) -> Path:
    """`name` (journal.jsonl, processes.json, lock) of the guard that served on `endpoint`
    ("port 8000"), or, with None, of the one endpoint the state directory has served."""
    if endpoint is not None:
        return endpoint_dir(state, endpoint) / name
    folders = sorted((state / SERVING).glob("*/"))
    assert len(folders) <= 1, f"more than one endpoint in {state}: {folders}"
    return (folders[0] if folders else state / SERVING / "none") / name
