"""`python -m vllm_guard`: the same entry point as the `vllm-guard` console script."""

from vllm_guard.cli import main

main()
