"""The Hugging Face home, hub cache and token, as vLLM's huggingface_hub will find them.

vLLM runs with the environment the guard gives it, which may not be the guard's own (a test, or a
`HOME` that differs), so every answer here is for a given environment. Where huggingface_hub is
importable and that environment is the guard's own, its `constants` answer; else one fallback with
the same rules (huggingface_hub 2.4, `constants.py` and `utils/_auth.py`):

    HF_HOME        = $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface
    HF_HUB_CACHE   = $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else HF_HOME/hub
    HF_TOKEN_PATH  = $HF_TOKEN_PATH, else HF_HOME/token
    token          = $HF_TOKEN, else $HUGGING_FACE_HUB_TOKEN, then the file at HF_TOKEN_PATH

Each value has `~` and `$VAR` expanded (the library's `expandvars(expanduser(...))`), against the
given environment's HOME and variables. A variable set but empty counts as set, as `os.getenv` has it.

`get_token()` is not called: since huggingface_hub 1.x it may exchange an OIDC token or refresh an
OAuth one over the network, and the guard's checks never touch the network.
"""

from __future__ import annotations

import os
import pwd
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

# Every variable huggingface_hub's paths depend on: the library's answer is for the guard's own
# environment, so it is used only where the given one agrees on all of these.
PATH_VARIABLES = (
    "HOME", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH",
)  # fmt: skip
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")  # in huggingface_hub's order


@dataclass(frozen=True, slots=True)
class HubPaths:
    home: Path  # HF_HOME
    cache: Path  # HF_HUB_CACHE: where models are downloaded
    token_path: Path  # HF_TOKEN_PATH


def paths(environ: Mapping[str, str]) -> HubPaths:
    constants = _library(environ)
    if constants is not None:
        return HubPaths(Path(constants.HF_HOME), Path(constants.HF_HUB_CACHE), Path(constants.HF_TOKEN_PATH))
    return fallback_paths(environ)


def fallback_paths(environ: Mapping[str, str]) -> HubPaths:
    """huggingface_hub's rules, for any environment, without the library."""

    def expand(value: str) -> str:
        return _expandvars(_expanduser(value, environ), environ)

    default_home = os.path.join(_expanduser("~", environ), ".cache")
    xdg_cache = environ.get("XDG_CACHE_HOME", default_home)
    home = expand(environ.get("HF_HOME", os.path.join(xdg_cache, "huggingface")))
    # The legacy name is read unexpanded and then expanded with HF_HUB_CACHE's default, as there.
    legacy = environ.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub"))
    cache = expand(environ.get("HF_HUB_CACHE", legacy))
    token_path = expand(environ.get("HF_TOKEN_PATH", os.path.join(home, "token")))
    return HubPaths(Path(home), Path(cache), Path(token_path))


def hub_cache(environ: Mapping[str, str], download_dir: str | None = None) -> Path:
    """Where vLLM downloads a hub model: `--download-dir` (vLLM's `cache_dir`, which huggingface_hub
    expands with `~` against vLLM's HOME) wins over the hub cache."""
    if download_dir:
        return Path(_expanduser(download_dir, environ))
    return paths(environ).cache


def token(environ: Mapping[str, str]) -> str | None:
    """The token vLLM's downloads would send, or None: the environment, then the token file."""
    # `or` as there: HF_TOKEN=" " hides HUGGING_FACE_HUB_TOKEN, is cleaned to nothing, and the file is read.
    found = _clean(environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN"))
    if found is not None:
        return found
    try:
        return _clean(paths(environ).token_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):  # the library raises on all but a missing file; a guard never
        return None


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    return value.replace("\r", "").replace("\n", "").strip() or None


# The guard's own environment as it was when huggingface_hub.constants was first imported here: the
# module computes its paths once, at import.
_imported_with: dict[str, str | None] | None = None


def _library(environ: Mapping[str, str]) -> ModuleType | None:
    """huggingface_hub.constants, when importable and computed for this same environment."""
    global _imported_with  # noqa: PLW0603 - one import per process, as the library itself does
    if _imported_with is None:
        if "huggingface_hub.constants" in sys.modules:
            return None  # imported by someone else, under an environment we cannot know
        snapshot = {name: os.environ.get(name) for name in PATH_VARIABLES}
        try:
            # Imported only here (~5 ms, no network, no asyncio): serve's launch path pays for it only
            # where the library is installed beside the guard.
            import huggingface_hub.constants  # noqa: PLC0415, F401 - read from sys.modules below
        except ImportError:
            return None
        _imported_with = snapshot
    if any(environ.get(name) != _imported_with[name] for name in PATH_VARIABLES):
        return None
    return sys.modules["huggingface_hub.constants"]


def _expanduser(path: str, environ: Mapping[str, str]) -> str:
    """posixpath.expanduser, with HOME read from `environ` rather than the guard's own."""
    if not path.startswith("~"):
        return path
    end = path.find("/", 1)
    end = len(path) if end < 0 else end
    user = path[1:end]
    try:
        if user:
            home = pwd.getpwnam(user).pw_dir
        elif "HOME" in environ:
            home = environ["HOME"]
        else:
            home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return path  # an unknown user: left as it is, as posixpath does
    return (home.rstrip("/") + path[end:]) or "/"


_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)


def _expandvars(path: str, environ: Mapping[str, str]) -> str:
    """posixpath.expandvars against `environ`: `$NAME` and `${NAME}`, unknown names left in place."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).removeprefix("{").removesuffix("}")
        return environ.get(name, match.group(0))

    return _VARIABLE.sub(value, path) if "$" in path else path
