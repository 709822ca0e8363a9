"""Mine every failure message vLLM raises or logs, from the source of many releases.

Why: the catalogue in vllm_guard/failures.py matches the words vLLM prints when it dies, and vLLM
rewords those messages between minors (the KV-cache "max seq len" error alone has had three
wordings). Reading captured logs only shows the wordings someone happened to hit; the source shows
all of them. This script records, for every release since 0.4.1, each
`raise SomeError(<message>)`, `assert <condition>, <message>` and
`logger.error/exception/critical(<message>)` in the `vllm/`
package as a template, so that

* tests/diagnosis/test_vllm_messages.py can hold every catalogue phrase that cites a vLLM file
  against the messages of that file, and
* `--uncovered --new-since OLD` lists what a new release says when it fails that no signature
  matches yet, nor a sentence of vllm_guard/refusals.py, nor classify()'s raise rule (a ValueError,
  NotImplementedError, TypeError or KeyError vLLM raises is invalid_args when its traceback shows);
  those of the rule's that speak of memory, the network or time are listed too, marked, since the
  rule would call them permanent: the review to do when a release is added (after
  scripts/make_refusals.py has taken in its configuration refusals).

    .venv/bin/python scripts/mine_vllm_messages.py                       # all of VERSIONS
    .venv/bin/python scripts/mine_vllm_messages.py --release 0.35.0      # add one release
    .venv/bin/python scripts/mine_vllm_messages.py --uncovered --new-since 0.34.0

Templates: string literals and implicit concatenation as written; `+` concatenation with each
non-string operand as "{}"; f-string fields, `%` conversions and `.format` fields as "{}" (a
logger call's `%` conversions only when it passes arguments, as logging does). A message held in
a local variable assigned once in the same function (`msg = f"..."; raise ValueError(msg)`), a
common vLLM idiom, is resolved, also as an f-string field (`f"{msg} To allow overriding..."`);
any other non-string message (a parameter, `str(e)`) is skipped.

Getting the source: `pip download --no-binary :all:` fetches the sdist and fails to build its
metadata (vLLM's setup.py imports torch), but with `--no-clean` and TMPDIR in the cache the tree
pip unpacked stays, and its `vllm/**/*.py` are what we keep. A release without an sdist comes as
a wheel, read with zipfile. Either way the cache keeps one small zip of `vllm/**/*.py` a release.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import string
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from vllm_guard.failures import CATALOGUE, REFUSING_CLASSES, Signature
from vllm_guard.refusals import IMPORT_FAILURES, REFUSALS

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "diagnosis" / "upstream" / "vllm_messages.json"
CACHE = Path.home() / ".cache" / "vllm-guard" / "vllm-messages"

# Every release from 0.4.1 (`pip index versions vllm`; pip finds no sdist or wheel of 0.4.0 or
# 0.4.0.post1 it can fetch): a message may live in a minor's first patch releases only (0.11.0's
# "Failed to create unquantized linear weights" is gone from 0.11.2), and the logs people post
# come from every one of them.
VERSIONS = (
    "0.4.1",
    "0.4.2",
    "0.4.3",
    "0.5.0",
    "0.5.0.post1",
    "0.5.1",
    "0.5.2",
    "0.5.3",
    "0.5.3.post1",
    "0.5.4",
    "0.5.5",
    "0.6.0",
    "0.6.1",
    "0.6.1.post1",
    "0.6.1.post2",
    "0.6.2",
    "0.6.3",
    "0.6.3.post1",
    "0.6.4",
    "0.6.4.post1",
    "0.6.5",
    "0.6.6",
    "0.6.6.post1",
    "0.7.0",
    "0.7.1",
    "0.7.2",
    "0.7.3",
    "0.8.0",
    "0.8.1",
    "0.8.2",
    "0.8.3",
    "0.8.4",
    "0.8.5",
    "0.8.5.post1",
    "0.9.0",
    "0.9.0.1",
    "0.9.1",
    "0.9.2",
    "0.10.0",
    "0.10.1",
    "0.10.1.1",
    "0.10.2",
    "0.11.0",
    "0.11.1",
    "0.11.2",
    "0.12.0",
    "0.13.0",
    "0.14.0",
    "0.14.1",
    "0.15.0",
    "0.15.1",
    "0.16.0",
    "0.17.0",
    "0.17.1",
    "0.18.0",
    "0.18.1",
    "0.19.0",
    "0.19.1",
    "0.20.0",
    "0.20.1",
    "0.20.2",
    "0.21.0",
    "0.22.0",
    "0.22.1",
    "0.23.0",
    "0.24.0",
    "0.25.0",
    "0.25.1",
    "0.26.0",
    "0.27.0",
    "0.27.1",
    "0.28.0",
    "0.29.0",
    "0.30.0",
    "0.31.0",
    "0.32.0",
    "0.33.0",
    "0.34.0",
)

LOG_LEVELS = frozenset({"error", "exception", "critical", "fatal"})
SKIPPED_DIRS = frozenset({"tests", "benchmarks"})
# One row of the JSON file: [path, call, template, versions].
COLUMNS = ("path", "call", "template", "versions")

# A printf conversion (`%s`, `%(name)d`, `%-8.3f`) or an escaped `%%`.
_PERCENT = re.compile(r"%%|%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa]")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True, order=True)
class Message:
    """One failure message of one file: `call` is "raise ValueError" or "logger.error"."""

    path: str
    call: str
    template: str


# --------------------------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------------------------


def _percent(text: str) -> str:
    return _PERCENT.sub(lambda m: "%" if m.group() == "%%" else "{}", text)


def _format(text: str) -> str:
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError:  # not a valid format string: .format() would raise; keep the words
        return text
    return "".join(literal + ("{}" if field is not None else "") for literal, field, _, _ in parts)


def template_of(node: ast.expr, names: Mapping[str, ast.expr] | None = None) -> str | None:
    """`node` as a message template, or None when it is not a string expression.

    `names` maps local variables assigned once to their value, to resolve `raise X(msg)`.
    """
    names = names or {}
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                out.append(part.value)
            elif (
                # f"{msg} To allow overriding...": a local message inlined, as printed
                isinstance(part, ast.FormattedValue)
                and part.conversion == -1
                and part.format_spec is None
                and isinstance(part.value, ast.Name)
                and part.value.id in names
                and (inner := template_of(part.value, names)) is not None
            ):
                out.append(inner)
            else:
                out.append("{}")
        return "".join(out)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = template_of(node.left, names), template_of(node.right, names)
        if left is None and right is None:
            return None
        return (left if left is not None else "{}") + (right if right is not None else "{}")
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        text = template_of(node.left, names)
        return None if text is None else _percent(text)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and (text := template_of(node.func.value, names)) is not None
    ):
        return _format(text)
    if isinstance(node, ast.Name) and node.id in names:
        # The assigned value, resolved without `names` again so that `msg = msg + x` cannot loop.
        return template_of(names[node.id])
    return None


# --------------------------------------------------------------------------------------------
# Finding the calls
# --------------------------------------------------------------------------------------------


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _assigned_once(scope: ast.AST) -> dict[str, ast.expr]:
    """Local names assigned exactly once in `scope` (not in nested functions), with the value."""
    counts: dict[str, int] = {}
    values: dict[str, ast.expr] = {}
    for node in _own_nodes(scope):
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            targets, value = [node.target], node.value
            if isinstance(node, ast.AugAssign):
                value = None  # `msg += ...` makes the first value incomplete
        elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            targets = [node.target]
        elif isinstance(node, ast.NamedExpr):
            targets, value = [node.target], node.value
        for target in targets:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    counts[name.id] = counts.get(name.id, 0) + (1 if value is not None else 2)
                    if value is not None and name is target:
                        values[name.id] = value
    return {name: values[name] for name, n in counts.items() if n == 1 and name in values}


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of `scope`, not descending into nested functions, classes and lambdas."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))


def _message_arg(call: ast.Call) -> ast.expr | None:
    if call.args and not isinstance(call.args[0], ast.Starred):
        return call.args[0]
    for kw in call.keywords:
        if kw.arg in {"msg", "message", "detail"}:
            return kw.value
    return None


def _found(node: ast.AST, names: Mapping[str, ast.expr]) -> tuple[str, str] | None:
    """(call, template) when `node` raises or logs a failure message."""
    if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
        cls = _last_name(node.exc.func)
        arg = _message_arg(node.exc)
        # An exception class is CamelCase; `raise self._error(...)` builds one we cannot name.
        if cls is None or not cls[:1].isupper() or arg is None:
            return None
        text = template_of(arg, names)
        return None if text is None else (f"raise {cls}", text)
    if isinstance(node, ast.Assert) and node.msg is not None:
        # `assert cond, "message"`: an AssertionError with that message (vLLM checks divisibility
        # and backend support this way)
        text = template_of(node.msg, names)
        return None if text is None else ("assert", text)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr.removesuffix("_once") in LOG_LEVELS
        and "log" in (_last_name(node.func.value) or "").lower()
        and node.args
    ):
        first = node.args[0]
        text = template_of(first, names)
        if text is None:
            return None
        # logging applies `%` only when given arguments; then a literal `%%` is one `%`.
        if len(node.args) > 1 and not (isinstance(first, ast.BinOp) and isinstance(first.op, ast.Mod)):
            text = _percent(text)
        return (f"logger.{node.func.attr}", text)
    return None


def messages_in(source: str, path: str) -> set[Message]:
    """Every failure message of one file's source; a file that does not parse has none."""
    tree = ast.parse(source)
    found: set[Message] = set()
    scopes: list[ast.AST] = [tree]
    while scopes:
        scope = scopes.pop()
        names = _assigned_once(scope) if not isinstance(scope, ast.Module) else {}
        for node in _own_nodes(scope):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
                scopes.append(node)
                continue
            hit = _found(node, names)
            if hit is not None:
                found.add(Message(path, *hit))
    return found


def package_path(name: str) -> str | None:
    """`vllm-0.5.5/vllm/x.py` or `vllm/x.py` as `vllm/x.py`; None for files we do not read."""
    parts = name.split("/")
    if parts and parts[0] != "vllm":
        parts = parts[1:]
    if len(parts) < 2 or parts[0] != "vllm" or not name.endswith(".py"):
        return None
    if SKIPPED_DIRS.intersection(parts[:-1]):
        return None
    return "/".join(parts)


# --------------------------------------------------------------------------------------------
# Downloading a release
# --------------------------------------------------------------------------------------------


def _pip() -> list[str]:
    venv_pip = REPO / ".venv" / "bin" / "pip"
    return [str(venv_pip)] if venv_pip.exists() else [sys.executable, "-m", "pip"]


def _pip_run(args: list[str], log: Path, env: Mapping[str, str] | None = None) -> None:
    with log.open("a") as fh:
        subprocess.run(
            [*_pip(), "download", "--no-deps", *args],
            env=dict(env or os.environ),
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=3600,
        )


def _zip_tree(root: Path, archive: Path) -> None:
    partial = archive.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
        for py in sorted((root / "vllm").rglob("*.py")):
            out.write(py, py.relative_to(root).as_posix())
    partial.rename(archive)


def _zip_wheel(wheel: Path, archive: Path) -> None:
    partial = archive.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as whl, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
        for name in whl.namelist():
            if name.startswith("vllm/") and name.endswith(".py"):
                out.writestr(name, whl.read(name))
    partial.rename(archive)


def fetch(version: str, cache: Path) -> Path:
    """A zip of release `version`'s `vllm/**/*.py`, downloaded once into `cache`."""
    archive = cache / f"vllm-{version}.zip"
    if archive.exists():
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    log = cache / f"vllm-{version}.log"
    log.write_text("")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        work = Path(tmp)
        env = {**os.environ, "TMPDIR": str(work)}
        _pip_run(
            [
                "--no-binary",
                ":all:",
                "--no-build-isolation",
                "--no-clean",
                f"vllm=={version}",
                "-d",
                str(work / "dl"),
            ],
            log,
            env,
        )
        for tree in sorted(work.glob("pip-download-*/vllm_*")):
            if (tree / "vllm" / "__init__.py").exists():
                _zip_tree(tree, archive)
                return archive
        # No sdist: the wheel (hundreds of MB) is read straight from its zip, then dropped.
        # pip does not widen an explicit --platform to older glibc tags: name each one.
        platforms = [f"manylinux_2_{glibc}_x86_64" for glibc in range(17, 40)]
        _pip_run(
            [
                *("--only-binary", ":all:", "--python-version", "3.11"),
                *(arg for p in platforms for arg in ("--platform", p)),
                *(f"vllm=={version}", "-d", str(work / "whl")),
            ],
            log,
            env,
        )
        wheels = sorted((work / "whl").glob("vllm-*.whl"))
        if not wheels:
            raise RuntimeError(f"no sdist or wheel of vllm=={version}; see {log}")
        _zip_wheel(wheels[0], archive)
    return archive


def mine_archive(archive: Path) -> tuple[set[Message], list[str]]:
    """The messages of one release's zip, and the files that did not parse."""
    found: set[Message] = set()
    failed: list[str] = []
    with zipfile.ZipFile(archive) as zf:
        for name in sorted(zf.namelist()):
            path = package_path(name)
            if path is None:
                continue
            try:
                found |= messages_in(zf.read(name).decode("utf-8", "replace"), path)
            except (SyntaxError, ValueError, RecursionError):
                failed.append(path)
    return found, failed


def mine(version: str, cache: Path) -> tuple[str, set[Message], list[str]]:
    found, failed = mine_archive(fetch(version, cache))
    return version, found, failed


# --------------------------------------------------------------------------------------------
# The JSON file
# --------------------------------------------------------------------------------------------


def vkey(version: str) -> Version:
    return Version(version)


def compress(have: Iterable[str], mined: Sequence[str]) -> list[str]:
    """The versions in `have` as runs over `mined` (sorted): ["0.5.5-0.9.2", "0.11.2"]."""
    wanted = set(have)
    runs: list[list[str]] = []
    previous = False
    for version in mined:
        if version in wanted:
            if previous:
                runs[-1][1] = version
            else:
                runs.append([version, version])
        previous = version in wanted
    return [first if first == last else f"{first}-{last}" for first, last in runs]


def expand(runs: Iterable[str], mined: Sequence[str]) -> list[str]:
    """The mined versions that `runs` (as `compress` writes them) stand for."""
    out: list[str] = []
    for run in runs:
        first, _, last = run.partition("-")
        i, j = mined.index(first), mined.index(last or first)
        out.extend(mined[i : j + 1])
    return out


Table = dict[Message, set[str]]


def load(path: Path) -> tuple[list[str], Table]:
    data = json.loads(path.read_text())
    mined: list[str] = data["mined"]
    table: Table = {}
    for row in data["messages"]:
        record = dict(zip(data["columns"], row, strict=True))
        message = Message(record["path"], record["call"], record["template"])
        table[message] = set(expand(record["versions"], mined))
    return mined, table


def dump(mined: Iterable[str], table: Table, path: Path) -> None:
    order = sorted(set(mined), key=vkey)
    lines = [
        "{",
        f' "columns": {json.dumps(COLUMNS)},',
        f' "mined": {json.dumps(order)},',
        ' "messages": [',
    ]
    rows = [
        json.dumps([m.path, m.call, m.template, compress(table[m], order)], ensure_ascii=False)
        for m in sorted(table)
    ]
    lines.append(",\n".join(rows))
    lines += [" ]", "}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def mine_versions(versions: Sequence[str], cache: Path, jobs: int) -> tuple[list[str], Table]:
    """Mine each release (a failed download is reported and skipped)."""
    mined: list[str] = []
    table: Table = {}
    # Downloads wait on the network and parsing on the CPU: both go well in parallel.
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = {version: pool.submit(mine, version, cache) for version in versions}
        for version, future in futures.items():
            try:
                _, found, failed = future.result()
            except Exception as exc:  # one release that will not download must not stop the others
                print(f"{version}: FAILED: {exc}", file=sys.stderr)
                continue
            mined.append(version)
            for message in found:
                table.setdefault(message, set()).add(version)
            note = f", {len(failed)} files did not parse: {', '.join(failed[:5])}" if failed else ""
            print(f"{version}: {len(found)} messages{note}", file=sys.stderr)
    return mined, table


# --------------------------------------------------------------------------------------------
# Coverage by the catalogue
# --------------------------------------------------------------------------------------------


def normal(text: str) -> str:
    """Lowercased, whitespace collapsed: how a needle is looked for in a template."""
    return _SPACE.sub(" ", text).strip().lower()


def failure_like(call: str) -> bool:
    if call.startswith("raise ") or call == "assert":
        return True
    return call.removeprefix("logger.").removesuffix("_once") in LOG_LEVELS


def covered(template: str, needle: str, pattern: re.Pattern[str]) -> bool:
    """Whether a signature (its needle, several joined by "|") names a message template."""
    said = normal(template)
    if not any(part in said for part in needle.split("|")):
        return False
    texts = {template, _SPACE.sub(" ", template)}
    return any(pattern.search(t) or pattern.search(t.replace("{}", "0")) for t in texts)


def uncovered(
    table: Table,
    new_since: str | None,
    catalogue: Iterable[Signature] = CATALOGUE,
    refusals: Iterable[tuple[str, str, str]] = (*REFUSALS, *IMPORT_FAILURES),
) -> list[tuple[Message, set[str]]]:
    """The failure-like messages no signature covers and no sentence of refusals.py's tables contains; with
    `new_since`, only those no release up to and including it has."""
    signatures = list(catalogue)
    refused = [piece for piece, _, _ in refusals]
    rows = []
    for message, versions in sorted(table.items()):
        if not failure_like(message.call):
            continue
        if new_since is not None and any(vkey(v) <= vkey(new_since) for v in versions):
            continue
        if any(covered(message.template, s.needle, s.pattern) for s in signatures):
            continue
        said = normal(message.template)
        if any(piece in said for piece in refused):
            continue
        rows.append((message, versions))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=OUT, help="the table to write or read")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where downloaded releases are kept")
    parser.add_argument(
        "--release", action="append", metavar="X", help="mine release X and merge it into the table"
    )
    parser.add_argument("--uncovered", action="store_true", help="list messages no signature matches")
    parser.add_argument("--new-since", metavar="OLD", help="with --uncovered: only messages after OLD")
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    opts = parser.parse_args(argv)

    if opts.uncovered:
        return report_uncovered(opts.json, opts.new_since)
    if opts.new_since:
        parser.error("--new-since goes with --uncovered")
    return update(
        opts.json, opts.release or list(VERSIONS), merge=bool(opts.release), cache=opts.cache, jobs=opts.jobs
    )


# What classify() names invalid_args by the raise rule when a traceback shows the raise: a message
# of that kind about memory, the network or time would be a recoverable failure called permanent.
RAISED_BY_RULE = frozenset(f"raise {name}" for name in REFUSING_CLASSES)
_RECOVERABLE_WORDS = re.compile(
    r"memory|\bGiB\b|\bOOM\b|cache blocks|free blocks|timed? ?out|timeout"
    r"|\bconnect(ion)?\b|network|retry|try again|busy",
    re.IGNORECASE,
)


def split_by_rule(
    rows: Iterable[tuple[Message, set[str]]],
) -> tuple[list[tuple[Message, set[str]]], list[tuple[Message, set[str]]], int]:
    """(rows no rule names, rows the raise rule names invalid_args that read like a recoverable
    failure, how many more it names)."""
    unnamed, to_check, named = [], [], 0
    for message, versions in rows:
        if message.call not in RAISED_BY_RULE:
            unnamed.append((message, versions))
        elif _RECOVERABLE_WORDS.search(message.template):
            to_check.append((message, versions))
        else:
            named += 1
    return unnamed, to_check, named


def report_uncovered(path: Path, new_since: str | None) -> int:
    mined, table = load(path)
    unnamed, to_check, named = split_by_rule(uncovered(table, new_since))
    for message, have in unnamed:
        print(json.dumps([message.path, message.call, message.template, compress(have, mined)]))
    for message, have in to_check:
        row = [message.path, message.call, message.template, compress(have, mined)]
        print(json.dumps([*row, "named invalid_args by the raise rule: is it?"]))
    print(
        f"{len(unnamed)} uncovered of {len(table)} messages; the raise rule names {named + len(to_check)} "
        f"more invalid_args when a traceback shows the raise, {len(to_check)} of them listed for a look "
        "(they speak of memory, the network or time)",
        file=sys.stderr,
    )
    return 0


def update(path: Path, versions: Sequence[str], *, merge: bool, cache: Path, jobs: int) -> int:
    """Mine `versions` and write the table, merged into the one at `path` when `merge`."""
    old_mined: list[str] = []
    table: Table = {}
    if merge:
        with contextlib.suppress(FileNotFoundError):
            old_mined, table = load(path)
    mined, found = mine_versions(versions, cache, jobs)
    if not mined:
        return 1
    for message in table:  # a re-mined release is replaced, not added to
        table[message] -= set(mined)
    for message, have in found.items():
        table.setdefault(message, set()).update(have)
    table = {m: v for m, v in table.items() if v}
    dump([*old_mined, *mined], table, path)
    releases = len(set(old_mined) | set(mined))
    size_mb = path.stat().st_size / 1e6
    print(f"wrote {len(table)} messages of {releases} releases to {path} ({size_mb:.2f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
