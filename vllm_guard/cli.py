"""The command line: guard options, sub-commands, and exit codes. The only place that exits.

    vllm-guard [GUARD OPTIONS] serve MODEL [VLLM ARGS...]     (with -h or --help[=TOPIC]: vLLM's help, once)
    vllm-guard [GUARD OPTIONS] preflight [--json] [--gpu NAME] [--gpus N] [--gpu-snapshot FILE]
                                         [--save-gpu-snapshot FILE] [--kill-leftovers] MODEL [VLLM ARGS...]
    vllm-guard [GUARD OPTIONS] diagnose [--json] [LOGFILE|-] [-- VLLM ARGS...]
    vllm-guard [GUARD OPTIONS] policy check FILE | policy show [FILE]
    vllm-guard [GUARD OPTIONS] status [--json] | forget [MODEL]
    vllm-guard [GUARD OPTIONS] demo

Guard options come before the sub-command; MODEL and everything after it belong to vLLM, untouched.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn

from vllm_guard import __version__, settings, vllm_version
from vllm_guard.errors import ExitCode, GuardError

# the sub-commands, as the parser offers them and as a mistyped option before one is told from them
COMMANDS = ("serve", "preflight", "diagnose", "doctor", "policy", "status", "forget", "demo")
USAGE = (
    "vllm-guard [GUARD OPTIONS] {serve MODEL [VLLM ARGS...] | preflight [OPTIONS] MODEL [VLLM ARGS...] | "
    "diagnose [--json] [LOGFILE|-] [-- VLLM ARGS...] | doctor [--json] [--duration S] [URL] | "
    "policy check FILE | policy show [FILE] | "
    "status [--json] | forget [MODEL] | demo}"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vllm-guard",
        usage=USAGE,
        description="Run vLLM, watch it, and relaunch it when it fails. Guard options go before "
        "the sub-command (or in VLLM_GUARD_* variables); everything after MODEL is vLLM's.",
        allow_abbrev=False,
    )
    known = (
        f"vLLM {vllm_version.OLDEST_KNOWN} to {vllm_version.NEWEST_SUPPORTED}; "
        f"its flag tables read {vllm_version.TABLES_UP_TO} too"
    )
    parser.add_argument("--version", action="version", version=f"vllm-guard {__version__} ({known})")
    for flag, (name, help_text) in settings.option_help().items():
        choices = settings.option_choices(name)
        metavar = "|".join(choices) if choices else "VALUE"
        parser.add_argument(flag, dest=name, default=None, metavar=metavar, help=help_text)
    parser.add_argument(
        "command",
        choices=COMMANDS,
        help="what to do",
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _dispatch(args)
    except GuardError as exc:
        print(f"vllm-guard: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"vllm-guard: hint: {exc.hint}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = ExitCode.STOPPED
    except Exception:
        import traceback  # noqa: PLC0415 - only a bug needs it; serve starts vLLM sooner without

        traceback.print_exc()
        print("vllm-guard: this is a bug in vllm-guard; please report it", file=sys.stderr)
        code = ExitCode.GUARD_BUG
    sys.exit(int(code))


def _pin_values_joined(argv: list[str]) -> list[str]:
    """`--pin --max-model-len` as `--pin=--max-model-len`: argparse takes no option value that
    starts with a dash, and a vLLM flag always does. Only among the guard options (before the
    sub-command: every guard option takes a value)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg in ("--help", "--version"):
            return out + argv[i:]
        if arg == "--pin" and i + 1 < len(argv):
            out.append(f"--pin={argv[i + 1]}")
            i += 2
            continue
        out.append(arg)
        if "=" not in arg and i + 1 < len(argv):
            out.append(argv[i + 1])
            i += 1
        i += 1
    return out


def _unknown_guard_option(argv: Sequence[str]) -> None:
    """A mistyped guard option before the sub-command is named, with the closest one (argparse
    would say the option's value is not a sub-command)."""
    known = {*settings.option_help(), "--help", "--version", "-h"}
    args = iter(argv)
    for arg in args:
        if arg in COMMANDS or arg == "--" or not arg.startswith("-"):
            return
        name = arg.split("=", 1)[0]
        if name in known and "=" not in arg and name not in ("--help", "--version", "-h"):
            next(args, None)  # every guard option takes a value
        elif name not in known:
            import difflib  # noqa: PLC0415

            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise GuardError(
                f"{name} is not a vllm-guard option" + (f"; did you mean {close[0]}?" if close else ""),
                hint="vllm-guard --help lists the guard's options; vLLM's go after MODEL",
            )


def _dispatch(argv: list[str]) -> ExitCode | int:
    _unknown_guard_option(argv)
    parser = _parser()
    try:
        ns = parser.parse_args(_pin_values_joined(argv))
    except SystemExit as exc:  # argparse's own exit for --help, --version or a usage error
        return ExitCode.STOPPED if exc.code == 0 else ExitCode.USAGE
    cli_values = {
        name: getattr(ns, name)
        for name, _ in settings.option_help().values()
        if getattr(ns, name) is not None
    }
    if ns.command == "serve":
        if asks_for_help(ns.rest):
            return vllm_help(settings.load(cli_values), ns.rest)
        if not ns.rest or not ns.rest[0].strip() or ns.rest[0].startswith("-"):
            # An empty MODEL is what a unit's ${MODEL} gives when its environment file lacks it.
            raise GuardError("serve needs MODEL first: vllm-guard serve MODEL [VLLM ARGS...]")
        settings.misplaced_option(ns.rest[1:], "serve")
        from vllm_guard.startup import start_serving  # noqa: PLC0415

        guard_settings = settings.load(cli_values)
        if settings.shipped_policy(guard_settings.policy) is None:
            # A malformed policy file is rejected here, before anything launches. The shipped
            # ones are checked by the test suite, and vLLM starts sooner without their parsing.
            from vllm_guard import policy_file  # noqa: PLC0415

            guard_settings, _ = policy_file.effective(guard_settings)
        started = start_serving(guard_settings, ns.rest[0], ns.rest[1:], dict(os.environ))
        from vllm_guard.serve import serve  # noqa: PLC0415 - only once vLLM is starting

        return run_async(lambda: serve(started))
    if ns.command == "demo":
        from vllm_guard.commands import demo  # noqa: PLC0415

        if ns.rest in (["-h"], ["--help"]):
            print(DEMO_HELP)
            return ExitCode.STOPPED
        if ns.rest:
            raise GuardError(f"demo takes no arguments, got {' '.join(ns.rest)}")
        return run_async(lambda: demo.run(cli_values))
    # A report piped into `head` that stops reading ends the command as it ends any Unix tool
    # (SIGPIPE), without a traceback; serve and demo supervise, and keep Python's EPIPE instead.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # Every other sub-command is commands/<name>.py, run(argv, settings) -> ExitCode, imported
    # only when asked for: serve's path loads none of them.
    command = importlib.import_module(f"vllm_guard.commands.{ns.command}")
    code: ExitCode = command.run(ns.rest, settings.load(cli_values))
    return code


SERVE_HELP = """\
usage: vllm-guard [GUARD OPTIONS] serve MODEL [VLLM ARGS...]

Run `vllm serve MODEL [VLLM ARGS...]` and keep it serving: check the machine first (preflight),
read vLLM's output, /health and /metrics, relaunch with degraded flags when another flag set
avoids the failure (the policy's ladders: `vllm-guard policy show`), and stop with one sentence
and an exit code when nothing can help (0 stopped, 2 usage, 3 cannot start here, 4 gave up, 5
permanent). Guard options go before `serve` (`vllm-guard --help` lists them, with their
VLLM_GUARD_* variables); MODEL and everything after it are vLLM's, passed on untouched.
"""


DEMO_HELP = """\
usage: vllm-guard [GUARD OPTIONS] demo

Supervise a simulated vLLM (python -m vllm_guard.sim, no GPU needed) on a simulated 24 GiB GPU
whose first launch runs out of memory on its first request: watch the guard read the failure,
relaunch with degraded flags, and serve. A few seconds; exit 0 when the story ran as told."""


def asks_for_help(serve_args: Sequence[str]) -> bool:
    """`-h`, `--help` or `--help=TOPIC` (vLLM 0.10+: all, a config group, a flag), as vLLM's argparse sees
    it: anywhere among serve's arguments, MODEL's place included (`vllm serve --help` needs none)."""
    return any(arg in ("-h", "--help") or arg.startswith("--help=") for arg in serve_args)


def vllm_help(guard_settings: settings.GuardSettings, serve_args: Sequence[str]) -> int:
    """What serve does, then vLLM's own help, shown once: nothing to check, supervise or restart
    (a help that exits 0 would otherwise read as vLLM exiting before it was ready). Its exit
    status is the guard's."""
    import subprocess  # noqa: PLC0415 - serve's own path starts vLLM through processes.py

    from vllm_guard.notify import scrubbed  # noqa: PLC0415
    from vllm_guard.processes import resolve_command  # noqa: PLC0415

    print(SERVE_HELP, flush=True)
    try:
        program = resolve_command(guard_settings.vllm_command, os.environ)
    except GuardError as exc:
        print(f"vLLM's own flags are not shown here: {exc.message} ({exc.hint})" if exc.hint else exc.message)
        return ExitCode.STOPPED
    # The environment vLLM gets under serve: without systemd's notify socket or the guard's options.
    options = {settings.ENV_PREFIX + name.upper() for name in settings.GuardSettings.model_fields}
    env = {k: v for k, v in scrubbed(os.environ).items() if k not in options}
    try:
        done = subprocess.run([*program, "serve", *serve_args], env=env, check=False)
    except OSError as exc:
        raise GuardError(f"cannot run {program[0]}: {exc.strerror}") from None
    # A signal's death reads as a shell has it (128 + N), since an exit status cannot be negative.
    return done.returncode if done.returncode >= 0 else 128 - done.returncode


def run_async(main: Callable[[], Coroutine[Any, Any, ExitCode]]) -> ExitCode:
    """Run on uvloop when it is importable, as uvicorn does, else on asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())
