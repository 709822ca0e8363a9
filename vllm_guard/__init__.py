"""vllm-guard: a launcher that runs vLLM, watches it, and relaunches it with flags that fit."""

__version__ = "0.1.0"
