"""The state directory: each attempt's log file; per serving endpoint (a port, a socket) its
guard's lock, its attempt journal (JSON lines) and its record of vLLM's processes; shared by all,
the flag sets that reached ready and what starts measured.

    STATE/known_good.json, STATE/measured.json, STATE/logs/
    STATE/serving/port-8000/{lock, journal.jsonl, processes.json}

Several guards share one state directory (two models on two ports is ordinary); one endpoint has
one guard."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_guard import journal
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.shared_state import Kind, SharedState

if TYPE_CHECKING:  # measured.py is read only where starts are: not on the way to vLLM's exec
    from vllm_guard import measured

KEEP_LOG_FILES = 50
SERVING = "serving"
LOCK = "lock"
JOURNAL = "journal.jsonl"
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


@dataclass(frozen=True, slots=True)
class Remembered:
    """A flag set remembered as reaching ready: its edits of the user's flags, and where it was
    learned when not in this state directory (another guard's, kept in the shared state)."""

    edits: list[Edit]
    learned_elsewhere: str | None = None


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def endpoint_dir(path: Path, endpoint: str) -> Path:
    """The folder of the guard serving on `endpoint` ("port 8000": serving/port-8000; "port 8000
    on 10.0.0.5": serving/port-8000-on-10.0.0.5; a socket's path is hashed)."""
    kind, _, where = endpoint.partition(" ")
    port, _, host = where.partition(" on ")
    if kind == "port" and port.isdigit():
        folder = f"port-{int(port)}"  # 08001 and 8001 are one port
        if host:
            # a name that is a host's where it can be (an IPv6 address's colons are not portable)
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", host)
            folder += f"-on-{safe}" if safe == host else f"-on-{safe}-{_digest(host)}"
        return path / SERVING / folder
    return path / SERVING / f"{kind}-{_digest(where)}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Serving:
    """One endpoint's guard as the state directory knows it: its lock's record, and whether a
    guard holds that lock now."""

    folder: Path
    endpoint: str
    pid: int | None
    model: str | None
    since: str | None
    running: bool


def serving(path: Path) -> list[Serving]:
    """Every endpoint a guard has served from this state directory, the most recent first (a
    state directory written by a guard before per-endpoint folders is one more, its root)."""
    folders = sorted((path / SERVING).glob("*/"), key=lambda f: _mtime(f / JOURNAL), reverse=True)
    if (path / JOURNAL).is_file() or (path / PROCESSES).is_file():
        folders.append(path)
    found = []
    for folder in folders:
        record = _lock_record(folder / LOCK)
        found.append(
            Serving(
                folder,
                str(record.get("endpoint") or _endpoint_of(folder, path)),
                record.get("pid") if isinstance(record.get("pid"), int) else None,
                record.get("model") if isinstance(record.get("model"), str) else None,
                record.get("since") if isinstance(record.get("since"), str) else None,
                _held(folder / LOCK),
            )
        )
    return found


def _endpoint_of(folder: Path, path: Path) -> str:
    """An endpoint's name where its lock says none: "port 8000" from serving/port-8000."""
    if folder == path:
        return "an endpoint of an earlier vllm-guard"
    kind, _, where = folder.name.partition("-")
    if kind != "port":
        return folder.name
    port, _, host = where.partition("-on-")
    return f"port {port} on {host}" if host else f"port {port}"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _lock_record(path: Path) -> dict[str, Any]:
    """What the guard holding a lock wrote in it: JSON, or (before 2026-12) its pid alone."""
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return {}
    if text.isdigit():
        return {"pid": int(text)}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _lock_soon(fd: int, tries: int = 10, pause_s: float = 0.02) -> None:
    """Take the lock exclusively, or raise BlockingIOError: a `status` that looks at it (a
    shared lock for a moment) must not make a starting guard think it is held."""
    for _ in range(tries - 1):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(pause_s)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _held(path: Path) -> bool:
    """Whether a guard holds the lock at `path` now (flock is released when its holder dies)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
    return False


class StateDir:
    """One state directory, for the life of a `serve` on one endpoint, or for a command that
    reads what all endpoints share (`endpoint` None). One guard holds an endpoint at a time."""

    def __init__(
        self, path: Path, endpoint: str | None = None, *, own: Path | None = None, shared: Path | None = None
    ) -> None:
        self.path = path
        self.endpoint = endpoint
        # the endpoint's own files (`own`: a reader's choice of one, as `serving` lists them); the
        # root's for a reader of the shared files, and a guard's from before per-endpoint folders
        self.own = own or (endpoint_dir(path, endpoint) if endpoint else path)
        # each endpoint prunes its own attempt logs: a guard in a crash loop never deletes the
        # live log of another endpoint's guard
        self.logs = self.own / "logs"
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self._lock_fd = -1
        self.warnings: list[str] = []  # what the state had wrong, for the guard to say
        self._shared_held = False
        # what several guards learn together (--shared-state): written beside this directory's
        # own files, and read with them
        self.fleet = SharedState(shared, self.warnings) if shared is not None else None

    @property
    def journal_path(self) -> Path:
        return self.own / JOURNAL

    @contextlib.contextmanager
    def _shared(self) -> Iterator[None]:
        """Held across a read-modify-write of a file every endpoint's guard shares, so that two
        guards remembering at once lose neither's record."""
        if self._shared_held:  # taken already, further up this call (flock is per open file)
            yield
            return
        try:
            fd = os.open(self.path / "shared.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:  # a reader's directory that is not there, or not ours to write
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._shared_held = True
            yield
        finally:
            self._shared_held = False
            os.close(fd)

    def open(self, model: str | None = None) -> None:
        try:
            self.logs.mkdir(parents=True, exist_ok=True)
            self.own.mkdir(parents=True, exist_ok=True)
            # a name of its own: two guards starting at once must not delete each other's probe
            probe = self.path / f".write-test.{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink(missing_ok=True)
        except OSError as exc:
            raise GuardError(
                f"the state directory {self.path} is not writable: {exc.strerror}",
                ExitCode.USAGE,
                hint="pass --state-dir DIR (or VLLM_GUARD_STATE_DIR) pointing at a writable folder",
            ) from None
        fd = os.open(self.own / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            _lock_soon(fd)
        except BlockingIOError:
            os.close(fd)
            raise self._held_by(self.own, self.endpoint) from None
        # a port on every address and the same port on one address cannot both be served
        for folder in self._overlapping():
            if _held(folder / LOCK):
                os.close(fd)
                raise self._held_by(
                    folder, _lock_record(folder / LOCK).get("endpoint") or _endpoint_of(folder, self.path)
                )
        os.ftruncate(fd, 0)
        record = {"pid": os.getpid(), "endpoint": self.endpoint, "model": model}
        record["since"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        os.write(fd, json.dumps(record, ensure_ascii=False).encode())
        self._lock_fd = fd
        if self.endpoint:
            self._adopt_unversioned()
        if self.fleet is not None:
            self.fleet.open()
        self._prune_logs()
        self._end_torn_journal()

    def _held_by(self, folder: Path, endpoint: str | None) -> GuardError:
        holder = _lock_record(folder / LOCK)
        who = f"pid {holder['pid']}" if "pid" in holder else "another process"
        serving_what = f", serving {holder['model']}" if holder.get("model") else ""
        where = f"{endpoint} in " if endpoint else ""
        return GuardError(
            f"another vllm-guard ({who}{serving_what}) holds {where}the state directory {self.path}",
            ExitCode.CANNOT_START,
            hint="stop it first, or serve on another --port"
            if endpoint
            else "stop it first, or give this one its own --state-dir",
        )

    def _overlapping(self) -> list[Path]:
        """The folders of the endpoints this one's vLLM could not serve beside: for a port on
        every address, that port on any one address, and the other way round."""
        if not self.endpoint or not self.endpoint.startswith("port "):
            return []
        port, on, _ = self.endpoint.partition(" on ")
        if on:
            return [endpoint_dir(self.path, port)]
        return sorted((self.path / SERVING).glob(f"{endpoint_dir(self.path, port).name}-on-*"))

    def _adopt_unversioned(self) -> None:
        """A record of vLLM's processes this guard's endpoint may have left under an older name:
        at the root (a guard from before per-endpoint folders), or, for a port on one host, the
        port's own folder (a guard from before hosts were told apart). One killed outright left
        it there. Where no guard holds that folder now, this one takes the record over and
        removes what it names."""
        folders = [self.path]
        if self.endpoint and " on " in self.endpoint:
            folders.append(endpoint_dir(self.path, self.endpoint.partition(" on ")[0]))
        for folder in folders:
            legacy = folder / PROCESSES
            if not legacy.is_file() or (self.own / PROCESSES).exists() or _held(folder / LOCK):
                continue
            with contextlib.suppress(OSError):
                os.replace(legacy, self.own / PROCESSES)

    def _end_torn_journal(self) -> None:
        """A guard killed mid-write can leave the journal's last line torn; this run's events
        must not be glued onto it (the torn line itself is kept, and skipped when read)."""
        with contextlib.suppress(OSError), open(self.journal_path, "rb+") as journal:
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
        fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
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
        _write_atomically(self.own / PROCESSES, json.dumps(body))

    def clear_processes(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.own / PROCESSES).unlink()

    def recorded_processes(self, *, set_aside: bool = True) -> list[tuple[int, float]]:
        """What the previous guard recorded and did not clear (it was killed, or its machine
        went down); a record that cannot be read is set aside (by who may change the
        directory: `status` reads beside a running guard), not trusted."""
        path = self.own / PROCESSES
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
            names = json.loads((self.own / PROCESSES).read_text()).get("shm", [])
        except (OSError, ValueError, AttributeError):
            return []
        if not isinstance(names, list):
            return []
        return [n for n in names if isinstance(n, str) and n and "/" not in n and n not in (".", "..")]

    def recorded_guard(self) -> tuple[int, float] | None:
        """The pid of the guard that wrote the process record, and when it last wrote it."""
        path = self.own / PROCESSES
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

    def starts(self, *, set_aside: bool = True, shared: bool = True) -> dict[str, measured.Start]:
        """The stored starts by key, the shared state's too where newer (`shared`); an entry that
        is not a start is dropped (and kept beside the file when this guard may change the
        directory), never trusted."""
        from vllm_guard import measured  # noqa: PLC0415 - see the import above

        data = self._read_records(MEASURED, "starts", set_aside=set_aside)
        starts: dict[str, measured.Start] = {}
        bad: dict[str, Any] = {}
        for key, record in data.items():
            try:
                starts[key] = measured.Start.from_json(record)
            except (KeyError, TypeError, ValueError):
                bad[key] = record
        if self.fleet is not None and shared:
            self._add_learned(self.fleet, starts, set_aside=set_aside)
        if bad and set_aside:
            aside = self.path / f"{MEASURED}.corrupt-{int(time.time())}"
            with contextlib.suppress(OSError):
                aside.write_text(json.dumps(bad, indent=1, ensure_ascii=False))
            with self._shared():
                # read again under the lock: a start another guard kept meanwhile stays
                now = self._read_records(MEASURED, "starts", set_aside=False)
                keep = {k: v for k, v in now.items() if k not in bad}
                _write_atomically(self.path / MEASURED, json.dumps(keep, indent=1, ensure_ascii=False))
            self.warnings.append(
                f"{len(bad)} stored start(s) in {self.path / MEASURED} set aside as {aside.name}"
            )
        return starts

    @staticmethod
    def _add_learned(fleet: SharedState, starts: dict[str, measured.Start], *, set_aside: bool) -> None:
        """The shared state's starts into `starts`, where newer than this directory's own."""
        from vllm_guard import measured  # noqa: PLC0415 - see the import above

        for key, learned in fleet.all("measured", set_aside=set_aside):
            try:
                start = measured.Start.from_json(learned.record)
            except (KeyError, TypeError, ValueError) as exc:
                fleet.set_aside(learned.path, exc, keep=not set_aside)
                continue
            if key not in starts or start.at > starts[key].at:
                starts[key] = start

    def remember_start(self, start: measured.Start) -> None:
        """Keep a start's figures under its key, replacing that key's older start, here (the
        newest MEASURED_KEEP) and in the shared state."""
        from vllm_guard import measured  # noqa: PLC0415 - see the import above

        key = measured.key(start.setup, start.flags)
        with self._shared():
            starts = self.starts(shared=False)  # the shared state's are not copied here
            starts[key] = start
            newest = sorted(starts.items(), key=lambda item: item[1].at)[-MEASURED_KEEP:]
            _write_atomically(
                self.path / MEASURED,
                json.dumps({k: s.as_json() for k, s in newest}, indent=1, ensure_ascii=False),
            )
        if self.fleet is not None:
            self.fleet.write("measured", key, start.as_json())

    def remembered(self, key: str) -> Remembered | None:
        """The flag set remembered for `key`: this directory's own, or the shared state's where
        that is newer (another replica learned it since). An entry that cannot be read is set
        aside (kept in a file beside it) and dropped, never trusted and never a crash at every start."""
        own = self.known_good().get(key)
        fleet = self.fleet
        learned = fleet.read("known_good", key) if fleet is not None else None
        newer = learned is not None and (own is None or learned.at > str(own.get("at") or ""))
        if fleet is not None and learned is not None and newer:
            try:
                return Remembered(_edits_of(learned.record), learned.origin())
            except ValueError as exc:
                fleet.set_aside(learned.path, exc)
        if own is None:
            return None
        try:
            return Remembered(_edits_of(own))
        except ValueError as exc:
            aside = self.path / f"{KNOWN_GOOD}.corrupt-{int(time.time())}"
            with contextlib.suppress(OSError):
                aside.write_text(json.dumps({key: own}, indent=1, ensure_ascii=False))
            self.remember(key, None, share=False)
            self.warnings.append(
                f"a remembered flag set in {self.path / KNOWN_GOOD} was set aside as {aside.name}: {exc}"
            )
            return None

    def remember(self, key: str, record: dict[str, Any] | None, *, share: bool = True) -> None:
        """Keep (or with None drop) the flag set for `key`, here and in the shared state; each
        file is replaced atomically. OSError: the shared state could not be written."""
        with self._shared():
            data = self.known_good()
            if record is None:
                dropped = data.pop(key, None) is not None
            else:
                data[key] = record
            if record is not None or dropped:
                _write_atomically(self.path / KNOWN_GOOD, json.dumps(data, indent=1, ensure_ascii=False))
        if self.fleet is not None and share:
            if record is None:
                self.fleet.remove("known_good", key)
            else:
                self.fleet.write("known_good", key, record)

    def forget(self, model: str | None) -> int:
        """Drop the remembered flag sets of `model` (all of them with None), here and in the
        shared state; how many went (one key kept in both counts once)."""
        gone: set[str] = set()
        with self._shared():
            data = self.known_good()
            keep = {k: v for k, v in data.items() if model is not None and v.get("model") != model}
            if data:
                _write_atomically(self.path / KNOWN_GOOD, json.dumps(keep, indent=1, ensure_ascii=False))
            gone |= data.keys() - keep.keys()
        return len(gone | self._forget_shared("known_good", model))

    def forget_starts(self, model: str | None) -> int:
        """Drop what the starts of `model` (all with None) measured, here and in the shared
        state; how many went."""
        gone: set[str] = set()
        with self._shared():
            starts = self.starts(shared=False)  # the shared state's are not copied here
            keep = {k: s for k, s in starts.items() if model is not None and s.model != model}
            if starts:
                _write_atomically(
                    self.path / MEASURED,
                    json.dumps({k: s.as_json() for k, s in keep.items()}, indent=1, ensure_ascii=False),
                )
            gone |= starts.keys() - keep.keys()
        return len(gone | self._forget_shared("measured", model))

    def _forget_shared(self, kind: Kind, model: str | None) -> set[str]:
        """The keys of `model`'s records (all with None) removed from the shared state."""
        fleet = self.fleet
        if fleet is None:
            return set()
        return {
            key
            for key, learned in list(fleet.all(kind))
            if (model is None or learned.record.get("model") == model) and fleet.remove(kind, key)
        }

    def _prune_logs(self) -> None:
        files = sorted(self.logs.glob("*.log*"), key=_mtime)  # a file gone meanwhile sorts first
        for old in files[:-KEEP_LOG_FILES]:
            with contextlib.suppress(OSError):
                old.unlink()


def attempts(journal: Path) -> list[dict[str, Any]]:
    """The attempts of the last run in a journal, each its events merged: `argv`, `started_at`,
    `kind` (None while running or ready, "stopped" when stopped on request), `evidence`,
    `decision`, `retries` (its engine's retries in place, fault tolerance), `advice` (the
    advisor's conditions that hold). Lines that do not parse are skipped: a torn journal still
    shows what it can."""
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
            {
                "attempt": event["attempt"],
                "kind": None,
                "evidence": None,
                "decision": None,
                "retries": [],
                "advice": [],
            },
        )
        if event.get("event") == "retried":
            # the attempt went on: its retries are a list of their own, not its end
            entry["retries"].append({k: v for k, v in event.items() if k not in ("event", "run", "attempt")})
            continue
        if event.get("event") == "advice":  # what holds now: started and not cleared since
            entry["advice"] = [a for a in entry["advice"] if a.get("condition") != event.get("condition")]
            if event.get("holds"):
                entry["advice"].append({k: event.get(k) for k in ("condition", "evidence", "fix")})
            continue
        kind = "stopped" if event.get("event") == "stopped" else event.get("kind", entry["kind"])
        entry.update({k: v for k, v in event.items() if k not in ("event", "run")})
        entry["kind"] = kind
    return [merged[n] for n in sorted(merged)]
