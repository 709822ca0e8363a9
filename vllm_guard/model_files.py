"""Finding a model's files on this machine: a local folder, or a hub id's snapshot in the Hugging Face
cache, read for `config.json`, the safetensors index's `total_size` and the weights' size on disk.

Never touches the network: a model that is not here yet is `None`, and vLLM downloads it as usual.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm_guard import hf_hub

_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True, slots=True)
class ModelFiles:
    config: dict[str, Any]
    index_total_size: int | None
    path: Path  # the local folder or the HF cache snapshot folder
    cached: bool  # True for a local folder or a hub id found in the cache
    bytes_on_disk: int  # *.safetensors / *.bin, symlinks into blobs/ followed


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _snapshot(repo_dir: Path) -> Path | None:
    """The snapshot `refs/main` names, else the most recently written one (a pinned revision)."""
    try:
        commit = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        commit = ""
    if commit and (repo_dir / "snapshots" / commit).is_dir():
        return repo_dir / "snapshots" / commit
    try:
        snapshots = [p for p in (repo_dir / "snapshots").iterdir() if p.is_dir()]
    except OSError:
        return None
    return max(snapshots, key=lambda p: p.stat().st_mtime, default=None)


def _bytes_on_disk(folder: Path) -> int:
    total = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if entry.name.endswith(_WEIGHT_SUFFIXES):
            try:
                total += entry.stat().st_size  # stat() follows the snapshot's symlink to the blob
            except OSError:
                continue  # a dangling link: an interrupted download
    return total


def _index_total_size(folder: Path) -> int | None:
    index = _read_json(folder / "model.safetensors.index.json")
    metadata = index.get("metadata") if index else None
    size = metadata.get("total_size") if isinstance(metadata, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def locate(model: str, *, download_dir: str | None, environ: Mapping[str, str]) -> ModelFiles | None:
    """The model's files, or None when they are not here or its config.json is unreadable."""
    local = Path(model).expanduser()
    if (local / "config.json").is_file():
        folder = local
    elif model.count("/") == 1 and not model.startswith((".", "/", "~")):
        repo_dir = hf_hub.hub_cache(environ, download_dir) / ("models--" + model.replace("/", "--"))
        snapshot = _snapshot(repo_dir)
        if snapshot is None:
            return None
        folder = snapshot
    else:
        return None
    config = _read_json(folder / "config.json")
    if config is None:
        return None
    return ModelFiles(
        config=config,
        index_total_size=_index_total_size(folder),
        path=folder,
        cached=True,
        bytes_on_disk=_bytes_on_disk(folder),
    )
