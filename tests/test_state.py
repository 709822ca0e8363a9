"""The state directory: the lock, remembered flag sets, a corrupt file set aside."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path

import pytest
from state_files import a_start

from vllm_guard import journal, vllm_config
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.state import KNOWN_GOOD, MEASURED, PROCESSES, StateDir, endpoint_dir, known_good_key, serving


def test_remember_and_forget(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    key = known_good_key("m", ["--max-model-len", "4096"], None, None)
    state.remember(key, {"model": "m", "edits": [["set", "--max-model-len", "768"]]})
    assert state.known_good()[key]["model"] == "m"
    assert state.forget("other") == 0
    assert state.forget("m") == 1
    assert state.known_good() == {}


def test_a_reader_never_sees_a_half_written_file(tmp_path: Path) -> None:
    """`status` reads known_good.json beside a running guard that rewrites it: every read is a
    whole file, the old one or the new one (a plain write would show a torn one)."""
    writer, reader = StateDir(tmp_path), StateDir(tmp_path)
    done = threading.Event()

    def rewrite() -> None:
        for n in range(200):
            edits = [["set", f"--flag-{i}", "x" * 512] for i in range(n % 40)]
            writer.remember("k", {"model": "m", "edits": edits})
        done.set()

    thread = threading.Thread(target=rewrite)
    thread.start()
    reads = 0
    while not done.is_set():
        reader.known_good(set_aside=False)
        reads += 1
    thread.join()
    assert reads > 0 and reader.warnings == []


def test_a_write_that_dies_before_the_replace_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateDir(tmp_path)
    state.remember("k", {"model": "m", "edits": []})
    before = (tmp_path / KNOWN_GOOD).read_bytes()

    def killed(*_: object) -> None:
        raise KeyboardInterrupt  # the guard stopped between writing the new file and replacing

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        state.remember("k2", {"model": "n", "edits": []})
    assert (tmp_path / KNOWN_GOOD).read_bytes() == before


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


def test_starts_are_kept_by_key_and_a_start_that_is_none_is_set_aside(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.remember_start(a_start("2026-12-01T00:00:00Z"))
    state.remember_start(a_start("2026-12-02T00:00:00Z"))  # the same start again: replaces it
    state.remember_start(a_start("2026-12-03T00:00:00Z", "4096"))
    assert sorted(s.at for s in state.starts().values()) == ["2026-12-02T00:00:00Z", "2026-12-03T00:00:00Z"]
    # an entry that is not a start is set aside with its bytes, the others stay
    data = json.loads((tmp_path / MEASURED).read_text())
    data["0123456789abcdef"] = {"model": "m", "available_kv_bytes": "lots"}
    (tmp_path / MEASURED).write_text(json.dumps(data))
    reader = StateDir(tmp_path)
    assert len(reader.starts(set_aside=False)) == 2 and list(tmp_path.glob(f"{MEASURED}.corrupt-*")) == []
    assert len(reader.starts()) == 2
    (aside,) = tmp_path.glob(f"{MEASURED}.corrupt-*")
    assert "0123456789abcdef" in json.loads(aside.read_text())
    assert "0123456789abcdef" not in json.loads((tmp_path / MEASURED).read_text())
    assert "set aside" in reader.warnings[0]
    # a file that is no JSON at all is set aside whole
    (tmp_path / MEASURED).write_text("{torn")
    assert StateDir(tmp_path).starts() == {}
    assert not (tmp_path / MEASURED).exists()


def test_forget_drops_what_a_models_starts_measured(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.remember_start(a_start("2026-12-01T00:00:00Z"))
    state.remember_start(dataclasses.replace(a_start("2026-12-02T00:00:00Z"), model="other"))
    assert state.forget_starts("m") == 1
    assert [s.model for s in state.starts().values()] == ["other"]
    assert state.forget_starts(None) == 1 and state.starts() == {}


def test_each_endpoint_has_its_lock_and_journal_and_all_share_what_they_remember(tmp_path: Path) -> None:
    first, second = StateDir(tmp_path, "port 8000"), StateDir(tmp_path, "port 8001")
    first.open("model-a")
    second.open("model-b")  # another endpoint: not held
    try:
        with pytest.raises(GuardError) as held:
            StateDir(tmp_path, "port 8000").open("model-c")
        assert held.value.exit_code == ExitCode.CANNOT_START
        assert f"(pid {os.getpid()}, serving model-a) holds port 8000" in held.value.message
        assert first.journal_path == tmp_path / "serving" / "port-8000" / "journal.jsonl"
        first.remember("key-a", {"model": "model-a", "argv": []})
        second.remember("key-b", {"model": "model-b", "argv": []})
        assert set(StateDir(tmp_path).known_good()) == {"key-a", "key-b"}
        found = {s.endpoint: s for s in serving(tmp_path)}
        assert found["port 8000"].running and found["port 8000"].model == "model-a"
        assert found["port 8001"].pid == os.getpid()
    finally:
        first.close()
        second.close()
    assert not any(s.running for s in serving(tmp_path))


def test_a_record_left_by_a_guard_before_endpoint_folders_is_taken_over(tmp_path: Path) -> None:
    # a guard that kept its files at the root was killed: the next one removes what it recorded
    (tmp_path / "processes.json").write_text(json.dumps({"guard": 1, "processes": [[4242, 1.5]], "shm": []}))
    state = StateDir(tmp_path, "port 8000")
    state.open("m")
    try:
        assert state.recorded_processes() == [(4242, 1.5)]
        assert not (tmp_path / "processes.json").exists()
    finally:
        state.close()
    # a socket's folder is named by a hash of its path
    assert endpoint_dir(tmp_path, "socket /run/vllm.sock").name.startswith("socket-")


def test_two_guards_opening_at_once_never_take_each_other_for_an_unwritable_directory(tmp_path: Path) -> None:
    # each probes with a file of its own, and prunes only its own endpoint's attempt logs
    def open_and_close(endpoint: str) -> None:
        for _ in range(200):
            state = StateDir(tmp_path, endpoint)
            state.open("m")
            state.attempt_log(1).write_text("x")
            state.close()

    threads = [threading.Thread(target=open_and_close, args=(f"port {8000 + n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert StateDir(tmp_path, "port 8000").logs != StateDir(tmp_path, "port 8001").logs
    assert endpoint_dir(tmp_path, "port 08001") == endpoint_dir(tmp_path, "port 8001")


def test_a_port_on_one_address_is_an_endpoint_of_its_own(tmp_path: Path) -> None:
    assert vllm_config.endpoint(["--port", "8001"]) == "port 8001"
    assert vllm_config.endpoint(["--host", "0.0.0.0", "--port", "8001"]) == "port 8001"  # every address
    assert vllm_config.endpoint(["--host", "::"]) == "port 8000"
    assert vllm_config.endpoint(["--host", "10.0.0.5", "--port", "8001"]) == "port 8001 on 10.0.0.5"
    assert endpoint_dir(tmp_path, "port 8001 on 10.0.0.5").name == "port-8001-on-10.0.0.5"
    ipv6 = endpoint_dir(tmp_path, "port 8001 on ::1").name
    assert ipv6.startswith("port-8001-on-__1-") and ipv6 != endpoint_dir(tmp_path, "port 8001 on __1").name
    first, second = StateDir(tmp_path, "port 8001 on 127.0.0.1"), StateDir(tmp_path, "port 8001 on 127.0.0.2")
    first.open("model-a")
    second.open("model-b")  # the same port on another address: another endpoint
    try:
        assert {s.endpoint for s in serving(tmp_path)} == {"port 8001 on 127.0.0.1", "port 8001 on 127.0.0.2"}
    finally:
        first.close()
        second.close()
    # a lock that names no endpoint (an older guard's) is named from its folder
    (tmp_path / "serving" / "port-8001-on-127.0.0.1" / "lock").write_text("1234")
    assert "port 8001 on 127.0.0.1" in {s.endpoint for s in serving(tmp_path)}


def test_a_guard_on_one_address_takes_over_what_the_ports_own_folder_recorded(tmp_path: Path) -> None:
    # an older guard on --host 10.0.0.5 --port 8001 kept its record under serving/port-8001 and was
    # killed: the guard of the same endpoint now has a folder of its own, and removes it all the same
    old = endpoint_dir(tmp_path, "port 8001")
    old.mkdir(parents=True)
    (old / "processes.json").write_text(json.dumps({"guard": 1, "processes": [[4242, 1.5]], "shm": []}))
    state = StateDir(tmp_path, "port 8001 on 10.0.0.5")
    state.open("m")
    try:
        assert state.recorded_processes() == [(4242, 1.5)]
        assert not (old / "processes.json").exists()
    finally:
        state.close()


def test_a_port_on_every_address_and_on_one_exclude_each_other(tmp_path: Path) -> None:
    everywhere = StateDir(tmp_path, "port 8001")
    everywhere.open("model-a")
    everywhere.record_processes({4242: 1.5}, frozenset())
    try:
        with pytest.raises(GuardError) as refused:
            StateDir(tmp_path, "port 8001 on 10.0.0.5").open("model-b")
        assert f"(pid {os.getpid()}, serving model-a) holds port 8001 in" in refused.value.message
        assert everywhere.recorded_processes() == [(4242, 1.5)]  # nothing taken over from a live guard
    finally:
        everywhere.close()
    one = StateDir(tmp_path, "port 8001 on 10.0.0.5")
    one.open("model-b")
    try:
        with pytest.raises(GuardError) as refused:
            StateDir(tmp_path, "port 8001").open("model-a")
        assert "holds port 8001 on 10.0.0.5 in" in refused.value.message
        StateDir(tmp_path, "port 8002").open("model-c")  # another port is another matter
    finally:
        one.close()


def test_setting_aside_a_bad_start_keeps_a_start_another_guard_kept_meanwhile(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    state.remember_start(a_start("2026-12-01T00:00:00Z"))
    data = json.loads((tmp_path / MEASURED).read_text())
    data["broken"] = {"model": "m"}
    (tmp_path / MEASURED).write_text(json.dumps(data))
    reader = StateDir(tmp_path)
    original = reader._read_records

    def meanwhile(name: str, what: str, *, set_aside: bool) -> dict[str, object]:
        read = original(name, what, set_aside=set_aside)
        if set_aside:  # the first read: another guard keeps a start before the bad one is set aside
            StateDir(tmp_path).remember_start(
                dataclasses.replace(a_start("2026-12-02T00:00:00Z"), model="other")
            )
        return read

    reader._read_records = meanwhile  # type: ignore[method-assign]
    assert len(reader.starts()) == 1
    assert {s.model for s in StateDir(tmp_path).starts().values()} == {"m", "other"}
    assert any("set aside" in w for w in reader.warnings)
