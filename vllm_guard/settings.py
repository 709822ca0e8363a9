"""Every guard option, defined once: command line > `VLLM_GUARD_*` environment > defaults."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from vllm_guard.errors import ExitCode, GuardError

if TYPE_CHECKING:
    from vllm_guard.policy import Discipline

ENV_PREFIX = "VLLM_GUARD_"
SHIPPED_POLICIES = Path(__file__).resolve().parent / "policies"


def shipped_policy(name: str) -> Path | None:
    """The file of a shipped policy named `name` (`default`), None when `name` is a user's file.
    Here, not in policy_file.py: serve asks before vLLM starts, and pydantic's schema is slow to load."""
    path = SHIPPED_POLICIES / f"{name}.yaml"
    return path if "/" not in name and path.is_file() else None


def default_state_dir() -> Path:
    """systemd's `StateDirectory=` when it set one, else `$XDG_STATE_HOME/vllm-guard`."""
    systemd_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd_dir:
        return Path(systemd_dir)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "vllm-guard"


class GuardSettings(BaseSettings):
    """The guard's options. Field names are the option names: `grace_period_s` is
    `--grace-period-s` and `VLLM_GUARD_GRACE_PERIOD_S`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True)

    vllm_command: str = Field(
        "vllm",
        description="the vLLM command line, split like a shell (never run through one); "
        "`serve MODEL ARGS` is appended",
        min_length=1,
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="where attempt logs, the journal and the lock live",
    )
    grace_period_s: float = Field(
        30.0,
        gt=0,
        description="how long vLLM may take to stop after SIGTERM before its whole tree is killed "
        "(vLLM's own --shutdown-timeout plus a margin, when longer)",
    )
    max_restarts: int = Field(
        5, ge=0, description="restarts allowed within --restart-window-s before giving up"
    )
    restart_window_s: float = Field(3600.0, gt=0, description="the window for --max-restarts")
    backoff_initial_s: float = Field(
        2.0, ge=0, description="first delay before a restart with the same flags"
    )
    backoff_max_s: float = Field(60.0, ge=0, description="the longest delay between restarts")
    backoff_jitter_s: float = Field(
        1.0, ge=0, description="random delay added to each restart (0 to this many seconds)"
    )
    healthy_reset_s: float = Field(
        300.0,
        ge=0,
        description="an attempt healthy this long resets the backoff to its first step and lets the "
        "ladder start over",
    )
    startup_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="how long vLLM may go without answering /health and without any progress in its "
        "output (a milestone, a progress bar) before it counts as hung; vLLM itself has no such deadline",
    )
    health_interval_s: float = Field(1.0, gt=0, description="how often /health is polled")
    health_timeout_s: float = Field(5.0, gt=0, description="how long one /health request may take")
    health_failures: int = Field(
        3, ge=1, description="consecutive failed /health polls after ready that mean vLLM hung"
    )
    kill_timeout_s: float = Field(
        30.0,
        gt=0,
        description="how long processes may take to vanish after SIGKILL before the guard "
        "refuses to relaunch beside them",
    )
    gpu_release_timeout_s: float = Field(
        30.0, ge=0, description="how long to wait for GPU memory to come back after a stop"
    )
    log_max_bytes: int = Field(
        64 * 1024 * 1024,
        ge=64 * 1024,
        description="size cap of one attempt's log file in the state directory",
    )
    log_format: Literal["text", "json"] = Field("text", description="format of the guard's lines")
    policy: str = Field(
        "default",
        min_length=1,
        description="the policy: a shipped one's name (default, keep-quality) or a YAML file",
    )
    pin: str = Field(
        "",
        description="vLLM flags the guard must never change, comma-separated: --pin --max-model-len, "
        "--pin max-model-len and --pin=--max-model-len,--quantization all work",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="where the guard's own /metrics, /livez, /readyz and /status listen "
        "(0.0.0.0 for Kubernetes probes)",
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="the port of the guard's own endpoints; unset: not served"
    )
    stall_s: float = Field(
        120.0,
        gt=0,
        description="requests running or waiting while vllm:generation_tokens_total stands still this "
        "long mean vLLM hung (a wedged engine may still answer /health)",
    )
    advice_window_s: float = Field(
        60.0,
        gt=0,
        description="the advisor's short window while vLLM serves (its long one is five times it): "
        "a condition holds on the metrics of that last stretch",
    )
    preflight: Literal["adjust", "warn", "off"] = Field(
        "adjust",
        description="before serve launches vLLM: check the GPU, memory, shm, disk, token and port, and "
        "start from flags that fit (adjust), only say what does not fit (warn), or skip it (off)",
    )
    config_json: Path | None = Field(
        None,
        description="a config.json for preflight to judge the model's memory by, where the model's own "
        "files are not on this machine yet (a config.json alone is enough)",
    )
    shared_state: Path | None = Field(
        None,
        description="a folder several guards share (a volume every replica mounts): the flags that "
        "reached ready and what starts measured are kept there too, one file per key, so that a "
        "replica of the same model on the same GPUs starts right the first time",
    )
    group_token_file: Path | None = Field(
        None,
        description="a multi-node vLLM group's shared secret, in a file (on Kubernetes a Secret's key): "
        "required on every node's guard; the guards' reports to the leader carry it",
    )
    group_leader: str | None = Field(
        None,
        description="a follower's way to the leader's guard, http://HOST:PORT (unset: the leader's "
        "address in vLLM's flags, --master-addr or --data-parallel-address, at this guard's --metrics-port)",
    )
    group_lost_after_s: float = Field(
        300.0,
        gt=0,
        description="how long the leader's guard waits for a follower's guard that stopped reporting "
        "before it restarts the group (long enough for a slow node's load); a follower that reports "
        "again is back",
    )
    gpu_snapshot: Path | None = Field(
        None,
        description="read the GPUs from this file (written by preflight --save-gpu-snapshot) instead "
        "of NVML: planning, and tests",
    )

    def discipline(self) -> Discipline:
        """The restart discipline the policy's decisions follow."""
        from vllm_guard.policy import Discipline  # noqa: PLC0415 - not on serve's pre-exec path

        return Discipline(
            max_restarts=self.max_restarts,
            window_s=self.restart_window_s,
            backoff_initial_s=self.backoff_initial_s,
            backoff_max_s=self.backoff_max_s,
            backoff_jitter_s=self.backoff_jitter_s,
            healthy_reset_s=self.healthy_reset_s,
        )

    @property
    def pinned(self) -> frozenset[str]:
        from vllm_guard.vllm_args import canonical  # noqa: PLC0415

        # `max-model-len`, `max_model_len` and `--max-model-len` name the same flag: a name
        # written without its dashes must not pin nothing, silently.
        names = (f.strip().partition("=")[0] for f in self.pin.split(","))
        return frozenset(canonical(n if n.startswith("-") else "--" + n) for n in names if n)


def load(cli_values: dict[str, Any]) -> GuardSettings:
    """Settings from the command line (already parsed to strings) over the environment.

    Invalid values become a GuardError (exit 2) that names the option in both its spellings.
    """
    try:
        return GuardSettings(**cli_values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            flag, variable = "--" + field.replace("_", "-"), ENV_PREFIX + field.upper()
            given = flag if field in cli_values else variable  # where the bad value came from
            other = variable if field in cli_values else flag
            problems.append(f"{given} (also {other}): {error['msg']}")
        raise GuardError("invalid setting: " + "; ".join(problems), ExitCode.USAGE) from None


def option_choices(name: str) -> tuple[str, ...]:
    """The values an option takes, where it names them (`--log-format text|json`); else ()."""
    annotation = GuardSettings.model_fields[name].annotation
    return tuple(str(value) for value in get_args(annotation)) if get_origin(annotation) is Literal else ()


def option_help() -> dict[str, tuple[str, str]]:
    """Each option's flag → (field name, help), for the command-line parser: the help ends with
    the values it takes where they are a few words, and its default."""
    out: dict[str, tuple[str, str]] = {}
    for name, field in GuardSettings.model_fields.items():
        notes = []
        if field.default_factory is not None:
            notes.append(f"default {default_state_dir()} here" if name == "state_dir" else "")
        elif field.default is None:
            notes.append("default: unset")
        elif field.default != "":
            value = field.default
            notes.append(f"default {value:g}" if isinstance(value, float) else f"default {value}")
        said = "; ".join(note for note in notes if note)
        out["--" + name.replace("_", "-")] = (
            name,
            f"{field.description or ''} ({said})" if said else field.description or "",
        )
    return out


def misplaced_option(vllm_argv: Sequence[str], where: str) -> None:
    """A guard option among vLLM's flags would reach vLLM, which does not know it and says so in
    words of its own: stop before launching, and say where it goes."""
    from vllm_guard import vllm_flags  # noqa: PLC0415

    options = option_help()
    for arg in vllm_argv:
        name = arg.split("=", 1)[0]
        if name in options and not vllm_flags.exists(name, None):
            raise GuardError(
                f"{name} is a vllm-guard option, not vLLM's: put it before `{where}`",
                hint=f"vllm-guard {name} VALUE {where} MODEL [VLLM ARGS...]",
            )
