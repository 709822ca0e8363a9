"""The catalogue's CUDA phrases are the CUDA runtime's own strings, and its phase reading holds for
an out-of-memory error that the excerpt shows only from the serving side.

upstream/cuda_runtime_errors.json is `cudaGetErrorName`/`cudaGetErrorString` of every cudaError
value, read from libcudart 11.8 and 12.9 by scripts/mine_cuda_errors.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vllm_guard.failures import CATALOGUE, FailureKind, Signature, classify

HERE = Path(__file__).resolve().parent
CUDA: dict[str, dict[str, object]] = json.loads((HERE / "upstream" / "cuda_runtime_errors.json").read_text())
SHARED = HERE.parents[2] / "shared" / "vllm"


def codes(cited: str) -> list[str]:
    """`901..908` and `35, 100, 209` as the codes they name."""
    out: list[str] = []
    for part in re.split(r",\s*", cited):
        low, _, high = part.partition("..")
        out += [str(code) for code in range(int(low), int(high or low) + 1)]
    return out


CITED = [
    (signature, call, code)
    for signature in CATALOGUE
    for call, cited in re.findall(r"(cudaGetError(?:String|Name))\(([\d., ]+)\)", signature.source)
    for code in codes(cited)
]


def test_the_catalogue_cites_the_cuda_table() -> None:
    assert {code for _, _, code in CITED} >= {"35", "100", "209", "803", "804", "900", "901", "905"}


@pytest.mark.parametrize(("signature", "call", "code"), CITED, ids=[f"{c}({n})" for _, c, n in CITED])
def test_each_cited_cuda_error_is_matched_as_the_runtime_words_it(
    signature: Signature, call: str, code: str
) -> None:
    entry = CUDA[code]
    assert isinstance(entry["strings"], dict)
    texts = (
        [str(entry["name"])] if call == "cudaGetErrorName" else [str(t) for t in entry["strings"].values()]
    )
    for text in texts:
        # as torch raises it: `RuntimeError: CUDA error: <string>`
        line = f"RuntimeError: CUDA error: {text}"
        assert any(needle in line.lower() for needle in signature.needles)
        assert signature.pattern.search(line), (code, text)


@pytest.mark.parametrize(
    ("code", "kind"),
    [("803", FailureKind.CUDA_DRIVER), ("804", FailureKind.CUDA_DRIVER), ("905", FailureKind.OOM_CUDA_GRAPH)],
)
def test_a_cuda_error_behind_a_container_prefix_gets_its_kind(code: str, kind: FailureKind) -> None:
    text = next(iter(CUDA[code]["strings"].values()))  # type: ignore[attr-defined]
    line = f"vllm-1  | RuntimeError: Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before calling NumCudaDevices() that might have already set an error? Error {code}: {text}"
    assert classify([line]).kind == kind


def test_an_oom_the_api_server_reports_while_serving_is_a_runtime_one() -> None:
    # The real torch OOM (an H100), then what vLLM 0.32's API server logs when its engine dies
    # under it while serving (real-cpu ok_run2_warmcache.log): no phase frame, no ready flag.
    probe = json.loads((SHARED / "gpu" / "h100-probe.json").read_text())
    oom = probe["torch_oom_stderr"].splitlines()
    served = (SHARED / "real-cpu" / "full" / "ok_run2_warmcache.log").read_text().splitlines()
    start = next(i for i, line in enumerate(served) if "output_handler failed" in line)
    handler = served[start : start + 8]
    assert classify(oom).kind == FailureKind.OOM_WEIGHTS  # nothing tells: the first phase
    assert classify(oom + handler).kind == FailureKind.OOM_RUNTIME


def test_nccls_words_for_a_cuda_call_out_of_memory_are_an_oom() -> None:
    # NCCL's WARN around the CUDA runtime's string for code 2, from both tables.
    nccl = json.loads((HERE / "upstream" / "nccl_errors.json").read_text())
    wrappers = {s for strings in nccl["library_strings"].values() for s in strings if "Cuda failure" in s}
    assert "Cuda failure '%s'" in wrappers
    said = next(iter(CUDA["2"]["strings"].values()))  # type: ignore[attr-defined]
    for wrapper in ("Cuda failure '%s'", "Cuda failure %d '%s'"):
        words = wrapper.replace("%d", "2").replace("%s", str(said))
        assert classify([f"node:1:1 [0] enqueue.cc:267 NCCL WARN {words}"]).kind == FailureKind.OOM_WEIGHTS
    other = "Cuda failure '%s'".replace("%s", str(next(iter(CUDA["1"]["strings"].values()))))  # type: ignore[attr-defined]
    assert classify([f"NCCL WARN {other}"]).kind != FailureKind.OOM_WEIGHTS
