"""What vLLM prints for each failure, composed from messages.py and frames.py as plain values.

A report is a list of `Log` records (vLLM's logger: stdout, one header per line) and `Raw` text
(tracebacks on stderr, as Python prints them). The server writes them; tests read them directly.
The shape of an engine start failure is real-cpu a1's: `EngineCore failed to start.` with the
traceback on stdout, `Process EngineCore:` with the same traceback on stderr, then the API
server's `RuntimeError: Engine core initialization failed ...` on stderr.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from vllm_guard.sim import frames as f
from vllm_guard.sim import memory as mem
from vllm_guard.sim import messages as m
from vllm_guard.sim.config import ConfigError
from vllm_guard.sim.models import Lookup


@dataclass(frozen=True, slots=True)
class Log:
    proc: Literal["APIServer", "EngineCore"]
    level: str
    where: str
    text: str


@dataclass(frozen=True, slots=True)
class Raw:
    stream: Literal["out", "err"]
    text: str


Output = Log | Raw


def _err(*blocks: list[str] | str) -> Raw:
    lines: list[str] = []
    for block in blocks:
        lines.extend([block] if isinstance(block, str) else block)
    return Raw("err", "\n".join(lines))


def pydantic_input(cls: str, values: dict[str, object]) -> str:
    """pydantic's truncated repr of the constructor's arguments (first 25 + '...' + last 24)."""
    if cls == "ModelConfig":  # as printed in real-cpu e2 / a5
        return "ArgsKwargs((), {'model': ...nderer_num_workers': 1})"
    text = f"ArgsKwargs((), {values!r})"
    return text if len(text) <= 50 else text[:25] + "..." + text[-24:]


def config_failure(error: ConfigError, values: dict[str, object]) -> list[Output]:
    """real-cpu e1 / e2 / a5: a ValidationError traceback on stderr, nothing on stdout."""
    header = m.PYDANTIC_HEADER.format(cls=error.cls)
    if error.bound is not None:
        name, relation, bound, kind, value = error.bound
        body = m.PYDANTIC_BOUND.format(field=name, relation=relation, bound=bound, kind=kind, value=value)
    else:
        body = m.PYDANTIC_VALUE_ERROR.format(msg=error.message, input_value=pydantic_input(error.cls, values))
    return [_err(f.render(f.config_error(error.cls)), header, body)]


def port_in_use() -> list[Output]:
    """real-cpu d: vLLM binds before it starts the engine; a plain OSError traceback."""
    return [_err(f.render(f.PORT_BIND), m.PORT_IN_USE)]


def request_id(model: str) -> str:
    digest = hashlib.sha1(model.encode()).hexdigest()
    uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    return f"Root=1-{digest[:8]}-{digest[8:32]};{uuid}"


def lookup_failure(kind: Lookup, model: str) -> list[Output]:
    """real-cpu b / c1 / c3 / c4, and the Hub's not-found and gated texts."""
    cause = "\nThe above exception was the direct cause of the following exception:\n"
    if kind is Lookup.INVALID_REPO_ID:
        text = m.INVALID_REPO_ID.format(model=model)
        return [
            _err(
                f.render(f.REPO_ID_CAUSE),
                f"huggingface_hub.errors.HFValidationError: {text}",
                cause,
                f.render((*f.HUB_CONFIG, f.CACHED_FILES_REPO_ID)),
                f"OSError: {text}",
            )
        ]
    if kind is Lookup.OFFLINE_NOT_CACHED:
        return [_err(f.render(f.OFFLINE_SNAPSHOT), m.OFFLINE_NOT_CACHED)]
    if kind is Lookup.HUB_UNREACHABLE:
        retry = m.HUB_RETRY.format(model=model)
        lines: list[str] = []
        for n, wait in enumerate((1, 2, 4, 8, 8), start=1):
            lines.extend([retry, m.HUB_RETRY_WAIT.format(s=wait, n=n)])
        lines.append(retry)
        return [
            _err(
                lines,
                m.HUB_CONNECT_ERRORS[0],
                cause,
                m.HUB_CONNECT_ERRORS[1],
                cause,
                f.render(f.UNREACHABLE_CAUSE),
                m.HUB_LOCAL_ENTRY_NOT_FOUND,
                cause,
                f.render((*f.HUB_CONFIG, f.CACHED_FILES_UNREACHABLE)),
                m.HUB_UNREACHABLE,
            )
        ]
    if kind is Lookup.GATED:
        text = m.GATED_REPO.format(model=model, request_id=request_id(model))
        return [_err(f.render((*f.HUB_CONFIG, f.CACHED_FILES_GATED)), text)]
    if kind is Lookup.NO_CONFIG:
        return config_failure(ConfigError("ModelConfig", m.INVALID_LOCAL_DIR.format(model=model)), {})
    return [_err(f.render((*f.HUB_CONFIG, f.CACHED_FILES_NOT_FOUND)), m.REPO_NOT_FOUND.format(model=model))]


def torch_oom(oom: mem.Oom) -> str:
    others = "".join(
        m.TORCH_OOM_OTHER_PROCESS.format(pid=pid, size=m.torch_size(size)) for pid, size in oom.others
    )
    return m.TORCH_OOM.format(
        tried=m.torch_size(oom.tried),
        total=m.torch_size(oom.total),
        free=m.torch_size(oom.free),
        others=others,
        this_process=m.torch_size(oom.this_process),
        allocated=m.torch_size(oom.allocated),
        reserved=m.torch_size(oom.reserved),
    )


def engine_start_failure(stack: tuple[f.Frame, ...], exception: str, stderr_first: str = "") -> list[Output]:
    """real-cpu a1: the EngineCore's logged traceback, its process traceback, the API's wrapper."""
    logged = "\n".join([m.ENGINE_FAILED_TO_START[1], *f.render(stack), exception])
    out: list[Output] = []
    if stderr_first:
        out.append(Raw("err", stderr_first))
    out.append(Log("EngineCore", "ERROR", m.ENGINE_FAILED_TO_START[0], logged))
    out.append(_err(m.PROCESS_ENGINE_CORE, f.render((*f.PROCESS_BOOTSTRAP, *stack)), exception))
    out.append(_err(f.render(f.ENGINE_STARTUP_WAIT), m.ENGINE_INIT_FAILED))
    return out


def memory_failure(failure: mem.Failure, version: str) -> list[Output]:
    """The report for the first startup stage that did not fit (see memory.evaluate)."""
    if isinstance(failure, mem.NoGpu):
        return engine_start_failure(f.NO_GPU, m.NO_CUDA_GPUS)
    if isinstance(failure, mem.Bf16Unsupported):
        major, minor = failure.capability
        text = m.BF16_UNSUPPORTED.format(gpu=failure.gpu_name, cc=f"{major}.{minor}")
        return engine_start_failure(f.BF16_CHECK, text)
    if isinstance(failure, mem.FreeMemory):
        text = m.FREE_MEMORY.format(
            free=m.format_gib(failure.free),
            total=m.format_gib(failure.total),
            util=failure.utilization,
            requested=m.format_gib(failure.requested),
        )
        return engine_start_failure(f.FREE_MEMORY_CHECK, text)
    if isinstance(failure, mem.WeightsOom):
        return engine_start_failure(f.LOAD_WEIGHTS, torch_oom(failure.oom))
    if isinstance(failure, mem.ProfileOom):
        return engine_start_failure(f.PROFILE_RUN, torch_oom(failure.oom))
    if isinstance(failure, mem.NoKvMemory):
        return engine_start_failure(f.kv_check(version, no_memory=True), m.NO_KV_MEMORY)
    if isinstance(failure, mem.KvTooSmall):
        estimate = m.KV_ESTIMATE.format(estimate=failure.estimate) if failure.estimate > 0 else ""
        text = m.KV_TOO_SMALL.format(
            max_len=failure.max_model_len,
            need=m.format_gib(failure.needed),
            avail=m.format_gib(failure.available),
            estimate=estimate,
        )
        return engine_start_failure(f.kv_check(version, no_memory=False), text)
    if isinstance(failure, mem.CannotAutoFit):
        return engine_start_failure(f.kv_check(version, no_memory=False), m.CANNOT_AUTO_FIT)
    if isinstance(failure, mem.KvAllocOom):
        return engine_start_failure(f.KV_ALLOCATE, torch_oom(failure.oom))
    # The bar is left open when capture raises: torch's warning follows it on the same line.
    bar = Bar(m.CAPTURE_BAR_MIXED, failure.sizes)
    states = bar.update(0, 0.0) + bar.update(failure.captured, 0.1 * max(failure.captured, 1))
    warning = m.GRAPH_EMPTY_WARNING.format(torch=f.expand("{torch}"))
    return engine_start_failure(f.GRAPH_CAPTURE, torch_oom(failure.oom), stderr_first=states + warning)


# vLLM's shard loader passes tqdm this format (model_loader/weight_utils.py `_BAR_FORMAT`): it ends
# in a newline, so each update is `\r<bar>\n` and the close adds a blank line (real-cpu
# full/ok_run2_warmcache.log lines 39, 51-52). Other bars (CUDA graphs, downloads) are tqdm's default.
SHARDS_BAR = "Loading safetensors checkpoint shards"
VLLM_BAR_FORMAT = "{desc}: {percentage:3.0f}% Completed | {n}/{total} [{elapsed}<{remaining}, {rate}]\n"
DEFAULT_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n}/{total} [{elapsed}<{remaining}, {rate}]"
MININTERVAL_S = 0.1  # tqdm redraws a bar at most this often (its `mininterval`)
_BAR_CELLS = 10  # tqdm's bar width when it cannot ask a terminal (a pipe)
_BAR_CHARS = " " + "".join(map(chr, range(0x258F, 0x2587, -1)))  # tqdm's unicode eighths


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def bar_state(desc: str, n: int, total: int, elapsed_s: float, bar_format: str = DEFAULT_BAR_FORMAT) -> str:
    """One state of a tqdm bar, as tqdm.format_meter renders it with no terminal width."""
    frac = n / total if total else 1.0
    eighths = len(_BAR_CHARS) - 1
    full, part = divmod(int(frac * _BAR_CELLS * eighths), eighths)
    bar = _BAR_CHARS[-1] * full
    if full < _BAR_CELLS:
        bar += _BAR_CHARS[part] + _BAR_CHARS[0] * (_BAR_CELLS - full - 1)
    rate = n / elapsed_s if elapsed_s else None
    if rate:
        rate_text = f"{1 / rate:5.2f}s/it" if rate < 1 else f"{rate:5.2f}it/s"
        remaining = _clock((total - n) / rate)
    else:
        rate_text, remaining = "?it/s", "?"
    return bar_format.format(
        desc=desc,
        percentage=frac * 100,
        bar=bar,
        n=n,
        total=total,
        elapsed=_clock(elapsed_s),
        remaining=remaining,
        rate=rate_text,
    )


class Bar:
    """What a tqdm bar writes to a pipe: `\r` and the new state at each redraw (padded with spaces
    to cover a longer state before it), a `\n` only when it closes. A pipe has no terminal to move
    the cursor, so until then all its states share one unterminated line."""

    def __init__(self, desc: str, total: int, bar_format: str = DEFAULT_BAR_FORMAT) -> None:
        self._desc, self._total, self._format = desc, total, bar_format
        self._n = 0
        self._last_len = 0
        self._drawn_at: float | None = None

    def update(self, n: int, elapsed_s: float) -> str:
        """The bytes for reaching `n`: none if the last redraw is under MININTERVAL_S old."""
        self._n = n
        if self._drawn_at is not None and elapsed_s - self._drawn_at < MININTERVAL_S:
            return ""
        return self._draw(elapsed_s)

    def close(self, elapsed_s: float) -> str:
        """tqdm redraws the last state, whenever the one before was drawn, then ends the line."""
        return self._draw(elapsed_s) + "\n"

    def _draw(self, elapsed_s: float) -> str:
        self._drawn_at = elapsed_s
        state = bar_state(self._desc, self._n, self._total, elapsed_s, self._format)
        padding = " " * max(self._last_len - len(state), 0)
        self._last_len = len(state)
        return "\r" + state + padding


def runtime_death(error: str, stack: tuple[f.Frame, ...] = f.RUNTIME_FORWARD) -> list[Output]:
    """An error in a forward pass while serving (a CUDA OOM, a kernel's fault): the EngineCore's
    fatal error, the monitor's warning, then the API server's output handler failing with
    EngineDeadError (all on stdout). `error`: the exception's lines, as torch words them."""
    fatal = "\n".join([m.ENGINE_FATAL[1], *f.render(stack), error.rstrip("\n")])
    handler = "\n".join([m.OUTPUT_HANDLER_FAILED[1], *f.render(f.OUTPUT_HANDLER), m.ENGINE_DEAD])
    return [
        Log("EngineCore", "ERROR", m.ENGINE_FATAL[0], fatal),
        Log("APIServer", "WARNING", m.ENGINE_EXITED_UNEXPECTEDLY[0], m.ENGINE_EXITED_UNEXPECTEDLY[1]),
        Log("APIServer", "ERROR", m.OUTPUT_HANDLER_FAILED[0], handler),
    ]


def group_failure(why: str) -> list[Output]:
    """A node whose group never met: torch's TCPStore error out of the workers' rendezvous,
    as the EngineCore's failure to start (sim/group.py words `why` as torch does)."""
    return engine_start_failure(f.DIST_INIT, why)
