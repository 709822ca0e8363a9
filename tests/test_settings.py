from __future__ import annotations

from pathlib import Path

import pytest

from vllm_guard import settings
from vllm_guard.errors import ExitCode, GuardError


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    s = settings.load({})
    assert s.vllm_command == "vllm"
    assert s.state_dir == tmp_path / "vllm-guard"


def test_systemd_state_directory_wins_over_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'unit'}:{tmp_path / 'other'}")
    assert settings.load({}).state_dir == tmp_path / "unit"


def test_command_line_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_GUARD_MAX_RESTARTS", "7")
    assert settings.load({}).max_restarts == 7
    assert settings.load({"max_restarts": "2"}).max_restarts == 2
    monkeypatch.delenv("VLLM_GUARD_MAX_RESTARTS")
    assert settings.load({}).max_restarts == 5


def test_unrelated_prefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_GUARD_SIM_GPU_MEMORY_GIB", "80")
    assert settings.load({}).max_restarts == 5


def test_bad_values_name_the_option_as_the_user_gave_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(GuardError) as cli_error:
        settings.load({"grace_period_s": "-1"})
    assert "--grace-period-s" in cli_error.value.message
    assert cli_error.value.exit_code == ExitCode.USAGE
    monkeypatch.setenv("VLLM_GUARD_LOG_FORMAT", "xml")
    with pytest.raises(GuardError) as env_error:
        settings.load({})
    assert "VLLM_GUARD_LOG_FORMAT" in env_error.value.message


def test_every_option_has_a_flag_and_help() -> None:
    options = settings.option_help()
    assert "--vllm-command" in options
    assert "--state-dir" in options
    assert all(help_text for _, help_text in options.values())
