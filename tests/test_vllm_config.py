from __future__ import annotations

from pathlib import Path

from vllm_guard import vllm_config


def test_the_config_files_values_come_before_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("max-model-len: 4096\nenforce_eager: true\ntrust_remote_code: false\nport: 9000\n")
    args = ("--config", str(config), "--port", "8001")
    assert vllm_config.read(args) == {
        "max-model-len": 4096,
        "enforce_eager": True,
        "trust_remote_code": False,
        "port": 9000,
    }
    # false booleans are dropped, as vLLM drops them; the command line's --port comes last and wins
    assert vllm_config.effective(args) == (
        "--max-model-len", "4096", "--enforce-eager", "--port", "9000", *args,
    )  # fmt: skip


def test_no_file_a_missing_one_or_a_malformed_one_reads_as_empty(tmp_path: Path) -> None:
    assert vllm_config.read(("--port", "1")) == {}
    assert vllm_config.read(("--config", str(tmp_path / "absent.yaml"))) == {}
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_model_len: [unclosed\n")
    assert vllm_config.read(("--config", str(bad))) == {}
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    assert vllm_config.read(("--config", str(listing))) == {}
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    assert vllm_config.read(("--config", str(binary))) == {}
