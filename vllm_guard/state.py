"""The state directory: its lock, each attempt's log file, and the attempt journal (JSON lines)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_guard import journal
from vllm_guard.errors import ExitCode, GuardError

if TYPE_CHECKING:  # measured.py is read only where starts are: not on the way to vLLM's exec
    from vllm_guard import measured

KEEP_LOG_FILES = 50
PROCESSES = "processes.json"
KNOWN_GOOD = "known_good.json"
MEASURED = "measured.json"
MEASURED_KEEP = 256  # starts: a few kilobytes each


def known_good_key(
    model: str,
    user_args: list[str],
    vllm_version: str | None,
    gpu: str | None,
    *,
    policy: str = "default",
    pinned: frozenset[str] = frozenset(),
) -> str:
    """What a remembered flag set is for: the model, the user's own flags that bear on memory
    (secrets masked), the vLLM version and the GPU, as far as they are known, and the policy and
    pins it was reached under (a set reached under `default` may quantize; `keep-quality` never)."""
    blob = json.dumps([model, user_args, vllm_version, gpu, policy, sorted(pinned)])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


Edit = tuple[str, str, str | None]


def _edits_of(record: object) -> list[Edit]:
    """A remembered record's edits: `[["set", FLAG, VALUE|null] | ["remove", FLAG, null], ...]`."""
    if not isinstance(record, dict) or not isinstance(record.get("edits"), list):
        raise ValueError("not a record with a list of edits")
    edits: list[Edit] = []
    for edit in record["edits"]:
        ok = isinstance(edit, list) and len(edit) == 3 and edit[0] in ("set", "remove")
        ok = ok and isinstance(edit[1], str) and re.fullmatch(r"--?[A-Za-z][\w.-]*", edit[1]) is not None
        if not ok or not (edit[2] is None or (isinstance(edit[2], str) and edit[2].strip())):
            raise ValueError(f"an edit is not [set|remove, FLAG, VALUE or null]: {json.dumps(edit)[:80]}")
        edits.append((edit[0], edit[1], edit[2]))
    return edits


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class StateDir:
    """Owns one state directory for the life of a `serve`; only one guard may hold it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.logs = path / "logs"
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self._lock_fd = -1
        self.warnings: list[str] = []  # what the state had wrong, for the guard to say

    def open(self) -> None:
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise GuardError(
                f"the state directory {self.path} is not writable: {exc.strerror}",
                ExitCode.USAGE,
                hint="pass --state-dir DIR (or VLLM_GUARD_STATE_DIR) pointing at a writable folder",
            ) from None
        fd = os.open(self.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise GuardError(
                f"another vllm-guard (pid {holder}) holds the state directory {self.path}",
                ExitCode.CANNOT_START,
                hint="stop it first, or give this one its own --state-dir",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd
        self._prune_logs()
        self._end_torn_journal()

    def _end_torn_journal(self) -> None:
        """A guard killed mid-write can leave the journal's last line torn; this run's events
        must not be glued onto it (the torn line itself is kept, and skipped when read)."""
        with contextlib.suppress(OSError), open(self.path / "journal.jsonl", "rb+") as journal:
            journal.seek(0, os.SEEK_END)
            if journal.tell() > 0:
                journal.seek(-1, os.SEEK_END)
                if journal.read(1) != b"\n":
                    journal.write(b"\n")

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def attempt_log(self, attempt: int) -> Path:
        return self.logs / f"{self.run_id}-attempt-{attempt}.log"

    def record(self, event: journal.Event) -> None:
        """Append one event to the journal; the caller passes values already masked."""
        line = json.dumps({"run": self.run_id, **journal.as_json(event)}, ensure_ascii=False) + "\n"
        fd = os.open(self.path / "journal.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one write with O_APPEND: a line is never torn
        finally:
            os.close(fd)

    # --- vLLM's processes, so a guard that was killed leaves nothing the next one cannot find ---

    def record_processes(self, processes: dict[int, float], shm: Collection[str] = ()) -> None:
        """The pids (with their start times) of the running attempt's tree, replacing the last
        record; a recycled pid has another start time, so it is never taken for one of these.
        `shm`: the /dev/shm segments the tree uses, to remove once it is gone and nobody uses them."""
        body = {
            "guard": os.getpid(),
            "run": self.run_id,
            "processes": sorted(processes.items()),
            "shm": sorted(shm),
        }
        _write_atomically(self.path / PROCESSES, json.dumps(body))

    def clear_processes(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / PROCESSES).unlink()

    def recorded_processes(self, *, set_aside: bool = True) -> list[tuple[int, float]]:
        """What the previous guard recorded and did not clear (it was killed, or its machine
        went down); a record that cannot be read is set aside (by who may change the
        directory: `status` reads beside a running guard), not trusted."""
        path = self.path / PROCESSES
        try:
            data = json.loads(path.read_text())
            entries = [(int(pid), float(started)) for pid, started in data["processes"]]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if not set_aside:
                return []
            aside = path.with_name(f"{PROCESSES}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self.warnings.append(f"{path} could not be read ({exc}); set aside as {aside.name}")
            return []
        return entries

    def recorded_shm(self) -> list[str]:
        """The /dev/shm segments the previous guard recorded as its vLLM's (plain names only)."""
        try:
            names = json.loads((self.path / PROCESSES).read_text()).get("shm", [])
        except (OSError, ValueError, AttributeError):
            return []
        if not isinstance(names, list):
            return []
        return [n for n in names if isinstance(n, str) and n and "/" not in n and n not in (".", "..")]

    def recorded_guard(self) -> tuple[int, float] | None:
        """The pid of the guard that wrote the process record, and when it last wrote it."""
        path = self.path / PROCESSES
        try:
            guard = json.loads(path.read_text()).get("guard")
            written = path.stat().st_mtime
        except (OSError, ValueError, AttributeError):
            return None
        return (guard, written) if isinstance(guard, int) else None

    # --- flags that reached ready, so the next start need not crash through the ladder again ---

    def known_good(self, *, set_aside: bool = True) -> dict[str, Any]:
        """All remembered flag sets; a file that cannot be read is not trusted, and set aside
        (only by who may change the directory: `status` reads beside a running guard)."""
        return self._read_records(KNOWN_GOOD, "flag sets", set_aside=set_aside)

    def _read_records(self, name: str, what: str, *, set_aside: bool) -> dict[str, Any]:
        """A file of `{key: {...}}` records; one that cannot be read is set aside, never trusted."""
        path = self.path / name
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ValueError(f"not an object of {what}")
            return data
        except (FileNotFoundError, NotADirectoryError):
            return {}
        except (OSError, ValueError) as exc:
            if not set_aside:
                self.warnings.append(f"{path} could not be read ({exc})")
                return {}
            aside = path.with_name(f"{name}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self.warnings.append(f"{path} could not be read ({exc}); set aside as {aside.name}")
            return {}

    # --- what vLLM measured of its memory at each start, for the next preflight (measured.py) ---

    def starts(self, *, set_aside: bool = True) -> dict[str, measured.Start]:
        """The stored starts by key; an entry that is not a start is dropped (and kept beside the
        file when this guard may change the directory), never trusted."""
        from vllm_guard import measured  # noqa: PLC0415 - see the import above

        data = self._read_records(MEASURED, "starts", set_aside=set_aside)
        starts: dict[str, measured.Start] = {}
        bad: dict[str, Any] = {}
        for key, record in data.items():
            try:
                starts[key] = measured.Start.from_json(record)
            except (KeyError, TypeError, ValueError):
                bad[key] = record
        if bad and set_aside:
            aside = self.path / f"{MEASURED}.corrupt-{int(time.time())}"
            with contextlib.suppress(OSError):
                aside.write_text(json.dumps(bad, indent=1, ensure_ascii=False))
            _write_atomically(
                self.path / MEASURED,
                json.dumps({k: s.as_json() for k, s in starts.items()}, indent=1, ensure_ascii=False),
            )
            self.warnings.append(
                f"{len(bad)} stored start(s) in {self.path / MEASURED} set aside as {aside.name}"
            )
        return starts

    def remember_start(self, start: measured.Start) -> None:
        """Keep a start's figures under its key, replacing that key's older start; the newest
        MEASURED_KEEP are kept."""
        from vllm_guard import measured  # noqa: PLC0415 - see the import above

        starts = self.starts()
        starts[measured.key(start.setup, start.flags)] = start
        newest = sorted(starts.items(), key=lambda item: item[1].at)[-MEASURED_KEEP:]
        _write_atomically(
            self.path / MEASURED,
            json.dumps({k: s.as_json() for k, s in newest}, indent=1, ensure_ascii=False),
        )

    def known_good_edits(self, key: str) -> list[Edit] | None:
        """The edits remembered for `key`, or None. An entry that cannot be read is set aside
        (kept in a file beside it) and dropped, never trusted and never a crash at every start."""
        data = self.known_good()
        if key not in data:
            return None
        try:
            return _edits_of(data[key])
        except ValueError as exc:
            aside = self.path / f"{KNOWN_GOOD}.corrupt-{int(time.time())}"
            with contextlib.suppress(OSError):
                aside.write_text(json.dumps({key: data[key]}, indent=1, ensure_ascii=False))
            self.remember(key, None)
            self.warnings.append(
                f"a remembered flag set in {self.path / KNOWN_GOOD} was set aside as {aside.name}: {exc}"
            )
            return None

    def remember(self, key: str, record: dict[str, Any] | None) -> None:
        """Keep (or with None drop) the flag set for `key`; the file is replaced atomically."""
        data = self.known_good()
        if record is None:
            if data.pop(key, None) is None:
                return
        else:
            data[key] = record
        _write_atomically(self.path / KNOWN_GOOD, json.dumps(data, indent=1, ensure_ascii=False))

    def forget(self, model: str | None) -> int:
        """Drop the remembered flag sets of `model` (all of them with None); how many went."""
        data = self.known_good()
        if not data:
            return 0
        keep = {k: v for k, v in data.items() if model is not None and v.get("model") != model}
        _write_atomically(self.path / KNOWN_GOOD, json.dumps(keep, indent=1, ensure_ascii=False))
        return len(data) - len(keep)

    def forget_starts(self, model: str | None) -> int:
        """Drop what the starts of `model` (all with None) measured; how many went."""
        starts = self.starts()
        if not starts:
            return 0
        keep = {k: s for k, s in starts.items() if model is not None and s.model != model}
        _write_atomically(
            self.path / MEASURED,
            json.dumps({k: s.as_json() for k, s in keep.items()}, indent=1, ensure_ascii=False),
        )
        return len(starts) - len(keep)

    def _prune_logs(self) -> None:
        files = sorted(self.logs.glob("*.log*"), key=lambda p: p.stat().st_mtime)
        for old in files[:-KEEP_LOG_FILES]:
            with contextlib.suppress(OSError):
                old.unlink()


def attempts(journal: Path) -> list[dict[str, Any]]:
    """The attempts of the last run in a journal, each its events merged: `argv`, `started_at`,
    `kind` (None while running or ready, "stopped" when stopped on request), `evidence`,
    `decision`. Lines that do not parse are skipped: a torn journal still shows what it can."""
    events: list[dict[str, Any]] = []
    try:
        text = journal.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError):
        return []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and "attempt" in event:
                events.append(event)
    if not events:
        return []
    run = events[-1].get("run")
    merged: dict[int, dict[str, Any]] = {}
    for event in (e for e in events if e.get("run") == run):
        entry = merged.setdefault(
            int(event["attempt"]),
            {"attempt": event["attempt"], "kind": None, "evidence": None, "decision": None},
        )
        kind = "stopped" if event.get("event") == "stopped" else event.get("kind", entry["kind"])
        entry.update({k: v for k, v in event.items() if k not in ("event", "run")})
        entry["kind"] = kind
    return [merged[n] for n in sorted(merged)]
