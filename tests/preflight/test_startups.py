"""Preflight against real vLLM startups (startups.py): the figures it plans with agree with the
numbers vLLM printed, and it never starts a length vLLM's KV cache cannot hold."""

from __future__ import annotations

from typing import Any

import pytest
import startups

from vllm_guard.preflight import kv_estimate_margin

RECORDS = startups.load()
DEVELOPMENT = [r for r in RECORDS if not startups.held_out(r)]
HELD_OUT = [r for r in RECORDS if startups.held_out(r)]


def test_each_start_is_real_and_has_its_numbers() -> None:
    for record in RECORDS:
        config = record["config"]
        assert record["source"].startswith("http"), record
        assert record["printed"].get("kv_tokens") or record["printed"].get("weights_gib"), record["source"]
        assert config.get("num_hidden_layers") or config.get("text_config"), record["source"]
        assert record["vllm_version"] and record["engine"] in ("v0", "v1"), record["source"]


@pytest.mark.parametrize("record", [pytest.param(r, id=r["source"]) for r in DEVELOPMENT])
def test_no_verdict_is_optimistic(record: dict[str, Any]) -> None:
    compared = startups.compare(record)
    assert not compared.optimistic, (compared.chosen_len, record["printed"])


def test_the_held_out_third_has_no_optimistic_verdict() -> None:
    # numbers only: the held-out records' names are not printed where they could be tuned on
    assert sum(startups.compare(r).optimistic for r in HELD_OUT) == 0


def test_the_margin_of_an_estimated_budget_covers_the_estimates_known_error() -> None:
    # preflight fits lengths to an estimated KV budget less kv_estimate_margin(GPUs): no
    # development start had more tokens estimated than vLLM found by more than that
    compared = [c for c in map(startups.compare, DEVELOPMENT) if c.kv_tokens_error is not None]
    assert compared
    for c in compared:
        gpus = int(c.record.get("tp", 1)) * int(c.record.get("pp", 1))
        assert (c.kv_tokens_error or 0.0) <= kv_estimate_margin(gpus), (c.record["source"], c.kv_tokens_error)
