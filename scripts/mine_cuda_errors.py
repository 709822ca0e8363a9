"""The CUDA runtime's error table, from the runtime itself: `cudaGetErrorName` and
`cudaGetErrorString` of every `cudaError` value, read from libcudart of each wheel on PyPI.

vLLM's CUDA failures reach its log as torch's `CUDA error: <cudaGetErrorString(code)>` (or as the
name in CUDA-graph code), so these strings, not the logs that happen to show them, are what the
catalogue in vllm_guard/failures.py matches. No GPU or driver is needed: both calls are lookups.

    python scripts/mine_cuda_errors.py [--out tests/diagnosis/upstream/cuda_runtime_errors.json]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

# One wheel per CUDA major that vLLM has been built for (cu11 up to vLLM 0.4, cu12 since).
WHEELS = ("nvidia-cuda-runtime-cu11", "nvidia-cuda-runtime-cu12")
CODES = range(0, 1100)  # cudaError values are below 1000, but for cudaErrorUnknown (999)
OUT = Path(__file__).resolve().parent.parent / "tests" / "diagnosis" / "upstream" / "cuda_runtime_errors.json"


def read_table(library: Path) -> tuple[int, dict[int, tuple[str, str]]]:
    cudart = ctypes.CDLL(str(library))
    cudart.cudaGetErrorName.restype = ctypes.c_char_p
    cudart.cudaGetErrorString.restype = ctypes.c_char_p
    version = ctypes.c_int()
    cudart.cudaRuntimeGetVersion(ctypes.byref(version))
    table = {}
    for code in CODES:
        name = cudart.cudaGetErrorName(code).decode()
        # An undefined value reads as "unrecognized error code" (or Unknown): not a real entry.
        if (name.startswith("cudaErrorUnknown") and code != 999) or "unrecognized" in name:
            continue
        table[code] = (name, cudart.cudaGetErrorString(code).decode())
    return version.value, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    opts = parser.parse_args()
    merged: dict[int, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for wheel in WHEELS:
            where = Path(tmp) / wheel
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", wheel, "-d", str(where)],
                check=True,
            )
            archive = next(where.glob("*.whl"))
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(where)
            library = next(where.rglob("libcudart.so*"))
            version, table = read_table(library)
            # CUDA 11's runtime answers 0 without a driver; the wheel's version is the runtime's.
            runtime = (
                f"{version // 1000}.{version % 1000 // 10}"
                if version
                else ".".join(archive.name.split("-")[1].split(".")[:2])
            )
            print(f"{archive.name}: CUDA runtime {runtime}, {len(table)} error codes", file=sys.stderr)
            for code, (name, text) in table.items():
                entry = merged.setdefault(code, {"name": name, "strings": {}})
                entry["strings"][runtime] = text  # type: ignore[index]
    rows = {str(code): merged[code] for code in sorted(merged)}
    opts.out.write_text(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} codes to {opts.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
