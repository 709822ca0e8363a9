"""The pure core imports no I/O (STYLE.md): checked three ways, since each alone has a blind spot.

- In a fresh interpreter per module, nothing that does I/O is in `sys.modules` after the import. This
  catches what a dependency drags in, but not an import inside a function that has not run yet.
- In each module's source (the AST, function bodies included), no I/O module is imported and no
  built-in that reads, writes or prints is called. This catches a lazy import and a plain `open()`.
- The import-linter contract in pyproject.toml: no core module reaches the shell or an I/O library,
  directly or through another module, which neither check above follows.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vllm_guard

PURE = [
    "vllm_guard.vllm_args",
    "vllm_guard.flag_edits",
    "vllm_guard.failures",
    "vllm_guard.policy",
    "vllm_guard.redact",
    "vllm_guard.errors",
    "vllm_guard.memory",
    "vllm_guard.vllm_profile",
    "vllm_guard.measured",
    "vllm_guard.preflight",
    "vllm_guard.fits",
    "vllm_guard.milestones",
    "vllm_guard.vllm_flags",
    "vllm_guard.attempt_watch",
    "vllm_guard.journal",
    "vllm_guard.facts",
    "vllm_guard.fault_tolerance",
    "vllm_guard.metric_window",
    "vllm_guard.advice",
    "vllm_guard.request_log",
]
# settings.py is pure in what it does, but pydantic-settings itself imports asyncio. vllm_version.py is
# not in the core: detect() reads vLLM's script and site-packages (only at_least() is pure).
FORBIDDEN = ["asyncio", "subprocess", "pynvml", "httpx", "psutil", "socket"]

# What the core's own source may not import, at the top or inside a function.
BANNED_IMPORTS = {"os", "time", "subprocess", "socket", "pathlib", "io", "shutil", "asyncio", "select"}
BANNED_IMPORTS |= {"signal", "threading", "tempfile", "httpx", "psutil", "pynvml", "urllib", "http"}
# Built-ins that do I/O (or run code the AST cannot see).
BANNED_CALLS = {"open", "print", "input", "eval", "exec", "__import__", "breakpoint"}
# A module that legitimately needs one of the above, with the reason. None today.
KNOWN_EXCEPTIONS: dict[str, set[str]] = {}

SOURCE = Path(vllm_guard.__file__).parent


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    code = f"import sys, {module}\nbad = [m for m in {FORBIDDEN!r} if m in sys.modules]\nprint(','.join(bad))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


def io_in(source: str) -> set[str]:
    """The banned imports and calls in `source`, wherever they are."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names} & BANNED_IMPORTS
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found |= {node.module.split(".")[0]} & BANNED_IMPORTS
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in BANNED_CALLS:
            found.add(f"{node.func.id}()")
    return found


@pytest.mark.parametrize("module", PURE)
def test_pure_module_source_does_no_io(module: str) -> None:
    path = SOURCE / (module.removeprefix("vllm_guard.") + ".py")
    found = io_in(path.read_text(encoding="utf-8"))
    assert found <= KNOWN_EXCEPTIONS.get(module, set()), f"{path.name} does I/O: {sorted(found)}"


def test_the_source_check_sees_lazy_imports_and_plain_open() -> None:
    # The two holes the sys.modules check has: an import inside a function, and a file read.
    source = "def f():\n    import os.path\n    from time import monotonic\n    return open('x').read()\n"
    assert io_in(source) == {"os", "time", "open()"}
    assert io_in("import math\nfrom collections.abc import Mapping\nlen([])\n") == set()


def test_the_import_contract_holds() -> None:
    # lint-imports lives beside this interpreter in the venv; --no-cache leaves nothing in the checkout.
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=SOURCE.parent,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout
