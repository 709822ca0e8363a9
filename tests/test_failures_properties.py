"""Properties of classify(): wrapping and noise never change the verdict."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_guard.failures import FailureKind, classify

# Benign lines from real runs (shared/vllm/real-cpu/full/ok_run3_eager.log and metrics lines).
NOISE = [
    "(APIServer pid=28923) INFO 11-27 05:23:55 [model.py:733] Resolved architecture: LlamaForCausalLM",
    "(APIServer pid=28923) INFO 11-27 05:23:55 [model.py:2152] Using max model len 1024",
    "(EngineCore pid=29100) INFO 11-27 05:24:02 [default_loader.py:291] Loading weights took 0.01 seconds",
    '(APIServer pid=28923) INFO:     127.0.0.1:52814 - "GET /health HTTP/1.1" 200 OK',
    "(APIServer pid=28923) WARNING 11-27 05:23:55 [system_utils.py:255] Found ulimit of 20000 and failed to automatically increase with error current limit exceeds maximum limit. This can cause fd limit errors like `OSError: [Errno 24] Too many open files`. Consider increasing with ulimit -n",
    "$PYTHON_HOME/lib/python3.11/multiprocessing/resource_tracker.py:254: UserWarning: resource_tracker: There appear to be 1 leaked shared_memory objects to clean up at shutdown",
]
# Root causes, each from a real capture (see tests/test_failures.py for their files).
CASES = [
    (
        [
            "(EngineCore pid=28342) ERROR 11-27 05:24:43 [core.py:1115] ValueError: To serve at least one request with the model's max seq len (4096), (0.0 GiB KV cache is needed, which is larger than the available KV cache memory (0.0 GiB). Based on the available memory, the estimated maximum model length is 1792.",
            "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}",
        ],
        FailureKind.MAX_MODEL_LEN_TOO_LARGE,
    ),
    (["OSError: [Errno 98] Address already in use"], FailureKind.PORT_IN_USE),
    (
        [
            "ERROR 07-28 15:07:22 [core.py:632] RuntimeError: CUDA error: no kernel image is available for execution on the device"
        ],
        FailureKind.CUDA_DRIVER,
    ),
    (
        [
            "OSError: You are trying to access a gated repo.",
            "401 Client Error. (Request ID: Root=1-66163835)",
        ],
        FailureKind.HF_AUTH,
    ),
    (["ERROR 11-05 12:03:00 client.py:250] RuntimeError: Engine loop has died"], FailureKind.WORKER_DIED),
]

Wrap = Callable[[str], str]
WRAPS: st.SearchStrategy[Wrap] = st.sampled_from(
    [
        lambda line: line,
        lambda line: f"2024-09-05T00:38:34.123456789Z {line}",
        lambda line: f"2024-09-05T00:38:34.123456789Z stdout F {line}",
        lambda line: f"\x1b[1;31m{line}\x1b[0m",
        lambda line: f"(RayWorkerWrapper pid=5280, ip=10.0.0.2) {line}",
        lambda line: f"{line}\r",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    case=st.sampled_from(CASES),
    wrap=WRAPS,
    before=st.lists(st.sampled_from(NOISE), max_size=30),
    after=st.lists(st.sampled_from(NOISE), max_size=10),
)
def test_noise_and_prefixes_do_not_change_the_verdict(
    case: tuple[list[str], FailureKind], wrap: Wrap, before: list[str], after: list[str]
) -> None:
    lines, kind = case
    log = [wrap(line) for line in [*before, *lines, *after]]
    assert classify(log).kind == kind


@given(st.lists(st.sampled_from(NOISE), max_size=200), WRAPS)
def test_a_log_without_a_failure_is_unknown(noise: list[str], wrap: Wrap) -> None:
    assert classify([wrap(line) for line in noise]).kind == FailureKind.UNKNOWN
