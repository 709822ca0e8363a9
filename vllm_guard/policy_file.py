"""Policy files: their schema (pydantic) and reading them, with errors that name the file, the
line and the field. `vllm-guard policy check FILE` runs exactly this."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vllm_guard.advice import Thresholds
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.failures import FailureKind
from vllm_guard.policy import Policy, Step
from vllm_guard.settings import SHIPPED_POLICIES, GuardSettings, shipped_policy
from vllm_guard.vllm_args import canonical

SHIPPED = SHIPPED_POLICIES
FlagName = Annotated[str, Field(pattern=r"^--[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Scalar = str | int | float | bool
FITTABLE = ("--max-model-len", "--gpu-memory-utilization")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScaleSpec(_Strict):
    flag: FlagName
    factor: float = Field(gt=0, lt=1)
    floor: float = Field(0.0, ge=0)
    default: float | None = Field(None, gt=0, description="vLLM's value when the flag is absent")


class StepSpec(_Strict):
    """Exactly one of these keys."""

    set: dict[FlagName, Scalar] | None = None
    remove: FlagName | None = None
    flag: FlagName | None = None
    scale: ScaleSpec | None = None
    fit: FlagName | None = None
    env: dict[str, Scalar] | None = None
    give_up: str | None = None
    when: FlagName | None = Field(None, description="apply only when this vLLM flag is given")

    @model_validator(mode="after")
    def _one_action(self) -> StepSpec:
        actions = [name for name in type(self).model_fields if name != "when"]
        given = [name for name in actions if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a step has exactly one of {', '.join(actions)} (and may have when); got {given}"
            )
        if self.set is not None and len(self.set) != 1:
            raise ValueError("`set` takes one flag and its value")
        if self.fit is not None and canonical(self.fit) not in (
            "--max-model-len",
            "--gpu-memory-utilization",
        ):
            raise ValueError("`fit` knows --max-model-len and --gpu-memory-utilization")
        return self

    def step(self) -> Step:
        if self.set is not None:
            ((flag, value),) = self.set.items()
            return Step("set", flag=flag, value=_text(value))
        if self.scale is not None:
            s = self.scale
            return Step("scale", flag=s.flag, factor=s.factor, floor=s.floor, default=s.default)
        if self.env is not None:
            return Step("env", env=tuple((k, _text(v)) for k, v in self.env.items()))
        if self.give_up is not None:
            return Step("give_up", message=self.give_up)
        for action in ("remove", "flag", "fit"):
            flag = getattr(self, action)
            if flag is not None:
                return Step(action, flag=flag)
        raise AssertionError("validated to hold one action")


class RestartSpec(_Strict):
    """Restart discipline; the command line and VLLM_GUARD_* variables win over these."""

    max_restarts: int | None = Field(None, ge=0)
    restart_window_s: float | None = Field(None, gt=0)
    backoff_initial_s: float | None = Field(None, ge=0)
    backoff_max_s: float | None = Field(None, ge=0)
    backoff_jitter_s: float | None = Field(None, ge=0)
    healthy_reset_s: float | None = Field(None, ge=0)
    startup_timeout_s: float | None = Field(None, gt=0)
    grace_period_s: float | None = Field(None, gt=0)


class AdviceSpec(_Strict):
    """When the advisor's conditions hold (advice.Thresholds; unset: the troubleshooting
    guide's values), and whether a relaunch carries the fixes of what held when vLLM ended."""

    requests_waiting: float | None = Field(None, gt=0)
    kv_cache_usage: float | None = Field(None, gt=0, le=1)
    ttft_p99_s: float | None = Field(None, gt=0)
    tpot_p99_s: float | None = Field(None, gt=0)
    gpu_utilization: float | None = Field(None, gt=0, le=1)
    prefill_ratio: float | None = Field(None, gt=0)
    prefix_hit_rate: float | None = Field(None, gt=0, le=1)
    spec_acceptance: float | None = Field(None, gt=0, le=1)
    min_requests: float | None = Field(None, ge=1)
    # a relaunch that happens anyway (vLLM failed) takes the edits of the findings that held,
    # through the same door as every step; advice never restarts a vLLM that serves
    apply_on_relaunch: bool = False

    def thresholds(self) -> Thresholds:
        given = {k: v for k, v in self.model_dump().items() if v is not None and k in Thresholds.names()}
        return Thresholds(**given)


class PolicySpec(_Strict):
    name: str
    description: str = ""
    pinned: list[FlagName] = []
    restart: RestartSpec = Field(default_factory=lambda: RestartSpec.model_validate({}))
    # Whether serve's preflight findings adjust the flags, only warn, or are not looked for.
    preflight: Literal["adjust", "warn", "off"] | None = None
    ladders: dict[FailureKind, list[StepSpec]] = {}
    advice: AdviceSpec = Field(default_factory=lambda: AdviceSpec.model_validate({}))

    def policy(self) -> Policy:
        return Policy(
            name=self.name,
            ladders=tuple((kind, tuple(s.step() for s in steps)) for kind, steps in self.ladders.items()),
            pinned=frozenset(canonical(f) for f in self.pinned),
            advice=self.advice.thresholds(),
            carry_advice=self.advice.apply_on_relaunch,
        )

    def restart_settings(self) -> dict[str, Any]:
        """The guard settings this file gives (restart discipline, preflight mode)."""
        given = {k: v for k, v in self.restart.model_dump().items() if v is not None}
        if self.preflight is not None:
            given["preflight"] = self.preflight
        return given


def _text(value: Scalar) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def resolve(name_or_path: str) -> Path:
    """A shipped policy's name (`default`) or a file's path."""
    return shipped_policy(name_or_path) or Path(name_or_path)


# A policy is a few kilobytes; anything near this is not one, and parsing it would take long.
MAX_POLICY_BYTES = 1 << 20


def load(name_or_path: str) -> PolicySpec:
    path = resolve(name_or_path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise GuardError(f"cannot read the policy {path}: {exc.strerror}", ExitCode.USAGE) from None
    if len(raw) > MAX_POLICY_BYTES:
        size = f"larger than {MAX_POLICY_BYTES >> 20} MiB"
        raise GuardError(f"{path}: {size}; a policy is a few kilobytes of YAML", ExitCode.USAGE)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GuardError(f"{path}: not UTF-8 text (byte {exc.start})", ExitCode.USAGE) from None
    return parse(text, str(path))


def parse(text: str, source: str) -> PolicySpec:
    """A policy from YAML text; any error names `source`, the line and the field."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when it is there: faster
    try:
        root = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        where = _where(source, text, exc)
        raise GuardError(f"{where}: not valid YAML: {_problem(exc)}", ExitCode.USAGE) from None
    try:
        return PolicySpec.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = [p for p in error["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            # an unknown key is wrong where the key is, not where its value is
            line = _line_of(root, [*loc, "[key]"] if error["type"] == "extra_forbidden" else loc)
            field = ".".join(str(p) for p in loc if p != "[key]") or "(top level)"
            problems.append(f"{source}:{line}: {field}: {error['msg']}")
        raise GuardError("invalid policy: " + "; ".join(problems), ExitCode.USAGE) from None


def _where(source: str, text: str, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return f"{source}:{mark.line + 1}"
    position = getattr(exc, "position", None)  # a ReaderError (a character YAML refuses) has only this
    if isinstance(position, int):
        return f"{source}:{text.count(chr(10), 0, position) + 1}"
    return source


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        character = exc.character
        return f"unacceptable character #x{character:04x}" if isinstance(character, int) else exc.reason
    return " ".join(str(getattr(exc, "problem", exc)).split())


def _line_of(node: yaml.Node | None, loc: list[Any]) -> int:
    """The 1-based line of the YAML node at `loc`, or of the deepest node on the way there."""
    line = node.start_mark.line + 1 if node is not None else 1
    for position, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if pair is not None and loc[position + 1 : position + 2] == ["[key]"]:
                return int(pair[0].start_mark.line) + 1  # the key itself is what is wrong
            node = pair[1] if pair is not None else None
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def unknown_flags(name_or_path: str, spec: PolicySpec, version: str | None) -> list[str]:
    """A warning for each flag the policy names that `version` of vLLM (None: the newest in the
    guard's tables) does not take, with its file and line and the closest flag it does take:
    a misspelt flag validates, and would only ever be refused at the moment its step is taken."""
    import difflib  # noqa: PLC0415

    from vllm_guard import vllm_flags  # noqa: PLC0415

    path = resolve(name_or_path)
    try:
        root = yaml.compose(
            path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        root = None
    named: list[tuple[str, list[Any]]] = [(flag, ["pinned", i]) for i, flag in enumerate(spec.pinned)]
    for kind, steps in spec.ladders.items():
        for i, step in enumerate(steps):
            where: list[Any] = ["ladders", kind.value, i]
            for key in ("remove", "flag", "fit", "when"):
                if getattr(step, key) is not None:
                    named.append((getattr(step, key), [*where, key]))
            if step.set is not None:
                named.extend((flag, [*where, "set", flag, "[key]"]) for flag in step.set)
            if step.scale is not None:
                named.append((step.scale.flag, [*where, "scale", "flag"]))
    known = vllm_flags.known_flags(version)
    which = (
        f"vLLM {version}" if version else f"vLLM {vllm_flags.MINED_VERSIONS[-1]} (the newest the guard knows)"
    )
    warnings = []
    for flag, loc in named:
        if vllm_flags.exists(flag, version):
            continue
        close = difflib.get_close_matches(flag, known, n=1)
        field = ".".join(str(p) for p in loc if p != "[key]")
        warnings.append(
            f"{path}:{_line_of(root, loc)}: {field}: {flag} is not a flag of {which}"
            + (f"; did you mean {close[0]}?" if close else "")
        )
    return warnings


def effective(settings: GuardSettings) -> tuple[GuardSettings, Policy]:
    """The settings with the policy's restart discipline under them (command line > environment >
    policy file > defaults), and the policy with `--pin` added to its pinned flags."""
    spec = load(settings.policy)
    under = {k: v for k, v in spec.restart_settings().items() if k not in settings.model_fields_set}
    policy = spec.policy()
    pinned = policy.pinned | settings.pinned
    return settings.model_copy(update=under), replace(policy, pinned=pinned)
