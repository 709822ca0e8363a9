"""--shared-state: what one guard learns, every guard that shares the folder starts from."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from state_files import a_start

from vllm_guard import measured
from vllm_guard.shared_state import SharedState, host
from vllm_guard.state import StateDir, known_good_key

KEY = known_good_key("m", ["--max-model-len", "131072"], "0.32.0", "NVIDIA L4 x1")


def _record(at: str, length: str = "32768") -> dict[str, object]:
    return {"model": "m", "edits": [["set", "--max-model-len", length]], "at": at}


def _guard(tmp_path: Path, name: str) -> StateDir:
    state = StateDir(tmp_path / name, "port 8000", shared=tmp_path / "shared")
    state.open("m")
    return state


def test_a_flag_set_one_guard_learned_is_where_another_starts_and_says_from_where(tmp_path: Path) -> None:
    first, second = _guard(tmp_path, "a"), _guard(tmp_path, "b")
    first.remember(KEY, _record("2026-12-07T01:00:00Z"))
    kept = tmp_path / "shared" / "known_good" / f"{KEY}.json"
    assert json.loads(kept.read_text())["host"] == host()
    remembered = second.remembered(KEY)
    assert remembered is not None and remembered.edits == [("set", "--max-model-len", "32768")]
    assert remembered.learned_elsewhere == f"on {host()} at 2026-12-07T01:00:00Z, kept in {kept}"
    # the guard that learned it starts from its own record, which is the same one
    own = first.remembered(KEY)
    assert own is not None and own.learned_elsewhere is None


def test_the_newer_of_the_own_and_the_shared_record_wins(tmp_path: Path) -> None:
    first, second = _guard(tmp_path, "a"), _guard(tmp_path, "b")
    second.remember(KEY, _record("2026-12-07T01:00:00Z", "32768"))
    first.remember(KEY, _record("2026-12-07T02:00:00Z", "16384"))  # learned since, elsewhere
    remembered = second.remembered(KEY)
    assert remembered is not None and remembered.edits == [("set", "--max-model-len", "16384")]
    assert remembered.learned_elsewhere is not None
    # and the user's own flags reaching ready again drops the record for the whole fleet
    second.remember(KEY, None)
    assert first.known_good() != {} and first.remembered(KEY) is not None  # a's own stays a's
    assert not (tmp_path / "shared" / "known_good" / f"{KEY}.json").exists()
    assert _guard(tmp_path, "c").remembered(KEY) is None


def test_a_shared_record_that_is_not_one_is_set_aside_and_the_own_one_used(tmp_path: Path) -> None:
    first = _guard(tmp_path, "a")
    first.remember(KEY, _record("2026-12-07T01:00:00Z"))
    kept = tmp_path / "shared" / "known_good" / f"{KEY}.json"
    kept.write_text(json.dumps({**_record("2026-12-08T00:00:00Z"), "edits": [["rm", "-x", None]]}))
    remembered = first.remembered(KEY)
    assert remembered is not None and remembered.learned_elsewhere is None
    assert not kept.exists() and len(list(kept.parent.glob(f"{KEY}.json.corrupt-*"))) == 1
    assert any("set aside" in w for w in first.warnings)
    kept.write_text("{torn")
    assert _guard(tmp_path, "b").remembered(KEY) is None


def test_measured_starts_are_shared_one_file_per_key_and_merged_by_age(tmp_path: Path) -> None:
    first, second = _guard(tmp_path, "a"), _guard(tmp_path, "b")
    first.remember_start(a_start("2026-12-07T01:00:00Z"))
    key = measured.key(a_start("x").setup, a_start("x").flags)
    assert [p.name for p in (tmp_path / "shared" / "measured").iterdir()] == [f"{key}.json"]
    assert second.starts()[key].at == "2026-12-07T01:00:00Z"
    # b's own, newer start of the same key replaces it in both places; a's file keeps its own
    second.remember_start(dataclasses.replace(a_start("2026-12-07T03:00:00Z"), kv_tokens=54000))
    assert first.starts()[key].kv_tokens == 54000
    assert json.loads((tmp_path / "a" / "measured.json").read_text())[key]["kv_tokens"] == 55000
    # one that is not a start is set aside by who may change the folder, skipped by a reader
    bad = tmp_path / "shared" / "measured" / "0123456789abcdef.json"
    bad.write_text(json.dumps({"model": "m", "available_kv_bytes": "lots"}))
    assert set(StateDir(tmp_path / "r", shared=tmp_path / "shared").starts(set_aside=False)) == {key}
    assert bad.exists()
    assert set(second.starts()) == {key} and not bad.exists()


def test_forget_drops_a_models_records_here_and_in_the_shared_state(tmp_path: Path) -> None:
    first, second = _guard(tmp_path, "a"), _guard(tmp_path, "b")
    first.remember(KEY, _record("2026-12-07T01:00:00Z"))
    other = known_good_key("n", [], None, None)
    second.remember(other, {**_record("2026-12-07T01:00:00Z"), "model": "n"})
    first.remember_start(a_start("2026-12-07T01:00:00Z"))
    assert second.forget("m") == 1 and second.forget_starts("m") == 1
    assert first.remembered(KEY) is not None  # a's own record is a's to forget
    assert first.forget("m") == 1
    assert [p.stem for p in (tmp_path / "shared" / "known_good").glob("*.json")] == [other]
    assert first.forget(None) == 1 and second.forget(None) == 1  # None: every model's, shared ones too


def test_files_that_are_not_a_keys_are_left_alone(tmp_path: Path) -> None:
    shared = SharedState(tmp_path, [])
    shared.open()
    (tmp_path / "known_good" / "README.json").write_text("not ours")
    (tmp_path / "known_good" / f".{KEY}.json.host.1.tmp").write_text("{half")
    assert list(shared.all("known_good")) == []
    with pytest.raises(ValueError, match="not a state key"):
        shared.write("known_good", "../escape", {})


def test_a_shared_state_that_cannot_be_written_is_said_and_costs_nothing_else(tmp_path: Path) -> None:
    # a path under a plain file: refused to root too (a read-only volume is, but only to others)
    (tmp_path / "file").write_text("")
    reader = StateDir(tmp_path / "b", "port 8000", shared=tmp_path / "file" / "shared")
    reader.open("m")
    assert any("is not writable" in w and "stays in its own state directory" in w for w in reader.warnings)
    assert reader.remembered(KEY) is None and reader.starts() == {}
    with pytest.raises(OSError):
        reader.remember(KEY, _record("2026-12-07T02:00:00Z"))
    assert reader.known_good()[KEY]["at"] == "2026-12-07T02:00:00Z"  # its own was kept first
