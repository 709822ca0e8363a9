"""group.py: roles from vLLM's flags, generations, the leader's book and whose failure leads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from vllm_guard import vllm_config
from vllm_guard.failures import Failure, FailureKind
from vllm_guard.group import (
    Book,
    Generation,
    GpuReport,
    Refused,
    Report,
    root_failure,
    tightness,
)
from vllm_guard.group_role import Role, role_of


def role(*args: str) -> Role:
    return role_of(vllm_config.flags(args, "0.32.0"))


def test_vllms_own_multi_node_mode_leader_and_headless_followers() -> None:
    common = ("--nnodes", "2", "--master-addr", "10.0.0.1", "--master-port", "29500", "-tp", "16")
    assert role(*common, "--node-rank", "0") == Role("leader", "multi-node", 0, 2, "10.0.0.1")
    assert role(*common) == Role("leader", "multi-node", 0, 2, "10.0.0.1")  # rank 0 by default
    assert role(*common, "--node-rank", "1", "--headless") == Role("follower", "multi-node", 1, 2, "10.0.0.1")
    assert role(*common, "--node-rank=1") == Role("follower", "multi-node", 1, 2, "10.0.0.1")


def test_data_parallel_across_nodes_the_api_node_leads_and_headless_nodes_follow() -> None:
    leader = role(
        "--data-parallel-size", "4", "--data-parallel-size-local", "2",
        "--data-parallel-address", "10.0.0.1", "--data-parallel-rpc-port", "13345",
    )  # fmt: skip
    assert leader == Role("leader", "data-parallel", 0, 2, "10.0.0.1")
    follower = role(
        "--data-parallel-size", "4", "--data-parallel-size-local", "2", "--data-parallel-start-rank", "2",
        "--data-parallel-address", "10.0.0.1", "--data-parallel-rpc-port", "13345", "--headless",
    )  # fmt: skip
    assert follower == Role("follower", "data-parallel", 1, 2, "10.0.0.1")


def test_one_node_and_ray_are_not_groups_the_guard_coordinates() -> None:
    assert role() == Role() and not role().grouped
    assert role("--data-parallel-size", "2") == Role()  # every rank on this node
    assert role("--nnodes", "1") == Role()
    ray = role("-tp", "8", "-pp", "2", "--distributed-executor-backend", "ray")
    assert ray == Role("solo", "ray") and "Ray's" in ray.describe()


def test_flags_from_vllms_config_file_count(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("nnodes: 2\nnode-rank: 1\nheadless: true\nmaster-addr: 10.0.0.9\n")
    assert role("--config", str(config)) == Role("follower", "multi-node", 1, 2, "10.0.0.9")


def test_a_generation_and_a_report_survive_the_wire_and_bad_ones_are_refused() -> None:
    g = Generation(3, (("set", "--max-model-len", "8192"), ("remove", "--enforce-eager", None)), False, "fit")
    assert Generation.from_json(json.loads(json.dumps(g.as_json()))) == g
    failure = Failure(
        FailureKind.MAX_MODEL_LEN_TOO_LARGE, "estimated ... 9000", {"estimated_max_model_len": 9000}
    )
    planned = (("set", "--max-model-len", "24832"), ("remove", "--enable-prefix-caching", None))
    r = Report(1, 3, "failed", 2, failure, GpuReport("NVIDIA L4", 1, 24 << 30), ("shm: 64 MiB",), planned)
    assert Report.from_json(json.loads(json.dumps(r.as_json()))) == r
    bad: object
    for bad in (
        {"generation": 0, "edits": [], "run": True},
        {"generation": 1, "edits": [["set", "max-model-len", "1"]], "run": True},
        {"generation": 1, "edits": [], "run": "yes"},
        [],
    ):
        with pytest.raises(ValueError):
            Generation.from_json(bad)
    for bad_report in (
        {**r.as_json(), "rank": 0},
        {**r.as_json(), "phase": "dancing"},
        {**r.as_json(), "failure": {"kind": "nope"}},
        {**r.as_json(), "gpu": {"name": "x", "count": "1", "total_bytes": 1}},
        {**r.as_json(), "preflight": "shm"},
    ):
        with pytest.raises(ValueError):
            Report.from_json(bad_report)


def test_the_book_answers_with_the_generation_and_refuses_a_replay_of_an_old_one() -> None:
    book = Book(nodes=3, since=0.0)
    assert not book.generation.run  # until the leader's first plan
    book.generation = Generation(1)
    assert book.heard(Report(1, 1, "ready"), 1.0) == Generation(1)
    assert book.heard(Report(2, 1, "starting"), 1.0) == Generation(1)
    assert isinstance(book.heard(Report(3, 1, "ready"), 1.0), Refused)  # rank 3 of 3 nodes
    # a follower still on generation 7 of the leader's last run: taken, and told the group's
    assert book.heard(Report(1, 7, "ready"), 1.0) == Generation(1)
    assert book.heard(Report(1, 1, "ready"), 1.0) == Generation(1)
    book.advance([("set", "--max-model-len", "8192")], "fit")
    # node 1 saw generation 2 and stopped; a replay of its generation-1 "ready" is refused
    assert book.heard(Report(1, 2, "stopped"), 2.0).number == 2  # type: ignore[union-attr]
    refused = book.heard(Report(1, 1, "ready"), 2.5)
    assert isinstance(refused, Refused) and refused.reason == "old_generation"
    # node 2 has not heard of generation 2 yet: its report is taken, and it is told
    assert book.heard(Report(2, 1, "ready"), 2.5) == book.generation
    assert not book.all_stopped()
    book.heard(Report(2, 2, "stopped"), 3.0)
    assert book.all_stopped() and book.release().run


def test_silent_followers_are_counted_from_their_last_report_or_the_books_opening() -> None:
    book = Book(nodes=3, since=100.0)
    book.heard(Report(1, 1, "starting"), 150.0)
    assert book.silent(160.0, after_s=30.0) == [2]
    assert book.silent(200.0, after_s=30.0) == [1, 2]
    assert book.silent(120.0, after_s=30.0) == []


def test_the_groups_step_follows_a_cause_over_the_consequences_and_the_tightest_fit() -> None:
    nccl = Failure(FailureKind.COLLECTIVE_TIMEOUT, "Watchdog caught collective operation timeout")
    leader_fit = Failure(FailureKind.MAX_MODEL_LEN_TOO_LARGE, "", {"estimated_max_model_len": 20000})
    follower_fit = Failure(FailureKind.MAX_MODEL_LEN_TOO_LARGE, "", {"estimated_max_model_len": 12000})
    assert root_failure([(0, nccl), (1, follower_fit)]) == (1, follower_fit)
    assert root_failure([(0, leader_fit), (1, follower_fit)]) == (1, follower_fit)
    assert root_failure([(0, nccl), (1, Failure(FailureKind.FOLLOWER_LOST))]) == (0, nccl)
    assert (
        tightness(Failure(FailureKind.INSUFFICIENT_FREE_MEMORY, "", {"free_bytes": 5, "total_bytes": 10}))
        == 0.5
    )
    assert tightness(Failure(FailureKind.OOM_KV_CACHE)) == math.inf
    with pytest.raises(ValueError):
        root_failure([])
