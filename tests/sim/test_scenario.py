"""The scenario variables: faults (with `once:`), the launch counter, the GPU, the ledger."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_guard.sim import models, scenario
from vllm_guard.sim.memory import GiB
from vllm_guard.sim.models import Found, Lookup
from vllm_guard.sim.scenario import Faults, ScenarioError, parse_faults


def test_faults_parse_with_values_and_switches() -> None:
    faults = parse_faults(
        "hang_after=2.5, stall_after=1,oom_after_requests=3,ignore_sigterm,exit0_on_death,"
        "flood_lines=10,flood_line_bytes=64,orphan_engine",
        launch=None,
    )
    assert faults == Faults(2.5, 1.0, 3, True, True, 10, 64, True)
    assert parse_faults("", launch=None) == Faults()


def test_once_faults_apply_to_the_first_launch_only() -> None:
    spec = "once:oom_after_requests=1,ignore_sigterm"
    assert parse_faults(spec, launch=1) == Faults(oom_after_requests=1, ignore_sigterm=True)
    assert parse_faults(spec, launch=2) == Faults(ignore_sigterm=True)
    assert parse_faults(spec, launch=None) == Faults(oom_after_requests=1, ignore_sigterm=True)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("explode", "unknown fault 'explode'"),
        ("once:hang_after", "needs a float value"),
        ("oom_after_requests=x", "needs a int value"),
        ("orphan_engine=1", "takes no value"),
        ("flood_lines=-1", "must not be negative"),
    ],
)
def test_bad_fault_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_faults(spec, launch=None)


def test_the_launch_counter_counts_every_launch(tmp_path: Path) -> None:
    state = str(tmp_path / "launches")
    assert [scenario.count_launch(state) for _ in range(3)] == [1, 2, 3]
    env = {"VLLM_GUARD_SIM_STATE": state, "VLLM_GUARD_SIM_FAULTS": "once:orphan_engine"}
    assert scenario.load(env).launch == 4
    assert scenario.load(env).faults == Faults()


def test_a_bad_fault_spec_is_not_counted_as_a_launch(tmp_path: Path) -> None:
    state = tmp_path / "launches"
    with pytest.raises(ScenarioError):
        scenario.load({"VLLM_GUARD_SIM_STATE": str(state), "VLLM_GUARD_SIM_FAULTS": "nope"})
    assert not state.exists()


def test_the_gpu_comes_from_the_environment() -> None:
    loaded = scenario.load(
        {
            "VLLM_GUARD_SIM_GPU_MEMORY_GIB": "80",
            "VLLM_GUARD_SIM_GPU_USED_GIB": "2.5",
            "VLLM_GUARD_SIM_COMPUTE_CAPABILITY": "9.0",
            "VLLM_GUARD_SIM_GPU_COUNT": "2",
            "VLLM_GUARD_SIM_LOAD_S": "0.1",
        }
    )
    assert (loaded.gpu.total_bytes, loaded.gpu.other_used_bytes) == (80 * GiB, int(2.5 * GiB))
    assert (loaded.gpu.capability, loaded.gpu.count, loaded.load_s) == ((9, 0), 2, 0.1)
    defaults = scenario.load({})
    assert (defaults.gpu.total_bytes, defaults.gpu.capability, defaults.gpu.count) == (24 * GiB, (8, 9), 1)
    assert (defaults.load_s, defaults.version) == (1.0, "0.33.0")


@pytest.mark.parametrize(
    "env",
    [
        {"VLLM_GUARD_SIM_GPU_MEMORY_GIB": "lots"},
        {"VLLM_GUARD_SIM_COMPUTE_CAPABILITY": "89"},
        {"VLLM_GUARD_SIM_LOAD_S": "-1"},
        {"VLLM_GUARD_SIM_VERSION": "0.8.5"},
    ],
)
def test_bad_scenario_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ScenarioError):
        scenario.load(env)


def test_the_ledger_counts_live_holders_only(tmp_path: Path) -> None:
    ledger = tmp_path / "gpu"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        scenario.record(ledger, holder.pid, 3 * GiB)
        (ledger / "999999999").write_text("1 0\n")  # a dead one, removed on read
        loaded = scenario.load({"VLLM_GUARD_SIM_GPU_LEDGER": str(ledger), "VLLM_GUARD_SIM_GPU_USED_GIB": "1"})
        assert loaded.gpu.holders == ((holder.pid, 3 * GiB),)
        assert loaded.gpu.other_used_bytes == 4 * GiB
        assert not (ledger / "999999999").exists()
    finally:
        holder.kill()
        holder.wait()
    assert scenario.read_ledger(ledger) == ()


def find(model: str, **kwargs: object) -> Found | Lookup:
    options: dict[str, object] = {
        "gated": frozenset(),
        "token": False,
        "offline": False,
        "hub_reachable": True,
    }
    options.update(kwargs)
    return models.find(model, **options)  # type: ignore[arg-type]


def test_where_a_model_comes_from(tmp_path: Path) -> None:
    assert isinstance(find("Qwen/Qwen2.5-7B-Instruct"), Found)
    assert find("/no/such/dir") is Lookup.INVALID_REPO_ID  # real-cpu b: not a repo id either
    assert find("no-such-org/no-such-model") is Lookup.NOT_FOUND
    assert find("no-such-org/no-such-model", offline=True) is Lookup.OFFLINE_NOT_CACHED  # real-cpu c3
    assert find("no-such-org/no-such-model", hub_reachable=False) is Lookup.HUB_UNREACHABLE  # c4
    gated = frozenset({"meta-llama/Llama-3.1-8B-Instruct"})
    assert find("meta-llama/Llama-3.1-8B-Instruct", gated=gated) is Lookup.GATED
    assert isinstance(find("meta-llama/Llama-3.1-8B-Instruct", gated=gated, token=True), Found)
    assert find(str(tmp_path)) is Lookup.NO_CONFIG
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["Qwen2ForCausalLM"],
                "hidden_size": 896,
                "num_hidden_layers": 24,
                "num_attention_heads": 14,
                "num_key_value_heads": 2,
                "intermediate_size": 4864,
                "vocab_size": 151936,
                "max_position_embeddings": 32768,
                "torch_dtype": "bfloat16",
                "tie_word_embeddings": True,
                "quantization_config": {"quant_method": "awq", "bits": 4},
            }
        )
    )
    found = find(str(tmp_path))
    assert isinstance(found, Found) and found.local
    assert found.shape.head_dim == 64
    assert (found.shape.quant_method, found.shape.quant_bits) == ("awq", 4)


def test_the_table_holds_real_sizes() -> None:
    billions = {name: shape.params() / 1e9 for name, shape in models.TABLE.items()}
    assert billions["meta-llama/Llama-3.1-8B-Instruct"] == pytest.approx(8.03, abs=0.01)
    assert billions["meta-llama/Llama-3.1-70B-Instruct"] == pytest.approx(70.55, abs=0.05)
    assert billions["Qwen/Qwen2.5-7B-Instruct"] == pytest.approx(7.62, abs=0.01)
    assert billions["Qwen/Qwen2.5-72B-Instruct"] == pytest.approx(72.7, abs=0.05)
    assert billions["mistralai/Mistral-7B-Instruct-v0.3"] == pytest.approx(7.25, abs=0.01)
