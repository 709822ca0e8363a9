"""The simulator as a process: startup, its failures on the right streams, HTTP, its tree, signals."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from .procs import Launcher, get, poll

pytestmark = pytest.mark.timeout(60)
SMALL = "Qwen/Qwen2.5-0.5B-Instruct"  # fits the default 24 GiB GPU with its full context
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
WRAPPER = "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_healthy_server_answers_like_vllm_and_stops_on_sigterm(sim: Launcher) -> None:
    server = sim(SMALL, "--max-model-len", "4K")
    server.wait_healthy()
    status, body = get(server.url + "/health")
    assert (status, body) == (200, b"")
    status, body = get(server.url + "/v1/models")
    card = json.loads(body)["data"][0]
    assert (card["id"], card["root"], card["owned_by"], card["max_model_len"]) == (SMALL, SMALL, "vllm", 4096)
    status, body = server.post("/v1/completions", {"model": SMALL, "prompt": "a b c", "max_tokens": 5})
    answer = json.loads(body)
    assert status == 200
    assert answer["object"] == "text_completion"
    assert len(answer["choices"][0]["text"].split()) == 5
    assert answer["usage"] == {
        "prompt_tokens": 4,
        "total_tokens": 9,
        "completion_tokens": 5,
        "prompt_tokens_details": None,
    }
    assert server.post("/v1/completions", {"prompt": "a b c", "max_tokens": 5})[1].startswith(
        b'{"id": "cmpl-'
    )
    chat = json.loads(
        server.post("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})[1]
    )
    assert chat["choices"][0]["message"]["role"] == "assistant"
    status, body = server.post("/v1/completions", {"model": "other", "prompt": "x"})
    assert status == 404
    assert (
        json.loads(body)["error"]["message"] == f"The model `other` does not exist. Valid aliases: {SMALL}."
    )
    assert "Error with model" not in server.stdout()  # completions log nothing of it
    server.post("/v1/chat/completions", {"model": "other", "messages": [{"role": "user", "content": "hi"}]})
    server.wait_for("ERROR", timeout_s=5)
    assert (
        "[serving.py:280] Error with model error=ErrorInfo(message='The model `other` does not exist. Valid "
        f"aliases: {SMALL}.', type='NotFoundError', param='model', code=404)" in server.stdout()
    )
    assert json.loads(get(server.url + "/version")[1]) == {"version": "0.33.0"}
    metrics = get(server.url + "/metrics")[1].decode()
    labels = f'engine="0",model_name="{SMALL}"'
    assert f"vllm:prompt_tokens_total{{{labels}}} 10.0" in metrics
    assert f"vllm:generation_tokens_total{{{labels}}} 26.0" in metrics
    assert (
        f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="{SMALL}"}} 3.0'
        in metrics
    )
    for name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc", "cache_config_info"):
        assert f"vllm:{name}{{" in metrics
    assert 'gpu_memory_utilization="0.92"' in metrics
    # the access log is uvicorn's, on stdout
    assert '"GET /health HTTP/1.1" 200 OK' in server.stdout()
    engine = server.engine()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert gone(engine)
    out, err = server.stdout(), server.stderr()
    milestones = [
        "non-default args: {'model_tag': 'Qwen/Qwen2.5-0.5B-Instruct', 'host': '127.0.0.1', 'port': ",
        "Initializing a V1 LLM engine (v0.33.0)",
        "Starting to load model Qwen/Qwen2.5-0.5B-Instruct...",
        "Model loading took 0.92 GiB memory",
        "Available KV cache memory: ",
        "GPU KV cache size: ",
        "Maximum concurrency for 4,096 tokens per request: ",
        "Graph capturing finished in ",
        "init engine (profile, create kv cache, warmup model) took",
        f"Starting vLLM server on http://127.0.0.1:{server.port}",
        "[shutdown] API server: shutdown triggered",
        "[shutdown] API server: shutting down FastAPI HTTP server",
    ]
    positions = [out.index(text) for text in milestones]
    assert positions == sorted(positions)
    assert f"(EngineCore pid={engine.pid}) INFO " in out
    assert f"(APIServer pid={server.proc.pid}) INFO " in out
    for text in (
        "Capturing CUDA graphs",
        "INFO:     Application startup complete.",
        "INFO:     Shutting down",
    ):
        assert text in err
    # tqdm's bars as it writes them to a pipe: vLLM's shard format ends each state in \n; the CUDA
    # graph bars redraw with \r and end their line only when they close
    raw = server.err.read_bytes()
    assert b"\rLoading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]\n" in raw
    capture = raw[raw.index(b"\rCapturing CUDA graphs (mixed prefill-decode, PIECEWISE):   0%|") :]
    line = capture[: capture.index(b"\n")]
    assert line.count(b"\r") >= 2
    assert line.rsplit(b"\r", 1)[1].startswith(
        b"Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%|"
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "CUDA graph memory profiling is enabled (default since v0.21.0). The current "),
        (
            {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0"},
            "CUDA graph memory profiling is disabled (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0). ",
        ),
    ],
)
def test_the_graph_estimate_is_reported_as_vllm_reports_it(
    sim: Launcher, env: dict[str, str], expected: str
) -> None:
    server = sim(SMALL, "--max-model-len", "4K", env={"VLLM_GUARD_SIM_FAULTS": "graph_overshoot=0.25", **env})
    server.wait_healthy()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
    out = server.stdout()
    assert expected in out
    pool = re.search(r"CUDA graph pool memory: ([\d.]+) GiB \(actual\), ([\d.]+) GiB \(estimated\)", out)
    if env:
        assert pool is None  # vLLM compares only what it estimated
    else:
        assert pool is not None
        assert float(pool[1]) - float(pool[2]) == pytest.approx(0.25, abs=0.011)


def test_served_names_and_the_api_key(sim: Launcher) -> None:
    server = sim(SMALL, "--served-model-name", "small", "alias", "--api-key", "sekret")
    server.wait_healthy()
    assert get(server.url + "/v1/models") == (401, b'{"error": "Unauthorized"}')
    assert server.post("/v1/completions", {"prompt": "x"})[0] == 401
    _, body = get(server.url + "/v1/models", headers={"Authorization": "Bearer sekret"})
    assert [card["id"] for card in json.loads(body)["data"]] == ["small", "alias"]
    reply = server.post(
        "/v1/completions", {"model": "alias", "prompt": "x"}, {"Authorization": "Bearer sekret"}
    )
    assert reply[0] == 200
    assert get(server.url + "/metrics")[0] == 200  # /health and /metrics stay open, as in vLLM
    assert 'model_name="small"' in get(server.url + "/metrics")[1].decode()
    server.signal(signal.SIGINT)
    assert server.wait(10) == 0


def test_the_engine_core_is_a_named_child_in_the_servers_group_and_dies_with_it(sim: Launcher) -> None:
    server = sim(SMALL)
    server.wait_healthy()
    engine = server.engine()
    assert engine.name() == "VLLM::EngineCore"
    assert engine.ppid() == server.proc.pid
    assert os.getpgid(engine.pid) == os.getpgid(server.proc.pid)
    assert engine.cmdline()[0] == "VLLM::EngineCore"
    server.proc.kill()  # SIGKILL of the API server alone: the engine notices and exits
    server.wait(10)
    poll(lambda: gone(engine), 5.0, "the engine to exit after its server")


def test_sigterm_during_startup_ends_the_process_by_that_signal(sim: Launcher) -> None:
    server = sim(LLAMA, "--max-model-len", "8192", VLLM_GUARD_SIM_LOAD_S="20")
    server.wait_for("Starting to load model")
    engine = server.engine()
    # bound but not listening yet: a connection is refused, as with vLLM during its load
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", server.port), 2):
        pass
    server.signal(signal.SIGTERM)
    assert server.wait(10) == -signal.SIGTERM  # as measured on 0.32 (real-cpu f2b)
    poll(lambda: gone(engine), 5.0, "the engine to exit")


def test_a_taken_port_fails_at_once_before_the_engine_starts(sim: Launcher, port: int) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        server = sim(SMALL, port=port)
        assert server.wait(10) == 1
    assert server.stderr().rstrip().endswith("OSError: [Errno 98] Address already in use")
    assert "Initializing a V1 LLM engine" not in server.stdout()


@pytest.mark.parametrize(
    ("args", "env", "root"),
    [
        ([LLAMA], {}, "ValueError: To serve at least one request with the model's max seq len (131072)"),
        (
            [LLAMA],
            {"VLLM_GUARD_SIM_GPU_USED_GIB": "10"},
            "ValueError: Free memory on device cuda:0 (14.0/24.0 GiB)",
        ),
        (
            ["meta-llama/Llama-3.1-70B-Instruct"],
            {},
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate",
        ),
        (
            [LLAMA, "--max-model-len", "8192", "--gpu-memory-utilization", "0.96"],
            {"VLLM_GUARD_SIM_FAULTS": "graph_overshoot=2"},
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate",
        ),
        (
            [LLAMA, "--max-model-len", "8192", "--gpu-memory-utilization", "0.96"],
            {"VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS": "0"},
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate",
        ),
        (
            [LLAMA, "--max-model-len", "8192", "--gpu-memory-utilization", "0.6"],
            {},
            "ValueError: No available memory",
        ),
        ([LLAMA], {"VLLM_GUARD_SIM_GPU_COUNT": "0"}, "RuntimeError: No CUDA GPUs are available"),
        (
            [LLAMA, "--dtype", "bfloat16"],
            {"VLLM_GUARD_SIM_COMPUTE_CAPABILITY": "7.5", "VLLM_GUARD_SIM_GPU_NAME": "Tesla T4"},
            "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. "
            "Your Tesla T4",
        ),
    ],
)
def test_engine_start_failures_log_the_root_cause_then_the_wrapper(
    sim: Launcher, args: list[str], env: dict[str, str], root: str
) -> None:
    server = sim(*args, env=env)
    assert server.wait(15) == 1
    out, err = server.stdout(), server.stderr()
    # real-cpu a1: the root cause in the EngineCore's log (stdout) and in its traceback (stderr),
    # the wrapper as the last line of stderr
    assert "[core.py:1510] EngineCore failed to start." in out
    assert f"[core.py:1510] {root}" in out
    assert root in err
    assert err.splitlines()[-1] == WRAPPER


@pytest.mark.parametrize(
    ("args", "env", "last"),
    [
        (["no-such/model"], {}, "If this is a private repository, make sure to pass a token"),
        (["/no/such/path"], {}, "OSError: Repo id must be in the form 'repo_name' or 'namespace/repo_name'"),
        (
            ["no-such/model"],
            {"HF_HUB_OFFLINE": "1"},
            "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find",
        ),
        (["no-such/model"], {"VLLM_GUARD_SIM_HUB_UNREACHABLE": "1"}, "Check your internet connection"),
        (
            [LLAMA],
            {"VLLM_GUARD_SIM_GATED": LLAMA},
            "Access to model meta-llama/Llama-3.1-8B-Instruct is restricted",
        ),
        ([LLAMA, "--max-model-len", "200000"], {}, "    For further information visit https://errors"),
        (
            [LLAMA, "-tp", "2"],
            {},
            "    For further information visit https://errors.pydantic.dev/2.14/v/value_error",
        ),
        (
            [LLAMA, "-q", "fp8"],
            {"VLLM_GUARD_SIM_COMPUTE_CAPABILITY": "7.0"},
            "    For further information visit https://errors.pydantic.dev/2.14/v/value_error",
        ),
    ],
)
def test_failures_before_the_engine_are_one_traceback_on_stderr(
    sim: Launcher, args: list[str], env: dict[str, str], last: str
) -> None:
    server = sim(*args, env=env)
    assert server.wait(15) == 1
    assert server.stderr().splitlines()[-1].startswith(last)
    assert "Initializing a V1 LLM engine" not in server.stdout()


def test_a_gated_model_loads_with_a_token(sim: Launcher) -> None:
    server = sim(LLAMA, "--max-model-len", "8192", VLLM_GUARD_SIM_GATED=LLAMA, HF_TOKEN="hf_x")
    server.wait_healthy()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0


def test_argument_errors_exit_2_before_anything_else(sim: Launcher) -> None:
    server = sim(SMALL, "--swap-space", "4")
    assert server.wait(10) == 2
    assert server.stdout() == ""
    assert server.stderr().splitlines()[-1] == "vllm: error: unrecognized arguments: --swap-space 4"
    bad_fault = sim(SMALL, VLLM_GUARD_SIM_FAULTS="explode")
    assert bad_fault.wait(10) == 2
    assert "unknown fault 'explode'" in bad_fault.stderr()


def test_serving_on_a_unix_socket(sim: Launcher, tmp_path: Path) -> None:
    path = str(tmp_path / "vllm.sock")
    server = sim(SMALL, "--uds", path)

    def answers() -> bool:
        connection = http.client.HTTPConnection("localhost", timeout=2)
        connection.sock = socket.socket(socket.AF_UNIX)
        try:
            connection.sock.connect(path)
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    poll(answers, 15.0, "/health over the unix socket")
    assert f"Starting vLLM server on unix://{path}" in server.stdout()
    server.signal(signal.SIGTERM)
    assert server.wait(10) == 0
    assert not os.path.exists(path)


def test_the_module_runs_as_vllm_would_be_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vllm_guard.sim", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "0.33.0")


def test_the_simulator_imports_nothing_of_the_guard() -> None:
    code = (
        "import sys, vllm_guard.sim.server, vllm_guard.sim.__main__; "
        "print(sorted(m for m in sys.modules"
        " if m.startswith('vllm_guard') and not m.startswith('vllm_guard.sim')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "['vllm_guard']"  # the package itself, which holds only __version__
