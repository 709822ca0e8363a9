"""The systemd units in systemd/: the settings that carry the guard's contract with systemd, and
`systemd-analyze verify` over them (scripts/check-systemd.sh), which is required, never skipped. Values
that only restate the units are left to review: a test of them fails only on a deliberate edit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vllm_guard import settings
from vllm_guard.errors import ExitCode

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "vllm-guard.service"
TEMPLATE = ROOT / "systemd" / "vllm-guard@.service"
EXAMPLE_ENV = ROOT / "systemd" / "example.env"
CHECK = ROOT / "scripts" / "check-systemd.sh"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(path: Path) -> Unit:
    """section → key → every value in order (Environment= and friends repeat; configparser keeps one)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key}= set {len(values)} times"
    return values[0]


def environment(unit: Unit) -> dict[str, str]:
    env = {}
    for value in unit["Service"].get("Environment", []):
        name, _, val = value.partition("=")
        env[name] = val
    return env


def parse_env_file(path: Path, *, commented: bool = False) -> dict[str, str]:
    """systemd's EnvironmentFile= syntax for what example.env uses: KEY=VALUE, a value's surrounding
    quotes removed. `commented`: the commented-out assignments too (the options it suggests)."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if commented and re.match(r"#[A-Z_]+=", line):
            line = line[1:]
        if not line or line[0] in "#;":
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f"not KEY=VALUE: {raw!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            # systemd has no trailing comments: this would become part of the value.
            assert " #" not in value, f"a comment after a value is part of the value: {raw!r}"
        env[name] = value
    return env


@pytest.fixture(params=[UNIT, TEMPLATE], ids=["unit", "template"])
def unit(request: pytest.FixtureRequest) -> Unit:
    path: Path = request.param
    return parse_unit(path)


def test_stop_outlasts_the_guards_own_stop(unit: Unit) -> None:
    """KillMode=mixed: SIGTERM to the guard alone, which stops vLLM in order; systemd's SIGKILL to
    the whole cgroup only after TimeoutStopSec, which must outlast grace period + kill timeout."""
    assert one(unit, "Service", "KillMode") == "mixed"
    defaults = settings.GuardSettings.model_fields
    guard_stop_s = defaults["grace_period_s"].default + defaults["kill_timeout_s"].default
    assert int(one(unit, "Service", "TimeoutStopSec")) >= guard_stop_s + 20


def test_restart_follows_the_exit_codes(unit: Unit) -> None:
    assert one(unit, "Service", "Restart") == "on-failure"  # exit 0 (stopped on request) is not restarted
    prevented = {int(code) for code in one(unit, "Service", "RestartPreventExitStatus").split()}
    # Every code but a guard bug (1) says restarting the guard cannot help (4: it already gave up).
    assert prevented == {code.value for code in ExitCode} - {ExitCode.STOPPED, ExitCode.GUARD_BUG}


def test_the_gpus_stay_visible(unit: Unit) -> None:
    # PrivateDevices= would hide /dev/nvidia*; NVML would then find no GPU and preflight would stop.
    assert "PrivateDevices" not in unit["Service"]


def test_the_templates_instances_share_nothing() -> None:
    # Two instances with one state directory would fight over its lock (the second guard exits 2),
    # and with one metrics port the second exporter could not bind.
    template = parse_unit(TEMPLATE)
    assert "%i" in one(template, "Service", "EnvironmentFile")
    assert "%i" in one(template, "Service", "StateDirectory")
    assert "VLLM_GUARD_METRICS_PORT" not in environment(template)


def test_the_template_differs_from_the_unit_only_per_instance() -> None:
    unit, template = parse_unit(UNIT), parse_unit(TEMPLATE)
    per_instance = {"Description", "EnvironmentFile", "StateDirectory", "Environment"}
    for section in unit.keys() | template.keys():
        for key in unit.get(section, {}).keys() | template.get(section, {}).keys():
            if key not in per_instance:
                assert unit[section].get(key) == template[section].get(key), f"[{section}] {key}="
    shared = environment(unit)
    del shared["VLLM_GUARD_METRICS_PORT"]
    assert environment(template) == shared


def _guard_variables(text: str) -> set[str]:
    return set(re.findall(r"\b" + settings.ENV_PREFIX + r"([A-Z0-9_]+)", text))


@pytest.mark.parametrize("path", [UNIT, TEMPLATE, EXAMPLE_ENV], ids=lambda p: p.name)
def test_every_guard_variable_is_a_guard_option(path: Path) -> None:
    """VLLM_GUARD_* is the guard's options' namespace: the model and vLLM's arguments stay out of it
    (and out of VLLM_*, which vLLM warns about when it does not know a name)."""
    fields = {name.upper() for name in settings.GuardSettings.model_fields}
    assert _guard_variables(path.read_text()) <= fields


def test_the_example_environment_file(monkeypatch: pytest.MonkeyPatch) -> None:
    env = parse_env_file(EXAMPLE_ENV)
    assert env["MODEL"] and " " not in env["MODEL"]
    assert env["SERVE_ARGS"].split()[:2] == ["--host", "0.0.0.0"]
    # Every variable it sets or suggests, in the environment at once, is settings the guard accepts.
    suggested = parse_env_file(EXAMPLE_ENV, commented=True)
    assert "VLLM_GUARD_GRACE_PERIOD_S" in suggested
    for name, value in suggested.items():
        monkeypatch.setenv(name, value)
    loaded = settings.load({})
    assert loaded.metrics_port == 9400
    assert loaded.grace_period_s == 30


def test_systemd_analyze_verifies_both_units() -> None:
    # A required check, never a skip: the script installs systemd-analyze when it runs as root (as CI
    # does) and fails elsewhere when it is missing.
    done = subprocess.run(["bash", str(CHECK)], capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "check-systemd: ok" in done.stdout


def test_the_check_fails_on_a_warning(tmp_path: Path) -> None:
    """systemd-analyze verify exits 0 on a bad value; the check must not."""
    for path in (UNIT, TEMPLATE):
        shutil.copy(path, tmp_path / path.name)
    broken = tmp_path / TEMPLATE.name
    broken.write_text(broken.read_text().replace("KillMode=mixed", "KillMode=mixd"))
    done = subprocess.run(
        ["bash", str(CHECK), str(tmp_path)], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "mixd" in done.stderr
