"""The Hugging Face home, hub cache and token: one answer for the model's files, the free disk and the
token check, and the same answer as huggingface_hub's own rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_guard import hf_hub, serve_preflight
from vllm_guard.facts import GpuFacts

pytestmark = pytest.mark.timeout(60)

CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2}


def cache_a_model(cache: Path, repo: str = "org/name") -> None:
    snapshot = cache / ("models--" + repo.replace("/", "--")) / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps(CONFIG))
    (cache / ("models--" + repo.replace("/", "--")) / "refs").mkdir()
    (cache / ("models--" + repo.replace("/", "--")) / "refs" / "main").write_text("abc")


def test_the_model_the_disk_and_the_token_are_looked_for_in_one_home(tmp_path: Path) -> None:
    # The review's B18: HF_HOME="~/hf" with vLLM's HOME given. The model's files were looked for under
    # the guard's own home, the free disk in a literal "~" under the cwd, and the token a third way.
    home = tmp_path / "svc"
    cache_a_model(home / "hf" / "hub")
    (home / "hf" / "token").write_text("hf_stored\n")
    env = {"HF_HOME": "~/hf", "HOME": str(home)}
    gpus = GpuFacts((), None, None, "no GPU here", "test")
    facts, machine = serve_preflight.gather("org/name", ["--uds", str(tmp_path / "sock")], env, gpus)
    assert facts.cached and facts.config == CONFIG
    assert machine.disk_dir == str(home / "hf" / "hub")
    assert machine.token


def test_a_token_on_vllms_command_line_counts_too(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    gpus = GpuFacts((), None, None, "no GPU here", "test")
    uds = ["--uds", str(tmp_path / "sock")]
    assert not serve_preflight.gather("org/name", uds, env, gpus)[1].token
    assert serve_preflight.gather("org/name", [*uds, "--hf-token", "hf_x"], env, gpus)[1].token


def test_the_download_dir_wins_then_hf_hub_cache_then_hf_home(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "HF_HOME": "/hf", "HF_HUB_CACHE": "/cache"}
    assert hf_hub.hub_cache(env, "/models") == Path("/models")
    assert hf_hub.hub_cache({**env, "HOME": str(tmp_path)}, "~/models") == tmp_path / "models"  # vLLM's ~
    assert hf_hub.hub_cache(env) == Path("/cache")
    assert hf_hub.hub_cache({"HOME": str(tmp_path), "HF_HOME": "/hf"}) == Path("/hf/hub")
    assert hf_hub.hub_cache({"HOME": str(tmp_path)}) == tmp_path / ".cache" / "huggingface" / "hub"


def test_an_environment_other_than_the_guards_gets_its_own_answer(tmp_path: Path) -> None:
    # Whatever the guard's own HOME (and whether huggingface_hub is importable), vLLM's counts.
    assert hf_hub.paths({"HOME": str(tmp_path)}) == hf_hub.HubPaths(
        tmp_path / ".cache" / "huggingface",
        tmp_path / ".cache" / "huggingface" / "hub",
        tmp_path / ".cache" / "huggingface" / "token",
    )


def test_the_token_comes_from_the_environment_then_the_token_file(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    stored = tmp_path / ".cache" / "huggingface" / "token"
    assert hf_hub.token(home) is None
    stored.parent.mkdir(parents=True)
    stored.write_text("hf_file\n")
    assert hf_hub.token(home) == "hf_file"
    assert hf_hub.token({**home, "HF_TOKEN": "hf_env"}) == "hf_env"
    assert hf_hub.token({**home, "HUGGING_FACE_HUB_TOKEN": "hf_old"}) == "hf_old"
    # A blank HF_TOKEN hides the legacy name and falls through to the file, as in huggingface_hub.
    assert hf_hub.token({**home, "HF_TOKEN": " ", "HUGGING_FACE_HUB_TOKEN": "hf_old"}) == "hf_file"
    assert hf_hub.token({**home, "HF_TOKEN_PATH": str(tmp_path / "none")}) is None
    assert hf_hub.token({**home, "HF_TOKEN_PATH": "~/.cache/huggingface/token"}) == "hf_file"
    stored.write_bytes(b"\xff\xfe")
    assert hf_hub.token(home) is None  # unreadable is no token, never an error


# Environments that exercise every rule; $HOME and $ROOT stand for folders of the test's own.
CASES = [
    {},
    {"XDG_CACHE_HOME": "$ROOT/xdg"},
    {"XDG_CACHE_HOME": "~/xdg", "HF_HOME": "$ROOT/hfhome"},
    {"HF_HOME": "~/hf"},
    {"HF_HOME": "${ROOT}/hf", "HF_HUB_CACHE": "~/cache"},
    {"HUGGINGFACE_HUB_CACHE": "~/legacy"},
    {"HUGGINGFACE_HUB_CACHE": "$ROOT/legacy", "HF_HUB_CACHE": "$ROOT/new"},
    {"HF_TOKEN_PATH": "~/tok", "HF_HOME": "$ROOT/h"},
    {"HF_HOME": "$UNSET_VARIABLE/hf"},
    {"HF_HOME": ""},
    {"XDG_CACHE_HOME": ""},
]

# In one interpreter with huggingface_hub: for each case, its constants (re-read under that environment)
# and its token against the fallback's, computed without the library.
PARITY = """
import importlib, json, os, sys
from pathlib import Path
import huggingface_hub.constants as constants
from huggingface_hub import get_token
from vllm_guard import hf_hub
base = dict(os.environ)
out = []
for case in json.loads(sys.argv[1]):
    os.environ.clear()
    os.environ.update(base)
    for name in hf_hub.PATH_VARIABLES + hf_hub.TOKEN_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(case)
    importlib.reload(constants)
    fallback = hf_hub.fallback_paths(dict(os.environ))
    out.append({
        "library": [str(Path(p)) for p in (constants.HF_HOME, constants.HF_HUB_CACHE, constants.HF_TOKEN_PATH)]
        + [get_token()],
        "fallback": [str(fallback.home), str(fallback.cache), str(fallback.token_path), hf_hub.token(dict(os.environ))],
    })
print(json.dumps(out))
"""


def test_the_fallback_gives_huggingface_hubs_own_answers(tmp_path: Path) -> None:
    # huggingface_hub is in the dev extra: where it is missing the subprocess fails, and so does this.
    home, root = tmp_path / "home", tmp_path / "root"
    for token in (home / ".cache" / "huggingface" / "token", home / "tok", root / "h" / "token"):
        token.parent.mkdir(parents=True, exist_ok=True)
        token.write_text(f"hf_{token.parent.name}\n")
    base = {"HOME": str(home), "ROOT": str(root)}
    cases = [{**base, **case} for case in CASES]
    cases += [
        {**base, "HF_TOKEN": " ", "HUGGING_FACE_HUB_TOKEN": "hf_old"},
        {**base, "HUGGING_FACE_HUB_TOKEN": "x"},
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", PARITY, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    results = json.loads(done.stdout)
    for case, result in zip(cases, results, strict=True):
        assert result["fallback"] == result["library"], case
