"""Why an attempt of vLLM ended: the failure kinds, the signature catalogue, and `classify()`.

Classifying is matching a catalogue of signatures (data, not if-chains) against the last lines of
both of vLLM's streams. Each signature is a phrase vLLM, PyTorch or huggingface_hub really raises
(the sources are in the README's catalogue table and in tests/diagnosis/fixtures). The root cause
wins over the wrappers around it; a wrapper alone means `worker_died`; nothing at all, `unknown`.
"""

from __future__ import annotations

import contextlib
import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from vllm_guard.milestones import RUN_START
from vllm_guard.redact import Redactor
from vllm_guard.refusals import IMPORT_FAILURES, REFUSALS
from vllm_guard.vllm_classes import API_CLASSES

Number = int | float | str


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
    # a group of vLLM processes on several nodes (group.py)
    COLLECTIVE_TIMEOUT = "collective_timeout"
    PEER_UNREACHABLE = "peer_unreachable"
    RAY_ACTOR_DIED = "ray_actor_died"
    FOLLOWER_LOST = "follower_lost"
    HUNG = "hung"
    BROKEN_INSTALL = "broken_install"
    UNKNOWN = "unknown"


PERMANENT_KINDS = frozenset(
    {
        FailureKind.HF_AUTH,
        FailureKind.MODEL_NOT_FOUND,
        FailureKind.TRUST_REMOTE_CODE,
        FailureKind.SHM_TOO_SMALL,
        FailureKind.CUDA_DRIVER,
        FailureKind.INVALID_ARGS,
        FailureKind.BROKEN_INSTALL,
    }
)


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, the line that shows it, and the numbers read from it."""

    kind: FailureKind
    evidence: str = ""
    numbers: dict[str, Number] = field(default_factory=dict)
    # False for an out-of-memory error whose phase nothing told (no milestone, frame or serving
    # sign): its kind is then a guess, and only a remedy safe in every phase may follow it.
    phase_known: bool = True

    @property
    def permanent(self) -> bool:
        return self.kind in PERMANENT_KINDS


# An out-of-memory error's kind depends on the phase it happened in; OOM stands for that.
OOM = "oom"


@dataclass(frozen=True, slots=True)
class Signature:
    """One phrase that names a failure. `needle` is a lowercase literal every match contains,
    looked for first because most lines match nothing; `rank` orders root causes (higher wins);
    a wrapper (rank 0) only says that something died."""

    kind: FailureKind | str
    needle: str  # several, for a pattern whose alternatives share no literal: "a|b"
    pattern: re.Pattern[str]
    rank: int
    source: str  # where the phrase was seen: a captured log, a public thread, vLLM's source
    # vLLM words some of its errors as a warning too, where it waits instead of failing: such a
    # phrase counts only on a line that is no INFO/WARNING/DEBUG log line of vLLM's
    errors_only: bool = False

    @property
    def needles(self) -> tuple[str, ...]:
        return tuple(self.needle.split("|"))


def _sig(
    kind: FailureKind | str, rank: int, needle: str, pattern: str, source: str, *, errors_only: bool = False
) -> Signature:
    return Signature(kind, needle, re.compile(pattern, re.IGNORECASE), rank, source, errors_only)


K = FailureKind
_SIZE = r"[\d.]+ ?[KMGT]i?B"

# vLLM found no platform to run on: on a GPU machine the GPU is not usable to it (no driver library,
# no device in the container), or its own package is not installed whole, which vLLM warns of
# before and classify() then names (broken_install).
_NO_PLATFORM = _sig(
    K.CUDA_DRIVER,
    74,
    "no platform detected",
    r"No platform detected, vLLM is running on UnspecifiedPlatform",
    "vLLM's platform detection, the __init__ of its vllm/platforms package (vLLM 0.7-0.34: an INFO line until 0.10, DEBUG since 0.11; the miner keeps raised and error messages only)",
)

CATALOGUE: tuple[Signature, ...] = (
    # --- the model and the Hub ---
    _sig(K.HF_AUTH, 90, "gatedrepoerror", r"GatedRepoError", "huggingface_hub utils/_errors.py (0.20), errors.py (0.36-1.x): GatedRepoError"),
    _sig(K.HF_AUTH, 90, "gated repo", r"(access|accessing) (a |to )?gated repo", "transformers utils/hub.py OSError 'You are trying to access a gated repo' (4.36-5.x), huggingface_hub errors.py GatedRepoError's text"),
    _sig(K.HF_AUTH, 90, "client error", r"\b40[13] Client Error", "huggingface_hub utils/_http.py hf_raise_for_status, the HTTP status before the Hub's own words"),
    _sig(K.HF_AUTH, 90, "authorized list", r"not in the authorized list", "the Hub's 403 body, as huggingface_hub errors.py quotes it for GatedRepoError"),
    _sig(K.HF_AUTH, 90, "is restricted", r"Access to model \S+ is restricted", "the Hub's 401 body, as huggingface_hub errors.py quotes it"),
    _sig(K.MODEL_NOT_FOUND, 80, "not a valid model identifier", r"is not a valid model identifier", "transformers utils/hub.py OSError for an unknown repo (4.36-5.x)"),
    _sig(K.MODEL_NOT_FOUND, 80, "repository not found", r"Repository Not Found|RepositoryNotFoundError", "huggingface_hub utils/_errors.py (0.20), errors.py (0.36-1.x): RepositoryNotFoundError and its text"),
    _sig(K.MODEL_NOT_FOUND, 80, "invalid repository id", r"Invalid repository ID or local directory", "vllm/transformers_utils/config.py (vLLM 0.8-0.34)"),
    _sig(K.MODEL_NOT_FOUND, 80, "repo id must be in the form", r"Repo id must be in the form", "huggingface_hub utils/_validators.py HFValidationError: a local path that is not there, read as a repo id"),
    _sig(K.MODEL_NOT_FOUND, 80, "cached snapshot folder", r"Cannot find an appropriate cached snapshot", "huggingface_hub _snapshot_download.py LocalEntryNotFoundError: HF_HUB_OFFLINE=1 and the model is not cached"),
    _sig(K.MODEL_NOT_FOUND, 80, "does not appear to have a file", r"does not appear to have a file named", "transformers utils/hub.py OSError for a folder without the file asked for (config.json)"),
    _sig(K.MODEL_NOT_FOUND, 80, "can't load the configuration of|can't load tokenizer for", r"Can't load (the configuration of|tokenizer for) '[^']*'\. If you were trying to load it from 'https://huggingface\.co/models'", "transformers configuration_utils.py and transformers tokenization_utils_base.py (4.36-5.x): a config or tokenizer the path or id given does not hold (the Hub's own failures are raised before it in their words)"),
    _sig(K.INVALID_ARGS, 65, "is not supported yet", r"GGUF model with architecture \S+ is not supported yet", "transformers modeling_gguf_pytorch_utils.py (4.57-5.x): a GGUF checkpoint of an architecture transformers cannot read, which vLLM's GGUF loader asks it to"),
    _sig(K.HUB_UNREACHABLE, 70, "couldn't connect to", r"couldn't connect to '?https?://huggingface", "transformers utils/hub.py OSError with no network (4.36-5.x)"),
    _sig(K.HUB_UNREACHABLE, 70, "locate the file on the hub", r"error happened while trying to locate the file on the Hub", "huggingface_hub file_download.py LocalEntryNotFoundError with no network"),
    _sig(K.HUB_UNREACHABLE, 70, "huggingface.co", r"(Max retries exceeded|ConnectTimeout|ReadTimeout|NameResolutionError|Temporary failure in name resolution|Network is unreachable).*huggingface\.co", "urllib3's and requests' connection errors (MaxRetryError, NameResolutionError, timeouts) on a URL of the Hub"),
    _sig(K.TRUST_REMOTE_CODE, 85, "execute the", r"requires you to execute the (configuration|modeling) file", "transformers dynamic_module_utils.py (4.36-5.x)"),
    _sig(K.TRUST_REMOTE_CODE, 85, "trust_remote_code=true", r"(pass|set) the (argument|option) .?trust_remote_code=True", "transformers dynamic_module_utils.py (4.36-5.x)"),
    _sig(K.TRUST_REMOTE_CODE, 85, "custom code", r"contains custom code which must be executed", "transformers dynamic_module_utils.py (4.36-5.x)"),
    # --- memory ---
    _sig(K.MAX_MODEL_LEN_TOO_LARGE, 85, "max seq len", r"To serve at least one request with the models?'s max seq len \((?P<max_model_len>\d+)\)(.*estimated maximum model length is (?P<estimated_max_model_len>\d+))?", "vllm/v1/core/kv_cache_utils.py (vLLM 0.7-0.32; v1/core/kv_cache_planning.py 0.33-0.34)"),
    _sig(K.MAX_MODEL_LEN_TOO_LARGE, 85, "max seq len", r"max seq len \((?P<max_model_len>\d+)\) is larger than the maximum number of tokens that can be stored in KV cache \((?P<kv_cache_tokens>\d+)\)", "vllm/worker/worker.py (vLLM 0.5-0.10; cpu_worker.py, hpu_worker.py and v1/worker/gpu_worker.py 0.6 the same), V0's wording"),
    _sig(K.MAX_MODEL_LEN_TOO_LARGE, 85, "derived max_model_len", r"User-specified max_model_len \((?P<max_model_len>\d+)\) is greater than the derived max_model_len \(\w+=(?P<derived_max_model_len>[\d.]+)", "vllm/config/model.py (vLLM 0.11-0.34; config/__init__.py 0.10, config.py 0.5-0.9)"),
    _sig(K.MAX_MODEL_LEN_TOO_LARGE, 85, "auto-fit", r"Cannot auto-fit max_model_len", "vllm/v1/core/kv_cache_utils.py (vLLM 0.14-0.32; v1/core/kv_cache_planning.py 0.33-0.34), --max-model-len auto"),
    _sig(K.INSUFFICIENT_FREE_MEMORY, 85, "on startup is less than desired", r"(Free memory on device|Available memory on node \d+)( \S+)? \((?P<free_bytes>[\d.]+)/(?P<total_bytes>[\d.]+) GiB\) on startup is less than desired [GC]PU memory utilization \((?P<gpu_memory_utilization>[\d.]+), (?P<required_bytes>[\d.]+) GiB\)", "vllm/v1/worker/utils.py (vLLM 0.14-0.34; gpu_worker.py 0.9-0.13, cpu_worker.py 0.20-0.32), GPU and CPU wording"),
    _sig(K.INSUFFICIENT_FREE_MEMORY, 84, "on startup is less than desired", r"on startup is less than desired [GC]PU memory utilization", "vllm/v1/worker/utils.py (vLLM 0.14-0.34; gpu_worker.py 0.9-0.13), when its numbers are cut off"),
    _sig(K.OOM_KV_CACHE, 85, "no available memory for the cache blocks", r"No available memory for the cache blocks", "vllm/v1/core/kv_cache_utils.py (vLLM 0.7-0.32; worker/worker.py 0.5-0.10, v1/core/kv_cache_planning.py 0.33-0.34)"),
    _sig(K.OOM_KV_CACHE, 85, "warming up sampler", r"out of memory occurred when warming up sampler", "vllm/v1/worker/gpu_model_runner.py (vLLM 0.8-0.33; gone in 0.34)"),
    _sig(K.OOM_CUDA_GRAPH, 80, "stream is capturing", r"operation not permitted when stream is capturing", "cudaGetErrorString(900) (upstream/cuda_runtime_errors.json; gpu/h100-probe2.json)"),
    _sig(K.OOM_CUDA_GRAPH, 80, "captur", r"operation failed due to a previous error during capture|operation would result in a merge of separate capture sequences|capture was not ended in the same stream as it began|capturing stream has unjoined work|dependency created on uncaptured work in another stream|operation would make the legacy stream depend on a capturing blocking stream|operation not permitted on an event last recorded in a capturing stream|attempt to terminate a thread-local capture sequence from another thread", "cudaGetErrorString(901..908), the stream-capture errors (upstream/cuda_runtime_errors.json)"),
    _sig(K.OOM_CUDA_GRAPH, 80, "cudaerror", r"cudaErrorStreamCapture(Unsupported|Invalidated|Merge|Unmatched|Unjoined|Isolation|Implicit|WrongThread)|cudaErrorCapturedEvent", "cudaGetErrorName(900..908) (upstream/cuda_runtime_errors.json; gpu/h100-probe2.json)"),
    # torch refusing what was asked of it while a CUDA graph was being captured (its TORCH_CHECKs;
    # the same libraries' capture warnings, "the graph was attempted to be captured on wrong device
    # or stream", "may be benign", are not causes): only capturing meets these, and --enforce-eager
    # captures nothing.
    _sig(K.OOM_CUDA_GRAPH, 80, "only one capture at a time|must be captured on a non-default stream|if you need this call to be captured|capture must end on the same stream|uncaptured allocation during graph capture", r"Only one capture at a time is allowed in a process|CUDA graphs must be captured on a non-default stream|during CUDA graph capture\. If you need this call to be captured|Capture must end on the same stream it began on|freeAsync\(\) was called on an uncaptured allocation during graph capture", "torch lib/libc10_cuda.so and torch lib/libtorch_cuda.so (the CUDA wheel; c10/cuda's allocators and ATen's CUDAGraph.cpp)"),
    _sig(OOM, 60, "out of memory|outofmemoryerror", r"(CUDA|HIP|XPU|NPU) out of memory|CUDA (driver )?error: out of memory|(?<!ray\.exceptions\.)OutOfMemoryError(?!: Task was killed due to the node running low)", "torch's caching allocator ('CUDA out of memory. Tried to allocate': torch lib/libc10_cuda.so of the CUDA wheel; HIP, XPU and torch_npu's NPU allocators word it the same) and torch cuda/__init__.py (OutOfMemoryError), as an H100 prints both (torch gpu/h100-probe.json)"),
    # NCCL wraps a CUDA call's error string in its own WARN; code 2's is "out of memory".
    _sig(OOM, 60, "cuda failure", r"Cuda failure (2 )?'out of memory'", "libnccl strings ('Cuda failure %d '%s'', 2.21-2.32) around the CUDA runtime's string for cudaErrorMemoryAllocation"),
    # raised from its `except torch.cuda.OutOfMemoryError` around an allocation while the model is built
    _sig(OOM, 60, "may be caused by insufficient memory to allocate", r"(Failed to create unquantized linear weights|Failed to initialize q/k/v range constants)\. This may be caused by insufficient memory to allocate", "vllm/model_executor/layers/linear.py, vllm/attention/layer.py (vLLM 0.11.0)"),
    _sig(OOM, 60, "not enough gpu memory", r"not enough GPU memory", "vllm/v1/core/kv_cache_utils.py (vLLM 0.14-0.32; v1/core/kv_cache_planning.py 0.33-0.34)"),
    # --- the machine ---
    _sig(K.SHM_TOO_SMALL, 85, "/dev/shm", r"exceeds memory available in /dev/shm\. The request is for (?P<required_bytes>\d+) bytes, and the amount available is (?P<free_bytes>\d+) bytes|(exceeds memory available in|No space left on device.*|too small.*|insufficient.*)\s*/dev/shm|/dev/shm.*(No space left|too small|insufficient)", "ray core/src/ray/raylet/raylet: the object store's words when /dev/shm cannot hold it (2.9-2.60), and ENOSPC on /dev/shm"),
    _sig(K.SHM_TOO_SMALL, 85, "shared memory segment", r"Error while creating shared memory segment \S+ \(size (?P<required_bytes>\d+)\)|Error while creating shared memory segment", "libnccl strings: NCCL's WARN when it cannot create its /dev/shm segment (2.21-2.32)"),
    _sig(K.SHM_TOO_SMALL, 80, "bus error", r"\bBus error\b", "python strsignal(SIGBUS), as a shell reports a process that touched /dev/shm it could not have"),
    _sig(K.CUDA_DRIVER, 75, "no cuda gpus are available", r"No CUDA GPUs are available", "torch (gpu/h100-probe2.json)"),
    _sig(K.CUDA_DRIVER, 75, "no kernel image", r"no kernel image is available for execution on the device", "cudaGetErrorString(209) (upstream/cuda_runtime_errors.json): a torch or vLLM build without kernels for this GPU"),
    _sig(K.CUDA_DRIVER, 75, "invalid device function", r"\binvalid device function\b", "cudaGetErrorString(98) (upstream/cuda_runtime_errors.json; HIP's hipErrorInvalidDeviceFunction words it the same): a kernel not compiled for this GPU's architecture"),
    _sig(K.CUDA_DRIVER, 75, "driver version is insufficient", r"CUDA driver version is insufficient", "cudaGetErrorString(35) (upstream/cuda_runtime_errors.json)"),
    _sig(K.CUDA_DRIVER, 75, "cuda driver combination", r"system has unsupported display driver / cuda driver combination", "cudaGetErrorString(803), a driver older than the CUDA it is paired with (upstream/cuda_runtime_errors.json)"),
    _sig(K.CUDA_DRIVER, 75, "forward compatibility", r"forward compatibility was attempted on non supported HW", "cudaGetErrorString(804), the compat package on a GPU it does not support (upstream/cuda_runtime_errors.json)"),
    # torch's words for cudaErrorInitializationError (its CUDA build's c10/cuda CUDAFunctions.cpp):
    # a driver that cannot start, or CUDA touched before vLLM forked its workers; no restart helps.
    _sig(K.CUDA_DRIVER, 75, "cuda driver initialization failed", r"CUDA driver initialization failed", "torch lib/libc10_cuda.so (the CUDA wheel; c10/cuda CUDAFunctions.cpp), for the runtime's 'initialization error'"),
    # Counting the devices failed: the GPUs the container or host was given are not usable (a
    # driver upgraded under a running container, a CUDA_VISIBLE_DEVICES set too late, WSL); only an
    # out-of-memory answer there is a full GPU, which the OOM phrase names.
    _sig(K.CUDA_DRIVER, 75, "cuda unknown error", r"CUDA unknown error - this may be due to an incorrectly set up environment", "torch lib/libc10_cuda.so (the CUDA wheel; c10/cuda CUDAFunctions.cpp): cudaErrorUnknown while counting devices"),
    _sig(K.CUDA_DRIVER, 75, "unexpected error from cudagetdevicecount", r"Unexpected error from cudaGetDeviceCount\(\)(?!.*Error 2: out of memory)", "torch lib/libc10_cuda.so (the CUDA wheel; c10/cuda CUDAFunctions.cpp): any other error while counting devices, its code and string after it"),
    _sig(K.CUDA_DRIVER, 75, "cuda-capable device", r"no CUDA-capable device is detected", "cudaGetErrorString(100) (upstream/cuda_runtime_errors.json)"),
    _sig(K.CUDA_DRIVER, 75, "cudaerror", r"cudaError(InsufficientDriver|NoDevice|NoKernelImageForDevice|SystemDriverMismatch|CompatNotSupportedOnDevice)\b", "cudaGetErrorName(35, 100, 209, 803, 804) (upstream/cuda_runtime_errors.json)"),
    _sig(K.CUDA_DRIVER, 75, "nvidia driver", r"Found no NVIDIA driver|NVIDIA driver on your system is too old", "torch lib/libc10_cuda.so (the CUDA wheel; c10/cuda CUDAFunctions.cpp's driver checks)"),
    # rocBLAS (torch's matrix products on AMD GPUs) aborts when its build has no kernels for the
    # GPU's architecture (the per-architecture wording, ROCm 5.7 on); without the architecture, its
    # single library file is missing: the installation's.
    _sig(K.CUDA_DRIVER, 76, "for gpu arch :", r"rocBLAS error: Cannot read \S.*: .* for GPU arch : gfx\w+", "rocblas library/src/tensile_host.cpp (rocBLAS rocm-5.7.0 on; upstream/rocblas_errors.json)"),
    _sig(K.BROKEN_INSTALL, 70, "rocblas error: cannot read", r"rocBLAS error: Cannot read \S*TensileLibrary\S*: ", "rocblas library/src/tensile_host.cpp (rocBLAS rocm-3.3.0 on; Debian librocblas0 5.5.1's librocblas.so)"),
    _sig(K.CUDA_DRIVER, 75, "could not initialize tensile host: no devices found", r"rocBLAS error: Could not initialize Tensile host: No devices found", "rocblas library/src/tensile_host.cpp (rocBLAS rocm-3.7.0 on; Debian librocblas0 5.5.1's librocblas.so)"),
    _sig(K.CUDA_DRIVER, 75, "failed to infer device type", r"Failed to infer device type", "vllm/config/device.py (vLLM 0.11-0.34; config.py before)"),
    _sig(K.CUDA_DRIVER, 75, "failed to initialize nvml", r"Failed to initialize NVML", "nvidia-smi's words when nvmlInit fails (a driver library that does not match the kernel module, or none)"),
    # FlashAttention's own check of the GPU (TORCH_CHECK in its mha_fwd/mha_varlen_fwd), as vLLM's
    # vllm_flash_attn build and ROCm's fork word it: the attention backend needs a newer GPU
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "flashattention only supports|bfloat16 is only supported on", r"FlashAttention only supports (Ampere|AMD MI200) GPUs or newer|bfloat16 is only supported on (Ampere|AMD MI200) GPUs or newer", "flash-attention csrc/flash_attn/flash_api.cpp (vllm-project/flash-attention, built into vLLM as vllm_flash_attn; Dao-AILab's flash-attn 2.x) and ROCm's fork csrc/flash_attn_rocm/flash_api.cpp; a TORCH_CHECK, so a WARNING that quotes it fell back", errors_only=True),
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "bfloat16 is only supported", r"Bfloat16 is only supported on GPUs with compute capability of at least (?P<min_compute_capability>\d+\.\d+)(\. Your .* GPU( has compute capability (?P<compute_capability>\d+\.\d+))?)?", "vllm/platforms/cuda.py (vLLM 0.10-0.34; rocm.py the same, worker/worker.py 0.5-0.10)"),
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "current gpu", r"the current GPU\. Min(imum)? capability: (?P<min_compute_capability>\d+)\.[ ',]*Current capability: (?P<compute_capability>\d+)", "vllm/config/vllm.py (vLLM 0.11-0.34; config.py 0.6-0.9), compressed_tensors.py, moe_wna16.py and quark.py"),
    _sig(K.INVALID_ARGS, 80, "does not match the quantization method", r"does not match the quantization method specified in the .?quantization.? argument", "vllm/config/model.py (vLLM 0.11-0.34; config.py 0.5-0.9): the checkpoint's quantization differs from --quantization"),
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "is not supported for quantization method", r"is not supported for quantization method", "vllm/config/vllm.py (vLLM 0.11-0.34; config.py 0.6-0.9): the dtype is not one the method takes"),
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "quantization is currently not supported", r"quantization is currently not supported in", "vllm/platforms/interface.py (vLLM 0.6-0.34; config.py 0.5): the platform cannot run the method"),
    _sig(K.PORT_IN_USE, 70, "already in use|errno 98|eaddrinuse", r"(\[Errno 98\]|EADDRINUSE|Address already in use)(.*address \('[^']*', (?P<port>\d+)\))?", "python socket_errors: binding a port that is taken (OSError, errno EADDRINUSE)"),
    # --- the installation: these count only before vLLM's first log line (see classify) ---
    _sig(K.BROKEN_INSTALL, 95, "no module named", r"\bNo module named '?(?P<module>[\w.]+)'?", "Python's ModuleNotFoundError, and `python -m` of a missing package (captured: a venv without vllm)"),
    _sig(K.BROKEN_INSTALL, 95, "importerror", r"^ImportError: ", "python ImportError (name): a dependency of the wrong version, an ABI mismatch"),
    # Deterministic, so no restart helps: one package calling another of another API version
    # (trl or a model's own code and the vLLM or transformers installed), a broken environment.
    _sig(K.BROKEN_INSTALL, 40, "got an unexpected keyword argument", r"^TypeError: \S+\(\) got an unexpected keyword argument", "python api_mismatch_errors: a call with a keyword the installed version does not take"),
    _sig(K.BROKEN_INSTALL, 40, "has no attribute", r"^AttributeError: module '[\w.]+' has no attribute", "python api_mismatch_errors: a module of the installed version without the name asked for"),
    # Versions that do not fit the model: a tokenizer.json, a model type or a CUDA build newer or
    # other than what is installed. No restart helps; an upgrade does.
    _sig(K.BROKEN_INSTALL, 70, "untagged enum", r"data did not match any variant of untagged enum \w+", "tokenizers strings (0.15-0.23, serde's words): a tokenizer.json written by a newer tokenizers than the one installed"),
    _sig(K.BROKEN_INSTALL, 70, "does not recognize this architecture", r"Transformers does not recognize this architecture", "transformers models/auto/configuration_auto.py (4.36-5.x): a model type newer than the transformers installed"),
    _sig(K.BROKEN_INSTALL, 90, "not compiled with cuda", r"Torch not compiled with CUDA enabled", "torch cuda/__init__.py: a CPU build of torch under a vLLM built for CUDA"),
    # A weights file that is no safetensors file: a git-lfs pointer cloned without LFS, a download cut short.
    _sig(K.MODEL_NOT_FOUND, 80, "error while deserializing header", r"Error while deserializing header: \w+", "safetensors strings (0.4-0.8): a weights file that is not one (a git-lfs pointer, a partial download)"),
    # CUDA initialized in vLLM's process before it forked its workers: the same every start until
    # the start method changes (VLLM_WORKER_MULTIPROC_METHOD=spawn).
    # A script that starts vLLM (its LLM class, its spawned workers) without the __main__ guard:
    # the spawned child imports the script again; the same every start until the script changes.
    _sig(K.INVALID_ARGS, 65, "finished its bootstrapping phase", r"current process has finished its bootstrapping phase", "python spawn_errors: multiprocessing's refusal to start a process while the spawned child is still importing the script"),
    _sig(K.INVALID_ARGS, 65, "cannot re-initialize cuda in forked subprocess", r"Cannot re-initialize CUDA in forked subprocess", "torch cuda/__init__.py: CUDA was initialized before vLLM forked its workers"),
    # --- the command line ---
    _sig(K.INVALID_ARGS, 65, "unrecognized arguments", r"error: unrecognized arguments: (?P<flag>\S+)", "python argparse_errors: argparse's refusal, as vLLM's FlexibleArgumentParser prints it"),
    _sig(K.INVALID_ARGS, 65, "error: argument", r"error: argument (?P<flag>--?[\w-]+)", "python argparse_errors: argparse's refusal, as vLLM's FlexibleArgumentParser prints it"),
    _sig(K.INVALID_ARGS, 65, "ambiguous option", r"error: ambiguous option: (?P<flag>--?[\w-]+)", "python argparse_errors: argparse's prefix matching of an abbreviated flag"),
    _sig(K.INVALID_ARGS, 65, "unknown quantization method|invalid quantization method", r"(Unknown|Invalid) quantization method", "vllm/config/model.py (vLLM 0.11-0.34; config.py 0.5-0.9); layers/quantization/__init__.py 'Invalid quantization method' (0.5-0.34)"),
    _sig(K.INVALID_ARGS, 30, "validation error for", r"validation errors? for \w*Config", "python validation_errors: pydantic's title for vLLM's config dataclasses (pydantic since vLLM 0.10)"),
    # --- issue 12's families, each from the source that words it ---
    _sig(K.OOM_KV_CACHE, 85, "reserved for kv cache is -", r"reserved for KV Cache is -[\d.]+ ?GiB", "vLLM V0 worker.py's INFO line after profiling (0.6-0.10), with a negative KV budget"),
    _sig(K.OOM_KV_CACHE, 85, "available kv cache memory: -", r"Available KV cache memory: -[\d.]+ ?GiB", "vLLM V1 gpu_worker's INFO line with a negative budget (0.9-0.34)"),
    _sig(K.OOM_KV_CACHE, 85, "blocks: 0", r"^# \w+ blocks: 0(,|$)", "vLLM V0 executors' INFO line '# %s blocks: %d, # CPU blocks: %d' (0.5-0.10) with no device block"),
    _sig(K.INVALID_ARGS, 65, "invalid tool call parser", r"invalid tool call parser: (?P<value>\S+)", "vllm/entrypoints/openai/api_server.py (vLLM 0.6-0.28; later launchers/launcher.py, common/cli_args.py), a KeyError"),
    _sig(K.INVALID_ARGS, 65, "invalid reasoning parser", r"invalid reasoning parser: (?P<value>\S+)", "vllm/entrypoints/openai/api_server.py (vLLM 0.7-0.28; later common/cli_args.py), a KeyError"),
    _sig(K.INVALID_ARGS, 65, "is not supported", r"Load format `[^`]*` is not supported", "vllm/model_executor/model_loader/__init__.py (vLLM 0.10-0.34)"),
    _sig(K.INVALID_ARGS, 65, "unknown load_format", r"Unknown load_format: \S+", "vllm/model_executor/model_loader/default_loader.py (vLLM 0.9-0.34; loader.py before)"),
    # A quantized checkpoint that tensor parallelism cuts into shards its kernel cannot run:
    # vLLM's own advice is a smaller --tensor-parallel-size (or another quantization).
    _sig(K.INVALID_ARGS, 65, "size_per_partition|not aligned with the quantized weight shape", r"(input|output) size is not aligned with the quantized weight shape|(input|output|intermediate)_size_per_partition\b.{0,80}?(is not divisible by|to be divisible by|must be divisible by|divisible by|not a multiple of)", "vllm/model_executor/layers/quantization/utils/marlin_utils.py, vllm/model_executor/layers/quantization/utils/bitblas_utils.py, vllm/model_executor/layers/quantization/gptq_marlin_24.py, vllm/model_executor/layers/quantization/fp8.py, vllm/model_executor/layers/quantization/awq.py, vllm/model_executor/layers/quantization/gptq.py (vLLM 0.5.5-0.34.0; and the MXFP4/MXFP8/INC/Quark methods): weight shards not divisible by the kernel's tile or group"),
    _sig(K.INVALID_ARGS, 65, "no valid attention backend found for", r"No valid attention backend found for \S+ with", "vllm/platforms/cuda.py (vLLM 0.11.2-0.34.0), vllm/platforms/rocm.py (0.18.1-0.34.0): no attention backend runs this model, dtype and GPU together, each one's reason after it"),
    _sig(K.INVALID_ARGS, 65, "prequant bitsandbytes models with", r"Prequant BitsAndBytes models with (tensor parallelism|TP) is not supported", "vllm/model_executor/model_loader/bitsandbytes_loader.py (vLLM 0.9.2-0.27.1; loader.py 0.6.6.post1-0.8.5.post1): a pre-quantized bitsandbytes checkpoint under tensor parallelism"),
    _sig(K.INVALID_ARGS, 65, "is greater than max_lora_rank", r"LoRA rank \d+ is greater than max_lora_rank \d+", "vllm/lora/worker_manager.py (vLLM 0.5.5-0.6.6.post1, worded the same in later releases' LoRA manager): an adapter above --max-lora-rank"),
    _sig(K.INVALID_ARGS, 65, "appears path-like, but doesn't exist", r"The supplied chat template string \(.*\) appears path-like, but doesn't exist", "vllm/entrypoints/chat_utils.py (vLLM 0.6.6.post1-0.31.0; renderers/chat_utils.py 0.32.0, renderers/chat_utils/chat_template.py 0.33.0-0.34.0): --chat-template names a file that is not there"),
    _NO_PLATFORM,
    _sig(K.INVALID_ARGS, 65, "must be divisible by tensor parallel size", r"must be divisible by tensor parallel size \((?P<tensor_parallel_size>\d+)\)", "vllm/config/model.py (vLLM 0.11-0.34; config.py before)"),
    _sig(K.INVALID_ARGS, 65, "requires --tool-call-parser", r"--enable-auto-tool-choice requires --tool-call-parser", "vllm/entrypoints/openai/cli_args.py (vLLM 0.6-0.28; later common/cli_args.py)"),
    _sig(K.INVALID_ARGS, 65, "is not supported with", r"VLLM_USE_V1=1 is not supported with", "vLLM 0.8 engine arguments' _raise_or_fallback (arg_utils.py), a NotImplementedError"),
    _sig(K.MODEL_NOT_FOUND, 80, "404 client error", r"404 Client Error", "requests' HTTPError wording for a file or revision the Hub does not have (huggingface_hub before 0.36 raised it as is)"),
    _sig(K.MODEL_NOT_FOUND, 80, "outgoing traffic has been disabled", r"outgoing traffic has been disabled", "huggingface_hub file_download.py and _snapshot_download.py LocalEntryNotFoundError: offline (HF_HUB_OFFLINE=1) and the model is not in the cache"),
    # \b: LocalEntryNotFoundError is another error (offline or unreachable), named by its words above
    _sig(K.MODEL_NOT_FOUND, 80, "entrynotfounderror", r"\bEntryNotFoundError", "huggingface_hub errors.py, a file the repository does not have"),
    _sig(K.MODEL_NOT_FOUND, 80, "revisionnotfounderror", r"RevisionNotFoundError", "huggingface_hub errors.py, a revision the repository does not have"),
    _sig(K.MODEL_NOT_FOUND, 80, "offline mode is enabled", r"offline mode is enabled", "huggingface_hub utils/_http.py OfflineModeIsEnabled: HF_HUB_OFFLINE=1 and the model is not cached"),
    _sig(K.MODEL_NOT_FOUND, 80, "repo id must use alphanumeric chars", r"Repo id must use alphanumeric chars", "huggingface_hub utils/_validators.py HFValidationError, a path that is not there read as a repo id"),
    _sig(K.HUB_UNREACHABLE, 70, "huggingface.co", r"huggingface\.co.*(Max retries exceeded|ConnectTimeout|ReadTimeout|NameResolutionError|Temporary failure in name resolution|Network is unreachable|SSLError|CERTIFICATE_VERIFY_FAILED)", "urllib3's and requests' connection errors, with the Hub's URL before the error's name"),
    _sig(K.HUB_UNREACHABLE, 70, "hf.co", r"\bhf\.co\b.*(Max retries exceeded|ConnectTimeout|ReadTimeout|NameResolutionError|Temporary failure in name resolution|Network is unreachable|SSLError)|(Max retries exceeded|NameResolutionError|Temporary failure in name resolution).*\bhf\.co\b", "urllib3's and requests' connection errors for the Hub's CDN hosts (*.hf.co), where the weights come from"),
    # The Hub answered but will not serve now: its rate limit, or a server error. Both pass.
    _sig(K.HUB_UNREACHABLE, 70, "too many requests", r"\b429 (Client Error: )?Too Many Requests", "huggingface_hub utils/_http.py (0.36-1.x): the Hub's rate limit, and requests' '429 Client Error' before it"),
    _sig(K.HUB_UNREACHABLE, 70, "server error", r"\b5\d\d Server Error: .*for url: \S*(huggingface\.co|hf\.co)", "huggingface_hub errors.py HfHubHTTPError around requests' 'N Server Error: reason for url: URL', for the Hub's URL (an access log's '500 Internal Server Error' is vLLM's own answer, not this)"),
    _sig(K.HUB_UNREACHABLE, 45, "nameresolutionerror", r"\bNameResolutionError\b", "urllib3 exceptions.py NameResolutionError (2.x), a failed DNS lookup: vLLM reaches the network only for the model"),
    _sig(K.HUB_UNREACHABLE, 45, "newconnectionerror", r"\bNewConnectionError\b", "urllib3 exceptions.py NewConnectionError (1.26-2.x), a refused or unreachable connection"),
    _sig(K.HUB_UNREACHABLE, 45, "connecttimeouterror", r"\bConnectTimeoutError\b", "urllib3 exceptions.py ConnectTimeoutError (1.26-2.x)"),
    _sig(K.SHM_TOO_SMALL, 85, "insufficient space in", r"Insufficient space in \S+.*(shm-size|ipc=host)", "vllm/distributed/device_communicators/shm_broadcast.py (vLLM 0.27-0.34)"),
    _sig(K.SHM_TOO_SMALL, 20, "/dev/shm", r"because /dev/shm has only (?P<free_bytes>\d+) bytes available", "ray _private/services.py: Ray's object store fell back from /dev/shm; weighs only against wrappers, since Ray goes on"),
    _sig(K.CUDA_DRIVER, 96, "cannot open shared object file", r"^(?!.*Failed to import from).*lib(cuda|nvidia-ml)\.so(\.\d+)*: cannot open shared object file", "the dynamic loader (python import errors): no NVIDIA driver library in the container or host"),
    _sig(K.CUDA_DRIVER, 75, "system not yet initialized", r"system not yet initialized", "cudaGetErrorString(802) (upstream/cuda_runtime_errors.json)"),
    _sig(K.CUDA_DRIVER, 75, "nvidia-container-cli", r"nvidia-container-cli: (requirement error|initialization error)", "nvidia-container-cli, the NVIDIA container runtime's hook: the image's CUDA requirement exceeds the driver, or it finds no driver"),
    _sig(K.CUDA_DRIVER, 75, "no supported device detected", r"No supported device detected", "vLLM 0.2-0.4 DeviceConfig, before the mined releases (its successor is 'Failed to infer device type')"),
    _sig(K.BROKEN_INSTALL, 90, "undefined symbol", r"^(?!.*Failed to import from).*\.so(\.[\w.]+)?: undefined symbol: ", "the dynamic loader's ImportError for a compiled extension built against another torch (python import errors)"),
    _sig(K.BROKEN_INSTALL, 90, "cannot open shared object file", r"^(?!.*Failed to import from).*\.so(\.\d+)*: cannot open shared object file", "the dynamic loader's ImportError for a library the install lacks, e.g. libcudart of another CUDA (python import errors)"),
    # vLLM's WARNING that its own compiled kernels did not load: vLLM goes on (so it weighs only
    # against wrappers), but nothing it runs on the GPU can work; no such module at all is left out,
    # since vLLM said it in healthy runs on platforms built without them (TPU, Neuron, HPU).
    _sig(K.BROKEN_INSTALL, 15, "failed to import from vllm._", r"Failed to import from vllm\._\w+ (with|:) ImportError\(.*(undefined symbol|cannot open shared object file)", "vLLM's WARNING when vllm._C, _core_C, _rocm_C or _moe_C does not load (platforms/interface.py, rocm.py, cpu.py 0.9-0.34; _custom_ops.py before), with the dynamic loader's words for a library built against another torch or lacking"),
    _sig(K.CUDA_DRIVER, 16, "failed to import from vllm._", r"Failed to import from vllm\._\w+ (with|:) ImportError\(.*lib(cuda|nvidia-ml)\.so(\.\d+)*: cannot open shared object file", "vLLM's same WARNING when the library missing is the driver's: no NVIDIA driver in the container or host"),
    _sig(K.CUDA_DRIVER, 75, "cannot find -l", r"cannot find -l(cuda\b|:libcuda\.so)", "GNU ld, when triton's launcher asks for the driver's library (-lcuda in triton 3.1-3.4, -l:libcuda.so.1 in 3.9) and there is none (python linker_errors)"),
    _sig(K.CUDA_DRIVER, 75, "libcuda.so cannot found", r"libcuda\.so cannot found", "triton backends/nvidia/driver.py libcuda_dirs() (3.1-3.9): ldconfig knows no libcuda.so.1"),
    _sig(K.MODEL_NOT_FOUND, 80, "notexisterror", r"modelscope(_hub)?(\.\w+)*\.NotExistError", "modelscope hub/errors.py (1.25; modelscope_hub errors.py since), with VLLM_USE_MODELSCOPE=1: no such model or revision on ModelScope"),
    _sig(K.TRUST_REMOTE_CODE, 85, "consider setting `trust_remote_code=true`", r"consider setting `trust_remote_code=True`", "vllm/transformers_utils/config.py (vLLM 0.5-0.34), raised when transformers asks for the model's own code and --trust-remote-code is off; the tokenizer's and processor's say the same"),
    # triton's compiler: an fp8 type this GPU has no instructions for (native fp8 needs SM89+).
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "not supported in this architecture", r"type \w+ not supported in this architecture\. The supported fp8 dtypes are", "triton language/core.py (3.9): an fp8 type the GPU cannot compute in"),
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "too old to be supported by the triton gpu compiler", r"too old to be supported by the triton GPU compiler", "torch inductor's refusal of GPUs below compute capability 7.0"),
    # --- from vLLM's uncovered messages (scripts/mine_vllm_messages.py --uncovered), by family ---
    _sig(K.INVALID_ARGS, 65, "model architectures", r"Model architectures \[[^\]]*\] are not supported (on Neuron )?for now", "vllm/model_executor/model_loader/neuron.py, vllm/model_executor/model_loader/neuronx_distributed.py, vllm/model_executor/models/__init__.py and 1 more (vLLM 0.5.5-0.34.0): the model's architecture is not in this vLLM's registry"),
    _sig(K.INVALID_ARGS, 65, "is not supported by rocm for now", r"Model architecture '?[\w.]+'? is not supported by ROCm for now", "vllm/model_executor/models/__init__.py, vllm/model_executor/models/registry.py, vllm/platforms/rocm.py (vLLM 0.5.5-0.34.0): an architecture this vLLM does not run on ROCm"),
    _sig(K.INVALID_ARGS, 65, "model architecture", r"Model architecture \S+ (was supported in vLLM until v[\w.]+, and is not supported anymore|is not supported in-tree anymore)", "vllm/model_executor/models/registry.py (vLLM 0.10.2-0.34.0): an architecture this vLLM no longer carries"),
    _sig(K.INVALID_ARGS, 65, "is not a registered model in the transformers library|is not compatible with vllm|has no vllm implementation", r"is not a registered model in the Transformers library|The Transformers implementation of \S+ is not compatible with vLLM|has no vLLM implementation and the Transformers implementation is not compatible with vLLM", "vllm/model_executor/model_loader/utils.py, vllm/model_executor/models/registry.py (vLLM 0.7.3-0.34.0): no vLLM implementation, and the Transformers fallback cannot run it"),
    _sig(K.INVALID_ARGS, 65, "max local gpu count", r"please set tensor_parallel_size \(\d+\) to less than max local gpu count \(\d+\)|please ensure that world_size \(\d+\) is less than than max local gpu count \(\d+\)", "vllm/executor/mp_distributed_executor.py and executor/multiproc_gpu_executor.py (0.5-0.6, read from the source) (vLLM 0.5.5-0.10.2): --tensor-parallel-size asks for more GPUs than the host has (V0 multiprocessing)"),
    _sig(K.INVALID_ARGS, 65, "exceeds the total number of available", r"The number of required \w+s exceeds the total number of available \w+s in the placement group", "vllm/executor/ray_utils.py, vllm/v1/executor/ray_utils.py (vLLM 0.5.5-0.34.0): the parallel sizes ask for more GPUs than the Ray placement group holds; its WARNING of the same words (0.6+) is a cluster that may still grow, and waits", errors_only=True),
    # vLLM's ensure_divisibility, when a tensor-parallel size does not divide a model dimension
    # (the heads, the vocabulary, the experts' width) it splits: another --tensor-parallel-size
    _sig(K.INVALID_ARGS, 65, "is not divisible by", r"AssertionError: \d+ is not divisible by \d+\s*$", "vllm/distributed/utils.py (vLLM 0.5.5-0.34.0, ensure_divisibility's assert)"),
    _sig(K.INVALID_ARGS, 65, "driver node", r"driver node id \w+ is not included in a placement group|Ray does not allocate any \w+s on the driver node", "vllm/executor/ray_distributed_executor.py, vllm/executor/ray_gpu_executor.py, vllm/executor/ray_hpu_executor.py and 3 more (vLLM 0.5.5-0.32.0): a Ray placement group that leaves out the driver node"),
    _sig(K.INVALID_ARGS, 65, "local range: [", r"Error (setting \w+|computing assigned_physical_gpu_ids|computing device indices for \w+): local range: \[\d+, \d+\) base value:", "vllm/v1/engine/core.py, vllm/v1/engine/utils.py (vLLM 0.9.2-0.34.0): a data-parallel rank's device range past CUDA_VISIBLE_DEVICES"),
    _sig(K.INVALID_ARGS, 65, "invalid attention backend", r"Invalid attention backend:? '[^']*'\.? (Available|Valid) backends", "vllm/attention/selector.py (vLLM 0.5.5-0.6.6.post1, 0.10.2-0.12.0): VLLM_ATTENTION_BACKEND names no backend"),
    _sig(K.INVALID_ARGS, 65, "is not valid for this configuration", r"Selected backend \S+ is not valid for this configuration\. Reason:", "vllm/platforms/cuda.py, vllm/platforms/rocm.py (vLLM 0.11.2-0.34.0): the attention backend asked for cannot run this model or GPU"),
    _sig(K.INVALID_ARGS, 65, "extra config", r"Unexpected extra config keys for (load format \S+|runai_streamer): |Model loader extra config is not supported for load format \S+", "vllm/model_executor/model_loader/default_loader.py, vllm/model_executor/model_loader/dummy_loader.py, vllm/model_executor/model_loader/gguf_loader.py and 4 more (vLLM 0.5.5-0.34.0): --model-loader-extra-config keys the load format does not take"),
    _sig(K.INVALID_ARGS, 65, "positional argument", r"No model specified! Please specify model either as a positional argument|you should provide the model as a positional argument or in a config file", "vllm/utils.py, vllm/utils/__init__.py, vllm/utils/argparse_utils.py (vLLM 0.8.5.post1-0.34.0): no model given"),
    _sig(K.INVALID_ARGS, 65, "does not support any pooling tasks", r"Model \S+ does not support any pooling tasks", "vllm/v1/worker/gpu_model_runner.py (vLLM 0.11.2-0.33.0): a pooling runner for a model with no pooling task"),
    _sig(K.INVALID_ARGS, 65, "please try cudagraph_mode=piecewise|full cudagraph not supported", r"CUDAGraphMode\.\w+ is not supported with \S+ backend \(support: ?[\w.]+\) ?; please try cudagraph_mode=PIECEWISE|Full CUDAGraph not supported for \S+\. Turn off CompilationConfig\.full_cuda_graph", "vllm/config/compilation.py, vllm/v1/worker/gpu_model_runner.py (vLLM 0.9.2-0.34.0): a CUDA-graph mode the attention backend does not support"),
    _sig(K.INVALID_ARGS, 65, "unknown vllm environment variable detected|has been removed.|is no longer supported", r"ValueError: (Unknown vLLM environment variable detected: VLLM_\w+|VLLM_\w+ has been removed\.|VLLM_USE_V2_MODEL_RUNNER=\S+ is no longer supported)", "vllm/platforms/interface.py (vLLM 0.31.0-0.34.0): a VLLM_* environment variable this vLLM does not know or has removed"),
    _sig(K.MODEL_NOT_FOUND, 80, "model weights", r"Cannot find any (safetensors )?model weights with [`'][^`']*[`']|No model weights found in: `[^`]*`", "vLLM 0.2-0.4 quoted the name with ' (before the mined releases); vllm/model_executor/model_loader/bitsandbytes_loader.py, vllm/model_executor/model_loader/default_loader.py, vllm/model_executor/model_loader/loader.py and 1 more (vLLM 0.5.5-0.34.0): a folder or repository with no weight files vLLM can load"),
    _sig(K.MODEL_NOT_FOUND, 80, "referenced in index but missing", r"Weight files referenced in index but missing: ", "vllm/model_executor/model_loader/weight_utils.py (vLLM 0.26.0-0.34.0): an incomplete checkpoint: shards its index names are not there"),
    _sig(K.MODEL_NOT_FOUND, 80, "only pre-sharded checkpoints", r"Could not find checkpoint files '[^']*', only pre-sharded checkpoints are currently supported", "vllm/model_executor/model_loader/loader.py, vllm/model_executor/model_loader/sharded_state_loader.py (vLLM 0.5.5-0.34.0): --load-format sharded_state on a checkpoint that is not pre-sharded"),
    _sig(K.MODEL_NOT_FOUND, 80, "config format", r"Could not detect config format for no config file found|No supported config format found in \S+", "vllm/transformers_utils/config.py (vLLM 0.6.6.post1-0.34.0): a folder with neither config.json nor params.json"),
    _sig(K.MODEL_NOT_FOUND, 80, "make sure that a mistral tokenizer is present", r"Found 0 files matching the pattern: `?.*`?\. Make sure that a Mistral tokenizer is present in", "vllm/transformers_utils/tokenizers/mistral.py (vLLM 0.6.6.post1-0.10.2): --tokenizer-mode mistral on a folder without a Mistral tokenizer"),
    # Ray refuses a node whose Ray or Python is not the cluster's by raising RuntimeError; the
    # same words are only a warning where Ray Client was told to ignore versions, and its warning
    # of a patch-level Python difference says "Python patch version mismatch" and goes on
    _sig(K.BROKEN_INSTALL, 70, "version mismatch: ", r"RuntimeError: Version mismatch: The cluster was started with", "ray _private/utils.py (check_version_info, Ray 2.9.3-2.60.0)"),
    # vLLM's words for a kernel its own build, or FlashInfer's, AITER's or DeepGEMM's, was made
    # without: a reinstall or another build, which no restart is
    _sig(K.BROKEN_INSTALL, 55, "build with|build that includes|decode api|requires its compiled|rebuild", r"(requires|needs) (an?|the pinned) [\w.-]+ build with|build that includes|requires \w+'s [\w ]+ decode API|requires its compiled \w+|\bRebuild (vLLM|vllm-xpu-kernels|with)\b|rebuild the vLLM wheel", "vllm/utils/flashinfer.py, vllm/v1/attention/backends/mla/flashinfer_mla_sparse_sm120.py, vllm/models/deepseek_v4/nvidia/flashinfer_sparse.py, vllm/v1/attention/backends/mla/rocm_aiter_mla.py, vllm/utils/deep_gemm.py (vLLM 0.24.0-0.34.0): a FlashInfer, AITER, DeepGEMM or vLLM build without the kernel the model or backend needs", errors_only=True),
    # vLLM's placeholder for an optional extra: the feature's packages are not installed
    _sig(K.BROKEN_INSTALL, 70, "please install vllm[", r"Please install vllm\[\w+\] for \w+ support", "vllm/utils/import_utils.py, vllm/utils/__init__.py, vllm/utils.py (vLLM 0.6.6.post1-0.34.0): PlaceholderModule of an extra (audio, video, ...) that is not installed"),
    _sig(K.BROKEN_INSTALL, 70, "failed to import ray", r"Failed to import Ray(: .*)?[.,] ?Please install Ray with `pip install ray`", "vllm/executor/ray_utils.py, vllm/v1/executor/ray_utils.py (vLLM 0.5.5-0.34.0): a Ray executor asked for, and Ray not installed"),
    _sig(K.BROKEN_INSTALL, 70, "please install", r"Please install [\w.-]+>=\S+ via `pip install [^`]+` to use|\b[\w-]+ version is wrong\. Please install [\w-]+>=", "vllm/model_executor/layers/quantization/bitblas.py, vllm/model_executor/layers/quantization/bitsandbytes.py, vllm/model_executor/layers/quantization/deepspeedfp.py and 9 more (vLLM 0.5.5-0.34.0): a package the quantization method needs is missing or too old"),
    # vLLM's own refusals that name a package to install or upgrade (145 raise sites mined, for
    # a feature, kernel or backend the flags chose): the exception line, not a warning that falls back.
    _sig(K.BROKEN_INSTALL, 70, "please install|please update|please upgrade|pip install|is not installed|not available or outdated", r"^([\w.]+\.)?(RuntimeError|ValueError|ImportError|ModuleNotFoundError|NotImplementedError): .*(Please (install|update|upgrade)\b|\bpip install\b|\bis not installed\b|not available or outdated)", "vllm/utils/deep_gemm.py, vllm/entrypoints/mcp/tool_server.py, vllm/tilelang_utils/__init__.py and the rest of vLLM's raise sites that tell to install or upgrade a package (vLLM 0.5.5-0.34.0)"),
    # The ptxas triton compiles with knows no such GPU architecture: a triton (or CUDA toolkit)
    # older than the GPU; an upgrade helps, no restart does.
    _sig(K.BROKEN_INSTALL, 70, "is not defined for option", r"ptxas fatal\s*: Value '(sm|compute)_\w+' is not defined for option 'gpu-name'", "triton backends/nvidia/bin/ptxas (the ptxas triton 3.1 and 3.9 bundle): its refusal of a --gpu-name it does not know"),
    _sig(K.BROKEN_INSTALL, 70, "support for transformers v4", r"Support for Transformers v4 is deprecated and was removed in vLLM v[\d.]+", "vllm/transformers_utils/config.py (vLLM 0.24.0-0.31.0): Transformers v4 with a vLLM that dropped it"),
    _sig(K.CUDA_DRIVER, 75, "is set to empty string, which means", r"CUDA_VISIBLE_DEVICES is set to empty string, which means GPU support is disabled|\w+ is set to empty string, which means current platform support is disabled", "vllm/platforms/cuda.py (vLLM 0.6.0-0.8.5.post1), vllm/platforms/interface.py (0.9.0-0.9.1, the platform's own variable): the device list is empty: no GPU is visible"),
    # vLLM 0.11.0 still read VLLM_USE_V1=0 and refused it: the environment asks for what was removed
    _sig(K.INVALID_ARGS, 60, "set vllm_use_v1=1", r"(V0 attention backends have been removed|MLA attention backends require the V1 engine)\. Set VLLM_USE_V1=1", "vllm/platforms/cuda.py, vllm/platforms/rocm.py (vLLM 0.11.0)"),
    _sig(K.INVALID_ARGS, 60, "headless mode", r"Headless mode is only supported for V1|data_parallel_size_local must be > 0 in headless mode", "vllm/entrypoints/cli/serve.py (vLLM 0.9.0-0.34.0; a RuntimeError in 0.9.0, a ValueError after)"),
    _sig(K.BROKEN_INSTALL, 70, "deprecated `pynvml` package", r"You are using a deprecated `pynvml` package\. Please uninstall `pynvml`", "vllm/utils.py (vLLM 0.7.2)"),
    _sig(K.UNSUPPORTED_DTYPE_OR_QUANT, 80, "bitsandbytes", r"Model \S+ does not support BitsAndBytes quantization yet|BitsAndBytes loader does not support \w+ quantization", "vllm/model_executor/model_loader/bitsandbytes_loader.py, vllm/model_executor/model_loader/loader.py (vLLM 0.5.5-0.27.1): BitsAndBytes asked for a model or quantization the loader cannot take"),
    _sig(K.OOM_KV_CACHE, 85, "warming up pooler", r"CUDA out of memory occurred when warming up pooler", "vllm/v1/worker/gpu/pool/pooling_runner.py, vllm/v1/worker/gpu_model_runner.py (vLLM 0.9.2-0.34.0): the pooling twin of the sampler warm-up OOM, at the end of profiling"),
    # vLLM's own memory refusals, worded apart from the ones above (mined: tests/diagnosis/upstream/vllm_messages.json)
    _sig(K.INSUFFICIENT_FREE_MEMORY, 85, "externally held weights", r"Externally held weights on device \S+ \([\d.]+/(?P<total_bytes>[\d.]+) GiB\) exceed the desired GPU memory utilization \((?P<gpu_memory_utilization>[\d.]+), (?P<required_bytes>[\d.]+) GiB\)|Externally held weights on device", "vllm/v1/worker/utils.py (vLLM 0.32.0-0.34.0): weights another process holds on the GPU take more than the budget"),
    _sig(K.INSUFFICIENT_FREE_MEMORY, 85, "excluding external process's weights", r"Free memory on device \S+ \((?P<free_bytes>[\d.]+)/(?P<total_bytes>[\d.]+) GiB\) on startup is less than the engine's budget after excluding external process's weights \((?P<gpu_memory_utilization>[\d.]+), (?P<required_bytes>[\d.]+) GiB\)|on startup is less than the engine's budget after excluding external process's weights", "vllm/v1/worker/utils.py (vLLM 0.32.0-0.34.0): the free-memory check when another process holds weights"),
    _sig(K.INSUFFICIENT_FREE_MEMORY, 85, "on kv cache allocation is less than requested memory for kv", r"Available memory on node \d+ \((?P<free_bytes>[\d.]+)/(?P<total_bytes>[\d.]+) GiB\) on kv cache allocation is less than requested memory for kv", "vllm/v1/worker/cpu_worker.py (vLLM 0.20.2-0.34.0): the CPU backend's KV cache asked for more than the node has free"),
    _sig(K.OOM_KV_CACHE, 85, "leaving none for the kv cache", r"The worker already uses [\d.]+ GiB \(model weights and runtime\), more than the [\d.]+ GiB of CPU memory reserved for it on node \d+, leaving none for the KV cache", "vllm/v1/worker/cpu_worker.py (vLLM 0.33.0-0.34.0): the CPU backend's twin of 'No available memory for the cache blocks'"),
    _sig(K.OOM_KV_CACHE, 85, "is available for the kv cache", r"frontend multimodal GPU decoding reserves [\d.]+ GiB .*but only -?[\d.]+ GiB is available for the KV cache", "vllm/multimodal/gpu_ipc_memory.py (vLLM 0.27.1-0.34.0; v1/worker/gpu_worker.py 0.25.1-0.26.0): the multimodal decode pool leaves the KV cache too little"),
    _sig(K.OOM_KV_CACHE, 85, "not enough room in the gpu_memory_utilization budget", r"Not enough room in the gpu_memory_utilization budget to cache a dequantized", "vllm/model_executor/kernels/linear/mixed_precision/rdna_hybrid_w4a16.py (vLLM 0.34.0): a dequantized weight cache and one max_model_len request do not both fit"),
    # The KV block pool ran dry under requests: only serving takes blocks from it.
    _sig(K.OOM_RUNTIME, 80, "no free blocks|free blocks from the pool|no usable cache memory left", r"No free blocks available|Cannot get \d+ free blocks from the pool|Out of memory! No free blocks are available|No usable cache memory left", "vllm/v1/core/kv_cache_utils.py (vLLM 0.6.6.post1-0.34.0), v1/core/block_pool.py (0.8.5.post1-0.34.0; kv_cache_manager.py 0.6.6.post1-0.7.3), V0 core/block_manager_v1.py (0.5.5) and core/evictor*.py (0.5.5-0.10.2): ValueErrors of the KV block pool"),
    _sig(K.WORKER_DIED, 0, "died, exit code", r"Worker \S+ pid \d+ died, exit code: -?\d+", "vllm/executor/multiproc_worker_utils.py (vLLM 0.5.5-0.10.2): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "died with exit code", r"Process \S+ \(PID: \d+\) died with exit code -?\d+", "vllm/v1/utils.py (vLLM 0.9.2-0.34.0): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "workerproc", r"WorkerProc (failed to start|failed\.|hit an exception)", "vllm/v1/executor/multiproc_executor.py (vLLM 0.6.6.post1-0.34.0): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "executor failed", r"\bExecutor failed\.", "vllm/v1/engine/core.py, vllm/v1/executor/multiproc_executor.py (vLLM 0.8.5.post1-0.34.0): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "worker failed", r"\bWorker failed( with error ('|%s, please check)| with KV connector output|\.?$)", "vllm/executor/multiproc_worker_utils.py, vllm/v1/executor/multiproc_executor.py (vLLM 0.5.5-0.34.0; 0.8.4 printed its '%s' unfilled): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "engine background task failed|background loop has errored already|background loop is stopped", r"Engine background task failed|Background loop has errored already|Background loop is stopped", "vllm/engine/async_llm_engine.py (vLLM 0.5.5-0.10.2): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "engine process failed to start", r"Engine process failed to start\b", "vllm/entrypoints/openai/api_server.py (vLLM 0.6.2-0.10.2): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "at least one worker is dead", r"At least one Worker is dead\. Dead Workers: ", "vllm/executor/ray_gpu_executor.py, vllm/executor/ray_xpu_executor.py (vLLM 0.4.1-0.5.4): a Ray worker died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "task finished unexpectedly", r"Task finished unexpectedly\. This should never happen!", "vllm/engine/async_llm_engine.py (vLLM 0.4.1-0.10.2, AsyncEngineDeadError): the engine's loop ended; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "frontend process failed during engine core initialization", r"Frontend process failed during engine core initialization", "vllm/v1/engine/utils.py (vLLM 0.9.2-0.34.0): a process died; the cause is above it"),
    # a headless (data-parallel) node's engine that never heard from the node serving the API
    _sig(K.PEER_UNREACHABLE, 1, "from front-end process within", r"Did not receive response from front-end process within \d+ minutes", "vllm/v1/engine/core.py (vLLM 0.9.2-0.34.0): the handshake of a remote engine with the front-end"),
    _sig(K.WORKER_DIED, 0, "output_handler failed", r"AsyncLLM output_handler failed", "vllm/v1/engine/async_llm.py (vLLM 0.8.5.post1-0.34.0): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "rayworkerproc failed", r"RayWorkerProc failed: ", "vllm/v1/executor/ray_executor_v2.py (vLLM 0.20.2-0.34.0): a process died; the cause is above it"),
    _sig(K.WORKER_DIED, 0, "exception in worker", r"Exception in worker \S+ while processing method \S+", "vllm/executor/multiproc_worker_utils.py (vLLM 0.5.5-0.10.2): a process died; the cause is above it"),

    # --- worker deaths that name no cause: what killed it is not in the output ---
    # A kernel faulted: what made it (a bug, a request, the hardware) is not in the output.
    _sig(K.WORKER_DIED, 0, "illegal memory access|illegal instruction was encountered|misaligned address|unspecified launch failure", r"an illegal memory access was encountered|an illegal instruction was encountered|\bmisaligned address\b|unspecified launch failure", "cudaGetErrorString(700, 715, 716, 719) (upstream/cuda_runtime_errors.json): a kernel's fault, whose cause is not in the output"),
    _sig(K.WORKER_DIED, 0, "engine iteration timed out", r"Engine iteration timed out", "vLLM V0 async_llm_engine (0.5-0.10)"),
    _sig(K.WORKER_DIED, 0, "in acquire_read", r"shm_broadcast\.py\S*, line \d+, in acquire_read", "the frame of vLLM's shm_broadcast.py acquire_read (distributed/device_communicators, 0.6-0.34), which raises a bare TimeoutError when the other side of the queue stops answering"),
    # Ray's memory monitor killing a worker for the host's memory, not the GPU's: ray.exceptions
    # has an OutOfMemoryError of its own, kept out of the GPU phrase above.
    _sig(K.WORKER_DIED, 0, "running low on memory|exceeds the memory usage threshold", r"killed due to the node running low on memory|which exceeds the memory usage threshold of [\d.]+\. Ray killed this worker", "ray core/src/ray/raylet/raylet (2.9-2.60), its memory monitor's words, with Ray's own OutOfMemoryError class: the host's memory, not the GPU's"),
    _sig(K.WORKER_DIED, 0, "rpc call to", r"RPC call to \w+ timed out", "vllm/v1/executor/multiproc_executor.py (vLLM 0.6-0.34), a TimeoutError"),
    _sig(K.WORKER_DIED, 0, "nccl error", r"NCCL error.*(unhandled cuda error|unhandled system error|internal error)", "ncclGetErrorString(1..3) (upstream/nccl_errors.json) behind vLLM's or torch's 'NCCL error'"),
    # ncclRemoteError: NCCL's own word for a peer that went away
    _sig(K.PEER_UNREACHABLE, 1, "remote process exited or there was a network error", r"remote process exited or there was a network error", "ncclGetErrorString(6) (upstream/nccl_errors.json) behind vLLM's or torch's 'NCCL error'"),
    # --- a group of processes (ranks, nodes) that lost one of its members ---
    # Ranked among themselves by how near each is to the cause: a collective that timed out
    # (3) brings the process down, Ray then says its actor died (2), and the peers of a process
    # that died find their connections closed (1). Any cause of another kind outranks them all.
    # A collective that never completed: a peer died, stalled or cannot be reached; restarting
    # the group is what helps, the peer's own output says why.
    _sig(K.COLLECTIVE_TIMEOUT, 3, "watchdog caught collective operation timeout", r"Watchdog caught collective operation timeout", "torch ProcessGroupNCCL's watchdog: a collective timed out"),
    # the watchdog's own later words for a timed-out collective (torch 2.8+), and the watchdog itself
    # stuck on a collective that never returns (2.3-2.5: its heartbeat monitor; 2.6+: "got stuck")
    _sig(K.COLLECTIVE_TIMEOUT, 3, "failure detected by watchdog at work sequence id|heartbeat monitor timed out|watchdog got stuck for", r"failure detected by watchdog at work sequence id|Heartbeat monitor timed out!|watchdog got stuck for \d+ seconds", "torch ProcessGroupNCCL.cpp (2.3-2.9): a collective or the watchdog stuck on one"),
    _sig(K.COLLECTIVE_TIMEOUT, 3, "raychanneltimeouterror", r"RayChannelTimeoutError", "ray exceptions.py (2.40-2.60): a compiled graph's channel read that timed out, vLLM's Ray executor waiting on a peer"),
    _sig(K.WORKER_DIED, 0, "killed", r"^Killed$|\bKilled\s+(python|vllm)", "strsignal(9), as a shell reports a child killed outright (python signals)"),
    _sig(K.WORKER_DIED, 0, "segmentation fault", r"\bSegmentation fault\b", "strsignal(11) (python signals), as the shell or faulthandler reports it"),
    _sig(K.WORKER_DIED, 0, "fatal python error", r"Fatal Python error: (Aborted|Floating point exception|Illegal instruction)", "CPython's faulthandler on a fatal signal"),
    _sig(K.WORKER_DIED, 0, "received at time=", r"\*\*\* SIG\w+ received at time=", "ray _raylet.so: the fatal-signal handler linked into every Ray process (and the raylet)"),
    # gloo (torch's CPU collectives, and the group vLLM's ranks meet in) on a peer that closed the
    # connection: another rank or node died, its cause in its own output
    _sig(K.PEER_UNREACHABLE, 1, "gloo/transport/tcp/", r"gloo/transport/tcp/\w+\.cc:\d+\] (Read error|Connection closed by peer|Socket closed|Connect timeout|Timed out waiting)", "torch gloo/transport/tcp/pair.cc (the gloo in torch 2.9.1's libtorch_cpu.so)"),
    # torch's c10d store, where a group's ranks meet: a master that cannot be reached, a
    # rendezvous that never completed (a node missing, a firewall, the wrong --master-addr)
    _sig(K.PEER_UNREACHABLE, 1, "waitforinput: socket|wait timeout after|waiting for clients|the client socket", r"waitForInput: socket .+? timed out after \d+ms|wait timeout after \d+ms, keys:|Timed out after \d+ seconds waiting for clients\.|The client socket (has (timed out after|failed to connect to)|cannot be initialized to connect to)", "torch c10d socket.cpp and TCPStore.cpp (their format strings in torch 2.13's libtorch_cpu.so)"),
    _sig(K.PEER_UNREACHABLE, 1, "to recv, got 0 bytes|to send, sent 0 bytes|tcp client failed to connect/validate to host", r"[Ff]ailed to (recv, got|send, sent) 0 bytes|TCP client failed to connect/validate to host \S+ - timed out", "torch c10d Utils.hpp and TCPStore.cpp (torch 2.6-2.13's libtorch_cpu.so): a store's peer that closed its connection, a master never reached"),
    # NCCL's own sockets (its bootstrap and its socket transport), in the words of NCCL 2.21-2.28
    _sig(K.PEER_UNREACHABLE, 1, "connection closed by remote peer|socketstartconnect|socketpollconnect|gloo connectfullmesh failed", r"Connection closed by remote peer|socket(Start|Poll)Connect:? ([Cc]onnect to|returned|exceeded)|Gloo connectFullMesh failed", "NCCL src/misc/socket.cc (2.21-2.28), and torch's gloo mesh (ProcessGroupGloo.cpp): a peer that closed its connection, one that cannot be reached"),
    # torchrun (torch.distributed.elastic) reporting a child that failed: a death, its cause (if
    # any) in the child's own output
    _sig(K.WORKER_DIED, 0, "failed (exitcode: ", r"failed \(exitcode: -?\d+\) local_rank: \d+ \(pid: \d+\) of (binary|fn)", "torch distributed/elastic/multiprocessing/api.py (torch 2.13)"),
    _sig(K.WORKER_DIED, 0, "received by pid", r"Signal \d+ \(SIG[A-Z]+\) received by PID \d+", "torch distributed/elastic/multiprocessing/errors/__init__.py (torch 2.13): a child killed by a signal"),
    _sig(K.WORKER_DIED, 0, "segfault encountered", r"Segfault encountered", "a native fatal-signal handler's banner on SIGSEGV, followed by C++ frames as File \"<unknown>\"; not from vLLM, torch's or Ray's mined words"),
    _sig(K.WORKER_DIED, 0, "exit code", r"exit(ed with)? code:? 13[4-9]\b", "a supervisor's report of exit status 128+N, a fatal signal (the shell_status column of upstream/python_errors.json)"),
    # A Ray actor (vLLM's Ray workers are actors) that died: Ray says so, not always why.
    _sig(K.RAY_ACTOR_DIED, 2, "rayactorerror", r"RayActorError", "ray exceptions.py"),
    _sig(K.RAY_ACTOR_DIED, 2, "the actor died", r"The actor died (unexpectedly|because)", "ray exceptions.py ActorDiedError"),
    _sig(K.RAY_ACTOR_DIED, 2, "the actor is dead", r"The actor is dead because its (worker process|node) has died", "ray _raylet.so: the death cause Ray gives an actor whose worker process died (2.60; the GCS words the other causes)"),
    _sig(K.RAY_ACTOR_DIED, 2, "a worker died or was killed", r"A worker died or was killed while executing a task", "ray core/src/ray/raylet/raylet: the raylet's report of a worker that died running a task (2.9-2.60)"),
    _sig(K.RAY_ACTOR_DIED, 2, "missed too many heartbeats", r"has been marked dead because the detector has missed too many heartbeats", "ray GCS (2.9-2.60): a node lost, its actors with it"),
    _sig(K.RAY_ACTOR_DIED, 2, "the worker died unexpectedly", r"The worker died unexpectedly while executing this task", "ray exceptions.py WorkerCrashedError"),
    _sig(K.WORKER_DIED, 0, "got fatal signal from worker processes", r"got fatal signal from worker processes", "vLLM 0.7-0.8 V1 core_client and executor (logger.fatal)"),
    _sig(K.WORKER_DIED, 0, "error executing method", r"Error executing method \S+\. This might cause deadlock", "vllm/worker/worker_base.py (vLLM 0.5-0.10; later v1/worker/worker_base.py, v1/executor/ray_utils.py)"),
    _sig(K.WORKER_DIED, 0, "no heartbeat received", r"No heartbeat received from MQLLMEngine", "vLLM 0.6-0.7 V0 multiprocessing client"),
    # --- wrappers: something died; the cause, if any, is elsewhere ---
    _sig(K.WORKER_DIED, 0, "engine core initialization failed", r"Engine core initialization failed", "vllm/v1/engine/utils.py (vLLM 0.9-0.34; core_client.py 0.8)"),
    _sig(K.WORKER_DIED, 0, "enginecore failed to start", r"EngineCore failed to start", "vllm/v1/engine/core.py (vLLM 0.8-0.34)"),
    _sig(K.WORKER_DIED, 0, "enginedeaderror", r"EngineDeadError", "vLLM V1 v1/engine/exceptions.py EngineDeadError (0.8-0.34); V0 engine/async_llm_engine.py AsyncEngineDeadError (0.5-0.10)"),
    _sig(K.WORKER_DIED, 0, "enginecore encountered", r"EngineCore encountered (a fatal error|an issue)", "vllm/v1/engine/core.py (vLLM 0.8-0.34): logger.exception of the EngineCore's busy loop, and EngineDeadError's message"),
    _sig(K.WORKER_DIED, 0, "died unexpectedly", r"died unexpectedly", "vllm/v1/executor/multiproc_executor.py (vLLM 0.8-0.34; v1/utils.py and ray_executor_v2.py 0.20-0.34): a worker or the engine process died"),
    _sig(K.WORKER_DIED, 0, "exited unexpectedly", r"engine core exited unexpectedly", "vLLM V1 core_client.py's monitor of the engine process (0.34; earlier releases word it 'died unexpectedly')"),
    _sig(K.RAY_ACTOR_DIED, 2, "actordiederror", r"ActorDiedError|RayActorError", "ray exceptions.py ActorDiedError and RayActorError (2.9-2.60)"),
    _sig(K.WORKER_DIED, 0, "engine loop has died", r"Engine loop has died", "vLLM 0.6's MQLLMEngine heartbeat answer (a RuntimeError; gone by 0.6.6, so between the mined releases)"),
    _sig(K.WORKER_DIED, 0, "is already dead", r"MQLLMEngine is already dead", "vllm/entrypoints/launcher.py (vLLM 0.5-0.7): the server's CRITICAL line before it terminates"),
    _sig(K.WORKER_DIED, 0, "initialization failed due to an exception", r"WorkerProc initialization failed", "vLLM V1 v1/executor/multiproc_executor.py wait_for_ready (0.8-0.34): a worker died before it was ready"),
)  # fmt: skip

# Where in vLLM's life an out-of-memory error happened. Phases in the order vLLM goes through
# them; each with the kind an OOM in it is. The later of what the log shows and what the guard saw
# (its last milestone, /health) decides: a tail can lose a marker, the guard's own record cannot.
_WEIGHTS, _PROFILE, _GRAPHS, _WARMUP, _SERVING = range(5)
_PHASE_KIND = {
    _WEIGHTS: K.OOM_WEIGHTS,
    _PROFILE: K.OOM_KV_CACHE,
    _GRAPHS: K.OOM_CUDA_GRAPH,
    _WARMUP: K.OOM_KV_CACHE,
    _SERVING: K.OOM_RUNTIME,
}
# Log milestones and traceback frames alike (the frames name the function that allocated).
_PHASES: tuple[tuple[int, re.Pattern[str]], ...] = (
    (_WEIGHTS, re.compile(r"Starting to load model|in (load_model|load_weights|create_weights|initialize_model|process_weights_after_loading|gptq_marlin_repack|awq_marlin_repack)\b|Loading safetensors")),
    # "The sequence length used for profiling": vllm/multimodal/profiling.py, whose dummy data only profile_run asks for (0.8-0.10).
    (_PROFILE, re.compile(r"Model loading took|sequence length used for profiling|Loading (model )?weights took|in (profile_run|determine_available_memory|determine_num_available_blocks|_dummy_run|_dummy_sampler_run|initialize_kv_cache|_allocate_kv_cache_tensors|initialize_from_config|_initialize_kv_caches|initialize_cache|_init_cache)\b|Memory profiling")),
    # "Capturing the model for CUDA graphs" (vLLM 0.2-0.5), "Capturing cudagraphs for decoding" and the
    # bar "Capturing CUDA graph shapes" (0.6-0.10), "Capturing CUDA graphs (mixed prefill-decode, ...)"
    # (V1); torch's CUDAGraph.cpp warns "before starting graph capture" as one begins.
    (_GRAPHS, re.compile(r"Capturing (the model for )?(CUDA graph|cudagraph)|before starting graph capture|CUDA graphs can take additional|in (capture_model|_capture_cudagraphs|capture_end|capture_begin|capture)\b|torch[/\\]cuda[/\\]graphs\.py|with torch\.cuda\.graph\(")),
    (_WARMUP, re.compile(r"Graph capturing finished|init engine \(profile, create kv cache")),
    (_SERVING, re.compile(r"Application startup complete|Starting vLLM (API )?server|Uvicorn running on|Avg prompt throughput|\"(POST|GET) /v1/|(POST|GET) /v1/\S+ HTTP|Received request|Added request|in (execute_model|run_busy_loop|_process_engine_step|step_async|engine_step|run_engine_loop|output_handler|_process_input_queue|step_with_batch_queue)\b|AsyncLLM output_handler failed|AsyncEngineDeadError|Background loop has errored|background loop has errored")),
)  # fmt: skip
# The guard's own startup milestones (milestones.py names them) as phases.
_MILESTONE_PHASE = {
    "loading": _WEIGHTS,
    "weights loaded": _PROFILE,
    "compiling": _PROFILE,  # torch.compile runs inside the profiling run
    "compiled graphs loaded": _PROFILE,
    "kv memory": _PROFILE,
    "kv cache": _PROFILE,
    "capturing graphs": _GRAPHS,
    "graphs captured": _WARMUP,
    "memory breakdown": _WARMUP,  # gpu_worker.py logs it after the capture
    "engine ready": _WARMUP,
    "api server up": _SERVING,
}

# A stop that was asked for: wrappers printed after it are vLLM shutting down, not dying, and so
# are the words of a peer whose connection closed (a group's kinds, ranks 1-3): the others stopped first.
_ECHO_RANK = 5
_REQUESTED_STOP = re.compile(
    r"shutdown triggered|trigger received signal=SIG(TERM|INT)|Received SIG(TERM|INT)", re.IGNORECASE
)
# How far after an out-of-memory line its traceback's frames may still tell the phase (another
# process's traceback often follows the worker's error line).
_PHASE_LOOKAHEAD = 60

# A colour code as the terminal sent it, or as a paste spelt out its escape ("ESC[0;0m", "^[[0m").
_ANSI = re.compile(r"(\x1b|\bESC|\^\[)\[[0-9;?]*[A-Za-z]")
# Docker/kubectl timestamps and CRI stream tags, vLLM's process prefixes, and its logger header.
_PREFIXES = (
    re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\]\s*"),  # Ray's C++ log header
    re.compile(r"^[\w.-]+\s+\|\s?"),  # docker compose: `vllm-1  | `, `vllm  | ` (a container_name)
    re.compile(r"^\[?\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d[.,\d]*(Z|[+-]\d\d:?\d\d)?\]?\s+((stdout|stderr) [FP] )?"),
    re.compile(r"^\([^()]*pid=\d+[^()]*\)\s*"),
    re.compile(r"^(INFO|WARNING|ERROR|DEBUG|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d\S*\s+\[?[\w./-]+:\d+\]\s*"),
    # journalctl (short, short-iso, short-precise), any locale's month: `Dec 06 01:00:00 host vllm-guard[123]: `
    re.compile(r"^(\S{1,5} {1,2}\d{1,2} \d\d:\d\d:\d\d(\.\d+)?|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:?\d\d|Z)?) [\w.-]+ [\w.@/:-]+(\[\d+\])?: "),
    re.compile(r"^[\w.-]+ [\w.@/:-]+\[\d+\]: "),  # the same after its timestamp went: `host unit[pid]: `
    re.compile(r"^\[rank\d+\]:\s?"),  # torch.distributed's rank prefix on a worker's stderr
    re.compile(r"^\((raylet|gcs_server|autoscaler)[^()]*\)\s*"),  # Ray's own processes
    re.compile(r"^(ERROR|WARNING|INFO|CRITICAL|DEBUG|FATAL)(:\s*|\s+)(?=\S)"),  # a bare level (uvicorn, logging)
)  # fmt: skip
# vLLM's own logger header, wherever a prefix puts it: `INFO 11-27 10:00:00 [api_server.py:123]`.
_VLLM_LOG = re.compile(
    r"\b(INFO|WARNING|ERROR|DEBUG|CRITICAL)\s+\d\d-\d\d \d\d:\d\d:\d\d\S*\s+\[?[\w./-]+:\d+\]"
)
_UNITS = {"B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_EVIDENCE_MAX = 500


def clean(line: str) -> str:
    """A log line without colours, timestamps, process prefixes and logger headers."""
    line = _ANSI.sub("", line).rstrip("\r\n").rstrip("\r")
    if line.startswith('{"log":'):  # docker's json-file driver: one JSON object a line
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            line = _ANSI.sub("", str(json.loads(line)["log"])).rstrip("\r\n")
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            stripped = prefix.sub("", line, count=1)
            if stripped != line:
                line, changed = stripped, True
    return line.strip()


@dataclass(frozen=True, slots=True)
class _Hit:
    index: int
    signature: Signature
    line: str
    match: re.Match[str]


def _inner_words(literal: str) -> list[str]:
    """The whole words inside a literal: a word at its edge may run on in a line (a placeholder
    or a longer word was there), so only these key a lookup."""
    return [m.group() for m in _WORD.finditer(literal) if m.start() > 0 and m.end() < len(literal)]


def _needle_index() -> dict[str, tuple[tuple[str, tuple[Signature, ...]], ...]]:
    """Each needle once, with the signatures it opens, under one of its inner whole words (a word
    at a needle's edge may run on in the line), or under "" when it has none: a line is tested
    only against the needles its own words key, and those under "". A long log's lines each pass
    through here, so this is the loop that counts (bench/classify.py)."""
    grouped: dict[str, list[Signature]] = {}
    for signature in CATALOGUE:
        for needle in signature.needles:
            grouped.setdefault(needle, []).append(signature)
    index: dict[str, list[tuple[str, tuple[Signature, ...]]]] = {}
    for needle, signatures in grouped.items():
        inner = _inner_words(needle)
        index.setdefault(max(inner, key=len) if inner else "", []).append((needle, tuple(signatures)))
    return {key: tuple(entries) for key, entries in index.items()}


def classify(
    lines: Iterable[str],
    *,
    exit_status: int | None = None,
    ready: bool = False,
    milestone: str | None = None,
) -> Failure:
    """Why vLLM ended, from the last lines of its stdout and stderr (in arrival order).

    `ready`: the guard saw /health answer 200 before the end, so an out-of-memory error is a
    runtime one whatever the log says. `milestone`: the last startup milestone the guard read
    from the whole output (milestones.py), which the tail may have lost. `exit_status`
    (negative: killed by that signal) only matters when no phrase explains the end.
    """
    raw = [line.rstrip("\r\n") for line in lines]
    hits: list[_Hit] = []
    # (first line, end) of each requested stop: from the stop's line until vLLM starts again.
    stopped: list[tuple[int, int]] = []
    stop = len(raw)
    for index, line in enumerate(raw):
        low = line.lower()
        # Needles are looked for in the raw line (a prefix never hides one); only a line that
        # has one is cleaned and matched: most lines of a long log have none.
        candidates = _candidates(low)
        if candidates:
            text = clean(line)
            for signature in candidates:
                match = signature.pattern.search(text)
                if match and not (signature.errors_only and _REPORTING.search(line)):
                    hits.append(_Hit(index, signature, text, match))
        if stop == len(raw) and ("shutdown" in low or "signal" in low) and _REQUESTED_STOP.search(line):
            stop = index
        elif stop < len(raw) and RUN_START.search(line):
            stopped.append((stop, index))  # vLLM started again (a journal, a restarted container)
            stop = len(raw)
    stopped.append((stop, len(raw)))
    hits = [
        h
        for h in hits
        if h.signature.rank > _ECHO_RANK or not any(first <= h.index < end for first, end in stopped)
    ]
    if ready or _MILESTONE_PHASE.get(milestone or "") == _SERVING:
        # vLLM started with these flags: a sentence of its refusals' or import failures' tables
        # printed now is a request's (a tool parser's import, a LoRA adapter's config), not the start's.
        hits = [h for h in hits if _REFUSAL_SIGNATURES.get(h.signature.needle) is not h.signature]
    if any(h.signature.kind == K.BROKEN_INSTALL for h in hits):
        # Once vLLM has logged a line its command demonstrably starts: an import error after that
        # (a model's own code asking for a package) is not the installation's.
        first = next((i for i, line in enumerate(raw) if _VLLM_LOG.search(_ANSI.sub("", line))), len(raw))
        hits = [
            h
            for h in hits
            if h.signature.kind != K.BROKEN_INSTALL or h.signature.rank < 95 or h.index < first
        ]
    causes = [h for h in hits if h.signature.rank > 0]
    if causes:
        top = max(h.signature.rank for h in causes)
        best = next(h for h in causes if h.signature.rank == top)
        kind = best.signature.kind
        phase_known = True
        if kind == OOM:
            phase = _SERVING if ready else _oom_phase(raw, best.index, milestone)
            phase_known = phase is not None
            kind = _PHASE_KIND[_WEIGHTS if phase is None else phase]
        numbers: dict[str, Number] = {}
        for hit in causes:  # several phrases of one kind can match the decisive line
            if hit.index == best.index and hit.signature.kind == best.signature.kind:
                for key, value in _numbers(hit).items():
                    numbers.setdefault(key, value)
        for key, value in _context_numbers(best, raw).items():
            numbers.setdefault(key, value)
        if best.signature is _NO_PLATFORM:
            # vLLM's own warning that without its package's metadata "platform detection may fail"
            unlisted = next((clean(line) for line in raw if _UNLISTED_PACKAGE in line), None)
            if unlisted is not None:
                return Failure(K.BROKEN_INSTALL, _evidence(unlisted))
        return Failure(FailureKind(kind), _evidence(best.line), numbers, phase_known)
    if not ready:
        refusal = _config_refusal(raw)
        if refusal is not None:
            return Failure(K.INVALID_ARGS, _evidence(refusal))
        if _oom_phase(raw, len(raw), milestone) == _GRAPHS:
            # A crash while capturing CUDA graphs, whatever its words: --enforce-eager avoids it.
            said = (
                hits[0].line
                if hits
                else next((clean(line) for line in reversed(raw) if _ERROR_LINE.search(clean(line))), "")
            )
            return Failure(
                K.OOM_CUDA_GRAPH,
                _evidence(
                    f"died while capturing CUDA graphs: {said}"
                    if said
                    else "died while capturing CUDA graphs"
                ),
            )
        # Once the API server was up, such an exception belongs to a request, not to the start.
        raised = _raised_on_purpose(raw) if _MILESTONE_PHASE.get(milestone or "") != _SERVING else None
        if raised is not None:
            return Failure(raised[0], _evidence(raised[1]))
    if hits:
        return Failure(K.WORKER_DIED, _evidence(hits[0].line))
    if exit_status is not None and exit_status < 0:
        # The signal is a fact worth showing, not a cause: who sent it is not in the output.
        return Failure(
            K.UNKNOWN,
            f"killed by signal {-exit_status} (status {exit_status}); nothing in the output says why",
        )
    return Failure(K.UNKNOWN, "")


# vllm/platforms/__init__.py (0.7-0.34) warns this when the vllm distribution is not installed
# (a source tree on PYTHONPATH, a copied site-packages): harmless while a platform is found.
_UNLISTED_PACKAGE = "The vLLM package was not found, so its version could not be inspected"


# The table of vLLM's configuration refusals (refusals.py, generated from vLLM's source): a piece
# of one of those sentences is a refused argument. It weighs below every phrase of the catalogue
# (a root cause named there wins) and above Ray's /dev/shm fallback note, which Ray survives.
_REFUSAL_RANK = 25
_WORD = re.compile(r"[a-z0-9_]{4,}")
# A vLLM log line at INFO, WARNING or DEBUG reports; it never carries a refusal.
_REPORTING = re.compile(r"\b(INFO|WARNING|DEBUG)\s+\d\d-\d\d \d\d:\d\d:\d\d", re.IGNORECASE)


def _refusal_index() -> dict[str, tuple[tuple[str, str, FailureKind], ...]]:
    """Each piece under its rarest whole word, so a line is tested only against the pieces one
    of its own words names. A word at a piece's edge may be cut (a placeholder was there), so only
    inner words key; a piece with none is under "", which every line is tested against."""
    tables = ((REFUSALS, K.INVALID_ARGS), (IMPORT_FAILURES, K.BROKEN_INSTALL))
    inner: dict[str, list[str]] = {}
    for table, _ in tables:
        for piece, _, _ in table:
            inner[piece] = _inner_words(piece) or [""]
    counts: dict[str, int] = {}
    for words in inner.values():
        for word in set(words):
            counts[word] = counts.get(word, 0) + 1
    index: dict[str, list[tuple[str, str, FailureKind]]] = {}
    for table, kind in tables:
        for piece, files, versions in table:
            key = min(inner[piece], key=lambda word: (counts[word], -len(word)))
            index.setdefault(key, []).append((piece, f"{files}, vLLM {versions}", kind))
    return {key: tuple(pieces) for key, pieces in index.items()}


_REFUSAL_INDEX = _refusal_index()
_NEEDLES = _needle_index()
_REFUSAL_SIGNATURES: dict[str, Signature] = {}


def _candidates(low: str) -> list[Signature]:
    """The signatures whose needle a lowercased line holds: catalogue phrases and refusals."""
    words = {"", *_WORD.findall(low)}
    opened = [sigs for word in words for needle, sigs in _NEEDLES.get(word, ()) if needle in low]
    # a signature may be reached by two of its needles
    candidates = list(dict.fromkeys(sig for sigs in opened for sig in sigs)) if opened else []
    return candidates + _refusals_in(low, words)


def _refusals_in(low: str, words: set[str] | None = None) -> list[Signature]:
    """The sentences of vLLM's configuration refusals and import failures that a lowercased log
    line (its `words`) contains."""
    if "  " in low:  # the table's sentences are spaced once; vLLM's source is not always
        low = " ".join(low.split())
    found = [
        entry
        for word in (words if words is not None else {"", *_WORD.findall(low)})
        for entry in _REFUSAL_INDEX.get(word, ())
        if entry[0] in low
    ]
    if not found or _REPORTING.search(low):
        return []
    out = []
    for piece, source, kind in found:
        signature = _REFUSAL_SIGNATURES.get(piece)
        if signature is None:
            signature = _REFUSAL_SIGNATURES[piece] = _sig(
                kind, _REFUSAL_RANK, piece, r"\s+".join(map(re.escape, piece.split(" "))), source
            )
        out.append(signature)
    return out


def _oom_phase(lines: Sequence[str], index: int, milestone: str | None) -> int | None:
    """The phase of an out-of-memory error: the later of the guard's last milestone and what the
    log shows (the last milestone or traceback frame before the error, else the first frame of
    a traceback after it); None when neither tells."""
    shown: int | None = None
    for pos in range(index - 1, -1, -1):
        shown = _phase_of(lines[pos])
        if shown is not None:
            shown = max(shown, _callers_phase(lines, pos))
            break
    else:
        errant = _process_of(lines[index]) if index < len(lines) else None
        for pos in range(index + 1, min(len(lines), index + 1 + _PHASE_LOOKAHEAD)):
            line = lines[pos]
            # A traceback's frames, the API server's note that the engine died under it while
            # serving (vllm/v1/engine/async_llm.py logs it after the EngineCore's own), and what
            # another process printed just after: tensor-parallel workers move in step, so the
            # phase one of them is in is the phase the error came in.
            other = _process_of(line)
            if (
                _FRAME.search(line)
                or "output_handler" in line
                or "background loop" in line.lower()
                or (other is not None and other != errant)
            ):
                shown = _phase_of(line)
                if shown is not None:
                    shown = max(shown, _callers_phase(lines, pos))
                    break
    seen = _MILESTONE_PHASE.get(milestone) if milestone is not None else None
    told = [phase for phase in (shown, seen) if phase is not None]
    return max(told) if told else None


_PROCESS = re.compile(r"^\((?:[^()]*?[\s,])?pid=(\d+)")


def _process_of(line: str) -> str | None:
    """The pid of the `(Worker pid=N)` prefix vLLM and Ray put before a process's lines, if any."""
    match = _PROCESS.search(line)
    return match.group(1) if match else None


# A traceback's frame line, or the line of vLLM's code that opens a capture (a code line).
_FRAME = re.compile(r", in \S+$|, in \S+\s|torch\.cuda\.graph\(")
# The lines that end a traceback, read upwards: its header, the note chaining it to the one
# above, or the exception line of the one above.
_TRACEBACK_START = re.compile(r"Traceback \(most recent call last\)|above exception")
_TRACEBACK_REACH = 200


def _callers_phase(lines: Sequence[str], pos: int) -> int:
    """The latest phase the frames above a frame (its callers, in the same traceback) name: the
    same function serves several phases (`_dummy_run` is profiling when `profile_run` calls it and
    capturing when `_capture_cudagraphs` does), and the caller tells which. -1 for none."""
    if not _FRAME.search(lines[pos]):
        return -1  # a milestone line: what comes before it is earlier, not a caller
    best = -1
    for line in reversed(lines[max(0, pos - _TRACEBACK_REACH) : pos]):
        if _TRACEBACK_START.search(line) or _ERROR_LINE.search(clean(line)):
            break
        if _FRAME.search(line):
            phase = _phase_of(line)
            if phase is not None:
                best = max(best, phase)
    return best


# vLLM checks its configuration before it loads anything (vllm/config*, engine/arg_utils.py: the
# mined messages there are ValueError, KeyError, TypeError, NotImplementedError and pydantic's
# ValidationError); an exception of those types just under such a frame is a refused argument.
_CONFIG_FRAME = re.compile(
    r"vllm[/\\](config\b|config[/\\]|engine[/\\]arg_utils\.py)|in (create_engine_config|_verify_args|verify_with_parallel_config|_verify_quantization)\b"
)
_CONFIG_ERROR = re.compile(
    r"^([\w.]+\.)?(ValueError|KeyError|TypeError|NotImplementedError|ValidationError)\b:?"
)
_ERROR_LINE = re.compile(r"^([\w.]+\.)?\w*(Error|Exception)\b:")
_CONFIG_REACH = 12  # lines from the last frame to its exception: the raise and its message


def _config_refusal(lines: Sequence[str]) -> str | None:
    """The exception line of vLLM refusing its configuration, if the log shows one."""
    for index, line in enumerate(lines):
        if ", in " in line and _CONFIG_FRAME.search(line):
            for after in lines[index + 1 : index + 1 + _CONFIG_REACH]:
                text = clean(after)
                if _CONFIG_ERROR.search(text):
                    return text
                if ", in " in after and not _CONFIG_FRAME.search(after):
                    break  # the traceback went on into code that is not the configuration's
    return None


# The exceptions vLLM raises to refuse what it was asked to run: of the messages mined from its
# source (scripts/mine_vllm_messages.py, 0.5-0.34) 6,872 not otherwise covered are ValueErrors,
# 1,307 NotImplementedErrors, 319 TypeErrors and 43 KeyErrors, nearly all "X is not supported with
# Y", "X must be Y"; the ones about memory are catalogue phrases above. Raised by a `raise` in a
# vLLM file (not by Python inside it: a bug, which a restart may not meet again), before vLLM was
# ready, the same flags raise it again.
REFUSING_CLASSES = ("ValueError", "NotImplementedError", "TypeError", "KeyError")
_REFUSING = re.compile(rf"^([\w.]+\.)?({'|'.join(REFUSING_CLASSES)})\b")
# An import that failed at the bottom of a traceback: a package missing or of the wrong version,
# however late in the start it was asked for (a model's own code, a backend chosen by the flags).
_IMPORT_FAILED = re.compile(r"^([\w.]+\.)?(ImportError|ModuleNotFoundError): ")
# How the two rules read in the catalogue's documentation.
RAISED_REFUSAL = "`ValueError`, `NotImplementedError`, `TypeError` or `KeyError` raised by vLLM"
FAILED_IMPORT = "`ImportError` or `ModuleNotFoundError` at the bottom of a traceback"
# transformers' check of --trust-remote-code raises ValueError for nothing else (its
# dynamic_module_utils.py, upstream/hf_hub_errors.json): the frame names the failure even where
# the message is cut.
_TRUST_FRAME = re.compile(
    r'[/\\]transformers[/\\]dynamic_module_utils\.py", line \d+, in (resolve_trust_remote_code|_raise_timeout_error)$'
)
# transformers' table of model types raises KeyError(model_type) for a type it does not know, which
# AutoConfig turns into "Transformers does not recognize this architecture": a transformers older
# than the model, whether or not the excerpt kept the ValueError it was handled into.
_MODEL_TYPE_FRAME = re.compile(
    r'[/\\]transformers[/\\]models[/\\]auto[/\\]configuration_auto\.py", line \d+, in __getitem__$'
)
# Another package (a trainer, a wrapper) asking a vLLM object for what its vLLM does not have: the
# two installed packages do not fit (vllm_classes.py says whose class it is).
_MISSING_ATTRIBUTE = re.compile(
    r"^AttributeError: (type object )?'(?P<cls>\w+)' (object )?has no attribute '\w+'"
)
# The frames Python runs a module's top level in: `<module>` of a file run as a script (the first
# frame of its traceback, or runpy's _run_code's callee) or of one being imported. A failure under
# the second is the environment's: that module cannot be imported here.
_RUNPY = re.compile(r'^File "<frozen runpy>"|runpy\.py", line \d+, in _run')
# (a path as Python prints it on Linux or on Windows, where forks and WSL-less installs run vLLM)
# A package's folder in a frame's path is the last one before its module: a folder of that name
# with an environment inside (`~/vllm/.venv/…/site-packages/transformers/`, conda's `envs/vllm/lib/
# python3.10/asyncio/`) is the user's, not the package.
_IN_PACKAGE = r'(?![^"]*[/\\](?:site-packages|dist-packages|lib[/\\]python[\d.]*|\.?venv)[/\\])[/\\][^"]*\.py", line \d+, in '
_VLLM_FRAME = re.compile(r'^File "([^"]*[/\\])?vllm' + _IN_PACKAGE)
# vLLM's platform plugins (the vllm-project packages on PyPI: vllm-ascend, tpu-inference, vllm-spyre,
# vllm-neuron, vllm-rbln; vllm-gaudi from its repository) refuse what they will not run by the same
# convention as vLLM: a frame of theirs raising a refusing class is as much on purpose.
_RAISING_FRAME = re.compile(
    r'^File "([^"]*[/\\])?(vllm|vllm_ascend|tpu_inference|vllm_spyre|vllm_neuron|vllm_rbln|vllm_gaudi)'
    + _IN_PACKAGE
)
_HANDLED = "During handling of the above exception"  # the exception above led to another: not the cause
_CHAINED = re.compile(r"^(During handling of the above exception|The above exception was the direct cause)")
# vLLM's logger.exception calls after which it carries on (mined; the plugin loader, the lazy
# parser registries, the weight-cache fallback): the traceback they print ended nothing.
_CARRIED_ON = re.compile(
    r"Failed to (load plugin|load general plugin|instantiate endpoint plugin|import lazy|load module)\b|falling back to|ST projector loading failed"
)


# What a traceback's or an exception's line holds (substring tests: this runs on every line).
_MAY_MATTER = ("rror", "RROR", "xception", "Traceback", 'File "')


def _last_said(lines: Sequence[str], index: int) -> str:
    """The last non-empty line before `index`, cleaned: what introduced a traceback."""
    for before in reversed(lines[max(0, index - _CONFIG_REACH) : index]):
        text = clean(before)
        if text:
            return text
    return ""


def _raised_on_purpose(lines: Sequence[str]) -> tuple[FailureKind, str] | None:
    """The first exception of the log that no restart gets past: a refusal vLLM's own code
    raised (INVALID_ARGS), transformers' refusal of remote code (TRUST_REMOTE_CODE), a failed
    import or any exception while a module was being imported (BROKEN_INSTALL); None when there
    is none."""
    frame_at, frame, code = -1, "", ""
    frames = 0  # frames of the traceback so far, runpy's not counted
    headed = False  # its "Traceback (most recent call last):" was seen: an excerpt may start inside one
    importing = False  # a module's top level runs under a caller: an import is under way
    carried_on = False  # the traceback under way was logged by vLLM, which went on after it
    # where the log's last exception line is: a handled exception is the cause when the excerpt
    # ends before the one raised while handling it (_handling_ended)
    last_exception = next(
        (
            len(lines) - 1 - back
            for back, line in enumerate(reversed(lines))
            if ("rror" in line or "xception" in line) and _ERROR_LINE.search(clean(line))
        ),
        -1,
    )
    for index, line in enumerate(lines):
        # Only a traceback's lines and exception lines matter: most lines of a long log are not
        # cleaned at all (a frame's source line follows its frame, whatever it says).
        if index != frame_at + 1 and not any(part in line for part in _MAY_MATTER):
            continue
        text = clean(line)
        if text.startswith("Traceback (most recent call last)"):
            before = _last_said(lines, index)
            if not _CHAINED.search(before):
                carried_on = bool(_CARRIED_ON.search(before))
            frames, headed, importing = 0, True, False
            continue
        if text.startswith('File "'):
            frame_at, frame, code = index, text, ""
            if not _RUNPY.search(text):
                importing = importing or (text.endswith(", in <module>") and (frames > 0 or not headed))
                frames += 1
            continue
        exception = _ERROR_LINE.search(text)
        refusing = _REFUSING.search(text)
        failed_import = _IMPORT_FAILED.search(text)
        if index == frame_at + 1 and not (refusing or failed_import or exception):
            code = text  # the frame's source line (absent where Python could not read the file)
            continue
        if exception:  # the traceback ends here; a chained one has a header of its own
            frames, headed, importing_now, importing = 0, False, importing, False
        else:
            importing_now = False
        if carried_on or not (refusing or failed_import or exception) or _REPORTING.search(line):
            continue
        recent = index - frame_at <= _CONFIG_REACH
        if recent and text.startswith("KeyError") and _MODEL_TYPE_FRAME.search(frame):
            return K.BROKEN_INSTALL, text
        handling = next(
            (at for at in range(index + 1, min(index + 4, len(lines))) if _HANDLED in lines[at]), None
        )
        if handling is not None and _handling_ended(lines, handling, last_exception):
            continue  # the exception raised while handling it is the one that ended the run
        if failed_import or (importing_now and recent):
            return K.BROKEN_INSTALL, text
        missing = _MISSING_ATTRIBUTE.search(text)
        if missing and recent and missing["cls"] in API_CLASSES and not _VLLM_FRAME.search(frame):
            return K.BROKEN_INSTALL, text
        if refusing and recent and _TRUST_FRAME.search(frame):
            return K.TRUST_REMOTE_CODE, text
        if refusing and recent and _RAISING_FRAME.search(frame) and code.startswith("raise "):
            return K.INVALID_ARGS, text
    return None


_HEADER_REACH = 4  # lines from "During handling ..." to the header of the traceback it announces
# The line that ends a traceback, as Python prints it: the exception's class, dotted and in
# CapWords (with Ray's `(Cause)`), before ": message", or alone. A frame's source line does not
# look like that: a statement, a call, a keyword. Alone, the class is dotted or named as PEP 8
# and the builtins name exceptions, so that a shell's "Killed" or "Terminated" about another
# process ends nothing.
_EXCEPTION_SHAPE = re.compile(
    r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:\([\w.]+\))?(?::\s|:$)"
    r"|^(?:(?:[A-Za-z_]\w*\.)+[A-Z]\w*|[A-Z]\w*(?:Error|Exception|Interrupt|Exit|Iteration|Warning|Group|Timeout))(?:\([\w.]+\))?$"
)


def _handling_ended(lines: Sequence[str], handling: int, last_exception: int) -> bool:
    """Whether the log shows the exception raised while handling the one above `handling` (its
    "During handling ..." line): the traceback that follows reaches its exception line, whatever
    that line's words (`KeyboardInterrupt`, `filelock._error.Timeout: ...`, `RayTaskError(X):
    ...`). Frames, their source lines (several, from Python 3.13), markers and other processes'
    log lines in between do not end it. With no traceback header (an excerpt that dropped it), a
    later exception line anywhere tells."""
    header = next(
        (
            at
            for at in range(handling + 1, min(handling + 1 + _HEADER_REACH, len(lines)))
            if clean(lines[at]).startswith("Traceback (most recent call last)")
        ),
        None,
    )
    if header is None:
        return handling < last_exception
    for line in lines[header + 1 :]:
        text = clean(line)
        if not text or text.startswith('File "') or _REPORTING.search(line):
            continue
        if _EXCEPTION_SHAPE.search(text) or text.startswith("Traceback (most recent call last)"):
            return True
    return False


def _phase_of(line: str) -> int | None:
    found = [phase for phase, marker in _PHASES if marker.search(line)]
    return max(found) if found else None


# Numbers a failure's message leaves to the lines around it: vLLM's own note of who holds a port,
# a message re-flowed over several lines, pydantic's field and value under its error line.
_CONTEXT: dict[FailureKind | str, tuple[re.Pattern[str], ...]] = {
    K.PORT_IN_USE: (
        re.compile(r"port (?P<port>\d+) is used by process psutil\.Process\(pid=(?P<other_process_pid>\d+)"),
    ),
    K.MAX_MODEL_LEN_TOO_LARGE: (
        re.compile(r"estimated maximum model length is (?P<estimated_max_model_len>\d+)"),
    ),
    # the rest of vLLM's bfloat16 refusal where a terminal or a wrapper broke its line
    K.UNSUPPORTED_DTYPE_OR_QUANT: (
        re.compile(r"^Your .* GPU has compute capability (?P<compute_capability>\d+\.\d+)"),
    ),
    K.INVALID_ARGS: (
        re.compile(r"^(?P<flag>[a-z][a-z0-9_]*)$"),
        re.compile(r"input_value=(?P<input_value>[\d.]+)"),
    ),
}
_CONTEXT_AFTER = 4  # lines after the decisive one where the rest of its message may be
# Fields whose value pydantic shows, under the numbers key of the same name.
_ASKED_VALUES = frozenset({"gpu_memory_utilization", "max_model_len"})


def _context_numbers(hit: _Hit, raw: Sequence[str]) -> dict[str, Number]:
    patterns = _CONTEXT.get(hit.signature.kind, ())
    if not patterns:
        return {}
    window = (
        raw if hit.signature.kind == K.PORT_IN_USE else raw[hit.index + 1 : hit.index + 1 + _CONTEXT_AFTER]
    )
    found: dict[str, str] = {}
    for line in window:
        text = clean(line)
        for pattern in patterns:
            match = pattern.search(text)
            if match:
                for key, value in match.groupdict().items():
                    found.setdefault(key, value)
    value = found.pop("input_value", None)
    if value is not None and found.get("flag") in _ASKED_VALUES:
        found[found["flag"]] = value
    return {key: _typed(key, value) for key, value in found.items()}


def _numbers(hit: _Hit) -> dict[str, Number]:
    numbers: dict[str, Number] = {}
    for key, value in hit.match.groupdict().items():
        if value is not None:
            numbers[key] = _typed(key, value)
    if hit.signature.kind == OOM:
        numbers.update(_oom_numbers(hit.line))
    if hit.signature.kind == K.INSUFFICIENT_FREE_MEMORY:
        for key in ("free_bytes", "total_bytes", "required_bytes"):
            if key in numbers:
                numbers[key] = int(float(hit.match.group(key)) * 2**30)
    return numbers


_OOM_NEW = re.compile(
    rf"Tried to allocate (?P<tried_bytes>{_SIZE})\. GPU \d+ has a total capacity of (?P<total_bytes>{_SIZE}) of which (?P<free_bytes>{_SIZE}) is free"
)
_OOM_OLD = re.compile(
    rf"Tried to allocate (?P<tried_bytes>{_SIZE}) \(GPU \d+; (?P<total_bytes>{_SIZE}) total capacity;.*?(?P<free_bytes>{_SIZE}) free"
)
_OOM_THIS = re.compile(rf"this process has (?P<process_bytes>{_SIZE}) memory in use")
_OOM_OTHER = re.compile(
    rf"Process (?P<other_process_pid>\d+) has (?P<other_process_bytes>{_SIZE}) memory in use"
)


def _oom_numbers(line: str) -> dict[str, Number]:
    numbers: dict[str, Number] = {}
    for pattern in (_OOM_NEW, _OOM_OLD, _OOM_THIS, _OOM_OTHER):
        match = pattern.search(line)
        if match:
            for key, value in match.groupdict().items():
                numbers.setdefault(key, _typed(key, value))
    return numbers


def _typed(key: str, value: str) -> Number:
    if key.endswith("_bytes"):
        return _bytes(value)
    if key in ("compute_capability", "min_compute_capability"):
        return value if "." in value else f"{int(value) // 10}.{int(value) % 10}"
    if key == "gpu_memory_utilization":
        return float(value)
    if key in ("flag", "module", "value"):
        return value
    return int(float(value))


def _bytes(size: str) -> int:
    match = re.fullmatch(r"([\d.]+) ?([KMGT]?)i?B", size.strip())
    if not match:
        return int(float(size))
    return int(float(match.group(1)) * _UNITS[match.group(2) or "B"])


_SCRUB = Redactor()


def _evidence(line: str) -> str:
    line = _SCRUB.text(line)
    return line if len(line) <= _EVIDENCE_MAX else line[:_EVIDENCE_MAX] + "…"


# What each kind means (DESIGN.md's table), for the catalogue's documentation and `diagnose`.
MEANING: dict[FailureKind, str] = {
    K.OOM_WEIGHTS: "CUDA OOM while loading or creating the weights",
    K.OOM_KV_CACHE: "no memory left for KV-cache blocks after weights and profiling",
    K.MAX_MODEL_LEN_TOO_LARGE: "max-model-len exceeds the KV capacity or the model's derived maximum",
    K.INSUFFICIENT_FREE_MEMORY: "free memory at start < utilization x total (another process holds memory)",
    K.OOM_CUDA_GRAPH: "OOM or failure while capturing CUDA graphs",
    K.OOM_RUNTIME: "OOM while serving, after the server was ready",
    K.HF_AUTH: "gated repo, missing or invalid token, 401/403",
    K.MODEL_NOT_FOUND: "no such repo id or local path (or not cached while offline)",
    K.TRUST_REMOTE_CODE: "the model needs its own code",
    K.SHM_TOO_SMALL: "/dev/shm exhausted, SIGBUS, NCCL shared-memory errors",
    K.UNSUPPORTED_DTYPE_OR_QUANT: "dtype or quantization not supported by this GPU",
    K.CUDA_DRIVER: "no GPU visible, driver/CUDA mismatch, no kernel image",
    K.INVALID_ARGS: "vLLM's argument parser or config validation refused the command line",
    K.PORT_IN_USE: "the serving port is taken",
    K.HUB_UNREACHABLE: "the model hub could not be reached",
    K.WORKER_DIED: "a worker or engine died and the root cause is not in the output",
    K.COLLECTIVE_TIMEOUT: "a collective among the group's ranks or nodes timed out (NCCL's watchdog): a peer died, stalled or cannot be reached",
    K.PEER_UNREACHABLE: "a peer of the group cannot be reached: a rendezvous that never completed (torch's TCPStore), or a connection a peer closed (gloo)",
    K.RAY_ACTOR_DIED: "a Ray actor (one of vLLM's Ray workers) died",
    K.FOLLOWER_LOST: "a follower node's guard stopped reporting to the leader's (from the group's guards)",
    K.HUNG: "/health stopped answering, or no progress while requests wait (from health checks)",
    K.BROKEN_INSTALL: "the vLLM command cannot even start: an import error before any vLLM line (wrong Python, missing package, ABI mismatch), or a package a feature or the model needs that is missing or of the wrong version",
    K.UNKNOWN: "nothing matched",
}


# Where a signature's words come from, by the first of these its source names.
_ORIGINS: tuple[tuple[str, str], ...] = (
    (r"cudaGet", "the CUDA runtime's error strings"),
    (r"ncclGetErrorString|libnccl|NCCL", "NCCL"),
    (r"\bvllm/|vLLM", "vLLM"),
    (r"huggingface_hub|the Hub's", "huggingface_hub and the Hub"),
    (r"transformers", "transformers"),
    (r"urllib3|requests", "urllib3 and requests"),
    (r"modelscope", "ModelScope"),
    (r"\btokenizers\b", "tokenizers"),
    (r"\bsafetensors\b", "safetensors"),
    (r"\bray\b|Ray", "Ray"),
    (r"\btriton\b", "triton"),
    (r"\brocblas\b", "rocBLAS"),
    (r"torch", "torch"),
    (r"GNU ld", "the linker"),
    (r"nvidia-smi|nvidia-container-cli", "NVIDIA's driver tools"),
    (r"\bpython\b|dynamic loader|signal|supervisor", "Python, the C library and the loader"),
)


def origin(source: str) -> str:
    """The upstream a signature's source names first: its family within its kind."""
    found = [(m.start(), name) for pattern, name in _ORIGINS if (m := re.search(pattern, source))]
    return min(found)[1] if found else "other"


def _phrases_of(kind: FailureKind) -> list[Signature]:
    """A kind's signatures as the docs list them: any OOM's under oom_weights, its default."""
    return [s for s in CATALOGUE if s.kind == kind or (s.kind == OOM and kind == K.OOM_WEIGHTS)]


def families() -> list[tuple[str, str, list[str]]]:
    """(kind, origin, needles) for each family of the catalogue, in the catalogue's kind order."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for kind in FailureKind:
        for signature in _phrases_of(kind):
            label = "any OOM" if signature.kind == OOM else kind.value
            grouped.setdefault((label, origin(signature.source)), []).extend(signature.needles)
        if kind == K.INVALID_ARGS:
            grouped[(kind.value, "vLLM (the refusal table)")] = [f"{len(REFUSALS)} sentences"]
            grouped[(kind.value, "vLLM (its own raise, when nothing above matched)")] = [
                "ValueError, NotImplementedError, TypeError, KeyError raised in a vllm/ file"
            ]
        if kind == K.BROKEN_INSTALL:
            grouped[(kind.value, "vLLM (its import failures' table)")] = [f"{len(IMPORT_FAILURES)} sentences"]
            grouped[(kind.value, "Python (a traceback's failed import, when nothing above matched)")] = [
                "ImportError, ModuleNotFoundError ending a traceback",
                "any exception under a module being imported",
                "AttributeError on a vLLM object, asked from outside vLLM",
            ]
        if kind == K.TRUST_REMOTE_CODE:
            grouped[(kind.value, "transformers (its frame, when nothing above matched)")] = [
                "ValueError in resolve_trust_remote_code"
            ]
    return [(kind, where, needles) for (kind, where), needles in grouped.items()]


def catalogue_table() -> str:
    """The catalogue as Markdown, its families and then every phrase: docs/diagnosis.md ends with
    this, checked by a test."""
    rows = [
        "| kind | family: where the words come from | phrases (their literal needles) |",
        "|---|---|---|",
    ]
    for kind, where, needles in families():
        shown = ", ".join(f"`{n}`" for n in dict.fromkeys(needles))
        rows.append(f"| `{kind}` | {where} | {shown.replace('|', chr(92) + '|')} |")
    rows += [
        "",
        "| kind | what it means | phrase (regular expression) | seen in | restart can help |",
        "|---|---|---|---|---|",
    ]
    for kind in FailureKind:
        phrases = _phrases_of(kind)
        restart = "no (permanent)" if kind in PERMANENT_KINDS else "yes"
        if not phrases:
            rows.append(f"| `{kind.value}` | {MEANING[kind]} | - | - | {restart} |")
        for signature in phrases:
            label = (
                "any OOM: its phase picks `oom_weights`, `oom_kv_cache`, `oom_cuda_graph` or `oom_runtime`"
                if signature.kind == OOM
                else MEANING[kind]
            )
            phrase = signature.pattern.pattern.replace("|", "\\|")
            rows.append(f"| `{kind.value}` | {label} | `{phrase}` | {signature.source} | {restart} |")
        if kind == K.INVALID_ARGS:
            releases = sorted({v for _, _, span in REFUSALS for v in span.split("-")}, key=_release)
            rows.append(
                f"| `{kind.value}` | {MEANING[kind]} (rank {_REFUSAL_RANK}: below every phrase above; "
                f"before vLLM was ready) "
                f"| any of the {len(REFUSALS)} sentences in `vllm_guard/refusals.py`, on a line that is not "
                f"INFO, WARNING or DEBUG | vLLM's ValueError/TypeError/KeyError/NotImplementedError in "
                f"vllm/config*, engine/arg_utils.py and cli_args.py, {releases[0]}-{releases[-1]} "
                f"(scripts/make_refusals.py) | {restart} |"
            )
            rows.append(
                f"| `{kind.value}` | {MEANING[kind]} (only when no phrase above matched, before vLLM was ready) "
                f"| {RAISED_REFUSAL}: the exception line under a frame of a `vllm/` file (or of a platform plugin's: "
                f"`vllm_ascend/`, `tpu_inference/`, `vllm_spyre/`, ...) whose source line is a `raise` "
                f"| vLLM's convention for what it will not run (mined: most of its uncovered messages) | {restart} |"
            )
        if kind == K.BROKEN_INSTALL:
            releases = sorted({v for _, _, span in IMPORT_FAILURES for v in span.split("-")}, key=_release)
            rows.append(
                f"| `{kind.value}` | {MEANING[kind]} (rank {_REFUSAL_RANK}: below every phrase above; before "
                f"vLLM was ready: once it served, a package a request asks for, such as a tool parser's, "
                f"is the request's, and vLLM is restarted) "
                f"| any of the {len(IMPORT_FAILURES)} sentences of `IMPORT_FAILURES` in `vllm_guard/refusals.py`, "
                f"on a line that is not INFO, WARNING or DEBUG, with or without its class (a wrapper may carry "
                f"only the message) | vLLM's ImportError/ModuleNotFoundError messages in any file, "
                f"{releases[0]}-{releases[-1]} (scripts/make_refusals.py) | {restart} |"
            )
            rows.append(
                f"| `{kind.value}` | {MEANING[kind]} (only when no phrase above matched, before vLLM was ready) "
                f"| {FAILED_IMPORT}, or any exception under a `<module>` frame that has callers (a module being "
                f"imported), or an `AttributeError` that code outside vLLM meets on one of vLLM's classes "
                f"(`vllm_guard/vllm_classes.py`, scripts/make_vllm_classes.py), "
                f"unless its traceback was handled or vLLM logged it and went on "
                f"| Python's import system | {restart} |"
            )
        if kind == K.TRUST_REMOTE_CODE:
            rows.append(
                f"| `{kind.value}` | {MEANING[kind]} (only when no phrase above matched, before vLLM was ready) "
                f"| a `ValueError` under transformers' `resolve_trust_remote_code` or `_raise_timeout_error` frame "
                f"| transformers dynamic_module_utils.py, which raises it there for nothing else | {restart} |"
            )
    return "\n".join(rows) + "\n"


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


# One sentence per kind for the person reading `diagnose` or the guard's report.
ADVICE: dict[FailureKind, str] = {
    K.OOM_WEIGHTS: "The weights do not fit in GPU memory: quantize them (--quantization fp8), offload some (--cpu-offload-gb), or spread them over more GPUs (--tensor-parallel-size).",
    K.OOM_KV_CACHE: "No GPU memory is left for the KV cache after the weights: lower --max-model-len or --max-num-seqs/--max-num-batched-tokens, use --kv-cache-dtype fp8, or raise --gpu-memory-utilization if the GPU has room.",
    K.MAX_MODEL_LEN_TOO_LARGE: "--max-model-len is more than the KV cache (or the model) can hold: set it to the estimate vLLM printed, or free more memory for the KV cache.",
    K.INSUFFICIENT_FREE_MEMORY: "Another process holds GPU memory: stop it, or lower --gpu-memory-utilization to what is free.",
    K.OOM_CUDA_GRAPH: "Capturing CUDA graphs ran out of memory: add --enforce-eager, or lower --gpu-memory-utilization.",
    K.OOM_RUNTIME: "vLLM ran out of memory while serving: lower --max-num-seqs or --max-num-batched-tokens, or --gpu-memory-utilization.",
    K.HF_AUTH: "The model is gated: set HF_TOKEN to a token whose account has been granted access to it on the Hugging Face Hub.",
    K.MODEL_NOT_FOUND: "There is no such model, or not all of its files: check the repository id or local path, that the folder holds config.json and the weight files, and HF_HUB_OFFLINE (which allows only cached models).",
    K.TRUST_REMOTE_CODE: "The model needs its own code: add --trust-remote-code if you trust the repository.",
    K.SHM_TOO_SMALL: "/dev/shm is too small: give the container more (docker run --shm-size=16g, or --ipc=host).",
    K.UNSUPPORTED_DTYPE_OR_QUANT: "This GPU does not support the dtype or quantization asked for: use --dtype half on GPUs older than Ampere, or another --quantization.",
    K.CUDA_DRIVER: "vLLM cannot use the GPU: check that it is visible (nvidia-smi, CUDA_VISIBLE_DEVICES) and that the driver matches the CUDA build of torch.",
    K.INVALID_ARGS: "vLLM refused its command line or configuration: change what the evidence names (a flag's value, two flags that conflict, a VLLM_* variable, or a model architecture this vLLM does not support); flags change between vLLM versions.",
    K.PORT_IN_USE: "The port is taken: stop whatever holds it (another vLLM?) or choose another --port.",
    K.HUB_UNREACHABLE: "The Hugging Face Hub could not be reached: check the network, or set HF_HUB_OFFLINE=1 if the model is cached.",
    K.WORKER_DIED: "A vLLM process died without printing why: look above the first error for the cause, and at the host's OOM killer (dmesg); the same flags are retried with a backoff.",
    K.COLLECTIVE_TIMEOUT: "A collective among the group's ranks timed out: the cause is in another rank's or node's output (a death, a hang) or in the network between the nodes (NCCL_SOCKET_IFNAME, NCCL_DEBUG=INFO); the group restarts with the same flags after a backoff.",
    K.PEER_UNREACHABLE: "A peer of the group cannot be reached: check that every node runs, that --master-addr/--data-parallel-address and the port are reachable from each node (a firewall, the wrong interface), and the other nodes' output; the group restarts with the same flags after a backoff.",
    K.RAY_ACTOR_DIED: "A Ray actor died: look in that node's output and Ray's logs (/tmp/ray/session_latest/logs) for why, the host's memory (Ray's memory monitor kills workers) among the first; the same flags are retried with a backoff.",
    K.FOLLOWER_LOST: "A follower node's guard stopped reporting: check that node (its guard, its network to the leader's guard); the leader waits for it and restarts the group when it is back.",
    K.HUNG: "vLLM stopped answering /health or stopped making progress: read the last lines it printed before it went quiet, and raise --startup-timeout-s if a first start (a download, a compile) only needed more time.",
    K.BROKEN_INSTALL: "A package that vLLM, a feature its flags ask for or the model's own code needs is missing or of the wrong version (the evidence names it): install it in the environment that --vllm-command (or the vllm on PATH) runs, or point --vllm-command at the one vLLM is installed in.",
    K.UNKNOWN: "Nothing in the output explains why vLLM ended: read the whole log (the guard keeps it per attempt) and the host's log (journalctl -k for the OOM killer) for what stopped it.",
}
