"""The catalogue's NCCL, Hub, ModelScope, Ray, torch, triton, rocBLAS and Python phrases are the upstreams' own words.

upstream/*_errors.json are read from the upstreams by scripts/mine_upstream_errors.py: libnccl's
`ncclGetErrorString`, huggingface_hub's, transformers', Ray's and torch's source (and the strings in
their binaries), and CPython's errors provoked in a subprocess. A signature whose `source` cites one
of them (`ncclGetErrorString(N)`, `huggingface_hub <path>.py`, `transformers <path>.py`,
`ray <path>`, `torch <path>`, `triton <path>.py`, `modelscope <path>.py`, `urllib3 <path>.py`,
`libnccl strings`, `tokenizers strings`, `safetensors strings`, `rocblas <path>`, `python <what>`)
must have each of its needles in the cited text.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from vllm_guard.failures import CATALOGUE, FailureKind, Signature, classify

UPSTREAM = Path(__file__).resolve().parent / "upstream"


def _load(name: str) -> dict[str, Any]:
    table: dict[str, Any] = json.loads((UPSTREAM / name).read_text())
    return table


NCCL = _load("nccl_errors.json")
HF = _load("hf_hub_errors.json")
RAY = _load("ray_errors.json")
TORCH = _load("torch_errors.json")
TRITON = _load("triton_errors.json")
PYTHON = _load("python_errors.json")
ROCBLAS = _load("rocblas_errors.json")


def _source_texts(table: dict[str, Any]) -> dict[str, list[str]]:
    """A SourceTable's texts by the file (below the package) that holds them, classes included."""
    texts: dict[str, list[str]] = {
        path: [row["text"] for row in rows] for path, rows in table["files"].items()
    }
    for name, entry in table["classes"].items():
        for path in set(entry["defined_in"].values()):
            texts.setdefault(path, []).extend([name, *entry["bases"], entry["doc"]])
    return texts


def _torch_texts() -> dict[str, list[str]]:
    texts = _source_texts(TORCH["torch"])
    for path, lines in TORCH["python_lines"].items():
        texts.setdefault(path, []).extend(lines)
    texts.update(TORCH["libraries"])
    texts["gloo/transport/tcp/pair.cc"] = TORCH["gloo_strings"]
    for key, lines in TORCH["runtime"].items():  # cited by file, or by file#key
        texts[key] = lines
        texts.setdefault(key.partition("#")[0], []).extend(lines)
    return texts


def _ray_texts() -> dict[str, list[str]]:
    texts = _source_texts(RAY["ray"])
    texts["core/src/ray/raylet/raylet"] = [s for strings in RAY["raylet_strings"].values() for s in strings]
    for path, by_version in RAY["binary_strings"].items():
        texts.setdefault(path, []).extend(s for strings in by_version.values() for s in strings)
    return texts


def _python_text() -> str:
    signals = [f"{name} {entry['number']} {entry['strsignal']}" for name, entry in PYTHON["signals"].items()]
    provoked = [
        f"{name} {text}"
        for section in (
            "import_errors",
            "linker_errors",
            "argparse_errors",
            "socket_errors",
            "faulthandler",
            "validation_errors",
            "api_mismatch_errors",
            "spawn_errors",
        )
        for name, text in PYTHON[section].items()
    ]
    return "\n".join([*provoked, *signals])


TEXTS: dict[str, dict[str, list[str]]] = {
    "huggingface_hub": _source_texts(HF["huggingface_hub"]),
    "transformers": _source_texts(HF["transformers"]),
    "ray": _ray_texts(),
    "torch": _torch_texts(),
    "triton": {
        **_source_texts(TRITON["triton"]),
        "backends/nvidia/bin/ptxas": [t for texts in TRITON["ptxas_strings"].values() for t in texts],
    },
    "modelscope": _source_texts(HF["modelscope"]),
    "modelscope_hub": _source_texts(HF["modelscope_hub"]),
    "urllib3": _source_texts(HF["urllib3"]),
    "tokenizers": {"strings": [t for texts in HF["tokenizers"]["strings"].values() for t in texts]},
    "safetensors": {"strings": [t for texts in HF["safetensors"]["strings"].values() for t in texts]},
    "libnccl": {"strings": [s for strings in NCCL["library_strings"].values() for s in strings]},
    "rocblas": {
        ROCBLAS["source_file"]: [
            *(m for messages in ROCBLAS["source_messages"].values() for m in messages),
            *(s for strings in ROCBLAS["library_strings"].values() for s in strings),
        ]
    },
}


def _all(package: str) -> str:
    return "\n".join(text for texts in TEXTS[package].values() for text in texts)


# --- what the catalogue needs is in the tables ---


def test_nccl_results_are_libnccls_words() -> None:
    assert set(NCCL["libraries"].values()) >= {"2.21.5"}
    wanted = {
        "1": ("ncclUnhandledCudaError", "unhandled cuda error"),
        "2": ("ncclSystemError", "unhandled system error"),
        "3": ("ncclInternalError", "internal error"),
        "4": ("ncclInvalidArgument", "invalid argument"),
        "5": ("ncclInvalidUsage", "invalid usage"),
        "6": ("ncclRemoteError", "remote process exited or there was a network error"),
    }
    for code, (name, words) in wanted.items():
        entry = NCCL["results"][code]
        assert entry["name"] == name
        assert len(entry["strings"]) == len(NCCL["libraries"])  # every library has it
        assert all(text.startswith(words) for text in entry["strings"].values()), entry


def test_hub_messages_are_huggingface_hubs_words() -> None:
    hub = _all("huggingface_hub")
    for words in (
        "Cannot access gated repo for url",
        "Repository Not Found for url",
        "Client Error.",
        "Repo id must be in the form 'repo_name' or 'namespace/repo_name'",
        "Repo id must use alphanumeric chars",
        "Cannot find an appropriate cached snapshot folder",
        "An error happened while trying to locate the file on the Hub",
        "Connection error, and we cannot find the requested files in the cached path",  # 0.20
        "We also cannot find the requested files in the local cache",  # 2.x
        "is restricted and you are not in the authorized list",  # the Hub's own words, in a docstring
    ):
        assert words in hub, words
    classes = HF["huggingface_hub"]["classes"]
    assert classes["GatedRepoError"]["bases"] == ["RepositoryNotFoundError"]
    assert "HfHubHTTPError" in classes["RepositoryNotFoundError"]["bases"]
    assert {"LocalEntryNotFoundError", "HFValidationError", "RevisionNotFoundError"} <= set(classes)


def test_hub_messages_are_transformers_words() -> None:
    words_by_file = {
        "utils/hub.py": (
            "is not a local folder and is not a valid model identifier",
            "You are trying to access a gated repo",
            "We couldn't connect to",
            "does not appear to have a file named",
        ),
        "dynamic_module_utils.py": (
            "contains custom code which must be executed",
            "requires you to execute the configuration file",  # 4.36
            "trust_remote_code=True",
        ),
    }
    for path, phrases in words_by_file.items():
        text = "\n".join(TEXTS["transformers"][path])
        for words in phrases:
            assert words in text, (path, words)


def test_ray_messages_are_rays_words() -> None:
    exceptions = "\n".join(TEXTS["ray"]["exceptions.py"])
    for words in (
        "The actor died unexpectedly before finishing this task",
        "The actor died because of an error raised in its creation task",
        "The worker died unexpectedly while executing this task",
        "The local object store is full",
    ):
        assert words in exceptions, words
    assert any(
        "/dev/shm because /dev/shm has only {} bytes available" in t
        for t in TEXTS["ray"]["_private/services.py"]
    )
    assert "low on memory" in "\n".join(TEXTS["ray"]["core/src/ray/raylet/raylet"])
    classes = RAY["ray"]["classes"]
    assert classes["ActorDiedError"]["bases"] == ["RayActorError"]
    assert {"OutOfMemoryError", "ObjectStoreFullError", "RaySystemError", "WorkerCrashedError"} <= set(
        classes
    )


def test_torch_wording_is_torchs() -> None:
    assert any("CUDA error: " in text for text in TEXTS["torch"]["cuda/memory.py"])
    assert any("OutOfMemoryError" in line for line in TEXTS["torch"]["cuda/__init__.py"])
    assert "No CUDA GPUs are available" in TEXTS["torch"]["lib/libtorch_cpu.so"]
    # the C++ CUDA OOM wording, from real runs on an H100 (the CPU wheel has no c10/cuda)
    oom = "\n".join(TEXTS["torch"]["gpu/h100-probe.json"])
    assert "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate" in oom
    assert "GPU 0 has a total capacity of" in oom


def test_the_linker_missing_the_drivers_library_is_a_driver_failure() -> None:
    # As triton's launcher build shows it (vLLM prints the compiler's stderr, then dies).
    said = PYTHON["linker_errors"]
    assert set(said) == {"-lcuda", "-l:libcuda.so.1"}
    for line in said.values():
        assert (
            classify(
                [
                    line,
                    "subprocess.CalledProcessError: Command '['/usr/bin/gcc', ...]' returned non-zero exit status 1.",
                ]
            ).kind
            == FailureKind.CUDA_DRIVER
        )


def test_triton_and_modelscope_wording_is_theirs() -> None:
    driver = "\n".join(TEXTS["triton"]["backends/nvidia/driver.py"])
    assert "libcuda.so cannot found!" in driver
    api = "\n".join(TEXTS["modelscope"]["hub/api.py"])
    assert "has no revision" in api
    assert "NotExistError" in TEXTS["modelscope"]["hub/errors.py"]
    assert "NotExistError" in TEXTS["modelscope_hub"]["errors.py"]


def test_a_version_that_does_not_fit_the_model_is_named_from_the_upstreams_words() -> None:
    # Each line as the upstream's own text makes it, its placeholders filled.
    configuration = next(
        t for t in TEXTS["transformers"]["models/auto/configuration_auto.py"] if "does not recognize" in t
    )
    unknown_type = (
        "ValueError: " + configuration.replace("{config_dict['model_type']}", "qwen3").splitlines()[0]
    )
    assert classify([unknown_type]).kind == FailureKind.BROKEN_INSTALL
    cpu_torch = next(t for t in TEXTS["torch"]["cuda/__init__.py"] if "not compiled with CUDA" in t)
    assert classify([f"AssertionError: {cpu_torch}"]).kind == FailureKind.BROKEN_INSTALL
    # serde names the enum after its words; which one depends on the part of tokenizer.json
    enum = re.search(r"untagged enum ([A-Z][a-z]+[A-Z]?[a-z]*)", " ".join(TEXTS["tokenizers"]["strings"]))
    assert enum is not None
    newer_json = (
        f"Exception: data did not match any variant of untagged enum {enum.group(1)} at line 1 column 9"
    )
    assert classify([newer_json]).kind == FailureKind.BROKEN_INSTALL
    header = next(t for t in TEXTS["safetensors"]["strings"] if "deserializing header" in t)
    assert "Error while deserializing header: " in header
    pointer = "safetensors_rust.SafetensorError: Error while deserializing header: HeaderTooLarge"
    assert classify([pointer]).kind == FailureKind.MODEL_NOT_FOUND


def test_rocblas_wording_is_rocblas() -> None:
    # rocBLAS 5.7 and later name the GPU architecture its build has no kernels for; a build that
    # keeps one library file for all only says the file is not there.
    messages = ROCBLAS["source_messages"]
    assert "rocBLAS error: Cannot read {}: {} for GPU arch : {}" in messages["rocm-5.7.0"]
    assert "rocBLAS error: Cannot read {}: {}" in messages["rocm-5.5.0"]
    no_arch = "rocBLAS error: Cannot read /opt/rocm/lib/rocblas/library/TensileLibrary.dat: No such file or directory"
    assert classify([no_arch]).kind == FailureKind.BROKEN_INSTALL
    assert classify([f"{no_arch} for GPU arch : gfx1150"]).kind == FailureKind.CUDA_DRIVER
    assert classify([messages["HEAD"][0]]).kind == FailureKind.CUDA_DRIVER  # no devices found
    # every release tag yields its messages (3.3.0 wrote with fprintf, the later ones stream), and
    # the catalogue's citations name the first release that has each wording
    assert all(messages[tag] and all(messages[tag]) for tag in messages), messages
    assert messages["rocm-3.3.0"] == ["rocBLAS error: Cannot read {}: {}"]
    devices = "rocBLAS error: Could not initialize Tensile host: No devices found"
    assert next(tag for tag in messages if devices in messages[tag]) == "rocm-3.7.0"
    cited = {s.needle: s.source for s in CATALOGUE if "rocblas" in s.needle or "tensile" in s.needle}
    assert "rocm-3.7.0 on" in cited["could not initialize tensile host: no devices found"]
    assert "rocm-3.3.0 on" in cited["rocblas error: cannot read"]


def test_cxx_messages_reads_streams_and_printf_calls_with_separators_in_their_literals() -> None:
    spec = importlib.util.spec_from_file_location(
        "miner", Path(__file__).resolve().parents[2] / "scripts" / "mine_upstream_errors.py"
    )
    assert spec is not None and spec.loader is not None
    miner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(miner)
    source = """
        // rocBLAS error handling below
        char quote = '"'; /* see rocBLAS error; */
        if(x) { rocblas_cerr << "rocBLAS error: a; b {c}" << path << ": " << strerror(errno) << std::endl; }
        fprintf(stderr, "\\nrocBLAS error: Cannot read %s: " "%m (100%%)\\n", path.c_str());
    """
    assert miner.cxx_messages(source, "rocBLAS error") == [
        "rocBLAS error: a; b {c}{}: {}",
        "rocBLAS error: Cannot read {}: {} (100%)",
    ]


def test_python_wording_is_cpythons_and_the_c_librarys() -> None:
    errors = PYTHON["import_errors"]
    assert errors["ModuleNotFoundError"].startswith("ModuleNotFoundError: No module named '")
    assert errors["ImportError (name)"].startswith("ImportError: cannot import name '")
    assert "undefined symbol: " in errors["ImportError (undefined symbol)"]
    assert (
        "cannot open shared object file: No such file or directory" in errors["ImportError (missing library)"]
    )
    signals = PYTHON["signals"]
    for name, number, words in (
        ("SIGKILL", 9, "Killed"),
        ("SIGBUS", 7, "Bus error"),
        ("SIGSEGV", 11, "Segmentation fault"),
        ("SIGABRT", 6, "Aborted"),
    ):
        assert (signals[name]["number"], signals[name]["strsignal"]) == (number, words)


# --- every catalogue signature citing a table has its needle in it ---


class Citation(NamedTuple):
    table: str  # nccl, libnccl (its strings), huggingface_hub, transformers, urllib3, ray, torch, triton, modelscope(_hub), rocblas, python
    what: str  # a result code, a path below the package, or the thing Python raises


CITATION = re.compile(
    r"ncclGetErrorString\((?P<codes>[\d., ]+)\)"
    r"|(?<![\w.`/-])(?P<package>huggingface_hub|transformers|ray|torch|triton|modelscope_hub|modelscope|urllib3|libnccl|tokenizers|safetensors|rocblas)"
    r"[ /](?P<path>\w[\w./#-]*\w)"
    r"|(?<![\w.`/-])python (?P<what>[A-Za-z_][\w.()]*)"
)


def _codes(cited: str) -> list[str]:
    """`2, 6` and `1..3` as the codes they name."""
    out: list[str] = []
    for part in re.split(r",\s*", cited.strip(", ")):
        low, _, high = part.partition("..")
        out += [str(code) for code in range(int(low), int(high or low) + 1)]
    return out


def citations(source: str) -> list[Citation]:
    found: list[Citation] = []
    for match in CITATION.finditer(source):
        if match["codes"]:
            found += [Citation("nccl", code) for code in _codes(match["codes"])]
        elif match["package"]:
            path = match["path"].removeprefix(match["package"] + "/")
            # `torch OOM`, `transformers OSError`: prose, not a path
            if "/" in path or re.search(r"\.(py|so|json)\b", path) or path == "strings":
                found.append(Citation(match["package"], path))
        else:
            what = match["what"]
            while what.count(")") > what.count("("):  # `(python ModuleNotFoundError)`
                what = what[:-1]
            found.append(Citation("python", what))
    return found


@pytest.mark.parametrize(
    "signature",
    [s for s in CATALOGUE if len(s.needles) > 1 and any(c.table != "nccl" for c in citations(s.source))],
    ids=lambda s: s.needle,
)
def test_each_alternative_needle_is_in_a_text_the_signature_cites(signature: Signature) -> None:
    cited = "\n".join(_cited_text(c) for c in citations(signature.source) if c.table != "nccl").lower()
    for needle in signature.needles:
        assert needle in cited, (needle, signature.source)


def test_citations_are_read_in_each_form() -> None:
    source = (
        "ncclGetErrorString(2, 6) and ncclGetErrorString(1..3); huggingface_hub utils/_http.py; "
        "huggingface_hub/utils/_validators.py (real-cpu fail_b); transformers utils/hub.py; "
        "ray _private/services.py; torch gpu/h100-probe.json; torch lib/libtorch_cpu.so; "
        "python ModuleNotFoundError; (python strsignal(SIGBUS))"
    )
    assert citations(source) == [
        *(Citation("nccl", code) for code in ("2", "6", "1", "2", "3")),
        Citation("huggingface_hub", "utils/_http.py"),
        Citation("huggingface_hub", "utils/_validators.py"),
        Citation("transformers", "utils/hub.py"),
        Citation("ray", "_private/services.py"),
        Citation("torch", "gpu/h100-probe.json"),
        Citation("torch", "lib/libtorch_cpu.so"),
        Citation("python", "ModuleNotFoundError"),
        Citation("python", "strsignal(SIGBUS)"),
    ]
    # prose that only names a package is no citation
    assert citations("torch OOM, both wordings; transformers OSError; `python -m` of; Ray (facts.md)") == []


CITED = [(signature, citation) for signature in CATALOGUE for citation in citations(signature.source)]


def _cited_text(citation: Citation) -> str:
    if citation.table == "nccl":
        assert citation.what in NCCL["results"], f"NCCL has no result {citation.what}"
        return "\n".join(NCCL["results"][citation.what]["strings"].values())
    if citation.table == "python":
        return _python_text()
    texts = TEXTS[citation.table]
    assert citation.what in texts, (
        f"{citation.table} {citation.what} is not in the mined table: add it to scripts/mine_upstream_errors.py"
    )
    return "\n".join(texts[citation.what])


@pytest.mark.parametrize(
    ("signature", "citation"),
    # Empty while no signature cites these tables: pytest then reports this test as skipped.
    CITED,
    ids=[f"{c.table}:{c.what}:{s.needle}" for s, c in CITED],
)
def test_each_cited_phrase_is_in_the_upstream_table(signature: Signature, citation: Citation) -> None:
    text = _cited_text(citation)
    if citation.table != "nccl":  # NCCL's string comes after the wrapper's words, checked below
        # a signature with several needles may cite one text per alternative (see the test below)
        assert any(needle in text.lower() for needle in signature.needles), (signature.needles, citation)
    if citation.table == "nccl":
        # as torch (ProcessGroupNCCL) and vLLM's pynccl wrapper put the string in a line
        lines = [
            f"torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1, {words}, NCCL version {v}"
            for v, words in NCCL["results"][citation.what]["strings"].items()
        ] + [
            f"RuntimeError: NCCL error: {words}"
            for words in NCCL["results"][citation.what]["strings"].values()
        ]
        assert any(signature.pattern.search(line) for line in lines), (signature.pattern.pattern, citation)
        assert all(signature.needle in line.lower() for line in lines), (signature.needle, citation)


# What each upstream exception class is, as `classify()` must read its name alone. A phrase that
# matches a class it was not written for (LocalEntryNotFoundError holds EntryNotFoundError, Ray's
# OutOfMemoryError is the host's memory) shows up here as an unexpected row.
CLASS_KINDS = {
    ("huggingface_hub", "EntryNotFoundError"): "model_not_found",
    ("huggingface_hub", "GatedRepoError"): "hf_auth",
    ("huggingface_hub", "RevisionNotFoundError"): "model_not_found",
    ("modelscope", "NotExistError"): "model_not_found",
    ("modelscope_hub", "NotExistError"): "model_not_found",
    ("ray", "ActorDiedError"): "ray_actor_died",
    ("ray", "RayActorError"): "ray_actor_died",
    ("ray", "RayChannelTimeoutError"): "collective_timeout",
    ("urllib3", "ConnectTimeoutError"): "hub_unreachable",
    ("urllib3", "NameResolutionError"): "hub_unreachable",
    ("urllib3", "NewConnectionError"): "hub_unreachable",
}


def test_each_upstream_exception_class_alone_is_read_as_what_it_is() -> None:
    read = {}
    for package, module, table in (  # the module each package's exceptions print under
        ("huggingface_hub", "huggingface_hub.errors", HF["huggingface_hub"]),
        ("transformers", "transformers", HF["transformers"]),
        ("modelscope", "modelscope.hub.errors", HF["modelscope"]),
        ("modelscope_hub", "modelscope_hub.errors", HF["modelscope_hub"]),
        ("urllib3", "urllib3.exceptions", HF["urllib3"]),
        ("ray", "ray.exceptions", RAY["ray"]),
        ("torch", "torch", TORCH["torch"]),
    ):
        for name in table["classes"]:
            kind = classify([f"{module}.{name}: see above"]).kind.value
            if kind != "unknown":
                read[(package, name)] = kind
    # torch's own OutOfMemoryError is the GPU's, whatever phase: it has a test of its own
    read.pop(("torch", "OutOfMemoryError"), None)
    assert read == CLASS_KINDS
