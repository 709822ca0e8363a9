"""Bad input of every kind, through `python -m vllm_guard` as a subprocess: one clear error line
that names what is wrong, the right exit code, no traceback, nothing launched that should not be,
and no state file that held data overwritten."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import pytest
from state_files import endpoint_file

from vllm_guard.state import attempts, endpoint_dir

pytestmark = pytest.mark.timeout(60)

SIM = f"{sys.executable} -m vllm_guard.sim"
MODEL = "Qwen/Qwen2.5-7B-Instruct"
QUICK = {
    "VLLM_GUARD_SIM_LOAD_S": "0.05",
    "VLLM_GUARD_SIM_FAULTS": "",
    "VLLM_GUARD_SIM_GPU_MEMORY_GIB": "24",
    "VLLM_GUARD_BACKOFF_INITIAL_S": "0.05",
    "VLLM_GUARD_BACKOFF_JITTER_S": "0",
}


def guard(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vllm_guard", *args],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, **QUICK, **(env or {})},
        check=False,
    )


def the_error(result: subprocess.CompletedProcess[str]) -> str:
    """The guard's one error line; besides it stderr holds at most a hint, and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("vllm-guard: hint: ")]
    assert len(lines) == 1 and lines[0].startswith("vllm-guard: "), result.stderr
    return lines[0]


def nothing_started(result: subprocess.CompletedProcess[str], state: Path) -> None:
    assert "starting vLLM" not in result.stderr
    assert not any(a.get("argv") for a in attempts(endpoint_file(state, "journal.jsonl")))


def serve_argv(state: Path, port: int, *options: str, command: str = SIM) -> list[str]:
    """`serve` of the simulator (or `command`) on a loopback port, guard options before it."""
    return [
        "--vllm-command", command, "--state-dir", str(state), "--health-interval-s", "0.1",
        "--grace-period-s", "5", *options, "serve", MODEL, "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip


# --- 1. policy files -------------------------------------------------------------------------------

# name → (the file's bytes, what the error says after `FILE`)
MALFORMED = {
    "yaml-syntax": (
        b"name: x\nladders:\n  oom_runtime:\n    - flag: --enforce-eager\n   - flag: --max-num-seqs\n",
        ":5: not valid YAML",
    ),
    "unknown-top-level-key": (b"name: x\nretries: 3\n", ":2: retries: Extra inputs are not permitted"),
    "unknown-top-level-key-of-a-block": (
        b"name: x\nrestarts:\n  max_restarts: 3\n",
        ":2: restarts: Extra inputs are not permitted",
    ),
    "unknown-failure-kind": (
        b"name: x\nladders:\n  oom_nonsense:\n    - flag: --enforce-eager\n",
        ":3: ladders.oom_nonsense: Input should be 'oom_weights'",
    ),
    "wrong-type": (b"name: x\nrestart:\n  max_restarts: lots\n", ":3: restart.max_restarts: Input should be"),
    "empty": (b"", ":1: (top level): Input should be a valid dictionary"),
    "binary": (bytes(range(256)) * 16, ": "),  # NUL, control bytes, not UTF-8: any message naming the file
    "nul-bytes": (b"name: x\ndescription: a\x00b\n", ":2: not valid YAML"),
}


def refuse_policy_both_ways(policy: Path, tmp_path: Path, port: int) -> tuple[str, str]:
    """`policy check FILE` and `serve --policy FILE` both refuse it; their error lines."""
    checked = guard("policy", "check", str(policy))
    assert checked.returncode == 2, checked.stderr
    state = tmp_path / "state"
    served = guard(*serve_argv(state, port, "--policy", str(policy), "--preflight", "off"))
    assert served.returncode == 2, served.stderr
    nothing_started(served, state)
    return the_error(checked), the_error(served)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_policy_is_refused_with_its_file_and_line(case: str, tmp_path: Path, port: int) -> None:
    content, says = MALFORMED[case]
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(content)
    for line in refuse_policy_both_ways(policy, tmp_path, port):
        assert f"{policy}{says}" in line


@pytest.mark.parametrize(
    ("case", "says"), [("directory", "Is a directory"), ("missing", "No such file or directory")]
)
def test_a_policy_that_is_no_file_is_refused(case: str, says: str, tmp_path: Path, port: int) -> None:
    policy = tmp_path / "policy.yaml"
    if case == "directory":
        policy.mkdir()
    for line in refuse_policy_both_ways(policy, tmp_path, port):
        assert line == f"vllm-guard: cannot read the policy {policy}: {says}"


def test_a_10_mb_policy_is_refused_in_under_10_s(tmp_path: Path, port: int) -> None:
    comments = tmp_path / "comments.yaml"  # invalid only on its last line, so nothing may launch
    comments.write_text(
        "name: big\n" + ("# " + "x" * 97 + "\n") * 100_000 + "restart: {max_restarts: lots}\n"
    )
    long_list = tmp_path / "list.yaml"
    long_list.write_text("name: big\npinned:\n" + "  - --max-model-len\n" * 500_000 + "  - not-a-flag\n")
    runs: dict[str, subprocess.Popen[bytes]] = {}
    sinks: list[IO[bytes]] = []
    for policy in (comments, long_list):
        assert policy.stat().st_size >= 10_000_000
        state = tmp_path / f"state-{policy.stem}"
        for how, args in (
            ("check", ["policy", "check", str(policy)]),
            ("serve", serve_argv(state, port, "--policy", str(policy), "--preflight", "off")),
        ):
            sinks.append((tmp_path / f"{how}-{policy.stem}.err").open("wb"))
            runs[f"{how} {policy.name}"] = subprocess.Popen(
                [sys.executable, "-m", "vllm_guard", *args],
                stdout=subprocess.DEVNULL,
                stderr=sinks[-1],
                env={**os.environ, **QUICK},
            )
    for sink in sinks:
        sink.close()
    deadline = time.monotonic() + 10.0  # all four at once: the limit holds for each of them
    late = []
    for name, proc in runs.items():
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            late.append(name)
            proc.kill()
            proc.wait(10)
    assert not late, f"still parsing after 10 s: {late}"
    for name, proc in runs.items():
        how, file = name.split()
        err = (tmp_path / f"{how}-{Path(file).stem}.err").read_text()
        assert proc.returncode == 2 and str(tmp_path / file) in err and "Traceback" not in err, err
        assert "starting vLLM" not in err


# --- 2. a state directory that cannot be written --------------------------------------------------


def unusable_state_dir(case: str, tmp_path: Path) -> Path:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    return {"under-a-file": blocker / "state", "a-file": blocker, "in-proc": Path("/proc/vllm-guard-state")}[
        case
    ]


@pytest.mark.parametrize("case", ["under-a-file", "a-file", "in-proc"])
def test_an_unwritable_state_dir_is_exit_2_naming_it(case: str, tmp_path: Path, port: int) -> None:
    state = unusable_state_dir(case, tmp_path)
    result = guard(*serve_argv(state, port, "--preflight", "off"))
    assert result.returncode == 2, result.stderr
    assert the_error(result).startswith(f"vllm-guard: the state directory {state} is not writable: ")
    assert "hint: pass --state-dir DIR" in result.stderr
    assert "starting vLLM" not in result.stderr
    if case != "in-proc":
        assert (tmp_path / "file").read_text() == "not a directory\n"


@pytest.mark.parametrize("case", ["under-a-file", "a-file"])
def test_status_of_an_unusable_state_dir_says_so_without_a_traceback(case: str, tmp_path: Path) -> None:
    state = unusable_state_dir(case, tmp_path)
    for args in (["status"], ["status", "--json"]):
        result = guard("--state-dir", str(state), *args)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode in (0, 2)
        assert str(state) in result.stdout + result.stderr


# --- 3. corrupt state files -----------------------------------------------------------------------

STARTED = {"run": "r1", "event": "started", "attempt": 1, "argv": ["vllm", "serve", "m"], "started_at": "T"}
# name → (file, bytes)
CORRUPT = {
    "known-good-truncated": ("known_good.json", b'{"0123456789abcdef": {"model": "m", "argv": ["--max-mo'),
    "known-good-not-json": ("known_good.json", b"model=m\nargv=--enforce-eager\n"),
    "known-good-a-list": ("known_good.json", b'[{"model": "m", "argv": []}]'),
    "known-good-entry-not-an-object": ("known_good.json", b'{"0123456789abcdef": 1}'),
    "journal-torn-and-binary": (
        "journal.jsonl",
        json.dumps(STARTED).encode()
        + b"\n\x00\xff\xfe\x89PNG\r\n\x1a\n"
        + b'{"run": "r1", "event": "ended", "att',
    ),
    "processes-garbage": ("processes.json", b"\x00\xffnot json{{"),
}


def corrupt_state(case: str, tmp_path: Path, endpoint: str = "port 8000") -> tuple[Path, Path, bytes]:
    """A state directory with one file broken: a shared one at its root, a guard's own in the
    folder of the endpoint it serves on (state.py)."""
    state = tmp_path / "state"
    state.mkdir()
    name, content = CORRUPT[case]
    folder = state if name == "known_good.json" else endpoint_dir(state, endpoint)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return state, folder / name, content


def kept(path: Path, content: bytes) -> bool:
    """The bytes are still there: in the file itself (a journal only grows), or set aside."""
    copies = [path, *path.parent.glob(f"{path.name}.corrupt-*")]
    return any(p.is_file() and p.read_bytes().startswith(content) for p in copies)


@pytest.mark.parametrize(
    "case",
    list(CORRUPT),
)
def test_status_shows_what_it_can_of_a_corrupt_state_dir(case: str, tmp_path: Path) -> None:
    state, path, content = corrupt_state(case, tmp_path)
    text = guard("--state-dir", str(state), "status")
    assert text.returncode == 0 and "Traceback" not in text.stderr, text.stderr
    assert text.stdout.startswith(f"state directory: {state}\n")
    as_json = guard("--state-dir", str(state), "status", "--json")
    assert as_json.returncode == 0 and "Traceback" not in as_json.stderr, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["known_good"] == []
    if case.startswith("journal"):  # the whole line before the tear is still an attempt
        (endpoint,) = report["guards"]
        assert endpoint["endpoint"] == "port 8000" and not endpoint["running"]
        assert [a["argv"] for a in endpoint["attempts"]] == [STARTED["argv"]]
        assert "attempt 1 (T): running or ready" in text.stdout
    assert kept(path, content)


@dataclass
class Serving:
    proc: subprocess.Popen[bytes]
    err: Path
    out: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.stderr():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {text!r} from the guard; its stderr:\n{self.stderr()[-5000:]}")
            time.sleep(0.05)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@contextlib.contextmanager
def serving(tmp_path: Path, args: list[str], env: dict[str, str] | None = None) -> Iterator[Serving]:
    err, out = tmp_path / "guard.err", tmp_path / "guard.out"
    with err.open("wb") as err_sink, out.open("wb") as out_sink:  # the child has its own copies
        proc = subprocess.Popen(
            [sys.executable, "-m", "vllm_guard", *args],
            stdout=out_sink,
            stderr=err_sink,
            env={**os.environ, **QUICK, **(env or {})},
        )
    try:
        yield Serving(proc, err, out)
    finally:
        if proc.poll() is None:  # a failed assertion: stop vLLM too, at once
            proc.send_signal(signal.SIGINT)
            proc.send_signal(signal.SIGINT)
            proc.wait(30)


@pytest.mark.parametrize(
    "case",
    list(CORRUPT),
)
def test_serve_sets_a_corrupt_state_file_aside_and_starts(case: str, tmp_path: Path, port: int) -> None:
    state, path, content = corrupt_state(case, tmp_path, f"port {port} on 127.0.0.1")
    with serving(tmp_path, serve_argv(state, port, "--preflight", "off")) as guard_run:
        guard_run.wait_for("vLLM is ready (attempt 1)")
        assert guard_run.stop() == 0
    stderr = guard_run.stderr()
    assert "Traceback" not in stderr
    if case.startswith("journal"):
        assert kept(path, content)
        (this_run,) = attempts(endpoint_file(state, "journal.jsonl"))
        assert this_run["kind"] == "stopped"
        assert MODEL in (this_run.get("argv") or []), this_run
        return
    if case == "known-good-entry-not-an-object":  # an object: kept as it is, or set aside
        assert kept(path, content)
        return
    (aside,) = path.parent.glob(f"{path.name}.corrupt-*")
    assert aside.read_bytes() == content  # the original bytes, neither deleted nor overwritten
    assert f"{path} could not be read (" in stderr and f"set aside as {aside.name}" in stderr


# --- 4. a flag vLLM does not know -----------------------------------------------------------------


def test_an_unknown_vllm_flag_reaches_vllm_and_ends_at_once_with_exit_5(tmp_path: Path, port: int) -> None:
    state = tmp_path / "state"
    result = guard(*serve_argv(state, port, "--preflight", "off"), "--no-such-flag", "1")
    assert result.returncode == 5, result.stderr
    assert result.stderr.count("vllm-guard: starting vLLM (attempt") == 1
    assert "vllm: error: unrecognized arguments: --no-such-flag 1" in result.stderr  # vLLM's own line
    gave_up = [line for line in result.stderr.splitlines() if line.startswith("vllm-guard: gave up: ")]
    assert gave_up == [
        "vllm-guard: gave up: invalid_args is a permanent failure: vLLM refused its command line or "
        "configuration: change what the evidence names (a flag's value, two flags that conflict, a VLLM_* "
        "variable, or a model architecture this vLLM does not support); flags change between vLLM versions."
    ]
    (only,) = attempts(endpoint_file(state, "journal.jsonl"))
    assert only["kind"] == "invalid_args" and only["decision"]["exit_code"] == 5
    assert only["argv"][-2:] == ["--no-such-flag", "1"]  # passed on untouched


# --- 5. a vLLM command that cannot be run --------------------------------------------------------


def unrunnable_command(case: str, tmp_path: Path) -> Path:
    command = tmp_path / "vllm"
    if case == "directory":
        command.mkdir()
    elif case == "not-executable":
        command.write_text("#!/bin/sh\nexit 0\n")
        command.chmod(0o644)  # no execute bit for anyone: even root may not run it
    return command


@pytest.mark.parametrize("case", ["missing", "directory", "not-executable"])
def test_a_vllm_command_that_cannot_run_is_exit_2_with_a_hint(case: str, tmp_path: Path, port: int) -> None:
    command = unrunnable_command(case, tmp_path)
    state = tmp_path / "state"
    result = guard(*serve_argv(state, port, "--preflight", "off", command=str(command)))
    assert result.returncode == 2, result.stderr
    assert str(command) in the_error(result)
    assert "vllm-guard: hint: " in result.stderr
    assert not state.exists()


@pytest.mark.parametrize(("case", "says"), [("directory", "directory"), ("not-executable", "executable")])
def test_the_vllm_command_error_says_why_it_cannot_run(case: str, says: str, tmp_path: Path) -> None:
    command = unrunnable_command(case, tmp_path)
    result = guard("--state-dir", str(tmp_path / "state"), "--vllm-command", str(command), "serve", MODEL)
    line = the_error(result)
    assert says in line and "not found" not in line


# --- 6. guard option values -----------------------------------------------------------------------


@dataclass(frozen=True)
class BadOption:
    options: list[str]  # on the command line
    env: dict[str, str]  # or in the environment
    flag: str  # the option's two spellings
    variable: str


BAD_OPTIONS = {
    "grace-negative": BadOption(
        ["--grace-period-s", "-1"], {}, "--grace-period-s", "VLLM_GUARD_GRACE_PERIOD_S"
    ),
    "restarts-a-word": BadOption(["--max-restarts", "many"], {}, "--max-restarts", "VLLM_GUARD_MAX_RESTARTS"),
    "backoff-in-env": BadOption(
        [], {"VLLM_GUARD_BACKOFF_MAX_S": "abc"}, "--backoff-max-s", "VLLM_GUARD_BACKOFF_MAX_S"
    ),
    "port-too-big": BadOption(["--metrics-port", "70000"], {}, "--metrics-port", "VLLM_GUARD_METRICS_PORT"),
}


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_a_bad_option_value_is_exit_2_naming_the_option(case: str, tmp_path: Path, port: int) -> None:
    bad = BAD_OPTIONS[case]
    state = tmp_path / "state"
    result = guard(*serve_argv(state, port, *bad.options), env=bad.env)  # after the defaults: it wins
    assert result.returncode == 2, result.stderr
    line = the_error(result)
    assert line.startswith("vllm-guard: invalid setting: ")
    assert (bad.variable if bad.env else bad.flag) in line  # the spelling the value came in
    nothing_started(result, state)
    assert not state.exists()


@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_a_bad_option_value_is_named_in_both_spellings(case: str, tmp_path: Path) -> None:
    bad = BAD_OPTIONS[case]
    result = guard(*bad.options, "--state-dir", str(tmp_path / "state"), "status", env=bad.env)
    assert result.returncode == 2
    line = the_error(result)
    assert bad.flag in line and bad.variable in line


# --- 7. no shell anywhere -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["x; rm -rf {victim}", "$(touch {marker})"])
def test_model_and_flag_values_reach_vllm_as_one_argument_each(model: str, tmp_path: Path, port: int) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("data")
    marker, backticked = tmp_path / "marker", tmp_path / "backticks"
    model = model.format(victim=victim, marker=marker)
    flag_value = f"`touch {backticked}`"
    state = tmp_path / "state"
    result = guard(
        "--vllm-command", SIM, "--state-dir", str(state), "--preflight", "off",
        "serve", model, "--port", str(port), "--served-model-name", flag_value,
    )  # fmt: skip
    assert result.returncode == 5, result.stderr  # the simulator, like vLLM, finds no such model
    (only,) = attempts(endpoint_file(state, "journal.jsonl"))
    assert only["kind"] == "model_not_found"
    argv = only["argv"]
    assert argv[argv.index("serve") + 1 :] == [model, "--port", str(port), "--served-model-name", flag_value]
    assert (victim / "keep").read_text() == "data"
    assert not marker.exists() and not backticked.exists()


# --- 8. secrets -----------------------------------------------------------------------------------


def test_secrets_reach_neither_output_state_status_nor_the_exporter(tmp_path: Path, port: int) -> None:
    token = "hf_" + "QwErTyUiOpAsDfGhJkLzXcVbNm" + "PoIuYtRe"
    api_key = "sk-secret-123456"
    assert len(token) == 3 + 34
    state = tmp_path / "state"
    # a first attempt that fails, so that a relaunch, a remembered flag set and a journal of
    # decisions all exist to leak into; preflight on, so the token check runs too
    args = [
        *serve_argv(state, port, "--metrics-port", "0"),
        "--max-model-len",
        "131072",
        "--api-key",
        api_key,
    ]
    seen: list[str] = []
    # no GPU, whether or not this machine has one: preflight must not fit the first attempt to ready
    with serving(tmp_path, args, env={"HF_TOKEN": token, "CUDA_VISIBLE_DEVICES": ""}) as run:
        run.wait_for("vLLM is ready (attempt 2)")
        run.wait_for("remembered these flags for the next start")
        match = re.search(r"metrics, /livez, /readyz and /status on (http://\S+)", run.stderr())
        assert match, run.stderr()
        for path in ("/metrics", "/status"):
            reply = httpx.get(match.group(1) + path, timeout=10, trust_env=False)
            assert reply.status_code == 200
            seen.append(reply.text)
        assert "vllm_guard_attempt 2.0" in seen[0]
        assert json.loads(seen[1])["user_argv"][-2:] == ["--api-key", "***"]
        for status_args in (["status"], ["status", "--json"]):
            shown = guard("--state-dir", str(state), *status_args)
            assert shown.returncode == 0, shown.stderr
            seen += [shown.stdout, shown.stderr]
        assert run.stop() == 0
    output = run.out.read_text(errors="replace") + run.stderr()
    assert "'api_key': ['***']" in output  # vLLM printed it, the guard masked it
    seen.append(output)
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {"journal.jsonl", "known_good.json"} <= {p.name for p in files}
    assert sum(p.suffix == ".log" for p in files) == 2
    seen += [p.read_text(errors="replace") for p in files]
    for text in seen:
        assert token not in text and "QwErTyUiOp" not in text
        assert api_key not in text and "secret-123456" not in text
