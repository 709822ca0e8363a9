"""Serve's preflight, and the facts the `preflight` command judges too: the GPUs (NVML or a
snapshot), the model's files, the host; preflight.py judges them."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_guard import gpu, hf_hub, machine, model_files, vllm_args, vllm_config
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.measured import MEMORY_ENV, Start
from vllm_guard.preflight import Allowed, Finding, Machine, ModelFacts, Verdict, check
from vllm_guard.settings import GuardSettings, shipped_policy

if TYPE_CHECKING:
    from vllm_guard.policy import Policy

_MARK = {"ok": "ok  ", "adjusted": "adj ", "warn": "warn", "fail": "FAIL", "unknown": "??  "}


def gpu_facts(settings: GuardSettings, environ: Mapping[str, str], *, cpu: bool = False) -> gpu.GpuFacts:
    """The devices vLLM will use: a snapshot's, the memory node of a CPU build (`cpu`), else
    NVML's GPUs."""
    if settings.gpu_snapshot is not None:
        return read_snapshot(settings.gpu_snapshot)
    if cpu:
        from vllm_guard.gpu import cpu_node  # noqa: PLC0415

        return cpu_node.read_facts(environ)
    return gpu.read_facts(environ)


def read_snapshot(path: Path) -> gpu.GpuFacts:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GuardError(f"cannot read the GPU snapshot {path}: {exc}") from None
    if not isinstance(data, dict):
        raise GuardError(f"{path}: a GPU snapshot is a JSON object")
    try:
        return gpu.facts_from_json(data, f"snapshot {path}")
    except ValueError as exc:
        raise GuardError(f"{path}: {exc}") from None


def allowed(settings: GuardSettings) -> Allowed:
    """What the policy lets preflight change: never a pinned flag, and fp8 weights only where
    its oom_weights ladder has them. The shipped policies pin nothing, so serve reads them (with
    pydantic and YAML, tens of milliseconds before vLLM starts) only if the weights do not fit."""

    def policy() -> Policy:
        from vllm_guard import policy_file  # noqa: PLC0415

        return policy_file.effective(settings)[1]

    def fp8() -> bool:
        from vllm_guard.failures import FailureKind  # noqa: PLC0415

        return any(
            step.action == "set" and vllm_args.canonical(step.flag) == "--quantization"
            for step in policy().ladder(FailureKind.OOM_WEIGHTS)
        )

    shipped = shipped_policy(settings.policy) is not None
    return Allowed(settings.preflight, fp8, settings.pinned if shipped else policy().pinned)


def gather(  # noqa: PLR0917 - the facts serve and preflight both have at hand
    model: str,
    args: Sequence[str],
    environ: Mapping[str, str],
    gpus: gpu.GpuFacts,
    ours: Sequence[int] = (),
    config_json: Path | None = None,
) -> tuple[ModelFacts, Machine]:
    seen = vllm_config.effective(args)
    download_dir = vllm_args.get(seen, "--download-dir")
    files = model_files.locate(model, download_dir=download_dir, environ=environ)
    path = Path(model).expanduser()
    local = path.is_dir() or model.startswith(("/", "./", "../", "~"))
    config = files.config if files else None
    config_from = ""
    if config is None and config_json is not None:
        config, config_from = read_config_json(config_json), f"--config-json {config_json}"
    facts = ModelFacts(
        name=model,
        config=config,
        index_total_size=files.index_total_size if files else None,
        cached=files.cached if files else False,
        bytes_on_disk=files.bytes_on_disk if files else 0,
        hub_id=not local,
        missing=local and not path.exists(),
        config_from=config_from,
    )
    free, where = machine.disk_free(hf_hub.hub_cache(environ, download_dir))
    host = vllm_args.get(seen, "--host") or "0.0.0.0"
    port = vllm_args.get(seen, "--port") or "8000"
    holder = (
        None if vllm_args.get(seen, "--uds") or not port.isdigit() else machine.port_holder(host, int(port))
    )
    return facts, Machine(
        gpus=gpus,
        shm_bytes=machine.shm_bytes(),
        disk_free_bytes=free,
        disk_dir=where,
        token=bool(vllm_args.get(seen, "--hf-token")) or hf_hub.token(environ) is not None,
        port=port,
        port_holder=holder,
        leftovers=machine.vllm_leftovers(gpus, set(ours)),
        long_max_model_len=environ.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "") in ("1", "true", "True"),
        vllm_env=tuple((name, environ[name]) for name in MEMORY_ENV if name in environ),
    )


def read_config_json(path: Path) -> dict[str, object]:
    """--config-json's file: a model's config.json; exit 2 naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GuardError(f"cannot read --config-json {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(
        data.get("hidden_size", data.get("text_config")), int | dict
    ):
        raise GuardError(f"--config-json {path} is not a model's config.json (it has no hidden_size)")
    return data


def judge(  # noqa: PLR0917 - the facts serve and preflight both have at hand
    settings: GuardSettings,
    model: str,
    args: Sequence[str],
    environ: Mapping[str, str],
    gpus: gpu.GpuFacts,
    vllm_version: str | None,
    *,
    starts: Mapping[str, Start] | None = None,
) -> Verdict:
    facts, host = gather(model, args, environ, gpus, config_json=settings.config_json)
    return check(
        facts,
        args,
        host,
        allowed=allowed(settings),
        vllm_version=vllm_version,
        config=vllm_config.read(args),
        starts=starts,
    )


def for_serve(  # noqa: PLR0917 - what startup has at hand
    settings: GuardSettings,
    model: str,
    args: Sequence[str],
    environ: Mapping[str, str],
    vllm_version: str | None,
    gpus: gpu.GpuFacts,
    starts: Mapping[str, Start] | None = None,
    said: list[str] | None = None,
) -> tuple[str, ...]:
    """Serve's preflight: the flags to start with, after saying what was found (and keeping
    it in `said`: a group's follower reports it to its leader); a failed check ends serve with
    exit 3 before anything launches."""
    verdict = judge(settings, model, args, environ, gpus, vllm_version, starts=starts)
    # a permanent failure leads: it is what the exit status says
    failed = sorted((f for f in verdict.findings if f.status == "fail"), key=lambda f: not f.permanent)
    for finding in verdict.findings:
        # the first failure is the sentence serve ends with: said once, there
        if finding.status != "ok" and not (failed and finding is failed[0]):
            print(f"vllm-guard: preflight: {line(finding)}", file=sys.stderr, flush=True)
            if said is not None:
                said.append(line(finding))
    if failed:
        raise GuardError(
            f"preflight: {failed[0].check}: {failed[0].message}",
            ExitCode.PERMANENT if verdict.permanent else ExitCode.CANNOT_START,
            hint=failed[0].fix or "vllm-guard preflight MODEL [VLLM ARGS] shows every check",
        )
    return verdict.start_argv


def line(finding: Finding) -> str:
    fix = f" (fix: {finding.fix})" if finding.fix and finding.status in ("warn", "fail", "unknown") else ""
    return f"{_MARK[finding.status]} {finding.check}: {finding.message}{fix}"
