"""Why an attempt of vLLM ended: the failure kinds, with stable names, and the Failure value."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FailureKind(enum.StrEnum):
    """Stable snake_case values: they appear in policy files, metric labels and JSON."""

    OOM_WEIGHTS = "oom_weights"
    OOM_KV_CACHE = "oom_kv_cache"
    MAX_MODEL_LEN_TOO_LARGE = "max_model_len_too_large"
    INSUFFICIENT_FREE_MEMORY = "insufficient_free_memory"
    OOM_CUDA_GRAPH = "oom_cuda_graph"
    OOM_RUNTIME = "oom_runtime"
    HF_AUTH = "hf_auth"
    MODEL_NOT_FOUND = "model_not_found"
    TRUST_REMOTE_CODE = "trust_remote_code"
    SHM_TOO_SMALL = "shm_too_small"
    UNSUPPORTED_DTYPE_OR_QUANT = "unsupported_dtype_or_quant"
    CUDA_DRIVER = "cuda_driver"
    INVALID_ARGS = "invalid_args"
    PORT_IN_USE = "port_in_use"
    HUB_UNREACHABLE = "hub_unreachable"
    WORKER_DIED = "worker_died"
    HUNG = "hung"
    UNKNOWN = "unknown"


PERMANENT_KINDS = frozenset(
    {
        FailureKind.HF_AUTH,
        FailureKind.MODEL_NOT_FOUND,
        FailureKind.TRUST_REMOTE_CODE,
        FailureKind.SHM_TOO_SMALL,
        FailureKind.CUDA_DRIVER,
        FailureKind.INVALID_ARGS,
    }
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, the line that shows it, and the numbers read from it."""

    kind: FailureKind
    evidence: str = ""
    numbers: dict[str, float] = field(default_factory=dict)

    @property
    def permanent(self) -> bool:
        return self.kind in PERMANENT_KINDS
