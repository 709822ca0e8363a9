"""Each failure text is the one real vLLM printed, compared with the captured lines in data/."""

from __future__ import annotations

import io
import re
import sysconfig
from pathlib import Path

import pytest

from vllm_guard.sim import config, flags, messages, reports
from vllm_guard.sim import memory as mem
from vllm_guard.sim.console import Console
from vllm_guard.sim.models import Lookup
from vllm_guard.sim.reports import Log, Output, Raw

from .helpers import LLAMA_8B, TINY, gpu, outcome

DATA = Path(__file__).with_name("data")
GiB, MiB = 1 << 30, 1 << 20


def real(name: str) -> list[str]:
    """The captured lines of data/NAME (its `# ` lines say where they come from)."""
    return [
        line for line in (DATA / name).read_text(encoding="utf-8").splitlines() if not line.startswith("# ")
    ]


def stderr_of(items: list[Output]) -> list[str]:
    return "\n".join(i.text for i in items if isinstance(i, Raw) and i.stream == "err").splitlines()


def logged(items: list[Output]) -> list[str]:
    return "\n".join(i.text for i in items if isinstance(i, Log)).splitlines()


def localize(line: str) -> str:
    """A captured path in this machine's terms ($VENV, $PYTHON_HOME are placeholders in data/)."""
    paths = sysconfig.get_paths()
    line = line.replace("$VENV/lib/python3.11/site-packages", paths["purelib"])
    line = line.replace("$VENV/bin", paths["scripts"])
    return line.replace("$PYTHON_HOME/lib/python3.11", paths["stdlib"])


def memory_report(*argv: str) -> list[Output]:
    result = outcome(TINY, "--block-size", "128", *argv)
    assert not isinstance(result, mem.Ready)
    return reports.memory_failure(result, "0.32.0")


def test_kv_too_small_is_real_cpu_a1() -> None:
    root, last = real("a1_kv_too_small.txt")
    out = memory_report("--max-model-len", "1024", "--kv-cache-memory-bytes", "500000")
    assert logged(out)[0] == "EngineCore failed to start."
    assert logged(out)[-1] == root
    assert stderr_of(out)[0] == "Process EngineCore:"
    assert root in stderr_of(out)  # the process traceback ends in the same root cause
    assert stderr_of(out)[-1] == last


def test_kv_too_small_is_real_cpu_a2() -> None:
    (root,) = real("a2_kv_too_small.txt")
    assert logged(memory_report("--max-model-len", "4096", "--kv-cache-memory-bytes", "2000000"))[-1] == root


def test_no_kv_memory_is_real_cpu_a3() -> None:
    (root,) = real("a3_no_kv_memory.txt")
    assert logged(memory_report("--max-model-len", "1024", "--kv-cache-memory-bytes", "0"))[-1] == root


def config_report(*argv: str) -> list[str]:
    parsed = flags.parse(["serve", "m", *argv], "0.32.0", {})
    resolution = config.resolve(parsed, TINY, gpu(), {})
    assert resolution.error is not None
    return stderr_of(reports.config_failure(resolution.error, {}))


def test_max_model_len_over_the_model_is_real_cpu_a5() -> None:
    assert config_report("--max-model-len", "8192")[-3:] == real("a5_max_len_over_derived.txt")


def test_utilization_above_one_is_real_cpu_e1() -> None:
    assert config_report("--gpu-memory-utilization", "1.5")[-4:] == real("e1_gpu_util.txt")


def test_unknown_quantization_is_real_cpu_e2() -> None:
    assert config_report("--quantization", "bogus")[-3:] == real("e2_quantization_bogus.txt")


def test_the_config_traceback_is_real_cpu_e1s() -> None:
    lines = config_report("--gpu-memory-utilization", "1.5")
    assert lines[0] == "Traceback (most recent call last):"
    assert lines[1] == localize('  File "$VENV/bin/vllm", line 8, in <module>')
    assert "    cache_config = CacheConfig(" in lines


def test_a_missing_path_is_real_cpu_b() -> None:
    (last,) = real("b_model_path_missing.txt")
    assert stderr_of(reports.lookup_failure(Lookup.INVALID_REPO_ID, "$WORKDIR/does-not-exist"))[-1] == last


def test_offline_and_not_cached_is_real_cpu_c3() -> None:
    (last,) = real("c3_offline_not_cached.txt")
    assert (
        stderr_of(reports.lookup_failure(Lookup.OFFLINE_NOT_CACHED, "no-such-org/no-such-model"))[-1] == last
    )


def test_an_unreachable_hub_is_real_cpu_c4() -> None:
    lines = stderr_of(reports.lookup_failure(Lookup.HUB_UNREACHABLE, "no-such-org/no-such-model"))
    assert lines[-2:] == real("c4_hub_unreachable.txt")
    assert lines[0].startswith("'[Errno -2] Name or service not known' thrown while requesting HEAD")


def test_gated_and_not_found_name_the_repo() -> None:
    gated = "\n".join(stderr_of(reports.lookup_failure(Lookup.GATED, "meta-llama/Llama-3.1-8B-Instruct")))
    assert "OSError: You are trying to access a gated repo." in gated
    assert "401 Client Error. (Request ID: Root=1-" in gated
    assert "Access to model meta-llama/Llama-3.1-8B-Instruct is restricted." in gated
    missing = stderr_of(reports.lookup_failure(Lookup.NOT_FOUND, "org/nope"))
    assert missing[-2] == (
        "OSError: org/nope is not a local folder and is not a valid model identifier listed on "
        "'https://huggingface.co/models'"
    )


def test_port_in_use_is_real_cpu_d_frame_for_frame() -> None:
    captured = [localize(line) for line in real("d_port_in_use.txt") if line.strip("^ ")]
    assert stderr_of(reports.port_in_use()) == captured


def test_the_shutdown_lines_are_real_cpu_f1s() -> None:
    captured = real("f1_shutdown.txt")
    ours = [
        text.format(mode="abort", timeout=0, engine_pid=26011) for _, _, _, text in messages.SHUTDOWN_LINES
    ]
    ours += [
        messages.UVICORN_SHUTTING_DOWN,
        messages.UVICORN_WAITING_SHUTDOWN,
        messages.UVICORN_SHUTDOWN_COMPLETE,
    ]
    it = iter(captured)
    assert all(line in it for line in ours)  # in the same order; the CPU-only worker lines are extra


def test_torch_oom_texts_are_the_h100_probes() -> None:
    plain, other, warning, warning_code, capture, no_gpu = real("gpu_probe_texts.txt")

    def gib(size: float) -> int:
        return round(size * GiB)

    oom = mem.Oom(gib(37.25), gib(79.18), gib(22.78), gib(56.39), gib(55.88), round(1.54 * MiB), ())
    assert reports.torch_oom(oom) == plain
    held = mem.Oom(gib(18.63), gib(79.18), gib(12.96), 518 * MiB, 0, 0, ((476, gib(65.70)),))
    assert reports.torch_oom(held) == other
    assert no_gpu == messages.NO_CUDA_GPUS
    ours = messages.GRAPH_EMPTY_WARNING.format(torch="X/torch").splitlines()
    assert ours[0].split("torch/cuda/graphs.py")[1] == warning.split("torch/cuda/graphs.py")[1]
    assert ours[1] == warning_code
    assert capture.startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")


def test_a_capture_oom_prints_the_bar_the_warning_and_the_torch_text() -> None:
    argv = ("--max-model-len", "8192", "--gpu-memory-utilization", "0.96")
    result = outcome(LLAMA_8B, *argv, overshoot_gib=2)
    assert isinstance(result, mem.GraphOom)
    out = reports.memory_failure(result, "0.33.0")
    err = stderr_of(out)
    # tqdm's \r updates, left open by the exception: torch's warning follows on the same line
    first = next(i.text for i in out if isinstance(i, Raw) and i.stream == "err")
    states = first.split("\n")[0].split("\r")
    assert states[0] == ""
    assert states[1].startswith(
        "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):   0%|          | 0/"
    )
    assert states[-1].startswith("Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): ")
    assert f"| {result.captured}/{result.sizes} [" in states[-1]
    assert "UserWarning: The CUDA Graph is empty." in states[-1]
    assert "    super().capture_end()" in logged(out)
    assert logged(out)[-1].startswith("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert err[-1] == messages.ENGINE_INIT_FAILED


def test_free_memory_text_has_vllms_numbers() -> None:
    result = outcome(LLAMA_8B, on=gpu(used_gib=10))
    assert isinstance(result, mem.FreeMemory)
    assert logged(reports.memory_failure(result, "0.33.0"))[-1] == (
        "ValueError: Free memory on device cuda:0 (14.0/24.0 GiB) on startup is less than desired GPU "
        "memory utilization (0.92, 22.08 GiB). Decrease GPU memory utilization or reduce GPU memory used "
        "by other processes."
    )


def test_log_lines_have_vllms_header_and_multi_line_records_repeat_it() -> None:
    captured = (DATA / "ok_banner.txt").read_bytes().decode().split("\n")
    captured = [line for line in captured if not line.startswith("# ")][:6]
    out = io.StringIO()
    console = Console(out, io.StringIO(), 16559)
    console.log("APIServer", "INFO", messages.BANNER_WHERE, messages.banner("0.32.0", "$MODEL_DIR"))
    ours = out.getvalue().split("\n")[:6]
    stamp = re.compile(r"\d\d-\d\d \d\d:\d\d:\d\d")
    assert [stamp.sub("T", line) for line in ours] == [stamp.sub("T", line) for line in captured]
    assert ours[0].endswith("\r") and not ours[5].endswith("\r")


def test_quantization_capability_and_world_size_texts() -> None:
    parsed = flags.parse(["serve", "m", "-q", "fp8"], "0.33.0", {})
    resolution = config.resolve(parsed, TINY, gpu(cc=(7, 0)), {})
    assert resolution.error is not None
    assert resolution.error.message == (
        "The quantization method fp8 is not supported for the current GPU. Minimum capability: 75. "
        "Current capability: 70."
    )
    parsed = flags.parse(["serve", "m", "-tp", "4"], "0.33.0", {})
    resolution = config.resolve(parsed, TINY, gpu(count=2), {})
    assert resolution.error is not None and resolution.error.cls == "ParallelConfig"
    assert resolution.error.message.startswith(
        "World size (4) is larger than the number of available GPUs (2) in this node. If this is intentional"
    )


def test_an_engine_start_failure_is_real_cpu_a1_frame_for_frame() -> None:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in real("a1_tracebacks.txt"):
        if line.startswith("[") and line.endswith("]"):
            current = line
            sections[current] = []
        elif line.strip("^ "):  # the caret lines Python 3.11 adds are left out by the simulator
            sections[current].append(localize(line))
    result = outcome(
        TINY, "--block-size", "128", "--max-model-len", "1024", "--kv-cache-memory-bytes", "500000"
    )
    assert isinstance(result, mem.KvTooSmall)
    out = reports.memory_failure(result, "0.32.0")
    assert logged(out) == sections["[logged]"]
    err = stderr_of(out)
    split = err.index("Traceback (most recent call last):", 2)
    assert err[:split] == sections["[process]"]
    assert err[split:] == sections["[api]"]


# real-cpu full/ok_run2_warmcache.log lines 39 and 51-52, bytes as captured (vLLM's stderr): the
# shard loader's format ends in a newline, and the close draws the last state again with another.
REAL_SHARD_BAR = (
    "\rLoading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]\n",
    "\rLoading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 215.31it/s]\n\n",
)


def test_the_shard_bar_is_real_cpus_byte_for_byte() -> None:
    bar = reports.Bar(reports.SHARDS_BAR, 1, reports.VLLM_BAR_FORMAT)
    assert bar.update(0, 0.0) == REAL_SHARD_BAR[0]
    assert bar.update(1, 0.004) == ""  # a fast shard: under tqdm's mininterval, no redraw
    assert bar.close(1 / 215.31) == REAL_SHARD_BAR[1]


def test_bar_states_are_tqdms() -> None:
    tqdm = pytest.importorskip("tqdm")
    vllm_format = (
        "{desc}: {percentage:3.0f}% Completed | {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]\n"
    )
    for n, total, elapsed in (
        (0, 51, 0.0),
        (1, 51, 0.2),
        (23, 51, 1.7),
        (51, 51, 3.0),
        (3, 7, 4000.0),
        (1, 4, 31.0),
    ):
        ours = reports.bar_state("Capturing CUDA graphs (decode, FULL)", n, total, elapsed)
        theirs = tqdm.tqdm.format_meter(n, total, elapsed, prefix="Capturing CUDA graphs (decode, FULL)")
        assert ours == theirs
        ours = reports.bar_state(reports.SHARDS_BAR, n, total, elapsed, reports.VLLM_BAR_FORMAT)
        theirs = tqdm.tqdm.format_meter(n, total, elapsed, prefix=reports.SHARDS_BAR, bar_format=vllm_format)
        assert ours == theirs


def test_a_bar_is_written_to_a_pipe_as_tqdm_writes_it() -> None:
    """The same updates through tqdm itself (its rates are smoothed, so only they may differ)."""
    tqdm = pytest.importorskip("tqdm")
    pipe = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")  # not a terminal, as a pipe is not
    real_bar = tqdm.tqdm(total=5, desc="Capturing CUDA graphs (decode, FULL)", file=pipe, mininterval=0)
    ours = reports.Bar("Capturing CUDA graphs (decode, FULL)", 5)
    written = ours.update(0, 0.0)
    for n in range(1, 6):
        real_bar.update(1)
        written += ours.update(n, 0.2 * n)
    real_bar.close()
    written += ours.close(1.1)

    def shape(text: str) -> list[str]:
        # tqdm pads a state with spaces to cover a longer one before it, and how long a state is
        # depends on its rate, so the padding goes with the rates.
        return [
            re.sub(r" +\n", "\n", re.sub(r"\[.*\]", "[...]", state)).rstrip(" ") for state in text.split("\r")
        ]

    pipe.flush()
    assert isinstance(pipe.buffer, io.BytesIO)
    assert shape(written) == shape(pipe.buffer.getvalue().decode())
    assert written.count("\n") == 1 and written.endswith("\n")
