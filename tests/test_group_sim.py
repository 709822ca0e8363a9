"""A two-node vLLM group on one machine, over loopback: a leader's guard and a follower's guard,
each with its own state directory and its own simulated GPU, each supervising its own simulated
vLLM (`--nnodes 2`, the follower `--headless`), the follower's guard reporting to the leader's."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx
import psutil
import pytest
from state_files import endpoint_file

from vllm_guard.state import attempts

pytestmark = pytest.mark.timeout(120)

SIM = f"{sys.executable} -m vllm_guard.sim"
MODEL = "Qwen/Qwen2.5-7B-Instruct"
TOKEN = "a-group-secret-of-some-length-0123456789"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    rank: int
    state: Path
    err: Path
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    pids: set[int] = field(default_factory=set)  # every vLLM process seen under this guard

    def start(self) -> None:
        with self.err.open("ab") as sink:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=sink, env=self.env)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_for(self, text: str, timeout_s: float = 45.0, after: int = 0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.note_pids()
            if text in self.stderr()[after:]:
                return
            time.sleep(0.05)
        pytest.fail(f"node {self.rank}: no {text!r}; its guard's stderr:\n{self.stderr()[-6000:]}")

    def note_pids(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            self.pids |= {p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)}

    def vllm(self) -> psutil.Process:
        assert self.proc is not None
        (top,) = psutil.Process(self.proc.pid).children()
        return top

    def journal(self) -> list[dict[str, object]]:
        return attempts(endpoint_file(self.state, "journal.jsonl"))

    def kill_guard(self) -> None:
        """The guard killed outright (the OOM killer, kill -9). The simulated vLLM ends at its
        next write to the dead guard's pipe."""
        assert self.proc is not None
        self.note_pids()
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.note_pids()
        self.proc.send_signal(signum)
        return self.proc.wait(30)


@dataclass
class Group:
    leader: Node
    follower: Node
    exporter: str  # the leader's guard's endpoints

    def nodes(self) -> list[Node]:
        return [self.leader, self.follower]


def length(attempt: dict[str, object]) -> str:
    argv = attempt["argv"]
    assert isinstance(argv, list)
    return str(argv[argv.index("--max-model-len") + 1])


def left_running(pids: set[int]) -> list[int]:
    alive = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
    return alive


class MakeGroup(Protocol):
    def __call__(self, follower_gib: str = "24", *vllm_args: str) -> Group: ...


@pytest.fixture
def group(tmp_path: Path) -> Iterator[MakeGroup]:
    token = tmp_path / "group-token"
    token.write_text(TOKEN + "\n")
    exporter_port, master_port = free_port(), free_port()
    common = [
        "--vllm-command", SIM, "--group-token-file", str(token), "--group-lost-after-s", "3",
        "--health-interval-s", "0.1", "--backoff-initial-s", "0.2", "--backoff-jitter-s", "0",
        "--grace-period-s", "5",
    ]  # fmt: skip
    group_flags = ["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(master_port)]

    def node(rank: int, gpu_gib: str, *vllm_args: str) -> Node:
        state = tmp_path / f"node{rank}"
        guard = [sys.executable, "-m", "vllm_guard", "--state-dir", str(state), *common]
        if rank == 0:
            guard += ["--metrics-port", str(exporter_port)]
        else:
            guard += ["--group-leader", f"http://127.0.0.1:{exporter_port}"]
        serve = ["serve", MODEL, "--host", "127.0.0.1", "--port", str(free_port()), *group_flags]
        serve += ["--node-rank", str(rank), *(["--headless"] if rank else []), *vllm_args]
        env = {
            **os.environ,
            "VLLM_GUARD_SIM_LOAD_S": "0.05",
            "VLLM_GUARD_SIM_GPU_MEMORY_GIB": gpu_gib,
            "VLLM_GUARD_SIM_STATE": str(tmp_path / f"sim-launches-{rank}"),
        }
        return Node(rank, state, tmp_path / f"node{rank}.err", [*guard, *serve], env)

    made: list[Group] = []

    def make(follower_gib: str = "24", *vllm_args: str) -> Group:
        g = Group(
            node(0, "24", *vllm_args), node(1, follower_gib, *vllm_args), f"http://127.0.0.1:{exporter_port}"
        )
        made.append(g)
        return g

    yield make
    for g in made:
        for n in g.nodes():
            if n.proc is not None and n.proc.poll() is None:
                n.proc.send_signal(signal.SIGINT)
                n.proc.send_signal(signal.SIGINT)
                n.proc.wait(30)


def test_the_group_becomes_ready_refuses_a_report_without_the_token_and_leaves_nothing(
    group: MakeGroup,
) -> None:
    g = group()
    g.follower.start()  # the follower's guard may come first: it waits for the leader's
    g.follower.wait_for("waiting for the group's leader to start a generation")
    g.leader.start()
    g.leader.wait_for("vLLM is ready (attempt 1)")
    g.follower.wait_for("vLLM is ready (attempt 1)")
    assert "this node is the follower (node 1 of 2, multi-node at 127.0.0.1)" in g.follower.stderr()
    report = {"rank": 1, "generation": 1, "phase": "ready", "attempt": 1}
    no_token = httpx.post(f"{g.exporter}/group/v1/report", json=report, timeout=5, trust_env=False)
    wrong = httpx.post(
        f"{g.exporter}/group/v1/report", json=report, timeout=5, trust_env=False,
        headers={"Authorization": "Bearer not-the-token"},
    )  # fmt: skip
    assert (no_token.status_code, wrong.status_code) == (401, 403)
    metrics = httpx.get(f"{g.exporter}/metrics", timeout=5, trust_env=False).text
    assert 'vllm_guard_group_refused_total{reason="no_token"} 1.0' in metrics
    assert 'vllm_guard_group_refused_total{reason="wrong_token"} 1.0' in metrics
    assert "vllm_guard_group_generation 1.0" in metrics
    status = httpx.get(f"{g.exporter}/status", timeout=5, trust_env=False).json()["group"]
    assert status["generation"]["serving"] and status["followers"]["1"]["phase"] == "ready"
    assert status["refused"] == {"no_token": 1, "wrong_token": 1}
    assert "node 1's guard reports: no GPU read" in g.leader.stderr()
    for n in g.nodes():
        assert TOKEN not in n.stderr()
        assert not [p for p in n.state.rglob("*") if p.is_file() and TOKEN in p.read_text(errors="replace")]
    assert g.follower.stop() == 0 and g.leader.stop() == 0
    assert left_running(g.leader.pids | g.follower.pids) == []


def test_a_follower_whose_kv_cache_does_not_fit_sets_the_length_for_the_whole_group(group: MakeGroup) -> None:
    # Qwen2.5-7B's 32k context fits the leader's 24 GiB but not the follower's 18 GiB
    g = group("18", "--max-model-len", "32768", "--enforce-eager")
    g.leader.start()
    g.follower.start()
    g.follower.wait_for("attempt 1 failed: max_model_len_too_large; the group's leader decides what follows")
    g.leader.wait_for("the group's next step follows node 1's failure: max_model_len_too_large")
    g.leader.wait_for("vLLM is ready (attempt 2)")
    g.follower.wait_for("vLLM is ready (attempt 2)")
    lengths = [length(a) for a in g.follower.journal()[:2]]
    assert lengths[0] == "32768" and int(lengths[1]) < 32768
    assert length(g.leader.journal()[1]) == lengths[1]  # one generation for both
    # each node's journal says which generation each of its attempts ran
    for n, role in ((g.leader, "leader"), (g.follower, "follower")):
        groups = [a["group"] for a in n.journal()[:2] if isinstance(a["group"], dict)]
        assert [(x["role"], x["rank"], x["generation"]) for x in groups] == [
            (role, n.rank, 1),
            (role, n.rank, 2),
        ]
        assert groups[0]["epoch"] == groups[1]["epoch"] != ""
    shown = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--state-dir", str(g.follower.state), "status"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "node 1 (follower) on the group's generation 2): running or ready" in shown
    assert g.follower.stop() == 0 and g.leader.stop() == 0
    assert left_running(g.leader.pids | g.follower.pids) == []


def test_a_followers_vllm_killed_restarts_the_group(group: MakeGroup) -> None:
    g = group()
    g.leader.start()
    g.follower.start()
    g.follower.wait_for("vLLM is ready (attempt 1)")
    g.follower.vllm().kill()
    g.leader.wait_for("the group moves to generation 2")
    g.leader.wait_for("vLLM is ready (attempt 2)")
    g.follower.wait_for("vLLM is ready (attempt 2)")
    assert g.follower.stop() == 0 and g.leader.stop() == 0
    assert left_running(g.leader.pids | g.follower.pids) == []


def test_a_followers_guard_killed_is_waited_for_then_the_group_restarts_when_it_is_back(
    group: MakeGroup,
) -> None:
    g = group()
    g.leader.start()
    g.follower.start()
    g.follower.wait_for("vLLM is ready (attempt 1)")
    g.follower.kill_guard()
    g.leader.wait_for("follower_lost")
    g.leader.wait_for("waiting for node(s) 1 to stop their vLLM before any node starts")
    g.follower.start()  # back, on its state directory: it removes what its last run left first
    g.leader.wait_for("vLLM is ready (attempt 2)")
    g.follower.wait_for("vLLM is ready (attempt 1)", after=0)
    assert g.follower.stop() == 0 and g.leader.stop() == 0
    assert left_running(g.leader.pids | g.follower.pids) == []


def test_when_the_leader_gives_up_the_follower_ends_with_its_exit_code(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    exporter, master = free_port(), free_port()
    env = {**os.environ, "VLLM_GUARD_SIM_LOAD_S": "0.05", "VLLM_GUARD_SIM_GPU_MEMORY_GIB": "24"}
    common = ["--vllm-command", SIM, "--group-token-file", str(token), "--health-interval-s", "0.1",
              "--backoff-initial-s", "0.1", "--backoff-jitter-s", "0", "--max-restarts", "0"]  # fmt: skip
    group_flags = ["--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(master)]
    leader = Node(0, tmp_path / "n0", tmp_path / "n0.err",
                  [sys.executable, "-m", "vllm_guard", "--state-dir", str(tmp_path / "n0"), *common,
                   "--metrics-port", str(exporter), "serve", MODEL, "--host", "127.0.0.1",
                   "--port", str(free_port()), *group_flags, "--node-rank", "0"],
                  {**env, "VLLM_GUARD_SIM_STATE": str(tmp_path / "sim0")})  # fmt: skip
    follower = Node(1, tmp_path / "n1", tmp_path / "n1.err",
                    [sys.executable, "-m", "vllm_guard", "--state-dir", str(tmp_path / "n1"), *common,
                     "--group-leader", f"http://127.0.0.1:{exporter}", "serve", MODEL,
                     "--port", str(free_port()), *group_flags, "--node-rank", "1", "--headless"],
                    {**env, "VLLM_GUARD_SIM_STATE": str(tmp_path / "sim1")})  # fmt: skip
    leader.start()
    follower.start()
    try:
        follower.wait_for("vLLM is ready (attempt 1)")
        follower.vllm().kill()  # the group's budget of restarts is none
        assert leader.proc is not None and follower.proc is not None
        code = leader.proc.wait(60)
        assert code != 0 and "gave up" in leader.stderr()
        assert follower.proc.wait(60) == code
        assert "the group's leader gave up" in follower.stderr()
        assert left_running(leader.pids | follower.pids) == []
    finally:
        for n in (leader, follower):
            if n.proc is not None and n.proc.poll() is None:
                n.proc.kill()


def test_the_first_start_takes_the_tightest_of_every_nodes_own_preflight(
    group: MakeGroup, tmp_path: Path
) -> None:
    # the follower's guard reads its 18 GiB GPU (a snapshot, as NVML would) and the model's config:
    # its preflight fits the length; the leader's start takes it, and nobody crashes to learn it
    from model_configs import QWEN25_7B  # noqa: PLC0415

    from vllm_guard.facts import GpuFacts, GpuInfo  # noqa: PLC0415
    from vllm_guard.gpu import facts_to_json  # noqa: PLC0415

    total = 18 << 30
    card = GpuInfo(0, None, "NVIDIA L4", total, total, 0, 0, (8, 9), ())
    snapshot = tmp_path / "follower-gpus.json"
    snapshot.write_text(json.dumps(facts_to_json(GpuFacts((card,), "580.159.04", "13.0", None, "test"))))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(QWEN25_7B))
    g = group("18", "--max-model-len", "32768", "--enforce-eager")
    at = g.follower.argv.index("serve")
    g.follower.argv[at:at] = ["--gpu-snapshot", str(snapshot), "--config-json", str(config)]
    g.leader.start()
    g.follower.start()
    g.leader.wait_for("the group's first start takes node 1's own plan: --max-model-len 32768 → ")
    g.leader.wait_for("vLLM is ready (attempt 1)")
    g.follower.wait_for("vLLM is ready (attempt 1)")
    (mine,), (theirs,) = g.leader.journal(), g.follower.journal()
    assert length(mine) == length(theirs) and int(length(mine)) < 32768
    reported = next(line for line in g.leader.stderr().splitlines() if "node 1's guard reports: " in line)
    assert "NVIDIA L4 x1 (18 GiB each); its preflight: " in reported and "adj  kv_cache: " in reported
    assert g.follower.stop() == 0 and g.leader.stop() == 0


def test_a_leaders_guard_killed_and_started_again_brings_the_group_back(group: MakeGroup) -> None:
    g = group()
    g.leader.start()
    g.follower.start()
    g.follower.wait_for("vLLM is ready (attempt 1)")
    g.leader.kill_guard()  # the follower's guard cannot reach the leader's
    g.follower.wait_for("the group's leader (http://127.0.0.1:")
    seen = len(g.leader.stderr())
    g.leader.start()  # on its state directory, numbering its generations anew
    g.leader.wait_for("vLLM is ready (attempt 1)", after=seen)
    g.follower.wait_for("vLLM is ready (attempt 2)")
    # the follower's end in the last run is not taken for a failure of the new one
    assert "node 1's vLLM failed" not in g.leader.stderr()[seen:]
    assert g.follower.stop() == 0 and g.leader.stop() == 0
    assert left_running(g.leader.pids | g.follower.pids) == []
