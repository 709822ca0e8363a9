"""The other upstream tables vLLM's failures surface, each read from the upstream itself.

A vLLM that dies prints, at its root, words written by NCCL, huggingface_hub, transformers, Ray, torch
or CPython. The catalogue in vllm_guard/failures.py matches those words, so they are taken from the
upstream code, not from logs that happen to show them (scripts/mine_cuda_errors.py does the same for
the CUDA runtime). One function per table, each writing one JSON file:

- nccl_errors.json: `ncclGetErrorString(r)` of every ncclResult_t, read through ctypes from libnccl of
  the nvidia-nccl-cu11/cu12 wheels (libnccl links the CUDA runtime statically: no libcudart, no GPU),
  and the strings of libnccl that word a WARN naming a cause (/dev/shm segments, a CUDA call's error).
- hf_hub_errors.json: huggingface_hub's exception classes and message templates (an old, the last 0.x
  and the newest release), transformers' wording for the same failures and urllib3's exceptions
  under both, read with `ast`; the words compiled into tokenizers' and safetensors' Rust; and
  ModelScope's hub (VLLM_USE_MODELSCOPE=1 downloads from it), before and after its errors moved to
  the modelscope_hub package.
- triton_errors.json: triton's NVIDIA driver and launcher build (an old release of the vLLM 0.7
  era, when the launcher linked `-lcuda`, and the newest, which links `-l:libcuda.so.1`), and the
  words of the ptxas it bundles.
- ray_errors.json: ray/exceptions.py's classes and messages, the /dev/shm and version-mismatch
  messages in ray/_private/, and
  the strings of the raylet, the GCS server and _raylet.so that word the C++ side of the same failures
  (out of memory, /dev/shm, a dead worker or actor, a fatal signal).
- torch_errors.json: torch's Python-side CUDA wording, torchrun's report of a child that died, the
  strings in the CPU wheel's libraries, and those of the CUDA wheel's c10/cuda and libtorch_cuda
  (the driver and device-count errors, CUDA graph capture, the NCCL watchdog: words a CPU wheel has
  not got) and of the gloo its libtorch_cpu bundles (a peer that closed the connection); the H100
  probes in ../shared/vllm/gpu show the C++ CUDA OOM text as printed.
- rocblas_errors.json: what rocBLAS prints to stderr before it aborts (ROCm's BLAS, under torch's
  matrix products on AMD GPUs): the strings of librocblas.so in Debian's librocblas0 package, and
  the `rocblas_cerr`/`print_once` messages of library/src/tensile_host.cpp at each ROCm release tag
  of a rocBLAS git clone (`--rocblas-git DIR`; the per-architecture wording is in the source only).
- python_errors.json: CPython's import errors, provoked in a python3.11 subprocess (the undefined-symbol
  and missing-library shapes from two tiny extensions built with gcc), argparse's refusals, a taken
  port, faulthandler's banners, pydantic's validation title, the errors of a call into a package of
  another API version, a spawned process started by a script without the __main__ guard, the
  signal table, and what the
  linker says when triton's launcher asks it for the driver's library on a machine without one
  (provoked with gcc, in an empty sysroot so that a machine with a driver says the same).

PyPI is needed (pip download into a temporary directory; nothing is installed or imported), and for
rocBLAS Debian's archive and a clone of https://github.com/ROCm/rocBLAS:

    python scripts/mine_upstream_errors.py [--only nccl,hf_hub,ray,torch,triton,rocblas,python]
        [--out-dir DIR] [--rocblas-git DIR]
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import json
import lzma
import platform
import re
import signal
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from pydantic import ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "tests" / "diagnosis" / "upstream"
PROBES = ROOT.parent / "shared" / "vllm" / "gpu"

NCCL_WHEELS = ("nvidia-nccl-cu11", "nvidia-nccl-cu12")
# NCCL's own WARN lines (not result strings) that name a failure's cause.
NCCL_PHRASES = ("shared memory segment", "cuda failure")
# An old release (vLLM 0.3 era), the last before the httpx rewrite, and the newest.
HF_HUB_VERSIONS = ("0.20.3", "0.36.2", None)
HF_HUB_FILES = (
    "errors.py",
    "utils/_errors.py",
    "utils/_http.py",
    "utils/_validators.py",
    "file_download.py",
    "_snapshot_download.py",
)
# 4.36 still says "requires you to execute the configuration file" (dynamic_module_utils.py).
TRANSFORMERS_VERSIONS = ("4.36.2", "4.57.6", None)
TRANSFORMERS_FILES = (
    "utils/hub.py",
    "dynamic_module_utils.py",
    "models/auto/configuration_auto.py",
    "configuration_utils.py",
    "tokenization_utils_base.py",
    "modeling_gguf_pytorch_utils.py",
)
# 1.25 raises its own NotExistError in hub/api.py; the newest re-exports modelscope_hub's.
MODELSCOPE_VERSIONS = ("1.25.0", None)
MODELSCOPE_FILES = ("hub/errors.py", "hub/api.py", "hub/file_download.py", "hub/snapshot_download.py")
# The HTTP stack under huggingface_hub (requests, and httpx since 1.0, both on urllib3 or httpcore):
# urllib3's exception names are what a failed connection to the Hub prints.
URLLIB3_VERSIONS = ("1.26.20", None)
URLLIB3_FILES = ("exceptions.py",)
MODELSCOPE_HUB_VERSIONS = (None,)
TOKENIZERS_VERSIONS = ("0.15.2", None)
SAFETENSORS_VERSIONS = ("0.4.5", None)
MODELSCOPE_HUB_FILES = ("errors.py",)
# 3.1 is torch 2.5's (vLLM 0.7); the newest links the driver's library by its soname.
TRITON_VERSIONS = ("3.1.0", None)
TRITON_FILES = (
    "backends/nvidia/driver.py",
    "runtime/build.py",
    "common/build.py",
    "language/core.py",
    "language/semantic.py",
)
# triton bundles the ptxas it compiles with: its refusal of a GPU architecture newer than itself.
TRITON_PTXAS = "backends/nvidia/bin/ptxas"
PTXAS_PHRASES = ("is not defined for option", "ptxas fatal")
RAY_VERSIONS = ("2.9.3", None)
# ray/_private/ messages kept: /dev/shm too small, and a node whose Ray or Python is not the cluster's
RAY_PRIVATE_PHRASES = ("/dev/shm", "Version mismatch")
RAYLET_PHRASES = (
    "low on memory",
    "memory usage threshold",
    "/dev/shm",
    "exceeds memory available",
    "killed by the oom killer",
    "died or was killed",
    "received at time",
    "the actor is dead",
)
# Where Ray's C++ side words a death: the raylet, the GCS (an actor's death cause) and the core
# worker linked into every Ray process (its fatal-signal handler).
RAY_BINARIES = ("core/src/ray/raylet/raylet", "core/src/ray/gcs/gcs_server", "_raylet.so")
TORCH = "torch==2.13.0"
TORCH_PHRASES = (
    "out of memory",
    "tried to allocate",
    "cuda error",
    "total capacity",
    "nvidia driver",
    "no cuda gpus",
)
# PyPI's default Linux torch wheel is the CUDA build (~900 MB; only two of its libraries are read).
TORCH_CUDA = "torch==2.9.1"
TORCH_CUDA_LIBRARIES = ("torch/lib/libc10_cuda.so", "torch/lib/libtorch_cuda.so")
TORCH_CUDA_PHRASES = (
    *TORCH_PHRASES,
    "cuda unknown error",
    "cudagetdevicecount",
    "driver initialization",
    "capture",
    "watchdog caught",
)
# torchrun's (torch.distributed.elastic) report of a child that failed: its exit code or signal
TORCH_ELASTIC = (
    "distributed/elastic/multiprocessing/api.py",
    "distributed/elastic/multiprocessing/errors/__init__.py",
)
TORCH_ELASTIC_PHRASES = ("exitcode", "received by PID", "Root Cause")
# gloo's TCP transport (compiled into libtorch_cpu.so), whose words a dead peer reaches a rank in
GLOO_PAIR = "gloo/transport/tcp/pair.cc"
GLOO_PHRASES = (
    "Read error",
    "Write error",
    "Connection closed by peer",
    "Socket closed",
    "Connect timeout",
    "Timed out",
)
TORCH_NAMES = r"OutOfMemoryError|AcceleratorError|CudaError\b|CUDA error|NVIDIA driver|No CUDA GPUs"
SIGNALS = ("SIGKILL", "SIGBUS", "SIGSEGV", "SIGABRT", "SIGTERM", "SIGINT", "SIGILL", "SIGFPE", "SIGPIPE")

Json = dict[str, object]


def download(spec: str, into: Path, *extra: str) -> Path:
    """`pip download --no-deps` one wheel of `spec` into a directory of its own."""
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *extra, spec, "-d", str(into)],
        check=True,
    )
    return next(into.glob("*.whl"))


def binary_wheels(
    tmp: Path, package: str, versions: Iterable[str | None], *platforms: str
) -> Iterator[tuple[str, Path]]:
    """(version, wheel) of each of `versions` (None: the newest), a CPython 3.11 Linux build."""
    for wanted in versions:
        wheel = download(
            spec_for(package, wanted),
            tmp / f"{package}-{wanted or 'newest'}",
            *("--only-binary=:all:", "--python-version", "3.11"),
            *(arg for platform_tag in platforms for arg in ("--platform", platform_tag)),
        )
        yield wheel_version(wheel), wheel


def wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def spec_for(package: str, version: str | None) -> str:
    return f"{package}=={version}" if version else package


# --- Python source: the message templates an upstream file can print ---


def render(node: ast.expr) -> str | None:
    """A string expression as a template: f-string fields and non-string operands become `{expr}`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append("{" + ast.unparse(value.value) + "}")
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = render(node.left), render(node.right)
        if left is None and right is None:
            return None
        return (left if left is not None else "{" + ast.unparse(node.left) + "}") + (
            right if right is not None else "{" + ast.unparse(node.right) + "}"
        )
    return None


class _Templates(ast.NodeVisitor):
    """Every maximal string expression that reads as prose, with the function it is in and, inside a
    `raise`, what is raised. Bare string statements (docstrings) are left out."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str, str]] = []  # (text, in, raises)
        self.scope: list[str] = []
        self.raising = ""

    def _scoped(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _scoped

    def visit_Expr(self, node: ast.Expr) -> None:
        if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        self.raising = ast.unparse(exc) if exc is not None else ""
        self.generic_visit(node)
        self.raising = ""

    def generic_visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.expr) and isinstance(node, ast.Constant | ast.JoinedStr | ast.BinOp):
            text = render(node)
            if text is not None:
                if len(text) >= 12 and " " in text.strip():
                    self.found.append((text, ".".join(self.scope), self.raising))
                return
        super().generic_visit(node)


def templates(source: str) -> list[tuple[str, str, str]]:
    visitor = _Templates()
    visitor.visit(ast.parse(source))
    return visitor.found


def classes(source: str) -> Iterator[tuple[str, list[str], str]]:
    """(name, bases, docstring) of each top-level exception class (by its name or a base's)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base) for base in node.bases]
            if any(name.endswith(("Error", "Exception", "Warning")) for name in [node.name, *bases]):
                yield node.name, bases, ast.get_docstring(node) or ""


class SourceTable:
    """One package's classes and templates across versions; an entry lists the versions that have it."""

    def __init__(self) -> None:
        self.versions: list[str] = []
        self.wheels: list[str] = []
        self.classes: dict[str, Json] = {}
        self.files: dict[str, dict[tuple[str, str, str], list[str]]] = {}

    def add_file(
        self, version: str, path: str, source: str, keep: Callable[[str], bool] = lambda _: True
    ) -> None:
        rows = self.files.setdefault(path, {})
        for found in templates(source):
            if keep(found[0]):
                versions = rows.setdefault(found, [])
                if version not in versions:
                    versions.append(version)

    def add_classes(self, version: str, path: str, source: str) -> None:
        for name, bases, doc in classes(source):
            entry = self.classes.setdefault(name, {"bases": bases, "defined_in": {}, "doc": doc})
            entry["defined_in"][version] = path  # type: ignore[index]
            entry["bases"], entry["doc"] = bases, doc  # the newest version's, versions being in order

    def as_json(self) -> Json:
        return {
            "versions": self.versions,
            "wheels": self.wheels,
            "classes": self.classes,
            "files": {
                path: [
                    {"text": text, "in": scope, "raises": raising, "versions": versions}
                    for (text, scope, raising), versions in rows.items()
                ]
                for path, rows in self.files.items()
            },
        }


def wheel_sources(wheel: Path, package: str, paths: Iterable[str]) -> Iterator[tuple[str, str]]:
    """(path below the package, text) of each of `paths` the wheel has."""
    with zipfile.ZipFile(wheel) as zipped:
        names = set(zipped.namelist())
        for path in paths:
            if f"{package}/{path}" in names:
                yield path, zipped.read(f"{package}/{path}").decode()


def printable_strings(data: bytes, minimum: int = 8) -> list[str]:
    """What `strings` prints: runs of printable ASCII."""
    return [m.decode() for m in re.findall(rb"[\x20-\x7e\t]{%d,}" % minimum, data)]


def near(strings: list[str], phrases: Iterable[str], around: int = 0) -> list[str]:
    """The strings containing one of `phrases` (lowercase), with `around` neighbours either side:
    a C++ message is often split into pieces around its format arguments."""
    wanted = [p.lower() for p in phrases]
    keep: set[int] = set()
    for i, text in enumerate(strings):
        if any(p in text.lower() for p in wanted):
            keep.update(range(max(0, i - around), min(len(strings), i + around + 1)))
    return list(dict.fromkeys(strings[i] for i in sorted(keep)))


# --- the tables ---


def nccl_table(tmp: Path) -> Json:
    codes: dict[str, Json] = {}
    versions: dict[str, str] = {}
    strings: dict[str, list[str]] = {}
    for package in NCCL_WHEELS:
        wheel = download(package, tmp / package)
        with zipfile.ZipFile(wheel) as zipped:
            zipped.extractall(tmp / package)
        library = next((tmp / package).rglob("libnccl.so*"))
        header = next((tmp / package).rglob("nccl.h")).read_text()
        # readelf -d of libnccl.so.2 names only libc, libstdc++ and friends: cudart is linked in.
        nccl = ctypes.CDLL(str(library))
        nccl.ncclGetErrorString.restype = ctypes.c_char_p
        raw = ctypes.c_int()
        nccl.ncclGetVersion(ctypes.byref(raw))
        code = raw.value  # 2.x: major*10000 + minor*100 + patch (since 2.9)
        version = f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
        versions[wheel.name] = version
        enum = dict(re.findall(r"(nccl\w+)\s*=\s*(\d+)", header.split("ncclResult_t")[0]))
        names = {int(value): name for name, value in enum.items() if name != "ncclNumResults"}
        for result in range(0, 16):
            text = nccl.ncclGetErrorString(result).decode()
            if text == "unknown result code":
                continue
            entry = codes.setdefault(str(result), {"name": names.get(result, ""), "strings": {}})
            entry["strings"][version] = text  # type: ignore[index]
        strings[version] = near(printable_strings(library.read_bytes()), NCCL_PHRASES)
        print(f"{wheel.name}: NCCL {version}, {len(names)} results", file=sys.stderr)
    return {
        "libraries": versions,
        "results": codes,
        "library_strings": strings,
        "torch_python_wrappers": torch_nccl_wording(tmp),
        "note": "torch prints these after 'NCCL error in: <file>:<line>, ' (C++, ProcessGroupNCCL); "
        "CPU torch has no NCCL, so torch_python_wrappers lists only the .py lines naming an NCCL error.",
    }


def torch_wheel(tmp: Path) -> Path:
    where = tmp / "torch"
    return next(where.glob("*.whl")) if where.is_dir() else download(TORCH, where)


def torch_cuda_wheel(tmp: Path) -> Path:
    where = tmp / "torch-cuda"
    if where.is_dir():
        return next(where.glob("*.whl"))
    platform = ("--only-binary", ":all:", "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64")
    return download(TORCH_CUDA, where, *platform)


def torch_nccl_wording(tmp: Path) -> list[Json]:
    found: list[Json] = []
    with zipfile.ZipFile(torch_wheel(tmp)) as zipped:
        for name in zipped.namelist():
            if name.endswith(".py"):
                for number, line in enumerate(zipped.read(name).decode(errors="replace").splitlines(), 1):
                    if re.search(r"nccl error|ncclGetErrorString", line, re.IGNORECASE):
                        found.append({"file": name, "line": number, "text": line.strip()})
    return found


def snippets(data: bytes, phrases: Iterable[str], around: int = 60) -> list[str]:
    """Each place a compiled library holds one of `phrases`, with `around` bytes either side: a Rust
    library's strings are not NUL-separated, so `strings` would print them run together."""
    found: list[str] = []
    for phrase in phrases:
        for match in re.finditer(re.escape(phrase.encode()), data):
            piece = data[max(0, match.start() - around) : match.end() + around]
            found.append(re.sub(rb"[^\x20-\x7e]", b" ", piece).decode())
    return list(dict.fromkeys(found))


def native_table(tmp: Path, package: str, versions: Iterable[str | None], phrases: Iterable[str]) -> Json:
    """The failure words compiled into a package's extension (tokenizers' and safetensors' Rust)."""
    versions_seen: list[str] = []
    wheels: list[str] = []
    strings: dict[str, list[str]] = {}
    for version, wheel in binary_wheels(tmp, package, versions, "manylinux2014_x86_64"):
        versions_seen.append(version)
        wheels.append(wheel.name)
        with zipfile.ZipFile(wheel) as zipped:
            strings[version] = [
                piece
                for name in zipped.namelist()
                if name.endswith(".so")
                for piece in snippets(zipped.read(name), phrases)
            ]
        print(f"{wheel.name}: {len(strings[version])} snippets", file=sys.stderr)
    return {"versions": versions_seen, "wheels": wheels, "strings": strings}


def hf_hub_table(tmp: Path) -> Json:
    out: Json = {}
    # A tokenizer.json newer than the tokenizers installed; a weights file that is no safetensors
    # file (a git-lfs pointer, a partial download).
    out["tokenizers"] = native_table(tmp, "tokenizers", TOKENIZERS_VERSIONS, ("untagged enum",))
    out["safetensors"] = native_table(tmp, "safetensors", SAFETENSORS_VERSIONS, ("deserializing header",))
    for package, versions, files in (
        ("huggingface_hub", HF_HUB_VERSIONS, HF_HUB_FILES),
        ("transformers", TRANSFORMERS_VERSIONS, TRANSFORMERS_FILES),
        ("modelscope", MODELSCOPE_VERSIONS, MODELSCOPE_FILES),
        ("modelscope_hub", MODELSCOPE_HUB_VERSIONS, MODELSCOPE_HUB_FILES),
        ("urllib3", URLLIB3_VERSIONS, URLLIB3_FILES),
    ):
        table = SourceTable()
        for wanted in versions:
            wheel = download(spec_for(package, wanted), tmp / f"{package}-{wanted or 'newest'}")
            version = wheel_version(wheel)
            table.versions.append(version)
            table.wheels.append(wheel.name)
            for path, source in wheel_sources(wheel, package, files):
                table.add_file(version, path, source)
                table.add_classes(version, path, source)
            print(f"{wheel.name}: {len(table.files)} files so far", file=sys.stderr)
        out[package] = table.as_json()
    return out


def ray_table(tmp: Path) -> Json:
    table = SourceTable()
    raylet: dict[str, list[str]] = {}
    binaries: dict[str, dict[str, list[str]]] = {}
    for version, wheel in binary_wheels(tmp, "ray", RAY_VERSIONS, "manylinux2014_x86_64"):
        table.versions.append(version)
        table.wheels.append(wheel.name)
        with zipfile.ZipFile(wheel) as zipped:
            source = zipped.read("ray/exceptions.py").decode()
            table.add_file(version, "exceptions.py", source)
            table.add_classes(version, "exceptions.py", source)
            for name in zipped.namelist():
                if name.startswith("ray/_private/") and name.endswith(".py"):
                    text = zipped.read(name).decode(errors="replace")
                    if any(phrase in text for phrase in RAY_PRIVATE_PHRASES):
                        table.add_file(
                            version,
                            name.removeprefix("ray/"),
                            text,
                            lambda t: any(phrase in t for phrase in RAY_PRIVATE_PHRASES),
                        )
            for path in RAY_BINARIES:
                if f"ray/{path}" in zipped.namelist():
                    found = near(printable_strings(zipped.read(f"ray/{path}")), RAYLET_PHRASES, around=2)
                    binaries.setdefault(path, {})[version] = found
        raylet[version] = binaries["core/src/ray/raylet/raylet"][version]
        print(
            f"{wheel.name}: {len(table.classes)} classes, {len(raylet[version])} raylet strings",
            file=sys.stderr,
        )
    return {"ray": table.as_json(), "raylet_strings": raylet, "binary_strings": binaries}


def triton_table(tmp: Path) -> Json:
    table = SourceTable()
    ptxas: dict[str, list[str]] = {}  # the bundled ptxas's words, by triton version
    platforms = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
    for version, wheel in binary_wheels(tmp, "triton", TRITON_VERSIONS, *platforms):
        table.versions.append(version)
        table.wheels.append(wheel.name)
        for path, source in wheel_sources(wheel, "triton", TRITON_FILES):
            table.add_file(version, path, source)
        with zipfile.ZipFile(wheel) as zipped:
            if f"triton/{TRITON_PTXAS}" in zipped.namelist():
                found = near(printable_strings(zipped.read(f"triton/{TRITON_PTXAS}")), PTXAS_PHRASES)
                ptxas[version] = found
        print(f"{wheel.name}: {len(table.files)} files so far", file=sys.stderr)
    return {"triton": table.as_json(), "ptxas_strings": ptxas}


DEBIAN = "http://deb.debian.org/debian"
ROCBLAS_DEBIAN = ("trixie", "librocblas0")
ROCBLAS_SOURCE = "library/src/tensile_host.cpp"
ROCBLAS_TAGS = re.compile(r"^rocm-\d+\.\d+\.\d+$")
_CXX_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def debian_package(tmp: Path, suite: str, name: str) -> tuple[str, Path]:
    """(version, .deb) of a Debian package, from the archive's index for amd64."""
    with urllib.request.urlopen(f"{DEBIAN}/dists/{suite}/main/binary-amd64/Packages.xz") as answer:
        index = lzma.decompress(answer.read()).decode()
    stanza = next(s for s in index.split("\n\n") if s.startswith(f"Package: {name}\n"))
    fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line)
    deb = tmp / Path(fields["Filename"]).name
    urllib.request.urlretrieve(f"{DEBIAN}/{fields['Filename']}", deb)
    return fields["Version"], deb


_CXX_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|//[^\n]*|/\*.*?\*/', re.DOTALL)
_ADJACENT_LITERALS = re.compile(r'^(?:"(?:[^"\\]|\\.)*"\s*)+')
_PRINTF_CONVERSION = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t|L)?[diouxXeEfgGcspm%]")


def cxx_messages(source: str, marker: str) -> list[str]:
    """The messages a C++ file writes that contain `marker`: of a statement streaming with `<<`,
    its string literals as written and any other operand as "{}" (std::endl dropped); of a
    printf-style call, its literals with each conversion as "{}"."""
    # Comments and character literals go (blanked, so offsets hold): a marker in a comment is no
    # message, and '"' would open a string. Statement bounds are then looked for outside string
    # literals: a literal may hold ";" or "{".
    source = _CXX_TOKEN.sub(lambda m: m.group() if m.group()[0] == '"' else " " * len(m.group()), source)
    masked = _CXX_LITERAL.sub(lambda m: '"' + "_" * (len(m.group()) - 2) + '"', source)
    out = []
    for found in re.finditer(re.escape(marker), source):
        start = max(masked.rfind(c, 0, found.start()) for c in ";{}") + 1
        end = masked.index(";", found.end())
        statement = source[start:end]
        if "<<" in masked[start:end]:
            text = ""
            for part in _split_outside_literals(statement, masked[start:end], "<<")[1:]:
                literals = _CXX_LITERAL.findall(part)
                if literals and _CXX_LITERAL.sub("", part).strip(" ()\n\t") == "":
                    text += "".join(literals).encode().decode("unicode_escape")
                elif "endl" not in part:
                    text += "{}"
        else:  # fprintf(stderr, "...%s...", ...): the format (adjacent literals joined), "%s" as "{}"
            joined = _ADJACENT_LITERALS.search(statement[statement.find('"') :]) if '"' in statement else None
            if joined is None or marker not in joined.group():
                continue
            literal = "".join(_CXX_LITERAL.findall(joined.group()))
            text = _PRINTF_CONVERSION.sub(
                lambda m: "%" if m.group() == "%%" else "{}", literal.encode().decode("unicode_escape")
            )
        if text.strip("\n"):
            out.append(text.strip("\n"))
    return list(dict.fromkeys(out))


def _split_outside_literals(text: str, masked: str, separator: str) -> list[str]:
    """`text` split at each `separator` that `masked` (text with its literals blanked) shows."""
    parts, last = [], 0
    for found in re.finditer(re.escape(separator), masked):
        parts.append(text[last : found.start()])
        last = found.end()
    return [*parts, text[last:]]


def rocblas_table(tmp: Path, git: Path | None = None) -> Json:
    suite, name = ROCBLAS_DEBIAN
    version, deb = debian_package(tmp, suite, name)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], check=True)
    library = next((tmp / "root").rglob("librocblas.so.*.*"))
    strings = near(printable_strings(library.read_bytes(), 6), ["rocBLAS error", "TensileLibrary"])
    source: dict[str, list[str]] = {}
    if git is None:  # main() refuses this before anything is downloaded
        raise SystemExit("the rocblas table needs --rocblas-git DIR (a clone of github.com/ROCm/rocBLAS)")
    tags = subprocess.run(["git", "-C", str(git), "tag"], capture_output=True, text=True, check=True)
    for tag in [*sorted((t for t in tags.stdout.split() if ROCBLAS_TAGS.match(t)), key=_tag_key), "HEAD"]:
        shown = subprocess.run(
            ["git", "-C", str(git), "show", f"{tag}:{ROCBLAS_SOURCE}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shown.returncode == 0:
            source[tag] = cxx_messages(shown.stdout, "rocBLAS error")
    head = subprocess.run(
        ["git", "-C", str(git), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    )
    return {
        "debian": {"suite": suite, "package": name, "version": version, "library": library.name},
        "library_strings": {version: strings},
        "source_file": ROCBLAS_SOURCE,
        "source_head": head.stdout.strip(),
        "source_messages": source,
    }


def _tag_key(tag: str) -> tuple[int, ...]:
    return tuple(int(n) for n in tag.removeprefix("rocm-").split("."))


def linker_errors(tmp: Path) -> dict[str, str]:
    """What ld says for each way triton's launcher has linked the driver's library, where there is none."""
    (tmp / "sysroot").mkdir()
    (tmp / "start.c").write_text("void _start(void) {}\n")
    said: dict[str, str] = {}
    gcc = ["gcc", "-nostdlib", "-nostartfiles", f"--sysroot={tmp / 'sysroot'}", str(tmp / "start.c")]
    for flag in ("-lcuda", "-l:libcuda.so.1"):
        done = subprocess.run(
            [*gcc, flag, "-o", str(tmp / "start")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode != 0, f"ld found {flag} in an empty sysroot"
        said[flag] = done.stderr.strip().splitlines()[0]
    return said


def gloo_strings(strings: list[str], around: int = 80) -> list[str]:
    """The words of gloo's TCP pair (a message and the file it names lie close in the library)."""
    at = next(i for i, text in enumerate(strings) if text.endswith(GLOO_PAIR))
    window = strings[max(0, at - around) : at + around]
    return [text for text in window if text.endswith(GLOO_PAIR) or any(p in text for p in GLOO_PHRASES)]


def torch_table(tmp: Path) -> Json:
    wheel = torch_wheel(tmp)
    table = SourceTable()
    version = wheel_version(wheel)
    table.versions.append(version)
    table.wheels.append(wheel.name)
    libraries: dict[str, list[str]] = {}
    lines: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel) as zipped:
        for path, source in wheel_sources(wheel, "torch", ("cuda/__init__.py", "cuda/memory.py")):
            table.add_file(version, path, source)
            # `OutOfMemoryError = torch._C.OutOfMemoryError` and the like are names, not templates.
            lines[path] = [line.strip() for line in source.splitlines() if re.search(TORCH_NAMES, line)]
        for path, source in wheel_sources(wheel, "torch", TORCH_ELASTIC):
            table.add_file(version, path, source, lambda t: any(p in t for p in TORCH_ELASTIC_PHRASES))
        for name in ("torch/lib/libc10.so", "torch/lib/libtorch_cpu.so", "torch/lib/libtorch_python.so"):
            libraries[name.removeprefix("torch/")] = near(printable_strings(zipped.read(name)), TORCH_PHRASES)
    cuda_wheel = torch_cuda_wheel(tmp)
    with zipfile.ZipFile(cuda_wheel) as zipped:
        # the CUDA build's (the one vLLM runs on); the CPU wheel's strings lie in another order
        gloo = gloo_strings(printable_strings(zipped.read("torch/lib/libtorch_cpu.so")))
        for name in TORCH_CUDA_LIBRARIES:
            # a message, not a mangled symbol that names a function about capturing
            found = near(printable_strings(zipped.read(name)), TORCH_CUDA_PHRASES)
            libraries[name.removeprefix("torch/")] = [text for text in found if " " in text.strip()]
    runtime: dict[str, list[str]] = {}
    for probe in sorted(PROBES.glob("h100-probe*.json")):
        for key, texts in _probe_texts(json.loads(probe.read_text())):
            hits = [line for line in texts if any(p in line.lower() for p in TORCH_PHRASES)]
            if hits:
                runtime[f"gpu/{probe.name}#{key}"] = hits
    return {
        "torch": table.as_json(),
        "python_lines": lines,
        "libraries": libraries,
        "gloo_strings": gloo,
        "cuda_wheel": cuda_wheel.name,
        "runtime": runtime,
        "note": f"lib/libc10_cuda.so and lib/libtorch_cuda.so are {cuda_wheel.name}'s (the CPU wheel has "
        "neither); the C++ 'CUDA out of memory. Tried to allocate' text is also cited as printed on an "
        "H100 (../shared/vllm/gpu, torch 2.11).",
    }


def _probe_texts(value: object, key: str = "") -> Iterator[tuple[str, list[str]]]:
    if isinstance(value, str):
        yield key, value.splitlines()
    elif isinstance(value, dict):
        for name, inner in value.items():
            yield from _probe_texts(inner, f"{key}.{name}" if key else name)


def python_table(tmp: Path) -> Json:
    python = "python3.11"
    (tmp / "pkg").mkdir()
    # Two extensions: one needing a symbol nothing defines, one needing a library deleted after linking
    # (libcudart.so.12 missing from a venv reads like this).
    (tmp / "undefined.c").write_text(
        "extern int vllm_guard_missing(void);\nint PyInit_undefined(void) { return vllm_guard_missing(); }\n"
    )
    (tmp / "gone.c").write_text("int vllm_guard_gone(void) { return 0; }\n")
    (tmp / "needsgone.c").write_text(
        "extern int vllm_guard_gone(void);\nint PyInit_needsgone(void) { return vllm_guard_gone(); }\n"
    )
    gcc = ["gcc", "-shared", "-fPIC"]
    subprocess.run([*gcc, str(tmp / "undefined.c"), "-o", str(tmp / "pkg" / "undefined.so")], check=True)
    subprocess.run([*gcc, str(tmp / "gone.c"), "-o", str(tmp / "libgone.so")], check=True)
    subprocess.run(
        [*gcc, str(tmp / "needsgone.c"), f"-L{tmp}", "-lgone", "-o", str(tmp / "pkg" / "needsgone.so")],
        check=True,
    )
    (tmp / "libgone.so").unlink()
    cases = {
        "ModuleNotFoundError": "import vllm_guard_no_such_module",
        "ModuleNotFoundError (submodule)": "import json.no_such_submodule",
        "ModuleNotFoundError (not a package)": "import signal.no_such_submodule",
        "ImportError (name)": "from json import no_such_name",
        "ImportError (undefined symbol)": "import undefined",
        "ImportError (missing library)": "import needsgone",
    }
    errors: dict[str, str] = {}
    for case, statement in cases.items():
        done = subprocess.run(
            [python, "-c", statement], cwd=tmp / "pkg", capture_output=True, text=True, check=False
        )
        last = done.stderr.strip().splitlines()[-1].replace(str(tmp), "<dir>")
        errors[case] = re.sub(r"\(/[^)]*\)", "(<path>)", last)  # the module's file, this machine's
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    signals = {
        sig.name: {
            "number": int(sig),
            "strsignal": signal.strsignal(sig) or "",
            "returncode": -int(sig),  # subprocess's view of a child killed by it
            "shell_status": 128 + int(sig),  # a shell's, or docker's, exit status
        }
        for sig in sorted(signal.Signals, key=int)
    }
    missing = [name for name in SIGNALS if name not in signals]
    assert not missing, missing
    return {
        "python": version,
        "libc": " ".join(platform.libc_ver()),
        "import_errors": errors,
        "signals": signals,
        "linker_errors": linker_errors(tmp),
        "argparse_errors": argparse_errors(python),
        "socket_errors": socket_errors(python),
        "faulthandler": faulthandler_banners(python),
        "validation_errors": validation_errors(),
        "api_mismatch_errors": api_mismatch_errors(python),
        "spawn_errors": spawn_errors(python, tmp),
    }


def spawn_errors(python: str, tmp: Path) -> dict[str, str]:
    """What multiprocessing says when a script without the `if __name__ == "__main__":` guard starts
    a spawned process (vLLM's workers, and the LLM class, under the spawn start method): the child
    imports the script again and refuses to start another child while it bootstraps."""
    script = tmp / "unguarded.py"
    script.write_text(
        "import multiprocessing as mp\n"
        "mp.set_start_method('spawn', force=True)\n"
        "p = mp.Process(target=print)\n"
        "p.start()\n"
        "p.join()\n"
    )
    done = subprocess.run([python, str(script)], capture_output=True, text=True, check=False, timeout=60)
    said = [line.strip() for line in done.stderr.splitlines() if "bootstrapping phase" in line]
    assert said, done.stderr
    return {"unguarded spawn": said[0]}


def api_mismatch_errors(python: str) -> dict[str, str]:
    """What Python raises when one package calls another of a version with another API."""
    cases = {
        "unexpected keyword": "def engine_args(model):\n    pass\n"
        "engine_args(model='m', worker_extension_cls='x')",
        "module attribute": "import json\njson.no_such_function",
    }
    return {case: _last_stderr_line([python, "-c", statement]) for case, statement in cases.items()}


def _last_stderr_line(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return done.stderr.strip().splitlines()[-1]


def argparse_errors(python: str) -> dict[str, str]:
    """argparse's refusals, as vLLM's FlexibleArgumentParser (an ArgumentParser) prints them."""
    parser = (
        "import argparse, sys; p = argparse.ArgumentParser(prog='vllm serve'); "
        "p.add_argument('--max-model-len', type=int); p.add_argument('--max-num-seqs', type=int); "
        "p.add_argument('--dtype', choices=['auto', 'half']); p.parse_args(sys.argv[1:])"
    )
    cases = {
        "unrecognized": ["--no-such-flag"],
        "invalid value": ["--max-model-len", "big"],
        "invalid choice": ["--dtype", "fp7"],
        "ambiguous": ["--max", "1"],
    }
    return {case: _last_stderr_line([python, "-c", parser, *argv]) for case, argv in cases.items()}


def socket_errors(python: str) -> dict[str, str]:
    """What binding a port that is taken raises, with the errno's name."""
    statement = (
        "import errno, socket; a = socket.socket(); a.bind(('127.0.0.1', 0)); a.listen(); "
        "b = socket.socket()\ntry:\n    b.bind(a.getsockname())\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno], f'{type(e).__name__}: {e}')"
    )
    done = subprocess.run([python, "-c", statement], capture_output=True, text=True, check=True)
    name, _, error = done.stdout.strip().partition(" ")
    return {name: error}


def faulthandler_banners(python: str) -> dict[str, str]:
    """faulthandler's first line for each fatal signal a worker dies of (vLLM enables it)."""
    said = {}
    for name in ("SIGSEGV", "SIGBUS", "SIGABRT"):
        statement = (
            f"import faulthandler, os, signal; faulthandler.enable(); os.kill(os.getpid(), signal.{name})"
        )
        done = subprocess.run([python, "-c", statement], capture_output=True, text=True, check=False)
        said[name] = done.stderr.strip().splitlines()[0]
    return said


def validation_errors() -> dict[str, str]:
    """pydantic's title for a refused field of a dataclass (vLLM's config classes are pydantic
    dataclasses since 0.10); pydantic comes with this project's environment."""

    @pydantic_dataclass
    class ModelConfig:
        max_model_len: int

    try:
        ModelConfig(max_model_len="big")  # type: ignore[arg-type]
    except ValidationError as error:
        return {"ModelConfig": str(error).splitlines()[0]}
    raise AssertionError("pydantic accepted a bad value")


TABLES: dict[str, tuple[str, Callable[[Path], Json]]] = {
    "nccl": ("nccl_errors.json", nccl_table),
    "hf_hub": ("hf_hub_errors.json", hf_hub_table),
    "ray": ("ray_errors.json", ray_table),
    "torch": ("torch_errors.json", torch_table),
    "triton": ("triton_errors.json", triton_table),
    "rocblas": ("rocblas_errors.json", rocblas_table),
    "python": ("python_errors.json", python_table),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", help="comma-separated (default: all): " + ",".join(TABLES))
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--rocblas-git", type=Path, help="a clone of github.com/ROCm/rocBLAS (its tags)")
    opts = parser.parse_args()
    only = opts.only.split(",") if opts.only else [t for t in TABLES if t != "rocblas" or opts.rocblas_git]
    if "rocblas" in only and opts.rocblas_git is None:
        parser.error("the rocblas table needs --rocblas-git DIR (a clone of github.com/ROCm/rocBLAS)")
    if "rocblas" not in only and opts.only is None:
        print("rocblas_errors.json is left as it is: it needs --rocblas-git DIR", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        for name in only:
            filename, mine = TABLES[name]
            where = Path(tmp) / name
            where.mkdir()
            table = rocblas_table(where, opts.rocblas_git) if name == "rocblas" else mine(where)
            (opts.out_dir / filename).write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n")
            print(f"wrote {opts.out_dir / filename}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
