"""The traceback stacks: where in vLLM each simulated failure is raised, frame by frame.

Stacks marked [cpu:NAME] are copied from /work/shared/vllm/real-cpu/full/NAME.log (real vLLM
0.32.0; the `^^^^` marker lines are left out). GPU-only stacks (no capture here) follow the call
chain that reference.md names, with illustrative line numbers; they are marked [gpu-path].
Paths use {site} (site-packages), {bin} (the venv's bin) and {stdlib} (the Python library).
"""

from __future__ import annotations

import sysconfig

Frame = tuple[str, int, str, str | None]

OTEL: Frame = ("{site}/vllm/tracing/otel.py", 175, "sync_wrapper", "return func(*args, **kwargs)")
AENTER: Frame = ("{stdlib}/contextlib.py", 210, "__aenter__", "return await anext(self.gen)")
PYDANTIC_INIT: Frame = (
    "{site}/pydantic/_internal/_dataclasses.py",
    121,
    "__init__",
    "s.__pydantic_validator__.validate_python(ArgsKwargs(args, kwargs), self_instance=s)",
)
ENTRY = "{site}/vllm/entrypoints/launchers/api_server/entry.py"
VALIDATORS = "{site}/huggingface_hub/utils/_validators.py"

# [cpu:fail_e1_gpu_util_1_5] the top of every API-server traceback.
CLI: tuple[Frame, ...] = (
    ("{bin}/vllm", 8, "<module>", "sys.exit(main())"),
    ("{site}/vllm/entrypoints/cli/main.py", 120, "main", "args.dispatch_function(args)"),
    ("{site}/vllm/entrypoints/cli/serve.py", 156, "cmd", "uvloop.run(run_server(args))"),
    ("{site}/uvloop/__init__.py", 92, "run", "return runner.run(wrapper())"),
    ("{stdlib}/asyncio/runners.py", 118, "run", "return self._loop.run_until_complete(task)"),
    ("uvloop/loop.pyx", 1515, "uvloop.loop.Loop.run_until_complete", None),
    ("{site}/uvloop/__init__.py", 48, "wrapper", "return await main"),
)
# [cpu:fail_d_port_in_use]
PORT_BIND: tuple[Frame, ...] = (
    *CLI,
    (ENTRY, 176, "run_server", "listen_address, sock = setup_server(args, reuse_port=False)"),
    OTEL,
    (
        "{site}/vllm/entrypoints/launchers/launcher.py",
        398,
        "setup_server",
        "sock = create_server_socket(sock_addr, reuse_port=reuse_port)",
    ),
    ("{site}/vllm/entrypoints/launchers/launcher.py", 348, "create_server_socket", "sock.bind(addr)"),
)
# [cpu:fail_c3_unknown_hub_id_offline]
_WORKER: tuple[Frame, ...] = (
    *CLI,
    (ENTRY, 177, "run_server", "await run_server_worker(listen_address, sock, args, **uvicorn_kwargs)"),
    (ENTRY, 195, "run_server_worker", "async with build_async_engine_client("),
    AENTER,
)
OFFLINE_SNAPSHOT: tuple[Frame, ...] = (
    *_WORKER,
    (ENTRY, 53, "build_async_engine_client", "engine_args = AsyncEngineArgs.from_cli_args(args)"),
    ("{site}/vllm/engine/arg_utils.py", 1938, "from_cli_args", "engine_args = cls("),
    ("<string>", 260, "__init__", None),
    (
        "{site}/vllm/engine/arg_utils.py",
        914,
        "__post_init__",
        "self.model = get_model_path(self.model, self.revision)",
    ),
    (
        "{site}/vllm/transformers_utils/repo_utils.py",
        301,
        "get_model_path",
        "return hf_api().snapshot_download(",
    ),
    (VALIDATORS, 89, "_inner_fn", "return fn(*args, **kwargs)"),
    ("{site}/huggingface_hub/hf_api.py", 6647, "snapshot_download", "return snapshot_download("),
    (VALIDATORS, 89, "_inner_fn", "return fn(*args, **kwargs)"),
    ("{site}/huggingface_hub/utils/_http.py", 276, "_inner", "return fn(*args, **kwargs)"),
    (
        "{site}/huggingface_hub/_snapshot_download.py",
        382,
        "snapshot_download",
        "raise LocalEntryNotFoundError(",
    ),
)
# [cpu:fail_e1_gpu_util_1_5] up to `create_engine_config`
_CREATE_CONFIG: tuple[Frame, ...] = (
    *_WORKER,
    (ENTRY, 61, "build_async_engine_client", "async with build_async_engine_client_from_engine_args("),
    AENTER,
    (
        ENTRY,
        83,
        "build_async_engine_client_from_engine_args",
        "vllm_config = engine_args.create_engine_config(usage_context=usage_context)",
    ),
)
# [cpu:fail_b_model_path_missing] and [cpu:fail_c4_unknown_hub_id_online]: transformers' config fetch
HUB_CONFIG: tuple[Frame, ...] = (
    *_CREATE_CONFIG,
    ("{site}/vllm/engine/arg_utils.py", 2230, "create_engine_config", "maybe_override_with_speculators("),
    (
        "{site}/vllm/transformers_utils/config.py",
        781,
        "maybe_override_with_speculators",
        "config_dict, _ = PreTrainedConfig.get_config_dict(",
    ),
    (
        "{site}/transformers/configuration_utils.py",
        792,
        "get_config_dict",
        "config_dict, kwargs = cls._get_config_dict(pretrained_model_name_or_path, **kwargs)",
    ),
    (
        "{site}/transformers/configuration_utils.py",
        844,
        "_get_config_dict",
        "resolved_config_file = cached_file(",
    ),
    (
        "{site}/transformers/utils/hub.py",
        370,
        "cached_file",
        "file = cached_files(path_or_repo_id=path_or_repo_id, filenames=[filename], **kwargs)",
    ),
)
# The last frame of HUB_CONFIG differs per raise site in transformers' cached_files:
CACHED_FILES_REPO_ID: Frame = (
    "{site}/transformers/utils/hub.py",
    595,
    "cached_files",
    'raise OSError(f"{e}") from e',
)
CACHED_FILES_UNREACHABLE: Frame = ("{site}/transformers/utils/hub.py", 620, "cached_files", "raise OSError(")
CACHED_FILES_GATED: Frame = (
    "{site}/transformers/utils/hub.py",
    553,
    "cached_files",
    "raise OSError(",
)  # [gpu-path]
CACHED_FILES_NOT_FOUND: Frame = (
    "{site}/transformers/utils/hub.py",
    545,
    "cached_files",
    "raise OSError(",
)  # [gpu-path]
# [cpu:fail_b_model_path_missing] the chained cause of the repo-id error
REPO_ID_CAUSE: tuple[Frame, ...] = (
    ("{site}/transformers/utils/hub.py", 537, "cached_files", "hf_hub_download("),
    (VALIDATORS, 85, "_inner_fn", "validate_repo_id(arg_value)"),
    (VALIDATORS, 133, "validate_repo_id", "raise HFValidationError("),
)
# [cpu:fail_c4_unknown_hub_id_online] the chained cause of the unreachable-Hub error
UNREACHABLE_CAUSE: tuple[Frame, ...] = (
    ("{site}/transformers/utils/hub.py", 537, "cached_files", "hf_hub_download("),
    (VALIDATORS, 89, "_inner_fn", "return fn(*args, **kwargs)"),
    ("{site}/huggingface_hub/utils/_http.py", 276, "_inner", "return fn(*args, **kwargs)"),
    (
        "{site}/huggingface_hub/file_download.py",
        1047,
        "hf_hub_download",
        "return _hf_hub_download_to_cache_dir(",
    ),
    (
        "{site}/huggingface_hub/file_download.py",
        1194,
        "_hf_hub_download_to_cache_dir",
        "_raise_on_head_call_error(head_call_error, force_download, local_files_only)",
    ),
    (
        "{site}/huggingface_hub/file_download.py",
        1962,
        "_raise_on_head_call_error",
        "raise LocalEntryNotFoundError(",
    ),
)
# [cpu:fail_a5_maxlen_over_model] ModelConfig, [cpu:fail_e1_gpu_util_1_5] CacheConfig;
# the other config classes are [gpu-path] (same shape, illustrative line numbers).
_CONFIG_SITE: dict[str, Frame] = {
    "ModelConfig": (
        "{site}/vllm/engine/arg_utils.py",
        2240,
        "create_engine_config",
        "model_config = self.create_model_config()",
    ),
    "CacheConfig": (
        "{site}/vllm/engine/arg_utils.py",
        2265,
        "create_engine_config",
        "cache_config = CacheConfig(",
    ),
    "ParallelConfig": (
        "{site}/vllm/engine/arg_utils.py",
        2291,
        "create_engine_config",
        "parallel_config = ParallelConfig(",
    ),
    "SchedulerConfig": (
        "{site}/vllm/engine/arg_utils.py",
        2386,
        "create_engine_config",
        "scheduler_config = SchedulerConfig(",
    ),
    "VllmConfig": ("{site}/vllm/engine/arg_utils.py", 2462, "create_engine_config", "config = VllmConfig("),
}
_MODEL_CONFIG_CALL: Frame = (
    "{site}/vllm/engine/arg_utils.py",
    1955,
    "create_model_config",
    "return ModelConfig(",
)


def config_error(cls: str) -> tuple[Frame, ...]:
    extra = (_MODEL_CONFIG_CALL,) if cls == "ModelConfig" else ()
    return (*_CREATE_CONFIG, _CONFIG_SITE[cls], *extra, PYDANTIC_INIT)


# [cpu:fail_a1_kv_bytes_too_small] API side of a failed engine start
ENGINE_STARTUP_WAIT: tuple[Frame, ...] = (
    *_WORKER,
    (ENTRY, 61, "build_async_engine_client", "async with build_async_engine_client_from_engine_args("),
    AENTER,
    (ENTRY, 95, "build_async_engine_client_from_engine_args", "async_llm = AsyncLLM.from_vllm_config("),
    ("{site}/vllm/v1/engine/async_llm.py", 255, "from_vllm_config", "return cls("),
    (
        "{site}/vllm/v1/engine/async_llm.py",
        184,
        "__init__",
        "self.engine_core = EngineCoreClient.make_async_mp_client(",
    ),
    OTEL,
    ("{site}/vllm/v1/engine/core_client.py", 167, "make_async_mp_client", "return AsyncMPClient("),
    OTEL,
    ("{site}/vllm/v1/engine/core_client.py", 1120, "__init__", "super().__init__("),
    ("{site}/vllm/v1/engine/core_client.py", 682, "__init__", "with launch_core_engines("),
    ("{stdlib}/contextlib.py", 144, "__exit__", "next(self.gen)"),
    ("{site}/vllm/v1/engine/utils.py", 1351, "launch_core_engines", "wait_for_engine_startup("),
    ("{site}/vllm/v1/engine/utils.py", 1431, "wait_for_engine_startup", "raise RuntimeError("),
)
# [cpu:fail_a1_kv_bytes_too_small] the multiprocessing bootstrap above the EngineCore's stack
PROCESS_BOOTSTRAP: tuple[Frame, ...] = (
    ("{stdlib}/multiprocessing/process.py", 314, "_bootstrap", "self.run()"),
    ("{stdlib}/multiprocessing/process.py", 108, "run", "self._target(*self._args, **self._kwargs)"),
    ("{site}/vllm/v1/engine/core.py", 1514, "run_engine_core", "raise e"),
)
_CORE = "{site}/vllm/v1/engine/core.py"
_ENGINE_INIT: tuple[Frame, ...] = (
    (_CORE, 1482, "run_engine_core", "engine_core = EngineCoreProc(*args, engine_index=dp_rank, **kwargs)"),
    OTEL,
    (_CORE, 1194, "__init__", "super().__init__("),
)


def kv_check(version: str, no_memory: bool) -> tuple[Frame, ...]:
    """[cpu:fail_a1_kv_bytes_too_small] / [cpu:fail_a3_kvcache_space_0]; 0.33 moved the check itself
    to kv_cache_planning.py [ref §1.1]."""
    utils = "{site}/vllm/v1/core/kv_cache_utils.py"
    check = "{site}/vllm/v1/core/kv_cache_planning.py" if version.startswith("0.33") else utils
    return (
        *_ENGINE_INIT,
        (_CORE, 157, "__init__", "kv_cache_config = self._initialize_kv_caches(vllm_config)"),
        OTEL,
        (_CORE, 326, "_initialize_kv_caches", "kv_cache_configs = get_kv_cache_configs("),
        (utils, 2642, "get_kv_cache_configs", "_check_enough_kv_cache_memory("),
        (check, 1010 if no_memory else 1030, "_check_enough_kv_cache_memory", "raise ValueError("),
    )


# [cpu:fail_a4_gpu_util_099] down to `abstract.py:126 _init_executor`, then the GPU worker [gpu-path]
_EXECUTOR_INIT: tuple[Frame, ...] = (
    *_ENGINE_INIT,
    (_CORE, 144, "__init__", "self.model_executor = executor_class(vllm_config)"),
    OTEL,
    ("{site}/vllm/v1/executor/abstract.py", 126, "__init__", "self._init_executor()"),
    ("{site}/vllm/v1/executor/uniproc_executor.py", 56, "_init_executor", "self.driver_worker.init_device()"),
    ("{site}/vllm/v1/worker/worker_base.py", 332, "init_device", "self.worker.init_device()  # type: ignore"),
)
_GPU_WORKER = "{site}/vllm/v1/worker/gpu_worker.py"
FREE_MEMORY_CHECK: tuple[Frame, ...] = (
    *_EXECUTOR_INIT,
    (
        _GPU_WORKER,
        262,
        "init_device",
        "self.requested_memory = request_memory(init_snapshot, self.cache_config)",
    ),
    ("{site}/vllm/v1/worker/utils.py", 391, "request_memory", "raise ValueError("),
)
NO_GPU: tuple[Frame, ...] = (
    *_EXECUTOR_INIT,
    (_GPU_WORKER, 231, "init_device", "torch.accelerator.set_device_index(self.device)"),
    ("{site}/torch/cuda/__init__.py", 478, "_lazy_init", "torch._C._cuda_init()"),
)
# the workers of a group meet in torch.distributed before anything is measured (vLLM 0.33.0)
DIST_INIT: tuple[Frame, ...] = (
    *_EXECUTOR_INIT,
    (_GPU_WORKER, 504, "init_device", "init_worker_distributed_environment("),
    (_GPU_WORKER, 1714, "init_worker_distributed_environment", "init_distributed_environment("),
    (
        "{site}/vllm/distributed/parallel_state.py",
        1976,
        "init_distributed_environment",
        "torch.distributed.init_process_group(",
    ),
)
BF16_CHECK: tuple[Frame, ...] = (
    *_EXECUTOR_INIT,
    (_GPU_WORKER, 240, "init_device", "current_platform.check_if_supports_dtype(self.model_config.dtype)"),
    ("{site}/vllm/platforms/cuda.py", 402, "check_if_supports_dtype", "raise ValueError("),
)
LOAD_WEIGHTS: tuple[Frame, ...] = (
    *_EXECUTOR_INIT[:-2],
    ("{site}/vllm/v1/executor/uniproc_executor.py", 58, "_init_executor", "self.driver_worker.load_model()"),
    ("{site}/vllm/v1/worker/worker_base.py", 340, "load_model", "self.worker.load_model()"),
    (_GPU_WORKER, 290, "load_model", "self.model_runner.load_model(eep_scale_up=eep_scale_up)"),
    (
        "{site}/vllm/v1/worker/gpu_model_runner.py",
        3431,
        "load_model",
        "self.model = model_loader.load_model(",
    ),
    ("{site}/vllm/model_executor/model_loader/base_loader.py", 56, "load_model", "model = initialize_model("),
    ("{site}/vllm/model_executor/layers/linear.py", 447, "create_weights", "weight = Parameter("),
    ("{site}/torch/utils/_device.py", 104, "__torch_function__", "return func(*args, **kwargs)"),
)
_INIT_KV = (_CORE, 157, "__init__", "kv_cache_config = self._initialize_kv_caches(vllm_config)")
KV_ALLOCATE: tuple[Frame, ...] = (
    *_ENGINE_INIT,
    _INIT_KV,
    OTEL,
    (_CORE, 340, "_initialize_kv_caches", "self.model_executor.initialize_from_config(kv_cache_configs)"),
    (_GPU_WORKER, 433, "initialize_from_config", "self.model_runner.initialize_kv_cache(kv_cache_config)"),
    (
        "{site}/vllm/v1/worker/gpu_model_runner.py",
        5630,
        "_allocate_kv_cache_tensors",
        "tensor = torch.zeros(",
    ),
)
GRAPH_CAPTURE: tuple[Frame, ...] = (
    *_ENGINE_INIT,
    _INIT_KV,
    OTEL,
    (_CORE, 352, "_initialize_kv_caches", "self.model_executor.compile_or_warm_up_model()"),
    (
        _GPU_WORKER,
        470,
        "compile_or_warm_up_model",
        "cuda_graph_memory_bytes = self.model_runner.capture_model()",
    ),
    ("{site}/vllm/v1/worker/gpu_model_runner.py", 4398, "capture_model", "self._capture_cudagraphs("),
    ("{site}/vllm/compilation/cuda_graph.py", 285, "__call__", "with torch.cuda.graph("),
    ("{site}/torch/cuda/graphs.py", 265, "__exit__", "self.cuda_graph.capture_end()"),
    ("{site}/torch/cuda/graphs.py", 126, "capture_end", "super().capture_end()"),
)
PROFILE_RUN: tuple[Frame, ...] = (
    *_ENGINE_INIT,
    _INIT_KV,
    OTEL,
    (
        _CORE,
        331,
        "_initialize_kv_caches",
        "available_gpu_memory = self.model_executor.determine_available_memory()",
    ),
    (_GPU_WORKER, 358, "determine_available_memory", "self.model_runner.profile_run()"),
    (
        "{site}/vllm/v1/worker/gpu_model_runner.py",
        4240,
        "profile_run",
        "hidden_states, last_hidden_states = self._dummy_run(",
    ),
    ("{site}/torch/nn/modules/module.py", 1786, "_call_impl", "return forward_call(*args, **kwargs)"),
)
# [gpu-path] runtime: a forward pass that runs out of memory; [pub: GHSA-33cg-gxv8-3p8g] for the
# API side (`async_llm.py:660 output_handler` / `core_client.py:1030 get_output_async`).
RUNTIME_FORWARD: tuple[Frame, ...] = (
    (_CORE, 1159, "run_engine_core", "engine_core.run_busy_loop()"),
    (_CORE, 1198, "run_busy_loop", "self._process_engine_step()"),
    (_CORE, 1231, "_process_engine_step", "outputs, model_executed = self.step_fn()"),
    (_CORE, 436, "step", "model_output = self.model_executor.execute_model(scheduler_output)"),
    (_GPU_WORKER, 560, "execute_model", "output = self.model_runner.execute_model(scheduler_output)"),
    ("{site}/vllm/v1/worker/gpu_model_runner.py", 3997, "execute_model", "model_output = self.model("),
    ("{site}/torch/nn/modules/module.py", 1786, "_call_impl", "return forward_call(*args, **kwargs)"),
)
# [cpu:tests/data/vllm_0.32.0_cpu_fault_tolerance.log] the busy loop under fault tolerance, then the
# forward pass as above.
FT_FORWARD: tuple[Frame, ...] = (
    (
        "{site}/vllm/v1/fault_tolerance/engine_core_sentinel.py",
        178,
        "run_with_fault_tolerance",
        "busy_loop_func(self)",
    ),
    (_CORE, 1555, "run_busy_loop", "self._process_engine_step()"),
    (_CORE, 1606, "_process_engine_step", "outputs, model_executed = self.step_fn()"),
    *RUNTIME_FORWARD[3:],
)
# [cpu:tests/data/vllm_0.32.0_cpu_fault_tolerance.log] what raises once a paused engine's wait ends
FT_TIMED_OUT: tuple[Frame, ...] = (
    (_CORE, 1496, "run_engine_core", "engine_core.run_busy_loop()"),
    *FT_FORWARD,
)
# [src: vLLM 0.32's engine_core_sentinel.py, serial_utils.py, uniproc_executor.py, gpu_worker.py and
# worker/sentinel/gpu_worker_sentinel.py] a retry whose device synchronisation raises again.
_SENTINEL = "{site}/vllm/v1/fault_tolerance/engine_core_sentinel.py"
_RUN_METHOD: Frame = ("{site}/vllm/v1/serial_utils.py", 508, "run_method", "return func(*args, **kwargs)")
FT_RETRY: tuple[Frame, ...] = (
    (_SENTINEL, 66, "handle_command", "result = run_method(self, ft_request.instruction, (ft_request,), {})"),
    _RUN_METHOD,
    (_SENTINEL, 129, "retry", 'executor.collective_rpc("handle_ft_command", args=(ft_request,))'),
    (
        "{site}/vllm/v1/executor/uniproc_executor.py",
        103,
        "collective_rpc",
        "result = run_method(self.driver_worker, method, args, kwargs)",
    ),
    _RUN_METHOD,
    (_GPU_WORKER, 583, "handle_ft_command", "return self.worker_sentinel.handle_command(ft_request)"),
    (
        "{site}/vllm/v1/worker/sentinel/gpu_worker_sentinel.py",
        50,
        "handle_command",
        "return run_method(self, ft_request.instruction, (ft_request,), {})",
    ),
    _RUN_METHOD,
    ("{site}/vllm/v1/worker/sentinel/gpu_worker_sentinel.py", 53, "retry", "torch.accelerator.synchronize()"),
)
OUTPUT_HANDLER: tuple[Frame, ...] = (
    (
        "{site}/vllm/v1/engine/async_llm.py",
        660,
        "output_handler",
        "outputs = await engine_core.get_output_async()",
    ),
    (
        "{site}/vllm/v1/engine/core_client.py",
        1030,
        "get_output_async",
        "raise self._format_exception(outputs) from None",
    ),
)


def _paths() -> dict[str, str]:
    purelib = sysconfig.get_paths()["purelib"]
    return {
        "{site}": purelib,
        "{bin}": sysconfig.get_paths()["scripts"],
        "{stdlib}": sysconfig.get_paths()["stdlib"],
        "{torch}": f"{purelib}/torch",
    }


def expand(template: str) -> str:
    for key, value in _PATHS.items():
        template = template.replace(key, value)
    return template


def render(frames: tuple[Frame, ...]) -> list[str]:
    """The `Traceback (most recent call last):` block, as Python prints it."""
    lines = ["Traceback (most recent call last):"]
    for path, line, func, code in frames:
        lines.append(f'  File "{expand(path)}", line {line}, in {func}')
        if code is not None:
            lines.append(f"    {code}")
    return lines


_PATHS = _paths()
