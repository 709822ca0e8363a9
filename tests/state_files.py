"""Where a guard's own files lie in its state directory (vllm_guard/state.py): one folder per
serving endpoint, for tests that read them."""

from __future__ import annotations

from pathlib import Path

from vllm_guard import measured
from vllm_guard.state import SERVING, endpoint_dir


def endpoint_file(state: Path, name: str, endpoint: str | None = None) -> Path:
    """`name` (journal.jsonl, processes.json, lock) of the guard that served on `endpoint`
    ("port 8000"), or, with None, of the one endpoint the state directory has served."""
    if endpoint is not None:
        return endpoint_dir(state, endpoint) / name
    folders = sorted((state / SERVING).glob("*/"))
    assert len(folders) <= 1, f"more than one endpoint in {state}: {folders}"
    return (folders[0] if folders else state / SERVING / "none") / name


def a_start(at: str, length: str = "8192") -> measured.Start:
    """A start of model "m" on one L4 as the state directory keeps it, made at `at`."""
    return measured.Start(
        model="m", gpu="NVIDIA L4", gpus=1, vllm_version="0.32.0", flags={"--max-model-len": length},
        total_bytes=22 << 30, utilization=0.92, weights_bytes=15 << 30, available_kv_bytes=3 << 30,
        kv_tokens=55000, graph_bytes=None, cold=False, at=at,
    )  # fmt: skip
