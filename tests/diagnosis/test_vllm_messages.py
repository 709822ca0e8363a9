"""The failure messages vLLM raises and logs, mined from its own source, and the catalogue's phrases
that cite a vLLM file held against the messages of that file.

upstream/vllm_messages.json is written by scripts/mine_vllm_messages.py from the sdist (or wheel) of every
release since 0.4.1; the extractor is tested here on small inline sources.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from vllm_guard.failures import CATALOGUE, Signature

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parents[1] / "scripts" / "mine_vllm_messages.py"
DATA = HERE / "upstream" / "vllm_messages.json"


def _load_miner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mine_vllm_messages", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["mine_vllm_messages"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


miner = _load_miner()


# ---- the extractor ----------------------------------------------------------------------------

SOURCE = """
import logging

logger = logging.getLogger(__name__)


class KVCacheError(RuntimeError):
    pass


def check(max_model_len, free, total, err):
    if free < total:
        raise ValueError(
            f"Free memory on device ({free:.2f}/{total:.2f} GiB) on startup "
            "is less than desired GPU memory utilization."
        )
    raise RuntimeError("max_model_len " + str(max_model_len) + " is too large")
    raise ValueError("block size %d is not one of %s" % (max_model_len, [8, 16]))
    raise ValueError("Unknown load format {}. Choose one of {!r}; {{braces}}".format(err, total))
    logger.exception("Engine core %s died; 100%% sure", "proc")
    logger.error("100% literal without arguments")
    raise KVCacheError("No available memory for the cache blocks.") from err
    raise ValueError(err)
    raise RuntimeError(str(err))
    msg = f"Sampler warm-up failed for {max_model_len} tokens"
    raise RuntimeError(msg)
    detail = f"User-specified max_model_len ({max_model_len}) is greater than the derived one."
    raise ValueError(f"{detail} To allow overriding this maximum, set {err!r}")
    logger.warning("a warning is not a failure")
    raise self._error("built by a helper: no class to name")
    assert total % free == 0, f"{total} is not divisible by {free}"
    assert free > 0


class Worker:
    def start(self):
        def inner():
            raise TimeoutError("Timed out waiting for worker {}".format(self))

        class Local:
            def run(self):
                logger.critical("Worker died: " + repr(self))

        return inner, Local
"""


def test_extracts_every_form_of_message() -> None:
    found = {(m.call, m.template) for m in miner.messages_in(SOURCE, "vllm/x.py")}
    assert found == {
        # f-string fields and implicit concatenation
        (
            "raise ValueError",
            "Free memory on device ({}/{} GiB) on startup is less than desired GPU memory utilization.",
        ),
        ("raise RuntimeError", "max_model_len {} is too large"),  # + with non-string operands
        ("raise ValueError", "block size {} is not one of {}"),  # % formatting
        ("raise ValueError", "Unknown load format {}. Choose one of {}; {braces}"),  # .format
        ("logger.exception", "Engine core {} died; 100% sure"),  # logging's own % arguments
        ("logger.error", "100% literal without arguments"),  # no arguments: no % formatting
        ("raise KVCacheError", "No available memory for the cache blocks."),  # a custom class
        ("raise RuntimeError", "Sampler warm-up failed for {} tokens"),  # a local assigned once
        # ... and inlined where an f-string uses it
        (
            "raise ValueError",
            "User-specified max_model_len ({}) is greater than the derived one. "
            "To allow overriding this maximum, set {}",
        ),
        ("raise TimeoutError", "Timed out waiting for worker {}"),  # a nested function
        ("logger.critical", "Worker died: {}"),  # a method of a class inside a method
        ("assert", "{} is not divisible by {}"),  # an assert's message (one without none)
    }


def test_skips_messages_that_are_not_strings() -> None:
    templates = {m.template for m in miner.messages_in(SOURCE, "vllm/x.py")}
    # `raise ValueError(err)` (a parameter) and `raise RuntimeError(str(err))` give nothing
    assert not any(t in {"{}", ""} for t in templates)
    assert not any("warning" in t or "helper" in t for t in templates)


def test_a_variable_assigned_twice_is_not_resolved() -> None:
    source = 'def f(x):\n    msg = "a"\n    if x:\n        msg = "b"\n    raise ValueError(msg)\n'
    assert miner.messages_in(source, "vllm/x.py") == set()


def test_paths_inside_the_package() -> None:
    assert miner.package_path("vllm-0.5.5/vllm/worker/worker.py") == "vllm/worker/worker.py"
    assert miner.package_path("vllm/v1/core/kv_cache_utils.py") == "vllm/v1/core/kv_cache_utils.py"
    assert miner.package_path("vllm-0.5.5/tests/test_x.py") is None
    assert miner.package_path("vllm/benchmarks/serve.py") is None
    assert miner.package_path("vllm-0.5.5/setup.py") is None
    assert miner.package_path("vllm/csrc/x.cu") is None


def test_version_runs_round_trip() -> None:
    mined = ["0.5.5", "0.6.6.post1", "0.7.3", "0.8.5.post1", "0.9.2"]
    have = {"0.5.5", "0.6.6.post1", "0.8.5.post1"}
    runs = miner.compress(have, mined)
    assert runs == ["0.5.5-0.6.6.post1", "0.8.5.post1"]
    assert set(miner.expand(runs, mined)) == have


def test_coverage_tries_the_template_with_zeros() -> None:
    pattern = re.compile(r"max seq len \((\d+)\)", re.IGNORECASE)
    assert miner.covered("the model's max seq len ({}) is larger", "max seq len", pattern)
    assert not miner.covered("the model's max  length ({})", "max seq len", pattern)


# ---- the mined data ---------------------------------------------------------------------------

_DATA = json.loads(DATA.read_text())
ROWS: list[dict[str, object]] = [dict(zip(_DATA["columns"], row, strict=True)) for row in _DATA["messages"]]
BY_PATH: dict[str, list[str]] = {}
for _row in ROWS:
    BY_PATH.setdefault(str(_row["path"]), []).append(miner.normal(str(_row["template"])))

CITED = [
    (signature, path)
    for signature in CATALOGUE
    for path in sorted(set(re.findall(r"\bvllm/[\w/]+\.py\b", signature.source)))
]


def test_the_data_covers_the_releases() -> None:
    mined: list[str] = _DATA["mined"]
    assert any(v.startswith("0.5.") for v in mined)
    assert any(v.startswith("0.33.") for v in mined)
    assert len(ROWS) > 1000
    assert all(row["path"] in BY_PATH and str(row["path"]).startswith("vllm/") for row in ROWS)


def test_the_catalogue_cites_vllm_files() -> None:
    assert len({path for _, path in CITED}) >= 10


@pytest.mark.parametrize(("signature", "path"), CITED, ids=[f"{p}:{s.needle}" for s, p in CITED])
def test_each_cited_vllm_file_says_the_phrase(signature: Signature, path: str) -> None:
    assert path in BY_PATH, f"{path} has no mined message in any release"
    # a signature with several needles: the file says at least one of them
    assert any(n in template for n in signature.needles for template in BY_PATH[path]), (
        path,
        signature.needle,
    )


# What a placeholder may hold, tried in turn: a number, a word, a list of names, a quoted name.
_FILLS = ("0", "x", "['Foo']", "'foo'", "1.0", "`x`")
PRINTED: dict[str, list[str]] = {}
for _row in ROWS:
    _text = miner.normal(str(_row["template"]))
    _raised = "AssertionError" if _row["call"] == "assert" else str(_row["call"]).removeprefix("raise ")
    # a raised message is printed after its exception's name (an assert's after AssertionError)
    PRINTED.setdefault(str(_row["path"]), []).extend([_text, f"{_raised}: {_text}"])


@pytest.mark.parametrize(("signature", "path"), CITED, ids=[f"{p}:{s.needle}" for s, p in CITED])
def test_each_cited_vllm_file_prints_a_line_the_phrase_matches(signature: Signature, path: str) -> None:
    # The needle alone could sit in another sentence: the whole pattern must match one of the
    # file's messages as vLLM prints it, its placeholders filled.
    printed = [t for t in PRINTED.get(path, []) if any(n in t for n in signature.needles)]
    assert any(signature.pattern.search(t.replace("{}", fill)) for t in printed for fill in _FILLS), (
        path,
        signature.pattern.pattern,
    )


def test_uncovered_leaves_out_what_a_signature_or_a_refusal_of_the_table_names() -> None:
    named = miner.Message(
        "vllm/worker/worker.py", "raise RuntimeError", "No available memory for the cache blocks."
    )
    refused = miner.Message(
        "vllm/config/vllm.py", "raise ValueError", "max_num_scheduled_tokens is set to {}, which is bad"
    )
    new = miner.Message("vllm/config/vllm.py", "raise ValueError", "A sentence no table has: {}")
    table = {named: {"0.30.0"}, refused: {"0.30.0"}, new: {"0.30.0"}}
    refusals = [("max_num_scheduled_tokens is set to", "vllm/config/vllm.py", "0.30.0")]
    assert [m for m, _ in miner.uncovered(table, None, refusals=refusals)] == [new]
    assert [m for m, _ in miner.uncovered(table, None, refusals=())] == [new, refused]


def test_a_signature_of_several_needles_covers_a_message_any_of_them_names() -> None:
    pattern = re.compile(r"No free blocks available|No usable cache memory left")
    assert miner.covered("No usable cache memory left", "no free blocks|no usable cache memory left", pattern)
    assert not miner.covered("Something else", "no free blocks|no usable cache memory left", pattern)


def test_the_review_splits_off_what_the_raise_rule_names_and_shows_the_ones_that_read_recoverable() -> None:
    refusal = miner.Message("vllm/config/x.py", "raise ValueError", "--foo must be positive")
    memory = miner.Message("vllm/v1/x.py", "raise ValueError", "Insufficient memory")
    logged = miner.Message("vllm/v1/x.py", "logger.error", "Engine fell over: {}")
    unnamed, to_check, named = miner.split_by_rule(
        [(refusal, {"0.30.0"}), (memory, {"0.30.0"}), (logged, {"0.30.0"})]
    )
    assert [m for m, _ in unnamed] == [logged]
    assert [m for m, _ in to_check] == [memory]
    assert named == 1
