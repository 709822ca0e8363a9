"""The state directory: the lock, remembered flag sets, a corrupt file set aside."""

from __future__ import annotations

from pathlib import Path

from vllm_guard import journal
from vllm_guard.state import KNOWN_GOOD, PROCESSES, StateDir, known_good_key


def test_remember_forget_and_atomic_replacement(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    key = known_good_key("m", ["--max-model-len", "4096"], None, None)
    state.remember(key, {"model": "m", "edits": [["set", "--max-model-len", "768"]]})
    assert state.known_good()[key]["model"] == "m"
    assert not list(tmp_path.glob(".*.tmp"))
    assert state.forget("other") == 0
    assert state.forget("m") == 1
    assert state.known_good() == {}


def test_a_corrupt_file_is_set_aside_not_trusted(tmp_path: Path) -> None:
    (tmp_path / KNOWN_GOOD).write_text("{not json")
    state = StateDir(tmp_path)
    assert state.known_good() == {}
    assert not (tmp_path / KNOWN_GOOD).exists()
    assert list(tmp_path.glob(f"{KNOWN_GOOD}.corrupt-*"))
    assert "could not be read" in state.warnings[0]


def test_the_key_depends_on_what_the_flags_were_for() -> None:
    base = known_good_key("m", ["--a", "1"], None, None)
    assert base == known_good_key("m", ["--a", "1"], None, None)
    assert base != known_good_key("m", ["--a", "2"], None, None)
    assert base != known_good_key("n", ["--a", "1"], None, None)
    assert base != known_good_key("m", ["--a", "1"], "0.33.0", "NVIDIA H100 80GB HBM3 x1")


def test_the_process_record_is_replaced_read_back_cleared_and_a_corrupt_one_set_aside(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.open()
    assert state.recorded_processes() == []
    state.record_processes({10: 1.5, 11: 2.25})
    state.record_processes({10: 1.5, 11: 2.25, 12: 3.0})
    assert state.recorded_processes() == [(10, 1.5), (11, 2.25), (12, 3.0)]
    state.clear_processes()
    assert state.recorded_processes() == []
    (tmp_path / PROCESSES).write_text('{"processes": [[10, "x"]]')
    assert state.recorded_processes() == []
    assert list(tmp_path.glob(f"{PROCESSES}.corrupt-*")) and "could not be read" in state.warnings[0]
    state.close()


def test_status_shows_only_what_the_journals_events_write() -> None:
    assert set(journal.SHOWN) <= journal.written_keys()
