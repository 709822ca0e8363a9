"""What a fleet learns once: the flag sets that reached ready and what starts measured, kept also
in a folder several guards share (`--shared-state`, a volume every replica mounts), so that a
replica on a key another has learned starts right the first time.

    SHARED/known_good/<key>.json, SHARED/measured/<key>.json

One file per key, each replaced atomically: guards on other machines never read-modify-write a
file together, so the shared folder needs no lock (a state directory's lock stays its guard's).
A file that cannot be read is set aside, never trusted."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["known_good", "measured"]
# the keys the state directory makes (sha256 hex, 16 digits): a file name that is not one is not ours
_KEY = re.compile(r"[0-9a-f]{16}")


def host() -> str:
    """This machine's name as the records say where they were learned (a pod's name on Kubernetes)."""
    return socket.gethostname() or "an unnamed host"


@dataclass(frozen=True, slots=True)
class Learned:
    """A record another guard (or this one) kept in the shared folder."""

    record: dict[str, Any]
    path: Path

    @property
    def at(self) -> str:
        at = self.record.get("at")
        return at if isinstance(at, str) else ""

    def origin(self) -> str:
        """Where it was learned, as a start says it."""
        where = self.record.get("host")
        on = f"on {where} " if isinstance(where, str) and where else ""
        return f"{on}at {self.at or 'an unknown time'}, kept in {self.path}"


class SharedState:
    def __init__(self, path: Path, warnings: list[str]) -> None:
        self.path = path
        self.warnings = warnings  # what could not be read, for the guard to say

    def open(self) -> None:
        """Make the folders where they are not yet; one that cannot be written is said, not
        fatal: this guard then learns for itself alone, and still reads what is there."""
        try:
            for kind in ("known_good", "measured"):
                (self.path / kind).mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-test.{host()}.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            self.warnings.append(
                f"the shared state {self.path} is not writable ({exc.strerror}): what this guard "
                "learns stays in its own state directory"
            )

    def _file(self, kind: Kind, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"not a state key: {key!r}")
        return self.path / kind / f"{key}.json"

    def read(self, kind: Kind, key: str, *, set_aside: bool = True) -> Learned | None:
        """The record kept under `key`, or None; one that is not a JSON object is set aside."""
        path = self._file(kind, key)
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            self.set_aside(path, exc, keep=not set_aside)
            return None
        return Learned(record, path)

    def all(self, kind: Kind, *, set_aside: bool = True) -> Iterator[tuple[str, Learned]]:
        """Every record of `kind` by key (files that are not a key's are not looked at)."""
        try:
            paths = sorted((self.path / kind).glob("*.json"))
        except OSError:
            return
        for path in paths:
            if _KEY.fullmatch(path.stem) and (learned := self.read(kind, path.stem, set_aside=set_aside)):
                yield path.stem, learned

    def write(self, kind: Kind, key: str, record: dict[str, Any]) -> None:
        """Keep `record` under `key`, with this machine's name, replacing the older one at once:
        a reader sees the old file or the new, never half of one. The temporary name is unique
        across machines (a pid alone is not, on a shared volume)."""
        path = self._file(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{host()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            tmp.write_text(json.dumps({**record, "host": host()}, indent=1, ensure_ascii=False))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def remove(self, kind: Kind, key: str) -> bool:
        try:
            self._file(kind, key).unlink()
        except FileNotFoundError:
            return False
        return True

    def set_aside(self, path: Path, exc: Exception, *, keep: bool = False) -> None:
        """A record that is not one: renamed out of the way (kept as it is by a reader that
        may not change the folder), and said."""
        if keep:
            self.warnings.append(f"{path} could not be read ({exc})")
            return
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        self.warnings.append(f"{path} could not be read ({exc}); set aside as {aside.name}")
