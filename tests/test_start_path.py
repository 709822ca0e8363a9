"""The start path a user's flags travel (settings → key → remembered flags → the spawn), through
the one door for flag edits: review B1 (the replay ignored pins and the policy) and B6 (a bad
remembered entry crashed every start)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from test_supervisor import FakeLauncher, FakeProbe, RecordingPrinter, Script

from vllm_guard import flag_edits, gpu, policy_file, settings, vllm_config
from vllm_guard.failures import FailureKind
from vllm_guard.output import AttemptOutput
from vllm_guard.policy import Facts, Policy, Step
from vllm_guard.processes import VllmProcess, kill_spawned, resolve_command
from vllm_guard.redact import Redactor
from vllm_guard.startup import _facts, start_serving
from vllm_guard.state import KNOWN_GOOD, StateDir, known_good_key
from vllm_guard.supervisor import Supervisor, World
from vllm_guard.vllm_version import detect

pytestmark = pytest.mark.timeout(30)


def fake_vllm(tmp_path: Path) -> Path:
    fake = tmp_path / "vllm"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/argv\nexec sleep 30\n')
    fake.chmod(0o755)
    return fake


def started_with(tmp_path: Path, user: list[str], **options: str) -> str:
    values = {
        "vllm_command": str(fake_vllm(tmp_path)),
        "state_dir": str(tmp_path / "state"),
        "preflight": "off",
        **options,
    }
    started = start_serving(settings.load(values), "m", user, {"PATH": os.environ["PATH"]})
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "argv").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return (tmp_path / "argv").read_text().strip()
    finally:
        assert started.first is not None
        kill_spawned(started.first)
        started.state.close()


def remember(
    tmp_path: Path,
    user: list[str],
    edits: object,
    *,
    policy: str = "default",
    pinned: frozenset[str] = frozenset(),
    extra: list[str] | None = None,
) -> str:
    env = {"PATH": os.environ["PATH"]}
    version = detect(resolve_command(str(fake_vllm(tmp_path)), env))
    relevant = flag_edits.memory_relevant(vllm_config.effective(user), version)
    key = known_good_key(
        "m", Redactor.for_launch(env, user).argv(relevant), version, None, policy=policy, pinned=pinned
    )
    state = StateDir(tmp_path / "state")
    state.logs.mkdir(parents=True, exist_ok=True)
    state.remember(key, {"model": "m", "edits": edits})
    return key


def test_remembered_flags_are_replayed_under_the_same_policy_and_pins(tmp_path: Path) -> None:
    user = ["--max-model-len", "32768"]
    remember(tmp_path, user, [["set", "--max-model-len", "4096"], ["set", "--quantization", "fp8"]])
    assert started_with(tmp_path, user) == "serve m --max-model-len 4096 --quantization fp8"


def test_flags_remembered_under_default_never_start_a_keep_quality_or_pinned_run(tmp_path: Path) -> None:
    """As a new user tried it: after one run remembered 4096 and fp8, a run with
    --pin=--max-model-len and --policy keep-quality still launched with both."""
    user = ["--max-model-len", "32768"]
    remember(tmp_path, user, [["set", "--max-model-len", "4096"], ["set", "--quantization", "fp8"]])
    argv = started_with(tmp_path, user, pin="--max-model-len,--quantization", policy="keep-quality")
    assert argv == "serve m --max-model-len 32768"


def test_a_pinned_flag_is_not_replayed_even_under_the_key_it_was_remembered_with(tmp_path: Path) -> None:
    user = ["--max-model-len", "32768"]
    pins = frozenset({"--max-model-len"})
    # a record that no guard with this pin could have written (a hand edit, an older guard)
    remember(
        tmp_path, user, [["set", "--max-model-len", "4096"], ["set", "--max-num-seqs", "64"]], pinned=pins
    )
    argv = started_with(tmp_path, user, pin="--max-model-len")
    assert argv == "serve m --max-model-len 32768 --max-num-seqs 64"


def test_a_remembered_value_above_the_users_is_not_replayed(tmp_path: Path) -> None:
    user = ["--max-num-seqs", "16"]
    remember(tmp_path, user, [["set", "--max-num-seqs", "128"]])
    assert started_with(tmp_path, user) == "serve m --max-num-seqs 16"


def test_the_port_and_api_key_do_not_key_the_remembered_flags(tmp_path: Path) -> None:
    remember(tmp_path, ["--max-model-len", "32768", "--port", "8000"], [["set", "--max-model-len", "4096"]])
    argv = started_with(tmp_path, ["--max-model-len", "32768", "--port", "9001", "--api-key", "sk-secret"])
    assert argv == "serve m --max-model-len 4096 --port 9001 --api-key sk-secret"


def test_a_malformed_remembered_entry_is_set_aside_not_a_crash(tmp_path: Path) -> None:
    """B6: valid JSON with a malformed edit crashed every serve (exit 1: a systemd crash loop)."""
    user = ["--max-model-len", "4096"]
    key = remember(tmp_path, user, [["set", "--max-model-len"]])
    assert started_with(tmp_path, user) == "serve m --max-model-len 4096"
    state = tmp_path / "state"
    assert key not in json.loads((state / KNOWN_GOOD).read_text())
    aside = list(state.glob(f"{KNOWN_GOOD}.corrupt-*"))
    assert len(aside) == 1 and key in json.loads(aside[0].read_text())


WEIGHTS_OOM = Path(__file__).parent / "diagnosis/fixtures/oom_weights/vllm-28143-v1-create-weights-oom.log"


def test_the_gpus_preflight_read_are_the_facts_the_policy_decides_with() -> None:

    facts = _facts(gpu.planned("V100", 2), "0.32.0")
    assert (facts.gpu_name, facts.gpu_count, facts.compute_capability) == ("Tesla V100-SXM2-32GB", 2, (7, 0))
    assert _facts(None, "0.32.0").compute_capability is None


async def test_no_fp8_is_tried_on_a_volta_and_no_undo_is_called_the_same_flags(tmp_path: Path) -> None:
    """B8: the GPU's compute capability never reached the policy: on a 7.0 GPU the ladder tried
    fp8 (two wasted model loads), and the undo was announced as "restarting with the same flags"."""

    class WeightsOom(FakeLauncher):
        async def launch(
            self, argv: Sequence[str], env: Mapping[str, str], output: AttemptOutput
        ) -> VllmProcess:
            proc = await super().launch(argv, env, output)
            if len(self.launched) == 1:
                output.feed(2, WEIGHTS_OOM.read_bytes())
            return proc

    state = StateDir(tmp_path / "state")
    state.open()
    launcher = WeightsOom([Script(ready_after_polls=None, exit_after_polls=1), Script(ready_after_polls=1)])
    printer = RecordingPrinter()

    async def no_sleep(_: float) -> None:
        pass

    world = World(
        launcher=launcher, probe_for=lambda _: FakeProbe(launcher, launcher.procs[-1]), state=state,
        printer=printer, sleep=no_sleep, rng=random.Random(0),
    )  # fmt: skip
    sup = Supervisor(
        settings.load({"state_dir": str(tmp_path / "state"), "health_interval_s": "0.001"}), program=["vllm"], model="m",
        user_args=("--dtype", "half"), env={}, world=world, policy=policy_file.load("default").policy(),
        facts=Facts(compute_capability=(7, 0)), vllm_version="0.32.0",
    )  # fmt: skip
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(2).wait(), 20)
    sup.request_stop()
    await run
    assert launcher.launched[1][3:] == ["--dtype", "half", "--cpu-offload-gb", "8"]
    printer.close()
    state.close()


def test_the_grace_period_reads_the_shutdown_timeout_from_the_config_file(tmp_path: Path) -> None:
    """B13: --shutdown-timeout in vLLM's --config file was ignored (30 s instead of 130 s)."""

    config = tmp_path / "serve.yaml"
    config.write_text("port: 8123\nshutdown-timeout: 120\n")
    sup = Supervisor.__new__(Supervisor)
    sup._settings = settings.load({"state_dir": str(tmp_path)})
    assert sup._grace_s(vllm_config.flags(("--shutdown-timeout", "120"))) == 130.0
    assert sup._grace_s(vllm_config.flags(("--config", str(config)))) == 130.0
    assert sup._grace_s(vllm_config.flags(("--config", str(config), "--shutdown-timeout", "50"))) == 60.0


def test_a_changed_config_file_is_another_key(tmp_path: Path) -> None:
    """The key hashed the command line only: a new --config file got the old file's flags back."""
    config = tmp_path / "serve.yaml"
    config.write_text("limit_mm_per_prompt: {image: 4}\n")
    user = ["--config", str(config)]
    remember(tmp_path, user, [["set", "--max-model-len", "4096"]])
    config.write_text("limit_mm_per_prompt: {image: 1}\n")
    assert started_with(tmp_path, user) == f"serve m --config {config}"


def test_a_remembered_edit_that_names_no_flag_is_set_aside(tmp_path: Path) -> None:
    user = ["--max-model-len", "8192"]
    key = remember(tmp_path, user, [["set", "max-model-len", "4096"], ["set", "", None]])
    assert started_with(tmp_path, user) == "serve m --max-model-len 8192"
    assert key not in json.loads((tmp_path / "state" / KNOWN_GOOD).read_text())


FIXTURES = Path(__file__).parent / "diagnosis/fixtures"


async def test_undoing_a_refused_env_step_takes_its_variables_back(tmp_path: Path) -> None:
    """An undo relaunched with the same flags and the refused step's environment still set."""
    texts = [
        (FIXTURES / "oom_kv_cache/vllm-10439-v064-compose-no-cache-blocks.log").read_bytes(),
        (FIXTURES / "unsupported_dtype_or_quant/vllm-docker-37-bfloat16-tesla-t4.log").read_bytes(),
    ]
    envs: list[dict[str, str]] = []

    class Scripted(FakeLauncher):
        async def launch(
            self, argv: Sequence[str], env: Mapping[str, str], output: AttemptOutput
        ) -> VllmProcess:
            envs.append(dict(env))
            proc = await super().launch(argv, env, output)
            if len(self.launched) <= len(texts):
                output.feed(2, texts[len(self.launched) - 1])
            return proc

    state = StateDir(tmp_path / "state")
    state.open()
    launcher = Scripted(
        [Script(ready_after_polls=None, exit_after_polls=1)] * 2 + [Script(ready_after_polls=1)]
    )
    printer = RecordingPrinter()

    async def no_sleep(_: float) -> None:
        pass

    world = World(
        launcher=launcher, probe_for=lambda _: FakeProbe(launcher, launcher.procs[-1]), state=state,
        printer=printer, sleep=no_sleep, rng=random.Random(0),
    )  # fmt: skip
    mine = Policy(
        "mine", ((FailureKind.OOM_KV_CACHE, (Step("env", env=(("VLLM_ATTENTION_BACKEND", "XFORMERS"),)),)),)
    )
    sup = Supervisor(
        settings.load({"state_dir": str(tmp_path / "state"), "health_interval_s": "0.001"}), program=["vllm"],
        model="m", user_args=("--max-model-len", "8192"), env={}, world=world, policy=mine,
    )  # fmt: skip
    run = asyncio.ensure_future(sup.run())
    await asyncio.wait_for(sup.ready_event(3).wait(), 20)
    sup.request_stop()
    await run
    assert [e.get("VLLM_ATTENTION_BACKEND") for e in envs] == [None, "XFORMERS", None]
    printer.close()
    state.close()
