"""The simulated `vllm serve`: vLLM's flags, memory arithmetic, failure texts and endpoints, no GPU.

`python -m vllm_guard.sim serve MODEL [vLLM flags]` behaves like `vllm serve` on a GPU that exists
only in environment variables (see `scenario.py`). It imports nothing from the rest of
`vllm_guard`: it parses vLLM's flags on its own, so a bug in the guard's argv editing cannot be
hidden by the same bug here. Every text it prints on failure is a real vLLM / torch / Hugging Face
text; they all live in `messages.py` with their origin.
"""
