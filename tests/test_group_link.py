"""group_link.py's desk (the leader's route) and token, and what serve asks of a group's options."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.exporter import GuardMetrics
from vllm_guard.group import Report
from vllm_guard.group_link import Desk, read_token

TOKEN = "0123456789abcdef0123456789abcdef"


def post(desk: Desk, report: dict[str, object], token: str | None = TOKEN) -> tuple[int, dict[str, object]]:
    return desk.handle(f"Bearer {token}" if token else None, json.dumps(report).encode())


def test_the_desk_takes_a_report_with_the_token_and_refuses_and_counts_the_rest() -> None:
    metrics = GuardMetrics()
    desk = Desk(2, TOKEN, clock=lambda: 10.0, metrics=metrics)
    epoch = desk.book.epoch  # this leader run's
    ready = Report(1, 1, "ready", epoch=epoch).as_json()
    status, answer = post(desk, ready)
    # generation 1 does not run before the leader has planned it from every node's own start
    assert status == 200 and answer["generation"] == 1 and answer["run"] is False
    desk.move(lambda book: book.release())
    assert post(desk, ready)[1]["run"] is True
    assert post(desk, ready, None)[0] == 401
    assert post(desk, ready, "x" * len(TOKEN))[0] == 403
    assert desk.handle(f"Bearer {TOKEN}", b"{not json")[0] == 400
    assert post(desk, {**ready, "rank": 2})[0] == 409  # not a follower of a two-node group
    desk.move(lambda book: book.advance([("set", "--max-model-len", "8192")], "fit"))
    assert post(desk, Report(1, 2, "stopped", epoch=epoch).as_json())[0] == 200
    status, answer = post(desk, ready)  # generation 1's "ready" again, after 2 was heard of
    assert status == 409 and answer["refused"] == "old_generation"
    assert answer["generation"] == 2 and answer["edits"] == [["set", "--max-model-len", "8192"]]
    assert answer["epoch"] == epoch
    # a follower still on a generation of an earlier leader run is taken, and told this one's
    assert post(desk, Report(1, 1, "ready", epoch="an-earlier-run").as_json())[0] == 200
    assert desk.refused == {
        "no_token": 1,
        "wrong_token": 1,
        "bad_report": 1,
        "not_a_follower": 1,
        "old_generation": 1,
    }
    text = metrics.render(None)[0].decode()
    assert 'vllm_guard_group_refused_total{reason="old_generation"} 1.0' in text
    assert "vllm_guard_group_generation 2.0" in text
    assert TOKEN not in text and TOKEN not in json.dumps(answer)


def test_the_token_file_is_read_and_a_weak_or_missing_one_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    assert read_token(good) == TOKEN
    short = tmp_path / "short"
    short.write_text("secret")
    for path in (short, tmp_path / "missing"):
        with pytest.raises(GuardError) as raised:
            read_token(path)
        assert raised.value.exit_code == ExitCode.USAGE and str(path) in raised.value.message
        assert "secret" not in raised.value.message


@pytest.mark.parametrize(
    ("guard", "node", "said"),
    [
        ([], ["--node-rank", "0"], "its guard needs the group's token"),
        (
            ["--group-token-file", "T"],
            ["--node-rank", "0"],
            "its followers report to its guard on --metrics-port",
        ),
        (
            ["--group-token-file", "T"],
            ["--node-rank", "1", "--headless", "--master-addr", "10.0.0.1"],
            "cannot tell where",
        ),
        (
            ["--group-token-file", "T"],
            ["--headless", "--master-addr", "10.0.0.1"],
            "needs this node's --node-rank",
        ),
    ],
)
def test_a_group_node_without_what_the_group_needs_stops_before_launching(
    tmp_path: Path, guard: list[str], node: list[str], said: str
) -> None:
    token = tmp_path / "T"
    token.write_text(TOKEN)
    guard = [str(token) if g == "T" else g for g in guard]
    result = subprocess.run(
        [sys.executable, "-m", "vllm_guard", "--vllm-command", f"{sys.executable} -m vllm_guard.sim",
         "--state-dir", str(tmp_path / "s"), "--preflight", "off", *guard,
         "serve", "m", "--nnodes", "2", *node],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert said in result.stderr and "starting vLLM" not in result.stderr
