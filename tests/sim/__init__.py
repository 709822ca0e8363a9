"""Tests of the simulated `vllm serve` (vllm_guard.sim)."""
