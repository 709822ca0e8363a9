"""Finding a model's files: local folders and a fake Hugging Face cache built in tmp_path."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from vllm_guard import model_files

CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64}
COMMIT = "0e9e39f249a16976918f6564b8830bc894c89659"


def make_cache(
    cache: Path,
    repo: str = "org/name",
    *,
    commit: str = COMMIT,
    ref: bool = True,
    config: dict[str, Any] | str = CONFIG,
    weights: dict[str, int] | None = None,
    index_total: int | None = None,
) -> Path:
    """The huggingface_hub layout: files live in blobs/, snapshots/<commit>/ links to them."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "blobs").mkdir(exist_ok=True)
    if ref:
        (repo_dir / "refs").mkdir()
        (repo_dir / "refs" / "main").write_text(commit)
    files: dict[str, bytes] = {
        "config.json": (config if isinstance(config, str) else json.dumps(config)).encode(),
    }
    if index_total is not None:
        files["model.safetensors.index.json"] = json.dumps(
            {"metadata": {"total_size": index_total}, "weight_map": {}}
        ).encode()
    for name, size in (weights or {}).items():
        files[name] = b"\0" * size
    for i, (name, data) in enumerate(files.items()):
        blob = repo_dir / "blobs" / f"{commit[:8]}{i:04d}"
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def test_hub_id_in_the_cache_follows_refs_main_and_blob_links(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    snapshot = make_cache(
        cache,
        weights={"model-00001-of-00002.safetensors": 3000, "model-00002-of-00002.safetensors": 2000},
        index_total=4096,
    )
    found = model_files.locate("org/name", download_dir=None, environ={"HF_HUB_CACHE": str(cache)})
    assert found is not None
    assert found.config == CONFIG
    assert found.path == snapshot
    assert found.cached
    assert found.index_total_size == 4096
    # The sizes of the blobs, not of the symlinks' text.
    assert found.bytes_on_disk == 3000 + 2000


def test_without_refs_main_the_newest_snapshot_wins(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    old = make_cache(cache, commit="a" * 40, ref=False)
    past = time.time() - 3600
    os.utime(old, (past, past))
    new = make_cache(cache, commit="b" * 40, ref=False, config={**CONFIG, "hidden_size": 128})
    found = model_files.locate("org/name", download_dir=None, environ={"HF_HUB_CACHE": str(cache)})
    assert found is not None
    assert found.path == new
    assert found.config["hidden_size"] == 128


def test_a_hub_id_not_in_the_cache_is_none(tmp_path: Path) -> None:
    env = {"HF_HUB_CACHE": str(tmp_path / "empty")}
    assert model_files.locate("org/missing", download_dir=None, environ=env) is None


def test_cache_precedence(tmp_path: Path) -> None:
    download, hub_cache, hf_home, home = (tmp_path / d for d in ("dl", "hubcache", "hfhome", "home"))
    make_cache(download, config={**CONFIG, "hidden_size": 1})
    make_cache(hub_cache, config={**CONFIG, "hidden_size": 2})
    make_cache(hf_home / "hub", config={**CONFIG, "hidden_size": 3})
    make_cache(home / ".cache" / "huggingface" / "hub", config={**CONFIG, "hidden_size": 4})
    env = {"HF_HUB_CACHE": str(hub_cache), "HF_HOME": str(hf_home), "HOME": str(home)}

    def width(download_dir: str | None, environ: dict[str, str]) -> object:
        found = model_files.locate("org/name", download_dir=download_dir, environ=environ)
        return found.config["hidden_size"] if found else None

    assert width(str(download), env) == 1  # --download-dir is vLLM's cache_dir
    assert width(None, env) == 2
    assert width(None, {"HF_HOME": str(hf_home), "HOME": str(home)}) == 3
    assert width(None, {"HOME": str(home)}) == 4


def test_a_local_folder(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG))
    (folder / "pytorch_model.bin").write_bytes(b"\0" * 700)
    (folder / "tokenizer.json").write_bytes(b"\0" * 50)
    found = model_files.locate(str(folder), download_dir=None, environ={})
    assert found is not None
    assert (found.path, found.cached, found.bytes_on_disk, found.index_total_size) == (
        folder,
        True,
        700,
        None,
    )


def test_a_folder_without_config_is_none(tmp_path: Path) -> None:
    assert model_files.locate(str(tmp_path), download_dir=None, environ={}) is None


def test_malformed_config_is_none(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    make_cache(cache, config="{not json")
    assert model_files.locate("org/name", download_dir=None, environ={"HF_HUB_CACHE": str(cache)}) is None
    folder = tmp_path / "list"
    folder.mkdir()
    (folder / "config.json").write_text("[1, 2]")
    assert model_files.locate(str(folder), download_dir=None, environ={}) is None


def test_a_malformed_index_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    snapshot = make_cache(cache)
    (snapshot / "model.safetensors.index.json").write_text("{broken")
    found = model_files.locate("org/name", download_dir=None, environ={"HF_HUB_CACHE": str(cache)})
    assert found is not None
    assert found.index_total_size is None


def test_a_dangling_weight_link_is_skipped(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    snapshot = make_cache(cache, weights={"model.safetensors": 10})
    (snapshot / "partial.safetensors").symlink_to(tmp_path / "gone")
    found = model_files.locate("org/name", download_dir=None, environ={"HF_HUB_CACHE": str(cache)})
    assert found is not None
    assert found.bytes_on_disk == 10
