"""`vllm-guard doctor [--json] [--duration S] [URL]`: the advisor against any running vLLM, under
the guard or not. It reads /metrics every few seconds for the duration, /version and /v1/models
once, and, where the server is on this machine, the GPUs' utilization from NVML; then it says
what the metrics show and which flag to change (advice.py). Exit 0 whenever it could read the
server, 2 when it could not."""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from vllm_guard import advice, metric_window, policy_file
from vllm_guard.errors import ExitCode
from vllm_guard.health import loopback
from vllm_guard.settings import GuardSettings

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_DURATION_S = 30.0
# How often /metrics is read: vLLM's own stats logger updates them every few seconds.
INTERVAL_S = 5.0


def run(argv: list[str], settings: GuardSettings) -> ExitCode:
    parser = argparse.ArgumentParser(
        prog="vllm-guard doctor",
        description="Sample a running vLLM's /metrics (under the guard or not) and say what they show "
        "about how it serves, and which of its flags to change: requests queueing, a full KV cache, "
        "slow first tokens or decoding, an idle GPU, prefill-heavy work, prefix-cache misses, "
        "speculative decoding that does not pay. Exit 0 when the server could be read, 2 when not.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "url", nargs="?", default=DEFAULT_URL, help=f"vLLM's base URL (default: {DEFAULT_URL})"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        metavar="S",
        help=f"seconds to sample for (default: {DEFAULT_DURATION_S:g}; 300 or more adds the 5-minute window)",
    )
    parser.add_argument("--interval", type=float, default=INTERVAL_S, metavar="S", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return ExitCode.STOPPED if exc.code == 0 else ExitCode.USAGE
    if ns.duration <= 0 or ns.interval <= 0:
        parser.print_usage()
        print("vllm-guard doctor: --duration must be more than 0")
        return ExitCode.USAGE
    url = ns.url.rstrip("/")
    # the thresholds of --policy's advice: section (a bad file stops here, naming its line)
    thresholds = policy_file.load(settings.policy).advice.thresholds()
    import httpx  # noqa: PLC0415 - the sub-command that needs it, not the others

    # /v1 routes may need vLLM's API key (the same variable vLLM reads); /metrics never does
    key = os.environ.get("VLLM_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url, timeout=10.0, headers=headers, trust_env=False, verify=False) as client:
        sampled = _sample(client, ns.duration, min(ns.interval, ns.duration))
        if isinstance(sampled, str):
            print(f"vllm-guard doctor: cannot read {url}/metrics: {sampled}")
            return ExitCode.USAGE
        history, seconds, utilization = sampled
        version = _version(client)
        max_len = _max_model_len(client)
    now = seconds
    short = history.window(min(advice.SHORT_S, seconds), now)
    if short is None:  # one reading: nothing to compare it with
        print(f"vllm-guard doctor: {url}/metrics answered once; sample for longer (--duration)")
        return ExitCode.USAGE
    serving = advice.serving_from_reading(short.last, version, max_len)
    situation = advice.Situation(
        short,
        history.window(advice.LONG_S, now) if seconds >= advice.LONG_S else None,
        serving,
        thresholds,
        gpu_utilization=utilization,
    )
    findings = advice.advise(situation)
    if ns.json:
        report: dict[str, Any] = {
            "findings": [f.as_json() for f in findings],
            "sampled_s": round(seconds, 1),
            "vllm_version": version,
        }
        print(json.dumps(report))
        return ExitCode.STOPPED
    what = f"vLLM {version}" if version else "vLLM"
    print(f"{what} at {url}, sampled for {seconds:.0f} s")
    if not findings:
        print("nothing to change: no condition holds (vllm-guard doctor --help lists them)")
    for finding in findings:
        print(f"{finding.condition}: {finding.evidence}")
        print(f"  why: {finding.cause}")
        print(f"  fix: {finding.fix}")
    return ExitCode.STOPPED


def _sample(
    client: Any, duration_s: float, interval_s: float
) -> tuple[metric_window.History, float, float | None] | str:
    """Read /metrics every `interval_s` for `duration_s`: the readings, how long they span, and
    the GPUs' mean utilization (None where NVML is not read); or why the first read failed."""
    import httpx  # noqa: PLC0415

    from vllm_guard.gpu import Nvml  # noqa: PLC0415

    nvml = Nvml.open() if loopback(str(client.base_url)) else None
    history = metric_window.History(keep_s=duration_s + advice.LONG_S)
    busy: list[float] = []
    read = 0
    started = time.monotonic()
    while True:
        at = time.monotonic() - started
        try:
            response = client.get("/metrics")
            response.raise_for_status()
            history.add(at, metric_window.parse(response.text))
            read += 1
        except (httpx.HTTPError, ValueError) as exc:
            if not read:  # not vLLM, or not up: nothing to sample
                return str(exc) or type(exc).__name__
        if nvml is not None:
            busy.extend(nvml.utilization())
        if at >= duration_s:
            break
        time.sleep(min(interval_s, max(0.0, duration_s - at)))
    return history, at, (sum(busy) / len(busy) if busy else None)


def _version(client: Any) -> str | None:
    try:
        version = client.get("/version").json().get("version")
    except Exception:  # an older vLLM, or not vLLM: the version stays unknown
        return None
    return version if isinstance(version, str) else None


def _max_model_len(client: Any) -> int | None:
    try:
        cards = client.get("/v1/models").json().get("data") or []
    except Exception:  # the API key is not ours, or no such route: the length stays unknown
        return None
    lengths = [c.get("max_model_len") for c in cards if isinstance(c, dict)]
    return next((n for n in lengths if isinstance(n, int)), None)
